// apie user … and apie token rotate on the command line, the no-echo password
// prompt on a terminal, and the token secret made by racing first requests.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EXE, cgiEnv, fileMode, makeDataDir, runCgi, runCli, tempDir } from './lib/harness.ts';
import { basicHeader, bearer } from './lib/auth.ts';

const t = suite<{ dir: string; data: string }>('auth: the command line');
t.before.each((ctx) => {
  ctx.dir = tempDir();
  ctx.data = makeDataDir(ctx.dir, { config: { bcryptCost: 5 }, users: {} });
  // No passwd yet: the first `user add` creates it.
  rmSync(join(ctx.data, 'passwd'));
});
t.after.each((ctx) => {
  rmSync(ctx.dir, { recursive: true, force: true });
});

const cli = (data: string, args: string[], input = '') => runCli(args, { env: { APIE_DATA: data }, input });
const passwd = (data: string) => readFileSync(join(data, 'passwd'), 'utf8');

t('should add users with the configured cost, list them with their info, and remove them', ({ data }) => {
  assert.is(cli(data, ['user', 'add', 'ann@example.com', '--info', 'Ann: admin'], 'first-pw\nignored second line\n').status, 0);
  assert.is(cli(data, ['user', 'add', 'ben'], 'pw without newline').status, 0);
  assert.match(passwd(data), /^ann@example\.com:\$2b\$05\$[./A-Za-z0-9]{53}:Ann: admin\nben:\$2b\$05\$[./A-Za-z0-9]{53}\n$/);
  assert.is(fileMode(join(data, 'passwd')), 0o640);
  // Without "admins" in apie.json everyone is an admin.
  assert.is(cli(data, ['user', 'list']).stdout, 'ann@example.com\tadmin\t-\tAnn: admin\nben\tadmin\t-\t\n');
  const removed = cli(data, ['user', 'remove', 'ann@example.com']);
  assert.is(removed.status, 0, removed.stderr);
  assert.is(cli(data, ['user', 'list']).stdout, 'ben\tadmin\t-\t\n');
});

t('should list whether each user is an admin and their groups', ({ data }) => {
  for (const name of ['ann', 'ben', 'cy']) assert.is(cli(data, ['user', 'add', name], 'pw\n').status, 0);
  writeFileSync(join(data, 'apie.json'), JSON.stringify({ admins: ['ann'], groups: { family: ['ann', 'ben'], editors: ['ben'] } }));
  assert.is(cli(data, ['user', 'list']).stdout, 'ann\tadmin\tfamily\t\nben\tuser\tfamily,editors\t\ncy\tuser\t-\t\n');
});

t('should take the first line of stdin as the password', async ({ data }) => {
  assert.is(cli(data, ['user', 'add', 'ann'], 'first-pw\r\nsecond\n').status, 0);
  const r = await runCgi(cgiEnv(data, 'GET', '/info', { headers: basicHeader('ann:first-pw') }));
  assert.is(r.status, 200);
});

