// The passwd file: `name:bcrypt-hash` (htpasswd -B) or `name:bcrypt-hash:info`
// (original Apie) lines. Parsing never throws: bad lines are reported, not users.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { User } from './types.ts';

export interface Passwd {
  users: Map<string, User>;
  /** Malformed lines, with their 1-based line numbers. */
  problems: string[];
}

const BCRYPT_RE = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

/** Whether a user name may be stored in passwd. */
export function validName(name: string): boolean {
  return name.length > 0 && name.length <= 256 && !/[:\x00-\x1f\x7f]/.test(name);
}

/** Parses passwd text; a malformed line lets nobody in and is listed in problems. */
export function parsePasswd(text: string): Passwd {
  const users = new Map<string, User>();
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') return;
    const first = line.indexOf(':');
    const second = first < 0 ? -1 : line.indexOf(':', first + 1);
    const name = line.slice(0, first);
    const hash = second < 0 ? line.slice(first + 1) : line.slice(first + 1, second);
    const info = second < 0 ? '' : line.slice(second + 1);
    if (first < 0 || !validName(name) || !BCRYPT_RE.test(hash)) {
      problems.push(`passwd line ${i + 1}: not "name:bcrypt-hash[:info]"`);
    } else if (users.has(name)) {
      problems.push(`passwd line ${i + 1}: user "${name}" appears twice; the first line counts`);
    } else {
      users.set(name, { name, hash, info });
    }
  });
  return { users, problems };
}

/** Reads DIR/passwd; a missing file has no users. */
export function readPasswd(dataDir: string): Passwd {
  try {
    return parsePasswd(readFileSync(join(dataDir, 'passwd'), 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { users: new Map(), problems: [] };
    throw err;
  }
}

/** Formats users back into passwd text, one line each. */
export function formatPasswd(users: Iterable<User>): string {
  let text = '';
  for (const u of users) text += u.info ? `${u.name}:${u.hash}:${u.info}\n` : `${u.name}:${u.hash}\n`;
  return text;
}
