// suEXEC as most shared hosts run CGI: Debian's apache2-suexec-pristine runs
// each program as the site's account, with a short list of safe environment
// variables. This module prepares what suEXEC insists on: a throwaway account
// (uid ≥ AP_UID_MIN) whose home lies under AP_DOC_ROOT, and a copy of the
// executable owned by that account (suEXEC refuses a program owned by anyone
// else). Nothing here starts Apache; harness.ts does.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:net';

export const SUEXEC_BIN = '/usr/lib/apache2/suexec';
export const SUEXEC_MODULE = '/usr/lib/apache2/modules/mod_suexec.so';
/** The throwaway account the suEXEC site runs CGI programs as. */
export const ACCOUNT = 'apie-suexec';

/** What suEXEC was built for (`suexec -V`). */
export interface SuexecBuild {
  docRoot: string;
  uidMin: number;
  gidMin: number;
  httpdUser: string;
  /** suEXEC's own log: why it refused to run a program. */
  logExec: string;
}

export interface Account {
  name: string;
  uid: number;
  gid: number;
  /** From the passwd database; under AP_DOC_ROOT. */
  home: string;
  /** The document root of the suEXEC site: home/public_html. */
  docroot: string;
}

/** suEXEC's build settings, or why suEXEC cannot be tested here. */
export function suexecBuild(): SuexecBuild | string {
  if (process.getuid?.() !== 0) return 'suEXEC needs Apache started as root';
  if (!existsSync(SUEXEC_BIN) || !existsSync(SUEXEC_MODULE)) return 'apache2-suexec-pristine is not installed; .ci/run installs it';
  // -V prints its settings on stderr, and only for root or the web server's user.
  const r = spawnSync(SUEXEC_BIN, ['-V'], { encoding: 'utf8' });
  const text = `${r.stdout}${r.stderr}`;
  const get = (key: string) => new RegExp(`-D ${key}="?([^"\\n]*)"?`).exec(text)?.[1];
  const [docRoot, uidMin, gidMin, httpdUser, logExec] = ['AP_DOC_ROOT', 'AP_UID_MIN', 'AP_GID_MIN', 'AP_HTTPD_USER', 'AP_LOG_EXEC'].map(get);
  if (!docRoot || !uidMin || !httpdUser) return `cannot read suexec -V: ${text.trim().slice(0, 200)}`;
  return { docRoot, uidMin: Number(uidMin), gidMin: Number(gidMin ?? 0), httpdUser, logExec: logExec ?? '' };
}

function lookup(name: string): { uid: number; gid: number; home: string } | null {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const [, , uid, gid, , home] = r.stdout.trim().split(':');
  return { uid: Number(uid), gid: Number(gid), home };
}

/**
 * The throwaway account, created when missing (a fresh CI machine), with its
 * home under AP_DOC_ROOT holding public_html. Idempotent; safe when several
 * test processes race to create it.
 */
export function ensureAccount(build: SuexecBuild): Account | string {
  let entry = lookup(ACCOUNT);
  // Another test process may be creating it (useradd then fails on the passwd lock): try again.
  for (let attempt = 0; !entry && attempt < 20; attempt++) {
    const r = spawnSync('useradd', ['--create-home', '--home-dir', join(build.docRoot, ACCOUNT), '--shell', '/usr/sbin/nologin', '--user-group', '--comment', 'Apie suEXEC tests', ACCOUNT], { encoding: 'utf8' });
    entry = lookup(ACCOUNT);
    if (!entry && attempt === 19) return `useradd ${ACCOUNT} failed: ${r.stderr.trim()}`;
    if (!entry) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
  if (!entry) return `no account ${ACCOUNT}`;
  if (entry.uid < build.uidMin || entry.gid < build.gidMin) return `${ACCOUNT} has uid ${entry.uid}/gid ${entry.gid}, below suEXEC's minimum ${build.uidMin}/${build.gidMin}`;
  if (!entry.home.startsWith(`${build.docRoot}/`)) return `${ACCOUNT}'s home ${entry.home} is not under suEXEC's document root ${build.docRoot}`;
  const docroot = join(entry.home, 'public_html');
  // As shared hosts lay it out: the web server may pass through the home
  // directory (0711) and read the public part; suEXEC wants both owned by the account.
  mkdirSync(docroot, { recursive: true });
  for (const [dir, mode] of [[entry.home, 0o711], [docroot, 0o755]] as const) {
    chownSync(dir, entry.uid, entry.gid);
    chmodSync(dir, mode);
  }
  return { name: ACCOUNT, ...entry, docroot };
}

/**
 * This process's copy of the executable, owned by the account (suEXEC runs
 * only a program owned by the account it runs as): copied once, then
 * hard-linked into each site, which suEXEC accepts. Copies left by test
 * processes that died are removed first.
 */
export function accountExecutable(account: Account, exe: string): string {
  const dir = join(account.home, '.apie-test-exe');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chownSync(dir, account.uid, account.gid);
  for (const name of readdirSync(dir)) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1]);
    if (pid && pid !== process.pid && !existsSync(`/proc/${pid}`)) rmSync(join(dir, name), { force: true });
  }
  const copy = join(dir, `${process.pid}-apie.cgi`);
  if (!existsSync(copy)) {
    const tmp = `${copy}.tmp`;
    copyFileSync(exe, tmp);
    chownSync(tmp, account.uid, account.gid);
    chmodSync(tmp, 0o755);
    renameSync(tmp, copy);
    process.once('exit', () => rmSync(copy, { force: true }));
  }
  return copy;
}

/**
 * Runs fn while holding the account's home for itself: the README deploy and
 * the home-directory lookup use ~/apie-data and ~/public_html/cgi-bin, which
 * test runs in other worktrees on this machine would share.
 */
export async function withAccountHome<T>(account: Account, fn: () => Promise<T>): Promise<T> {
  // An abstract socket, as Apie's own locks: the kernel frees it when a test run dies.
  const lock = await holdSocket(`\0apie-test-home:${account.home}`);
  try {
    return await fn();
  } finally {
    await new Promise((r) => lock.close(r));
  }
}

async function holdSocket(name: string): Promise<Server> {
  for (let tries = 0; ; tries++) {
    const server = createServer();
    const bound = await new Promise<boolean>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err)));
      server.listen({ path: name, exclusive: true }, () => resolve(true));
    });
    if (bound) return server;
    if (tries > 1200) throw new Error(`${name} stayed taken for minutes`);
    // Another worktree's test run holds it for a few seconds at most.
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The last lines of suEXEC's own log (why it refused a program), for a failing test's message. */
export function suexecLog(build: SuexecBuild): string {
  if (!build.logExec || !existsSync(build.logExec)) return '';
  return spawnSync('tail', ['-n', '10', build.logExec], { encoding: 'utf8' }).stdout;
}
