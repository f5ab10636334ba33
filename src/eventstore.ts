// What the event handlers need from a stream's log, whoever serves them: a
// CGI process (one request, straight to the files), the server (livelog.ts:
// open files, group commit, waiters woken in memory), or any other store.
// Reads are asynchronous so that a store may be remote and a server never
// waits on them; a view is a snapshot, so a handler may await while it holds one.
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { appendEvents, appendRaw, LogReader, verifyLog, waitForMore, type AppendRequest, type AppendResult, type StoredEvent } from './eventlog.ts';
import { streamDir, streamNames } from './streams.ts';
import type { Context } from './types.ts';

/** An immutable snapshot of a stream's committed events: count and head never move under its holder. */
export interface EventView {
  readonly count: number;
  /** The hash of event `count`, or EMPTY_HASH for an empty log. */
  readonly head: string;
  /** The position of the event with this hash within the view, or undefined. */
  seqOfHash(hash: string): Promise<number | undefined>;
  /** The position of the event with this eventId within the view, or undefined. */
  seqOfEventId(eventId: string): Promise<number | undefined>;
  /** Event seq, 1 ≤ seq ≤ count. */
  read(seq: number): Promise<StoredEvent>;
  /** Events first..last, inclusive, last ≤ count. */
  readRange(first: number, last: number): Promise<StoredEvent[]>;
  close(): void;
}

export interface EventStore {
  /** The stream's name ('default' for /events). */
  readonly name: string;
  /** A snapshot of the committed events as of this call; close() it when done. */
  view(): Promise<EventView>;
  /** Appends one request (an event or a batch), or finds it stored when retried; throws 'conflict', 'precondition-failed'… */
  append(request: AppendRequest): Promise<AppendResult>;
  /** True as soon as the log holds more than `known` events; false after `ms` or on abort. */
  waitForMore(known: number, ms: number, signal?: AbortSignal): Promise<boolean>;
  /** Repairs and recomputes the whole chain; throws 'damaged' naming the first bad event. */
  verify(): Promise<{ count: number; hash: string; tableRebuilt?: boolean }>;
  /** Appends exact JSON bytes continuing the chain after `after`, the current last hash (import, migrate: the command line's stores). */
  appendRaw?(after: string, jsons: Buffer[]): Promise<{ count: number; hash: string }>;
}

/** The event stores of a data directory, one per stream (the name must be valid). */
export interface Streams {
  stream(name: string): EventStore;
  /** The names of the streams that exist, sorted. */
  names(): Promise<string[]>;
  /** Ends what the stores keep open (connections), so the process may exit. */
  close?(): Promise<void>;
}

/**
 * A snapshot over a reader of the log's files, whose count was fixed when it
 * was opened; the reader may be shared by other views of the same count
 * (livelog.ts) and is released, not closed, by close().
 */
export class FileView implements EventView {
  readonly count: number;
  readonly head: string;
  private readonly reader: LogReader;
  private readonly release: () => void;

  /** `head`: the reader's last hash, when the caller knows it already. */
  constructor(reader: LogReader, release: () => void, head?: string) {
    this.reader = reader;
    this.release = release;
    this.count = reader.count;
    this.head = head ?? reader.lastHash();
  }

  async seqOfHash(hash: string): Promise<number | undefined> {
    return this.within(this.reader.seqOfHash(hash));
  }

  async seqOfEventId(eventId: string): Promise<number | undefined> {
    return this.within(this.reader.seqOfEventId(eventId));
  }

  async read(seq: number): Promise<StoredEvent> {
    this.check(seq, seq);
    return this.reader.read(seq);
  }

  async readRange(first: number, last: number): Promise<StoredEvent[]> {
    if (last < first) return [];
    this.check(first, last);
    return this.reader.readRange(first, last);
  }

  close(): void {
    this.release();
  }

  private within(seq: number | undefined): number | undefined {
    return seq !== undefined && seq <= this.count ? seq : undefined;
  }

  private check(first: number, last: number): void {
    if (first < 1 || last > this.count) throw new ApieError('internal', `events ${first}..${last} are outside a view of ${this.count}`);
  }
}

/** The store of a process that serves one request: every call goes to the files. */
export function directStore(dataDir: string, name: string, config: Config): EventStore {
  const dir = streamDir(dataDir, name);
  return {
    name,
    view: async () => {
      const reader = new LogReader(dir);
      try {
        return new FileView(reader, () => reader.close());
      } catch (err) {
        reader.close();
        throw err;
      }
    },
    append: async (request) => settle((await appendEvents(dir, config, [request]))[0]),
    waitForMore: (known, ms, signal) => waitForMore(dir, known, ms, signal),
    verify: () => verifyLog(dir, config),
    appendRaw: (after, jsons) => appendRaw(dir, config, after, jsons),
  };
}

/** The streams of a data directory for a process that serves one request. */
export function directStreams(dataDir: string, config: Config): Streams {
  return {
    stream: (name) => directStore(dataDir, name, config),
    names: async () => streamNames(dataDir),
  };
}

/**
 * The one place a store is chosen: PostgreSQL when "eventStore" names it
 * (its driver loaded at the first call, so no other path pays for it), else
 * the files, through `server` when a server keeps them open.
 */
export function openStreams(dataDir: string, config: Config, server?: () => Streams): Streams {
  if (config.eventStore !== null) return postgresStreams(config.eventStore, server !== undefined);
  return server?.() ?? directStreams(dataDir, config);
}

function postgresStreams(url: string, server: boolean): Streams {
  let loaded: Promise<Streams> | undefined;
  const streams = () => (loaded ??= import('./pgstore/store.ts').then((m) => new m.PgStreams(url, server)));
  const store = (name: string) => streams().then((s) => s.stream(name));
  return {
    stream: (name) => ({
      name,
      view: async () => (await store(name)).view(),
      append: async (request) => (await store(name)).append(request),
      waitForMore: async (known, ms, signal) => (await store(name)).waitForMore(known, ms, signal),
      verify: async () => (await store(name)).verify(),
      appendRaw: async (after, jsons) => (await store(name)).appendRaw!(after, jsons),
    }),
    names: async () => (await streams()).names(),
    close: async () => {
      if (loaded) await (await loaded).close?.();
    },
  };
}

// A process that serves one request opens its streams once.
const opened = new WeakMap<Context, Streams>();

/** The streams a request reaches: the server hands in its own; a CGI process opens the configured store. */
export function streamsOf(ctx: Context): Streams {
  if (ctx.streams) return ctx.streams;
  let streams = opened.get(ctx);
  if (!streams) opened.set(ctx, (streams = openStreams(ctx.dataDir, ctx.config)));
  return streams;
}

/** The result of one request of a batch, or its refusal thrown. */
function settle(result: AppendResult | ApieError): AppendResult {
  if (result instanceof ApieError) throw result;
  return result;
}
