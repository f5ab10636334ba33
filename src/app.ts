// handle(request) → response: the whole application, shared by both front ends.
import { authenticate } from './auth.ts';
import { loadConfig } from './config.ts';
import { ApieError, errorResponse } from './errors.ts';
import { corsHeaders, preflightHeaders, unsafeHeader } from './http.ts';
import { allowed, route } from './routes.ts';
import { bodyLength, type ApieRequest, type ApieResponse, type Context } from './types.ts';

/** Loads the configuration of a data directory into a fresh request context. */
export function createContext(dataDir: string): Context {
  return { dataDir, config: loadConfig(dataDir) };
}

/** Answers one request; never throws. */
export async function handle(req: ApieRequest, ctx: Context): Promise<ApieResponse> {
  // Behind a proxy that rewrites the host or the scheme, only the operator knows the URL clients use.
  if (ctx.config.publicUrl !== null) req = { ...req, baseUrl: ctx.config.publicUrl };
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
  // Both may vary the answer (Accept-Encoding, Origin): caches must know of each.
  const vary = [res.headers.Vary, cors.Vary].filter((v) => v !== undefined).join(', ');
  Object.assign(res.headers, cors);
  if (vary) res.headers.Vary = vary;
  // The last guard: whatever a header was built from, none goes out that
  // could end the header block early (CGI writes them as text).
  const unsafe = unsafeHeader(res.headers);
  if (unsafe !== null) {
    res = errorResponse(new ApieError('internal', 'internal error', { cause: new Error(`response header ${unsafe} held a control character`) }));
  }
  const length = bodyLength(res.body);
  if (length !== undefined && res.headers['Content-Length'] === undefined) res.headers['Content-Length'] = length;
  return method === 'HEAD' ? { ...res, body: null } : res;
}

async function dispatch(req: ApieRequest, ctx: Context, cors: Record<string, string>): Promise<ApieResponse> {
  // Runs of slashes count as one, as Apache (MergeSlashes) and nginx count
  // them before a CGI program sees the path: every front end agrees.
  const path = req.path.replace(/\/{2,}/g, '/');
  const allow = req.method === 'OPTIONS' ? allowed(path) : null;
  if (allow !== null) {
    // CORS preflight carries no credentials, so it is answered before auth
    // (on known paths only: an unknown one reveals nothing without them).
    const preflight = cors['Access-Control-Allow-Origin'] ? preflightHeaders(allow) : {};
    return { status: 204, headers: { Allow: allow, ...preflight }, body: null };
  }
  let match;
  let routeError: unknown;
  try {
    match = route(req.method, path);
  } catch (err) {
    routeError = err;
  }
  // Authenticate before revealing anything about paths, even that they are unknown.
  if (!match?.public) ctx.user = await authenticate(req, ctx);
  if (!match) throw routeError;
  const handler = await match.load();
  return handler(req, ctx, match.params);
}
