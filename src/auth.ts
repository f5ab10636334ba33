// Who is asking: HTTP Basic against passwd (bcrypt), or a bearer token.
import { ApieError } from './errors.ts';
import { readPasswd } from './passwd.ts';
import type { ApieRequest, Context, User } from './types.ts';

const CHALLENGE = { 'WWW-Authenticate': 'Basic realm="Apie", charset="UTF-8"' };

/** A 401 with the Basic challenge. */
export function unauthorized(message: string) {
  return new ApieError('unauthorized', message, { headers: CHALLENGE });
}

// One strict pattern; anything else is simply not credentials.
const BASIC_RE = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i;
const BEARER_RE = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i;

/** Parses Basic credentials into [name, password], or null when malformed. */
function parseBasic(header: string): [string, string] | null {
  const m = BASIC_RE.exec(header);
  if (!m || m[1].length % 4 !== 0) return null;
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(m[1], 'base64'));
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
  const passwd = readPasswd(ctx.dataDir);
  // stderr is the server log (Apache's error log under CGI).
  for (const problem of passwd.problems) console.error(`apie: ${problem}`);
  if (bearer) {
    const { verifyToken } = await import('./token.ts');
    const user = verifyToken(ctx.dataDir, bearer[1], (name) => passwd.users.get(name));
    if (!user) throw unauthorized('invalid or expired token');
    return user;
  }
  const [name, password] = credentials!;
  const user = passwd.users.get(name);
  const { default: bcrypt } = await import('bcryptjs');
  // An unknown name costs the same bcrypt work as a wrong password: no timing oracle.
  const ok = await bcrypt.compare(password, user?.hash ?? dummyHash(ctx.config.bcryptCost));
  if (!ok || !user) throw unauthorized('wrong user name or password');
  return user;
}

function dummyHash(cost: number): string {
  return `$2b$${String(cost).padStart(2, '0')}$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy`;
}
