// Who is asking: HTTP Basic against passwd (bcrypt), or a bearer token.
import { ApieError } from './errors.ts';
import { hashCost, readPasswd, type Passwd } from './passwd.ts';
import type { ApieRequest, Context, User } from './types.ts';

const CHALLENGE = { 'WWW-Authenticate': 'Basic realm="Apie", charset="UTF-8"' };

/** A 401 with the Basic challenge. */
export function unauthorized(message: string) {
  return new ApieError('unauthorized', message, { headers: CHALLENGE });
}

// One strict pattern; anything else is simply not credentials.
const BASIC_RE = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i;
const BEARER_RE = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i;

// Invalid UTF-8 is not credentials (a decoder holds no state between whole decodes).
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Parses Basic credentials into [name, password], or null when malformed. */
function parseBasic(header: string): [string, string] | null {
  const m = BASIC_RE.exec(header);
  if (!m || m[1].length % 4 !== 0) return null;
  let decoded: string;
  try {
    decoded = UTF8.decode(Buffer.from(m[1], 'base64'));
  } catch {
    return null;
  }
  const colon = decoded.indexOf(':');
  if (colon <= 0) return null;
  return [decoded.slice(0, colon), decoded.slice(colon + 1)];
}

/** Whether a request authenticates with a bearer token rather than a password. */
export function viaBearer(req: ApieRequest): boolean {
  return BEARER_RE.test(req.headers.authorization ?? '');
}

/** The authenticated user of a request; 401 otherwise. */
export async function authenticate(req: ApieRequest, ctx: Context): Promise<User> {
  const header = req.headers.authorization;
  if (!header) throw unauthorized('authentication required');
  const bearer = BEARER_RE.exec(header);
  const credentials = bearer ? null : parseBasic(header);
  if (!bearer && !credentials) throw unauthorized('malformed Authorization header');
  const passwd = passwdOf(ctx);
  if (bearer) {
    const { nodeHmac, verifyToken } = await import('./token.ts');
    const cached = ctx.cached && { secret: ctx.cached.tokenSecret, hmac: nodeHmac, verified: ctx.cached.tokens };
    const user = verifyToken(ctx.dataDir, bearer[1], (name) => passwd.users.get(name), cached);
    if (!user) throw unauthorized('invalid or expired token');
    return user;
  }
  const [name, password] = credentials!;
  const known = ctx.cached?.logins.find(name, password, passwd.users.get(name));
  if (known) return known;
  const { default: bcrypt } = await import('bcryptjs');
  const user = await checkPassword(passwd.users, name, password, bcrypt.compare, ctx.config.bcryptCost);
  if (!user) throw unauthorized('wrong user name or password');
  ctx.cached?.logins.remember(name, password, user);
  return user;
}

// The server's cached passwd, or the file read now (once per CGI process).
function passwdOf(ctx: Context): Passwd {
  if (ctx.cached) return ctx.cached.passwd();
  const passwd = readPasswd(ctx.dataDir, { required: true });
  // stderr is the server log (Apache's error log under CGI).
  for (const problem of passwd.problems) console.error(`apie: ${problem}`);
  return passwd;
}

/** bcryptjs's compare, or the same watched by a test. */
export type Compare = (password: string, hash: string) => Promise<boolean>;

/**
 * The user with this name and password, or null. Every check costs the bcrypt
 * work of the dearest hash among `users` (bcryptCost when there are none),
 * known name or not, so the time of a 401 does not tell whether a name
 * exists: an unknown name is checked against a dummy hash of that cost, and a
 * user whose hash costs c less pays dummy hashes of costs c, c+1, … max-1
 * after its own (2^c + 2^c + 2^(c+1) + … + 2^(max-1) = 2^max rounds).
 */
export async function checkPassword(users: Map<string, User>, name: string, password: string, compare: Compare, bcryptCost: number): Promise<User | null> {
  let max = 0;
  for (const u of users.values()) max = Math.max(max, hashCost(u.hash));
  if (max === 0) max = bcryptCost;
  const user = users.get(name);
  if (!user) {
    await compare(password, dummyHash(max));
    return null;
  }
  const ok = await compare(password, user.hash);
  for (let cost = hashCost(user.hash); cost < max; cost++) await compare(password, dummyHash(cost));
  return ok ? user : null;
}

function dummyHash(cost: number): string {
  return `$2b$${String(cost).padStart(2, '0')}$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy`;
}
