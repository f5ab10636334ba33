// What a command is handed: its arguments, parsed strictly; and a serve
// worker its options from its primary, in the environment, because a single
// executable cannot be handed a script path and argv the way `node x.js` can.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { ApieError } from './errors.ts';

// Every command takes --data DIR.
const DATA = { data: { type: 'string' } } as const;

/** Parses flags (typed by their declaration) and positionals; unknown flags and missing values are 'usage' errors. */
export function parse<const O extends ParseArgsOptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...options, ...DATA }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ApieError('usage', (err as Error).message, { cause: err });
  }
}

const WORKER_ENV = 'APIE_SERVE_WORKER';

/** The environment that makes a forked process a serve worker with these options. */
export function workerEnv(options: object): Record<string, string> {
  return { [WORKER_ENV]: JSON.stringify(options) };
}

/** The options this process was forked with as a serve worker, or undefined when it is none. */
export function workerOptions(): unknown {
  const options = process.env[WORKER_ENV];
  return options === undefined ? undefined : JSON.parse(options);
}
