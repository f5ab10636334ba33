// The live tail across servers: every commit that appends to a stream sends
// NOTIFY on one channel with the stream's name (delivered when it commits).
// A process keeps one connection that LISTENs while anyone waits, and wakes
// that stream's waiters; each waiter then reads the head row again, so a
// notification only says "look". A lost connection (a database restart) may
// have lost notifications: when it is back, every waiter looks again.
import type pg from 'pg';
import type { Database } from './connect.ts';

/** The channel every append notifies, with the stream's name as payload. */
export const CHANNEL = 'apie_events';

// Reconnection back-off bounds.
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;

export class Listener {
  private readonly db: Database;
  /** A server keeps listening between waits; a CGI request closes the connection when its wait ends, so the process can exit. */
  private readonly keep: boolean;
  private readonly waiters = new Map<string, Set<() => void>>();
  private client?: pg.Client;
  private connecting?: Promise<void>;
  private retryMs = RETRY_MIN_MS;
  private retryTimer?: NodeJS.Timeout;

  constructor(db: Database, keep: boolean) {
    this.db = db;
    this.keep = keep;
  }

  /**
   * Resolves true as soon as `more()` does, checked now, after each
   * notification for `stream` and after each reconnection; false after `ms`
   * or on abort. A check that fails (the database is away) is retried at the
   * next wake-up; only the first one's failure is thrown.
   */
  async wait(stream: string, more: () => Promise<boolean>, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (await more()) return true;
    if (signal?.aborted) return false;
    return new Promise((resolve) => {
      let checking = false;
      let again = false;
      const wake = async () => {
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        try {
          do {
            again = false;
            if (await more()) return finish(true);
          } while (again);
        } catch {
          // The database is away: the reconnection wakes us again.
        } finally {
          checking = false;
        }
      };
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(false), ms);
      let finished = false;
      const finish = (result: boolean) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const set = this.waiters.get(stream);
        set?.delete(wake);
        if (set?.size === 0) this.waiters.delete(stream);
        if (this.waiters.size === 0 && !this.keep) this.close();
        resolve(result);
      };
      signal?.addEventListener('abort', onAbort);
      let set = this.waiters.get(stream);
      if (!set) this.waiters.set(stream, (set = new Set()));
      set.add(wake);
      // Listening from here on: what was appended before is found by this check.
      this.listen().then(wake, () => {});
    });
  }

  /** Ends the connection (a server that stops). */
  close(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const client = this.client;
    this.client = undefined;
    this.connecting = undefined;
    client?.removeAllListeners();
    client?.on('error', () => {});
    client?.end().catch(() => {});
  }

  private listen(): Promise<void> {
    if (this.client) return Promise.resolve();
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(): Promise<void> {
    let client: pg.Client | undefined;
    try {
      client = await this.db.client();
      client.on('notification', (n) => this.wakeStream(n.payload ?? ''));
      client.on('error', () => this.lost(client!));
      client.on('end', () => this.lost(client!));
      await client.query(`LISTEN ${CHANNEL}`);
      this.client = client;
      this.retryMs = RETRY_MIN_MS;
    } catch (err) {
      client?.removeAllListeners();
      client?.on('error', () => {});
      client?.end().catch(() => {});
      this.retryLater();
      throw err;
    }
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.removeAllListeners();
    client.on('error', () => {});
    client.end().catch(() => {});
    this.retryLater();
  }

  // While anyone waits, connect again, then wake everyone: a notification may have been lost meanwhile.
  private retryLater(): void {
    if (this.retryTimer || this.waiters.size === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.waiters.size === 0) return;
      this.listen().then(() => this.wakeAll(), () => {});
    }, this.retryMs);
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
  }

  private wakeStream(stream: string): void {
    for (const wake of [...(this.waiters.get(stream) ?? [])]) wake();
  }

  private wakeAll(): void {
    for (const set of [...this.waiters.values()]) for (const wake of [...set]) wake();
  }
}
