// A real PostgreSQL for the tests: Debian's postgresql package, run as a throwaway
// cluster (initdb into a temporary directory, a Unix socket in it, no TCP
// unless asked). One cluster serves the whole test process (uvu runs every
// file in one process), started on first use and stopped at exit; each test
// gets a database of its own, so tests pass alone and in any order. A test
// that restarts or stops PostgreSQL starts a cluster of its own.
//
// PostgreSQL refuses to run as root: as root, the cluster runs as the
// `postgres` account (the Debian package creates it) and its directory is
// given to that account.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Debian installs each major version under /usr/lib/postgresql/N: the newest.
const PG_LIB = '/usr/lib/postgresql';
const version = existsSync(PG_LIB) ? readdirSync(PG_LIB).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))[0] : undefined;
export const PG_BIN = join(PG_LIB, version ?? '15', 'bin');
const IS_ROOT = process.getuid?.() === 0;

function account(): { uid: number; gid: number } | undefined {
  if (!IS_ROOT) return undefined;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  return uid.status === 0 ? { uid: Number(uid.stdout), gid: Number(gid.stdout) } : undefined;
}
const OWNER = account();

/** Why PostgreSQL cannot be tested here, or null when it can (APIE_TEST_NO_POSTGRES=1 runs the tests as on a machine without it). */
export const POSTGRES_MISSING: string | null = process.env.APIE_TEST_NO_POSTGRES ? 'APIE_TEST_NO_POSTGRES is set'
  : !existsSync(join(PG_BIN, 'initdb')) ? 'postgresql is not installed; .ci/run installs it'
  : IS_ROOT && !OWNER ? 'there is no postgres account to run it as'
  : null;

/** A running throwaway cluster. */
export interface Cluster {
  /** The directory holding the data directory, the log and the socket. */
  root: string;
  /** The TCP port on 127.0.0.1, when the cluster listens on one. */
  port?: number;
  /** A libpq URL for a database of this cluster, through the Unix socket. */
  url(database: string): string;
  /** Runs SQL with psql as the superuser; returns its output (unaligned, tuples only). */
  psql(database: string, sql: string): string;
  /** Stops PostgreSQL; `immediate` is as abrupt as a crash (no checkpoint, clients cut off). */
  stop(mode?: 'fast' | 'immediate'): void;
  start(): void;
  /** Stops it for good and removes its directory. */
  destroy(): void;
}

function run(cmd: string, args: string[], check = true): { status: number; stdout: string; stderr: string } {
  const [file, argv] = OWNER ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  const r = spawnSync(file, argv, { encoding: 'utf8', timeout: 60_000 });
  if (check && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** initdb's a new cluster and starts it; `port` also makes it listen on 127.0.0.1:port. */
export function startCluster(opts: { port?: number } = {}): Cluster {
  if (POSTGRES_MISSING !== null) throw new Error(`PostgreSQL is not available: ${POSTGRES_MISSING}`);
  const root = mkdtempSync(join(tmpdir(), 'apie-pg-'));
  // The web server's user (Apache tests) reaches the socket through it.
  chmodSync(root, 0o755);
  if (OWNER) chownSync(root, OWNER.uid, OWNER.gid);
  const data = join(root, 'data');
  run(join(PG_BIN, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']);
  // Settings of a throwaway cluster: many short connections (every CGI request
  // opens one), no log noise from clients that are killed on purpose.
  writeFileSync(join(data, 'postgresql.auto.conf'), [
    `unix_socket_directories = '${root}'`,
    `listen_addresses = '${opts.port ? '127.0.0.1' : ''}'`,
    `port = ${opts.port ?? 5432}`,
    'max_connections = 300',
    'shared_buffers = 32MB',
    'log_min_messages = warning',
    'log_min_error_statement = panic',
    '',
  ].join('\n'));
  if (OWNER) chownSync(join(data, 'postgresql.auto.conf'), OWNER.uid, OWNER.gid);
  const log = join(root, 'log');
  const port = opts.port ?? 5432;
  const cluster: Cluster = {
    root,
    port: opts.port,
    url: (database) => `postgres://postgres@/${database}?host=${encodeURIComponent(root)}&port=${port}`,
    psql: (database, sql) => run('psql', ['-h', root, '-p', String(port), '-U', 'postgres', '-d', database, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql]).stdout,
    stop: (mode = 'fast') => {
      run(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', mode, '-w', 'stop'], false);
    },
    start: () => {
      run(join(PG_BIN, 'pg_ctl'), ['-D', data, '-l', log, '-w', '-t', '60', 'start']);
    },
    destroy: () => {
      cluster.stop('immediate');
      rmSync(root, { recursive: true, force: true });
    },
  };
  cluster.start();
  process.once('exit', () => cluster.destroy());
  return cluster;
}

let shared: Cluster | undefined;

/** The test process's cluster, started on first use. */
export function sharedCluster(): Cluster {
  shared ??= startCluster();
  return shared;
}

let databases = 0;

/** A database of its own in `cluster` (default: the shared one): its URL, and drop() for the end of the test. */
export function createDatabase(cluster = sharedCluster()): { name: string; url: string; drop(): void } {
  const name = `apie_test_${process.pid}_${++databases}`;
  cluster.psql('postgres', `CREATE DATABASE ${name}`);
  return {
    name,
    url: cluster.url(name),
    // WITH (FORCE): a server killed on purpose may leave a session behind for a moment.
    drop: () => void cluster.psql('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/**
 * Whether some session of `database` waits for notifications: a long poll or
 * an event stream listening for appends (what untilWaiting checks for the
 * file store through inotify). A listening session's last statement starts
 * with LISTEN (the store issues its first check in the same statement).
 */
export function listening(cluster: Cluster, database: string): boolean {
  const n = cluster.psql('postgres', `SELECT count(*) FROM pg_stat_activity WHERE datname = '${database}' AND state = 'idle' AND query ILIKE 'LISTEN%'`);
  return Number(n.trim()) > 0;
}
