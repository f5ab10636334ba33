// Reading an event log, the directory of one stream (layout in eventlog.ts):
// a view of the committed events, fixed when opened, that takes no lock and
// loads no crypto. The directory is reached through nofollow.ts from its data
// directory (streams.ts says which): a link on the way is damage, never followed.
import { closeSync, constants, watch } from 'node:fs';
import { ApieError } from './errors.ts';
import { KIND_HASH, KIND_ID, seqsInEntries, seqsWithKey, committedCount, hashKey, idKey, readEntries, tableInfo, type TableInfo } from './eventindex.ts';
import { nearestExisting, readFully } from './fsutil.ts';
import { SafeDir } from './nofollow.ts';
import { logLocation } from './streams.ts';
import { HASH_RE } from './sha256.ts';

/** sha256(""): the hash of the empty log, and the "previous hash" of the first event. */
export const EMPTY_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** A committed event: its position (1-based), hash and exact JSON bytes. */
export interface StoredEvent {
  seq: number;
  hash: string;
  json: Buffer;
}

/** The error for a log damaged at `position` (1-based event number): the operator's problem, said without file details. */
export function damagedAt(position: number, what: string): ApieError {
  return new ApieError('damaged', `the event log is damaged at event ${position}: ${what}`);
}

export const NL = 0x0a;
// Longest record header: 64 hex, a space, up to 15 digits, a newline.
const MAX_HEADER = 81;

interface ParsedRecord {
  hash: string;
  json: Buffer;
  /** Position just after the record's closing newline. */
  end: number;
}

