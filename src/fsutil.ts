// Durable file primitives: atomic replace, fsync of files and directories.
import { chmodSync, chownSync, closeSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, rmSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
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
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
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

/** stat, or null when nothing is there. */
export function statOrNull(path: string): Stats | null {
  return statSync(path, { throwIfNoEntry: false }) ?? null;
}
