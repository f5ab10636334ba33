// The server's event stores, one per stream. Each keeps its log's files open
// and its count in memory (an fstat and a small read per request tell
// whether any process appended since), commits concurrent appends and batches in groups (one lock
// and one set of fsyncs for every request that arrived while the previous
// group was being written), and wakes its own long polls and event streams
// from memory: at once for its own appends, through inotify on its own
// directory (and a 500 ms poll) for other processes'. Appends to one stream
// never wake another's waiters.
import { existsSync, fstatSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { committedCount, tableInfo } from './eventindex.ts';
import { appendEvents, count as countEvents, LogReader, verifyLog, type AppendRequest, type AppendResult } from './eventlog.ts';
import { nearestExisting } from './fsutil.ts';
import { FileView, type EventStore, type EventView, type Streams } from './eventstore.ts';
import { streamDir, streamNames } from './streams.ts';

// Stores kept open at once; idle ones beyond this are closed, least recently used first.
const MAX_OPEN = 128;

// A reader that is never closed by its users and catches up on refresh().
class LiveReader extends LogReader {
  /** Brings the view up to the committed count on disk. */
  refresh(): void {
    if (this.offsetsFd === undefined || this.logFd === undefined) {
      // The log did not exist (or was empty) when last opened.
      this.dispose();
      this.open('r');
      return;
    }
    const n = committedCount(this.offsetsFd);
    if (n === this.n) return;
    // The count first, the table after (as in open()): the table then covers it.
    this.n = n;
    const tablePath = join(this.dir, 'table');
    // An append that grew the table replaced the file: follow the rename.
    if (this.tableFd === undefined || !existsSync(tablePath) || statSync(tablePath).ino !== fstatSync(this.tableFd).ino) {
      this.dispose();
      this.open('r');
    } else {
      this.table = tableInfo(this.tableFd);
    }
  }

  /** Users close their view after each request: the files stay open. */
  override close(): void {}

  dispose(): void {
    super.close();
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
  private readonly config: Config;
  private readonly reader: LiveReader;
  // Views handed out and not yet closed: the store is not closed under them.
  private views = 0;
  private queue: Pending[] = [];
  private committing = false;
  private disposed = false;
  private readonly waiters = new Set<() => void>();
  private watcher?: FSWatcher;
  private watched?: string;
  private poll?: NodeJS.Timeout;

  constructor(dataDir: string, name: string, config: Config) {
    this.name = name;
    this.dir = streamDir(dataDir, name);
    this.config = config;
    this.reader = new LiveReader(this.dir);
  }

  async view(): Promise<EventView> {
    // A handler that still holds a store closed meanwhile gets a view of its own.
    if (this.disposed) {
      const reader = new LogReader(this.dir);
      return new FileView(reader, () => reader.close());
    }
    this.reader.refresh();
    const view = new FileView(this.reader, () => this.views--);
    this.views++;
    return view;
  }

  verify(): Promise<{ count: number; hash: string; tableRebuilt: boolean }> {
    return verifyLog(this.dir, this.config);
  }

  private count(): number {
    if (this.disposed) return countEvents(this.dir);
    this.reader.refresh();
    return this.reader.count;
  }

  /** Nothing in flight, nobody waiting or reading: the store may be closed. */
  idle(): boolean {
    return !this.committing && this.queue.length === 0 && this.waiters.size === 0 && this.views === 0;
  }

  /** Closes the files; later calls still work, from fresh views. */
  dispose(): void {
    this.disposed = true;
    this.unwatch();
    this.reader.dispose();
  }

  append(request: AppendRequest): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      if (!this.committing) void this.commit();
    });
  }

  // Requests that arrive while a group is being written wait for the next
  // one; each still gets its answer only after its own group's fsync.
  private async commit(): Promise<void> {
    this.committing = true;
    while (this.queue.length) {
      // A commit runs its writes and fsyncs synchronously, so no request is
      // read while it runs: yield once to the event loop (its poll phase)
      // before taking the group, so that requests that arrived meanwhile join it.
      await new Promise((resolve) => setImmediate(resolve));
      const group = this.queue;
      this.queue = [];
      try {
        const results = await appendEvents(this.dir, this.config, group.map((p) => p.request));
        group.forEach((p, i) => {
          const result = results[i];
          if (result instanceof ApieError) p.reject(result);
          else p.resolve(result);
        });
      } catch (err) {
        group.forEach((p) => p.reject(err));
      }
      this.wake();
    }
    this.committing = false;
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
  private readonly config: Config;
  // In order of last use, least recent first.
  private readonly stores = new Map<string, LiveStore>();

  constructor(dataDir: string, config: Config) {
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
