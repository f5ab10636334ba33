// The content store: blobs named by their SHA-256, hashed while they stream to
// a temporary file and committed by an atomic rename. Layout under DATA/storage:
//   blobs/ab/<hash>       the bytes (ab = the hash's first two characters)
//   blobs/ab/<hash>.json  {"name","contentType","claims"}; its presence makes the blob visible
//   tmp/<pid>-<rand>.tmp  uploads in flight
// The store's lock (lock.ts) is held to commit or delete, never to stream.
// Every directory and file is reached through nofollow.ts: a link anywhere in
// the store is damage, never followed (a re-upload replaces a linked blob or
// its metadata, without touching what the link points to).
// Knows nothing of HTTP: failures a client causes are ApieErrors with a code.
import { closeSync, constants, fsyncSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { whenFull, writeFileAtomic } from './fsutil.ts';
import { checkWritable } from './hostfaults.ts';
import { withLock } from './lock.ts';
import { HASH_RE } from './sha256.ts';
import { SafeDir, linkFound } from './nofollow.ts';

type StoreConfig = Pick<Config, 'fileMode' | 'dirMode'>;

// node:crypto (~3 ms) and node:fs/promises (which pulls in readline) are
// loaded by the paths that stream and hash, not by every download.
function newSha256() {
  const { createHash } = process.getBuiltinModule('node:crypto') as typeof import('node:crypto');
  return createHash('sha256');
}

function open(file: string, flags: string | number, mode?: number): Promise<FileHandle> {
  return (process.getBuiltinModule('node:fs/promises') as typeof import('node:fs/promises')).open(file, flags, mode);
}

export interface BlobInfo {
  hash: string;
  size: number;
  /** Download name; '' when uploaded without one. */
  name: string;
  contentType: string;
  /** Set when the metadata is damaged: name and type are then the defaults. */
  damagedMeta?: true;
}

/**
 * Who uploaded a blob: user names, and null for "someone before claims were
 * kept" (a blob from 0.1.0, or imported), which only an admin's delete removes.
 */
type Claims = (string | null)[];

export interface PutOptions {
  /** The uploader, whose claim the blob keeps; null: nobody's (an import). */
  owner: string | null;
  name: string;
  contentType: string;
  /** Largest accepted size in bytes; more is 'too-large' as soon as it arrives. */
  limit: number;
  /** The hash the sender says it sent; a difference is 'bad-request'. */
  expected?: string;
}

const TEMP = /^(\d+)-[0-9a-f]+\.tmp$/;
// A temporary file nobody has written to for this long belongs to no live upload.
const STALE_TEMP_MS = 60 * 60 * 1000;
const CHUNK = 1024 * 1024;

const FAN = /^[0-9a-f]{2}$/;
// type/subtype with optional parameters, visible ASCII only.
const MEDIA_TYPE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+( *;[\x20-\x7e]*)?$/;
/** What a blob without (readable) metadata is served as. */
export const DEFAULT_TYPE = 'application/octet-stream';

const blobsDir = (dataDir: string) => join(dataDir, 'storage', 'blobs');
const fanOf = (hash: string) => hash.slice(0, 2);
const metaName = (hash: string) => `${hash}.json`;

// The store's lock; the section writes in the blobs directory (and a fan directory).
function lockOptions(dataDir: string, config: StoreConfig, ...more: string[]) {
  return { fileMode: config.fileMode, writes: [blobsDir(dataDir), ...more] };
}

/** The blob's path under the blobs directory, for URLs of a statically served store. */
export function staticPath(hash: string): string {
  return `${hash.slice(0, 2)}/${hash}`;
}

/** Why a download name is refused, or null when it is fine ('' is fine: no name). */
export function nameProblem(name: string): string | null {
  if (/[/\\]/.test(name)) return 'name must not contain / or \\';
  // C0 controls, DEL and C1 controls (NUL included).
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return 'name must not contain control characters';
  if (name === '.' || name === '..') return 'name must not be . or ..';
  if (Buffer.byteLength(name) > 255) return 'name must be at most 255 bytes (UTF-8)';
  return null;
}

/** Whether a content type may be stored (it becomes a response header: no control characters). */
export function validContentType(type: string): boolean {
  return type.length <= 255 && MEDIA_TYPE.test(type);
}

/**
 * Streams `body` into the store and returns the stored blob. Identical bytes
 * are stored once: the first upload's name and content type stay, unless its
 * metadata is damaged (or a link): then this upload writes it anew.
 */
export async function putBlob(dataDir: string, config: StoreConfig, body: AsyncIterable<Uint8Array>, opts: PutOptions): Promise<BlobInfo & { created: boolean }> {
  const problem = nameProblem(opts.name);
  if (problem) throw new ApieError('bad-request', problem);
  // Before a byte is read: a store this process cannot write fails at once.
  checkWritable(dataDir, [join(dataDir, 'storage', 'tmp'), blobsDir(dataDir)]);
  const root = SafeDir.open(dataDir);
  if (!root) throw new ApieError('misconfigured', 'the data directory does not exist');
  let storage: SafeDir | undefined;
  let tmp: SafeDir | undefined;
  const temp = `${process.pid}-${(Math.random() * 2 ** 52).toString(16).replace('.', '')}.tmp`;
  let committed = false;
  try {
    storage = root.ensureDir('storage', config.dirMode);
    tmp = storage.ensureDir('tmp', config.dirMode);
    if (Date.now() - (sweptAt.get(dataDir) ?? -Infinity) >= SWEEP_EVERY_MS) {
      sweptAt.set(dataDir, Date.now());
      sweepTemp(tmp);
    }
    const fh = await open(tmp.path(temp), 'wx', config.fileMode);
    let hash: string;
    let size: number;
    let synced = false;
    try {
      ({ hash, size } = await streamTo(fh, body, opts.limit));
      if (opts.expected !== undefined && opts.expected !== hash) {
        throw new ApieError('bad-request', `the body's SHA-256 is ${hash}, not ${opts.expected} as the request says`);
      }
      // A repeat upload needs no fsync; a new blob must be durable before it is visible.
      if (!hasMeta(storage, hash)) {
        await fh.sync();
        synced = true;
      }
    } finally {
      await fh.close();
    }
    const result = await withLock(dataDir, 'blobs', lockOptions(dataDir, config), () => commit(storage!, config, tmp!, temp, hash, synced, opts));
    committed = result.created;
    return { ...result, size };
  } catch (err) {
    throw whenFull(err);
  } finally {
    if (!committed && tmp) unlinkIfThere(tmp, temp);
    tmp?.close();
    storage?.close();
    root.close();
  }
}

// Hashes and writes the body as it arrives, without copying: the write of one
// chunk (thread pool), its hashing (this thread) and the read of the next overlap.
async function streamTo(fh: FileHandle, body: AsyncIterable<Uint8Array>, limit: number): Promise<{ hash: string; size: number }> {
  const hash = newSha256();
  const iterator = body[Symbol.asyncIterator]();
  let size = 0;
  let next = iterator.next();
  try {
    for (let r = await next; !r.done; r = await next) {
      const chunk = r.value;
      size += chunk.byteLength;
      if (size > limit) throw new ApieError('too-large', `upload is over the limit of ${limit} bytes`);
      next = iterator.next();
      next.catch(() => {}); // handled when awaited; a failure meanwhile is not unhandled
      const written = writeAll(fh, chunk);
      hash.update(chunk);
      await written;
      release(chunk);
    }
  } catch (err) {
    // Stop the body without waiting for it; a late failure of the read ahead is moot.
    next.catch(() => {});
    void iterator.return?.()?.catch(() => {});
    throw err;
  }
  return { hash: hash.digest('hex'), size };
}

// A chunk read from the body is ours alone: when it spans its whole buffer,
// free the memory now rather than at the next garbage collection, which may
// let tens of MiB of spent chunks pile up.
function release(chunk: Uint8Array): void {
  const { buffer } = chunk;
  if (buffer instanceof ArrayBuffer && chunk.byteOffset === 0 && chunk.byteLength === buffer.byteLength) {
    (buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0); // ES2024, in Node 22
  }
}

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let off = 0; off < chunk.byteLength;) off += (await fh.write(chunk, off, chunk.byteLength - off)).bytesWritten;
}

