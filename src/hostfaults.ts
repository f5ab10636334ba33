// File-system errors that mean the host is set up wrong (permissions, a
// read-only mount, a file where a directory belongs), turned into
// 'misconfigured' errors whose message tells the operator what to fix. The
// message names paths relative to the data directory only; the original
// error, absolute path included, stays as the cause for the log.
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, isAbsolute, relative } from 'node:path';
import { ApieError } from './errors.ts';

type Access = 'read' | 'write' | 'use';

// How a path is named to a client: relative to the data directory, never absolute.
function where(path: string, dataDir: string): string {
  const rel = relative(dataDir, path);
  if (rel === '') return 'the data directory';
  if (rel.startsWith('..') || isAbsolute(rel)) return 'a directory above the data directory';
  return `${rel} in the data directory`;
}

// The first path from the top that exists but is not a directory, on the way to `path`.
function fileOnTheWay(path: string): string | undefined {
  const ancestors: string[] = [];
  for (let p = dirname(path); p !== dirname(p); p = dirname(p)) ancestors.unshift(p);
  for (const p of ancestors) {
    const stats = statSync(p, { throwIfNoEntry: false });
    if (!stats) return undefined;
    if (!stats.isDirectory()) return p;
  }
  return undefined;
}

const PHRASE: Record<Access, string> = { read: 'readable by', write: 'writable by', use: 'accessible to' };

export interface FaultContext {
  /** What was being attempted, for the message. */
  access?: Access;
  /** The path the error is about, when the error does not carry it (a read or write of an open file). */
  path?: string;
}

/**
 * The 'misconfigured' error for a file-system error that means the host is
 * set up wrong, or undefined for any other error.
 */
export function hostFault(err: unknown, dataDir: string, context: FaultContext = {}): ApieError | undefined {
  const e = err as NodeJS.ErrnoException;
  const path = e?.path ?? context.path;
  if (!(err instanceof Error) || typeof e.code !== 'string' || typeof path !== 'string') return undefined;
  const fault = (message: string) => new ApieError('misconfigured', message, { cause: err });
  switch (e.code) {
    case 'EACCES':
    case 'EPERM':
      return fault(`${where(path, dataDir)} is not ${PHRASE[context.access ?? 'use']} the user this runs as`);
    case 'EROFS':
      return fault('the data directory is on a read-only file system');
    case 'ENOTDIR':
      return fault(`${where(fileOnTheWay(path) ?? path, dataDir)} is not a directory`);
    case 'EISDIR':
      return fault(`${where(path, dataDir)} is a directory, not a file`);
    default:
      return undefined;
  }
}

/** Rethrows a host fault as its 'misconfigured' error, anything else as it is. */
export function rethrowHostFault(err: unknown, dataDir: string, context?: FaultContext): never {
  throw hostFault(err, dataDir, context) ?? err;
}

/**
 * Throws 'misconfigured' naming the problem unless this process may write
 * each path: an existing one itself, a missing one in the nearest directory
 * that exists. A few access/stat calls, so that a host set up wrong fails at
 * once instead of after waiting for a lock or reading a whole upload.
 */
export function checkWritable(dataDir: string, paths: string[]): void {
  for (const path of paths) {
    let p = path;
    for (;;) {
      try {
        accessSync(p, constants.W_OK);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code === 'ENOENT' || code === 'ENOTDIR') && dirname(p) !== p) p = dirname(p);
        else rethrowHostFault(err, dataDir, { access: 'write' });
      }
    }
    // What stands in the place of a missing path's directory must be one.
    if (p !== path && !statSync(p).isDirectory()) throw new ApieError('misconfigured', `${where(p, dataDir)} is not a directory`);
  }
}
