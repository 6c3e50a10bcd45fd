// Continuity browser client: one ES module, no dependencies, no build step.
//
// It does the parts every frontend gets wrong by hand (docs/gateway-api.md):
// * follow a session over Server-Sent Events, resuming after a dropped connection
//   with Last-Event-ID (no gap, no duplicate) and reconnecting with backoff;
// * ask for a fresh token when the gateway answers 401 (expired, invalid) and when
//   a guest signs in (`merged`), then follow the customer's session instead;
// * publish events, and read your own writes (`?after=` the positions ingest returned);
// * create and claim a POS handoff code.
//
// The stream is read with fetch(), not EventSource: EventSource cannot send an
// Authorization header and gives up on a 401 without saying so, so it could neither
// keep tokens out of URLs nor refresh one.
//
// Types: continuity.d.ts next to this file.

/** Server-sent `retry:` default until the gateway says otherwise (it sends 2000). */
const DEFAULT_RETRY_MS = 2000;
/** Longest wait between two reconnects. */
const MAX_BACKOFF_MS = 30000;
/** A connection that stayed open this long counts as healthy: backoff starts over. */
const HEALTHY_AFTER_MS = 10000;

/** An answer of the gateway that is not a success: its `error` code, status and body. */
export class ContinuityError extends Error {
  constructor(status, body, retryAfter) {
    super(`${status} ${body?.error ?? "error"}: ${body?.message ?? ""}`.trim());
    this.name = "ContinuityError";
    this.status = status;
    this.code = body?.error ?? `http_${status}`;
    this.body = body ?? {};
    this.retryAfter = retryAfter;
  }
}

// 401 codes after which a new token may help (docs/gateway-api.md, Errors).
const REFRESHABLE = new Set(["token_expired", "invalid_token", "missing_token"]);

function retryAfterMs(resp) {
  const value = resp.headers.get("Retry-After");
  const seconds = value === null ? NaN : Number(value);
  return Number.isFinite(seconds) ? seconds * 1000 : undefined;
}