// Under the store lock: either the blob is there already, or the temporary
// file becomes it (replacing damage: a link, bytes without metadata) and then
// its metadata makes it visible.
function commit(storage: SafeDir, config: StoreConfig, tmp: SafeDir, temp: string, hash: string, synced: boolean, opts: PutOptions): Omit<BlobInfo, 'size'> & { created: boolean } {
  const blobs = storage.ensureDir('blobs', config.dirMode);
  try {
    const fan = blobs.ensureDir(fanOf(hash), config.dirMode);
    try {
      let meta: Meta | 'damaged' | null;
      try {
        meta = readMeta(fan, hash);
      } catch (err) {
        if (!(err instanceof ApieError)) throw err;
        meta = 'damaged'; // a link or not a file: replaced below, never followed
      }
      if (meta && meta !== 'damaged' && fan.lstat(hash)?.isFile()) {
        // The same bytes again: the first name and type stay; the uploader's claim is added.
        if (!meta.claims.includes(opts.owner)) writeMeta(fan, config, hash, { ...meta, claims: [...meta.claims, opts.owner] });
        return { hash, name: meta.name, contentType: meta.contentType, created: false };
      }
      if (meta === 'damaged') console.error(`apie: storage: ${fan.relOf(metaName(hash))} was damaged; rewritten by a new upload of its bytes`);
      const fd = tmp.open(temp, constants.O_RDONLY);
      try {
        if (!synced) fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp.path(temp), fan.path(hash));
      const info = { name: opts.name, contentType: opts.contentType };
      try {
        fan.fsync();
        writeMeta(fan, config, hash, { ...info, claims: [opts.owner] });
      } catch (err) {
        // Without its metadata the blob is invisible: take the bytes back too (a full disk answers 507).
        unlinkIfThere(fan, hash);
        throw err;
      }
      return { hash, ...info, created: true };
    } finally {
      fan.close();
    }
  } finally {
    blobs.close();
  }
}

