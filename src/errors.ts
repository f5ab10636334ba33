// The one error type of Apie. Storage, configuration and the command line
// throw ApieError with a storage-neutral code; errorResponse() is the one
// place a code becomes an HTTP status, and the CLI maps codes to exit codes.
import type { ApieResponse } from './types.ts';

/** What went wrong, independent of how it is reported (HTTP status, exit code). */
export type ErrorCode =
  | 'bad-request'
  | 'unauthorized'
  | 'forbidden'
  | 'not-found'
  | 'method-not-allowed'
  | 'conflict'
  | 'precondition-failed'
  | 'too-large'
  | 'range-not-satisfiable'
  | 'busy'
  | 'insufficient-storage'
  | 'damaged'
  | 'misconfigured'
  | 'usage'
  | 'internal';

/** The HTTP status of each code: the one table. */
const STATUS: Record<ErrorCode, number> = {
  'bad-request': 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  'method-not-allowed': 405,
  conflict: 409,
  'precondition-failed': 412,
  'too-large': 413,
  'range-not-satisfiable': 416,
  busy: 503,
  'insufficient-storage': 507,
  damaged: 500,
  misconfigured: 500,
  usage: 400,
  internal: 500,
};

interface ApieErrorOptions {
  /** The error this one wraps, kept for the log. */
  cause?: unknown;
  /** Response headers that belong with the error (Allow, Retry-After, WWW-Authenticate…). */
  headers?: Record<string, string>;
  /** Facts a caller may act on, e.g. the log's last hash with a failed If-Match. */
  data?: Record<string, string>;
}

export class ApieError extends Error {
  readonly code: ErrorCode;
  readonly headers: Record<string, string>;
  readonly data: Record<string, string>;
  constructor(code: ErrorCode, message: string, opts: ApieErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ApieError';
    this.code = code;
    this.headers = opts.headers ?? {};
    this.data = opts.data ?? {};
  }
}

/** The JSON error response for any thrown value; unexpected ones are logged, never leaked. */
export function errorResponse(err: unknown): ApieResponse {
  let status = 500;
  let message = 'internal error';
  let headers: Record<string, string> = {};
  if (err instanceof ApieError) {
    ({ message, headers } = err);
    status = STATUS[err.code];
    // Server-side failures are logged with their cause; the client sees only the message.
    if (status >= 500) console.error(err.cause instanceof Error ? `${message}: ${err.cause.stack}` : message);
  } else {
    // stderr is Apache's error log under CGI; stdout is the response.
    console.error(err instanceof Error ? err.stack : err);
  }
  return {
    status,
    headers: { ...headers, 'Content-Type': 'application/json' },
    body: JSON.stringify({ status: 'error', errorMessage: message }),
  };
}
