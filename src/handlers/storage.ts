// The content store over HTTP: upload, download (ranges, conditional), delete, verify.
import { callerIsAdmin, requireAdmin } from '../access.ts';
import * as store from '../blobstore.ts';
import { ApieError } from '../errors.ts';
import { contentDisposition, hashHeaders, json, noneMatch, notModified, parseEtags, parseHash, parseRange } from '../http.ts';
import type { ApieRequest, ApieResponse, Context } from '../types.ts';

const CACHE = 'private, max-age=31536000, immutable';

/** PUT/POST /storage/NAME: streams the body into the store. */
export async function putBlob(req: ApieRequest, ctx: Context, params: string[]): Promise<ApieResponse> {
  const name = params[0];
  const limit = ctx.config.maxUploadBytes;
  // Refuse before reading a byte when the sender says it is too big.
  if (Number(req.headers['content-length']) > limit) throw new ApieError('too-large', `upload is over the limit of ${limit} bytes`);
  const contentType = req.headers['content-type']?.trim() || store.DEFAULT_TYPE;
  if (!store.validContentType(contentType)) throw new ApieError('bad-request', 'Content-Type must be a media type such as image/png');
  const blob = await store.putBlob(ctx.dataDir, ctx.config, req.body, { owner: ctx.user!.name, name, contentType, limit, expected: expectedHash(req) });
  const { storageBaseUrl, storageStatic } = ctx.config;
  // A statically served store is addressed by the blob's path under it; the API by the hash.
  const url = storageBaseUrl && storageStatic
    ? `${storageBaseUrl}/${store.staticPath(blob.hash)}`
    : `${storageBaseUrl ?? `${req.baseUrl}/storage`}/${blob.hash}`;
  return json({ status: 'ok', hash: blob.hash, url, size: blob.size, contentType: blob.contentType }, 200, hashHeaders(blob.hash));
}

// The hash the sender claims, from Content-Digest (RFC 9530) and/or X-Apie-Hash.
function expectedHash(req: ApieRequest): string | undefined {
  let fromDigest: string | undefined;
  const digest = req.headers['content-digest'];
  if (digest !== undefined) {
    // Other algorithms may be listed too; only sha-256 is checked.
    const m = /(?:^|,)\s*sha-256\s*=\s*:([A-Za-z0-9+/]*={0,2}):\s*(?:[;,]|$)/.exec(digest);
    if (m) {
      const bytes = Buffer.from(m[1], 'base64');
      if (bytes.length !== 32 || bytes.toString('base64') !== m[1]) throw new ApieError('bad-request', 'Content-Digest: sha-256 must be 32 bytes in base64, as in sha-256=:…:');
      fromDigest = bytes.toString('hex');
    }
  }
  const header = req.headers['x-apie-hash'];
  const fromHeader = header === undefined ? undefined : parseHash(header.trim(), 'X-Apie-Hash');
  if (fromDigest && fromHeader && fromDigest !== fromHeader) throw new ApieError('bad-request', 'Content-Digest and X-Apie-Hash name different hashes');
  return fromDigest ?? fromHeader;
}

/** GET/HEAD /storage/H: the bytes, whole or one range, streamed from disk. */
export function getBlob(req: ApieRequest, ctx: Context, params: string[]): ApieResponse {
  const hash = parseHash(params[0]);
  const found = store.findBlob(ctx.dataDir, hash);
  if (!found) throw new ApieError('not-found', 'no such blob');
  const { info, file } = found;
  // Served all the same: the bytes are what the hash says, with safe defaults for the rest.
  if (info.damagedMeta) console.error(`apie: storage: the metadata of ${hash} is damaged; served without name and type (upload the bytes again to repair it)`);
  if (noneMatch(req, hash)) return notModified(hash, { 'Cache-Control': CACHE });
  const headers: Record<string, string | number> = {
    'Content-Type': info.contentType,
    ...hashHeaders(hash),
    'Cache-Control': CACHE,
    'Content-Disposition': info.name ? contentDisposition(info.name) : 'attachment',
    'Accept-Ranges': 'bytes',
    // Uploaded HTML must never run as a page of this origin.
    'X-Content-Type-Options': 'nosniff',
  };
  let range = null;
  // If-Range with another entity tag means "send it all" (RFC 9110 13.1.5).
  const ifRange = req.headers['if-range'];
  if (ifRange === undefined || matches(ifRange, hash)) range = parseRange(req.headers.range, info.size);
  if (info.size === 0) return { status: 200, headers, body: '' };
  if (!range) return { status: 200, headers, body: { file, start: 0, end: info.size - 1 } };
  const [start, end] = range;
  headers['Content-Range'] = `bytes ${start}-${end}/${info.size}`;
  return { status: 206, headers, body: { file, start, end } };
}

function matches(ifRange: string, hash: string): boolean {
  try {
    return parseEtags(ifRange).includes(hash);
  } catch {
    return false; // a date or something else: not this entity tag
  }
}

/** DELETE /storage/H: an admin deletes the blob; anyone else their claim on it (the bytes go with the last). */
export async function deleteBlob(_req: ApieRequest, ctx: Context, params: string[]): Promise<ApieResponse> {
  const hash = parseHash(params[0]);
  await store.deleteBlob(ctx.dataDir, ctx.config, hash, { name: ctx.user!.name, admin: callerIsAdmin(ctx) });
  return json({ status: 'ok' });
}

/** POST /storage/verify (admins): re-hashes every blob. */
export async function verifyStorage(_req: ApieRequest, ctx: Context): Promise<ApieResponse> {
  requireAdmin(ctx);
  const { count, problems } = await store.verifyBlobs(ctx.dataDir, ctx.config);
  if (problems.length) throw new ApieError('damaged', `the content store is damaged (${count} blobs checked): ${problems.join('; ')}`);
  return json({ status: 'ok', count });
}
