// handle() called in-process, as hono's app.request() does: a request made
// from a method, a path and options, its answer as a Reply. For fast unit
// tests of HTTP rules; the contract tables still run through the three real
// front ends (harness.ts).
import { readFileSync } from 'node:fs';
import { createContext, handle } from '../../src/app.ts';
import type { ApieRequest, ApieResponse } from '../../src/types.ts';
import { headersFor, reply, type Reply, type RequestOptions } from './harness.ts';

/** The base URL in-process requests are made to. */
export const BASE = 'http://apie.test';

/** Answers one request against a data directory the way a CGI process would; stderr is what it logged. */
export async function request(dataDir: string, method: string, path: string, opts: RequestOptions = {}): Promise<Reply & { stderr: string }> {
  const [pathname, query = ''] = path.split(/\?(.*)/s);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(headersFor(opts))) headers[k.toLowerCase()] = v;
  const body = opts.body === undefined ? undefined : Buffer.from(opts.body);
  if (body) headers['content-length'] = String(body.length);
  const req: ApieRequest = {
    method,
    path: decodeURIComponent(pathname),
    query: new URLSearchParams(query),
    headers,
    body: (async function* () {
      if (body) yield body;
    })(),
    baseUrl: BASE,
  };
  const logged: unknown[][] = [];
  const log = console.error;
  console.error = (...args: unknown[]) => logged.push(args);
  let res: ApieResponse;
  try {
    res = await handle(req, createContext(dataDir));
  } finally {
    console.error = log;
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) out[k.toLowerCase()] = String(v);
  return { ...reply(res.status, out, await bytesOf(res.body)), stderr: logged.map((a) => a.join(' ')).join('\n') };
}

async function bytesOf(body: ApieResponse['body']): Promise<Buffer> {
  if (body === null || body === undefined) return Buffer.alloc(0);
  if (typeof body === 'string' || body instanceof Uint8Array) return Buffer.from(body);
  if ('file' in body) return readFileSync(body.file).subarray(body.start, body.end + 1);
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}
