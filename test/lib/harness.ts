// Drives the packaged executable the way users run it: as a CGI program
// (environment + stdin), as `apie serve` over HTTP, and as CGI under a real
// Apache with the shipped .htaccess. Every HTTP test runs through all three.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync, chownSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync, lstatSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import bcrypt from 'bcryptjs';
import { suite, type Test } from 'uvu';
import { POINTER_FILE } from '../../src/datadir.ts';
import { createDatabase, listening, POSTGRES_MISSING, sharedCluster } from './postgres.ts';
import { accountExecutable, ensureAccount, suexecBuild, suexecLog, SUEXEC_MODULE, type Account } from './suexec.ts';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const EXE = join(ROOT, 'cgi-bin', 'apie.cgi');
export const HTACCESS = join(ROOT, 'cgi-bin', '.htaccess');
export const APACHE = '/usr/sbin/apache2';
// APIE_TEST_NO_APACHE=1 runs the tests as on a machine without Apache.
export const HAS_APACHE = existsSync(APACHE) && !process.env.APIE_TEST_NO_APACHE;
const IS_ROOT = process.getuid?.() === 0;

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  text: string;
  json(): any;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** user:password for Basic auth. */
  auth?: string;
}

/** A running Apie over one data directory, reachable through one front end. */
export interface Site {
  /** Front-end name: cgi, server, apache or suexec. */
  kind: string;
  /** Whether requests pass through Apache (which sets Content-Length and resolves paths itself). */
  apache: boolean;
  /** The account this site runs CGI programs as (undefined: this process's). */
  runAs?: { uid: number; gid: number };
  /** The directory holding apie.cgi (Apache sites). */
  programDir?: string;
  /** Gives a tree to the account this site runs CGI programs as. */
  own(path: string): void;
  dataDir: string;
  /** Base URL (server, apache) or a pseudo-URL for cgi. */
  base: string;
  request(method: string, path: string, opts?: RequestOptions): Promise<Reply>;
  /** Runs the CLI against this site's data directory, as the user the web server runs as. */
  cli(args: string[], input?: string): { status: number; stdout: string; stderr: string };
  close(): Promise<void>;
}

export interface SiteOptions {
  /** apie.json content. */
  config?: Record<string, unknown>;
  /** name → password; hashed at cost 4 to keep tests fast. */
  users?: Record<string, string>;
}

export const ALICE = 'alice@example.com:secret';

/** A fresh temporary directory, readable by the web server's user. */
export function tempDir(prefix = 'apie-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** Creates a data directory with apie.json and passwd. */
export function makeDataDir(parent: string, opts: SiteOptions = {}): string {
  const dir = join(parent, 'apie-data');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'apie.json'), JSON.stringify(opts.config ?? {}));
  const users = opts.users ?? { 'alice@example.com': 'secret' };
  const lines = Object.entries(users).map(([name, pw]) => `${name}:${bcrypt.hashSync(pw, 4)}\n`);
  writeFileSync(join(dir, 'passwd'), lines.join(''));
  return dir;
}

function basic(auth: string): string {
  return `Basic ${Buffer.from(auth).toString('base64')}`;
}

/** The request headers of opts, with Authorization for opts.auth. */
export function headersFor(opts: RequestOptions): Record<string, string> {
  const h: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.auth !== undefined) h.Authorization = basic(opts.auth);
  return h;
}

/** A Reply from what came back. */
export function reply(status: number, headers: Record<string, string>, body: Buffer): Reply {
  return { status, headers, body, text: body.toString('utf8'), json: () => JSON.parse(body.toString('utf8')) };
}

/** Parses a CGI response: headers up to the blank line, then the body. */
export function parseCgiOutput(out: Buffer): Reply {
  let sep = out.indexOf('\r\n\r\n');
  let sepLen = 4;
  if (sep < 0) {
    sep = out.indexOf('\n\n');
    sepLen = 2;
  }
  if (sep < 0) throw new Error(`no header/body separator in CGI output: ${out.toString().slice(0, 200)}`);
  const headers: Record<string, string> = {};
  let status = 200;
  for (const line of out.subarray(0, sep).toString('latin1').split(/\r?\n/)) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).toLowerCase();
    const value = line.slice(i + 1).trim();
    if (name === 'status') status = parseInt(value, 10);
    else headers[name] = headers[name] ? `${headers[name]}, ${value}` : value;
  }
  return reply(status, headers, out.subarray(sep + sepLen));
}

