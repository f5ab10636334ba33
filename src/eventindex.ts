// The two indexes of the event log, both rebuildable from the log itself.
// `offsets`: 24 bytes per committed event (where its record starts in `log`,
// a flag byte, an 8-byte prefix of its hash, an 8-byte key of its eventId).
// The entries of one commit (a batch, a server's group) are written in one
// write; every one but the last carries the flag CONTINUED, so a commit cut
// short (a kill -9 inside that write, a power loss) shows no entry at all:
// the committed count is the number of entries up to the last one without
// the flag (committedCount). 0.1.0 wrote the flag byte as 0, which reads as
// one commit per entry. `table`: an on-disk hash table from those prefixes to
// sequence numbers (format 2, extendible hashing: described below, above
// its code). Keys are prefixes, so every hit is a candidate the caller
// confirms against the record itself.
import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, renameSync, fchmodSync, rmSync } from 'node:fs';
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

// The table, format 2 (magic APIETAB2): extendible hashing in 4 KiB pages,
// grown in place one bucket at a time, so an append touches a few pages
// whatever the log's size and no step ever needs the whole table in memory.
//   page 0       header: magic, depth (u32 @8: the directory has 2^depth
//                entries), dirPage (u32 @12), indexed (u32 @16: every
//                committed event up to this one has its slots), and while a
//                table is built whole (as `table.build`): building (u32 @20,
//                1), target count (u32 @24), passes done (u32 @28)
//   directory    2^depth u32 page numbers at dirPage: the bucket of a key is
//                entry (first 4 key bytes, LE) & (2^depth - 1)
//   bucket page  local depth (u32 @0), next overflow page (u32 @4, 0: none),
//                then 510 slots of 8 bytes: the key's first 4 bytes and the
//                sequence number (0: free). Both kinds of key share the table:
//                a hit is a candidate the caller confirms against the record.
// A full bucket splits on its next bit: the keys that move are written to a
// new page at the end of the file first, then the directory entries that
// point at them are repointed, and only then are they freed in the old
// page, by zeroing their slots where they are (never by moving the others).
// So at every instant each key is in the page its directory entry names, a
// kill at any point leaves a table that answers every lookup, and a reader
// that raced a split sees its entry change and looks again. The directory
// doubles into new pages (the old ones are never written again); a bucket
// at MAX_DEPTH grows an overflow chain instead. Pages left unreferenced by a
// kill are wasted, never reused. Format 1 (APIETAB1, Apie before 0.2) is
// still read; the first writer rebuilds it as format 2.
const PAGE = 4096;
const PAGE_SLOT = 8;
const BUCKET_HEAD = 16;
const BUCKET_SLOTS = (PAGE - BUCKET_HEAD) / PAGE_SLOT;
const MAX_DEPTH = 20;
const MAGIC2 = 'APIETAB2';
const AT_DEPTH = 8;
const AT_INDEXED = 16;
const AT_BUILDING = 20;
const AT_TARGET = 24;
const AT_PASSES = 28;
// A whole build fills buckets to about 60% on average, far from overflowing.
const BUILD_FILL = 306;
// Buckets built per pass over `offsets`: 8 MiB, the build's memory (a CGI
// append starts at ~75 MiB resident, and a repair must stay within 96).
const PASS_BUCKETS = 2048;
// Offsets entries read at once.
const CHUNK = 16384;

interface PagedTable {
  format: 2;
  depth: number;
  dirPage: number;
  indexed: number;
  /** Pages in the file: where the next page is allocated (writers only). */
  pages: number;
}

interface HashedTable {
  format: 1;
  capacity: number;
  /** Filled slots, including stale ones left by an append that crashed. */
  used: number;
  indexed: number;
}

/** A table's header; `indexed`: every committed event up to this one has its slots. */
export type TableInfo = PagedTable | HashedTable;

const pagesFor = (bytes: number) => Math.ceil(bytes / PAGE);

