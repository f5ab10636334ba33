// Users and authentication through every front end: Basic auth, bearer tokens
// and their revocation, POST /user/update, /info, CORS, an htpasswd-written
// passwd, and concurrent passwd changes from many processes.
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import bcrypt from 'bcryptjs';
import { basicHeader, bearer, cliAsync, tokenFor, whoami } from './lib/auth.ts';
import { ALICE, FRONT_ENDS, fileMode, siteSuite, waitFor, type Site } from './lib/harness.ts';

const APP = 'https://app.example.com';
const USERS = {
  'alice@example.com': 'secret',
  bob: 'hunter2',
  carol: 'carol-pw',
  dave: 'dave-pw',
  'jörg': 'pässword',
};

// Each is not credentials at all, or not anyone's: all are 401 with the challenge.
const MALFORMED: [string, string][] = [
  ['not base64', 'Basic !!!not-base64!!!'],
  ['base64 without a colon', basicHeader('alice@example.comsecret').Authorization],
  ['an empty header', ''],
  ['the scheme alone', 'Basic'],
  ['an empty user name', basicHeader(':secret').Authorization],
  ['trailing garbage', `${basicHeader(ALICE).Authorization}x`],
  ['another scheme', 'Digest username="alice@example.com"'],
  ['a very long password', basicHeader(`alice@example.com:secret${'x'.repeat(5000)}`).Authorization],
  ['bytes that are not UTF-8', basicHeader(Buffer.from([0x61, 0xff, 0xfe, 0x3a, 0x73])).Authorization],
  // jörg's real credentials, but Latin-1 encoded: not UTF-8, so not jörg.
  ['Latin-1 credentials', basicHeader(Buffer.from('jörg:pässword', 'latin1')).Authorization],
  ['a bearer token of garbage', 'Bearer abc.def'],
];

