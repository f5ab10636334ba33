// Who may do what, through every front end: a matrix of users × streams ×
// read / write / verify, every cell asserted; blob deletes by uploaders,
// others and admins; GET /streams and /info as each user sees them; and
// without the access keys, everyone may do everything, as before.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { EVENT_FRONT_ENDS, siteSuite, type Site } from './lib/harness.ts';
import { JSON_HEADERS } from './lib/events.ts';

const PASSWORD = 'pw';
const USERS = ['root', 'alice@example.com', 'bob@example.com', 'carol'] as const;
type User = (typeof USERS)[number];
const auth = (user: User) => `${user}:${PASSWORD}`;

const CONFIG = {
  admins: ['root'],
  groups: { family: ['alice@example.com', 'bob@example.com'] },
  access: [
    { stream: 'private-{user}', read: ['{user}'], write: ['{user}'] },
    { stream: 'family-*', read: ['@family'], write: ['@family'] },
    { stream: 'news', read: ['*'], write: ['@family'] },
  ],
};

// The stream paths of the matrix: alice's private stream, a family one, news,
// one no rule names, and /events (the stream default, which no rule names either).
const STREAMS = {
  'private-alice': '/streams/private-alice_40example.com/events',
  'family-chat': '/streams/family-chat/events',
  news: '/streams/news/events',
  secret: '/streams/secret/events',
  default: '/events',
} as const;
type Stream = keyof typeof STREAMS;

// What each user may do: r read, w write, v verify. Spelled out, not computed.
const MATRIX: Record<User, Record<Stream, string>> = {
  root: { 'private-alice': 'rwv', 'family-chat': 'rwv', news: 'rwv', secret: 'rwv', default: 'rwv' },
  'alice@example.com': { 'private-alice': 'rw', 'family-chat': 'rw', news: 'rw', secret: '', default: '' },
  'bob@example.com': { 'private-alice': '', 'family-chat': 'rw', news: 'rw', secret: '', default: '' },
  carol: { 'private-alice': '', 'family-chat': '', news: 'r', secret: '', default: '' },
};

const users = Object.fromEntries(USERS.map((u) => [u, PASSWORD]));

function append(site: Site, user: User, path: string, body: unknown) {
  return site.request('PUT', path, { auth: auth(user), headers: JSON_HEADERS, body: JSON.stringify({ eventType: 'test', body }) });
}