/** The table's header, or undefined when the file is not a table (missing, cut, foreign, a build not finished). */
export function tableInfo(fd: number): TableInfo | undefined {
  const head = Buffer.alloc(HEADER);
  if (readFully(fd, head, 0) < HEADER) return undefined;
  const magic = head.toString('latin1', 0, 8);
  const size = fstatSync(fd).size;
  if (magic === MAGIC2) {
    const info: PagedTable = { format: 2, depth: head.readUInt32LE(AT_DEPTH), dirPage: head.readUInt32LE(AT_DEPTH + 4), indexed: head.readUInt32LE(AT_INDEXED), pages: pagesFor(size) };
    const sound = info.depth <= MAX_DEPTH && info.dirPage >= 1 && info.dirPage + pagesFor(4 * 2 ** info.depth) <= info.pages;
    return sound && head.readUInt32LE(AT_BUILDING) === 0 ? info : undefined;
  }
  if (magic !== MAGIC) return undefined;
  const info: HashedTable = { format: 1, capacity: head.readUInt32LE(8), used: head.readUInt32LE(12), indexed: head.readUInt32LE(16) };
  const sizeOk = size === HEADER + info.capacity * SLOT;
  return sizeOk && info.capacity >= MIN_CAPACITY && (info.capacity & (info.capacity - 1)) === 0 ? info : undefined;
}

/** Sequence numbers whose slot may hold this key, for the caller to confirm. */
export function* seqsWithKey(fd: number, info: TableInfo, key: Buffer, kind: number): Generator<number> {
  if (info.format === 1) {
    yield* hashedSeqs(fd, info, key, kind);
    return;
  }
  const word = key.readUInt32LE(0);
  const page = pageBuffer();
  const words = wordsOf(page);
  // Read again from the header: a writer may have grown the table since `info` was read.
  for (let tries = 0; tries < 16; tries++) {
    const layout = readLayout(fd);
    const first = readDir(fd, layout, word);
    const found: number[] = [];
    for (let p = first, hops = 0; p !== 0 && hops <= 1 << MAX_DEPTH; hops++) {
      readPage(fd, p, page);
      for (let w = BUCKET_HEAD / 4; w < PAGE / 4; w += 2) {
        const seq = words[w + 1];
        if (seq !== 0 && words[w] === word) found.push(seq);
      }
      p = words[1];
    }
    yield* found;
    // A split moves keys only after repointing their entry: an entry that
    // still names the same page after the read means nothing left it meanwhile.
    const now = readLayout(fd);
    if (now.depth === layout.depth && now.dirPage === layout.dirPage && readDir(fd, now, word) === first) return;
  }
}

// Format 1: open addressing with linear probing over 16-byte slots.
function* hashedSeqs(fd: number, info: HashedTable, key: Buffer, kind: number): Generator<number> {
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

/** Events first..last whose offsets entry holds this key (what the table does not cover), read in chunks. */
export function* seqsInEntries(fd: number, first: number, last: number, key: Buffer, kind: number): Generator<number> {
  const field = kind === KIND_HASH ? 8 : 16;
  const k0 = key.readUInt32LE(0);
  const k1 = key.readUInt32LE(4);
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(0, last - first + 1)) * ENTRY_SIZE);
  for (let from = first; from <= last; from += CHUNK) {
    const n = Math.min(CHUNK, last - from + 1);
    readFully(fd, buf.subarray(0, n * ENTRY_SIZE), (from - 1) * ENTRY_SIZE);
    for (let i = 0, at = field; i < n; i++, at += ENTRY_SIZE) {
      if (buf.readUInt32LE(at) === k0 && buf.readUInt32LE(at + 4) === k1) yield from + i;
    }
  }
}

function readLayout(fd: number): { depth: number; dirPage: number } {
  const b = Buffer.alloc(8);
  readFully(fd, b, AT_DEPTH);
  return { depth: Math.min(b.readUInt32LE(0), MAX_DEPTH), dirPage: b.readUInt32LE(4) };
}

const dirIndex = (depth: number, word: number) => word & ((1 << depth) - 1);

function readDir(fd: number, layout: { depth: number; dirPage: number }, word: number): number {
  const b = Buffer.alloc(4);
  readFully(fd, b, layout.dirPage * PAGE + 4 * dirIndex(layout.depth, word));
  return b.readUInt32LE(0);
}

