// Requests to one Apie: URLs, credentials (a bearer token got with the
// password and renewed before it expires) and errors with the server's message.
import { STREAM_NAME_RE } from '../eventinput.ts';
import type { ApieOptions, PendingEvent } from './types.ts';

/** A failed request: `status` is the HTTP status, 0 when no answer came (offline, connection lost). */
export class ApieClientError extends Error {
  readonly status: number;
  /** The event a sync could not store (400, 409, 413): it is taken out of the queue. */
  readonly event?: PendingEvent;
  constructor(status: number, message: string, opts: { cause?: unknown; event?: PendingEvent } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ApieClientError';
    this.status = status;
    this.event = opts.event;
  }
}

/** Whether an error is worth retrying later: no answer, or the server could not answer now. @internal */
export function isTransient(err: unknown): boolean {
  return err instanceof ApieClientError && (err.status === 0 || err.status >= 500);
}

/** @internal */
export interface RequestOptions {
  headers?: Record<string, string>;
  body?: string | Uint8Array | Blob;
  signal?: AbortSignal;
  /** Longest wait for the whole answer; default 30 s, 0 for none. */
  timeoutMs?: number;
}

/** The path of a stream's events: `default` is `/events`, as the contract has it. @internal */
export function eventsPath(stream: string): string {
  if (stream === 'default') return '/events';
  if (!STREAM_NAME_RE.test(stream)) throw new TypeError(`not a stream name: ${JSON.stringify(stream)} (1-128 of a-z 0-9 . _ -, starting with a letter or digit)`);
  return `/streams/${stream}/events`;
}

/** @internal */
export class Transport {
  readonly base: string;
  private readonly opts: ApieOptions;
  private readonly fetch: typeof fetch;
  private token?: string;
  private renewAt = Infinity;
  private pendingLogin?: Promise<{ token: string; expiresAt: string }>;
  private unreachable = false;
  private readonly waiting = new Set<() => void>();

  constructor(opts: ApieOptions) {
    this.base = opts.url.replace(/\/+$/, '');
    this.opts = opts;
    this.token = opts.token;
    // Called unbound: a browser's fetch refuses any `this` but the window.
    const f = opts.fetch ?? globalThis.fetch;
    this.fetch = (input, init) => f(input, init);
  }

  /** Gets a bearer token with the password (once at a time); rejects with 401 on wrong credentials. */
  login(): Promise<{ token: string; expiresAt: string }> {
    const { user, password } = this.opts;
    if (user === undefined || password === undefined) return Promise.reject(new TypeError('login needs user and password'));
    this.pendingLogin ??= (async () => {
      const started = Date.now();
      const basic = btoa(String.fromCharCode(...new TextEncoder().encode(`${user}:${password}`)));
      const res = await this.send(`${this.base}/auth/token`, 'POST', { headers: { Authorization: `Basic ${basic}` } });
      const answer = (await expectOk(res)) as { token: string; expiresAt: string };
      this.token = answer.token;
      // Renewed once three quarters of its life are gone: never used stale.
      this.renewAt = started + (Date.parse(answer.expiresAt) - started) * 0.75;
      return answer;
    })().finally(() => (this.pendingLogin = undefined));
    return this.pendingLogin;
  }

  private async authorization(): Promise<Record<string, string>> {
    if (this.opts.password !== undefined && (this.token === undefined || Date.now() >= this.renewAt)) await this.login();
    return this.token === undefined ? {} : { Authorization: `Bearer ${this.token}` };
  }

  /** One request with credentials; any HTTP status resolves, no answer rejects (status 0). */
  async request(method: string, pathOrUrl: string, init: RequestOptions = {}): Promise<Response> {
    const url = pathOrUrl.startsWith('/') ? this.base + pathOrUrl : pathOrUrl;
    const auth = await this.authorization();
    let res = await this.send(url, method, { ...init, headers: { ...init.headers, ...auth } });
    // A token may die before its time (password changed, secret rotated): one fresh try.
    if (res.status === 401 && this.opts.password !== undefined && auth.Authorization) {
      await res.body?.cancel();
      this.token = undefined;
      res = await this.send(url, method, { ...init, headers: { ...init.headers, ...(await this.authorization()) } });
    }
    return res;
  }

  private async send(url: string, method: string, init: RequestOptions): Promise<Response> {
    // 0: no limit (an upload or download takes as long as it takes).
    const ms = init.timeoutMs ?? 30_000;
    const signals = [init.signal, ms ? AbortSignal.timeout(ms) : undefined].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    try {
      // Credentials go in our own Authorization header. 'omit' also keeps a
      // browser from answering a 401 with its own login dialog (Fetch: no
      // prompt unless credentials are included).
      const res = await this.fetch(url, { method, headers: init.headers, body: init.body as RequestInit['body'], signal, credentials: 'omit' });
      if (this.unreachable) {
        // Back: whatever waits to retry may go now.
        this.unreachable = false;
        for (const wake of [...this.waiting]) wake();
      }
      return res;
    } catch (err) {
      if (init.signal?.aborted) throw err;
      this.unreachable = true;
      throw new ApieClientError(0, `no answer from ${url}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * A backoff: resolves after `ms`, or as soon as the Apie answers again (any
   * request of this client) or the browser says it is back online, or on abort.
   * Unless `keepAlive`, its timer alone keeps no Node process alive.
   */
  pause(ms: number, signal?: AbortSignal, keepAlive = false): Promise<void> {
    return new Promise((resolve) => {
      const events = globalThis as Partial<EventTarget>;
      const done = () => {
        clearTimeout(timer);
        this.waiting.delete(done);
        signal?.removeEventListener('abort', done);
        events.removeEventListener?.('online', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      if (!keepAlive) (timer as { unref?: () => void }).unref?.();
      this.waiting.add(done);
      signal?.addEventListener('abort', done);
      events.addEventListener?.('online', done);
    });
  }
}

/** The JSON of a 2xx answer; otherwise an ApieClientError with the server's message. @internal */
export async function expectOk(res: Response, event?: PendingEvent): Promise<unknown> {
  if (res.ok) return res.json();
  let message = `${res.status} ${res.statusText}`;
  try {
    message = ((await res.json()) as { errorMessage?: string }).errorMessage ?? message;
  } catch {
    // Not Apie's JSON (a proxy's error page): the status says enough.
  }
  throw new ApieClientError(res.status, message, { event });
}
