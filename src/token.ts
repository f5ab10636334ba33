// Bearer tokens: `<name, base64url>.<expiry, Unix seconds>.<signature>`, the
// signature an HMAC-SHA256 over name, expiry and the user's current password
// hash, keyed with a secret kept in the data directory. Changing the password,
// removing the user or rotating the secret therefore revokes every token, and
// checking one is a file read and an HMAC: no bcrypt, no lock.
import { join } from 'node:path';
import { ApieError } from './errors.ts';
import { createOnce, whenFull, writeFileAtomic } from './fsutil.ts';
import { SafeDir, readFileNoFollow } from './nofollow.ts';
import { MAX_NAME_LENGTH } from './passwd.ts';
import { constantTimeEqual, HASH_RE, hmacSha256 } from './sha256.ts';
import type { VerifiedTokens } from './logins.ts';
import type { User } from './types.ts';

const SECRET_FILE = 'token-secret';
// The name part holds any name passwd accepts: at most 3 UTF-8 bytes per
// UTF-16 code unit, and 4 base64url characters per 3 bytes.
const TOKEN_RE = new RegExp(`^([A-Za-z0-9_-]{1,${MAX_NAME_LENGTH * 4}})\\.(\\d{1,12})\\.([A-Za-z0-9_-]{43})$`);

function secretPath(dataDir: string): string {
  return join(dataDir, SECRET_FILE);
}

// Random hex from node:crypto, loaded only here: checking a token must not load it.
function randomHex(bytes: number): string {
  return process.getBuiltinModule('node:crypto').randomBytes(bytes).toString('hex');
}

function newSecret(): string {
  return `${randomHex(32)}\n`;
}

/**
 * The secret, or null when none has been made yet. Its problems are plain
 * errors: the log says what is wrong, a client learns nothing about it.
 */
export function readSecret(dataDir: string): Buffer | null {
  let bytes: Buffer | null;
  try {
    bytes = readFileNoFollow(dataDir, SECRET_FILE);
  } catch (err) {
    throw new Error((err as Error).message, { cause: err });
  }
  if (bytes === null) return null;
  const text = bytes.toString('utf8').trim();
  // An empty or truncated secret would make tokens forgeable: refuse it. (32
  // random bytes in hex have the shape of a hash.)
  if (!HASH_RE.test(text)) throw new Error(`${SECRET_FILE} is damaged; run \`apie token rotate\``);
  return Buffer.from(text, 'hex');
}

// The secret, made on first use (racing processes all end up with the same one).
function ensureSecret(dataDir: string): Buffer {
  const existing = readSecret(dataDir);
  if (existing) return existing;
  try {
    createOnce(secretPath(dataDir), newSecret(), 0o600);
  } catch (err) {
    // Nothing is left behind (createOnce cleans up); a full disk answers 507.
    throw whenFull(err);
  }
  return readSecret(dataDir)!;
}

/** Restores the secret's mode (0600); returns what is wrong with it, or null. */
export function checkSecret(dataDir: string): string | null {
  try {
    if (readSecret(dataDir) === null) return null;
    // Through a descriptor that cannot be a link's target.
    const dir = SafeDir.open(dataDir)!;
    try {
      dir.restoreFileMode(SECRET_FILE, 0o600);
    } finally {
      dir.close();
    }
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Replaces the secret with a new random one: every token issued so far stops working. */
export function rotateSecret(dataDir: string): void {
  writeFileAtomic(secretPath(dataDir), newSecret(), 0o600);
}

/** HMAC-SHA256: sha256.ts's spares a CGI process loading node:crypto; the server has node:crypto's. */
type Hmac = (key: Uint8Array, data: Uint8Array) => Uint8Array;

function sign(secret: Buffer, payload: string, hash: string, hmac: Hmac = hmacSha256): Buffer {
  return Buffer.from(hmac(secret, Buffer.from(`${payload}\n${hash}`)));
}

/** node:crypto's HMAC-SHA256, for a process that has loaded node:crypto anyway. */
export const nodeHmac: Hmac = (key, data) => process.getBuiltinModule('node:crypto').createHmac('sha256', key).update(data).digest();

/** A token for user valid for ttlSeconds, and when it expires. */
export function createToken(dataDir: string, user: User, ttlSeconds: number): { token: string; expiresAt: string } {
  const expires = Math.floor(Date.now() / 1000) + ttlSeconds;
  const payload = `${Buffer.from(user.name).toString('base64url')}.${expires}`;
  let secret: Buffer;
  try {
    secret = ensureSecret(dataDir);
  } catch (err) {
    // A secret that could not be made leaves nothing behind (writeFileAtomic, then link).
    throw whenFull(err);
  }
  const signature = sign(secret, payload, user.hash).toString('base64url');
  const token = `${payload}.${signature}`;
  // Never hand out a token that verifyToken would not read.
  if (!TOKEN_RE.test(token)) throw new ApieError('internal', `no token can be issued for the user name ${JSON.stringify(user.name.slice(0, 40))}`);
  return { token, expiresAt: new Date(expires * 1000).toISOString() };
}

// Signed in place of the password hash of a name passwd does not have, so
// that checking its token costs what checking a real one does (a bcrypt hash
// is 60 characters).
const NO_USER_HASH = '$2b$10$'.padEnd(60, '.');

/**
 * The user a token speaks for (looked up by name, now), or null when it is
 * not valid. A well-formed, unexpired token costs one secret read and one
 * HMAC whether its user exists or not: no timing tells which names do.
 */
export function verifyToken(dataDir: string, token: string, find: (name: string) => User | undefined, cached?: ServerTokens): User | null {
  const m = TOKEN_RE.exec(token);
  if (!m || Number(m[2]) * 1000 <= Date.now()) return null;
  const user = find(Buffer.from(m[1], 'base64url').toString('utf8'));
  const secret = cached ? cached.secret() : readSecret(dataDir);
  if (!secret) return null;
  if (user && cached?.verified.has(token, secret, user.hash)) return user;
  // Compared as text, so a token differs from the issued one in no character at all.
  const expected = Buffer.from(sign(secret, `${m[1]}.${m[2]}`, user?.hash ?? NO_USER_HASH, cached?.hmac).toString('base64url'));
  const valid = constantTimeEqual(expected, Buffer.from(m[3]));
  if (valid && user) cached?.verified.add(token, secret, user.hash);
  return valid && user ? user : null;
}

/** What a server keeps for checking tokens: the cached secret, node:crypto's HMAC, the tokens it verified. */
export interface ServerTokens {
  secret: () => Buffer | null;
  hmac: Hmac;
  verified: VerifiedTokens;
}
