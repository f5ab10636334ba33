// The executable as a command line: usage, version, init, data directory lookup.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fileMode, makeDataDir, runCgi, cgiEnv, runCli, tempDir } from './lib/harness.ts';

const t = suite('cli');

t('should print its version and the Node inside with --version', () => {
  const r = runCli(['--version']);
  assert.is(r.status, 0);
  assert.match(r.stdout, /^Apie \d+\.\d+\.\d+ \(Node v22\.\d+\.\d+\)/);
});

t('should print usage with --help and exit 0', () => {
  const r = runCli(['--help']);
  assert.is(r.status, 0);
  assert.match(r.stdout, /apie serve/);
  assert.match(r.stdout, /apie user add/);
});

t('should print usage and exit non-zero on an unknown command', () => {
  const r = runCli(['frobnicate']);
  assert.is(r.status, 2);
  assert.match(r.stderr, /unknown command "frobnicate"/);
  assert.match(r.stderr, /Usage:/);
});

t('should print usage and exit non-zero on no command', () => {
  const r = runCli([]);
  assert.is(r.status, 2);
  assert.match(r.stderr, /Usage:/);
});

t('should refuse an unknown flag and a bad port', () => {
  const bad = runCli(['serve', '--colour']);
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /--colour/);
  const port = runCli(['serve', '--port', 'eighty']);
  assert.is(port.status, 2);
  assert.match(port.stderr, /--port/);
});

t('should create a working data directory with init, with an admin user that can log in', async () => {
  const parent = tempDir();
  try {
    const dir = join(parent, 'data');
    const r = runCli(['init', dir]);
    assert.is(r.status, 0, r.stderr);
    const password = /password (\S+)/.exec(r.stdout)?.[1];
    assert.ok(password, r.stdout);
    assert.ok(existsSync(join(dir, 'apie.json')));
    assert.match(readFileSync(join(dir, '.htaccess'), 'utf8'), /Require all denied/);
    // Modes from the defaults: readable by owner and group, not world.
    assert.is(fileMode(join(dir, 'passwd')), 0o640);
    assert.is(fileMode(dir), 0o750);
    const ok = await runCgi(cgiEnv(dir, 'GET', '/info', { auth: `admin:${password}` }));
    assert.is(ok.status, 200);
    assert.is(ok.json().auth.user.email, 'admin');
    const wrong = await runCgi(cgiEnv(dir, 'GET', '/info', { auth: 'admin:guess' }));
    assert.is(wrong.status, 401);
    // A second init keeps the existing users and configuration.
    const again = runCli(['init', dir]);
    assert.is(again.status, 0);
    assert.not.match(again.stdout, /password/);
    assert.is(readFileSync(join(dir, 'passwd'), 'utf8').split('\n').filter(Boolean).length, 1);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

t('should take the data directory from --data before APIE_DATA', async () => {
  const parent = tempDir();
  try {
    const fromEnv = join(parent, 'env');
    const fromFlag = join(parent, 'flag');
    // Typed for this one command, the flag is the more specific choice.
    const r = runCli(['init', '--data', fromFlag], { env: { APIE_DATA: fromEnv } });
    assert.is(r.status, 0, r.stderr);
    assert.ok(existsSync(join(fromFlag, 'apie.json')));
    assert.not.ok(existsSync(fromEnv));
    const envOnly = runCli(['init'], { env: { APIE_DATA: fromEnv } });
    assert.is(envOnly.status, 0, envOnly.stderr);
    assert.ok(existsSync(join(fromEnv, 'apie.json')));
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

t('should refuse to serve on a configuration with an unknown key, naming it', () => {
  const parent = tempDir();
  try {
    const dir = makeDataDir(parent, { config: { maxEventBytes: 5, frobs: 1 } });
    const r = runCli(['serve', '--port', '0', '--data', dir]);
    assert.is(r.status, 1);
    assert.match(r.stderr, /unknown key "frobs"/);
    assert.not.match(r.stderr, /at .*\.js:\d+/); // a message, not a stack trace
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

t.run();
