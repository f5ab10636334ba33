// The CGI front end: environment + stdin → request; response → stdout
// (`Status:` line, headers, blank line, body). Binary-safe both ways.
import { closeSync, openSync, read, readSync, writeSync } from 'node:fs';
import { createContext, handle, refuse } from './app.ts';
import { corsOriginsDespiteErrors, resolveDataDir } from './config.ts';
import { ApieError } from './errors.ts';
import { REASONS } from './reasons.ts';
import { isFileBody, type ApieRequest, type ApieResponse, type Context } from './types.ts';

/** Builds the request from CGI variables (RFC 3875) and stdin. */
function requestFromEnv(env: NodeJS.ProcessEnv): ApieRequest {
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith('HTTP_') && value !== undefined) headers[key.slice(5).toLowerCase().replace(/_/g, '-')] = value;
  }
  if (env.CONTENT_TYPE) headers['content-type'] = env.CONTENT_TYPE;
  if (env.CONTENT_LENGTH) headers['content-length'] = env.CONTENT_LENGTH;
  // The .htaccess rewrite fallback for old Apache hands the header over as an
  // environment variable, renamed REDIRECT_… after an internal redirect.
  const auth = env.HTTP_AUTHORIZATION || env.REDIRECT_HTTP_AUTHORIZATION || env.REDIRECT_REDIRECT_HTTP_AUTHORIZATION;
  if (auth) headers.authorization = auth;
  const https = env.HTTPS === 'on' || env.HTTPS === '1' || env.REQUEST_SCHEME === 'https';
  const host = env.HTTP_HOST || `${env.SERVER_NAME ?? 'localhost'}:${env.SERVER_PORT ?? '80'}`;
  const length = env.CONTENT_LENGTH ? Number(env.CONTENT_LENGTH) : undefined;
  return {
    method: (env.REQUEST_METHOD || 'GET').toUpperCase(),
    path: env.PATH_INFO || '/',
    query: new URLSearchParams(env.QUERY_STRING ?? ''),
    headers,
    body: readStdin(length),
    baseUrl: `${https ? 'https' : 'http'}://${host}${env.SCRIPT_NAME ?? ''}`,
  };
}

// Reads exactly CONTENT_LENGTH bytes (or to EOF when none was given); a body
// that ends early is an error, so a cut-off upload never looks complete.
async function* readStdin(length: number | undefined): AsyncGenerator<Uint8Array> {
  let left = length ?? Infinity;
  while (left > 0) {
    // Each chunk fills its own buffer (a pipe hands over 64 KiB a read): large
    // writes downstream, and a consumer may free a chunk's memory outright.
    const buf = Buffer.allocUnsafe(Math.min(left, 256 * 1024));
    let filled = 0;
    while (filled < buf.length) {
      const n = await readSome(buf, filled);
      if (n === 0) break;
      filled += n;
    }
    if (filled === 0 && length === undefined) return;
    left -= filled;
    if (filled < buf.length && length !== undefined) {
      throw new ApieError('bad-request', `request body ended after ${length - left} of ${length} bytes`);
    }
    yield filled === buf.length ? buf : buf.subarray(0, filled);
  }
}

// stdin may be a non-blocking pipe: O_NONBLOCK belongs to the open file,
// which this process shares with whoever made the pipe (libuv, in a Node
// parent, sets it on its pipes). A read with no data yet then fails with
// EAGAIN instead of waiting: wait briefly and read again.
function readSome(buf: Buffer, offset: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const attempt = () => read(0, buf, offset, buf.length - offset, null, (err, bytes) => {
      if (err && err.code === 'EAGAIN') setTimeout(attempt, 5);
      else if (err) reject(err);
      else resolve(bytes);
    });
    attempt();
  });
}

// stdout may be a non-blocking pipe; wait briefly when it is full.
const pause = new Int32Array(new SharedArrayBuffer(4));
function writeStdout(data: Uint8Array): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(1, data, off, data.length - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

/** Writes a response the way a CGI program must: Status line, headers, body. */
async function writeResponse(res: ApieResponse): Promise<void> {
  let head = `Status: ${res.status} ${REASONS[res.status] ?? ''}\r\n`;
  for (const [k, v] of Object.entries(res.headers)) head += `${k}: ${v}\r\n`;
  const { body } = res;
  if (typeof body === 'string') {
    writeStdout(Buffer.from(head + '\r\n' + body));
    return;
  }
  writeStdout(Buffer.from(head + '\r\n'));
  if (body instanceof Uint8Array) {
    writeStdout(body);
  } else if (isFileBody(body)) {
    // Synchronous reads and writes: nothing else runs, and it is the fastest path.
    const fd = openSync(body.file, 'r');
    try {
      // 128 KiB: measured fastest for page cache → pipe copies (cache-sized).
      const buf = Buffer.allocUnsafe(128 * 1024);
      let pos = body.start;
      while (pos <= body.end) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, body.end - pos + 1), pos);
        if (n === 0) break;
        writeStdout(buf.subarray(0, n));
        pos += n;
      }
    } finally {
      closeSync(fd);
    }
  } else if (body) {
    for await (const chunk of body) writeStdout(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }
}

/** Serves the one request this process was started for. */
export async function runCgi(): Promise<void> {
  const req = requestFromEnv(process.env);
  const dataDir = resolveDataDir();
  let ctx: Context | undefined;
  let res: ApieResponse;
  try {
    ctx = createContext(dataDir);
  } catch (err) {
    // A broken apie.json is the operator's problem: the message names the key, nothing more.
    res = refuse(req.method, req.headers.origin, err, corsOriginsDespiteErrors(dataDir));
  }
  res ??= await handle(req, ctx!);
  try {
    await writeResponse(res);
  } catch (err) {
    // The client went away (the web server closed our stdout): nothing to tell anyone.
    if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
  }
}
