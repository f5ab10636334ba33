// The request and response shapes shared by both front ends (CGI and server).
import type { Config } from './config.ts';
import type { Streams } from './eventstore.ts';
import type { Logins, VerifiedTokens } from './logins.ts';
import type { Passwd } from './passwd.ts';

export interface ApieRequest {
  /** Upper-case method. */
  method: string;
  /** Decoded path relative to the program's root: `/events/…`. */
  path: string;
  query: URLSearchParams;
  /** Lower-case header names. */
  headers: Record<string, string>;
  /** The request body; read it at most once. */
  body: AsyncIterable<Uint8Array>;
  /** Absolute URL of the program's root, without a trailing slash. */
  baseUrl: string;
  /** Aborted when the client goes away (server front end; event streams and long polls only). */
  signal?: AbortSignal;
}

/** A byte range of a file on disk, streamed by the front end (inclusive end). */
interface FileBody {
  file: string;
  start: number;
  end: number;
}

type Body = string | Uint8Array | FileBody | AsyncIterable<string | Uint8Array> | null | undefined;

export interface ApieResponse {
  status: number;
  headers: Record<string, string | number>;
  body?: Body;
}

export interface User {
  name: string;
  info: string;
  /** The bcrypt hash from passwd; tokens are bound to it. */
  hash: string;
}

export interface Context {
  dataDir: string;
  config: Config;
  user?: User;
  /** Aborted when the server stops: long polls and event streams end early. */
  shutdown?: AbortSignal;
  /** The server's live event stores; CGI requests go straight to the files. */
  streams?: Streams;
  /** What the server keeps between requests; a CGI process reads each file once. */
  cached?: Cached;
}

/** The server's copies of the data directory's small files (filecache.ts) and of verified logins. */
export interface Cached {
  config(): Config;
  /** passwd as of now; its problems are logged once per change. */
  passwd(): Passwd;
  /** The token secret as of now, or null when none has been made. */
  tokenSecret(): Buffer | null;
  logins: Logins;
  tokens: VerifiedTokens;
}

/** A route's handler; `params` are the path's groups (undefined for one the path leaves out). */
export type Handler = (req: ApieRequest, ctx: Context, params: string[]) => Promise<ApieResponse> | ApieResponse;

export function isFileBody(body: Body): body is FileBody {
  return typeof body === 'object' && body !== null && 'file' in body;
}

/** The byte length of a body when it is known before sending. */
export function bodyLength(body: Body): number | undefined {
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof Uint8Array) return body.byteLength;
  if (isFileBody(body)) return body.end - body.start + 1;
  // No body: the length is the handler's to say (HEAD) or not needed (204, 304).
  return undefined;
}
