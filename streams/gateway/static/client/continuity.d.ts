// Types of continuity.js (the Continuity gateway's browser client).

/** Why the client asks for a token. */
export type TokenReason = "initial" | "expired" | "merged";

export interface TokenRequest {
  reason: TokenReason;
  /** The session id being followed, when a stream asks. */
  id?: string;
  /** On "merged": the guest id signed in, and the customer id to follow now. */
  from?: string;
  to?: string;
}

export interface ClientOptions {
  /** The gateway's origin, e.g. "https://gateway.example"; "" for the page's own. */
  baseUrl?: string;
  /** Returns a bearer token (a JWT the gateway accepts) for the reason given. */
  getToken: (request: TokenRequest) => string | Promise<string>;
  fetch?: typeof fetch;
}

/** An event of the wire contract (schemas/json/event.schema.json). */
export interface ContinuityEvent {
  event_id: string;
  type: string;
  occurred_at: string;
  channel: "web" | "mobile_app" | "pos" | "call_center" | "kiosk" | "social" | "voice";
  customer_id?: string;
  anonymous_id?: string;
  device_id?: string;
  store_id?: string;
  associate_id?: string;
  payload: Record<string, unknown>;
}

export interface IngestResult {
  index: number;
  event_id?: string;
  status: "accepted" | "rejected";
  position?: string;
  reason?: string;
  detail?: string;
}

/** The answer of POST /v1/events (202, or 422 when nothing was accepted). */
export interface PublishResult {
  accepted: number;
  rejected: number;
  /** The positions to read after (`?after=`) to see these events applied. */
  after?: string;
  results: IngestResult[];
}

/** The session as served (schemas/json/session.schema.json). */
export interface Session {
  customer_id: string | null;
  version: number;
  cart: Array<{ sku: string; name?: string | null; quantity: number; unit_price: string;
    currency: string; channel: string; [k: string]: unknown }>;
  item_count: number;
  subtotal: string;
  currency: string | null;
  last_channel: string | null;
  last_store_id: string | null;
  [k: string]: unknown;
}

export interface SessionRead {
  /** null when the gateway answered 404 (no session yet). */
  session: Session | null;
  version: number;
  /** false when the wait timed out (`X-Continuity-Wait: timeout`): ask again. */
  satisfied: boolean;
}

export interface Handoff {
  code: string;
  display: string;
  qr: string;
  expires_in: number;
  expires_at: string;
  claim: string;
  key: string;
}

export interface Claim {
  claimed: boolean;
  key: string;
  customer_id: string | null;
  store_id: string;
  terminal_id: string | null;
  after: string;
  session: Session | null;
}

export type FollowStatus = "connecting" | "live" | "reconnecting" | "stopped" | "closed";

export interface FollowOptions {
  /** Each newer state of the session (a whole state; older ones never come). */
  onSession?: (session: Session, version: number) => void;
  /** The guest signed in: the follower now follows `merged_into`. */
  onMerged?: (merge: { key: string; merged_into: string }) => void;
  /** "reconnecting" comes with the wait in ms. */
  onStatus?: (status: FollowStatus, waitMs?: number) => void;
  /** A failed connection (it is retried) or, with status "stopped", the end. */
  onError?: (error: ContinuityError | Error) => void;
  /** Resume after this version (a state the caller already has). */
  lastEventId?: string | number | null;
}

export class ContinuityError extends Error {
  status: number;
  /** The gateway's `error` code, e.g. "token_expired", "handoff_claimed". */
  code: string;
  body: Record<string, unknown>;
  /** From Retry-After, in ms. */
  retryAfter?: number;
}

export function backoffDelay(attempt: number, baseMs?: number, capMs?: number): number;

export class Follower {
  readonly id: string;
  readonly lastEventId: string | number | null;
  /** Connections opened so far (1 + reconnects). */
  readonly connections: number;
  readonly closed: boolean;
  /** Settles when the follower stops for good. */
  readonly done: Promise<void>;
  close(): void;
}

export class ContinuityClient {
  constructor(options: ClientOptions);
  token(reason?: TokenReason, detail?: Partial<TokenRequest>): Promise<string>;
  request(method: string, path: string,
    init?: { body?: unknown; query?: Record<string, string | number | undefined> }): Promise<Response>;
  publish(events: ContinuityEvent | ContinuityEvent[]): Promise<PublishResult>;
  getSession(id: string, options?: { after?: PublishResult | string; minVersion?: number;
    wait?: number | string }): Promise<SessionRead>;
  publishAndRead(id: string, events: ContinuityEvent | ContinuityEvent[],
    options?: { wait?: number | string }): Promise<SessionRead & { result: PublishResult }>;
  createHandoff(id: string): Promise<Handoff>;
  claimHandoff(code: string, options?: { terminalId?: string }): Promise<Claim>;
  follow(id: string, options?: FollowOptions): Follower;
}