function writeDir(fd: number, info: PagedTable, index: number, page: number): void {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(page, 0);
  writeFully(fd, b, info.dirPage * PAGE + 4 * index);
}

// A page past the end (cut by a kill) reads as empty.
// Buckets are scanned as 32-bit words through a typed array, not with
// Buffer.readUInt32LE: a CGI process scans a few hundred buckets per batch
// before the JIT has warmed up, and those calls made a batch of 100 events
// cost a third more. The words are the file's little-endian ones on the
// little-endian machines Apie runs on (x64, arm64), as the rebuild's view of
// offsets already assumes.
function pageBuffer(): Buffer {
  return Buffer.from(new ArrayBuffer(PAGE));
}

function wordsOf(page: Buffer): Uint32Array {
  return new Uint32Array(page.buffer, page.byteOffset, PAGE / 4);
}

function readPage(fd: number, page: number, buf: Buffer): void {
  buf.fill(0, readFully(fd, buf, page * PAGE));
}

function writeU32(fd: number, value: number, at: number): void {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value, 0);
  writeFully(fd, b, at);
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

/**
 * Adds slots in place and records that events up to `indexed` are in.
 * Returns false for a format 1 table, left untouched: the caller rebuilds
 * it. Not synced: the caller fdatasyncs. An append writes the table after
 * the log is synced, so `indexed` past the committed count says how many
 * records of a commit cut short are whole on disk.
 */
export function insertSlots(fd: number, info: TableInfo, slots: Slot[], indexed: number): boolean {
  if (info.format === 1) return false;
  const page = pageBuffer();
  for (const s of slots) insertSlot(fd, info, s.key.readUInt32LE(0), s.seq, page);
  setIndexed(fd, info, indexed);
  return true;
}

function insertSlot(fd: number, info: PagedTable, word: number, seq: number, page: Buffer): void {
  for (;;) {
    const first = readDir(fd, info, word);
    let free = -1;
    let last = first;
    let hops = 0;
    const words = wordsOf(page);
    for (let p = first; p !== 0 && hops <= 1 << MAX_DEPTH; p = words[1], hops++) {
      readPage(fd, p, page);
      last = p;
      for (let w = BUCKET_HEAD / 4; w < PAGE / 4; w += 2) {
        const s = words[w + 1];
        if (s === seq && words[w] === word) return; // in already (a commit done again)
        if (s === 0 && free < 0) free = p * PAGE + w * 4;
      }
    }
    if (free >= 0) {
      const b = Buffer.alloc(PAGE_SLOT);
      b.writeUInt32LE(word, 0);
      b.writeUInt32LE(seq, 4);
      writeFully(fd, b, free);
      return;
    }
    readPage(fd, first, page);
    const depth = page.readUInt32LE(0);
    if (hops === 1 && depth < MAX_DEPTH) {
      split(fd, info, first, depth, dirIndex(info.depth, word), page);
      continue;
    }
    // No bit left to split on (or a chain already): one more page on the chain.
    const more = Buffer.alloc(PAGE);
    more.writeUInt32LE(depth, 0);
    more.writeUInt32LE(word, BUCKET_HEAD);
    more.writeUInt32LE(seq, BUCKET_HEAD + 4);
    const added = info.pages++;
    writeFully(fd, more, added * PAGE);
    fdatasyncSync(fd);
    writeU32(fd, added, last * PAGE + 4);
    return;
  }
}

