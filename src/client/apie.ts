// The client's calls, as the Client section of the HTTP contract lists them.
import { eventInputProblem } from '../eventinput.ts';
import { HASH_RE } from '../sha256.ts';
import { digest, EMPTY_HASH, hex, uuid } from './chain.ts';
import { indexedDbStorage } from './idbstorage.ts';
import { follow } from './live.ts';
import { Replica, View } from './replica.ts';
import { memoryStorage } from './storage.ts';
import { eventsPath, expectOk, Transport } from './transport.ts';
import type { ApieOptions, NewEvent, PendingEvent, Projection, ProjectionOptions, Reducer, ClientStorage, StoredEvent, SyncResult, Uploaded } from './types.ts';

const PAGE = 1000;

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

// The next page's URL from a Link header, if any.
function nextLink(link: string | null): string | undefined {
  return link ? /<([^>]*)>\s*;\s*rel="?next"?/.exec(link)?.[1] : undefined;
}

export class Apie {
  private readonly transport: Transport;
  private readonly storage: ClientStorage;
  private readonly scope: string;
  private readonly onError: (err: Error) => void;
  private readonly replicas = new Map<string, Replica>();
  private batches?: Promise<boolean>;

  constructor(opts: ApieOptions) {
    this.transport = new Transport(opts);
    this.storage = opts.storage ?? (typeof (globalThis as { indexedDB?: unknown }).indexedDB === 'undefined' ? memoryStorage() : indexedDbStorage());
    // Pending events belong to one user of one Apie: never pushed as anyone else.
    this.scope = `${this.transport.base} ${opts.user ?? ''}`;
    this.onError = opts.onError ?? ((err) => console.error('apie:', err));
  }

  /** Gets a bearer token with the user's password (to keep instead of the password). */
  login(): Promise<{ token: string; expiresAt: string }> {
    return this.transport.login();
  }

  private replica(stream: string): Replica {
    let r = this.replicas.get(stream);
    if (!r) {
      eventsPath(stream);
      r = new Replica(this.transport, this.storage, `${this.scope} ${stream}`, stream, this.onError, () => this.supportsBatches());
      this.replicas.set(stream, r);
    }
    return r;
  }

  // Batches (a JSON array appended at once) came with streams: detected, not
  // assumed. Asked once the server has answered something else, so a failure
  // here is a refusal (a CORS preflight of an unknown path fails like no answer).
  private supportsBatches(): Promise<boolean> {
    this.batches ??= this.transport.request('GET', '/streams').then(
      async (res) => {
        await res.body?.cancel();
        return res.ok;
      },
      () => false,
    );
    return this.batches;
  }

  /** Queues events durably and returns them as pending; then syncs in the background. Never throws for being offline. */
  async append(stream: string, events: NewEvent | NewEvent[]): Promise<PendingEvent[]> {
    const queued = (Array.isArray(events) ? events : [events]).map((e) => {
      const problem = eventInputProblem(e);
      if (problem) throw new TypeError(problem);
      // The body as the server will store it, so that reducers see one value before and after.
      return { eventId: e.eventId?.toLowerCase() ?? uuid(), eventType: e.eventType, body: JSON.parse(JSON.stringify(e.body)) };
    });
    const replica = this.replica(stream);
    await replica.enqueue(queued);
    replica.kick();
    return queued;
  }

  /** Pushes the stream's pending events (default: `default`); see the README for the algorithm. */
  sync(stream = 'default'): Promise<SyncResult> {
    return this.replica(stream).sync();
  }

  /** The stream's events not yet acknowledged, oldest first. */
  async pending(stream: string): Promise<PendingEvent[]> {
    const replica = this.replica(stream);
    await replica.load();
    return [...replica.pending];
  }

  /** Every acknowledged event after `after` (default: from the start), `limit` a page, following Link pages. */
  async *read(stream: string, { after = EMPTY_HASH, limit = PAGE }: { after?: string; limit?: number } = {}): AsyncGenerator<StoredEvent> {
    const page = async (url: string) => {
      const res = await this.transport.request('GET', url);
      return { events: (await expectOk(res)) as StoredEvent[], next: nextLink(res.headers.get('link')) };
    };
    let next: Promise<{ events: StoredEvent[]; next?: string }> | undefined = page(`${eventsPath(stream)}?after=${after}&limit=${limit}`);
    while (next) {
      const current: { events: StoredEvent[]; next?: string } = await next;
      // The next page is on its way while this one is handed out.
      next = current.next === undefined ? undefined : page(current.next);
      next?.catch(() => {});
      yield* current.events;
    }
  }

  /** Live events after `after` (default: from the start); returns the function that stops them. */
  subscribe(stream: string, opts: { after?: string; onError?: (err: Error) => void }, onEvent: (event: StoredEvent) => void): () => void {
    return follow(this.transport, stream, opts.after ?? EMPTY_HASH, {
      onEvents: (events) => events.forEach(onEvent),
      onError: opts.onError ?? this.onError,
    });
  }

  /** `reducer` folded over acknowledged events, then pending ones, kept current live. */
  projection<S>(stream: string, reducer: Reducer<S>, initial: S, opts: ProjectionOptions<S> = {}): Projection<S> {
    const replica = this.replica(stream);
    const view = new View(reducer, initial, opts.cache, opts.onChange, replica);
    const ready = replica.open(view);
    ready.catch(() => {});
    return {
      get state() {
        return view.state;
      },
      ready,
      close: () => replica.close(view),
    };
  }

  /** Stores bytes in the content store, unless they are there already. */
  async upload(data: Uint8Array | ArrayBuffer | Blob, opts: { name?: string; contentType?: string } = {}): Promise<Uploaded> {
    const blob = data instanceof Blob ? data : undefined;
    const bytes = blob ? new Uint8Array(await blob.arrayBuffer()) : data instanceof Uint8Array ? data : new Uint8Array(data as ArrayBuffer);
    const sum = await digest(bytes);
    const hash = hex(sum);
    const head = await this.transport.request('HEAD', `/storage/${hash}`);
    // Same hash, same bytes: the size is ours to tell (a proxy may drop a HEAD's Content-Length).
    if (head.ok) return { hash, size: bytes.length, url: `${this.transport.base}/storage/${hash}` };
    if (head.status !== 404) await expectOk(head);
    const name = opts.name ?? (blob as File | undefined)?.name ?? '';
    const res = await this.transport.request('PUT', `/storage/${encodeURIComponent(name)}`, {
      headers: { 'Content-Type': opts.contentType || blob?.type || 'application/octet-stream', 'Content-Digest': `sha-256=:${base64(sum)}:` },
      body: blob ?? bytes,
      timeoutMs: 0,
    });
    const { size, url } = (await expectOk(res)) as Uploaded;
    return { hash, size, url };
  }

  /** A blob's bytes: a Blob in browsers, a Uint8Array in Node. */
  async download(hash: string): Promise<Blob | Uint8Array> {
    if (!HASH_RE.test(hash)) throw new TypeError('a blob hash is 64 lowercase hex characters');
    const res = await this.transport.request('GET', `/storage/${hash}`, { timeoutMs: 0 });
    if (!res.ok) await expectOk(res);
    return (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node ? new Uint8Array(await res.arrayBuffer()) : res.blob();
  }

  /** Stops live feeds, projections and background syncs. */
  close(): void {
    for (const r of this.replicas.values()) r.shutdown();
    this.replicas.clear();
  }
}
