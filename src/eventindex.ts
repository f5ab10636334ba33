// The two indexes of the event log, both rebuildable from the log itself.
// `offsets`: 24 bytes per committed event (where its record starts in `log`,
// a flag byte, an 8-byte prefix of its hash, an 8-byte key of its eventId).
// The entries of one commit (a batch, a server's group) are written in one
// write; every one but the last carries the flag CONTINUED, so a commit cut
// short (a kill -9 inside that write, a power loss) shows no entry at all:
// the committed count is the number of entries up to the last one without
// the flag (committedCount). 0.1.0 wrote the flag byte as 0, which reads as
// one commit per entry. `table`: an on-disk open-addressing hash table from those
// prefixes to sequence numbers. Keys are prefixes, so every hit is a candidate
// the caller confirms against the record itself.
import { closeSync, fdatasyncSync, fstatSync, openSync, renameSync, fchmodSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncPath, readFully, writeFully } from './fsutil.ts';

export const ENTRY_SIZE = 24;
// Byte 7 of an entry (0.1.0 left bytes 6 and 7 zero).
const FLAGS_AT = 7;
const CONTINUED = 1;
export const KIND_HASH = 1;
export const KIND_ID = 2;

const MAGIC = 'APIETAB1';
const HEADER = 32;
const SLOT = 16;
const MIN_CAPACITY = 1024;
const NO_KEY = Buffer.alloc(8);

/** One offsets entry: the record's position in `log` and its two lookup keys. */
export interface Entry {
  offset: number;
  hashKey: Buffer;
  /** All zeros when the event has no eventId. */
  idKey: Buffer;
  /** More entries of the same commit follow this one. */
  continued?: boolean;
}

/** The table key of an event hash: its first 8 bytes. */
export function hashKey(hash: string): Buffer {
  return Buffer.from(hash.slice(0, 16), 'hex');
}

// FNV-1a in two differently seeded 32-bit lanes, each finalised with murmur's
// mixer: a well-spread 64-bit key without loading crypto on a read.
function fnv(bytes: Buffer, seed: number): number {
  let h = seed;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The table key of an eventId (case as stored). */
export function idKey(eventId: string): Buffer {
  const bytes = Buffer.from(eventId, 'utf8');
  const key = Buffer.alloc(8);
  key.writeUInt32LE(fnv(bytes, 0x811c9dc5), 0);
  key.writeUInt32LE(fnv(bytes, 0x2f6b5a13), 4);
  // All zeros means "no eventId" in an offsets entry: an id that hashes to it
  // takes another key, or it would never be indexed nor found.
  return key.equals(NO_KEY) ? Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]) : key;
}

/** Encodes entries for appending to `offsets`. */
export function encodeEntries(entries: Entry[]): Buffer {
  const buf = Buffer.alloc(entries.length * ENTRY_SIZE);
  entries.forEach((e, i) => {
    const at = i * ENTRY_SIZE;
    buf.writeUIntLE(e.offset, at, 6);
    if (e.continued) buf[at + FLAGS_AT] = CONTINUED;
    e.hashKey.copy(buf, at + 8);
    e.idKey.copy(buf, at + 16);
  });
  return buf;
}

/** Reads the entries of events first..last (1-based, inclusive). */
export function readEntries(fd: number, first: number, last: number): Entry[] {
  const count = last - first + 1;
  if (count <= 0) return [];
  const buf = Buffer.allocUnsafe(count * ENTRY_SIZE);
  readFully(fd, buf, (first - 1) * ENTRY_SIZE);
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * ENTRY_SIZE;
    entries.push({
      offset: buf.readUIntLE(at, 6),
      hashKey: buf.subarray(at + 8, at + 16),
      idKey: buf.subarray(at + 16, at + 24),
      continued: (buf[at + FLAGS_AT] & CONTINUED) !== 0,
    });
  }
  return entries;
}

/**
 * The committed count of an open offsets file: its whole entries up to the
 * last one that ends a commit. One read of the last entry, unless a commit
 * was cut short.
 */
export function committedCount(fd: number): number {
  let n = Math.floor(fstatSync(fd).size / ENTRY_SIZE);
  for (let chunk = 1; n > 0; chunk = 1024) {
    const from = Math.max(1, n - chunk + 1);
    const entries = readEntries(fd, from, n);
    for (let i = entries.length - 1; i >= 0; i--) if (!entries[i].continued) return from + i;
    n = from - 1;
  }
  return 0;
}

export interface TableInfo {
  capacity: number;
  /** Filled slots, including stale ones left by an append that crashed. */
  used: number;
  /** Every committed event up to this one has its slots. */
  indexed: number;
}

/** The table's header, or undefined when the file is not a table (missing, cut, foreign). */
export function tableInfo(fd: number): TableInfo | undefined {
  const head = Buffer.alloc(HEADER);
  if (readFully(fd, head, 0) < HEADER || head.toString('latin1', 0, 8) !== MAGIC) return undefined;
  const info = { capacity: head.readUInt32LE(8), used: head.readUInt32LE(12), indexed: head.readUInt32LE(16) };
  const sizeOk = fstatSync(fd).size === HEADER + info.capacity * SLOT;
  return sizeOk && info.capacity >= MIN_CAPACITY && (info.capacity & (info.capacity - 1)) === 0 ? info : undefined;
}

