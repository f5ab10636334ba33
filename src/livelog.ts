// The server's event store. It keeps the log's files open and its count in
// memory (one fstat per request tells whether any process appended since),
// commits concurrent appends in groups (one lock and one set of fsyncs for
// every request that arrived while the previous group was being written), and
// wakes long polls and event streams from memory: at once for its own
// appends, through inotify (and a 500 ms poll) for other processes'.
import { existsSync, fstatSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { ENTRY_SIZE, tableInfo } from './eventindex.ts';
import { appendEvents, eventsDir, LogReader, type AppendRequest, type AppendResult } from './eventlog.ts';
import type { EventStore } from './eventstore.ts';

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
    const n = Math.floor(fstatSync(this.offsetsFd).size / ENTRY_SIZE);
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
  private readonly dataDir: string;
  private readonly config: Config;
  private readonly reader: LiveReader;
  private queue: Pending[] = [];
  private committing = false;
  private readonly waiters = new Set<() => void>();
  private watcher?: FSWatcher;
  private poll?: NodeJS.Timeout;

  constructor(dataDir: string, config: Config) {
    this.dataDir = dataDir;
    this.config = config;
    this.reader = new LiveReader(dataDir);
  }

  view(): LogReader {
    this.reader.refresh();
    return this.reader;
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
      const group = this.queue;
      this.queue = [];
      try {
        const results = await appendEvents(this.dataDir, this.config, group.map((p) => p.request));
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
    if (this.view().count > known || signal?.aborted) return Promise.resolve(this.reader.count > known);
    return new Promise((resolve) => {
      const check = () => {
        if (this.view().count > known) finish(true);
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

  // Other processes' appends: inotify on the events directory while anyone
  // waits, and a slow poll for file systems without it (or before the
  // directory exists).
  private watch(): void {
    if (this.poll) return;
    this.poll = setInterval(() => {
      if (!this.watcher) this.startWatcher();
      this.wake();
    }, 500);
    this.startWatcher();
  }

  private startWatcher(): void {
    const dir = eventsDir(this.dataDir);
    if (!existsSync(dir)) return;
    try {
      this.watcher = watch(dir, { persistent: false }, () => this.wake());
      this.watcher.on('error', () => this.unwatchFiles());
    } catch {
      this.watcher = undefined;
    }
  }

  private unwatchFiles(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  private unwatch(): void {
    this.unwatchFiles();
    clearInterval(this.poll);
    this.poll = undefined;
  }
}
