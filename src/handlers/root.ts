// GET / and GET /info.
import { configJson } from '../config.ts';
import { json } from '../http.ts';
import type { ApieResponse, Context } from '../types.ts';
import { VERSION } from '../version.ts';

export function getRoot(): ApieResponse {
  return { status: 200, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: `Apie ${VERSION}\n` };
}

/** The caller and the configuration; never the environment, headers or secrets. */
export function getInfo(_req: unknown, ctx: Context): ApieResponse {
  const { user, config } = ctx;
  return json({
    version: VERSION,
    auth: { user: user ? { email: user.name, info: user.info } : null },
    config: configJson(config),
  });
}
