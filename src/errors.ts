// The one error type of Apie: every failure a client can cause is an HttpError,
// and errorResponse() is the one place that turns any error into a response.
import type { ApieResponse } from './types.ts';

export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/** Makes an HttpError; `throw httpError(404, 'no such event')`. */
export function httpError(status: number, message: string, headers?: Record<string, string>): HttpError {
  return new HttpError(status, message, headers);
}

/** The JSON error response for any thrown value; unexpected ones are logged, never leaked. */
export function errorResponse(err: unknown): ApieResponse {
  let status = 500;
  let message = 'internal error';
  let headers: Record<string, string> = {};
  if (err instanceof HttpError) {
    ({ status, message, headers } = err);
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
