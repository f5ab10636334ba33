// An event log: the hash-chained events of one stream, in one directory
// (which directory: streams.ts). `log` holds records `<hash> <length>\n<J>\n`
// where J are exactly the bytes hashed; `offsets` commits them (see
// eventindex.ts) and `table` finds them by hash or eventId. Appends are
// serialised by a lock per log and made durable in the order log → table →
// offsets; the offsets entries of one commit go in one write, flagged so that
// a commit cut short shows none of them. The committed count is therefore
// read from offsets alone: readers never look past it and never take the
// lock, and a batch is visible whole or not at all. Knows nothing of HTTP.
import { closeSync, constants, fdatasync, fdatasyncSync, fstatSync, ftruncateSync, fchmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { chainHash, knownEvent, planAppend } from './appendplan.ts';
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { ensureDir, narrowedMode, readFully, whenFull, writeFully } from './fsutil.ts';
import { checkWritable } from './hostfaults.ts';
import { SafeDir } from './nofollow.ts';
import {
  ENTRY_SIZE, KIND_HASH, KIND_ID, seqsWithKey, committedCount, encodeEntries, hashKey, idKey, insertSlots, readEntries,
  rebuildTable, setIndexed, slotsOf, tableInfo, type Entry,
} from './eventindex.ts';
import {
  EMPTY_HASH, LogReader, NL, damagedAt, NO_ID, encodeRecord, eventIdOf, objectEventId, parseRecord, recordLength, type StoredEvent,
} from './eventreader.ts';
import { withLock } from './lock.ts';
import { logLocation } from './streams.ts';

export { chainHash } from './appendplan.ts';
export { EMPTY_HASH, LogReader, count, head, parseEventObject, waitForMore, type StoredEvent } from './eventreader.ts';

/** An event as the API creates it; J is JSON.stringify of these fields in this order. */
export interface NewEvent {
  eventId: string;
  eventType: string;
  body: unknown;
  createdBy: string;
  createdAt: string;
}

/** One request: one event, or a batch appended all or none, contiguous and in order. */
export interface AppendRequest {
  events: NewEvent[];
  /** Append only while the last hash is one of these ('*' matches any log); checked once, before the first event. */
  ifMatch?: string[];
}

/** The stored events of a request, new or found again for retried eventIds. */
export interface AppendResult {
  outcome: 'appended' | 'existing';
  events: StoredEvent[];
}

interface Record_ {
  hash: string;
  json: Buffer;
}

// In the server, the commit's fsyncs run in the thread pool: its event loop
// keeps answering reads, event streams and long polls (and queueing the next
// group) while a commit waits for the disk. Awaited in order, so the order
// log → table → offsets holds as before. A CGI process or the command line
// has nothing else to do meanwhile: it calls fdatasync itself.
function datasync(fd: number, threaded: boolean): Promise<void> | void {
  if (!threaded) return fdatasyncSync(fd);
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

// Thrown by assertAlone: the one error after which a commit must not take back what lies past its end.
const NOT_ALONE = new ApieError('misconfigured', 'another process wrote the event log while this one held its lock: every process that writes this data directory must run on this machine, in the same network namespace');

/** How far a verify has checked the chain: through event `seq`, ending at `end` in `log`. */
interface Checked {
  seq: number;
  prev: string;
  end: number;
  /** Whether the table found every event checked so far. */
  tableOk: boolean;
}

/** Checks the chain of a view's events: needs no lock, as committed events never change. */
class ChainReader extends LogReader {
  /** Where a check from the first event starts. */
  start(): Checked {
    return { seq: 0, prev: EMPTY_HASH, end: 0, tableOk: this.table !== undefined };
  }

  /** Checks events first…last (at most the view's count), continuing from `at`; throws 'damaged' naming the first bad one. */
  check(first: number, last: number, at: Checked): Checked {
    let { prev, end: expect, tableOk } = at;
    for (let from = first; from <= last; from += 4096) {
      const to = Math.min(last, from + 4095);
      const entries = readEntries(this.offsetsFd!, from, to);
      this.readRange(from, to).forEach((e, i) => {
        const seq = from + i;
        if (entries[i].offset !== expect) throw damagedAt(seq, 'offsets entry does not point at its record');
        if (chainHash(prev, e.json) !== e.hash) throw damagedAt(seq, 'hash does not match the previous hash and the stored bytes');
        const id = objectEventId(e.json, seq);
        if (!(id === undefined ? NO_ID : idKey(id)).equals(entries[i].idKey)) throw damagedAt(seq, 'offsets entry names another eventId');
        if (tableOk && (!this.tableHas(hashKey(e.hash), KIND_HASH, seq) || (id !== undefined && !this.tableHas(idKey(id), KIND_ID, seq)))) tableOk = false;
        prev = e.hash;
        expect += recordLength(e.hash, e.json);
      });
    }
    return { seq: Math.max(at.seq, last), prev, end: expect, tableOk };
  }

  private tableHas(key: Buffer, kind: number, seq: number): boolean {
    for (const s of seqsWithKey(this.tableFd!, this.table!, key, kind)) if (s === seq) return true;
    return false;
  }
}

/** The write side, used only while holding the lock. */
class LogWriter extends ChainReader {
  /** End of the last committed record in `log`. */
  private end = 0;
  private last = EMPTY_HASH;
  private readonly mode: number;
  /** Whether fsyncs go through the thread pool (the server) or block (CGI, command line). */
  private readonly threaded: boolean;

  constructor(dir: string, config: Config, threaded: boolean) {
    super(dir, 'r+');
    this.mode = config.fileMode;
    this.threaded = threaded;
  }

  /**
   * Brings the files back to a committed state after a crash: drops a torn
   * offsets tail, commits the records of a commit that was cut short once
   * they were all synced (whole commits only: a batch is never half
   * committed), cuts off the rest, and completes or rebuilds the table.
   */
  async reconcile(): Promise<void> {
    const whole = Math.floor(fstatSync(this.offsetsFd!).size / ENTRY_SIZE);
    const visible = committedCount(this.offsetsFd!);
    const logSize = fstatSync(this.logFd!).size;
    // An entry whose record is not all there was torn by a power loss: its record
    // was synced before it, so the tail scan below finds that record again.
    this.n = visible;
    while (this.n > 0 && !this.entryIsSound(this.n, logSize)) this.n--;
    if (this.n > 0) {
      const h = this.headerAt(this.n);
      this.end = h.end;
      this.last = h.hash;
    }
    const found = this.scanTail(logSize);
    // The log is synced before the table and offsets are written: any entry
    // past the count, or a table that says it indexed past it, means the
    // whole commit's records are on disk. Without either, the commit may have
    // stopped inside its records: none of them is kept.
    const synced = whole > this.n ? found.length : Math.max(0, (this.table?.indexed ?? 0) - this.n);
    const kept = found.slice(0, synced);
    // Only an unsynced tail may be dropped; never a record that was committed.
    if (this.n + kept.length < visible) throw damagedAt(this.n + kept.length + 1, 'committed record is missing or damaged');
    // The table forgets the dropped commit first, so a crash from here on leaves no claim that its records were whole.
    if (this.table && this.table.indexed > this.n + kept.length) {
      setIndexed(this.tableFd!, this.table, this.n + kept.length);
      fdatasyncSync(this.tableFd!);
    }
    if (fstatSync(this.offsetsFd!).size !== this.n * ENTRY_SIZE) ftruncateSync(this.offsetsFd!, this.n * ENTRY_SIZE);
    const cut = kept.length ? kept[kept.length - 1].end : this.end;
    if (cut < logSize) ftruncateSync(this.logFd!, cut);
    this.completeTable();
    if (kept.length) await this.commit(kept, this.end, Buffer.alloc(0));
  }

  // The complete, chain-valid records past the committed end, with where each ends in `log`.
  private scanTail(logSize: number): (Record_ & { end: number })[] {
    const tail = Buffer.allocUnsafe(logSize - this.end);
    readFully(this.logFd!, tail, this.end);
    const found: (Record_ & { end: number })[] = [];
    let pos = 0;
    let prev = this.last;
    for (let r = parseRecord(tail, 0); r && chainHash(prev, r.json) === r.hash; r = parseRecord(tail, pos)) {
      found.push({ hash: r.hash, json: r.json, end: this.end + r.end });
      prev = r.hash;
      pos = r.end;
    }
    return found;
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
    if (!this.table) this.rebuild();
    // In chunks: a table far behind (written meanwhile by an older Apie) costs time, not memory.
    for (let from = this.table!.indexed + 1; from <= this.n; from += 4096) {
      const last = Math.min(this.n, from + 4095);
      if (!this.table || !insertSlots(this.tableFd!, this.table, slotsOf(readEntries(this.offsetsFd!, from, last), from), last)) {
        this.rebuild();
        break;
      }
    }
    fdatasyncSync(this.tableFd!);
  }

  private rebuild(): void {
    // The new table first: when it cannot be made (a full disk), the old one stays open and in use.
    const fd = rebuildTable(this.events!.path('table'), this.offsetsFd!, this.n, this.mode);
    if (this.tableFd !== undefined) closeSync(this.tableFd);
    this.tableFd = fd;
    this.table = tableInfo(this.tableFd);
  }

  /**
   * Makes records durable and visible: writes their bytes at `at` (unless
   * already there), fdatasync log, add them to the table, fdatasync, append
   * their offsets entries in one write, all but the last flagged as continued
   * (the commit point), fdatasync.
   */
  private async commit(records: Record_[], at: number, bytes: Buffer): Promise<void> {
    try {
      await this.write(records, at, bytes);
    } catch (err) {
      // A record synced past the committed end would be committed by the next
      // reconcile: take back what this commit wrote, so a failed append (a full
      // disk answers 507) never surfaces later. Not when another writer was
      // found at work: what is past our end may be its.
      if (bytes.length && err !== NOT_ALONE) await this.takeBack(at);
      throw err;
    }
  }

  private async takeBack(at: number): Promise<void> {
    ftruncateSync(this.offsetsFd!, this.n * ENTRY_SIZE);
    ftruncateSync(this.logFd!, at);
    await datasync(this.logFd!, this.threaded);
    await datasync(this.offsetsFd!, this.threaded);
  }

  private async write(records: Record_[], at: number, bytes: Buffer, index = true): Promise<void> {
    const entries: Entry[] = [];
    let offset = at;
    for (const [i, r] of records.entries()) {
      const id = eventIdOf(r.json);
      entries.push({ offset, hashKey: hashKey(r.hash), idKey: id === undefined ? NO_ID : idKey(id), continued: i < records.length - 1 });
      offset += recordLength(r.hash, r.json);
    }
    if (bytes.length) {
      this.assertAlone(at);
      writeFully(this.logFd!, bytes, at);
    }
    await datasync(this.logFd!, this.threaded);
    const slots = slotsOf(entries, this.n + 1);
    if (index && (!this.table || !insertSlots(this.tableFd!, this.table, slots, this.n + records.length))) {
      this.rebuild();
      insertSlots(this.tableFd!, this.table!, slots, this.n + records.length);
    }
    if (index) await datasync(this.tableFd!, this.threaded);
    this.assertAlone(offset);
    writeFully(this.offsetsFd!, encodeEntries(entries), this.n * ENTRY_SIZE);
    await datasync(this.offsetsFd!, this.threaded);
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
    throw NOT_ALONE;
  }

  /**
   * Appends the events of several requests in one commit, deciding each
   * request in order (appendplan.ts). A refused request gets its error
   * ('conflict', 'precondition-failed', 'bad-request') in its place: the others go ahead.
   */
  async append(requests: AppendRequest[]): Promise<(AppendResult | ApieError)[]> {
    const { results, records } = planAppend(requests, this.n, this.last, (eventId) => {
      const seq = this.seqOfEventId(eventId);
      return seq === undefined ? undefined : knownEvent(this.read(seq));
    });
    if (records.length) await this.commit(records, this.end, Buffer.concat(records.map((r) => encodeRecord(r.hash, r.json))));
    return results;
  }

  /** Appends exact JSON bytes that continue the chain after `after`. */
  async appendRaw(after: string, jsons: Buffer[]): Promise<{ count: number; hash: string }> {
    if (after !== this.last) throw new ApieError('conflict', `the log ends at ${this.last}, the import continues ${after}`);
    const records: Record_[] = [];
    let prev = this.last;
    for (const json of jsons) records.push({ hash: (prev = chainHash(prev, json)), json });
    // In slices, so memory stays bounded for big imports.
    for (let i = 0; i < records.length; i += 10_000) {
      const slice = records.slice(i, i + 10_000);
      await this.commit(slice, this.end, Buffer.concat(slice.map((r) => encodeRecord(r.hash, r.json))));
    }
    return { count: this.n, hash: this.last };
  }

  /**
   * Appends `count` events made by `json(seq)` at disk speed, for tests and
   * benchmarks: commits of 20,000 events that leave the table behind, then
   * one whole build of the table (unless `table` is false: the table then
   * lags, as after a crash, and the next writer brings it up to date).
   */
  async generate(count: number, json: (seq: number) => Buffer, table: boolean): Promise<{ count: number; hash: string }> {
    for (let done = 0; done < count;) {
      const records: Record_[] = [];
      let prev = this.last;
      for (const end = Math.min(count, done + 20_000); done < end; done++) {
        const bytes = json(this.n + records.length + 1);
        records.push({ hash: (prev = chainHash(prev, bytes)), json: bytes });
      }
      await this.write(records, this.end, Buffer.concat(records.map((r) => encodeRecord(r.hash, r.json))), false);
    }
    if (table) {
      this.rebuild();
      fdatasyncSync(this.tableFd!);
    }
    return { count: this.n, hash: this.last };
  }

  /** Restores the configured modes (never widening them) on the events directory and its files, through descriptors (never a link's target). */
  restoreModes(dirMode: number, fileMode: number): void {
    this.events!.restoreMode(dirMode);
    for (const fd of [this.logFd, this.offsetsFd, this.tableFd]) {
      if (fd === undefined) continue;
      const stats = fstatSync(fd);
      if ((stats.mode & 0o7777) !== narrowedMode(stats, fileMode)) fchmodSync(fd, narrowedMode(stats, fileMode));
    }
  }

  /**
   * Recomputes the chain from disk past `from` (what a pass without the lock
   * checked already), rebuilding the table when it was found wrong; returns
   * the count, last hash and whether the table had to be rebuilt.
   */
  verify(from: Checked = this.start()): { count: number; hash: string; tableRebuilt: boolean } {
    const at = this.check(from.seq + 1, this.n, from);
    if (!at.tableOk) {
      this.rebuild();
      fdatasyncSync(this.tableFd!);
    }
    return { count: this.n, hash: at.prev, tableRebuilt: !at.tableOk };
  }
}

// Creates log and offsets when missing, durably (the directory is fsynced).
function createFiles(dir: string, mode: number): void {
  const { dataDir, rel } = logLocation(dir);
  const events = SafeDir.open(dataDir, rel)!;
  try {
    let created = false;
    for (const name of ['log', 'offsets']) {
      if (events.lstat(name)) continue;
      const fd = events.open(name, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
      fchmodSync(fd, mode);
      closeSync(fd);
      created = true;
    }
    if (created) events.fsync();
  } finally {
    events.close();
  }
}

async function withWriter<T>(dir: string, config: Config, fn: (w: LogWriter) => Promise<T> | T, threaded = false): Promise<T> {
  // Loaded before the lock: its ~3 ms would otherwise be spent holding it.
  process.getBuiltinModule('node:crypto');
  const { dataDir, rel } = logLocation(dir);
  const writes = [dir, ...['log', 'offsets', 'table'].map((name) => join(dir, name))];
  // A host set up wrong fails here at once, naming what it cannot write.
  checkWritable(dataDir, writes);
  if (!existsSync(dataDir)) ensureDir(dataDir, config.dirMode);
  // Made here when missing, each directory on the way; a link in the place
  // of one is damage, found before the lock is taken inside it.
  let at = SafeDir.open(dataDir)!;
  try {
    for (const part of rel.split('/')) {
      const next = at.ensureDir(part, config.dirMode);
      at.close();
      at = next;
    }
  } finally {
    at.close();
  }
  try {
    // One lock per log: appends to different streams never wait for each other
    // (default's is the data directory's own, as it was before there were streams).
    // `writes` were checked above, before any directory was made: not again.
    // The lock is held until the commit's last fsync has returned.
    return await withLock(dataDir, 'events', { fileMode: config.fileMode, writes: [], target: rel === 'events' ? undefined : dir }, async () => {
      createFiles(dir, config.fileMode);
      const writer = new LogWriter(dir, config, threaded);
      try {
        await writer.reconcile();
        return await fn(writer);
      } finally {
        writer.close();
      }
    });
  } catch (err) {
    // commit() has taken back what it wrote.
    throw whenFull(err);
  }
}

/**
 * Appends requests to the log in `dir` under one lock, in one commit; one
 * result (or refusal) per request. `threaded`: fsync in the thread pool (a
 * server). A function for `requests` is called once the lock is held, so a
 * server's group takes in what arrived while it waited for the lock.
 */
export function appendEvents(dir: string, config: Config, requests: AppendRequest[] | (() => AppendRequest[]), threaded = false): Promise<(AppendResult | ApieError)[]> {
  return withWriter(dir, config, (w) => w.append(typeof requests === 'function' ? requests() : requests), threaded);
}

/** Appends exact JSON bytes (an import) continuing the chain after `after`, which must be the current last hash. */
export function appendRaw(dir: string, config: Config, after: string, jsons: Buffer[]): Promise<{ count: number; hash: string }> {
  return withWriter(dir, config, (w) => w.appendRaw(after, jsons));
}

// Events a verify checks between two turns of the event loop: a server's
// requests wait at most for one such chunk (64: about 1 ms here, under load;
// 256 made a read's p99 during a verify 3.5x its p99 without).
const VERIFY_CHUNK = 64;

/** Appends `count` generated events at disk speed (see LogWriter.generate): tests and benchmarks only. */
export function generateEvents(dir: string, config: Config, count: number, json: (seq: number) => Buffer, table = true): Promise<{ count: number; hash: string }> {
  return withWriter(dir, config, (w) => w.generate(count, json, table));
}

/**
 * Repairs a crashed append, restores file modes and recomputes the whole chain
 * from disk; throws a 'damaged' ApieError naming the first bad event. A log
 * that was never written is empty, and stays absent. The events committed
 * when it starts are checked without the lock, a chunk at a time, yielding to
 * the event loop between chunks; only the repair, the events appended
 * meanwhile and a table rebuild hold the lock, so appends go on meanwhile.
 */
export async function verifyLog(dir: string, config: Config): Promise<{ count: number; hash: string; tableRebuilt: boolean }> {
  if (!existsSync(join(dir, 'offsets'))) return { count: 0, hash: EMPTY_HASH, tableRebuilt: false };
  const reader = new ChainReader(dir);
  let checked: Checked;
  try {
    checked = reader.start();
    for (let first = 1; first <= reader.count; first += VERIFY_CHUNK) {
      checked = reader.check(first, Math.min(reader.count, first + VERIFY_CHUNK - 1), checked);
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    reader.close();
  }
  return withWriter(dir, config, (w) => {
    w.restoreModes(config.dirMode, config.fileMode);
    return w.verify(checked);
  });
}
