// GET /client.js and GET /client.d.ts: the client module and its declarations,
// embedded in the executable at build time (scripts/build.ts), with a gzipped
// copy of each. Public: no credentials. The text sits in this lazily loaded
// module, so a request for anything else never touches it.
import { ApieError } from '../errors.ts';
import { noneMatch } from '../http.ts';
import type { ApieRequest, ApieResponse } from '../types.ts';

/** One embedded file: its text and gzipped bytes (base64), with the SHA-256 of each as ETag. */
export interface ClientFile {
  type: string;
  text: string;
  hash: string;
  gzip: string;
  gzipHash: string;
}

declare const APIE_CLIENT_FILES: Record<string, ClientFile> | undefined;
const FILES = typeof APIE_CLIENT_FILES === 'object' ? APIE_CLIENT_FILES : undefined;

// Not immutable: the URL stays the same when Apie is upgraded, so a browser
// may use an old copy for a day, then revalidates it with If-None-Match.
export const CLIENT_CACHE_CONTROL = 'public, max-age=86400';

export function getClientFile(req: ApieRequest): ApieResponse {
  const file = FILES?.[req.path];
  if (!file) throw new ApieError('not-found', 'this executable was built without the client');
  const gzip = /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
  const hash = gzip ? file.gzipHash : file.hash;
  const headers: Record<string, string> = {
    'Content-Type': file.type,
    'Cache-Control': CLIENT_CACHE_CONTROL,
    ETag: `"${hash}"`,
    Vary: 'Accept-Encoding',
  };
  if (gzip) headers['Content-Encoding'] = 'gzip';
  if (noneMatch(req, hash)) return { status: 304, headers, body: null };
  return { status: 200, headers, body: gzip ? Buffer.from(file.gzip, 'base64') : file.text };
}
