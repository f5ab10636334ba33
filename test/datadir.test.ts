// Where the data directory is, as CGI and on the command line: apie-data.path
// beside the executable, apie-data beside it, then ~/apie-data of the account
// from the passwd database. What a request says never counts, and a missing
// or unreadable data directory or passwd is a 500 naming the fix, never a 401.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, cgiEnv, chownTree, makeDataDir, placeExecutable, runCgi, runCli, suexecUser, SUEXEC_MISSING, tempDir, type RunAs } from './lib/harness.ts';
import { withAccountHome } from './lib/suexec.ts';

const IS_ROOT = process.getuid?.() === 0;
// An account whose home (/nonexistent) holds no apie-data, so only files
// beside the executable can name the data directory.
const NOBODY = IS_ROOT ? { uid: 65534, gid: 65534 } : {};

interface Install {
  /** The directory holding apie.cgi. */
  dir: string;
  exe: string;
  /** A GET /info as CGI, with alice's credentials unless others are given, without APIE_DATA. */
  info(opts?: { auth?: string; env?: Record<string, string>; as?: RunAs }): ReturnType<typeof runCgi>;
}

// A copy of the program in a directory of its own, the way a host has it.
function install(parent: string): Install {
  const dir = join(parent, 'cgi-bin');
  mkdirSync(dir, { mode: 0o755 });
  const exe = placeExecutable(dir);
  return {
    dir,
    exe,
    info: ({ auth = ALICE, env = {}, as = NOBODY } = {}) => {
      const vars = cgiEnv('', 'GET', '/info', { auth });
      delete vars.APIE_DATA;
      return runCgi({ ...vars, ...env }, undefined, { exe, ...as });
    },
  };
}

// A 500 meant for the operator: the fix in the message, no path in it.
function assertMisconfigured(r: { status: number; text: string; json(): any }, message: RegExp): void {
  assert.is(r.status, 500, r.text);
  assert.match(r.json().errorMessage, message);
  assert.not.match(r.text, /\/(tmp|var|home|root)\b/, 'no absolute path for the client');
}