/**
 * The blob with this hash and the file holding its bytes, or null when there
 * is none. A link in its place is damage (thrown); damaged metadata is not:
 * the bytes are what their hash says, served without name and type.
 */
export function findBlob(dataDir: string, hash: string): { info: BlobInfo; file: string } | null {
  if (!HASH_RE.test(hash)) return null;
  const fan = SafeDir.open(dataDir, `storage/blobs/${fanOf(hash)}`);
  if (!fan) return null;
  try {
    const meta = readMeta(fan, hash);
    if (!meta) return null;
    const stats = fan.lstat(hash);
    if (!stats) return null;
    if (stats.isSymbolicLink()) throw linkFound(fan.relOf(hash));
    if (!stats.isFile()) throw new ApieError('damaged', `${fan.relOf(hash)} is not a regular file`);
    const info = meta === 'damaged' ? { name: '', contentType: DEFAULT_TYPE, damagedMeta: true as const } : { name: meta.name, contentType: meta.contentType };
    // Opened again by the front end, with O_NOFOLLOW: a link swapped in meanwhile fails there.
    return { info: { hash, size: stats.size, ...info }, file: join(blobsDir(dataDir), fanOf(hash), hash) };
  } finally {
    fan.close();
  }
}

/**
 * Deletes a blob for a caller: an admin removes it outright; anyone else
 * removes their own claim ('forbidden' without one), and the blob goes with
 * the last claim. Whether the bytes went; 'not-found' when unknown.
 */
export async function deleteBlob(dataDir: string, config: StoreConfig, hash: string, caller: { name: string; admin: boolean }): Promise<{ removed: boolean }> {
  const blobs = HASH_RE.test(hash) ? SafeDir.open(dataDir, 'storage/blobs') : null;
  if (!blobs) throw new ApieError('not-found', 'no such blob');
  try {
    return await withLock(dataDir, 'blobs', lockOptions(dataDir, config, join(blobsDir(dataDir), fanOf(hash))), () => {
      const fan = blobs.dir(fanOf(hash));
      if (!fan) throw new ApieError('not-found', 'no such blob');
      try {
        const meta = readMeta(fan, hash);
        if (!meta) throw new ApieError('not-found', 'no such blob');
        if (!caller.admin) {
          // Damaged metadata names no uploader: only an admin's delete removes it.
          const claims = meta === 'damaged' ? [] : meta.claims;
          if (!claims.includes(caller.name)) throw new ApieError('forbidden', 'only its uploaders and admins may delete a blob, and you did not upload this one');
          const rest = claims.filter((c) => c !== caller.name);
          if (rest.length && meta !== 'damaged') {
            writeMeta(fan, config, hash, { ...meta, claims: rest });
            return { removed: false };
          }
        }
        // Metadata first: a crash in between leaves an invisible blob, never a visible one without bytes.
        // unlink removes a link itself, never what it points to.
        unlinkSync(fan.path(metaName(hash)));
        unlinkIfThere(fan, hash);
      } finally {
        fan.close();
      }
      removeIfEmpty(blobs, fanOf(hash));
      return { removed: true };
    });
  } finally {
    blobs.close();
  }
}

