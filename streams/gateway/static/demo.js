// Continuity demo: three panes over the public gateway API, no build step.
// Tokens come from the URL fragment (never sent to the server, so never logged):
//   /#customer=<id>&token=<customer token>&pos=<pos token>&store=<store id>&service=<token>
// The service token (development only: continuity dev puts it there) reads GET /v1/kpis.
// Every call goes through the browser client a frontend vendors (client/continuity.js).
import { ContinuityClient, ContinuityError } from "/static/continuity.js";

const PRODUCTS = [
  { sku: "SHOE-RUN-42", name: "Running shoes", price: "89.90" },
  { sku: "SOCK-3PK", name: "Sport socks (3 pack)", price: "12.50" },
  { sku: "CAP-SUN", name: "Sun cap", price: "24.50" },
  { sku: "BOTTLE-750", name: "Water bottle", price: "15.00" },
];
const CURRENCY = "EUR";

const params = new URLSearchParams(location.hash.slice(1));
const customer = params.get("customer") || "";
const customerToken = params.get("token") || "";
const posToken = params.get("pos") || "";
const serviceToken = params.get("service") || "";
const KPI_REFRESH_MS = 3000;

// The demo has no token issuer: each client keeps the one token from the fragment.
const customerClient = new ContinuityClient({ getToken: () => customerToken });
const posClient = new ContinuityClient({ getToken: () => posToken });
const serviceClient = new ContinuityClient({ getToken: () => serviceToken });

const failure = (err) => (err instanceof ContinuityError ? err.body.message || err.code : String(err));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function showError(message) {
  const p = document.getElementById("setup-error");
  p.textContent = message;
  p.hidden = false;
}

// The cart of a session as a table (textContent only: ids and names are data, not HTML).
function renderCart(container, session) {
  container.replaceChildren();
  if (!session.cart.length) {
    container.append(el("p", { class: "empty" }, "The cart is empty."));
  } else {
    const rows = session.cart.map((line) =>
      el("tr", { "data-sku": line.sku },
        el("td", {}, line.name || line.sku),
        el("td", { class: "num" }, String(line.quantity)),
        el("td", { class: "num" }, `${line.unit_price} ${line.currency}`),
        el("td", {}, line.channel)));
    container.append(el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Item"), el("th", { class: "num" }, "Qty"),
        el("th", { class: "num" }, "Price"), el("th", {}, "Last touched on"))),
      el("tbody", {}, ...rows)));
  }
  container.append(el("p", { class: "meta" },
    // An empty cart has no currency: no dangling space before the full stop.
    `${session.item_count} item(s), subtotal ${[session.subtotal, session.currency].filter(Boolean).join(" ")}. ` +
    `Version ${session.version}, last channel ${session.last_channel || "-"}` +
    (session.last_store_id ? `, last store ${session.last_store_id}` : "") + "."));
}

// Follow the session live: the client resumes after a drop (Last-Event-ID) with backoff.
function follow(pane, client) {
  const status = pane.querySelector(".status");
  const cart = pane.querySelector(".cart");
  cart.append(el("p", { class: "empty" }, "No session yet: add an item."));
  client.follow(customer, {
    onStatus: (state) => {
      if (state === "live") status.textContent = "live";
      else if (state === "reconnecting") status.textContent = "reconnecting...";
    },
    onSession: (session, version) => {
      renderCart(cart, session);
      status.textContent = `live, version ${version}`;
    },
    onError: (err) => {
      if (err instanceof ContinuityError && err.status < 500) status.textContent = `stopped: ${failure(err)}`;
    },
  });
}

function setupAdd(pane) {
  const form = pane.querySelector("form.add");
  const select = form.elements.sku;
  for (const p of PRODUCTS) select.append(el("option", { value: p.sku }, `${p.name} (${p.price} ${CURRENCY})`));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const product = PRODUCTS.find((p) => p.sku === select.value);
    const event = {
      event_id: crypto.randomUUID(),
      type: "cart.item_added",
      occurred_at: new Date().toISOString(),
      channel: pane.dataset.channel,
      customer_id: customer,
      payload: {
        sku: product.sku, name: product.name, quantity: Number(form.elements.quantity.value),
        unit_price: product.price, currency: CURRENCY,
      },
    };
    const status = pane.querySelector(".status");
    try {
      const r = await customerClient.publish(event);
      if (!r.accepted) status.textContent = `not added: ${r.results[0].detail || r.results[0].reason}`;
    } catch (err) {
      status.textContent = `not added: ${failure(err)}`;
    }
  });
}

