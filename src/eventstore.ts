// What the event handlers need from the log, whoever serves them: a CGI
// process (one request, straight to the files) or the server (livelog.ts:
// open files, group commit, waiters woken in memory).
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { appendEvents, LogReader, waitForMore, type AppendRequest, type AppendResult } from './eventlog.ts';

export interface EventStore {
  /** A view of the committed events, current as of this call; close() it when done. */
  view(): LogReader;
  /** Appends one event (or finds it stored, for a retried eventId); throws 'conflict' or 'precondition-failed'. */
  append(request: AppendRequest): Promise<AppendResult>;
  /** True as soon as the log holds more than `known` events; false after `ms` or on abort. */
  waitForMore(known: number, ms: number, signal?: AbortSignal): Promise<boolean>;
}

/** The store of a process that serves one request: every call goes to the files. */
export function directStore(dataDir: string, config: Config): EventStore {
  return {
    view: () => new LogReader(dataDir),
    append: async (request) => settle((await appendEvents(dataDir, config, [request]))[0]),
    waitForMore: (known, ms, signal) => waitForMore(dataDir, known, ms, signal),
  };
}

/** The result of one request of a batch, or its refusal thrown. */
function settle(result: AppendResult | ApieError): AppendResult {
  if (result instanceof ApieError) throw result;
  return result;
}
