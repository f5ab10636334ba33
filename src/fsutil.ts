// File primitives: atomic replace, fsync of files and directories, whole
// reads and writes at a position, and "missing is null".
import { chmodSync, chownSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync, type Stats } from 'node:fs';
import { dirname, join, basename } from 'node:path';

/** fsyncs a file, or a directory so a file created or renamed in it survives power loss. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Creates a directory (and parents) with a mode, ignoring the umask for the last one. */
export function ensureDir(dir: string, mode: number): void {
  // mkdir's mode passes through the umask; a directory made here gets `mode` exactly.
  if (mkdirSync(dir, { recursive: true, mode }) !== undefined) chmodSync(dir, mode);
}

/**
 * Creates a directory and any missing parents, each with `mode` exactly, and
 * fsyncs each new one into its parent so it survives power loss. Safe when
 * another process creates the same directories at the same time.
 */
export function ensureDirDurably(dir: string, mode: number): void {
  if (statOrNull(dir)) return;
  ensureDirDurably(dirname(dir), mode);
  try {
    mkdirSync(dir, { mode });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw err;
  }
  chmodSync(dir, mode);
  fsyncPath(dirname(dir));
}

let tmpCounter = 0;

/**
 * Replaces a file atomically: writes a temporary file beside it, fsyncs it,
 * renames it over the old one and fsyncs the directory. Readers see the old
 * content or the new, never a mix. Run as root, the file keeps its owner
 * (a new one gets the directory's), so the web server can still read it.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode: number): void {
  // Unique without crypto (this module is on read paths): pid + a counter; 'wx' refuses a clash.
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${++tmpCounter}.${Date.now()}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeFully(fd, typeof data === 'string' ? Buffer.from(data) : data, 0);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  chmodSync(tmp, mode);
  if (process.getuid?.() === 0) {
    const owner = statOrNull(file) ?? statSync(dirname(file));
    chownSync(tmp, owner.uid, owner.gid);
  }
  renameSync(tmp, file);
  fsyncPath(dirname(file));
}

/** The path itself, or its nearest ancestor that exists. */
export function nearestExisting(path: string): string {
  while (!statOrNull(path) && dirname(path) !== path) path = dirname(path);
  return path;
}

/** stat, or null when nothing is there. */
export function statOrNull(path: string): Stats | null {
  return statSync(path, { throwIfNoEntry: false }) ?? null;
}

/** What fn returns, or null when the path it works on does not exist (ENOENT); other errors are thrown. */
export function ifExists<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** A file's text, or null when there is no such file. */
export function readTextOrNull(file: string): string | null {
  return ifExists(() => readFileSync(file, 'utf8'));
}

/** Reads buf.length bytes at pos; fewer only at end of file (returns how many). */
export function readFully(fd: number, buf: Uint8Array, pos: number): number {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, buf.length - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** Writes all of buf at pos. */
export function writeFully(fd: number, buf: Uint8Array, pos: number): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, pos + done);
}
