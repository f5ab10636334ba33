// Apie's locks seen from outside, for the fault tests: which process holds
// one (the lock is an abstract Unix socket, listed in /proc/net/unix while it
// is held; see README, "Locks"), which processes have a file open for
// writing, and processes started to contend for a lock and be killed.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EXE, parseCgiOutput, type Reply } from './harness.ts';

export type LockRole = 'events' | 'blobs' | 'passwd';

/** The name of a data directory's lock for a role, as bound (without the leading NUL). */
export function lockName(dataDir: string, role: LockRole): string {
  const st = statSync(dataDir, { bigint: true });
  const secret = readFileSync(join(dataDir, 'lock-secret'), 'utf8').trim();
  return `apie-lock:${st.dev.toString(16)}:${st.ino.toString(16)}:${role}:${secret}`;
}

// Inodes of listening sockets (flag __SO_ACCEPTCON) bound to an abstract name starting with prefix.
function listening(prefix: string): Set<string> {
  const found = new Set<string>();
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const [, , , flags, , , inode, path] = line.trim().split(/\s+/);
    if (path?.startsWith(`@${prefix}`) && (parseInt(flags, 16) & 0x10000) !== 0) found.add(inode);
  }
  return found;
}

// What each file descriptor of a process points at ([] once it is gone).
function fds(pid: number): { fd: string; target: string }[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
      try {
        return [{ fd, target: readlinkSync(`/proc/${pid}/fd/${fd}`) }];
      } catch {
        return [];
      }
    });
  } catch {
    return [];
  }
}

/** The process among pids that holds the role's lock on dataDir, if any. */
export function lockHolder(pids: number[], dataDir: string, role: LockRole): number | undefined {
  const st = statSync(dataDir, { bigint: true });
  const sockets = listening(`apie-lock:${st.dev.toString(16)}:${st.ino.toString(16)}:${role}:`);
  if (sockets.size === 0) return undefined;
  return pids.find((pid) => fds(pid).some(({ target }) => sockets.has(/^socket:\[(\d+)\]$/.exec(target)?.[1] ?? '')));
}

/** The processes among pids that have `file` open for writing. */
export function writersOf(pids: number[], file: string): number[] {
  return pids.filter((pid) => fds(pid).some(({ fd, target }) => {
    if (target !== file) return false;
    try {
      const flags = parseInt(/^flags:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1], 8);
      return (flags & 0o3) !== 0; // O_WRONLY or O_RDWR
    } catch {
      return false;
    }
  }));
}

export interface Outcome {
  killed: boolean;
  /** Exit status (CLI) or 0 (CGI). */
  status: number;
  /** The CGI answer, when it ran as CGI and finished. */
  reply?: Reply;
  stdout: string;
  stderr: string;
}

export interface Contender {
  pid: number;
  done: Promise<Outcome>;
  kill(): void;
}

/**
 * Starts the executable (as CGI when env has GATEWAY_INTERFACE, else as the
 * command line) with `input` on stdin; `done` says how it ended.
 */
export function contend(args: string[], env: Record<string, string>, input: string | Buffer = '', user: { uid?: number; gid?: number } = {}): Contender {
  const child = spawn(EXE, args, { env, stdio: ['pipe', 'pipe', 'pipe'], ...user });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (d) => out.push(d));
  child.stderr.on('data', (d) => err.push(d));
  child.stdin.on('error', () => {});
  child.stdin.end(input);
  const done = new Promise<Outcome>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out);
      const outcome: Outcome = { killed: signal === 'SIGKILL', status: code ?? -1, stdout: stdout.toString(), stderr: Buffer.concat(err).toString() };
      if (!outcome.killed && env.GATEWAY_INTERFACE && code === 0) outcome.reply = parseCgiOutput(stdout);
      resolve(outcome);
    });
  });
  return { pid: child.pid!, done, kill: () => child.kill('SIGKILL') };
}

/** A small seeded PRNG: fault timings that a seed reproduces. */
export { mulberry32 as prng } from './random.ts';

/** The seed of a randomised suite: APIE_TEST_SEED when given, else a fresh one; printed either way. */
export function testSeed(suite: string): number {
  const given = process.env.APIE_TEST_SEED;
  const seed = given ? Number(given) : Math.floor(Math.random() * 2 ** 31);
  console.log(`  ${suite}: seed ${seed} (rerun with APIE_TEST_SEED=${seed})`);
  return seed;
}
