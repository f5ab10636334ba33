// The HTTP server front end (node:http) around the same handle() as CGI.
import { createReadStream } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { handle, refuse } from './app.ts';
import { corsOriginsDespiteErrors, loadConfig, type Config } from './config.ts';
import { ApieError, errorResponse } from './errors.ts';
import { FileCache } from './filecache.ts';
import { openStreams } from './eventstore.ts';
import { LiveStreams } from './livelog.ts';
import { Logins, VerifiedTokens } from './logins.ts';
import { openToSend } from './nofollow.ts';
import { readPasswd } from './passwd.ts';
import { readSecret } from './token.ts';
import { bodyLength, isFileBody, type ApieRequest, type ApieResponse, type Cached, type Context } from './types.ts';

interface ServerOptions {
  host: string;
  port: number;
  ctx: Context;
  quiet?: boolean;
  /** Connections this process serves at once; past it, 503 (default DEFAULT_MAX_CONNECTIONS). */
  maxConnections?: number;
}

/** The default of `--max-connections`, per worker. */
export const DEFAULT_MAX_CONNECTIONS = 1024;
// Of those, how many may be event streams and long polls: the rest stays free
// for short requests, so waiting clients cannot starve everyone else.
const WAITING_SHARE = 0.75;
// Past the cap, connections still get a 503 up to this many more; beyond, Node drops them unanswered.
const OVERFLOW = 2;

// A host name or address with an optional port, as Host and X-Forwarded-Host carry them.
const HOST_RE = /^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

// The last value of a header a proxy appends to (the one the proxy in front of us wrote).
function lastOf(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value.join(',') : value;
  const last = text?.split(',').pop()?.trim();
  return last || undefined;
}

/**
 * The URL clients reach this server at: from X-Forwarded-Proto and -Host when
 * the proxy in front is trusted, else http:// and Host (used for nothing but
 * building URLs; apie.json's publicUrl overrides both, in app.ts).
 */
function baseUrlOf(req: IncomingMessage, trustProxy: boolean): string {
  let proto = 'http';
  let host = req.headers.host;
  if (trustProxy) {
    const forwarded = lastOf(req.headers['x-forwarded-proto'])?.toLowerCase();
    if (forwarded === 'https' || forwarded === 'http') proto = forwarded;
    host = lastOf(req.headers['x-forwarded-host']) ?? host;
  }
  return `${proto}://${host !== undefined && HOST_RE.test(host) ? host : 'localhost'}`;
}

/** The client's address for the access log: as the proxy reported it only when it is trusted. */
function clientOf(req: IncomingMessage, trustProxy: boolean): string {
  return (trustProxy ? lastOf(req.headers['x-forwarded-for']) : undefined) ?? req.socket.remoteAddress ?? '-';
}

/** Builds the shared request shape from a node:http request. */
export function requestFromHttp(req: IncomingMessage, trustProxy = false): ApieRequest {
  const target = req.url ?? '/';
  // An origin-form target is a path, '//events' included (resolved against a
  // base, it would be a host): only an absolute-form one is a whole URL.
  let url: URL;
  try {
    url = target.startsWith('/') ? new URL(`http://localhost${target}`) : new URL(target);
  } catch {
    throw new ApieError('bad-request', 'malformed request target');
  }
  let path: string;
  try {
    path = decodeURIComponent(url.pathname);
  } catch (err) {
    throw new ApieError('bad-request', 'malformed percent-encoding in the path', { cause: err });
  }
  const headers: Record<string, string> = {};
  for (const k in req.headers) {
    const v = req.headers[k];
    if (v !== undefined) headers[k] = typeof v === 'string' ? v : v.join(', ');
  }
  return {
    method: (req.method ?? 'GET').toUpperCase(),
    path,
    query: url.searchParams,
    headers,
    body: req,
    baseUrl: baseUrlOf(req, trustProxy),
  };
}

// An event stream or a long poll: it holds its connection until an event comes.
const WAITING_RE = /^[^?]*\/events(?:\?|$)/;
function waits(req: IncomingMessage): boolean {
  const url = req.url ?? '';
  if (!WAITING_RE.test(url)) return false;
  return /[?&]wait=/.test(url) || /\btext\/event-stream\b/.test(req.headers.accept ?? '');
}

// The answer past a cap: the server is up, try again in a moment.
function busy(what: string): ApieError {
  return new ApieError('busy', `too many ${what} at once; retry`, { headers: { 'Retry-After': '1' } });
}

/** The server's caches of the data directory's small files and of verified logins. */
function serverCache(dataDir: string): Cached {
  const config = new FileCache(dataDir, 'apie.json', () => loadConfig(dataDir));
  const passwd = new FileCache(dataDir, 'passwd', () => {
    const read = readPasswd(dataDir, { required: true });
    // Said once per change of the file, not on every request.
    for (const problem of read.problems) console.error(`apie: ${problem}`);
    return read;
  });
  const secret = new FileCache(dataDir, 'token-secret', () => ({ secret: readSecret(dataDir) }));
  return {
    config: () => config.get(),
    passwd: () => passwd.get(),
    tokenSecret: () => secret.get().secret,
    logins: new Logins(),
    tokens: new VerifiedTokens(),
  };
}

