// File primitives: atomic replace, fsync of files and directories, whole
// reads and writes at a position, and "missing is null".
import { chmodSync, chownSync, closeSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { ApieError } from './errors.ts';

/** fsyncs a file, or a directory so a file created or renamed in it survives power loss. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

// The setgid bit of a directory: what is created in it takes its group. A
// data directory shared with the web server's group (no suEXEC) relies on it.
const SETGID = 0o2000;

/** Creates a directory (and parents) with a mode, ignoring the umask for the last one. */
export function ensureDir(dir: string, mode: number): void {
  // mkdir's mode passes through the umask; a directory made here gets `mode`
  // exactly, keeping the setgid bit it inherited from its parent.
  if (mkdirSync(dir, { recursive: true, mode }) !== undefined) chmodSync(dir, mode | (statSync(dir).mode & SETGID));
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
    try {
      writeFully(fd, typeof data === 'string' ? Buffer.from(data) : data, 0);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, mode);
    if (process.getuid?.() === 0) {
      // lstat: the entry being replaced (a link planted there is replaced, not followed).
      const owner = lstatSync(file, { throwIfNoEntry: false }) ?? statSync(dirname(file));
      chownSync(tmp, owner.uid, owner.gid);
    }
    renameSync(tmp, file);
  } catch (err) {
    // Whatever failed (a full disk among others), the old file is untouched and nothing is left behind.
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncPath(dirname(file));
}

/**
 * Creates a file with this content unless one is there already; never
 * replaces it. Racing processes each stage a complete file and link it into
 * place: link never replaces, so exactly one wins, and all then read its content.
 */
export function createOnce(file: string, data: string, mode: number): void {
  const staged = join(dirname(file), `.${basename(file)}.${process.pid}.${++tmpCounter}.${Date.now()}.new`);
  writeFileAtomic(staged, data, mode);
  try {
    linkSync(staged, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(staged);
  }
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

/**
 * Restores a configured mode without widening: takes away every permission
 * beyond `mode` and gives the owner what `mode` gives it (Apie needs that),
 * but never adds permissions for group or others. A narrower mode the
 * operator chose (0700/0600 under suEXEC) stays as it is, and so does a
 * directory's setgid bit.
 */
export function restoreMode(path: string, mode: number): void {
  const stats = statSync(path);
  const wanted = narrowedMode(stats, mode);
  if (wanted !== (stats.mode & 0o7777)) chmodSync(path, wanted);
}

/** The mode restoreMode gives a file or directory with these stats: the one home of that rule. */
export function narrowedMode(stats: Stats, mode: number): number {
  const current = stats.mode & 0o7777;
  return (current & mode & 0o777) | (mode & 0o700) | (stats.isDirectory() ? current & SETGID : 0);
}

/** The mode to give a directory just created: exactly `mode`, keeping a setgid bit it inherited. */
export function createdDirMode(stats: Stats, mode: number): number {
  return mode | (stats.mode & SETGID);
}

/**
 * A full disk (ENOSPC) or an exhausted quota (EDQUOT) as the ApieError that
 * says so (507); any other error as it is. For callers that have already
 * undone what the failed write began: `catch (err) { throw whenFull(err); }`.
 */
export function whenFull(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
  return new ApieError('insufficient-storage', code === 'EDQUOT' ? 'the disk quota is exhausted: nothing was written' : 'the disk is full: nothing was written', { cause: err });
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
