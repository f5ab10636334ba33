// Locks between processes (CGI requests, the server, the command line), with
// proper-lockfile: an atomic mkdir of `<target>.lock`, kept fresh while held
// and taken over when a crashed holder leaves it stale.
import type { Config } from './config.ts';

/**
 * Runs fn while holding the lock on `target` (which need not exist), waiting
 * as long as it takes for other holders, or for a dead one's lock to go stale.
 */
export async function withLock<T>(target: string, config: Pick<Config, 'lockStaleSeconds'>, fn: () => Promise<T> | T): Promise<T> {
  // Loaded on first use: proper-lockfile and graceful-fs cost ~7 ms to load.
  const { lock } = await import('proper-lockfile');
  const stale = config.lockStaleSeconds * 1000;
  const release = await lock(target, {
    realpath: false,
    stale,
    // Short, randomized retries: critical sections are milliseconds long.
    // Enough of them to outwait a stale lock and a queue of live writers.
    retries: { retries: Math.ceil((stale + 60_000) / 20), factor: 1.5, minTimeout: 2, maxTimeout: 25, randomize: true },
  });
  try {
    return await fn();
  } finally {
    await release();
  }
}