/** CGI variables for a request, as Apache would set them. */
export function cgiEnv(dataDir: string, method: string, path: string, opts: RequestOptions = {}): Record<string, string> {
  const [pathInfo, query = ''] = path.split(/\?(.*)/s);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_PROTOCOL: 'HTTP/1.1',
    SERVER_NAME: '127.0.0.1',
    SERVER_PORT: '80',
    HTTP_HOST: '127.0.0.1',
    SCRIPT_NAME: '/cgi-bin/apie.cgi',
    REQUEST_METHOD: method,
    PATH_INFO: decodeURIComponent(pathInfo),
    QUERY_STRING: query,
    APIE_DATA: dataDir,
  };
  for (const [k, v] of Object.entries(headersFor(opts))) {
    const key = k.toUpperCase().replace(/-/g, '_');
    if (key === 'CONTENT_TYPE') env.CONTENT_TYPE = v;
    else env[`HTTP_${key}`] = v;
  }
  if (opts.body !== undefined) env.CONTENT_LENGTH = String(Buffer.byteLength(opts.body));
  return env;
}

/** Where and as whom to run the executable (default: the built one, as this process). */
export interface RunAs {
  exe?: string;
  uid?: number;
  gid?: number;
}

/** Runs the executable once as a CGI program. */
export function runCgi(env: Record<string, string>, body?: string | Buffer, as: RunAs = {}): Promise<Reply & { stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(as.exe ?? EXE, [], { env, stdio: ['pipe', 'pipe', 'pipe'], uid: as.uid, gid: as.gid });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString();
      if (code !== 0) return reject(new Error(`CGI exited ${code}: ${stderr}`));
      try {
        resolvePromise({ ...parseCgiOutput(Buffer.concat(out)), stderr });
      } catch (e) {
        reject(e);
      }
    });
    child.stdin.end(body);
  });
}

/** Runs the executable's command line. */
export function runCli(args: string[], opts: RunAs & { env?: Record<string, string>; input?: string } = {}) {
  const r = spawnSync(opts.exe ?? EXE, args, {
    env: { PATH: process.env.PATH ?? '', ...opts.env },
    input: opts.input ?? '',
    encoding: 'utf8',
    uid: opts.uid,
    gid: opts.gid,
    timeout: 120_000,
  });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

async function fetchReply(url: string, method: string, opts: RequestOptions): Promise<Reply> {
  const res = await fetch(url, { method, headers: headersFor(opts), body: opts.body, redirect: 'manual' });
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => (headers[k] = v));
  return reply(res.status, headers, Buffer.from(await res.arrayBuffer()));
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

// ---- the three front ends -------------------------------------------------

async function cgiSite(parent: string, opts: SiteOptions): Promise<Site> {
  const dataDir = makeDataDir(parent, opts);
  return {
    kind: 'cgi',
    apache: false,
    own: () => {},
    dataDir,
    base: 'cgi:',
    request: (method, path, o = {}) => runCgi(cgiEnv(dataDir, method, path, o), o.body),
    cli: (args, input) => runCli(args, { env: { APIE_DATA: dataDir }, input }),
    close: async () => {},
  };
}

/** Starts `apie serve` on a data directory and waits until it listens. */
export async function startServe(dataDir: string, extra: string[] = [], exe = EXE): Promise<{ child: ChildProcess; base: string; stderr: () => string }> {
  const port = await freePort();
  const child = spawn(exe, ['serve', '--host', '127.0.0.1', '--port', String(port), '--data', dataDir, ...extra], {
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  await new Promise<void>((res, rej) => {
    let out = '';
    const timer = setTimeout(() => rej(new Error(`server did not start: ${out} ${stderr}`)), 15_000);
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) {
        clearTimeout(timer);
        res();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`server exited ${code}: ${stderr}`));
    });
  });
  return { child, base: `http://127.0.0.1:${port}`, stderr: () => stderr };
}

/** Stops a child process and waits for it. */
export function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  // A child killed by a signal has no exit code, and exits only once.
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((res) => {
    child.once('exit', (code) => res(code));
    child.kill(signal);
  });
}

