// What a command is handed besides argv: a serve worker gets its options from
// its primary in the environment, because a single executable cannot be
// handed a script path and argv the way `node x.js` can.
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