// Runs a step of verify; damage it meets is reported (undefined), anything else thrown.
type Guard = <T>(fn: () => T | Promise<T>) => Promise<T | undefined>;

export interface VerifyResult {
  /** Blobs checked. */
  count: number;
  /** What is wrong: `<hash>: …` for a blob whose bytes or metadata are bad, `<path> is a symbolic link…` for a link. */
  problems: string[];
}

/**
 * Re-hashes every blob, restores file and directory modes, and tidies what a
 * crash can leave: temporary files of dead uploads, blobs without metadata
 * (an interrupted upload or delete) and empty directories. Links are listed
 * as problems and left alone: nothing is read, changed or removed through one.
 */
export async function verifyBlobs(dataDir: string, config: StoreConfig): Promise<VerifyResult> {
  const result: VerifyResult = { count: 0, problems: [] };
  // A link (or another misplaced kind of file) is reported, and verification goes on around it.
  const damage: Guard = async (fn) => {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ApieError) || err.code !== 'damaged') throw err;
      result.problems.push(err.message);
      return undefined;
    }
  };
  const root = SafeDir.open(dataDir);
  const storage = root && (await damage(() => root.dir('storage')));
  root?.close();
  if (!storage) return result;
  try {
    storage.restoreMode(config.dirMode);
    const tmp = await damage(() => storage.dir('tmp'));
    if (tmp) {
      try {
        tmp.restoreMode(config.dirMode);
        for (const name of sweepTemp(tmp)) result.problems.push(linkFound(tmp.relOf(name)).message);
      } finally {
        tmp.close();
      }
    }
    const blobs = await damage(() => storage.dir('blobs'));
    if (!blobs) return result;
    try {
      blobs.restoreMode(config.dirMode);
      const suspects: string[] = [];
      for (const name of blobs.list()) {
        if (!FAN.test(name) || blobs.lstat(name)?.isFile()) continue;
        const fan = await damage(() => blobs.dir(name));
        if (!fan) continue;
        try {
          fan.restoreMode(config.dirMode);
          await verifyFan(fan, config.fileMode, result, suspects, damage);
        } finally {
          fan.close();
        }
      }
      // What looked half-committed is judged again under the lock, where nothing is in flight.
      await withLock(dataDir, 'blobs', lockOptions(dataDir, config), () => settle(blobs, suspects, result, damage));
    } finally {
      blobs.close();
    }
  } finally {
    storage.close();
  }
  return result;
}

// Checks the blobs of one fan directory; pairs missing a half go to suspects.
async function verifyFan(fan: SafeDir, fileMode: number, result: VerifyResult, suspects: string[], damage: Guard): Promise<void> {
  const names = new Set(fan.list());
  const prefix = fan.rel.slice(-2);
  for (const name of names) {
    const hash = name.replace(/\.json$/, '');
    if (!HASH_RE.test(hash) || !hash.startsWith(prefix)) continue;
    if (fan.lstat(name)?.isSymbolicLink()) {
      result.problems.push(linkFound(fan.relOf(name)).message);
      continue;
    }
    if (name.endsWith('.json') ? !names.has(hash) : !names.has(metaName(hash))) {
      suspects.push(`${prefix}/${hash}`);
      continue;
    }
    if (name.endsWith('.json')) continue;
    const problem = await damage(() => checkBlob(fan, hash, fileMode));
    if (problem === undefined) continue; // damage (reported) or deleted meanwhile
    result.count++;
    if (problem) result.problems.push(`${hash}: ${problem}`);
  }
}

// Under the store lock: bytes without metadata are an interrupted upload or
// delete (removed); metadata without bytes is damage. Empty directories go.
async function settle(blobs: SafeDir, suspects: string[], result: VerifyResult, damage: Guard): Promise<void> {
  for (const suspect of suspects) {
    const [prefix, hash] = suspect.split('/');
    const fan = await damage(() => blobs.dir(prefix));
    if (!fan) continue;
    try {
      const meta = fan.lstat(metaName(hash));
      const blob = fan.lstat(hash);
      if (blob?.isFile() && !meta) unlinkSync(fan.path(hash));
      if (meta?.isFile() && !blob) result.problems.push(`${hash}: metadata without bytes`);
    } finally {
      fan.close();
    }
  }
  for (const name of blobs.list()) {
    if (!FAN.test(name) || !blobs.lstat(name)?.isDirectory()) continue;
    const fan = blobs.dir(name)!;
    try {
      // Leftovers of writeFileAtomic, which only runs under this lock.
      for (const entry of fan.list()) if (entry.startsWith('.') && entry.endsWith('.tmp') && fan.lstat(entry)?.isFile()) unlinkIfThere(fan, entry);
    } finally {
      fan.close();
    }
    removeIfEmpty(blobs, name);
  }
}