for (const fe of EVENT_FRONT_ENDS) {
  const t = siteSuite(fe, `permissions via ${fe.name}`, { config: CONFIG, users });

  t('should allow and refuse every cell of users × streams × read, write and verify', async ({ site }) => {
    // One event in each stream, by the admin, so reads have something to find.
    const first: Record<string, string> = {};
    for (const [stream, path] of Object.entries(STREAMS)) {
      const r = await append(site, 'root', path, 'first');
      assert.is(r.status, 200, r.text);
      first[stream] = r.json().hash;
    }
    for (const user of USERS) {
      for (const [stream, path] of Object.entries(STREAMS) as [Stream, string][]) {
        const may = MATRIX[user][stream];
        const cell = `${user} on ${stream}`;
        const expect = (r: { status: number; text: string }, allowed: boolean, what: string) => {
          assert.is(r.status, allowed ? 200 : 403, `${cell}: ${what}: ${r.text}`);
          if (!allowed && what !== 'HEAD') assert.equal(JSON.parse(r.text).status, 'error', `${cell}: ${what}`);
        };
        // Read: the list, HEAD, one event by hash (403 before any 404 could say whether it exists).
        expect(await site.request('GET', path, { auth: auth(user) }), may.includes('r'), 'GET');
        expect(await site.request('HEAD', path, { auth: auth(user) }), may.includes('r'), 'HEAD');
        expect(await site.request('GET', `${path}/${first[stream]}`, { auth: auth(user) }), may.includes('r'), 'GET one');
        // Write; a refused one appends nothing.
        const before = (await site.request('HEAD', path, { auth: auth('root') })).headers['x-apie-count'];
        expect(await append(site, user, path, { by: user }), may.includes('w'), 'PUT');
        const after = (await site.request('HEAD', path, { auth: auth('root') })).headers['x-apie-count'];
        assert.is(Number(after), Number(before) + (may.includes('w') ? 1 : 0), `${cell}: count after PUT`);
        // A batch is written, or refused, the same way.
        const batch = await site.request('POST', path, { auth: auth(user), headers: JSON_HEADERS, body: JSON.stringify([{ eventType: 'b', body: 1 }, { eventType: 'b', body: 2 }]) });
        expect(batch, may.includes('w'), 'POST batch');
        // Verify: admins only.
        expect(await site.request('POST', `${path}/verify`, { auth: auth(user) }), may.includes('v'), 'verify');
      }
      expectStatus(await site.request('POST', '/storage/verify', { auth: auth(user) }), user === 'root' ? 200 : 403, `${user}: storage verify`);
    }
  });

  t('should list in GET /streams only what each user may read', async ({ site }) => {
    for (const path of Object.values(STREAMS)) assert.is((await append(site, 'root', path, 1)).status, 200);
    const listed = async (user: User) => (await site.request('GET', '/streams', { auth: auth(user) })).json().map((s: any) => s.name);
    assert.equal(await listed('root'), ['default', 'family-chat', 'news', 'private-alice_40example.com', 'secret']);
    assert.equal(await listed('alice@example.com'), ['family-chat', 'news', 'private-alice_40example.com']);
    assert.equal(await listed('bob@example.com'), ['family-chat', 'news']);
    assert.equal(await listed('carol'), ['news']);
  });

  t('should show in /info whether the caller is an admin and what each rule grants them', async ({ site }) => {
    const info = async (user: User) => (await site.request('GET', '/info', { auth: auth(user) })).json();
    const bob = await info('bob@example.com');
    assert.is(bob.auth.user.admin, false);
    assert.is(bob.auth.user.email, 'bob@example.com');
    assert.equal(bob.auth.access, [
      { stream: 'private-bob_40example.com', read: true, write: true },
      { stream: 'family-*', read: true, write: true },
      { stream: 'news', read: true, write: true },
    ]);
    assert.equal((await info('carol')).auth.access.map((a: any) => [a.read, a.write]), [[true, true], [false, false], [true, false]]);
    const root = await info('root');
    assert.is(root.auth.user.admin, true);
    assert.ok(root.auth.access.every((a: any) => a.read && a.write));
    // Who is an admin or in which group is not shown to anyone.
    for (const key of ['admins', 'groups', 'access']) assert.not.ok(key in root.config, key);
  });

  t('should let a non-admin delete only their own claim on a blob; the bytes go with the last', async ({ site }) => {
    let n = 0;
    const upload = async (user: User) => {
      const r = await site.request('PUT', '/storage/f.txt', { auth: auth(user), body: `blob ${n}` });
      assert.is(r.status, 200, r.text);
      return r.json().hash as string;
    };
    const exists = async (hash: string) => (await site.request('GET', `/storage/${hash}`, { auth: auth('carol') })).status === 200;
    // Each cell gets its own blob: [who uploads it, who deletes, status, still there after].
    const cells: [User[] | 'before claims', User, number, boolean][] = [
      [['alice@example.com'], 'alice@example.com', 200, false],
      [['alice@example.com'], 'bob@example.com', 403, true],
      [['alice@example.com'], 'root', 200, false],
      [['alice@example.com', 'bob@example.com'], 'alice@example.com', 200, true],
      [['alice@example.com', 'bob@example.com'], 'carol', 403, true],
      [['alice@example.com', 'bob@example.com'], 'root', 200, false],
      ['before claims', 'alice@example.com', 403, true],
      ['before claims', 'root', 200, false],
    ];
    for (const [uploaders, deleter, status, stays] of cells) {
      n++;
      let hash: string;
      if (uploaders === 'before claims') {
        hash = await upload('carol');
        // Metadata as 0.1.0 wrote it, without claims: nobody's blob.
        const meta = join(site.dataDir, 'storage', 'blobs', hash.slice(0, 2), `${hash}.json`);
        const { name, contentType } = JSON.parse(readFileSync(meta, 'utf8'));
        writeFileSync(meta, JSON.stringify({ name, contentType }));
      } else {
        for (const u of uploaders) hash = await upload(u);
      }
      const r = await site.request('DELETE', `/storage/${hash!}`, { auth: auth(deleter) });
      const cell = `${JSON.stringify(uploaders)} deleted by ${deleter}`;
      assert.is(r.status, status, `${cell}: ${r.text}`);
      assert.is(await exists(hash!), stays, `${cell}: still there`);
    }
  });

  t.run();
}

// Without admins, groups and access: everyone is an admin, as before.
for (const fe of EVENT_FRONT_ENDS) {
  const t = siteSuite(fe, `permissions: none configured via ${fe.name}`, { users: { alice: PASSWORD, bob: PASSWORD } });

  t('should let every user read, write, verify and delete anything', async ({ site }) => {
    const a = await site.request('PUT', '/streams/anything/events', { auth: `alice:${PASSWORD}`, headers: JSON_HEADERS, body: '{"eventType":"x","body":1}' });
    assert.is(a.status, 200);
    assert.is((await site.request('GET', '/streams/anything/events', { auth: `bob:${PASSWORD}` })).status, 200);
    assert.is((await site.request('POST', '/streams/anything/events/verify', { auth: `bob:${PASSWORD}` })).status, 200);
    const blob = (await site.request('PUT', '/storage/x', { auth: `alice:${PASSWORD}`, body: 'x' })).json().hash;
    assert.is((await site.request('DELETE', `/storage/${blob}`, { auth: `bob:${PASSWORD}` })).status, 200);
    assert.is((await site.request('GET', `/storage/${blob}`, { auth: `bob:${PASSWORD}` })).status, 404);
    const info = (await site.request('GET', '/info', { auth: `bob:${PASSWORD}` })).json();
    assert.is(info.auth.user.admin, true);
    assert.equal(info.auth.access, []);
  });

  t.run();
}

function expectStatus(r: { status: number; text: string }, status: number, what: string): void {
  assert.is(r.status, status, `${what}: ${r.text}`);
}