// Splits bucket page `b` (local depth d) on bit d; `index` is one directory entry that names it.
function split(fd: number, info: PagedTable, b: number, d: number, index: number, page: Buffer): void {
  if (d >= info.depth) double(fd, info);
  const bit = 2 ** d;
  const moved = Buffer.alloc(PAGE);
  moved.writeUInt32LE(d + 1, 0);
  const leaving: number[] = [];
  for (let at = BUCKET_HEAD, to = BUCKET_HEAD; at < PAGE; at += PAGE_SLOT) {
    if (page.readUInt32LE(at + 4) === 0 || (page.readUInt32LE(at) & bit) === 0) continue;
    page.copy(moved, to, at, at + PAGE_SLOT);
    to += PAGE_SLOT;
    leaving.push(at);
  }
  const added = info.pages++;
  writeFully(fd, moved, added * PAGE);
  fdatasyncSync(fd);
  const size = 2 ** info.depth;
  for (let j = (index & (bit - 1)) + bit; j < size; j += 2 * bit) {
    if (readDir(fd, info, j) === b) writeDir(fd, info, j, added);
  }
  fdatasyncSync(fd);
  const zero = Buffer.alloc(PAGE_SLOT);
  for (const at of leaving) writeFully(fd, zero, b * PAGE + at);
  writeU32(fd, d + 1, b * PAGE);
}

// Doubles the directory into new pages, in chunks of 1 MiB: the old one stays as it was until the header names the new.
function double(fd: number, info: PagedTable): void {
  const size = 4 * 2 ** info.depth;
  const to = info.pages;
  info.pages += pagesFor(2 * size);
  const chunk = Buffer.allocUnsafe(Math.min(size, 1 << 20));
  for (let off = 0; off < size; off += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, size - off));
    readFully(fd, part, info.dirPage * PAGE + off);
    writeFully(fd, part, to * PAGE + off);
    writeFully(fd, part, to * PAGE + size + off);
  }
  fdatasyncSync(fd);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(info.depth + 1, 0);
  head.writeUInt32LE(to, 4);
  writeFully(fd, head, AT_DEPTH);
  info.depth++;
  info.dirPage = to;
}

/** Records that the table covers events up to `indexed` only (after a commit cut short was dropped). Not synced. */
export function setIndexed(fd: number, info: TableInfo, indexed: number): void {
  info.indexed = indexed;
  if (info.format === 2) return writeU32(fd, indexed, AT_INDEXED);
  const head = Buffer.alloc(HEADER);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(info.capacity, 8);
  head.writeUInt32LE(info.used, 12);
  head.writeUInt32LE(info.indexed, 16);
  writeFully(fd, head, 0);
}

/**
 * Builds a format 2 table of events 1..n from `offsets` in `file`.build,
 * in passes over `offsets` that each fill a range of buckets in a buffer of
 * at most 32 MiB, syncs it and renames it over `file`; returns its open fd.
 * A build that was killed is resumed at its next pass (when it was for the
 * same count).
 */
