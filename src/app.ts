// handle(request) → response: the whole application, shared by both front ends.
import { authenticate } from './auth.ts';
import { loadConfig } from './config.ts';
import { errorResponse } from './errors.ts';
import { corsHeaders, preflightHeaders } from './http.ts';
import { allowed, route } from './routes.ts';
import { bodyLength, type ApieRequest, type ApieResponse, type Context } from './types.ts';

/** Loads the configuration of a data directory into a fresh request context. */
export function createContext(dataDir: string): Context {
  return { dataDir, config: loadConfig(dataDir) };
}

/** Answers one request; never throws. */
export async function handle(req: ApieRequest, ctx: Context): Promise<ApieResponse> {
  const cors = corsHeaders(req.headers.origin, ctx.config.corsOrigins);
  let res: ApieResponse;
  try {
    res = await dispatch(req, ctx, cors);
  } catch (err) {
    res = errorResponse(err);
  }
  return finish(req.method, res, cors);
}

/**
 * The answer to a request that never reached handle(): its front end could
 * not build it, or no configuration loaded. The same error body and CORS
 * headers as any other error, so a browser app can read it.
 */
export function refuse(method: string, origin: string | undefined, err: unknown, corsOrigins: string[]): ApieResponse {
  return finish(method, errorResponse(err), corsHeaders(origin, corsOrigins));
}

// Every answer leaves through here: the CORS headers, Content-Length whenever
// the body's size is known, and HEAD as GET without a body (decided here only).
function finish(method: string, res: ApieResponse, cors: Record<string, string>): ApieResponse {
  Object.assign(res.headers, cors);
  const length = bodyLength(res.body);
  if (length !== undefined && res.headers['Content-Length'] === undefined) res.headers['Content-Length'] = length;
  return method === 'HEAD' ? { ...res, body: null } : res;
}

async function dispatch(req: ApieRequest, ctx: Context, cors: Record<string, string>): Promise<ApieResponse> {
  if (req.method === 'OPTIONS') {
    // CORS preflight carries no credentials, so it is answered before auth.
    const allow = allowed(req.path);
    // No route has this path: route() throws the same 404 any other method gets.
    if (allow === null) route(req.method, req.path);
    const preflight = cors['Access-Control-Allow-Origin'] ? preflightHeaders(allow!) : {};
    return { status: 204, headers: { Allow: allow!, ...preflight }, body: null };
  }
  let match;
  let routeError: unknown;
  try {
    match = route(req.method, req.path);
  } catch (err) {
    routeError = err;
  }
  // Authenticate before revealing anything about paths, even that they are unknown.
  ctx.user = await authenticate(req, ctx);
  if (!match) throw routeError;
  const handler = await match.load();
  return handler(req, ctx, match.params);
}
