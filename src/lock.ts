// Locks between processes (CGI requests, the server's workers, the command
// line): the lock is a Unix socket in Linux's abstract namespace, bound
// under a name unique to the data directory and the lock's role. bind()
// succeeds for exactly one process at a time, atomically, and the kernel
// unbinds the name when its holder closes it or dies, however it dies (kill
// -9, out of memory, Apache's Timeout): there is no stale lock to detect or
// take over, and nothing on disk to clean up. A waiter connects to the
// holder's socket and tries again when that connection closes, which is the
// moment the holder lets go or dies.
//
// The name is `apie-lock:<st_dev>:<st_ino>:<role>:<secret>` (hex): the data
// directory's device and inode make it unique per directory whatever path
// reaches it; the secret, random and kept in DATA/lock-secret (readable only
// by whoever may write the data directory), keeps other accounts from binding
// the names before Apie does. Names are listed in /proc/net/unix while held,
// so another local account can learn one and squat it when it is free: that
// delays writers, which answer 503 after LOCK_WAIT_MS; none writes without
// the lock, so nothing is ever damaged by it.
//
// Not covered: processes in other network namespaces (containers, systemd's
// PrivateNetwork=) or on other machines (a data directory on NFS) do not see
// each other's abstract sockets and so exclude nobody. The event log's commit
// refuses to go on when its files changed under it (eventlog.ts), which turns
// most such overlaps into a 500 instead of a silent fork.
import type { Server, Socket } from 'node:net';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ApieError } from './errors.ts';
import { createOnce } from './fsutil.ts';
import { checkWritable, rethrowHostFault } from './hostfaults.ts';

export type LockRole = 'events' | 'blobs' | 'passwd';

const GUARDS: Record<LockRole, string> = { events: 'the event log', blobs: 'the content store', passwd: 'the passwd file' };

/** How long a writer waits for a lock before giving up with 'busy' (503). */
export const LOCK_WAIT_MS = 10_000;

const SECRET_FILE = 'lock-secret';
const SECRET_RE = /^[0-9a-f]{32}$/;

export interface LockOptions {
  /** Mode for lock-secret when this call makes it (its world bits are dropped). */
  fileMode: number;
  /** Files and directories the section writes: checked before waiting (see checkWritable). */
  writes: string[];
  /**
   * The directory whose device and inode name the lock (default: the data
   * directory): each stream's log directory has a lock of its own.
   */
  target?: string;
}

/**
 * Runs fn while holding the data directory's lock for `role`. A host set up
 * wrong (permissions, read-only, a file where a directory belongs) fails at
 * once with 'misconfigured'; a lock that stays taken for LOCK_WAIT_MS with
 * 'busy' and `Retry-After: 1`.
 */
export async function withLock<T>(dataDir: string, role: LockRole, opts: LockOptions, fn: () => Promise<T> | T): Promise<T> {
  checkWritable(dataDir, opts.writes);
  const name = lockName(dataDir, opts.target ?? dataDir, role, opts.fileMode);
  const held = await acquire(name, role);
  try {
    return await fn();
  } catch (err) {
    rethrowHostFault(err, dataDir);
  } finally {
    // Awaited: until the socket is closed its name stays bound, and the next
    // lock this process takes would find it taken (by itself) and wait.
    await held.release();
  }
}

function lockName(dataDir: string, target: string, role: LockRole, fileMode: number): string {
  const dir = statSync(target, { bigint: true, throwIfNoEntry: false });
  if (!dir) throw new ApieError('misconfigured', 'the data directory does not exist');
  return `apie-lock:${dir.dev.toString(16)}:${dir.ino.toString(16)}:${role}:${secret(dataDir, fileMode)}`;
}

// The data directory's secret, made on first use. It must never change while
// any process may hold a lock: two secrets would be two locks.
function secret(dataDir: string, fileMode: number): string {
  const file = join(dataDir, SECRET_FILE);
  let text = readOrNull(file, dataDir);
  if (text === null) {
    checkWritable(dataDir, [dataDir]);
    const { randomBytes } = process.getBuiltinModule('node:crypto') as typeof import('node:crypto');
    createOnce(file, `${randomBytes(16).toString('hex')}\n`, fileMode & 0o660);
    text = readOrNull(file, dataDir) ?? '';
  }
  text = text.trim();
  if (!SECRET_RE.test(text)) {
    throw new ApieError('misconfigured', `${SECRET_FILE} in the data directory is damaged; stop every Apie process using this directory, then delete it`);
  }
  return text;
}

function readOrNull(file: string, dataDir: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    rethrowHostFault(err, dataDir, { access: 'read', path: file });
  }
}

const net = () => process.getBuiltinModule('node:net') as typeof import('node:net');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Binds the name, or waits for its holder to let go and tries again.
async function acquire(name: string, role: LockRole): Promise<{ release(): Promise<void> }> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let previous = 0;
  for (;;) {
    const held = await bind(name);
    if (held) return held;
    if (Date.now() >= deadline) {
      throw new ApieError('busy', `${GUARDS[role]} is busy: its lock stayed taken for ${LOCK_WAIT_MS / 1000} s; retry`, { headers: { 'Retry-After': '1' } });
    }
    // A holder that lets go at once, again and again (or one that accepts
    // and drops connections on purpose) must not make waiters spin.
    if (Date.now() - previous < 1) await sleep(1 + Math.random() * 4);
    previous = Date.now();
    const gone = await holderGone(name, deadline);
    // Not connected: the name was free a moment ago (try at once), or the
    // holder's queue is full (back off a little, at random).
    if (gone === 'full') await sleep(2 + Math.random() * 18);
  }
}

// The lock itself, or null when another process holds it.
function bind(name: string): Promise<{ release(): Promise<void> } | null> {
  return new Promise((resolve, reject) => {
    const server: Server = net().createServer({ pauseOnConnect: true });
    const waiters = new Set<Socket>();
    server.on('connection', (socket) => {
      socket.unref();
      socket.on('error', () => {});
      waiters.add(socket);
    });
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') resolve(null);
      else reject(new ApieError('misconfigured', `the lock could not be taken (${err.code ?? err.message})`, { cause: err }));
    });
    // exclusive: a cluster worker binds it itself, not through the primary.
    server.listen({ path: `\0${name}`, exclusive: true }, () => {
      server.unref();
      server.on('error', () => {});
      resolve({
        release() {
          // Unbinds the name; the waiters' connections closing wakes them.
          const closed = new Promise<void>((done) => server.close(() => done()));
          for (const socket of waiters) socket.destroy();
          return closed;
        },
      });
    });
  });
}

// Resolves when the holder lets go or dies (the connection closes), when the
// name turns out free, or at the deadline.
function holderGone(name: string, deadline: number): Promise<'closed' | 'free' | 'full'> {
  return new Promise((resolve) => {
    let connected = false;
    let outcome: 'closed' | 'free' | 'full' = 'closed';
    const socket = net().connect({ path: `\0${name}` });
    const timer = setTimeout(() => socket.destroy(), Math.max(0, deadline - Date.now()));
    socket.on('connect', () => {
      connected = true;
      socket.resume(); // nothing is ever sent; reading is what sees the close
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) outcome = err.code === 'ECONNREFUSED' ? 'free' : 'full';
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(outcome);
    });
  });
}