function setupHandoff() {
  const out = document.getElementById("handoff");
  document.getElementById("handoff-create").addEventListener("click", async () => {
    out.replaceChildren();
    let handoff;
    try {
      handoff = await customerClient.createHandoff(customer);
    } catch (err) {
      out.append(el("p", { class: "error", role: "alert" }, failure(err)));
      return;
    }
    const expires = new Date(handoff.expires_at).toLocaleTimeString();
    out.append(
      el("p", {}, "Show this code at the till: ", el("span", { class: "code", id: "handoff-code" }, handoff.display)),
      el("p", { class: "meta" }, `QR payload: ${handoff.qr}. Valid until ${expires}, single use.`));
  });
}

function setupClaim() {
  const form = document.getElementById("claim-form");
  const out = document.getElementById("claim-result");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const code = form.elements.code.value.trim();
    out.replaceChildren();
    let claim;
    try {
      claim = await posClient.claimHandoff(code);
    } catch (err) {
      const what = err instanceof ContinuityError ? `${err.code}: ${err.body.message || ""}` : String(err);
      out.append(el("p", { class: "error", role: "alert" }, what));
      return;
    }
    const who = claim.customer_id || claim.key;
    const cart = el("div", { class: "claimed-cart" });
    if (claim.session) renderCart(cart, claim.session);
    out.append(el("p", { id: "claimed", class: "meta" }, `Claimed for store ${claim.store_id}: customer ${who}.`), cart);
  });
}

const pct = (x) => (x === null || x === undefined ? "-" : `${(x * 100).toFixed(1)}%`);

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function table(head, rows, empty) {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  const cells = (row, tag) => row.map((c, i) => el(tag, i ? { class: "num" } : {}, String(c)));
  return el("table", {},
    el("thead", {}, el("tr", {}, ...cells(head, "th"))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...cells(r, "td")))));
}

function renderKpis(k) {
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  const s = k.sessions;
  set("kpi-share", `${pct(s.multichannel_share)} (${s.multichannel} of ${s.active})`);
  set("kpi-resumes", String(k.resumes.total));
  set("kpi-abandoned", String(k.carts.overall.abandoned));
  set("kpi-conversion", `${pct(k.carts.overall.conversion_rate)} of ${k.carts.overall.started}`);
  set("kpi-abandonment", pct(k.carts.overall.abandonment_rate));
  set("kpi-median", duration(k.first_touch_to_checkout.median_seconds));
  document.getElementById("kpi-pairs").replaceChildren(table(
    ["From > to", "Resumes"],
    k.resumes.by_pair.map((p) => [`${p.from_channel} > ${p.to_channel}`, p.count]),
    "No resumes yet."));
  const channels = Object.entries(k.carts.by_start_channel).filter(([, c]) => c.started || c.converted || c.abandoned);
  document.getElementById("kpi-channels").replaceChildren(table(
    ["Start channel", "Started", "Converted", "Abandoned", "Conversion", "Abandonment"],
    channels.map(([ch, c]) => [ch, c.started, c.converted, c.abandoned, pct(c.conversion_rate), pct(c.abandonment_rate)]),
    "No carts yet."));
  document.getElementById("kpi-paths").replaceChildren(table(
    ["Path", "Converted", "Abandoned", "Conversion"],
    k.paths.slice(0, 8).map((p) => [p.path, p.converted, p.abandoned, pct(p.conversion_rate)]),
    "No checkouts or abandonments yet."));
}

// Poll the KPI report; a failed poll keeps the last figures and says so.
function followKpis() {
  const status = document.querySelector("#kpis .status");
  if (!serviceToken) {
    status.textContent = "No service token in the address (service=...): KPIs not shown.";
    return;
  }
  const poll = async () => {
    try {
      const resp = await serviceClient.request("GET", "/v1/kpis");
      const data = await resp.json().catch(() => ({}));
      if (resp.ok) {
        renderKpis(data);
        status.textContent = `updated ${new Date().toLocaleTimeString()}, every ${KPI_REFRESH_MS / 1000} s`;
      } else {
        status.textContent = `not updated: ${data.error || resp.status}`;
      }
    } catch (err) {
      status.textContent = "not updated: the gateway did not answer";
    }
    setTimeout(poll, KPI_REFRESH_MS);
  };
  poll();
}

function main() {
  document.getElementById("customer-name").textContent = customer || "(none)";
  followKpis();
  if (!customer || !customerToken || !posToken) {
    showError("Open this page with the URL continuity dev prints (it carries the customer, its token and a POS token after #).");
    return;
  }
  for (const id of ["mobile", "desktop"]) {
    const pane = document.getElementById(id);
    setupAdd(pane);
    follow(pane, customerClient);
  }
  follow(document.getElementById("pos"), posClient);
  setupHandoff();
  setupClaim();
}

main();
