// The content store: blobs named by their SHA-256, hashed while they stream to
// a temporary file and committed by an atomic rename. Layout under DATA/storage:
//   blobs/ab/<hash>       the bytes (ab = the hash's first two characters)
//   blobs/ab/<hash>.json  {"name","contentType","claims"}; its presence makes the blob visible
//   tmp/<pid>-<rand>.tmp  uploads in flight
//   blobs.lock            held (proper-lockfile) to commit or delete, never to stream
// Knows nothing of HTTP: failures a client causes are ApieErrors with a code.
import { chmodSync, readFileSync, readdirSync, renameSync, rmdirSync, rmSync, statSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { ensureDir, fsyncPath, ifExists, readTextOrNull, statOrNull, writeFileAtomic } from './fsutil.ts';
import { withLock } from './lock.ts';
import { HASH_RE } from './sha256.ts';

type StoreConfig = Pick<Config, 'fileMode' | 'dirMode' | 'lockStaleSeconds'>;

// node:crypto (~3 ms) and node:fs/promises (which pulls in readline) are
// loaded by the paths that stream and hash, not by every download.
function newSha256() {
  return process.getBuiltinModule('node:crypto').createHash('sha256');
}

function open(file: string, flags: string, mode?: number): Promise<FileHandle> {
  return process.getBuiltinModule('node:fs/promises').open(file, flags, mode);
}

interface BlobInfo {
  hash: string;
  size: number;
  /** Download name; '' when uploaded without one. */
  name: string;
  contentType: string;
}

/**
 * Who uploaded a blob: user names, and null for "someone before claims were
 * kept" (a blob from 0.1.0, or imported), which only an admin's delete removes.
 */
type Claims = (string | null)[];

interface PutOptions {
  /** The uploader, whose claim the blob keeps; null: nobody's (an import). */
  owner: string | null;
  name: string;
  contentType: string;
  /** Largest accepted size in bytes; more is refused ('too-large') as soon as it arrives. */
  limit: number;
  /** The hash the sender says it sent; a difference is refused ('bad-request'). */
  expected?: string;
}

const TEMP = /^(\d+)-[0-9a-f]+\.tmp$/;
// A temporary file nobody has written to for this long belongs to no live upload.
const STALE_TEMP_MS = 60 * 60 * 1000;
const CHUNK = 1024 * 1024;

const storeDir = (dataDir: string) => join(dataDir, 'storage');
const blobsDir = (dataDir: string) => join(storeDir(dataDir), 'blobs');
const tmpDir = (dataDir: string) => join(storeDir(dataDir), 'tmp');
const fanDir = (dataDir: string, hash: string) => join(blobsDir(dataDir), hash.slice(0, 2));
const blobFile = (dataDir: string, hash: string) => join(fanDir(dataDir, hash), hash);
const metaFile = (dataDir: string, hash: string) => `${blobFile(dataDir, hash)}.json`;

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

/**
 * Streams `body` into the store and returns the stored blob. Identical bytes
 * are stored once: the first upload's name and content type stay.
 */
export async function putBlob(dataDir: string, config: StoreConfig, body: AsyncIterable<Uint8Array>, opts: PutOptions): Promise<BlobInfo & { created: boolean }> {
  const problem = nameProblem(opts.name);
  if (problem) throw new ApieError('bad-request', problem);
  const tmp = tmpDir(dataDir);
  ensureDir(storeDir(dataDir), config.dirMode);
  ensureDir(tmp, config.dirMode);
  sweepTemp(tmp);
  const temp = join(tmp, `${process.pid}-${(Math.random() * 2 ** 52).toString(16).replace('.', '')}.tmp`);
  let committed = false;
  try {
    const fh = await open(temp, 'wx', config.fileMode);
    let hash: string;
    let size: number;
    let synced = false;
    try {
      ({ hash, size } = await streamTo(fh, body, opts.limit));
      if (opts.expected !== undefined && opts.expected !== hash) {
        throw new ApieError('bad-request', `the body's SHA-256 is ${hash}, not ${opts.expected} as the request says`);
      }
      // A repeat upload needs no fsync; a new blob must be durable before it is visible.
      if (!exists(metaFile(dataDir, hash))) {
        await fh.sync();
        synced = true;
      }
    } finally {
      await fh.close();
    }
    const result = await withLock(blobsDir(dataDir), config, () => commit(dataDir, config, temp, hash, synced, opts));
    committed = result.created;
    return { ...result, size };
  } finally {
    if (!committed) rmSync(temp, { force: true });
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
      const written = writeChunk(fh, chunk);
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

async function writeChunk(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let off = 0; off < chunk.byteLength;) off += (await fh.write(chunk, off, chunk.byteLength - off)).bytesWritten;
}

// Under the store lock: either the blob is there already, or the temporary
// file becomes it and then its metadata makes it visible.
function commit(dataDir: string, config: StoreConfig, temp: string, hash: string, synced: boolean, opts: PutOptions): Omit<BlobInfo, 'size'> & { created: boolean } {
  const meta = readMeta(dataDir, hash);
  if (meta && exists(blobFile(dataDir, hash))) {
    // The same bytes again: the first name and type stay; the uploader's claim is added.
    if (!meta.claims.includes(opts.owner)) writeMeta(dataDir, config, hash, { ...meta, claims: [...meta.claims, opts.owner] });
    return { hash, name: meta.name, contentType: meta.contentType, created: false };
  }
  if (!synced) fsyncPath(temp);
  const fan = fanDir(dataDir, hash);
  if (!exists(fan)) {
    ensureDir(blobsDir(dataDir), config.dirMode);
    ensureDir(fan, config.dirMode);
    fsyncPath(blobsDir(dataDir));
  }
  chmodSync(temp, config.fileMode);
  renameSync(temp, blobFile(dataDir, hash));
  fsyncPath(fan);
  const info = { name: opts.name, contentType: opts.contentType };
  writeMeta(dataDir, config, hash, { ...info, claims: [opts.owner] });
  return { hash, ...info, created: true };
}

/** The blob with this hash and the file holding its bytes, or null when there is none. */
export function findBlob(dataDir: string, hash: string): { info: BlobInfo; file: string } | null {
  if (!HASH_RE.test(hash)) return null;
  const meta = readMeta(dataDir, hash);
  if (!meta) return null;
  const file = blobFile(dataDir, hash);
  const stats = statOrNull(file);
  if (!stats) return null;
  return { info: { hash, size: stats.size, name: meta.name, contentType: meta.contentType }, file };
}

/**
 * Deletes a blob for a caller: an admin removes it outright; anyone else
 * removes their own claim ('forbidden' without one), and the blob goes with
 * the last claim. Whether the bytes went; 'not-found' when unknown.
 */
export async function deleteBlob(dataDir: string, config: StoreConfig, hash: string, caller: { name: string; admin: boolean }): Promise<{ removed: boolean }> {
  if (!HASH_RE.test(hash) || !exists(blobsDir(dataDir))) throw new ApieError('not-found', 'no such blob');
  return withLock(blobsDir(dataDir), config, () => {
    const meta = readMeta(dataDir, hash);
    if (!meta) throw new ApieError('not-found', 'no such blob');
    if (!caller.admin) {
      if (!meta.claims.includes(caller.name)) throw new ApieError('forbidden', 'only its uploaders and admins may delete a blob, and you did not upload this one');
      const claims = meta.claims.filter((c) => c !== caller.name);
      if (claims.length) {
        writeMeta(dataDir, config, hash, { ...meta, claims });
        return { removed: false };
      }
    }
    // Metadata first: a crash in between leaves an invisible blob, never a visible one without bytes.
    rmSync(metaFile(dataDir, hash));
    rmSync(blobFile(dataDir, hash), { force: true });
    removeIfEmpty(fanDir(dataDir, hash));
    return { removed: true };
  });
}

interface VerifyResult {
  /** Blobs checked. */
  count: number;
  /** `<hash>: <what is wrong>` for every blob whose bytes or metadata are bad. */
  corrupt: string[];
}

/**
 * Re-hashes every blob, restores file and directory modes, and tidies what a
 * crash can leave: temporary files of dead uploads, blobs without metadata
 * (an interrupted upload or delete) and empty directories.
 */
export async function verifyBlobs(dataDir: string, config: StoreConfig): Promise<VerifyResult> {
  const result: VerifyResult = { count: 0, corrupt: [] };
  const blobs = blobsDir(dataDir);
  if (!exists(storeDir(dataDir))) return result;
  fixMode(storeDir(dataDir), config.dirMode);
  if (exists(tmpDir(dataDir))) {
    fixMode(tmpDir(dataDir), config.dirMode);
    sweepTemp(tmpDir(dataDir));
  }
  if (!exists(blobs)) return result;
  fixMode(blobs, config.dirMode);
  const suspects: string[] = [];
  for (const fan of listDir(blobs)) {
    const dir = join(blobs, fan);
    if (!/^[0-9a-f]{2}$/.test(fan) || !statOrNull(dir)?.isDirectory()) continue;
    fixMode(dir, config.dirMode);
    const names = new Set(listDir(dir));
    for (const name of names) {
      const hash = name.replace(/\.json$/, '');
      if (!HASH_RE.test(hash) || !hash.startsWith(fan)) continue;
      if (name.endsWith('.json') ? !names.has(hash) : !names.has(`${hash}.json`)) {
        suspects.push(hash);
        continue;
      }
      if (name.endsWith('.json')) continue;
      const problem = await checkBlob(dataDir, hash, config.fileMode);
      if (problem === undefined) continue; // deleted meanwhile
      result.count++;
      if (problem) result.corrupt.push(`${hash}: ${problem}`);
    }
  }
  // What looked half-committed is judged again under the lock, where nothing is in flight.
  await withLock(blobs, config, () => {
    for (const hash of suspects) {
      const hasMeta = exists(metaFile(dataDir, hash));
      const hasBlob = exists(blobFile(dataDir, hash));
      if (hasBlob && !hasMeta) rmSync(blobFile(dataDir, hash));
      if (hasMeta && !hasBlob) result.corrupt.push(`${hash}: metadata without bytes`);
    }
    for (const fan of listDir(blobs)) {
      const dir = join(blobs, fan);
      if (!statOrNull(dir)?.isDirectory()) continue;
      // Leftovers of writeFileAtomic, which only runs under this lock.
      for (const name of listDir(dir)) if (name.startsWith('.') && name.endsWith('.tmp')) rmSync(join(dir, name), { force: true });
      removeIfEmpty(dir);
    }
  });
  return result;
}

// Why a blob is bad ('' when it is fine, undefined when it vanished).
async function checkBlob(dataDir: string, hash: string, fileMode: number): Promise<string | undefined> {
  const meta = metaFile(dataDir, hash);
  const file = blobFile(dataDir, hash);
  try {
    fixMode(meta, fileMode);
    fixMode(file, fileMode);
    try {
      parseMeta(readFileSync(meta, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code) throw err;
      return 'unreadable metadata';
    }
    const actual = await hashFile(file);
    return actual === hash ? '' : `bytes hash to ${actual}`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** SHA-256 of a file, read in large pieces into one buffer. */
export async function hashFile(file: string): Promise<string> {
  const hash = newSha256();
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let n = (await fh.read(buf, 0, CHUNK)).bytesRead; n > 0; n = (await fh.read(buf, 0, CHUNK)).bytesRead) {
      hash.update(buf.subarray(0, n));
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

// Removes temporary files of uploads that cannot finish: their process is
// gone, or nobody has written to them for an hour. Uploads still running stay.
function sweepTemp(dir: string): void {
  const now = Date.now();
  for (const name of listDir(dir)) {
    const m = TEMP.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const stats = statOrNull(join(dir, name));
    if (!stats) continue;
    if ((pid !== process.pid && !alive(pid)) || now - stats.mtimeMs > STALE_TEMP_MS) rmSync(join(dir, name), { force: true });
  }
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

function readMeta(dataDir: string, hash: string): Meta | null {
  const text = readTextOrNull(metaFile(dataDir, hash));
  return text === null ? null : parseMeta(text);
}

// Metadata of 0.1.0 has no claims: its blobs are nobody's.
function parseMeta(text: string): Meta {
  const meta = JSON.parse(text);
  if (typeof meta?.name !== 'string' || typeof meta.contentType !== 'string') throw new SyntaxError('bad blob metadata');
  const claims = meta.claims ?? [null];
  if (!Array.isArray(claims) || !claims.every((c: unknown) => c === null || typeof c === 'string')) throw new SyntaxError('bad blob metadata');
  return { name: meta.name, contentType: meta.contentType, claims };
}

// Under the store lock only (writeFileAtomic's temporary files are swept under it).
function writeMeta(dataDir: string, config: StoreConfig, hash: string, meta: Meta): void {
  writeFileAtomic(metaFile(dataDir, hash), JSON.stringify(meta), config.fileMode);
}

function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT') throw err;
  }
}

function fixMode(path: string, mode: number): void {
  if ((statSync(path).mode & 0o777) !== mode) chmodSync(path, mode);
}

function exists(path: string): boolean {
  return statOrNull(path) !== null;
}

function listDir(dir: string): string[] {
  return ifExists(() => readdirSync(dir)) ?? [];
}
