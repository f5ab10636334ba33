// The event log: hash-chained events in DATA/events/. `log` holds records
// `<hash> <length>\n<J>\n` where J are exactly the bytes hashed; `offsets`
// commits them (see eventindex.ts) and `table` finds them by hash or eventId.
// Appends are serialised by a lock and made durable in the order log → table
// → offsets, so the offsets size is the committed count: readers never look
// past it and never take the lock. Knows nothing of HTTP.
import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, fchmodSync, chmodSync, openSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { ensureDir, fsyncPath } from './fsutil.ts';
import {
  ENTRY_SIZE, KIND_HASH, KIND_ID, candidates, encodeEntries, hashKey, idKey, insertSlots, readEntries, readFully,
  rebuildTable, slotsOf, tableInfo, writeFully, type Entry,
} from './eventindex.ts';
import {
  EMPTY_HASH, LogCorrupt, LogReader, NL, NO_ID, encodeRecord, eventIdOf, eventsDir, objectEventId, parseRecord, recordLength, type StoredEvent,
} from './eventreader.ts';
import { withLock } from './lock.ts';

export { EMPTY_HASH, LogCorrupt, LogReader, count, eventsDir, head, waitForMore, type StoredEvent } from './eventreader.ts';

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
    const entries: Entry[] = [];
    let offset = at;
    for (const r of records) {
      const id = eventIdOf(r.json);
      entries.push({ offset, hashKey: hashKey(r.hash), idKey: id === undefined ? NO_ID : idKey(id) });
      offset += recordLength(r.hash, r.json);
    }
    if (bytes.length) {
      this.assertAlone(at);
      writeFully(this.logFd!, bytes, at);
    }
    fdatasyncSync(this.logFd!);
    const slots = slotsOf(entries, this.n + 1);
    if (!this.table || !insertSlots(this.tableFd!, this.table, slots, this.n + records.length)) {
      this.rebuild(slots.length);
      insertSlots(this.tableFd!, this.table!, slots, this.n + records.length);
    }
    fdatasyncSync(this.tableFd!);
    this.assertAlone(offset);
    writeFully(this.offsetsFd!, encodeEntries(entries), this.n * ENTRY_SIZE);
    fdatasyncSync(this.offsetsFd!);
    this.n += records.length;
    this.end = offset;
    this.last = records[records.length - 1].hash;
  }

  // Under the lock nobody else changes log or offsets. If they did change,
  // another process writes without it (see what lock.ts does not cover):
  // refuse before writing, rather than answer 200 for an event that the
  // other writer's bytes or offsets may overwrite. Two fstats, no guarantee:
  // a tripwire behind the lock, not a second lock.
  private assertAlone(logSize: number): void {
    if (fstatSync(this.logFd!).size === logSize && fstatSync(this.offsetsFd!).size === this.n * ENTRY_SIZE) return;
    throw new ApieError('misconfigured', 'another process wrote the event log while this one held its lock: every process that writes this data directory must run on this machine, in the same network namespace');
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
  if (created) fsyncPath(dir);
}

async function withWriter<T>(dataDir: string, config: Config, fn: (w: LogWriter) => T): Promise<T> {
  const sha = await loadHasher();
  const dir = eventsDir(dataDir);
  const writes = [dir, ...['log', 'offsets', 'table'].map((name) => join(dir, name))];
  return withLock(dataDir, 'events', { fileMode: config.fileMode, writes }, () => {
    if (!existsSync(dir)) {
      ensureDir(dir, config.dirMode);
      fsyncPath(dataDir);
    }
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
