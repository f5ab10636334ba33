// Verified Basic credentials, kept by the server so that a client sending a
// password with every request (curl, scripts) does not pay a bcrypt check on
// each: the way Apache's mod_authn_socache does it. An entry is keyed by an
// HMAC of name and password under a random key of this process (the password
// is never kept, and the key never leaves memory), holds the passwd hash it
// was checked against, and counts only while that is still the user's hash:
// `apie user passwd` or removing the user drops it. Only a successful check is
// kept, so a wrong password is never taken for right, and a name that does not
// exist still costs a full bcrypt check, as a wrong password does.
// Verified bearer tokens are kept too (VerifiedTokens), sparing the HMAC.
import type { User } from './types.ts';

const MAX_ENTRIES = 1000;
const MAX_AGE_MS = 5 * 60_000;

interface Entry {
  hash: string;
  until: number;
}

export class Logins {
  private readonly key: Buffer;
  // In order of insertion: the oldest is dropped first when full.
  private readonly entries = new Map<string, Entry>();

  constructor() {
    this.key = crypto().randomBytes(32);
  }

  private id(name: string, password: string): string {
    // Names hold no control character (passwd.ts): NUL separates them unambiguously.
    return crypto().createHmac('sha256', this.key).update(name).update('\0').update(password).digest('base64');
  }

  /** The user, when this name and password were checked against their current passwd hash lately. */
  find(name: string, password: string, current: User | undefined): User | undefined {
    const id = this.id(name, password);
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.until > Date.now() && current !== undefined && current.hash === entry.hash) return current;
    this.entries.delete(id);
    return undefined;
  }

  /** Keeps a check that succeeded. */
  remember(name: string, password: string, user: User): void {
    keep(this.entries, this.id(name, password), { hash: user.hash, until: Date.now() + MAX_AGE_MS });
  }
}

/**
 * Bearer tokens the server verified, by the token itself (no secret to this
 * process, which holds the key that signs them): a token sent again costs no
 * HMAC while it is checked under the same secret (a rotation drops them all)
 * for the same passwd hash of its user. Its expiry is still read from the
 * token on every request (token.ts).
 */
export class VerifiedTokens {
  private readonly entries = new Map<string, { secret: Buffer; hash: string }>();

  /** Whether this token was verified under `secret` for a user whose passwd hash is `hash`. */
  has(token: string, secret: Buffer, hash: string): boolean {
    const entry = this.entries.get(token);
    return entry !== undefined && entry.secret === secret && entry.hash === hash;
  }

  /** Keeps a token that was verified. */
  add(token: string, secret: Buffer, hash: string): void {
    keep(this.entries, token, { secret, hash });
  }
}

// Sets an entry of a bounded map: when full, the oldest goes first.
function keep<V>(entries: Map<string, V>, key: string, value: V): void {
  entries.delete(key);
  if (entries.size >= MAX_ENTRIES) entries.delete(entries.keys().next().value!);
  entries.set(key, value);
}

const crypto = () => process.getBuiltinModule('node:crypto');