t('should refuse bad names, empty passwords, existing and unknown users, and change nothing', ({ data }) => {
  assert.is(cli(data, ['user', 'add', 'ann'], 'pw\n').status, 0);
  const before = passwd(data);
  const refused: [string[], string, RegExp][] = [
    [['user', 'add', 'a:b'], 'pw\n', /":"/],
    [['user', 'add', 'tab\tname'], 'pw\n', /control characters/],
    [['user', 'add', 'bell\x07'], 'pw\n', /control characters/],
    [['user', 'add', ''], 'pw\n', /1 to 256 characters/],
    [['user', 'add', 'x'.repeat(257)], 'pw\n', /1 to 256 characters/],
    [['user', 'add', 'new'], '', /must not be empty/],
    [['user', 'add', 'new'], '\nsecond line\n', /must not be empty/],
    [['user', 'add', 'new'], `${'x'.repeat(73)}\n`, /72 bytes/],
    [['user', 'add', 'new', '--info', 'two\nlines'], 'pw\n', /--info/],
    [['user', 'add', 'ann'], 'pw\n', /exists/],
    [['user', 'passwd', 'nobody'], 'pw\n', /no user "nobody"/],
    [['user', 'remove', 'nobody'], '', /no user "nobody"/],
  ];
  for (const [args, input, message] of refused) {
    const r = cli(data, args, input);
    assert.is(r.status, 1, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
  }
  for (const args of [['user'], ['user', 'add'], ['user', 'frobnicate'], ['user', 'list', 'extra'], ['user', 'remove', 'ann', '--info', 'x'], ['token'], ['token', 'rotate', 'now']]) {
    assert.is(cli(data, args).status, 2, args.join(' '));
  }
  assert.is(passwd(data), before);
});

t('should ask for the password twice without echo on a terminal', async ({ data }) => {
  const typed = async (first: string, second: string) => {
    // script(1) gives the command a terminal; input is typed only once a prompt shows.
    const child = spawn('script', ['-q', '-e', '-c', `${EXE} user add tty-user`, '/dev/null'], { env: { PATH: process.env.PATH ?? '', APIE_DATA: data } });
    let out = '';
    let step = 0;
    child.stdout.on('data', (d) => {
      out += d;
      if (step === 0 && out.includes('Password for tty-user: ')) (step = 1), child.stdin.write(`${first}\r`);
      if (step === 1 && out.includes('Again: ')) (step = 2), child.stdin.write(`${second}\r`);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await new Promise((r) => child.on('close', r));
    clearTimeout(timer);
    child.stdin.destroy();
    return { code, out };
  };
  const mismatch = await typed('tty-pw-one', 'tty-pw-two');
  assert.is(mismatch.code, 1);
  assert.match(mismatch.out, /passwords differ/);
  assert.not.match(cli(data, ['user', 'list']).stdout, /tty-user/);
  const ok = await typed('tty-pw-typed', 'tty-pw-typed');
  assert.is(ok.code, 0, ok.out);
  assert.not.ok(ok.out.includes('tty-pw-typed'), `echoed: ${JSON.stringify(ok.out)}`);
  const r = await runCgi(cgiEnv(data, 'GET', '/info', { headers: basicHeader('tty-user:tty-pw-typed') }));
  assert.is(r.status, 200);
});

t('should make one token secret when many first requests race, and replace it on rotate', async ({ data }) => {
  assert.is(cli(data, ['user', 'add', 'ann'], 'pw\n').status, 0);
  const issue = () => runCgi(cgiEnv(data, 'POST', '/auth/token', { headers: basicHeader('ann:pw') }));
  const replies = await Promise.all(Array.from({ length: 8 }, issue));
  const secret = readFileSync(join(data, 'token-secret'), 'utf8');
  assert.match(secret, /^[0-9a-f]{64}\n$/);
  assert.is(fileMode(join(data, 'token-secret')), 0o600);
  for (const r of replies) {
    assert.is(r.status, 200, r.text);
    const check = await runCgi(cgiEnv(data, 'GET', '/info', { headers: bearer(r.json().token) }));
    assert.is(check.status, 200, 'every racer signed with the secret that won');
  }
  assert.is(cli(data, ['token', 'rotate']).status, 0);
  assert.is.not(readFileSync(join(data, 'token-secret'), 'utf8'), secret);
  assert.is(cli(join(data, 'missing'), ['token', 'rotate']).status, 1);
});

t('should answer 500, not let anyone in, when the token secret is damaged', async ({ data }) => {
  assert.is(cli(data, ['user', 'add', 'ann'], 'pw\n').status, 0);
  const issued = await runCgi(cgiEnv(data, 'POST', '/auth/token', { headers: basicHeader('ann:pw') }));
  writeFileSync(join(data, 'token-secret'), '');
  const r = await runCgi(cgiEnv(data, 'GET', '/info', { headers: bearer(issued.json().token) }));
  assert.is(r.status, 500);
  assert.match(r.stderr, /token-secret is damaged/);
  assert.not.match(r.text, /token-secret/);
});

t.run();
