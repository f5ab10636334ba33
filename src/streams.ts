// Streams: named event logs in one data directory, each its own hash chain.
// Where each lives on disk, decided here only:
//   events/                 the stream `default`, read in place: this is where
//                           0.1.0 kept its one log, so its data directories
//                           open unchanged, with nothing to migrate
//   events/streams/NAME/    every other stream (a subdirectory, so no name
//                           can collide with default's own files)
// Knows nothing of HTTP.
import { closeSync, openSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ApieError } from './errors.ts';
import { ifExists } from './fsutil.ts';

/** The stream every `/events…` path means. */
export const DEFAULT_STREAM = 'default';

/** 1–128 of a-z 0-9 . _ -, starting with a letter or digit. */
export const STREAM_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** Checks a stream name from a path or the command line; anything else is 400. */
export function parseStreamName(name: string): string {
  if (!STREAM_NAME_RE.test(name)) {
    throw new ApieError('bad-request', 'a stream name is 1–128 characters of a-z, 0-9, ".", "_" and "-", starting with a letter or digit');
  }
  return name;
}

/** The directory of the events of a data directory (and of the stream `default`). */
export function eventsDir(dataDir: string): string {
  return join(dataDir, 'events');
}

// The other streams' parent.
function namedDir(dataDir: string): string {
  return join(eventsDir(dataDir), 'streams');
}

/** The directory holding a stream's log (the name must be valid). */
export function streamDir(dataDir: string, name: string): string {
  return name === DEFAULT_STREAM ? eventsDir(dataDir) : join(namedDir(dataDir), name);
}

/**
 * The data directory a log directory (from streamDir) belongs to, and the
 * log's path inside it: what nofollow.ts needs to reach it without following
 * a link on the way, and what names its lock.
 */
export function logLocation(dir: string): { dataDir: string; rel: string } {
  const parent = dirname(dir);
  if (basename(parent) === 'streams' && basename(dirname(parent)) === 'events') {
    return { dataDir: dirname(dirname(parent)), rel: `events/streams/${basename(dir)}` };
  }
  return { dataDir: parent, rel: basename(dir) };
}

/** The names of the streams that hold a log on disk, sorted. */
export function streamNames(dataDir: string): string[] {
  const names = (ifExists(() => readdirSync(namedDir(dataDir))) ?? []).filter((n) => n !== DEFAULT_STREAM && STREAM_NAME_RE.test(n));
  if (ifExists(() => closeSync(openSync(join(eventsDir(dataDir), 'offsets'), 'r'))) !== null) names.push(DEFAULT_STREAM);
  return names.sort();
}