async function serverSite(parent: string, opts: SiteOptions): Promise<Site> {
  const dataDir = makeDataDir(parent, opts);
  const { child, base } = await startServe(dataDir, ['--quiet']);
  return {
    kind: 'server',
    apache: false,
    own: () => {},
    dataDir,
    base,
    request: (method, path, o = {}) => fetchReply(base + path, method, o),
    cli: (args, input) => runCli(args, { env: { APIE_DATA: dataDir }, input }),
    close: async () => {
      await stop(child);
    },
  };
}

/** The uid/gid Apache runs CGI programs as (undefined: the current user). */
const WWW = (() => {
  if (!IS_ROOT) return undefined;
  const id = spawnSync('id', ['-u', 'www-data'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'www-data'], { encoding: 'utf8' });
  return id.status === 0 ? { uid: Number(id.stdout), gid: Number(gid.stdout) } : undefined;
})();

/** The uid/gid plain Apache runs CGI programs as (undefined: the current user). */
export const WEB_USER = WWW;

/** Gives a tree to uid/gid. */
export function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  if (lstatSync(path).isDirectory()) for (const e of readdirSync(path)) chownTree(join(path, e), uid, gid);
}

/** Gives a tree to the web server's user, as a shared-hosting account would own it. */
export function giveToWebUser(path: string): void {
  if (WWW) chownTree(path, WWW.uid, WWW.gid);
}

// suEXEC can be tested only as root with apache2-suexec-pristine installed.
const SUEXEC = HAS_APACHE ? suexecBuild() : 'apache2 is not installed';
/** Why the suEXEC site is not available here, or null when it is. */
export const SUEXEC_MISSING: string | null = typeof SUEXEC === 'string' ? SUEXEC : WWW ? null : 'there is no www-data user';
let suexecAccount: Account | undefined;

/** The account the suEXEC site runs CGI as (created when missing). */
export function suexecUser(): Account {
  if (SUEXEC_MISSING !== null || typeof SUEXEC === 'string') throw new Error(`suEXEC is not available: ${SUEXEC_MISSING}`);
  if (!suexecAccount) {
    const account = ensureAccount(SUEXEC);
    if (typeof account === 'string') throw new Error(account);
    suexecAccount = account;
  }
  return suexecAccount;
}

// One Apache per kind and test process: `apache` runs CGI as www-data from a
// document root in a temporary directory; `suexec` runs it through suEXEC as
// the throwaway account, from that account's public_html under AP_DOC_ROOT.
// Each site is its own directory under the document root.
interface Apache {
  root: string;
  port: number;
  docroot: string;
}
const apaches = new Map<string, Promise<Apache>>();

function apacheConfig(root: string, docroot: string, port: number, extra: string[]): string {
  const mods = ['mpm_prefork', 'authz_core', 'authz_host', 'access_compat', 'alias', 'cgi', 'rewrite', 'setenvif', 'env', 'mime', 'dir', 'headers', 'version'];
  return [
    `ServerRoot ${root}`,
    ...mods.filter((m) => existsSync(`/usr/lib/apache2/modules/mod_${m}.so`)).map((m) => `LoadModule ${m}_module /usr/lib/apache2/modules/mod_${m}.so`),
    `Listen 127.0.0.1:${port}`,
    'ServerName 127.0.0.1',
    `PidFile ${root}/httpd.pid`,
    `DefaultRuntimeDir ${root}`,
    `ErrorLog ${root}/error.log`,
    'LogLevel warn',
    'TypesConfig /etc/mime.types',
    WWW ? 'User www-data\nGroup www-data' : '',
    'StartServers 4\nMinSpareServers 4\nMaxSpareServers 16\nMaxRequestWorkers 64',
    'Timeout 120',
    ...extra,
    `DocumentRoot ${docroot}`,
    '<Directory />\n  AllowOverride None\n  Require all denied\n</Directory>',
    `<Directory ${docroot}>\n  AllowOverride All\n  Options FollowSymLinks\n  Require all granted\n</Directory>`,
    '',
  ].join('\n');
}

function startApache(kind: 'apache' | 'suexec' = 'apache'): Promise<Apache> {
  let started = apaches.get(kind);
  if (!started) {
    started = launchApache(kind);
    apaches.set(kind, started);
  }
  return started;
}