export function rebuildTable(file: string, offsetsFd: number, n: number, mode: number): number {
  let depth = 0;
  while (depth < MAX_DEPTH && 2 ** depth * BUILD_FILL < 2 * n) depth++;
  const buckets = 2 ** depth;
  const firstBucket = 1 + pagesFor(4 * buckets);
  const tmp = `${file}.build`;
  const fd = openBuild(tmp, depth, n, firstBucket, mode);
  try {
    const head = Buffer.alloc(HEADER);
    readFully(fd, head, 0);
    const perPass = Math.min(buckets, PASS_BUCKETS);
    const pass = Buffer.alloc(perPass * PAGE);
    const counts = new Uint16Array(perPass);
    // Its own ArrayBuffer (never a slice of the pool), so 4-byte aligned for the Uint32Array below.
    const entries = Buffer.from(new ArrayBuffer(Math.min(CHUNK, Math.max(1, n)) * ENTRY_SIZE));
    let pages = pagesFor(fstatSync(fd).size);
    for (let p = head.readUInt32LE(AT_PASSES); p * perPass < buckets; p++) {
      const lo = p * perPass;
      const width = Math.min(perPass, buckets - lo);
      pass.fill(0);
      counts.fill(0);
      const overflow = new Map<number, number[]>();
      const put = (word: number, seq: number) => {
        const local = (word & (buckets - 1)) - lo;
        if (local < 0 || local >= width) return;
        if (counts[local] === BUCKET_SLOTS) {
          const more = overflow.get(local) ?? [];
          overflow.set(local, more);
          more.push(word, seq);
          return;
        }
        const at = local * PAGE + BUCKET_HEAD + counts[local]++ * PAGE_SLOT;
        pass.writeUInt32LE(word, at);
        pass.writeUInt32LE(seq, at + 4);
      };
      // Words 2, 4 and 5 of each 24-byte entry: the hash key's first 4 bytes, the eventId key.
      const words = new Uint32Array(entries.buffer, entries.byteOffset, entries.length / 4);
      for (let from = 1; from <= n; from += CHUNK) {
        const count = Math.min(CHUNK, n - from + 1);
        readFully(offsetsFd, entries.subarray(0, count * ENTRY_SIZE), (from - 1) * ENTRY_SIZE);
        for (let i = 0, w = 0; i < count; i++, w += 6) {
          if (((words[w + 2] & (buckets - 1)) - lo) >>> 0 < width) put(words[w + 2], from + i);
          if ((words[w + 4] !== 0 || words[w + 5] !== 0) && ((words[w + 4] & (buckets - 1)) - lo) >>> 0 < width) put(words[w + 4], from + i);
        }
      }
      for (let local = 0; local < width; local++) pass.writeUInt32LE(depth, local * PAGE);
      // Chains first, then the buckets that link them: a kill in between redoes the pass.
      for (const [local, more] of overflow) {
        let next = 0;
        for (let end = more.length; end > 0; end -= 2 * BUCKET_SLOTS) {
          const start = Math.max(0, end - 2 * BUCKET_SLOTS);
          const page = Buffer.alloc(PAGE);
          page.writeUInt32LE(depth, 0);
          page.writeUInt32LE(next, 4);
          for (let i = start; i < end; i += 2) {
            page.writeUInt32LE(more[i], BUCKET_HEAD + (i - start) * 4);
            page.writeUInt32LE(more[i + 1], BUCKET_HEAD + (i - start) * 4 + 4);
          }
          next = pages++;
          writeFully(fd, page, next * PAGE);
        }
        pass.writeUInt32LE(next, local * PAGE + 4);
      }
      writeFully(fd, pass.subarray(0, width * PAGE), (firstBucket + lo) * PAGE);
      fdatasyncSync(fd);
      writeU32(fd, p + 1, AT_PASSES);
    }
    writeU32(fd, n, AT_INDEXED);
    writeU32(fd, 0, AT_BUILDING);
    fdatasyncSync(fd);
    renameSync(tmp, file);
    fsyncPath(dirname(file));
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}

// The build file to go on with, or a new one: header, then the directory (entry i names bucket i), then the buckets.
function openBuild(tmp: string, depth: number, n: number, firstBucket: number, mode: number): number {
  try {
    const fd = openSync(tmp, 'r+');
    const head = Buffer.alloc(HEADER);
    readFully(fd, head, 0);
    const same = head.toString('latin1', 0, 8) === MAGIC2 && head.readUInt32LE(AT_BUILDING) === 1 && head.readUInt32LE(AT_DEPTH) === depth && head.readUInt32LE(AT_TARGET) === n;
    if (same) return fd;
    closeSync(fd);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'wx+', mode);
  try {
    fchmodSync(fd, mode);
    const buckets = 2 ** depth;
    const head = Buffer.alloc(PAGE);
    head.write(MAGIC2, 0, 'latin1');
    head.writeUInt32LE(depth, AT_DEPTH);
    head.writeUInt32LE(1, AT_DEPTH + 4);
    head.writeUInt32LE(1, AT_BUILDING);
    head.writeUInt32LE(n, AT_TARGET);
    writeFully(fd, head, 0);
    const dir = Buffer.allocUnsafe(Math.min(4 * buckets, 1 << 20));
    for (let i = 0; i < buckets; i += dir.length / 4) {
      const part = dir.subarray(0, 4 * Math.min(dir.length / 4, buckets - i));
      for (let j = 0; j < part.length / 4; j++) part.writeUInt32LE(firstBucket + i + j, 4 * j);
      writeFully(fd, part, PAGE + 4 * i);
    }
    ftruncateSync(fd, (firstBucket + buckets) * PAGE);
    fdatasyncSync(fd);
    return fd;
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
}