async function inTemp(fn: (parent: string) => Promise<void>): Promise<void> {
  const parent = tempDir();
  try {
    await fn(parent);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
}

const t = suite('data directory: lookup');

t('should answer 500 naming the fix, not 401, when no data directory is found', () => inTemp(async (parent) => {
  const site = install(parent);
  const r = await site.info();
  assertMisconfigured(r, /^no data directory found: run `apie\.cgi init` as this site's account, or write the data directory's path into apie-data\.path beside apie\.cgi$/);
  // The error log says where it looked, and as whom.
  assert.match(r.stderr, `${site.dir}/apie-data.path`);
  assert.match(r.stderr, /running as uid \d+/);
}));

t('should never take the data directory from the request', () => inTemp(async (parent) => {
  const site = install(parent);
  const data = makeDataDir(join(parent, 'elsewhere'));
  chmodSync(data, 0o755);
  // A header reaches CGI as HTTP_*: Apie-Data becomes HTTP_APIE_DATA, never APIE_DATA.
  const r = await site.info({ env: { HTTP_APIE_DATA: data, HTTP_X_APIE_DATA: data, QUERY_STRING: `data=${data}` } });
  assert.is(r.status, 500, r.text);
}));

t('should use the directory named in apie-data.path before apie-data beside the executable', () => inTemp(async (parent) => {
  const site = install(parent);
  const named = makeDataDir(join(parent, 'named'), { users: { 'alice@example.com': 'secret' } });
  const beside = makeDataDir(site.dir, { users: { bob: 'bobs' } });
  for (const d of [named, beside, join(parent, 'named')]) chmodSync(d, 0o755);
  writeFileSync(join(site.dir, 'apie-data.path'), `# where the data is\n${named}\n`);
  assert.is((await site.info()).status, 200);
  assert.is((await site.info({ auth: 'bob:bobs' })).status, 401);
  rmSync(join(site.dir, 'apie-data.path'));
  assert.is((await site.info({ auth: 'bob:bobs' })).status, 200);
  assert.is(existsSync(beside), true);
}));

t('should take APIE_DATA (SetEnv without suEXEC) before apie-data.path', () => inTemp(async (parent) => {
  const site = install(parent);
  const fromEnv = makeDataDir(join(parent, 'env'), { users: { bob: 'bobs' } });
  const named = makeDataDir(join(parent, 'named'));
  for (const d of [fromEnv, named, join(parent, 'env'), join(parent, 'named')]) chmodSync(d, 0o755);
  writeFileSync(join(site.dir, 'apie-data.path'), named);
  assert.is((await site.info({ auth: 'bob:bobs', env: { APIE_DATA: fromEnv } })).status, 200);
  assert.is((await site.info({ env: { APIE_DATA: fromEnv } })).status, 401);
}));

t('should answer 500 saying what is wrong with apie-data.path', () => inTemp(async (parent) => {
  const site = install(parent);
  const pointer = join(site.dir, 'apie-data.path');
  const cases: [string, RegExp][] = [
    ['apie-data\n', /apie-data\.path beside apie\.cgi must hold one line: the absolute path of the data directory/],
    [`${parent}/a\n${parent}/b\n`, /must hold one line/],
    ['', /must hold one line/],
    [`${parent}/missing\n`, /the data directory named in apie-data\.path beside apie\.cgi does not exist: run `apie\.cgi init DIR`/],
  ];
  for (const [content, message] of cases) {
    writeFileSync(pointer, content);
    assertMisconfigured(await site.info(), message);
  }
  // A directory there is, but not one it may read (the pointer named a missing one above: never skipped).
  assert.not.ok(existsSync(join(site.dir, 'apie-data')));
  if (IS_ROOT) {
    writeFileSync(pointer, `${parent}/missing\n`);
    chmodSync(pointer, 0o600);
    assertMisconfigured(await site.info(), /apie-data\.path beside apie\.cgi is not readable by the account apie\.cgi runs as: `chmod 644 apie-data\.path`/);
  }
}));

t('should answer 500 when the account it runs as cannot read the data directory', async () => {
  if (!IS_ROOT) return; // root reads everything
  await inTemp(async (parent) => {
    const site = install(parent);
    const data = makeDataDir(join(parent, 'private'));
    chmodSync(join(parent, 'private'), 0o755);
    chmodSync(data, 0o700); // root's, as after `sudo apie init` on a suEXEC host
    writeFileSync(join(site.dir, 'apie-data.path'), data);
    assertMisconfigured(await site.info(), /^the data directory named in apie-data\.path beside apie\.cgi is not readable by the account apie\.cgi runs as/);
  });
});

t('should answer 500 naming `user add` when passwd is missing or unreadable, not 401', () => inTemp(async (parent) => {
  const site = install(parent);
  const data = makeDataDir(join(parent, 'data'));
  chmodSync(join(parent, 'data'), 0o755);
  chmodSync(data, 0o755);
  writeFileSync(join(site.dir, 'apie-data.path'), data);
  rmSync(join(data, 'passwd'));
  assertMisconfigured(await site.info(), /^the data directory has no passwd: add a user with `apie\.cgi user add NAME`/);
  if (IS_ROOT) {
    writeFileSync(join(data, 'passwd'), '', { mode: 0o600 });
    assertMisconfigured(await site.info(), /^passwd in the data directory is not readable by the account apie\.cgi runs as/);
  }
}));

t('should refuse a command line without a data directory, saying how to make one', () => inTemp(async (parent) => {
  const site = install(parent);
  const r = runCli(['user', 'list'], { exe: site.exe, ...NOBODY });
  assert.is(r.status, 1);
  assert.match(r.stderr, /no data directory found: run `apie\.cgi init`/);
  assert.match(r.stderr, `looked for ${site.dir}/apie-data.path`);
}));

t.run();

// The home directory: the throwaway suEXEC account is the one user here whose
// home the tests may fill (its home is locked against test runs elsewhere).
if (SUEXEC_MISSING === null) {
  const h = suite('data directory: home');

  h('should find apie-data in the home directory from the passwd database, not $HOME, after apie-data beside the executable', async () => {
    const account = suexecUser();
    const as = { uid: account.uid, gid: account.gid };
    await withAccountHome(account, () => inTemp(async (parent) => {
      const site = install(parent);
      const home = join(account.home, 'apie-data');
      rmSync(home, { recursive: true, force: true });
      try {
        renameSync(makeDataDir(join(parent, 'h')), home);
        chownTree(home, account.uid, account.gid);
        // suEXEC drops HOME; a HOME pointing elsewhere must not matter either.
        assert.is((await site.info({ as, env: { HOME: parent } })).status, 200);
        const beside = makeDataDir(site.dir, { users: { bob: 'bobs' } });
        chmodSync(beside, 0o755);
        assert.is((await site.info({ as, auth: 'bob:bobs' })).status, 200);
        assert.is((await site.info({ as })).status, 401);
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    }));
  });

  h('should create ~/apie-data with init and print the lines that name it beside the executable', async () => {
    const account = suexecUser();
    const as = { uid: account.uid, gid: account.gid };
    await withAccountHome(account, () => inTemp(async (parent) => {
      const site = install(parent);
      chownTree(site.dir, account.uid, account.gid);
      const home = join(account.home, 'apie-data');
      rmSync(home, { recursive: true, force: true });
      try {
        const r = runCli(['init'], { exe: site.exe, ...as, env: { HOME: '/nonexistent' } });
        assert.is(r.status, 0, r.stderr);
        assert.match(r.stdout, `data directory ${home} is ready`);
        const lines = r.stdout.split('\n').map((l) => l.trim());
        const pointer = join(site.dir, 'apie-data.path');
        assert.ok(lines.includes(`echo ${home} > ${pointer}`), r.stdout);
        assert.ok(lines.includes(`chmod 644 ${pointer}`), r.stdout);
        assert.is(readFileSync(join(home, 'apie.json'), 'utf8').length > 0, true);
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    }));
  });
  h.run();
}
