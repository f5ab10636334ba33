// The HTTP server front end (node:http) around the same handle() as CGI.
import { createReadStream } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { handle, refuse } from './app.ts';
import { ApieError, errorResponse } from './errors.ts';
import { openStreams } from './eventstore.ts';
import { LiveStreams } from './livelog.ts';
import { openToSend } from './nofollow.ts';
import { bodyLength, isFileBody, type ApieRequest, type ApieResponse, type Context } from './types.ts';

interface ServerOptions {
  host: string;
  port: number;
  ctx: Context;
  quiet?: boolean;
}

/** Builds the shared request shape from a node:http request. */
export function requestFromHttp(req: IncomingMessage): ApieRequest {
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
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return {
    method: (req.method ?? 'GET').toUpperCase(),
    path,
    query: url.searchParams,
    headers,
    body: req,
    baseUrl: `http://${req.headers.host ?? 'localhost'}`,
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

// Each server's signal that ends its long polls and event streams when it stops.
const shutdowns = new WeakMap<Server, AbortController>();

/** Starts listening; resolves once the port is bound. */
export function startServer(opts: ServerOptions): Promise<Server> {
  const streams = openStreams(opts.ctx.dataDir, opts.ctx.config, () => new LiveStreams(opts.ctx.dataDir, opts.ctx.config));
  const shutdown = new AbortController();
  // Node checks the header and request timeouts on this interval (30 s by
  // default, so a 20 s limit came to 20–50 s): once a second keeps it 20–21 s.
  const server = createServer({ connectionsCheckingInterval: 1000 }, async (req, res) => {
    const started = performance.now();
    const ctx: Context = { ...opts.ctx, user: undefined, shutdown: shutdown.signal, streams };
    // Tell long polls and event streams when the client goes away.
    const gone = new AbortController();
    res.on('close', () => gone.abort());
    let out: ApieResponse;
    try {
      out = await handle({ ...requestFromHttp(req), signal: gone.signal }, ctx);
    } catch (err) {
      // handle() never throws: the request could not be built (a bad %-escape).
      out = refuse((req.method ?? 'GET').toUpperCase(), req.headers.origin, err, ctx.config.corsOrigins);
    }
    // A body left unread (a 413, a 401 on an upload) is not drained: close instead.
    if (!req.complete) out.headers.Connection = 'close';
    const bytes = await send(res, out).catch((err) => { console.error(err); res.destroy(); return 0; });
    if (!opts.quiet) {
      const ms = (performance.now() - started).toFixed(1);
      console.error(`${req.method} ${req.url} ${out.status} ${bytes} ${ms}ms ${ctx.user?.name ?? '-'}`);
    }
  });
  // A stalled client is dropped after 75 s of silence (longer than the longest
  // long poll, 60 s; event streams send heartbeats); headers must come in 20 s.
  server.timeout = 75_000;
  server.headersTimeout = 20_000;
  // Uploads of gigabytes may take long: no limit on the whole request.
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
    server.close(() => resolve());
    shutdowns.get(server)?.abort();
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), graceMs).unref();
  });
}
