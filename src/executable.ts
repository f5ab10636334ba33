// Where the running executable lives and what it is called, for finding files
// beside it and for naming it in messages ("run `apie.cgi init`").
import { basename, dirname } from 'node:path';
import { isSea } from 'node:sea';

/** Whether this is the packaged executable (pkg or a Node SEA), not `node src/main.ts`. */
export function isPackaged(): boolean {
  // pkg's classic executables set process.pkg; SEA ones answer node:sea.
  if ('pkg' in process) return true;
  return isSea();
}

/** The directory holding the executable (the working directory when run from source). */
export function executableDir(): string {
  return isPackaged() ? dirname(process.execPath) : process.cwd();
}

/** The executable's file name as users type it: `apie.cgi`, or `apie` when run from source. */
export function programName(): string {
  return isPackaged() ? basename(process.execPath) : 'apie';
}