// Why a blob is bad ('' when it is fine, undefined when it vanished). Modes
// are restored through descriptors opened without following links.
async function checkBlob(fan: SafeDir, hash: string, fileMode: number): Promise<string | undefined> {
  if (!fan.restoreFileMode(metaName(hash), fileMode) || !fan.restoreFileMode(hash, fileMode)) return undefined;
  if (readMeta(fan, hash) === 'damaged') return 'unreadable metadata';
  const fd = fan.openRegular(hash);
  if (fd === undefined) return undefined;
  const actual = await hashFile(fd);
  return actual === hash ? '' : `bytes hash to ${actual}`;
}

/** SHA-256 of a file, by path or open (then closed when done), read in large pieces into one buffer. */
export async function hashFile(file: number | string): Promise<string> {
  const { read, openSync } = process.getBuiltinModule('node:fs') as typeof import('node:fs');
  const fd = typeof file === 'number' ? file : openSync(file, 'r');
  const hash = newSha256();
  const buf = Buffer.allocUnsafe(CHUNK);
  const next = () => new Promise<number>((resolve, reject) => read(fd, buf, 0, CHUNK, null, (err, n) => (err ? reject(err) : resolve(n))));
  try {
    for (let n = await next(); n > 0; n = await next()) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

// An upload sweeps the temporary files at most this often per process (a
// CGI process makes one upload; the server many, and a readdir each is waste).
const SWEEP_EVERY_MS = 60_000;
// When this process last swept each data directory's temporary files.
const sweptAt = new Map<string, number>();

// Removes temporary files of uploads that cannot finish: their process is
// gone, or nobody has written to them for an hour. Uploads still running
// stay; links are left alone and returned, for verify to report.
function sweepTemp(tmp: SafeDir): string[] {
  const links: string[] = [];
  const now = Date.now();
  for (const name of tmp.list()) {
    const m = TEMP.exec(name);
    if (!m) continue;
    const stats = tmp.lstat(name);
    if (!stats) continue;
    if (stats.isSymbolicLink()) {
      links.push(name);
      continue;
    }
    const pid = Number(m[1]);
    if ((pid !== process.pid && !alive(pid)) || now - stats.mtimeMs > STALE_TEMP_MS) unlinkIfThere(tmp, name);
  }
  return links;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface Meta {
  name: string;
  contentType: string;
  claims: Claims;
}

// The blob's metadata; null when there is none, 'damaged' when it is not what
// Apie writes (its values become response headers: they are checked again).
// Metadata of 0.1.0 has no claims: its blobs are nobody's.
function readMeta(fan: SafeDir, hash: string): Meta | 'damaged' | null {
  const bytes = fan.readFile(metaName(hash));
  if (bytes === null) return null;
  try {
    const meta = JSON.parse(bytes.toString('utf8'));
    const claims = meta?.claims ?? [null];
    const claimsOk = Array.isArray(claims) && claims.every((c: unknown) => c === null || typeof c === 'string');
    if (typeof meta?.name === 'string' && nameProblem(meta.name) === null && typeof meta.contentType === 'string' && validContentType(meta.contentType) && claimsOk) {
      return { name: meta.name, contentType: meta.contentType, claims };
    }
  } catch {
    // not JSON
  }
  return 'damaged';
}

// Under the store lock only (writeFileAtomic's temporary files are swept under it).
function writeMeta(fan: SafeDir, config: StoreConfig, hash: string, meta: Meta): void {
  writeFileAtomic(fan.path(metaName(hash)), JSON.stringify(meta), config.fileMode);
}

// Whether metadata is in place for a hash (a repeat upload).
function hasMeta(storage: SafeDir, hash: string): boolean {
  let blobs: SafeDir | null = null;
  let fan: SafeDir | null = null;
  try {
    blobs = storage.dir('blobs');
    fan = blobs && blobs.dir(fanOf(hash));
    return fan?.lstat(metaName(hash))?.isFile() ?? false;
  } catch {
    return false; // damaged: commit() decides
  } finally {
    fan?.close();
    blobs?.close();
  }
}

function unlinkIfThere(dir: SafeDir, name: string): void {
  try {
    unlinkSync(dir.path(name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function removeIfEmpty(parent: SafeDir, name: string): void {
  try {
    rmdirSync(parent.path(name));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
  }
}
