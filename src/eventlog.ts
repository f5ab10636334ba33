// The event log: hash-chained events in DATA/events/. `log` holds records
// `<hash> <length>\n<J>\n` where J are exactly the bytes hashed; `offsets`
// commits them (see eventindex.ts) and `table` finds them by hash or eventId.
// Appends are serialised by a lock and made durable in the order log → table
// → offsets, so the offsets size is the committed count: readers never look
// past it and never take the lock. Knows nothing of HTTP.
import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, fchmodSync, chmodSync, mkdirSync, openSync, watch, existsSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Config } from './config.ts';
import { fsyncDir } from './fsutil.ts';
import {
  ENTRY_SIZE, KIND_HASH, KIND_ID, candidates, encodeEntries, hashKey, idKey, insertSlots, readEntries, readFully,
  rebuildTable, slotsOf, tableInfo, writeFully, type Entry, type TableInfo,
} from './eventindex.ts';
import { withLock } from './lock.ts';

/** sha256(""): the hash of the empty log, and the "previous hash" of the first event. */
export const EMPTY_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** A committed event: its position (1-based), hash and exact JSON bytes. */
export interface StoredEvent {
  seq: number;
  hash: string;
  json: Buffer;
}

/** An event as the API creates it; J is JSON.stringify of these fields in this order. */
export interface NewEvent {
  eventId: string;
  eventType: string;
  body: unknown;
  createdBy: string;
  createdAt: string;
}

export interface AppendRequest {
  event: NewEvent;
  /** Append only while the last hash is one of these ('*' matches any log). */
  ifMatch?: string[];
}

export type AppendResult =
  | { outcome: 'appended' | 'existing'; event: StoredEvent }
  | { outcome: 'conflict'; message: string }
  | { outcome: 'precondition-failed'; message: string; lastHash: string };

/** The log is damaged at `position` (1-based event number); the message says how. */
export class LogCorrupt extends Error {
  readonly position: number;
  constructor(position: number, what: string) {
    super(`event ${position}: ${what}`);
    this.position = position;
  }
}

const HASH_RE = /^[0-9a-f]{64}$/;
const NL = 0x0a;
// Longest record header: 64 hex, a space, up to 15 digits, a newline.
const MAX_HEADER = 81;

/** The directory of the event log inside a data directory. */
export function eventsDir(dataDir: string): string {
  return join(dataDir, 'events');
}

interface Parsed {
  hash: string;
  json: Buffer;
  /** Position just after the record's closing newline. */
  end: number;
}

/** Parses the record at buf[pos…]; undefined when it is cut short or malformed. */
function parseRecord(buf: Buffer, pos: number): Parsed | undefined {
  if (buf.length - pos < 67 || buf[pos + 64] !== 0x20) return undefined;
  const hash = buf.toString('latin1', pos, pos + 64);
  if (!HASH_RE.test(hash)) return undefined;
  const nl = buf.indexOf(NL, pos + 65);
  if (nl < 0 || nl > pos + MAX_HEADER) return undefined;
  const digits = buf.toString('latin1', pos + 65, nl);
  if (!/^(0|[1-9]\d*)$/.test(digits)) return undefined;
  const start = nl + 1;
  const end = start + Number(digits);
  if (end >= buf.length || buf[end] !== NL) return undefined;
  return { hash, json: buf.subarray(start, end), end: end + 1 };
}

/** Bytes a record takes in `log`. */
function recordLength(hash: string, json: Buffer): number {
  return hash.length + 1 + String(json.length).length + 1 + json.length + 1;
}

