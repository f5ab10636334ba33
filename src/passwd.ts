// The passwd file: `name:bcrypt-hash` (htpasswd -B) or `name:bcrypt-hash:info`
// (original Apie) lines. Parsing never throws: bad lines are reported, not users.
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.ts';
import { runningAs } from './datadir.ts';
import { ApieError } from './errors.ts';
import { programName } from './executable.ts';
import { readFileNoFollow } from './nofollow.ts';
import type { User } from './types.ts';

export interface Passwd {
  users: Map<string, User>;
  /** Malformed lines, with their 1-based line numbers. */
  problems: string[];
}

const BCRYPT_RE = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

/** The cost of a bcrypt hash (the work is 2^cost rounds). */
export function hashCost(hash: string): number {
  return Number(hash.slice(4, 6));
}

// A hash bcrypt can check: the right form, with a cost it runs (4–31).
function validHash(hash: string): boolean {
  return BCRYPT_RE.test(hash) && hashCost(hash) >= 4 && hashCost(hash) <= 31;
}
/** The longest user name, in UTF-16 code units (a JavaScript string's length). */
export const MAX_NAME_LENGTH = 256;

/** Whether a user name may be stored in passwd. */
export function validName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && !/[:\x00-\x1f\x7f]/.test(name);
}

/** Whether an info text may be stored in passwd (it ends its line, so no line breaks). */
export function validInfo(info: string): boolean {
  return info.length <= 1024 && !/[\x00-\x1f\x7f]/.test(info);
}

/** What is wrong with a new password (empty, or longer than the 72 bytes bcrypt reads), or null. */
export function passwordProblem(password: string): string | null {
  if (password === '') return 'the password must not be empty';
  // bcrypt ignores everything after 72 bytes: refuse rather than truncate silently.
  if (Buffer.byteLength(password) > 72) return 'the password must be at most 72 bytes (bcrypt ignores the rest)';
  return null;
}

/** The path of DIR/passwd. */
function passwdPath(dataDir: string): string {
  return join(dataDir, 'passwd');
}

interface Line {
  raw: string;
  user?: User;
  /** Set for lines that are neither blank nor a user. */
  problem?: string;
}

function parseLine(raw: string): Line {
  const line = raw.replace(/\r$/, '');
  if (line.trim() === '') return { raw };
  const first = line.indexOf(':');
  const second = first < 0 ? -1 : line.indexOf(':', first + 1);
  const name = line.slice(0, first);
  const hash = second < 0 ? line.slice(first + 1) : line.slice(first + 1, second);
  const info = second < 0 ? '' : line.slice(second + 1);
  if (first < 0 || !validName(name) || !validHash(hash)) return { raw, problem: 'not "name:bcrypt-hash[:info]"' };
  return { raw, user: { name, hash, info } };
}

/** Parses passwd text; a malformed line lets nobody in and is listed in problems. */
export function parsePasswd(text: string): Passwd {
  return collect(text.split('\n').map(parseLine));
}

function collect(lines: Line[]): Passwd {
  const users = new Map<string, User>();
  const problems: string[] = [];
  lines.forEach(({ user, problem }, i) => {
    if (problem) {
      problems.push(`passwd line ${i + 1}: ${problem}`);
    } else if (user && users.has(user.name)) {
      problems.push(`passwd line ${i + 1}: user "${user.name}" appears twice; the first line counts`);
    } else if (user) {
      users.set(user.name, user);
    }
  });
  return { users, problems };
}

// A passwd that is missing where one is required, or that we may not read, is
// the operator's to fix: never reported as a wrong password. A link is damage.
function readText(dataDir: string, required = false): string {
  let bytes: Buffer | null;
  try {
    bytes = readFileNoFollow(dataDir, 'passwd');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const detail = `${passwdPath(dataDir)}: ${(err as Error).message}; running as ${runningAs()}`;
    if (code === 'EACCES') throw new ApieError('misconfigured', `passwd in the data directory is not readable by the account ${programName()} runs as`, { cause: detail });
    throw err;
  }
  if (bytes === null && required) {
    const detail = `${passwdPath(dataDir)}: no such file; running as ${runningAs()}`;
    throw new ApieError('misconfigured', `the data directory has no passwd: add a user with \`${programName()} user add NAME\` as this site's account`, { cause: detail });
  }
  return bytes?.toString('utf8') ?? '';
}

/** Reads DIR/passwd; a missing file has no users, unless `required` (to log in), when it is an error. */
export function readPasswd(dataDir: string, opts: { required?: boolean } = {}): Passwd {
  return parsePasswd(readText(dataDir, opts.required));
}

function formatUser(u: User): string {
  return u.info ? `${u.name}:${u.hash}:${u.info}` : `${u.name}:${u.hash}`;
}

/** Formats users back into passwd text, one line each. */
export function formatPasswd(users: Iterable<User>): string {
  let text = '';
  for (const u of users) text += `${formatUser(u)}\n`;
  return text;
}

/**
 * Applies edit to the users of DIR/passwd while holding its lock, then
 * replaces the file atomically with its mode kept. Lines that are not users
 * (blank, malformed) stay as they are; a removed user loses every line
 * carrying its name, so an ignored duplicate never comes to life.
 */
export async function updatePasswd<T>(dataDir: string, config: Config, edit: (users: Map<string, User>) => T): Promise<T> {
  const file = passwdPath(dataDir);
  const [{ withLock }, { whenFull, writeFileAtomic }] = await Promise.all([import('./lock.ts'), import('./fsutil.ts')]);
  // The file is replaced by a rename: its directory must be writable, not the file.
  // writeFileAtomic leaves the file as it was when it fails.
  return withLock(dataDir, 'passwd', { fileMode: config.fileMode, writes: [dataDir] }, () => {
    const lines = readText(dataDir).split('\n').map(parseLine);
    const { users } = collect(lines);
    const result = edit(users);
    const out: string[] = [];
    const written = new Set<string>();
    for (const line of lines) {
      const name = line.user?.name;
      if (name === undefined) out.push(line.raw);
      else if (!users.has(name)) continue;
      else if (written.has(name)) out.push(line.raw);
      else {
        out.push(formatUser(users.get(name)!));
        written.add(name);
      }
    }
    // split('\n') leaves a final '' for a file ending in a newline: add before it.
    const tail = out.length > 0 && out[out.length - 1] === '' ? out.pop()! : '';
    for (const u of users.values()) if (!written.has(u.name)) out.push(formatUser(u));
    out.push(tail);
    let text = out.join('\n');
    if (text !== '' && !text.endsWith('\n')) text += '\n';
    writeFileAtomic(file, text, modeOf(file, config.fileMode & 0o770));
    return result;
  }).catch((err) => {
    throw whenFull(err);
  });
}

// The mode of an existing file, else the given one.
function modeOf(file: string, fallback: number): number {
  const stats = lstatSync(file, { throwIfNoEntry: false });
  return stats?.isFile() ? stats.mode & 0o7777 : fallback;
}
