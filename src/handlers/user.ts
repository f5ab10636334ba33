// POST /auth/token and POST /user/update: the caller's token and own passwd entry.
import { unauthorized, viaBearer } from '../auth.ts';
import { ApieError } from '../errors.ts';
import { json, readJson } from '../http.ts';
import { passwordProblem, updatePasswd, validInfo } from '../passwd.ts';
import { createToken } from '../token.ts';
import type { ApieRequest, ApieResponse, Context } from '../types.ts';

// A token must not mint its successor, nor change the password it is bound
// to: a stolen token would otherwise outlive its expiry.
function needPassword(req: ApieRequest, what: string): void {
  if (viaBearer(req)) throw unauthorized(`${what} needs the password (Basic credentials), not a token`);
}

/** POST /auth/token: a bearer token for the caller (Basic credentials only). */
export function postToken(req: ApieRequest, ctx: Context): ApieResponse {
  needPassword(req, 'a token');
  const issued = createToken(ctx.dataDir, ctx.user!, ctx.config.tokenTtlSeconds);
  return json(issued, 200, { 'Cache-Control': 'no-store' });
}

/** POST /user/update {"password"?, "info"?}: changes the caller's own passwd entry. */
export async function postUpdate(req: ApieRequest, ctx: Context): Promise<ApieResponse> {
  const body = await readJson(req, 64 * 1024);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApieError('bad-request', 'expected a JSON object {"password"?, "info"?}');
  const { password, info, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) throw new ApieError('bad-request', `unknown field "${unknown}"; expected "password" and/or "info"`);
  if (password === undefined && info === undefined) throw new ApieError('bad-request', 'nothing to update: give "password" and/or "info"');
  if (password !== undefined && typeof password !== 'string') throw new ApieError('bad-request', '"password" must be a string');
  if (info !== undefined && (typeof info !== 'string' || !validInfo(info))) {
    throw new ApieError('bad-request', '"info" must be a string of at most 1024 characters without control characters');
  }
  let hash: string | undefined;
  if (password !== undefined) {
    needPassword(req, 'changing the password');
    const problem = passwordProblem(password);
    if (problem) throw new ApieError('bad-request', problem);
    // Hashed before taking the lock: bcrypt is the slow part.
    const { default: bcrypt } = await import('bcryptjs');
    hash = await bcrypt.hash(password, ctx.config.bcryptCost);
  }
  const name = ctx.user!.name;
  await updatePasswd(ctx.dataDir, ctx.config, (users) => {
    const user = users.get(name);
    if (!user) throw unauthorized('this user no longer exists');
    users.set(name, { ...user, hash: hash ?? user.hash, info: info ?? user.info });
  });
  return json({ status: 'ok' });
}
