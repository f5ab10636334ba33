// Where the data directory is. Only the operator decides, never a client: the
// command line, the environment the server was started with, a file beside
// the executable, or the home directory of the account Apie runs as. Nothing
// from a request is read here (a request header reaches a CGI program as
// HTTP_*, never as APIE_DATA).
//
// The order, first match wins:
//   1. --data DIR (command line): typed for this one command;
//   2. $APIE_DATA: chosen for this process (SetEnv, a service unit); suEXEC
//      drops it, so CGI on most shared hosts never sees it;
//   3. apie-data.path beside the executable, naming the directory: survives
//      suEXEC, and is a statement for this copy of the program;
//   4. apie-data beside the executable: how earlier versions were deployed;
//   5. apie-data in the home directory of the account Apie runs as, from the
//      passwd database ($HOME is dropped by suEXEC too): under suEXEC that is
//      the site's account, whose home is outside the web root.
// A more specific statement wins over a more general default: a file beside
// this executable over the account's home, which several sites may share.
// When 1–3 name a directory, it is used (or reported missing), never skipped.
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { ApieError } from './errors.ts';
import { executableDir, programName } from './executable.ts';

/** The file beside the executable holding the path of the data directory. */
export const POINTER_FILE = 'apie-data.path';
/** The data directory's name beside the executable and in the home directory. */
export const DATA_DIR_NAME = 'apie-data';

/** A data directory and how it was chosen. */
export interface Located {
  dir: string;
  via: 'flag' | 'env' | 'pointer' | 'beside' | 'home';
}

// How a data directory was chosen, as the rest of a sentence about it.
function described({ via }: Located): string {
  const name = programName();
  return { flag: 'named by --data', env: 'named by APIE_DATA', pointer: `named in ${POINTER_FILE} beside ${name}`, beside: `${DATA_DIR_NAME} beside ${name}`, home: `${DATA_DIR_NAME} in the home directory` }[via];
}

/** Where the data directory is for this process, or null when nothing names one and no default exists. */
export function locateDataDir(flag?: string, env: NodeJS.ProcessEnv = process.env): Located | null {
  if (flag) return { dir: resolve(flag), via: 'flag' };
  const fromEnv = env.APIE_DATA;
  if (fromEnv) return { dir: resolve(fromEnv), via: 'env' };
  const named = readPointer(join(executableDir(), POINTER_FILE));
  if (named) return { dir: named, via: 'pointer' };
  const beside = join(executableDir(), DATA_DIR_NAME);
  if (present(beside)) return { dir: beside, via: 'beside' };
  const home = homeDataDir();
  if (home && present(home)) return { dir: home, via: 'home' };
  return null;
}

/**
 * The data directory of a command that works on an existing one (user, verify,
 * token, import-apie); refuses, saying how to make one, when none is found.
 */
export function resolveDataDir(flag?: string): string {
  const located = locateDataDir(flag);
  if (!located) throw notFound();
  return located.dir;
}

/**
 * The data directory of a command that creates it when missing (init, serve):
 * the one found, else apie-data in the account's home directory.
 */
export function dataDirToCreate(flag?: string): string {
  const found = locateDataDir(flag);
  if (found) return found.dir;
  const home = homeDataDir();
  if (!home) throw new ApieError('misconfigured', `this account has no home directory in the passwd database: name the data directory with --data DIR`);
  return home;
}

/**
 * The data directory of a CGI request: found, a directory, readable. Anything
 * else is the operator's to fix, so it is a 500 saying how (paths go to the
 * error log only), never a 401 that sends users hunting for a wrong password.
 */
export function requireDataDir(): string {
  const located = locateDataDir();
  if (!located) throw notFound();
  const { dir } = located;
  const where = described(located);
  try {
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    accessSync(dir, constants.R_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const detail = `${dir}: ${(err as Error).message}; running as ${runningAs()}`;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new ApieError('misconfigured', `the data directory ${where} does not exist: run \`${programName()} init DIR\` as this site's account`, { cause: detail });
    }
    throw new ApieError('misconfigured', `the data directory ${where} is not readable by the account ${programName()} runs as: it must belong to that account (see Deploy in the README)`, { cause: detail });
  }
  return dir;
}

/** apie-data in the home directory of the account this process runs as, from the passwd database. */
export function homeDataDir(): string | null {
  try {
    // userInfo() reads the passwd entry of our uid (getpwuid), not $HOME.
    const { homedir } = userInfo();
    return homedir ? join(homedir, DATA_DIR_NAME) : null;
  } catch {
    return null; // a uid without a passwd entry (some containers)
  }
}

// The path a pointer file names, or null when there is no such file.
function readPointer(file: string): string | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ApieError('misconfigured', `${POINTER_FILE} beside ${programName()} is not readable by the account ${programName()} runs as: \`chmod 644 ${POINTER_FILE}\``, {
      cause: `${file}: ${(err as Error).message}; running as ${runningAs()}`,
    });
  }
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length !== 1 || !isAbsolute(lines[0])) {
    throw new ApieError('misconfigured', `${POINTER_FILE} beside ${programName()} must hold one line: the absolute path of the data directory`, { cause: `${file}: ${JSON.stringify(text.slice(0, 200))}` });
  }
  return resolve(lines[0]);
}

function notFound(): ApieError {
  const name = programName();
  const looked = [join(executableDir(), POINTER_FILE), join(executableDir(), DATA_DIR_NAME), homeDataDir() ?? '(no home directory in the passwd database)'];
  return new ApieError('misconfigured', `no data directory found: run \`${name} init\` as this site's account, or write the data directory's path into ${POINTER_FILE} beside ${name}`, {
    cause: `looked for ${looked.join(', ')}; running as ${runningAs()}`,
  });
}

/** The name of the account this process runs as (under suEXEC: the site's, not the web server's). */
export function accountName(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.()}`;
  }
}

/** Who this process runs as, for the error log: "uid 1001 (alice)". */
export function runningAs(): string {
  return `uid ${process.getuid?.()} (${accountName()})`;
}

// Whether something is there to use; one we may not look into counts, so it
// is reported as unreadable rather than silently passed over.
function present(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== 'ENOENT' && code !== 'ENOTDIR';
  }
}
