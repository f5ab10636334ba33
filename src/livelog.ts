// The server's event stores, one per stream. Each keeps its log's files open
// and its count in memory (an fstat and a small read once per turn of the
// event loop tell whether any process appended since), commits concurrent appends and batches in groups (one lock
// and one set of fsyncs for every request that arrived while the previous
// group was being written), and wakes its own long polls and event streams
// from memory: at once for its own appends, through inotify on its own
// directory (and a 500 ms poll) for other processes'. Appends to one stream
// never wake another's waiters.
import { watch, type FSWatcher } from 'node:fs';
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { appendEvents, count as countEvents, LogReader, verifyLog, type AppendRequest, type AppendResult } from './eventlog.ts';
import { nearestExisting } from './fsutil.ts';
import { FileView, type EventStore, type EventView, type Streams } from './eventstore.ts';
import { streamDir, streamNames } from './streams.ts';
import { OncePerTurn } from './turn.ts';

// The longest a group commit waits for its group to grow (a commit's three
// fsyncs take 5–10 ms here): a single client never waits, its groups are of one.
const GATHER_MS = 1;

// Stores kept open at once; idle ones beyond this are closed, least recently used first.
const MAX_OPEN = 128;

// One generation of the log's open files: a LogReader, whose count is fixed
// when it is opened (an immutable snapshot), shared by every view of that
// count. When the log grows, the store opens a new one and this one is
// closed once its last view is released, so a handler may await while it
// holds a view and nothing moves under it. Its reads stay synchronous
// preads: an 81-byte read of the log from the page cache took 0.7 µs with
// readSync and 30 µs with FileHandle.read (13 µs each with 16 in flight), a
// trip through the thread pool and a promise per read, measured here on Node 22.
class Snapshot {
  readonly reader: LogReader;
  readonly head: string;
  private holders = 0;
  private replaced = false;

  constructor(dir: string) {
    this.reader = new LogReader(dir);
    try {
      this.head = this.reader.lastHash();
    } catch (err) {
      this.reader.close();
      throw err;
    }
  }

  /** A view of this snapshot; closing it lets the files go once the store has moved on. */
  view(release: () => void): EventView {
    this.holders++;
    return new FileView(this.reader, () => {
      release();
      if (--this.holders === 0 && this.replaced) this.reader.close();
    }, this.head);
  }

  /** The store has a newer snapshot (or is closed): close once nobody holds this one. */
  retire(): void {
    this.replaced = true;
    if (this.holders === 0) this.reader.close();
  }
}

interface Pending {
  request: AppendRequest;
  resolve: (result: AppendResult) => void;
  reject: (err: unknown) => void;
}

export class LiveStore implements EventStore {
  readonly name: string;
  readonly dir: string;
  private readonly config: () => Config;
  // The latest snapshot; replaced when the committed count on disk moves.
  private latest?: Snapshot;
  // Whether another process appended is checked once per turn of the event
  // loop (turn.ts), and at once after this store's own commits.
  private readonly check = new OncePerTurn();
  // Views handed out and not yet closed: the store is not closed under them.
  private views = 0;
  private queue: Pending[] = [];
  private committing = false;
  // How many clients are appending, as of the last commit (its group and
  // what queued meanwhile), and what ends a wait for the next group to grow as large.
  private expected = 1;
  private gathered?: () => void;
  private disposed = false;
  private readonly waiters = new Set<() => void>();
  private watcher?: FSWatcher;
  private watched?: string;
  private poll?: NodeJS.Timeout;
  private verifying?: Promise<{ count: number; hash: string; tableRebuilt: boolean }>;

  constructor(dataDir: string, name: string, config: () => Config) {
    this.name = name;
    this.dir = streamDir(dataDir, name);
    this.config = config;
  }

  async view(): Promise<EventView> {
    // A handler that still holds a store closed meanwhile gets a view of its own.
    if (this.disposed) {
      const reader = new LogReader(this.dir);
      return new FileView(reader, () => reader.close());
    }
    const snapshot = this.check.due() ? this.refresh() : (this.latest ?? this.refresh());
    this.views++;
    return snapshot.view(() => this.views--);
  }

  // The snapshot of the committed count on disk now: a new one when it moved.
  private refresh(): Snapshot {
    if (this.latest && this.latest.reader.committedNow() === this.latest.reader.count) return this.latest;
    const next = new Snapshot(this.dir);
    this.latest?.retire();
    this.latest = next;
    return next;
  }

  private count(): number {
    if (this.disposed) return countEvents(this.dir);
    return this.refresh().reader.count;
  }

  /** Nothing in flight, nobody waiting or reading: the store may be closed. */
  idle(): boolean {
    return !this.committing && this.queue.length === 0 && this.waiters.size === 0 && this.views === 0;
  }

  /** Closes the files; later calls still work, from fresh views. */
  dispose(): void {
    this.disposed = true;
    this.unwatch();
    this.latest?.retire();
    this.latest = undefined;
  }