for (const fe of FRONT_ENDS) {
  const t = siteSuite(fe, `auth via ${fe.name}`, { config: { bcryptCost: 4, corsOrigins: [APP] }, users: USERS });

  t('should let in the right password, and refuse a wrong one and an unknown user alike', async ({ site }) => {
    assert.is(await whoami(site, basicHeader(ALICE)), 'alice@example.com');
    assert.is(await whoami(site, basicHeader('jörg:pässword')), 'jörg');
    const wrong = await site.request('GET', '/info', { auth: 'alice@example.com:Secret' });
    const unknown = await site.request('GET', '/info', { auth: 'mallory:secret' });
    for (const r of [wrong, unknown]) {
      assert.is(r.status, 401);
      assert.match(r.headers['www-authenticate'], /^Basic realm="Apie"/);
      assert.is(r.json().status, 'error');
    }
    assert.is(wrong.json().errorMessage, unknown.json().errorMessage);
  });

  t('should answer 401 with the challenge to every malformed Authorization header', async ({ site }) => {
    for (const [what, header] of MALFORMED) {
      const r = await site.request('GET', '/info', { headers: { Authorization: header } });
      assert.is(r.status, 401, what);
      assert.match(r.headers['www-authenticate'] ?? '', /^Basic realm="Apie"/, what);
      assert.is(r.json().status, 'error', what);
    }
    // …and still serve the next request.
    assert.is(await whoami(site, basicHeader(ALICE)), 'alice@example.com');
  });

  t('should issue a token that authenticates as its user until its expiry', async ({ site }) => {
    const before = Date.now();
    const { token, expiresAt } = await tokenFor(site, ALICE);
    const after = Date.now();
    // Default lifetime: 12 hours from issue, in whole seconds.
    const expires = Date.parse(expiresAt);
    assert.ok(expires >= Math.floor(before / 1000) * 1000 + 12 * 3600_000 && expires <= after + 12 * 3600_000, expiresAt);
    assert.is(await whoami(site, bearer(token)), 'alice@example.com');
    assert.is(await whoami(site, { Authorization: `bearer ${token}` }), 'alice@example.com');
    // A token never mints another: a stolen one must not outlive its expiry.
    const again = await site.request('POST', '/auth/token', { headers: bearer(token) });
    assert.is(again.status, 401);
    const bad = await site.request('POST', '/auth/token', { auth: 'alice@example.com:wrong' });
    assert.is(bad.status, 401);
  });

  t('should refuse a tampered token', async ({ site }) => {
    const { token } = await tokenFor(site, ALICE);
    const [name, expires, signature] = token.split('.');
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const forged = [
      `${name}.${expires}.${flip(signature, 0)}`,
      `${name}.${expires}.${flip(signature, signature.length - 1)}`,
      `${name}.${Number(expires) + 3600}.${signature}`,
      `${Buffer.from('bob').toString('base64url')}.${expires}.${signature}`,
      `${name}.${expires}`,
      `${token}.${signature}`,
    ];
    for (const f of forged) assert.is(await whoami(site, bearer(f)), 401, f);
    assert.is(await whoami(site, bearer(token)), 'alice@example.com');
  });

  t('should revoke tokens when the password changes by POST /user/update', async ({ site }) => {
    const { token } = await tokenFor(site, 'bob:hunter2');
    // Changing the password needs the password, not a token.
    const viaToken = await site.request('POST', '/user/update', { headers: bearer(token), body: '{"password":"stolen"}' });
    assert.is(viaToken.status, 401);
    assert.is(await whoami(site, basicHeader('bob:hunter2')), 'bob');
    const r = await site.request('POST', '/user/update', { auth: 'bob:hunter2', body: '{"password":"correct horse"}' });
    assert.is(r.status, 200, r.text);
    assert.equal(r.json(), { status: 'ok' });
    assert.is(await whoami(site, bearer(token)), 401);
    assert.is(await whoami(site, basicHeader('bob:hunter2')), 401);
    assert.is(await whoami(site, basicHeader('bob:correct horse')), 'bob');
    const fresh = await tokenFor(site, 'bob:correct horse');
    assert.is(await whoami(site, bearer(fresh.token)), 'bob');
  });

  t('should change info by POST /user/update, with a token too, keeping the password and tokens', async ({ site }) => {
    const { token } = await tokenFor(site, 'dave:dave-pw');
    const r = await site.request('POST', '/user/update', { headers: bearer(token), body: JSON.stringify({ info: 'Dave D., ops: on call' }) });
    assert.is(r.status, 200, r.text);
    const info = await site.request('GET', '/info', { headers: bearer(token) });
    assert.equal(info.json().auth.user, { email: 'dave', info: 'Dave D., ops: on call', admin: true });
    assert.is(await whoami(site, basicHeader('dave:dave-pw')), 'dave');
  });

  t('should answer 400 to bad input for POST /user/update and change nothing', async ({ site }) => {
    const before = readFileSync(join(site.dataDir, 'passwd'));
    const bad = ['not json', '[]', '"x"', '{}', '{"password":""}', '{"password":5}', `{"password":"${'x'.repeat(73)}"}`,
      '{"info":"two\\nlines"}', '{"info":7}', '{"info":"ok","admin":true}'];
    for (const body of bad) {
      const r = await site.request('POST', '/user/update', { auth: ALICE, body });
      assert.is(r.status, 400, body);
      assert.is(r.json().status, 'error', body);
    }
    assert.equal(readFileSync(join(site.dataDir, 'passwd')), before);
    assert.is(await whoami(site, basicHeader(ALICE)), 'alice@example.com');
  });

  t('should revoke tokens when the command line changes the password or removes the user', async ({ site }) => {
    const carol = await tokenFor(site, 'carol:carol-pw');
    const jorg = await tokenFor(site, 'jörg:pässword');
    const passwd = site.cli(['user', 'passwd', 'jörg'], 'neu\n');
    assert.is(passwd.status, 0, passwd.stderr);
    assert.is(await whoami(site, bearer(jorg.token)), 401);
    assert.is(await whoami(site, basicHeader('jörg:neu')), 'jörg');
    const removed = site.cli(['user', 'remove', 'carol']);
    assert.is(removed.status, 0, removed.stderr);
    assert.is(await whoami(site, bearer(carol.token)), 401);
    assert.is(await whoami(site, basicHeader('carol:carol-pw')), 401);
  });

  t('should revoke every token when the secret is rotated, and keep the secret private', async ({ site }) => {
    const { token } = await tokenFor(site, ALICE);
    const secretFile = join(site.dataDir, 'token-secret');
    assert.is(fileMode(secretFile), 0o600);
    const rotated = site.cli(['token', 'rotate']);
    assert.is(rotated.status, 0, rotated.stderr);
    assert.is(fileMode(secretFile), 0o600);
    assert.is(await whoami(site, bearer(token)), 401);
    const fresh = await tokenFor(site, ALICE);
    assert.is(await whoami(site, bearer(fresh.token)), 'alice@example.com');
  });

  t('should show the caller and the configuration in /info, never secrets, headers or the environment', async ({ site }) => {
    const { token } = await tokenFor(site, ALICE);
    const r = await site.request('GET', '/info', { headers: { ...bearer(token), 'X-Probe': 'probe-value-1234' } });
    assert.is(r.status, 200);
    const info = r.json();
    assert.equal(info.auth.user, { email: 'alice@example.com', info: '', admin: true });
    assert.equal(info.config.corsOrigins, [APP]);
    assert.is(info.config.bcryptCost, 4);
    const secret = readFileSync(join(site.dataDir, 'token-secret'), 'utf8').trim();
    for (const leak of [secret, token, token.split('.')[2], 'probe-value-1234', site.dataDir, 'APIE_DATA', '$2']) {
      assert.not.ok(r.text.includes(leak), `leaks ${leak}`);
    }
  });

  t('should answer a CORS preflight from an allowed origin with 204 and no credentials', async ({ site }) => {
    const r = await site.request('OPTIONS', '/events', {
      headers: { Origin: APP, 'Access-Control-Request-Method': 'PUT', 'Access-Control-Request-Headers': 'authorization, content-type, if-match' },
    });
    assert.is(r.status, 204);
    assert.is(r.headers['access-control-allow-origin'], APP);
    assert.is(r.headers['access-control-allow-credentials'], 'true');
    assert.match(r.headers['access-control-allow-methods'], /\bPUT\b/);
    for (const h of ['Authorization', 'Content-Type', 'If-Match', 'If-None-Match']) {
      assert.ok(r.headers['access-control-allow-headers'].split(/, */).includes(h), h);
    }
  });

  t('should give a refused origin no Access-Control-Allow-Origin', async ({ site }) => {
    const pre = await site.request('OPTIONS', '/events', { headers: { Origin: 'https://evil.example.net', 'Access-Control-Request-Method': 'PUT' } });
    assert.is(pre.headers['access-control-allow-origin'], undefined);
    assert.is(pre.headers['access-control-allow-methods'], undefined);
    const get = await site.request('GET', '/info', { auth: ALICE, headers: { Origin: 'https://evil.example.net' } });
    assert.is(get.status, 200);
    assert.is(get.headers['access-control-allow-origin'], undefined);
    assert.match(get.headers.vary ?? '', /Origin/);
  });

  t('should expose ETag and X-Apie-Hash to an allowed origin, on errors too', async ({ site }) => {
    const get = await site.request('GET', '/info', { auth: ALICE, headers: { Origin: APP } });
    assert.is(get.headers['access-control-allow-origin'], APP);
    const exposed = get.headers['access-control-expose-headers'].split(/, */);
    assert.ok(exposed.includes('ETag') && exposed.includes('X-Apie-Hash'), exposed.join());
    assert.match(get.headers.vary, /Origin/);
    // A browser app can only read the 401 (and ask for a password) when CORS allows it.
    const denied = await site.request('GET', '/info', { headers: { Origin: APP } });
    assert.is(denied.status, 401);
    assert.is(denied.headers['access-control-allow-origin'], APP);
  });

  t('should keep every change when 20 processes add users while a user updates over HTTP', async ({ site }) => {
    const names = Array.from({ length: 20 }, (_, i) => `user${i}@example.com`);
    const adds = names.map((name) => cliAsync(site, ['user', 'add', name, '--info', `number ${name}`], `pw-${name}\n`));
    const updates = Array.from({ length: 5 }, (_, i) => site.request('POST', '/user/update', { auth: ALICE, body: JSON.stringify({ info: `update ${i}` }) }));
    const results = await Promise.all(adds);
    for (const r of results) assert.is(r.status, 0, r.stderr);
    for (const r of await Promise.all(updates)) assert.is(r.status, 200, r.text);
    const list = site.cli(['user', 'list']);
    assert.is(list.status, 0, list.stderr);
    const listed = list.stdout.trim().split('\n');
    for (const name of names) assert.ok(listed.includes(`${name}\tadmin\t-\tnumber ${name}`), name);
    // Exactly the earlier users and the new ones: nothing was lost to a concurrent rewrite.
    assert.equal(listed.map((l) => l.split('\t')[0]).sort(), [...Object.keys(USERS), ...names].sort());
    assert.is(await whoami(site, basicHeader('user7@example.com:pw-user7@example.com')), 'user7@example.com');
    const info = await site.request('GET', '/info', { auth: ALICE });
    assert.match(info.json().auth.user.info, /^update [0-4]$/);
    assert.equal(readFileSync(join(site.dataDir, 'passwd'), 'utf8').split('\n').filter((l) => l.includes('.lock')), []);
  });
  t.run();
}