function writeHeader(fd: number, info: TableInfo): void {
  const head = Buffer.alloc(HEADER);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(info.capacity, 8);
  head.writeUInt32LE(info.used, 12);
  head.writeUInt32LE(info.indexed, 16);
  writeFully(fd, head, 0);
}

/** Sequence numbers whose slot holds this key and kind, in probe order. */
export function* seqsWithKey(fd: number, info: TableInfo, key: Buffer, kind: number): Generator<number> {
  const mask = info.capacity - 1;
  const chunk = Buffer.allocUnsafe(8 * SLOT);
  let slot = key.readUInt32LE(0) & mask;
  // Bounded by the capacity: the table is never full (load stays under 1/2).
  for (let probed = 0; probed < info.capacity;) {
    const n = Math.min(8, info.capacity - slot);
    readFully(fd, chunk.subarray(0, n * SLOT), HEADER + slot * SLOT);
    for (let i = 0; i < n; i++, probed++) {
      const at = i * SLOT;
      const seq = chunk.readUInt32LE(at + 8);
      if (seq === 0) return;
      if (chunk[at + 12] === kind && chunk.compare(key, 0, 8, at, at + 8) === 0) yield seq;
    }
    slot = (slot + n) & mask;
  }
}

interface Slot {
  key: Buffer;
  kind: number;
  seq: number;
}

/** The table slots of committed events (seq = first + index). */
export function slotsOf(entries: Entry[], first: number): Slot[] {
  const slots: Slot[] = [];
  entries.forEach((e, i) => {
    slots.push({ key: e.hashKey, kind: KIND_HASH, seq: first + i });
    if (!e.idKey.equals(NO_KEY)) slots.push({ key: e.idKey, kind: KIND_ID, seq: first + i });
  });
  return slots;
}

function encodeSlot(s: Slot): Buffer {
  const b = Buffer.alloc(SLOT);
  s.key.copy(b, 0);
  b.writeUInt32LE(s.seq, 8);
  b.writeUInt32LE(s.kind, 12);
  return b;
}

// Linear probing from the key's own bits to the first free slot.
function place(capacity: number, s: Slot, isFree: (i: number) => boolean, write: (i: number, b: Buffer) => void): void {
  const mask = capacity - 1;
  for (let i = s.key.readUInt32LE(0) & mask, probed = 0; probed < capacity; i = (i + 1) & mask, probed++) {
    if (!isFree(i)) continue;
    write(i, encodeSlot(s));
    return;
  }
  throw new Error('event table is full');
}

/**
 * Adds slots in place and records that events up to `indexed` are in; when the
 * load would pass 1/2, returns false and leaves the file untouched so the
 * caller rebuilds it bigger. Not synced: the caller fdatasyncs. An append
 * writes the table after the log is synced, so `indexed` past the committed
 * count says how many records of a commit cut short are whole on disk.
 */
export function insertSlots(fd: number, info: TableInfo, slots: Slot[], indexed: number): boolean {
  if ((info.used + slots.length) * 2 > info.capacity) return false;
  const one = Buffer.alloc(SLOT);
  const isFree = (i: number) => (readFully(fd, one, HEADER + i * SLOT), one.readUInt32LE(8) === 0);
  for (const s of slots) place(info.capacity, s, isFree, (i, b) => writeFully(fd, b, HEADER + i * SLOT));
  info.used += slots.length;
  info.indexed = indexed;
  writeHeader(fd, info);
  return true;
}

/** Records that the table covers events up to `indexed` only (after a commit cut short was dropped). Not synced. */
export function setIndexed(fd: number, info: TableInfo, indexed: number): void {
  info.indexed = indexed;
  writeHeader(fd, info);
}

/**
 * Builds a table from all committed entries into a temporary file, fsyncs it
 * and renames it over `file`; returns the open fd of the new table.
 */
export function rebuildTable(file: string, entries: Entry[], room: number, mode: number): number {
  const slots = slotsOf(entries, 1);
  let capacity = MIN_CAPACITY;
  while ((slots.length + room) * 4 > capacity) capacity *= 2;
  const buf = Buffer.alloc(HEADER + capacity * SLOT);
  const isFree = (i: number) => buf.readUInt32LE(HEADER + i * SLOT + 8) === 0;
  for (const s of slots) place(capacity, s, isFree, (i, b) => b.copy(buf, HEADER + i * SLOT));
  const tmp = `${file}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'wx+', mode);
  try {
    fchmodSync(fd, mode);
    writeFully(fd, buf, 0);
    writeHeader(fd, { capacity, used: slots.length, indexed: entries.length });
    fdatasyncSync(fd);
    renameSync(tmp, file);
    fsyncPath(dirname(file));
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  return fd;
}