function encodeRecord(hash: string, json: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${hash} ${json.length}\n`, 'latin1'), json, Buffer.of(NL)]);
}

function eventIdOf(json: Buffer): string | undefined {
  try {
    const id = JSON.parse(json.toString('utf8'))?.eventId;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

const NO_ID = Buffer.alloc(8);

// The eventId of stored bytes that must be a JSON object (checked by verify).
function objectEventId(json: Buffer, seq: number): string | undefined {
  let value;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch {
    throw new LogCorrupt(seq, 'stored bytes are not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new LogCorrupt(seq, 'stored bytes are not a JSON object');
  return typeof value.eventId === 'string' ? value.eventId : undefined;
}

function openIfExists(file: string, flags: string): number | undefined {
  try {
    return openSync(file, flags);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * A read-only view of the committed events, fixed when opened: later appends
 * are not seen. Takes no lock; close() it.
 */
export class LogReader {
  readonly dir: string;
  protected n: number;
  protected offsetsFd?: number;
  protected logFd?: number;
  protected tableFd?: number;
  protected table?: TableInfo;

  /** Opens the files read-only, or for writing ('r+') when the caller holds the lock. */
  constructor(dataDir: string, flags: 'r' | 'r+' = 'r') {
    this.dir = eventsDir(dataDir);
    this.offsetsFd = openIfExists(join(this.dir, 'offsets'), flags);
    // The count first, the table after: any table opened later covers it.
    this.n = this.offsetsFd === undefined ? 0 : Math.floor(fstatSync(this.offsetsFd).size / ENTRY_SIZE);
    if (this.n === 0 && flags === 'r') return;
    this.logFd = openSync(join(this.dir, 'log'), flags);
    this.tableFd = openIfExists(join(this.dir, 'table'), flags);
    if (this.tableFd !== undefined) this.table = tableInfo(this.tableFd);
  }

  /** The number of events this view sees. */
  get count(): number {
    return this.n;
  }

  close(): void {
    for (const fd of [this.offsetsFd, this.logFd, this.tableFd]) if (fd !== undefined) closeSync(fd);
    this.offsetsFd = this.logFd = this.tableFd = undefined;
  }

  /** The hash of the last event (EMPTY_HASH for an empty log). */
  lastHash(): string {
    return this.count === 0 ? EMPTY_HASH : this.read(this.count).hash;
  }

  /** The position of the event with this hash, or undefined. */
  seqOfHash(hash: string): number | undefined {
    return this.lookup(hashKey(hash), KIND_HASH, (seq) => this.headerAt(seq).hash === hash);
  }

  /** The position of the event with this eventId, or undefined. */
  seqOfEventId(eventId: string): number | undefined {
    return this.lookup(idKey(eventId), KIND_ID, (seq) => eventIdOf(this.read(seq).json) === eventId);
  }

  private lookup(key: Buffer, kind: number, confirm: (seq: number) => boolean): number | undefined {
    const seen = new Set<number>();
    if (this.table && this.tableFd !== undefined) {
      for (const seq of candidates(this.tableFd, this.table, key, kind)) {
        // Slots past the count belong to an append not (yet) committed.
        if (seq <= this.count && !seen.has(seq) && confirm(seq)) return seq;
        seen.add(seq);
      }
    }
    // Events the table does not cover (missing table, or not yet rebuilt): scan their entries.
    const from = this.table ? this.table.indexed + 1 : 1;
    const field = kind === KIND_HASH ? 'hashKey' : 'idKey';
    for (let first = from; first <= this.count; first += 4096) {
      const entries = readEntries(this.offsetsFd!, first, Math.min(this.count, first + 4095));
      for (let i = 0; i < entries.length; i++) {
        if (entries[i][field].equals(key) && confirm(first + i)) return first + i;
      }
    }
    return undefined;
  }

  /** The record header of event seq: its hash and where its JSON lies. */
  protected headerAt(seq: number): { hash: string; offset: number; start: number; end: number } {
    const [entry] = readEntries(this.offsetsFd!, seq, seq);
    const buf = Buffer.alloc(MAX_HEADER);
    const got = readFully(this.logFd!, buf, entry.offset);
    const nl = buf.subarray(0, got).indexOf(NL);
    const hash = buf.toString('latin1', 0, 64);
    const length = Number(buf.toString('latin1', 65, nl));
    if (nl < 66 || !HASH_RE.test(hash) || !Number.isSafeInteger(length)) throw new LogCorrupt(seq, 'record header is damaged');
    if (!hashKey(hash).equals(entry.hashKey)) throw new LogCorrupt(seq, 'offsets entry does not match its record');
    const start = entry.offset + nl + 1;
    return { hash, offset: entry.offset, start, end: start + length + 1 };
  }

  /** One event. */
  read(seq: number): StoredEvent {
    const h = this.headerAt(seq);
    const json = Buffer.allocUnsafe(h.end - 1 - h.start);
    readFully(this.logFd!, json, h.start);
    return { seq, hash: h.hash, json };
  }

  /** Events first..last (inclusive, within the count) with one read of the log. */
  readRange(first: number, last: number): StoredEvent[] {
    if (last < first) return [];
    const entries = readEntries(this.offsetsFd!, first, last);
    const start = entries[0].offset;
    const end = last < this.count ? readEntries(this.offsetsFd!, last + 1, last + 1)[0].offset : this.headerAt(last).end;
    const buf = Buffer.allocUnsafe(end - start);
    readFully(this.logFd!, buf, start);
    return entries.map((e, i) => {
      const r = parseRecord(buf, e.offset - start);
      if (!r) throw new LogCorrupt(first + i, 'record is damaged');
      if (!hashKey(r.hash).equals(e.hashKey)) throw new LogCorrupt(first + i, 'offsets entry does not match its record');
      return { seq: first + i, hash: r.hash, json: r.json };
    });
  }
}

/** Count and last hash of the committed log, cheaply (two small reads). */
export function head(dataDir: string): { count: number; hash: string } {
  const reader = new LogReader(dataDir);
  try {
    return { count: reader.count, hash: reader.lastHash() };
  } finally {
    reader.close();
  }
}

/** The number of committed events: one stat. */
export function count(dataDir: string): number {
  const fd = openIfExists(join(eventsDir(dataDir), 'offsets'), 'r');
  if (fd === undefined) return 0;
  try {
    return Math.floor(fstatSync(fd).size / ENTRY_SIZE);
  } finally {
    closeSync(fd);
  }
}

/**
 * Resolves true as soon as the log holds more than `known` events, false
 * after `ms`. Watches the directory (inotify) and polls as a fallback.
 */
export function waitForMore(dataDir: string, known: number, ms: number): Promise<boolean> {
  if (count(dataDir) > known) return Promise.resolve(true);
  return new Promise((resolve) => {
    const dir = existsSync(eventsDir(dataDir)) ? eventsDir(dataDir) : dataDir;
    let watcher: ReturnType<typeof watch> | undefined;
    const done = (more: boolean) => {
      clearInterval(poll);
      clearTimeout(timer);
      watcher?.close();
      resolve(more);
    };
    const check = () => {
      if (count(dataDir) > known) done(true);
    };
    const poll = setInterval(check, 500);
    const timer = setTimeout(() => done(false), ms);
    try {
      watcher = watch(dir, { persistent: false }, check);
      watcher.on('error', () => {});
    } catch {
      // No inotify here: the poll still answers.
    }
  });
}

type Hasher = (prev: string, json: Buffer) => string;

async function loadHasher(): Promise<Hasher> {
  // Loaded at the point of use: reads never hash.
  const { createHash } = await import('node:crypto');
  return (prev, json) => createHash('sha256').update(prev + '\n').update(json).digest('hex');
}

/** The write side, used only while holding the lock. */
class LogWriter extends LogReader {
  /** End of the last committed record in `log`. */
  private end = 0;
  private last = EMPTY_HASH;
  private readonly mode: number;
  private readonly sha: Hasher;

  constructor(dataDir: string, config: Config, sha: Hasher) {
    super(dataDir, 'r+');
    this.mode = config.fileMode;
    this.sha = sha;
  }

  /**
   * Brings the files back to a committed state after a crash: drops a torn
   * offsets tail, commits complete chain-valid records written past it, cuts
   * off an unfinished record, and completes or rebuilds the table.
   */
  reconcile(): void {
    const size = fstatSync(this.offsetsFd!).size;
    const committed = Math.floor(size / ENTRY_SIZE);
    const logSize = fstatSync(this.logFd!).size;
    // An entry whose record is not all there was torn by a power loss: its record
    // was synced before it, so the tail scan below finds that record again.
    this.n = committed;
    while (this.n > 0 && !this.entryIsSound(this.n, logSize)) this.n--;
    if (this.n > 0) {
      const h = this.headerAt(this.n);
      this.end = h.end;
      this.last = h.hash;
    }
    const { found, cut } = this.scanTail(logSize);
    // Only an unsynced tail may be dropped; never a record that was committed.
    if (this.n + found.length < committed) throw new LogCorrupt(this.n + found.length + 1, 'committed record is missing or damaged');
    if (size !== this.n * ENTRY_SIZE) ftruncateSync(this.offsetsFd!, this.n * ENTRY_SIZE);
    if (cut < logSize) ftruncateSync(this.logFd!, cut);
    this.completeTable();
    if (found.length) this.commit(found, this.end, Buffer.alloc(0));
  }

  // The complete, chain-valid records past the committed end, and where the rest begins.
  private scanTail(logSize: number): { found: { hash: string; json: Buffer }[]; cut: number } {
    const tail = Buffer.allocUnsafe(logSize - this.end);
    readFully(this.logFd!, tail, this.end);
    const found: { hash: string; json: Buffer }[] = [];
    let pos = 0;
    let prev = this.last;
    for (let r = parseRecord(tail, 0); r && this.sha(prev, r.json) === r.hash; r = parseRecord(tail, pos)) {
      found.push({ hash: r.hash, json: r.json });
      prev = r.hash;
      pos = r.end;
    }
    return { found, cut: this.end + pos };
  }

  private entryIsSound(seq: number, logSize: number): boolean {
    const [entry] = readEntries(this.offsetsFd!, seq, seq);
    try {
      const h = this.headerAt(seq);
      const close = Buffer.alloc(1);
      return h.end <= logSize && readFully(this.logFd!, close, h.end - 1) === 1 && close[0] === NL && hashKey(h.hash).equals(entry.hashKey);
    } catch {
      return false;
    }
  }

  private completeTable(): void {
    if (this.table && this.table.indexed >= this.n) return;
    const from = this.table ? this.table.indexed + 1 : 1;
    const entries = readEntries(this.offsetsFd!, from, this.n);
    if (!this.table || !insertSlots(this.tableFd!, this.table, slotsOf(entries, from), this.n)) this.rebuild(0);
    fdatasyncSync(this.tableFd!);
  }

  private rebuild(room: number): void {
    if (this.tableFd !== undefined) closeSync(this.tableFd);
    this.tableFd = rebuildTable(join(this.dir, 'table'), readEntries(this.offsetsFd!, 1, this.n), room, this.mode);
    this.table = tableInfo(this.tableFd);
  }

  /**
   * Makes records durable and visible: writes their bytes at `at` (unless
   * already there), fdatasync log, add them to the table, fdatasync, append
   * their offsets entries (the commit point), fdatasync.
   */
  private commit(records: { hash: string; json: Buffer }[], at: number, bytes: Buffer): void {
    if (bytes.length) writeFully(this.logFd!, bytes, at);
    fdatasyncSync(this.logFd!);
    const entries: Entry[] = [];
    let offset = at;
    for (const r of records) {
      const id = eventIdOf(r.json);
      entries.push({ offset, hashKey: hashKey(r.hash), idKey: id === undefined ? NO_ID : idKey(id) });
      offset += recordLength(r.hash, r.json);
    }
    const slots = slotsOf(entries, this.n + 1);
    if (!this.table || !insertSlots(this.tableFd!, this.table, slots, this.n + records.length)) {
      this.rebuild(slots.length);
      insertSlots(this.tableFd!, this.table!, slots, this.n + records.length);
    }
    fdatasyncSync(this.tableFd!);
    writeFully(this.offsetsFd!, encodeEntries(entries), this.n * ENTRY_SIZE);
    fdatasyncSync(this.offsetsFd!);
    this.n += records.length;
    this.end = offset;
    this.last = records[records.length - 1].hash;
  }

  /** Appends new events as one batch, deciding each request in order. */
  append(requests: AppendRequest[]): AppendResult[] {
    const results: AppendResult[] = [];
    const batch: { hash: string; json: Buffer }[] = [];
    const pendingIds = new Map<string, { seq: number; event: NewEvent; hash: string; json: Buffer }>();
    let last = this.last;
    for (const { event, ifMatch } of requests) {
      const earlier = pendingIds.get(event.eventId);
      const seq = earlier ? undefined : this.seqOfEventId(event.eventId);
      if (earlier || seq !== undefined) {
        const stored = earlier ?? this.read(seq!);
        const parsed = earlier ? earlier.event : JSON.parse(stored.json.toString('utf8'));
        const same = parsed.eventType === event.eventType && isDeepStrictEqual(parsed.body, event.body);
        results.push(same
          ? { outcome: 'existing', event: { seq: stored.seq, hash: stored.hash, json: stored.json } }
          : { outcome: 'conflict', message: `eventId ${event.eventId} is already in the log with other content` });
        continue;
      }
      if (ifMatch && !ifMatch.includes('*') && !ifMatch.includes(last)) {
        results.push({ outcome: 'precondition-failed', message: `the log's last hash is ${last}, not the one in If-Match`, lastHash: last });
        continue;
      }
      const json = Buffer.from(JSON.stringify({
        eventId: event.eventId, eventType: event.eventType, body: event.body, createdBy: event.createdBy, createdAt: event.createdAt,
      }));
      const hash = this.sha(last, json);
      const stored = { seq: this.n + batch.length + 1, hash, json };
      batch.push({ hash, json });
      pendingIds.set(event.eventId, { ...stored, event });
      results.push({ outcome: 'appended', event: stored });
      last = hash;
    }
    if (batch.length) this.commit(batch, this.end, Buffer.concat(batch.map((r) => encodeRecord(r.hash, r.json))));
    return results;
  }

  /** Appends exact JSON bytes that continue the chain after `after`. */
  appendRaw(after: string, jsons: Buffer[]): { count: number; hash: string } {
    if (after !== this.last) throw new Error(`the log ends at ${this.last}, the import continues ${after}`);
    const records: { hash: string; json: Buffer }[] = [];
    let prev = this.last;
    for (const json of jsons) records.push({ hash: (prev = this.sha(prev, json)), json });
    // In slices, so memory stays bounded for big imports.
    for (let i = 0; i < records.length; i += 10_000) {
      const slice = records.slice(i, i + 10_000);
      this.commit(slice, this.end, Buffer.concat(slice.map((r) => encodeRecord(r.hash, r.json))));
    }
    return { count: this.n, hash: this.last };
  }

  /** Recomputes the whole chain from disk; returns the count, last hash and whether the table had to be rebuilt. */
  verify(): { count: number; hash: string; tableRebuilt: boolean } {
    let prev = EMPTY_HASH;
    let expect = 0;
    let tableOk = this.table !== undefined;
    for (let first = 1; first <= this.n; first += 4096) {
      const last = Math.min(this.n, first + 4095);
      const entries = readEntries(this.offsetsFd!, first, last);
      this.readRange(first, last).forEach((e, i) => {
        const seq = first + i;
        if (entries[i].offset !== expect) throw new LogCorrupt(seq, 'offsets entry does not point at its record');
        if (this.sha(prev, e.json) !== e.hash) throw new LogCorrupt(seq, 'hash does not match the previous hash and the stored bytes');
        const id = objectEventId(e.json, seq);
        if (!(id === undefined ? NO_ID : idKey(id)).equals(entries[i].idKey)) throw new LogCorrupt(seq, 'offsets entry names another eventId');
        if (tableOk && (!this.tableHas(hashKey(e.hash), KIND_HASH, seq) || (id !== undefined && !this.tableHas(idKey(id), KIND_ID, seq)))) tableOk = false;
        prev = e.hash;
        expect += recordLength(e.hash, e.json);
      });
    }
    if (!tableOk) {
      this.rebuild(0);
      fdatasyncSync(this.tableFd!);
    }
    return { count: this.n, hash: prev, tableRebuilt: !tableOk };
  }

  private tableHas(key: Buffer, kind: number, seq: number): boolean {
    for (const s of candidates(this.tableFd!, this.table!, key, kind)) if (s === seq) return true;
    return false;
  }
}