  append(request: AppendRequest): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      if (this.queue.length >= this.expected) this.gathered?.();
      if (!this.committing) void this.commit();
    });
  }

  // Requests that arrive while a group is being written wait for the next
  // one; each still gets its answer only after its own group's fsync.
  private async commit(): Promise<void> {
    this.committing = true;
    while (this.queue.length) {
      // Requests queue up while a commit awaits its fsyncs (in the thread
      // pool); yield once more to the event loop (its poll phase) before taking
      // the group, so that requests read in the same turn join it too.
      await new Promise((resolve) => setImmediate(resolve));
      if (this.queue.length < this.expected) await this.gather();
      // Taken once the lock is held: with several workers, what arrives
      // while another worker commits joins this group.
      let group: Pending[] | null = null;
      const take = (): Pending[] => {
        group ??= this.queue.splice(0);
        return group;
      };
      try {
        const results = await appendEvents(this.dir, this.config(), () => take().map((p) => p.request), true);
        take().forEach((p, i) => {
          const result = results[i];
          if (result instanceof ApieError) p.reject(result);
          else p.resolve(result);
        });
      } catch (err) {
        // Or the lock was not had (busy, misconfigured): what is queued gets the refusal.
        for (const p of take()) p.reject(err);
      }
      this.expected = Math.max(1, take().length + this.queue.length);
      this.check.expire();
      this.wake();
    }
    this.committing = false;
  }

  // Waits until as many requests are queued as there are clients appending
  // (the last group and what queued during its commit), at most GATHER_MS.
  // Clients answered by one group send their next requests as soon as the
  // answers reach them: without this wait, the few queued by then made a
  // group of their own, and 64 clients came in groups of 63 and 1 (or 32
  // and 32) in turn, each group paying a whole commit's fsyncs.
  private gather(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.gathered?.(), GATHER_MS);
      this.gathered = () => {
        this.gathered = undefined;
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Verifies the log (eventlog.ts: without holding the lock for the whole pass); a verify asked for while one runs joins it. */
  verify(): Promise<{ count: number; hash: string; tableRebuilt: boolean }> {
    this.verifying ??= verifyLog(this.dir, this.config()).finally(() => {
      this.verifying = undefined;
      // A repair or a rebuilt table: the next view opens the files again.
      this.latest?.retire();
      this.latest = undefined;
    });
    return this.verifying;
  }

  waitForMore(known: number, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.count() > known || signal?.aborted) return Promise.resolve(this.count() > known);
    return new Promise((resolve) => {
      const check = () => {
        if (this.count() > known) finish(true);
      };
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(false), ms);
      const finish = (more: boolean) => {
        this.waiters.delete(check);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (this.waiters.size === 0) this.unwatch();
        resolve(more);
      };
      this.waiters.add(check);
      signal?.addEventListener('abort', onAbort);
      this.watch();
    });
  }

  private wake(): void {
    for (const check of [...this.waiters]) check();
  }

  // Other processes' appends: inotify on the stream's directory while anyone
  // waits (on its nearest ancestor until its first append creates it), and a
  // slow poll for file systems without inotify.
  private watch(): void {
    if (this.poll) return;
    this.poll = setInterval(() => {
      if (!this.watcher || this.watched !== nearestExisting(this.dir)) this.startWatcher();
      this.wake();
    }, 500);
    this.startWatcher();
  }

  private startWatcher(): void {
    this.unwatchFiles();
    const dir = nearestExisting(this.dir);
    try {
      this.watcher = watch(dir, { persistent: false }, () => this.wake());
      this.watcher.on('error', () => this.unwatchFiles());
      this.watched = dir;
    } catch {
      this.watcher = undefined;
    }
  }

  private unwatchFiles(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.watched = undefined;
  }

  private unwatch(): void {
    this.unwatchFiles();
    clearInterval(this.poll);
    this.poll = undefined;
  }
}

/** The server's streams: a live store per stream, opened on first use. */
export class LiveStreams implements Streams {
  private readonly dataDir: string;
  /** The configuration as of now (the server re-reads apie.json when it changes). */
  private readonly config: () => Config;
  // In order of last use, least recent first.
  private readonly stores = new Map<string, LiveStore>();

  constructor(dataDir: string, config: () => Config) {
    this.dataDir = dataDir;
    this.config = config;
  }

  stream(name: string): LiveStore {
    let store = this.stores.get(name);
    if (store) {
      this.stores.delete(name);
    } else {
      store = new LiveStore(this.dataDir, name, this.config);
      this.evict();
    }
    this.stores.set(name, store);
    return store;
  }

  async names(): Promise<string[]> {
    return streamNames(this.dataDir);
  }

  private evict(): void {
    for (const [name, store] of this.stores) {
      if (this.stores.size < MAX_OPEN) return;
      if (!store.idle()) continue;
      store.dispose();
      this.stores.delete(name);
    }
  }
}