async function errorOf(resp) {
  const body = await resp.json().catch(() => ({}));
  return new ContinuityError(resp.status, body, retryAfterMs(resp));
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** Exponential backoff with full jitter: attempt 0 waits about `base`. */
export function backoffDelay(attempt, baseMs = DEFAULT_RETRY_MS, capMs = MAX_BACKOFF_MS) {
  const ceiling = Math.min(capMs, baseMs * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

export class ContinuityClient {
  /**
   * @param {import("./continuity").ClientOptions} options
   */
  constructor({ baseUrl = "", getToken, fetch: fetchImpl } = {}) {
    if (typeof getToken !== "function") throw new TypeError("getToken is required");
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this._getToken = getToken;
    this._fetch = fetchImpl ?? globalThis.fetch.bind(globalThis);
    this._token = null;
  }

  /** The current token, asking `getToken` for one when there is none or `reason` says so. */
  async token(reason = "initial", detail = {}) {
    if (this._token === null || reason !== "initial") {
      this._token = await this._getToken({ reason, ...detail });
    }
    return this._token;
  }

  /** One request with the token; on a refreshable 401, one retry with a new token. */
  async request(method, path, { body, query } = {}) {
    const url = new URL(this.baseUrl + path, globalThis.location?.href ?? "http://localhost/");
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    for (let attempt = 0; ; attempt++) {
      const headers = { Authorization: `Bearer ${await this.token(attempt ? "expired" : "initial")}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const resp = await this._fetch(url, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (resp.status === 401 && attempt === 0) {
        const err = await errorOf(resp);
        if (REFRESHABLE.has(err.code)) continue;
        throw err;
      }
      return resp;
    }
  }

  /**
   * Publish one event or an array. Resolves with the ingest answer (202, or 422 when none
   * was accepted: check `accepted`); rejects with a ContinuityError otherwise.
   */
  async publish(events) {
    const resp = await this.request("POST", "/v1/events", { body: events });
    if (resp.status === 202 || resp.status === 422) return resp.json();
    throw await errorOf(resp);
  }

  /**
   * Read a session. `after` (a publish result, or its `after` string) waits until the
   * worker applied those events: read your own writes. `minVersion` and `wait` (seconds)
   * as in the API. Resolves with `{session, version, satisfied}`; `session` is null on 404.
   */
  async getSession(id, { after, minVersion, wait } = {}) {
    const positions = typeof after === "object" && after !== null ? after.after : after;
    const resp = await this.request("GET", `/v1/sessions/${encodeURIComponent(id)}`, {
      query: { after: positions || undefined, min_version: minVersion, wait },
    });
    if (resp.status !== 200 && resp.status !== 404) throw await errorOf(resp);
    const body = await resp.json();
    return {
      session: resp.status === 200 ? body : null,
      version: Number(resp.headers.get("X-Continuity-Version") ?? 0),
      satisfied: resp.headers.get("X-Continuity-Wait") !== "timeout",
    };
  }

  /** Publish, then read the session back once the worker applied what was accepted. */
  async publishAndRead(id, events, { wait } = {}) {
    const result = await this.publish(events);
    if (!result.accepted) return { result, session: null, version: 0, satisfied: false };
    return { result, ...(await this.getSession(id, { after: result, wait })) };
  }

  /** A single-use handoff code for a session (customer token for its own, or service). */
  async createHandoff(id) {
    const resp = await this.request("POST", `/v1/sessions/${encodeURIComponent(id)}/handoff`);
    if (resp.status !== 201) throw await errorOf(resp);
    return resp.json();
  }

  /** Claim a handoff code at a POS (pos token). Resolves with the claim, its session included. */
  async claimHandoff(code, { terminalId } = {}) {
    const resp = await this.request(
      "POST", `/v1/handoffs/${encodeURIComponent(code)}/claim`,
      { body: terminalId ? { terminal_id: terminalId } : {} },
    );
    if (resp.status !== 200) throw await errorOf(resp);
    return resp.json();
  }

  /**
   * Follow a session live. Returns a Follower at once; callbacks report what happens.
   * @param {string} id
   * @param {import("./continuity").FollowOptions} options
   */
  follow(id, options = {}) {
    return new Follower(this, id, options);
  }
}

/** One followed session: reconnects until closed, switches to the customer on `merged`. */
export class Follower {
  constructor(client, id, { onSession, onMerged, onStatus, onError, lastEventId = null } = {}) {
    this.client = client;
    this.id = id;
    this.lastEventId = lastEventId;
    this.connections = 0;
    this._on = { onSession, onMerged, onStatus, onError };
    this._stop = new AbortController();
    this._retryMs = DEFAULT_RETRY_MS;
    this.done = this._run();
  }

  /** Stop following (the open request is aborted). */
  close() {
    this._stop.abort();
  }

  get closed() {
    return this._stop.signal.aborted;
  }

  _emit(name, ...args) {
    try { this._on[name]?.(...args); } catch (err) { console.error(err); }
  }

  async _run() {
    let attempt = 0;
    let reason = "initial";
    let detail = {};
    while (!this.closed) {
      let waitMs;
      const opened = Date.now();
      try {
        const outcome = await this._connect(reason, detail);
        reason = "initial";
        detail = {};
        if (outcome === "token_expired") {
          // The gateway ended the stream at the token's exp: a fresh token, resume at once.
          reason = "expired";
          attempt = 0;
          continue;
        }
        if (outcome !== "ended") {
          // Merged: a token for the customer (reason "merged"), then its stream at once.
          reason = "merged";
          detail = outcome.merged;
          attempt = 0;
          continue;
        }
        // The stream ended (a gateway restarting, a dropped connection): resume.
        if (Date.now() - opened > HEALTHY_AFTER_MS) attempt = 0;
        waitMs = backoffDelay(attempt++, this._retryMs);
      } catch (err) {
        if (this.closed) break;
        if (err instanceof ContinuityError) {
          if (err.status === 401 && REFRESHABLE.has(err.code) && reason !== "expired") {
            reason = "expired";
            continue;
          }
          if (err.status === 401 || (err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429)) {
            this._emit("onStatus", "stopped");
            this._emit("onError", err);
            return;
          }
          waitMs = err.retryAfter ?? backoffDelay(attempt++, this._retryMs);
        } else {
          // A network error: the gateway is unreachable or the connection broke.
          waitMs = backoffDelay(attempt++, this._retryMs);
        }
        reason = "initial";
        this._emit("onError", err);
      }
      if (this.closed) break;
      this._emit("onStatus", "reconnecting", waitMs);
      await sleep(waitMs, this._stop.signal);
    }
    this._emit("onStatus", "closed");
  }

  // One connection: resolves "ended", "token_expired" or {merged: {from, to}}, rejects
  // with a ContinuityError or a network error.
  async _connect(reason, detail) {
    const token = await this.client.token(reason, { id: this.id, ...detail });
    const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
    if (this.lastEventId !== null) headers["Last-Event-ID"] = String(this.lastEventId);
    this._emit("onStatus", "connecting");
    const url = `${this.client.baseUrl}/v1/sessions/${encodeURIComponent(this.id)}/stream`;
    const resp = await this.client._fetch(url, {
      headers, signal: this._stop.signal, cache: "no-store",
    });
    if (resp.status !== 200) throw await errorOf(resp);
    this.connections += 1;
    this._emit("onStatus", "live");
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let frame = { event: "message", data: [], id: null };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return "ended";
        buffer += value;
        let nl;
        while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
          if (line === "") {
            const ended = this._dispatch(frame);
            frame = { event: "message", data: [], id: null };
            if (ended === "token_expired") return ended;
            if (ended) return { merged: ended };
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "event") frame.event = val;
          else if (field === "data") frame.data.push(val);
          else if (field === "id") frame.id = val;
          else if (field === "retry" && /^\d+$/.test(val)) this._retryMs = Number(val);
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  _dispatch(frame) {
    if (frame.id !== null) this.lastEventId = frame.id;
    if (!frame.data.length) return null;
    const data = JSON.parse(frame.data.join("\n"));
    if (frame.event === "session") {
      this._emit("onSession", data, Number(frame.id));
      return null;
    }
    if (frame.event === "token_expired") {
      // Sent at the token's exp, before the stream ends (docs/gateway-api.md).
      return "token_expired";
    }
    if (frame.event === "merged") {
      // The guest signed in: its stream ends. Follow the customer from its first state,
      // with a token for it (the guest's token may not read the customer's session).
      const from = this.id;
      this.id = data.merged_into;
      this.lastEventId = null;
      this._emit("onMerged", data);
      return { from, to: data.merged_into };
    }
    return null;
  }
}