async function launchApache(kind: 'apache' | 'suexec'): Promise<Apache> {
  const root = tempDir(`apie-${kind}-`);
  let docroot = join(root, 'www');
  const extra: string[] = [];
  if (kind === 'suexec') {
    const account = suexecUser();
    docroot = account.docroot;
    extra.push(`LoadModule suexec_module ${SUEXEC_MODULE}`, `SuexecUserGroup ${account.name} ${account.name}`);
  } else {
    mkdirSync(docroot, { mode: 0o755 });
  }
  const port = await freePort();
  writeFileSync(join(root, 'httpd.conf'), apacheConfig(root, docroot, port, extra));
  const check = spawnSync(APACHE, ['-f', join(root, 'httpd.conf'), '-t'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`apache config: ${check.stderr}`);
  // Its own process group: on shutdown Apache signals its whole group, which
  // must not include the test runner. unref: it is stopped on exit instead.
  const child = spawn(APACHE, ['-f', join(root, 'httpd.conf'), '-DFOREGROUND'], { stdio: 'ignore', detached: true });
  child.unref();
  process.once('exit', () => {
    child.kill('SIGTERM');
    rmSync(root, { recursive: true, force: true });
  });
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { root, port, docroot };
}

/** Puts the executable into dir as apie.cgi (a hard link when possible: it is 119 MiB); returns its path. */
export function placeExecutable(dir: string): string {
  const exe = join(dir, 'apie.cgi');
  try {
    linkSync(EXE, exe);
  } catch {
    copyFileSync(EXE, exe);
    chmodSync(exe, 0o755);
  }
  return exe;
}

/** A site directory under an Apache document root: DIR/cgi-bin with the executable and the shipped .htaccess. */
function siteDirs(docroot: string): { siteDir: string; cgiDir: string } {
  const siteDir = mkdtempSync(join(docroot, 'site-'));
  chmodSync(siteDir, 0o755);
  const cgiDir = join(siteDir, 'cgi-bin');
  mkdirSync(cgiDir, { mode: 0o755 });
  copyFileSync(HTACCESS, join(cgiDir, '.htaccess'));
  return { siteDir, cgiDir };
}

async function apacheSite(_parent: string, opts: SiteOptions): Promise<Site> {
  const a = await startApache();
  const { siteDir, cgiDir } = siteDirs(a.docroot);
  placeExecutable(cgiDir);
  // The default data directory: apie-data beside the executable.
  const dataDir = makeDataDir(cgiDir, opts);
  giveToWebUser(dataDir);
  const base = `http://127.0.0.1:${a.port}/${basename(siteDir)}/cgi-bin/apie.cgi`;
  return {
    kind: 'apache',
    apache: true,
    runAs: WWW,
    programDir: cgiDir,
    dataDir,
    base,
    request: (method, path, o = {}) => fetchReply(base + path, method, o),
    cli: (args, input) => runCli(args, { env: { APIE_DATA: dataDir }, input, ...WWW }),
    own: giveToWebUser,
    close: async () => {
      rmSync(siteDir, { recursive: true, force: true });
    },
  };
}

/** Options for a suEXEC site beyond the data directory's content. */
export interface SuexecSiteOptions extends SiteOptions {
  /** Leave out apie-data.path, so the program has to find its data some other way (or not at all). */
  noPointer?: boolean;
}

// As the README deploys under suEXEC: the program and its directory belong to
// the account, the data directory is private to it (0700/0600, which only
// works because CGI runs as the account) and is named in apie-data.path,
// since suEXEC passes no APIE_DATA.
async function suexecSite(parent: string, opts: SuexecSiteOptions): Promise<Site> {
  const a = await startApache('suexec');
  const account = suexecUser();
  const ids = { uid: account.uid, gid: account.gid };
  const { siteDir, cgiDir } = siteDirs(a.docroot);
  linkSync(accountExecutable(account, EXE), join(cgiDir, 'apie.cgi'));
  const dataDir = makeDataDir(parent, { ...opts, config: { fileMode: '0600', dirMode: '0700', ...opts.config } });
  chmodSync(dataDir, 0o700);
  for (const f of readdirSync(dataDir)) chmodSync(join(dataDir, f), 0o600);
  if (!opts.noPointer) writeFileSync(join(cgiDir, POINTER_FILE), `${dataDir}\n`, { mode: 0o644 });
  chownTree(siteDir, account.uid, account.gid);
  chownTree(dataDir, account.uid, account.gid);
  const base = `http://127.0.0.1:${a.port}/${basename(siteDir)}/cgi-bin/apie.cgi`;
  return {
    kind: 'suexec',
    apache: true,
    runAs: ids,
    programDir: cgiDir,
    dataDir,
    base,
    request: (method, path, o = {}) => fetchReply(base + path, method, o),
    cli: (args, input) => runCli(args, { env: { APIE_DATA: dataDir }, input, ...ids }),
    own: (path) => chownTree(path, account.uid, account.gid),
    close: async () => {
      rmSync(siteDir, { recursive: true, force: true });
    },
  };
}

/** The base URL of the suEXEC site's document root (the account's public_html). */
export async function suexecBase(): Promise<string> {
  const a = await startApache('suexec');
  return `http://127.0.0.1:${a.port}`;
}

/** The end of the Apache error logs and suEXEC's log (for diagnosing a failed test). */
export async function apacheErrorLog(): Promise<string> {
  let out = '';
  for (const [kind, started] of apaches) {
    const a = await started.catch(() => undefined);
    if (a) out += `${kind}:\n${spawnSync('tail', ['-n', '30', join(a.root, 'error.log')], { encoding: 'utf8' }).stdout}`;
  }
  if (typeof SUEXEC !== 'string' && apaches.has('suexec')) out += `suexec log:\n${suexecLog(SUEXEC)}`;
  return out;
}

/** The base URL of the shared Apache (starting it if needed). */
export async function apacheBase(): Promise<string> {
  const a = await startApache();
  return `http://127.0.0.1:${a.port}`;
}

export type FrontEnd<O extends SiteOptions = SiteOptions> = { name: 'cgi' | 'server' | 'apache' | 'suexec' | 'cgi+pg' | 'server+pg'; available: boolean; open(opts?: O): Promise<Site> };

function frontEnd<O extends SiteOptions = SiteOptions>(name: FrontEnd['name'], available: boolean, make: (parent: string, opts: O) => Promise<Site>): FrontEnd<O> {
  return {
    name,
    available,
    async open(opts = {} as O) {
      const parent = tempDir();
      const site = await make(parent, opts).catch((err) => {
        rmSync(parent, { recursive: true, force: true });
        throw err;
      });
      const close = site.close;
      site.close = async () => {
        await close();
        rmSync(parent, { recursive: true, force: true });
      };
      return site;
    },
  };
}

/** The front ends by name; Apache and suEXEC are unavailable (their tests skipped, and said so) when they cannot run here. */
export const FRONT_END = {
  cgi: frontEnd('cgi', true, cgiSite),
  server: frontEnd('server', true, serverSite),
  apache: frontEnd('apache', HAS_APACHE, apacheSite),
  suexec: frontEnd<SuexecSiteOptions>('suexec', SUEXEC_MISSING === null, suexecSite),
};
/** The suEXEC front end, with its extra options; undefined when suEXEC cannot run here. */
export const SUEXEC_FRONT_END = FRONT_END.suexec.available ? FRONT_END.suexec : undefined;
export const FRONT_ENDS: FrontEnd[] = Object.values(FRONT_END) as FrontEnd[];

// The data directories of sites whose events are in PostgreSQL, with their database's name.
const pgSites = new Map<string, string>();

// A front end whose events live in a database of their own in the test
// process's PostgreSQL (apie.json's eventStore), its schema made by `apie migrate`.
function withPostgres(make: (parent: string, opts: SiteOptions) => Promise<Site>): (parent: string, opts: SiteOptions) => Promise<Site> {
  return async (parent, opts) => {
    const db = createDatabase();
    try {
      const migrated = runCli(['migrate', '--data', parent], { env: { APIE_EVENT_STORE: db.url } });
      if (migrated.status !== 0) throw new Error(`apie migrate: ${migrated.stderr}`);
      const site = await make(parent, { ...opts, config: { ...opts.config, eventStore: db.url } });
      pgSites.set(site.dataDir, db.name);
      const close = site.close;
      site.close = async () => {
        await close();
        pgSites.delete(site.dataDir);
        db.drop();
      };
      return site;
    } catch (err) {
      db.drop();
      throw err;
    }
  };
}

/** The cgi and server front ends with the events in PostgreSQL; unavailable (their tests skipped, and said so) without it. */
export const PG_FRONT_END = {
  cgi: frontEnd('cgi+pg', POSTGRES_MISSING === null, withPostgres(cgiSite)),
  server: frontEnd('server+pg', POSTGRES_MISSING === null, withPostgres(serverSite)),
};
/** The front ends the event contract runs through: every one, and the PostgreSQL store through CGI and the server. */
export const EVENT_FRONT_ENDS: FrontEnd[] = [...FRONT_ENDS, PG_FRONT_END.cgi, PG_FRONT_END.server];
if (!(globalThis as any).__apieSkipsReported) {
  (globalThis as any).__apieSkipsReported = true;
  if (!HAS_APACHE) console.log('SKIPPED: Apache tests (apache2 is not installed; .ci/run installs it)');
  if (SUEXEC_MISSING !== null) console.log(`SKIPPED: suEXEC tests (${SUEXEC_MISSING})`);
  if (POSTGRES_MISSING !== null) console.log(`SKIPPED: PostgreSQL tests (${POSTGRES_MISSING})`);
}

/** A directory and everything below it, directories first. */
export function treePaths(dir: string): string[] {
  return [dir, ...readdirSync(dir).flatMap((e) => (lstatSync(join(dir, e)).isDirectory() ? treePaths(join(dir, e)) : [join(dir, e)]))];
}

/**
 * A suite of tests through one front end. Through a front end not installed
 * here, each test is counted as skipped (and no hook runs), so the summary
 * says what did not run.
 */
export function frontEndSuite<T extends object = object>(fe: FrontEnd, name: string): Test<T> {
  const t = suite<T>(name);
  if (fe.available) return t;
  const noHook = Object.assign(() => {}, { each: () => {} });
  return Object.assign(() => t.skip(), { only: () => t.skip(), skip: () => t.skip(), before: noHook, after: noHook, run: () => t.run() });
}

/**
 * A frontEndSuite whose every test gets its own site (a fresh data directory
 * with `opts`) in ctx.site, closed after the test.
 */
export function siteSuite<T extends object = object>(fe: FrontEnd, name: string, opts: SiteOptions = {}): Test<T & { site: Site }> {
  const t = frontEndSuite<T & { site: Site }>(fe, name);
  t.before.each(async (ctx) => {
    ctx.site = await fe.open(opts);
  });
  t.after.each(async (ctx) => {
    await ctx.site?.close();
  });
  return t;
}

/** Resolves what `check` returns once it is truthy, checking every 20 ms; fails after `ms`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, ms = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Whether an Apie process watches (inotify) one of these inodes: a long poll
// or an event stream waiting for an append. By inode, because nothing else
// names the data directory reliably: under suEXEC it comes from
// apie-data.path, and a waiting process holds no file of it open.
function watchers(inodes: Set<string>): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (!readlinkSync(`/proc/${name}/exe`).endsWith('apie.cgi')) continue;
      for (const fd of readdirSync(`/proc/${name}/fd`)) {
        try {
          if (readlinkSync(`/proc/${name}/fd/${fd}`) !== 'anon_inode:inotify') continue;
          const info = readFileSync(`/proc/${name}/fdinfo/${fd}`, 'utf8');
          if ([...info.matchAll(/^inotify wd:\S+ ino:([0-9a-f]+)/gm)].some((m) => inodes.has(m[1]))) pids.push(Number(name));
        } catch {
          // closed meanwhile
        }
      }
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}

/**
 * Waits until a request is waiting for an append to the log of `dataDir` (a
 * long poll or an event stream: some Apie process watches the log), so that
 * what the test appends next wakes it rather than comes before it. The log
 * must exist (the server watches it only then).
 */
export function untilWaiting(dataDir: string): Promise<true> {
  const database = pgSites.get(dataDir);
  if (database !== undefined) return waitFor('a request listening for appends', () => listening(sharedCluster(), database) || undefined);
  return waitFor('a request waiting for an append', () => {
    const inodes = new Set<string>();
    const named = join(dataDir, 'events', 'streams');
    const streams = existsSync(named) ? readdirSync(named).map((n) => join(named, n)) : [];
    const dirs = [join(dataDir, 'events'), named, ...streams];
    for (const path of [dataDir, ...dirs, ...dirs.flatMap((d) => [join(d, 'log'), join(d, 'offsets')])]) {
      const st = statSync(path, { throwIfNoEntry: false });
      if (st) inodes.add(st.ino.toString(16));
    }
    return watchers(inodes).length > 0 || undefined;
  });
}

/** Permission bits of a file. */
export function fileMode(p: string): number {
  return statSync(p).mode & 0o777;
}
