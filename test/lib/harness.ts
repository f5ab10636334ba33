// Drives the packaged executable the way users run it: as a CGI program
// (environment + stdin), as `apie serve` over HTTP, and as CGI under a real
// Apache with the shipped .htaccess. Every HTTP test runs through all three.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync, chownSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync, lstatSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import bcrypt from 'bcryptjs';
import { suite, type Test } from 'uvu';

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
  /** Front-end name: cgi, server or apache. */
  kind: string;
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

/** Runs the executable once as a CGI program. */
export function runCgi(env: Record<string, string>, body?: string | Buffer): Promise<Reply & { stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(EXE, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
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
export function runCli(args: string[], opts: { env?: Record<string, string>; input?: string; uid?: number; gid?: number } = {}) {
  const r = spawnSync(EXE, args, {
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
    dataDir,
    base: 'cgi:',
    request: (method, path, o = {}) => runCgi(cgiEnv(dataDir, method, path, o), o.body),
    cli: (args, input) => runCli(args, { env: { APIE_DATA: dataDir }, input }),
    close: async () => {},
  };
}

/** Starts `apie serve` on a data directory and waits until it listens. */
export async function startServe(dataDir: string, extra: string[] = []): Promise<{ child: ChildProcess; base: string; stderr: () => string }> {
  const port = await freePort();
  const child = spawn(EXE, ['serve', '--host', '127.0.0.1', '--port', String(port), '--data', dataDir, ...extra], {
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
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
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
    dataDir,
    base,
    request: (method, path, o = {}) => fetchReply(base + path, method, o),
    cli: (args, input) => runCli(args, { env: { APIE_DATA: dataDir }, input }),
    close: async () => {
      await stop(child);
    },
  };
}

// One Apache per test process; each site is its own directory under the
// document root holding the executable, the shipped .htaccess and, beside
// them, the default data directory apie-data.
let apache: { root: string; port: number; child: ChildProcess; docroot: string; seq: number } | undefined;

const WWW = (() => {
  if (!IS_ROOT) return undefined;
  const id = spawnSync('id', ['-u', 'www-data'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'www-data'], { encoding: 'utf8' });
  return id.status === 0 ? { uid: Number(id.stdout), gid: Number(gid.stdout) } : undefined;
})();

/** The uid/gid Apache runs CGI programs as (undefined: the current user). */
export const WEB_USER = WWW;

function apacheConfig(root: string, docroot: string, port: number): string {
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
    `DocumentRoot ${docroot}`,
    '<Directory />\n  AllowOverride None\n  Require all denied\n</Directory>',
    `<Directory ${docroot}>\n  AllowOverride All\n  Options FollowSymLinks\n  Require all granted\n</Directory>`,
    '',
  ].join('\n');
}

async function startApache(): Promise<NonNullable<typeof apache>> {
  if (apache) return apache;
  const root = tempDir('apie-apache-');
  const docroot = join(root, 'www');
  mkdirSync(docroot, { mode: 0o755 });
  const port = await freePort();
  writeFileSync(join(root, 'httpd.conf'), apacheConfig(root, docroot, port));
  const check = spawnSync(APACHE, ['-f', join(root, 'httpd.conf'), '-t'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`apache config: ${check.stderr}`);
  // Its own process group: on shutdown Apache signals its whole group, which
  // must not include the test runner. unref: it is stopped on exit instead.
  const child = spawn(APACHE, ['-f', join(root, 'httpd.conf'), '-DFOREGROUND'], { stdio: 'ignore', detached: true });
  child.unref();
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  apache = { root, port, child, docroot, seq: 0 };
  process.once('exit', () => {
    child.kill('SIGTERM');
    rmSync(root, { recursive: true, force: true });
  });
  return apache;
}

/** Gives a tree to the web server's user, as a shared-hosting account would own it. */
export function giveToWebUser(path: string): void {
  if (!WWW) return;
  const walk = (p: string) => {
    chownSync(p, WWW.uid, WWW.gid);
    if (lstatSync(p).isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
  };
  walk(path);
}

async function apacheSite(_parent: string, opts: SiteOptions): Promise<Site> {
  const a = await startApache();
  const name = `site${++a.seq}`;
  const siteDir = join(a.docroot, name);
  const cgiDir = join(siteDir, 'cgi-bin');
  mkdirSync(cgiDir, { recursive: true, mode: 0o755 });
  try {
    linkSync(EXE, join(cgiDir, 'apie.cgi'));
  } catch {
    copyFileSync(EXE, join(cgiDir, 'apie.cgi'));
    chmodSync(join(cgiDir, 'apie.cgi'), 0o755);
  }
  copyFileSync(HTACCESS, join(cgiDir, '.htaccess'));
  // The default data directory: apie-data beside the executable.
  const dataDir = makeDataDir(cgiDir, opts);
  giveToWebUser(dataDir);
  const base = `http://127.0.0.1:${a.port}/${name}/cgi-bin/apie.cgi`;
  return {
    kind: 'apache',
    dataDir,
    base,
    request: (method, path, o = {}) => fetchReply(base + path, method, o),
    cli: (args, input) => runCli(args, { env: { APIE_DATA: dataDir }, input, ...WWW }),
    close: async () => {
      rmSync(siteDir, { recursive: true, force: true });
    },
  };
}

/** The Apache error log (for diagnosing a failed test). */
export function apacheErrorLog(): string {
  return apache ? spawnSync('tail', ['-n', '30', join(apache.root, 'error.log')], { encoding: 'utf8' }).stdout : '';
}

/** The base URL of the shared Apache (starting it if needed). */
export async function apacheBase(): Promise<string> {
  const a = await startApache();
  return `http://127.0.0.1:${a.port}`;
}

export type FrontEnd = { name: 'cgi' | 'server' | 'apache'; available: boolean; open(opts?: SiteOptions): Promise<Site> };

function frontEnd(name: FrontEnd['name'], available: boolean, make: (parent: string, opts: SiteOptions) => Promise<Site>): FrontEnd {
  return {
    name,
    available,
    async open(opts = {}) {
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

/** The three front ends by name; Apache is unavailable (its tests skipped) when not installed. */
export const FRONT_END = {
  cgi: frontEnd('cgi', true, cgiSite),
  server: frontEnd('server', true, serverSite),
  apache: frontEnd('apache', HAS_APACHE, apacheSite),
};
export const FRONT_ENDS: FrontEnd[] = Object.values(FRONT_END);
if (!HAS_APACHE && !(globalThis as any).__apieApacheWarned) {
  (globalThis as any).__apieApacheWarned = true;
  console.log('SKIPPED: Apache tests (apache2 is not installed; .ci/run installs it)');
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

// The pids of Apie processes working on a data directory: CGI requests (given
// it in APIE_DATA, or, under Apache, beside their executable) and servers and
// their workers (given it on the command line or in their options).
function processesOf(dataDir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const exe = readlinkSync(`/proc/${name}/exe`);
      if (!exe.endsWith('apie.cgi')) continue;
      const mentions = (file: string) => readFileSync(`/proc/${name}/${file}`).includes(dataDir);
      if (dirname(exe) === dirname(dataDir) || mentions('environ') || mentions('cmdline')) pids.push(Number(name));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}

// Whether a process has an inotify watch: a long poll or an event stream waiting for an append.
function watching(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:inotify' && /^inotify wd:/m.test(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/**
 * Waits until a request is waiting for an append to the log of `dataDir` (a
 * long poll or an event stream: some Apie process watches the log), so that
 * what the test appends next wakes it rather than comes before it. The log
 * must exist (the server watches it only then).
 */
export function untilWaiting(dataDir: string): Promise<true> {
  return waitFor('a request waiting for an append', () => processesOf(dataDir).some(watching) || undefined);
}

/** Permission bits of a file. */
export function fileMode(p: string): number {
  return statSync(p).mode & 0o777;
}
