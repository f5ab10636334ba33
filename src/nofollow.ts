// Reaching what is inside the data directory without following symbolic links.
// The web server's user can write the data directory, and `apie verify` may
// run as root: a link planted there must never make Apie read, chmod, delete
// or serve a file elsewhere. Each directory on the way is opened with
// O_NOFOLLOW and what is inside it is reached through that open directory
// (/proc/self/fd/N/name: openat(2) for APIs that take paths), so swapping a
// directory for a link halfway cannot redirect Apie either. The data
// directory itself is trusted as configured (it may be a link). A link found
// is damage: an ApieError('damaged') naming it relative to the data directory.
import { closeSync, constants, existsSync, fchmodSync, fstatSync, fsyncSync, lstatSync, mkdirSync, open, openSync, readFileSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { ApieError } from './errors.ts';
import { createdDirMode, narrowedMode } from './fsutil.ts';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

// Without /proc (some chroots) paths are joined instead: every directory is
// still checked when opened, but a swap between check and use goes unseen.
const PROC = existsSync('/proc/self/fd');

/** The error for a link where Apie expected a file or directory. */
export function linkFound(rel: string): ApieError {
  return new ApieError('damaged', `${rel} is a symbolic link; Apie never follows links in its data directory (remove it, then run apie verify)`);
}

function notA(kind: string, rel: string): ApieError {
  return new ApieError('damaged', `${rel} is not a ${kind}`);
}

const code = (err: unknown) => (err as NodeJS.ErrnoException).code;

/**
 * Reads DIR/name (a file directly in the data directory) without following a
 * link; null when it does not exist.
 */
export function readFileNoFollow(dataDir: string, name: string): Buffer | null {
  let fd: number;
  try {
    fd = openSync(join(dataDir, name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    if (code(err) === 'ENOENT') return null;
    if (code(err) === 'ELOOP') throw linkFound(name);
    throw err;
  }
  try {
    if (!fstatSync(fd).isFile()) throw notA('regular file', name);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

function restoreFdMode(fd: number, mode: number): void {
  const stats = fstatSync(fd);
  const wanted = narrowedMode(stats, mode);
  if ((stats.mode & 0o7777) !== wanted) fchmodSync(fd, wanted);
}

/** A directory inside the data directory, open, reached without following any link. */
export class SafeDir {
  private fd: number;
  private readonly real: string;
  /** Its path relative to the data directory ('' for the data directory itself). */
  readonly rel: string;

  private constructor(fd: number, real: string, rel: string) {
    this.fd = fd;
    this.real = real;
    this.rel = rel;
  }

  /** Opens `rel` ('a/b', or '' for the data directory); null when any part is missing. */
  static open(dataDir: string, rel = ''): SafeDir | null {
    let dir: SafeDir;
    try {
      dir = new SafeDir(openSync(dataDir, O_RDONLY | O_DIRECTORY), dataDir, '');
    } catch (err) {
      if (code(err) === 'ENOENT') return null;
      throw err;
    }
    for (const name of rel.split('/').filter(Boolean)) {
      let next: SafeDir | null;
      try {
        next = dir.dir(name);
      } finally {
        dir.close();
      }
      if (!next) return null;
      dir = next;
    }
    return dir;
  }

  /** The path of an entry, resolved through this open directory. */
  path(name: string): string {
    return PROC ? `/proc/self/fd/${this.fd}/${name}` : join(this.real, name);
  }

  /** An entry's path relative to the data directory, for messages. */
  relOf(name: string): string {
    return this.rel ? `${this.rel}/${name}` : name;
  }

  /** Opens a subdirectory; null when missing; damage when it is a link or not a directory. */
  dir(name: string): SafeDir | null {
    try {
      return new SafeDir(openSync(this.path(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW), join(this.real, name), this.relOf(name));
    } catch (err) {
      if (code(err) === 'ENOENT') return null;
      // O_DIRECTORY | O_NOFOLLOW on a link fails with ENOTDIR or ELOOP, depending on the kernel.
      if (code(err) === 'ELOOP' || code(err) === 'ENOTDIR') {
        throw this.lstat(name)?.isSymbolicLink() ? linkFound(this.relOf(name)) : notA('directory', this.relOf(name));
      }
      throw err;
    }
  }

  /** Opens a subdirectory, creating it with `mode` when missing (and syncing this one). */
  ensureDir(name: string, mode: number): SafeDir {
    const existing = this.dir(name);
    if (existing) return existing;
    try {
      mkdirSync(this.path(name), mode);
    } catch (err) {
      if (code(err) !== 'EEXIST') throw err; // made meanwhile by another process
    }
    const made = this.dir(name)!;
    // mkdir's mode passes through the umask; a setgid bit inherited from the parent stays.
    const stats = fstatSync(made.fd);
    if ((stats.mode & 0o7777) !== createdDirMode(stats, mode)) fchmodSync(made.fd, createdDirMode(stats, mode));
    this.fsync();
    return made;
  }

  /** Opens an entry as a file with O_NOFOLLOW added to `flags`; damage when it is a link. */
  open(name: string, flags: number, mode?: number): number {
    try {
      return openSync(this.path(name), flags | O_NOFOLLOW, mode);
    } catch (err) {
      if (code(err) === 'ELOOP') throw linkFound(this.relOf(name));
      throw err;
    }
  }

  /** open(), or undefined when the entry does not exist. */
  openIfExists(name: string, flags: number): number | undefined {
    try {
      return this.open(name, flags);
    } catch (err) {
      if (code(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Opens a regular file for reading (a FIFO planted here must not block);
   * undefined when missing, damage when a link or not a regular file.
   */
  openRegular(name: string): number | undefined {
    const fd = this.openIfExists(name, O_RDONLY | O_NONBLOCK);
    if (fd !== undefined && !fstatSync(fd).isFile()) {
      closeSync(fd);
      throw notA('regular file', this.relOf(name));
    }
    return fd;
  }

  /** A regular file's bytes, or null when it does not exist. */
  readFile(name: string): Buffer | null {
    const fd = this.openRegular(name);
    if (fd === undefined) return null;
    try {
      return readFileSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** lstat of an entry (never follows), or null when it does not exist. */
  lstat(name: string): Stats | null {
    return lstatSync(this.path(name), { throwIfNoEntry: false }) ?? null;
  }

  /** The names in this directory. */
  list(): string[] {
    try {
      return readdirSync(PROC ? `/proc/self/fd/${this.fd}` : this.real);
    } catch (err) {
      if (code(err) === 'ENOENT') return []; // removed meanwhile
      throw err;
    }
  }

  /** Restores `mode` on this directory without widening it (fsutil's narrowedMode), through its descriptor. */
  restoreMode(mode: number): void {
    restoreFdMode(this.fd, mode);
  }

  /** Restores `mode` on a regular file in it without widening it; false when it does not exist. */
  restoreFileMode(name: string, mode: number): boolean {
    const fd = this.openRegular(name);
    if (fd === undefined) return false;
    try {
      restoreFdMode(fd, mode);
    } finally {
      closeSync(fd);
    }
    return true;
  }

  /** fsyncs this directory, so entries created or renamed in it survive power loss. */
  fsync(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * Opens a file a response sends (a blob checked by its handler), refusing a
 * link that has taken its place since; resolves to the descriptor.
 */
export function openToSend(file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, (err, fd) => {
      if (!err) return resolve(fd);
      if (err.code === 'ELOOP') reject(new ApieError('damaged', 'a symbolic link took the place of the file to send; run apie verify'));
      else if (err.code === 'ENOENT') reject(new ApieError('not-found', 'removed meanwhile'));
      else reject(err);
    });
  });
}
