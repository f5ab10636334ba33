// GET / and GET /info.
import { describeAccess } from '../access.ts';
import { configJson } from '../config.ts';
import { json } from '../http.ts';
import type { ApieResponse, Context } from '../types.ts';
import { VERSION } from '../version.ts';

export function getRoot(): ApieResponse {
  return { status: 200, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: `Apie ${VERSION}\n` };
}

/** The caller, what they may do, and the configuration; never the environment, headers or secrets. */
export function getInfo(_req: unknown, ctx: Context): ApieResponse {
  const { user, config } = ctx;
  const { admin, access } = describeAccess(ctx);
  return json({
    version: VERSION,
    auth: { user: { email: user!.name, info: user!.info, admin }, access },
    config: configJson(config),
  });
}