/** Parses the record at buf[pos…]; undefined when it is cut short or malformed. */
export function parseRecord(buf: Buffer, pos: number): ParsedRecord | undefined {
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
export function recordLength(hash: string, json: Buffer): number {
  return hash.length + 1 + String(json.length).length + 1 + json.length + 1;
}

export function encodeRecord(hash: string, json: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${hash} ${json.length}\n`, 'latin1'), json, Buffer.of(NL)]);
}

/** Stored bytes as the JSON object every event is, or null when they are not one. */
export function parseEventObject(json: Buffer): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch {
    return null;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

export function eventIdOf(json: Buffer): string | undefined {
  const id = parseEventObject(json)?.eventId;
  return typeof id === 'string' ? id : undefined;
}

export const NO_ID = Buffer.alloc(8);

// The eventId of stored bytes that must be a JSON object (checked by verify).
export function objectEventId(json: Buffer, seq: number): string | undefined {
  const value = parseEventObject(json);
  if (!value) throw damagedAt(seq, 'stored bytes are not a JSON object');
  return typeof value.eventId === 'string' ? value.eventId : undefined;
}

const FLAGS = { r: constants.O_RDONLY, 'r+': constants.O_RDWR };

/**
 * A read-only view of the committed events, fixed when opened: later appends
 * are not seen. Takes no lock; close() it.
 */
export class LogReader {
  readonly dir: string;
  /** The log's directory, open while the view is: its files are reached without following links. */
  protected events?: SafeDir;
  protected n: number;
  protected offsetsFd?: number;
  protected logFd?: number;
  protected tableFd?: number;
  protected table?: TableInfo;
  // The last record header read by a read-only view (a writer may rewrite an
  // uncommitted record): a lookup by hash confirms the event's header, and
  // the read that follows needs the same one.
  private lastHeader?: { seq: number; hash: string; offset: number; start: number; end: number };
  private readonly readOnly: boolean;

  /** Opens the log in `dir` read-only, or for writing ('r+') when the caller holds the lock. */
  constructor(dir: string, flags: 'r' | 'r+' = 'r') {
    this.dir = dir;
    this.n = 0;
    this.readOnly = flags === 'r';
    this.open(flags);
  }

  protected open(flags: 'r' | 'r+'): void {
    const { dataDir, rel } = logLocation(this.dir);
    this.events = SafeDir.open(dataDir, rel) ?? undefined;
    if (!this.events) {
      if (flags === 'r') return; // nothing appended yet
      throw new Error(`${rel} is missing`);
    }
    this.offsetsFd = this.events.openIfExists('offsets', FLAGS[flags]);
    // The count first, the table after: any table opened later covers it.
    this.n = this.offsetsFd === undefined ? 0 : committedCount(this.offsetsFd);
    if (this.n === 0 && flags === 'r') return;
    this.logFd = this.events.open('log', FLAGS[flags]);
    this.tableFd = this.events.openIfExists('table', FLAGS[flags]);
    if (this.tableFd !== undefined) this.table = tableInfo(this.tableFd);
  }

  /** The number of events this view sees. */
  get count(): number {
    return this.n;
  }

  close(): void {
    for (const fd of [this.offsetsFd, this.logFd, this.tableFd]) if (fd !== undefined) closeSync(fd);
    this.offsetsFd = this.logFd = this.tableFd = undefined;
    this.events?.close();
    this.events = undefined;
  }

  /** The committed count on disk now: above count once appends were committed since this view opened. */
  committedNow(): number {
    return this.offsetsFd === undefined ? count(this.dir) : committedCount(this.offsetsFd);
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
      for (const seq of seqsWithKey(this.tableFd, this.table, key, kind)) {
        // Slots past the count belong to an append not (yet) committed.
        if (seq <= this.count && !seen.has(seq) && confirm(seq)) return seq;
        seen.add(seq);
      }
    }
    // Events the table does not cover (missing table, or not yet rebuilt): scan their entries.
    const from = this.table ? this.table.indexed + 1 : 1;
    for (const seq of seqsInEntries(this.offsetsFd!, from, this.count, key, kind)) if (confirm(seq)) return seq;
    return undefined;
  }

  /** The record header of event seq: its hash and where its JSON lies. */
  protected headerAt(seq: number): { hash: string; offset: number; start: number; end: number } {
    if (this.lastHeader?.seq === seq) return this.lastHeader;
    const [entry] = readEntries(this.offsetsFd!, seq, seq);
    const buf = Buffer.alloc(MAX_HEADER);
    const got = readFully(this.logFd!, buf, entry.offset);
    const nl = buf.subarray(0, got).indexOf(NL);
    const hash = buf.toString('latin1', 0, 64);
    const length = Number(buf.toString('latin1', 65, nl));
    if (nl < 66 || !HASH_RE.test(hash) || !Number.isSafeInteger(length)) throw damagedAt(seq, 'record header is damaged');
    if (!hashKey(hash).equals(entry.hashKey)) throw damagedAt(seq, 'offsets entry does not match its record');
    const start = entry.offset + nl + 1;
    const header = { seq, hash, offset: entry.offset, start, end: start + length + 1 };
    if (this.readOnly) this.lastHeader = header;
    return header;
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
      if (!r) throw damagedAt(first + i, 'record is damaged');
      if (!hashKey(r.hash).equals(e.hashKey)) throw damagedAt(first + i, 'offsets entry does not match its record');
      return { seq: first + i, hash: r.hash, json: r.json };
    });
  }
}

/** Count and last hash of the committed log in `dir`, cheaply (three small reads). */
export function head(dir: string): { count: number; hash: string } {
  const reader = new LogReader(dir);
  try {
    return { count: reader.count, hash: reader.lastHash() };
  } finally {
    reader.close();
  }
}

/** The number of committed events in the log in `dir`: a stat and one small read. */
export function count(dir: string): number {
  const { dataDir, rel } = logLocation(dir);
  const events = SafeDir.open(dataDir, rel);
  const fd = events?.openIfExists('offsets', FLAGS.r);
  events?.close();
  if (fd === undefined) return 0;
  try {
    return committedCount(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Resolves true as soon as the log in `logDir` holds more than `known`
 * events, false after `ms`. Watches the directory (inotify) and polls as a
 * fallback.
 */
export function waitForMore(logDir: string, known: number, ms: number, signal?: AbortSignal): Promise<boolean> {
  if (count(logDir) > known) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = () => done(false);
    signal?.addEventListener('abort', onAbort);
    // A stream's directory appears with its first append: until then, its nearest ancestor.
    const dir = nearestExisting(logDir);
    let watcher: ReturnType<typeof watch> | undefined;
    const done = (more: boolean) => {
      signal?.removeEventListener('abort', onAbort);
      clearInterval(poll);
      clearTimeout(timer);
      watcher?.close();
      resolve(more);
    };
    const check = () => {
      try {
        if (count(logDir) > known) done(true);
      } catch {
        done(true); // damage (a link planted meanwhile): the read that follows reports it
      }
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