// Creates log and offsets when missing, durably (the directory is fsynced).
function createFiles(dir: string, mode: number): void {
  let created = false;
  for (const name of ['log', 'offsets']) {
    if (existsSync(join(dir, name))) continue;
    const fd = openSync(join(dir, name), 'wx', mode);
    fchmodSync(fd, mode);
    closeSync(fd);
    created = true;
  }
  if (created) fsyncDir(dir);
}

async function withWriter<T>(dataDir: string, config: Config, fn: (w: LogWriter) => T): Promise<T> {
  const sha = await loadHasher();
  const dir = eventsDir(dataDir);
  if (!existsSync(dir)) {
    mkdirSync(dir, { mode: config.dirMode });
    chmodSync(dir, config.dirMode);
    fsyncDir(dataDir);
  }
  return withLock(join(dir, 'log'), config, () => {
    createFiles(dir, config.fileMode);
    const writer = new LogWriter(dataDir, config, sha);
    try {
      writer.reconcile();
      return fn(writer);
    } finally {
      writer.close();
    }
  });
}

/** Appends a batch of events under one lock with one fdatasync per file; one result per request. */
export function appendEvents(dataDir: string, config: Config, requests: AppendRequest[]): Promise<AppendResult[]> {
  return withWriter(dataDir, config, (w) => w.append(requests));
}

/** Appends exact JSON bytes (an import) continuing the chain after `after`, which must be the current last hash. */
export function appendRaw(dataDir: string, config: Config, after: string, jsons: Buffer[]): Promise<{ count: number; hash: string }> {
  return withWriter(dataDir, config, (w) => w.appendRaw(after, jsons));
}

/**
 * Repairs a crashed append, restores file modes and recomputes the whole chain
 * from disk; throws LogCorrupt naming the first bad event.
 */
export function verifyLog(dataDir: string, config: Config): Promise<{ count: number; hash: string; tableRebuilt: boolean }> {
  return withWriter(dataDir, config, (w) => {
    const dir = eventsDir(dataDir);
    chmodSync(dir, config.dirMode);
    for (const name of ['log', 'offsets', 'table']) if (existsSync(join(dir, name))) chmodSync(join(dir, name), config.fileMode);
    return w.verify();
  });
}