async function send(res: ServerResponse, out: ApieResponse): Promise<number> {
  // Opened before the head is written, so a failure can still be the answer.
  let fd: number | undefined;
  if (isFileBody(out.body)) {
    try {
      fd = await openToSend(out.body.file);
    } catch (err) {
      // In place, so the access log shows the status that was sent.
      return send(res, Object.assign(out, errorResponse(err)));
    }
  }
  res.writeHead(out.status, out.headers);
  const { body } = out;
  if (body === null || body === undefined) {
    res.end();
  } else if (typeof body === 'string' || body instanceof Uint8Array) {
    res.end(body);
  } else if (isFileBody(body)) {
    const stream = createReadStream(body.file, { fd, start: body.start, end: body.end });
    await new Promise<void>((resolve) => {
      stream.on('error', (err) => { console.error(err); res.destroy(); resolve(); });
      res.on('close', () => { stream.destroy(); resolve(); });
      stream.pipe(res);
    });
  } else {
    // A stream of chunks (Server-Sent Events): stop when the client goes away.
    const iterator = body[Symbol.asyncIterator]();
    try {
      for (let next = await iterator.next(); !next.done && !res.destroyed; next = await iterator.next()) {
        if (!res.write(next.value)) await new Promise((resolve) => { res.once('drain', resolve); res.once('close', resolve); });
      }
    } finally {
      await iterator.return?.();
    }
    res.end();
  }
  return bodyLength(body) ?? 0;
}

// The access log's lines of one turn of the event loop, written together
// (stderr to a file or a pipe is written synchronously: one write(2) per
// request was on every request's path).
const accessLines: string[] = [];

function logAccess(line: string): void {
  if (accessLines.length === 0) setImmediate(flushAccess);
  accessLines.push(line);
}

function flushAccess(): void {
  if (accessLines.length === 0) return;
  process.stderr.write(`${accessLines.join('\n')}\n`);
  accessLines.length = 0;
}

// Each server's signal that ends its long polls and event streams when it stops.
const shutdowns = new WeakMap<Server, AbortController>();

/** Starts listening; resolves once the port is bound. */
export function startServer(opts: ServerOptions): Promise<Server> {
  const { dataDir } = opts.ctx;
  const cached = serverCache(dataDir);
  // The event store is chosen once, at start: a change of eventStore needs a restart.
  const streams = openStreams(dataDir, opts.ctx.config, () => new LiveStreams(dataDir, () => cached.config()));
  const shutdown = new AbortController();
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const maxWaiting = Math.max(1, Math.floor(maxConnections * WAITING_SHARE));
  // Connections accepted past the cap: each gets its 503, then is closed.
  const over = new WeakSet<object>();
  let connections = 0;
  let waiting = 0;
  // Node checks the header and request timeouts on this interval (30 s by
  // default, so a 20 s limit came to 20–50 s): once a second keeps it 20–21 s.
  const server = createServer({ connectionsCheckingInterval: 1000 }, async (req, res) => {
    const started = performance.now();
    let config: Config | undefined;
    let out: ApieResponse;
    let ctx: Context | undefined;
    let trustProxy = false;
    try {
      if (over.has(req.socket)) throw busy('connections');
      config = cached.config();
      trustProxy = config.trustProxy;
      let signal: AbortSignal | undefined;
      if (waits(req)) {
        if (waiting >= maxWaiting) throw busy('event streams and long polls');
        waiting++;
        // Tell an event stream when the client goes away: only a request that
        // waits needs to know (aborting costs a DOMException with its stack, a
        // profile's 4 % of `GET /events/H` when every request had one).
        const gone = new AbortController();
        signal = gone.signal;
        res.once('close', () => {
          waiting--;
          if (!res.writableFinished) gone.abort();
        });
      }
      ctx = { dataDir, config, user: undefined, shutdown: shutdown.signal, streams, cached };
      out = await handle({ ...requestFromHttp(req, trustProxy), signal }, ctx);
    } catch (err) {
      // handle() never throws: the request could not be built (a bad
      // %-escape), apie.json did not load, or a cap was reached.
      const origins = config?.corsOrigins ?? corsOriginsDespiteErrors(dataDir);
      out = refuse((req.method ?? 'GET').toUpperCase(), req.headers.origin, err, origins);
    }
    // A body left unread (a 413, a 401 on an upload) is not drained: close instead.
    if (!req.complete || over.has(req.socket)) out.headers.Connection = 'close';
    const bytes = await send(res, out).catch((err) => { console.error(err); res.destroy(); return 0; });
    if (!opts.quiet) {
      const ms = (performance.now() - started).toFixed(1);
      logAccess(`${clientOf(req, trustProxy)} ${req.method} ${req.url} ${out.status} ${bytes} ${ms}ms ${ctx?.user?.name ?? '-'}`);
    }
  });
  server.on('connection', (socket) => {
    if (++connections > maxConnections) over.add(socket);
    socket.once('close', () => connections--);
  });
  // Beyond the overflow, connections are dropped at once: nothing grows without bound.
  server.maxConnections = maxConnections * OVERFLOW;
  // A stalled client is dropped after 75 s of silence (longer than the longest
  // long poll, 60 s; event streams send heartbeats); headers must come in 20 s.
  server.timeout = 75_000;
  server.headersTimeout = 20_000;
  // Uploads of gigabytes may take long: no limit on the whole request, only on silence.
  server.requestTimeout = 0;
  shutdowns.set(server, shutdown);
  server.once('close', () => void streams.close?.());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve(server));
  });
}

/**
 * Stops accepting, lets in-flight requests finish (at most `graceMs`), ends
 * long polls and event streams, and resolves when every connection is closed.
 */
export function stopServer(server: Server, graceMs = 10_000): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      flushAccess();
      resolve();
    });
    shutdowns.get(server)?.abort();
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), graceMs).unref();
  });
}
