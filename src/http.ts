// HTTP helpers that know nothing of storage: JSON responses, bodies, ETags,
// ranges, Content-Disposition and CORS.
import { ApieError } from './errors.ts';
import { HASH_RE } from './sha256.ts';
import type { ApieRequest, ApieResponse } from './types.ts';

/** A JSON response. */
export function json(value: unknown, status = 200, headers: Record<string, string | number> = {}): ApieResponse {
  return { status, headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify(value) };
}

/** Reads the whole body, answering 413 as soon as it grows past `limit` bytes. */
async function readBody(req: ApieRequest, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) throw new ApieError('too-large', `request body is over the limit of ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req.body) {
    size += chunk.length;
    if (size > limit) throw new ApieError('too-large', `request body is over the limit of ${limit} bytes`);
    chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  }
  return Buffer.concat(chunks, size);
}

/** Parses a JSON request body, answering 400 when it is not JSON. */
export async function readJson(req: ApieRequest, limit: number): Promise<unknown> {
  const text = (await readBody(req, limit)).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApieError('bad-request', 'request body is not valid JSON', { cause: err });
  }
}

/** Checks a hash from a path or query; anything but 64 lowercase hex characters is 400. */
export function parseHash(value: string, what = 'hash'): string {
  if (!HASH_RE.test(value)) throw new ApieError('bad-request', `${what} must be 64 lowercase hex characters (SHA-256)`);
  return value;
}

/**
 * The entity tags of an If-Match / If-None-Match header: hashes quoted,
 * unquoted or W/-prefixed, or '*'. Anything that is not a hash is 400.
 */
export function parseEtags(header: string): string[] {
  const tags: string[] = [];
  for (const part of header.split(',')) {
    const tag = part.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
    if (tag === '') continue;
    if (tag !== '*' && !HASH_RE.test(tag)) throw new ApieError('bad-request', 'If-Match / If-None-Match must hold a SHA-256 hash or *');
    tags.push(tag);
  }
  return tags;
}

/** Whether an If-None-Match header matches `hash` (so the answer is 304). */
export function noneMatch(req: ApieRequest, hash: string | undefined): boolean {
  const header = req.headers['if-none-match'];
  if (header === undefined || hash === undefined) return false;
  const tags = parseEtags(header);
  return tags.includes('*') || tags.includes(hash);
}

/** ETag and X-Apie-Hash headers for a hash. */
export function hashHeaders(hash: string | undefined): Record<string, string> {
  return hash ? { ETag: `"${hash}"`, 'X-Apie-Hash': hash } : {};
}

export function notModified(hash: string, extra: Record<string, string | number> = {}): ApieResponse {
  return { status: 304, headers: { ...extra, ...hashHeaders(hash) }, body: null };
}

/**
 * A single `bytes=` range against a size: null for no (or an ignorable) Range
 * header, the inclusive [start, end] otherwise; unsatisfiable is 416.
 */
export function parseRange(header: string | undefined, size: number): [number, number] | null {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  // Multiple or malformed ranges may be ignored (RFC 9110 14.2): send it all.
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw unsatisfiable(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null;
  }
  if (start >= size) throw unsatisfiable(size);
  return [start, end];
}

function unsatisfiable(size: number) {
  return new ApieError('range-not-satisfiable', 'range not satisfiable', { headers: { 'Content-Range': `bytes */${size}` } });
}

/** Content-Disposition for a download name, with an RFC 6266/5987 filename* for non-ASCII. */
export function contentDisposition(name: string, disposition = 'attachment'): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return ascii === name && !/["\\]/.test(name)
    ? `${disposition}; filename="${name}"`
    : `${disposition}; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

const CORS_ALLOW_HEADERS = 'Authorization, Content-Type, Content-Digest, If-Match, If-None-Match, Last-Event-ID, Range, X-Apie-Hash';
const CORS_EXPOSE_HEADERS = 'ETag, X-Apie-Hash, X-Apie-Count, Link, Content-Range, Content-Disposition, Location';

/** CORS headers for an allowed Origin, none otherwise (but Vary, once any origin is allowed). */
export function corsHeaders(origin: string | undefined, allowed: string[]): Record<string, string> {
  // The answer depends on Origin whenever CORS is configured: caches must know.
  if (!origin || !(allowed.includes(origin) || allowed.includes('*'))) return allowed.length ? { Vary: 'Origin' } : {};
  return {
    'Access-Control-Allow-Origin': origin,
    'Access-Control-Allow-Credentials': 'true',
    'Access-Control-Expose-Headers': CORS_EXPOSE_HEADERS,
    Vary: 'Origin',
  };
}

/** Extra headers answering a CORS preflight from an allowed origin. */
export function preflightHeaders(allow: string): Record<string, string> {
  return {
    'Access-Control-Allow-Methods': allow,
    'Access-Control-Allow-Headers': CORS_ALLOW_HEADERS,
    'Access-Control-Max-Age': '86400',
  };
}
