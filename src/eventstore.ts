// What the event handlers need from a stream's log, whoever serves them: a
// CGI process (one request, straight to the files) or the server (livelog.ts:
// open files, group commit, waiters woken in memory).
import type { Config } from './config.ts';
import { ApieError } from './errors.ts';
import { appendEvents, LogReader, waitForMore, type AppendRequest, type AppendResult } from './eventlog.ts';
import { streamDir } from './streams.ts';

export interface EventStore {
  /** The directory of the stream's log. */
  readonly dir: string;
  /** A view of the committed events, current as of this call; close() it when done. */
  view(): LogReader;
  /** Appends one request (an event or a batch), or finds it stored when retried; throws 'conflict', 'precondition-failed'… */
  append(request: AppendRequest): Promise<AppendResult>;
  /** True as soon as the log holds more than `known` events; false after `ms` or on abort. */
  waitForMore(known: number, ms: number, signal?: AbortSignal): Promise<boolean>;
}

/** The event stores of a data directory, one per stream (the name must be valid). */
export interface Streams {
  stream(name: string): EventStore;
}

/** The store of a process that serves one request: every call goes to the files. */
export function directStore(dir: string, config: Config): EventStore {
  return {
    dir,
    view: () => new LogReader(dir),
    append: async (request) => settle((await appendEvents(dir, config, [request]))[0]),
    waitForMore: (known, ms, signal) => waitForMore(dir, known, ms, signal),
  };
}

/** The streams of a data directory for a process that serves one request. */
export function directStreams(dataDir: string, config: Config): Streams {
  return { stream: (name) => directStore(streamDir(dataDir, name), config) };
}

/** The result of one request of a batch, or its refusal thrown. */
function settle(result: AppendResult | ApieError): AppendResult {
  if (result instanceof ApieError) throw result;
  return result;
}