// A passwd written by Debian's own htpasswd, mixed with original-Apie lines.
const HTPASSWD = '/usr/bin/htpasswd';
function htpasswd(args: string[]): void {
  const r = spawnSync(HTPASSWD, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`htpasswd ${args.join(' ')}: ${r.stderr}`);
}

for (const fe of FRONT_ENDS) {
  // A 2-second token lifetime lets the expiry test wait briefly.
  const t = siteSuite(fe, `auth with an htpasswd file via ${fe.name}`, { config: { bcryptCost: 4, tokenTtlSeconds: 2 } });
  t.before.each(({ site }) => {
    const file = join(site.dataDir, 'passwd');
    htpasswd(['-B', '-C', '4', '-b', '-c', file, 'htuser', 'ht-pass']);
    htpasswd(['-B', '-C', '5', '-b', file, 'second', 'two words']);
    const apieLine = (name: string, pw: string, info: string) => `${name}:${bcrypt.hashSync(pw, 4).replace(/^\$2b/, '$2a')}:${info}\n`;
    writeFileSync(file, readFileSync(file, 'utf8') + '\n' + apieLine('original', 'orig-pw', 'From the original Apie') +
      'broken:not-a-hash\n' + apieLine('htuser', 'duplicate-pw', 'a second line for htuser'));
    chmodSync(file, 0o604);
    site.own(file);
  });

  t('should let in the users of a passwd written by htpasswd -B ($2y$) and original-Apie lines ($2a$)', async ({ site }) => {
    assert.match(readFileSync(join(site.dataDir, 'passwd'), 'utf8'), /^htuser:\$2y\$04\$/);
    assert.is(await whoami(site, basicHeader('htuser:ht-pass')), 'htuser');
    assert.is(await whoami(site, basicHeader('second:two words')), 'second');
    assert.is(await whoami(site, basicHeader('htuser:wrong')), 401);
    const r = await site.request('GET', '/info', { auth: 'original:orig-pw' });
    assert.equal(r.json().auth.user, { email: 'original', info: 'From the original Apie', admin: true });
  });

  t('should let nobody in through a malformed or duplicate line, and report it with its line number', async ({ site }) => {
    assert.is(await whoami(site, basicHeader('broken:not-a-hash')), 401);
    // Only the first line of a name counts.
    assert.is(await whoami(site, basicHeader('htuser:duplicate-pw')), 401);
    if (site.kind === 'cgi') {
      const r = (await site.request('GET', '/info', { auth: 'htuser:ht-pass' })) as Awaited<ReturnType<Site['request']>> & { stderr: string };
      assert.is(r.status, 200);
      assert.match(r.stderr, /passwd line 5: not "name:bcrypt-hash\[:info\]"/);
      assert.match(r.stderr, /passwd line 6: user "htuser" appears twice/);
    }
    const list = site.cli(['user', 'list']);
    assert.match(list.stderr, /passwd line 5/);
  });

  t('should keep the file mode and every other line when the command line changes a password', async ({ site }) => {
    const file = join(site.dataDir, 'passwd');
    const before = readFileSync(file, 'utf8').split('\n');
    const r = site.cli(['user', 'passwd', 'second'], 'three words\n');
    assert.is(r.status, 0, r.stderr);
    assert.is(fileMode(file), 0o604);
    const after = readFileSync(file, 'utf8').split('\n');
    assert.is(after.length, before.length);
    assert.match(after[1], /^second:\$2b\$04\$/);
    after.forEach((line, i) => i !== 1 && assert.is(line, before[i], `line ${i + 1}`));
    assert.is(await whoami(site, basicHeader('second:three words')), 'second');
    assert.is(await whoami(site, basicHeader('htuser:ht-pass')), 'htuser');
  });

  t('should refuse an expired token', async ({ site }) => {
    const { token, expiresAt } = await tokenFor(site, 'htuser:ht-pass');
    assert.is(await whoami(site, bearer(token)), 'htuser');
    // Issued with a whole-second expiry, so it lives between one and two seconds.
    await waitFor(`the clock to pass ${expiresAt}`, () => Date.now() >= Date.parse(expiresAt), 5_000);
    assert.is(await whoami(site, bearer(token)), 401);
  });
  t.run();
}
