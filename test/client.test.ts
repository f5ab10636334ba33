// The client (as each front end serves it at /client.js) against every front
// end: each call of the contract's Client section, and the sync rules that
// matter when the network does not cooperate: a 412 rebases, a lost answer
// is retried without a duplicate, a 409 is reported for its event only, and
// pending events survive being offline and a restart.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { FRONT_ENDS, makeDataDir, runCgi, cgiEnv, tempDir } from './lib/harness.ts';
import { assertChain, H0 } from './lib/events.ts';
import { ALICE_AUTH, ALICE_LOGIN, BOB_LOGIN, eventually, faultyFetch, loadClient, openWithUrl, type Client, type UrlSite } from './lib/client.ts';

// Named streams (and batches) arrive with issue 11: their tests run once the
// executable answers GET /streams.
const STREAMS = await (async () => {
  const parent = tempDir();
  try {
    const dataDir = makeDataDir(parent);
    const r = await runCgi(cgiEnv(dataDir, 'GET', '/streams', { auth: ALICE_AUTH }));
    return r.status === 200;
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
})();
if (!STREAMS) console.log('SKIPPED: client tests of named streams and batches (GET /streams answers 404: streams are not built yet)');

const raw = (s: UrlSite, event: unknown, headers: Record<string, string> = {}) =>
  s.site.request('PUT', '/events', { auth: ALICE_AUTH, headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(event) });
const log = async (s: UrlSite, path = '/events') => (await s.site.request('GET', path, { auth: ALICE_AUTH })).json() as any[];
const titles = (events: any[]) => events.map((e) => e.body.title);

// A GET with node:http: the bytes as sent (fetch would decompress them).
function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers as Record<string, string>, body: Buffer.concat(chunks) }));
    }).on('error', reject).end();
  });
}

for (const fe of FRONT_ENDS) {
  const t = suite<{ s: UrlSite; C: Client }>(`client via ${fe.name}`);
  t.before.each(async (ctx) => {
    ctx.s = await openWithUrl(fe);
    ctx.C = await loadClient(ctx.s.url);
  });
  t.after.each(async (ctx) => {
    await ctx.s.close();
  });

  t('should serve /client.js and /client.d.ts without credentials, with an ETag, 304 and a day of caching', async ({ s }) => {
    const js = await get(`${s.url}/client.js`);
    assert.is(js.status, 200);
    assert.match(js.headers['content-type']!, /^text\/javascript/);
    assert.is(js.headers['cache-control'], 'public, max-age=86400');
    assert.match(js.headers.vary!, /Accept-Encoding/);
    const etag = js.headers.etag!;
    assert.match(etag, /^"[0-9a-f]{64}"$/);
    const text = js.body.toString();
    assert.match(text, /export\{/);
    const again = await get(`${s.url}/client.js`, { 'If-None-Match': etag });
    assert.is(again.status, 304);
    assert.is(again.headers.etag, etag);
    // Compressed on the wire: another representation, with its own ETag.
    const gz = await get(`${s.url}/client.js`, { 'Accept-Encoding': 'gzip' });
    assert.is(gz.status, 200);
    assert.is(gz.headers['content-encoding'], 'gzip');
    assert.is(gunzipSync(gz.body).toString(), text);
    assert.is.not(gz.headers.etag, etag);
    assert.is((await get(`${s.url}/client.js`, { 'Accept-Encoding': 'gzip', 'If-None-Match': gz.headers.etag! })).status, 304);
    const head = await s.site.request('HEAD', '/client.js');
    assert.is(head.status, 200);
    assert.is(head.body.length, 0);
    const dts = await get(`${s.url}/client.d.ts`);
    assert.is(dts.status, 200);
    assert.match(dts.body.toString(), /declare class Apie/);
  });

  t('should still ask for credentials on every other path', async ({ s }) => {
    for (const path of ['/client.jsx', '/client.js/x', '/events', '/nope']) {
      const r = await s.site.request('GET', path);
      assert.is(r.status, 401, path);
    }
  });

  t('should log in with a password and work with the token alone', async ({ s, C }) => {
    const { token, expiresAt } = await new C.Apie({ url: s.url, ...ALICE_LOGIN }).login();
    assert.ok(Date.parse(expiresAt) > Date.now());
    const apie = new C.Apie({ url: s.url, user: ALICE_LOGIN.user, token });
    await apie.append('default', { eventType: 'todo-added', body: { title: 'milk' } });
    await apie.sync();
    assert.equal(titles(await log(s)), ['milk']);
    const wrong = new C.Apie({ url: s.url, user: ALICE_LOGIN.user, password: 'wrong' });
    const err = await wrong.login().catch((e) => e);
    assert.instance(err, C.ApieClientError);
    assert.is(err.status, 401);
    apie.close();
  });

  t('should append, sync and read back in order, following Link pages', async ({ s, C }) => {
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN });
    const queued = await apie.append('default', ['a', 'b', 'c', 'd', 'e'].map((title) => ({ eventType: 'todo-added', body: { title } })));
    assert.is(queued.length, 5);
    for (const e of queued) assert.match(e.eventId, /^[0-9a-f-]{36}$/);
    const result = await apie.sync();
    assert.equal(await apie.pending('default'), []);
    const stored = await log(s);
    assert.equal(titles(stored), ['a', 'b', 'c', 'd', 'e']);
    assert.equal(stored.map((e) => e.eventId), queued.map((e) => e.eventId));
    assert.is(result.head, stored[4].hash);
    assertChain(stored);
    const pages = faultyFetch();
    const reader = new C.Apie({ url: s.url, ...ALICE_LOGIN, fetch: pages.fetch });
    const read: any[] = [];
    for await (const e of reader.read('default', { limit: 2 })) read.push(e);
    assert.equal(read, stored);
    assert.is(pages.requests.filter((r) => r.url.includes('/events')).length, 3, 'three pages of at most two');
    const after: any[] = [];
    for await (const e of reader.read('default', { after: stored[2].hash })) after.push(e);
    assert.equal(titles(after), ['d', 'e']);
    apie.close();
  });

  t('should sync by itself after append', async ({ s, C }) => {
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN });
    await apie.append('default', { eventType: 'todo-added', body: { title: 'auto' } });
    await eventually(async () => (await apie.pending('default')).length === 0, 'the background sync');
    assert.equal(titles(await log(s)), ['auto']);
    apie.close();
  });

  // The client also syncs by itself (after append, with backoff): these tests
  // check what happened, not which sync call did it.
  t('should rebase on 412: read what others appended, then push with the same eventIds', async ({ s, C }) => {
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN });
    await apie.append('default', { eventType: 'todo-added', body: { title: 'mine 1' } });
    await apie.sync();
    await raw(s, { eventType: 'todo-added', body: { title: 'theirs 1' } });
    await raw(s, { eventType: 'todo-added', body: { title: 'theirs 2' } });
    // The same user on another device that has seen nothing: its If-Match is H(0).
    const net = faultyFetch();
    const later = new C.Apie({ url: s.url, ...ALICE_LOGIN, fetch: net.fetch });
    const [mine] = await later.append('default', { eventType: 'todo-added', body: { title: 'mine 2' } });
    const result = await later.sync();
    assert.equal(await later.pending('default'), []);
    const stored = await log(s);
    assert.equal(titles(stored), ['mine 1', 'theirs 1', 'theirs 2', 'mine 2']);
    assert.is(stored[3].eventId, mine.eventId);
    assert.is(result.head, stored[3].hash);
    const posts = net.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/events'));
    assert.equal(posts.map((r) => r.status), [412, 200]);
    apie.close();
    later.close();
  });

  t('should retry an append whose answer was lost without storing it twice', async ({ s, C }) => {
    const net = faultyFetch();
    const errors: unknown[] = [];
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN, fetch: net.fetch, onError: (e) => errors.push(e) });
    net.loseAnswers(2, (method, url) => method === 'POST' && url.endsWith('/events'));
    const [event] = await apie.append('default', { eventType: 'todo-added', body: { title: 'once' } });
    await eventually(async () => (await apie.pending('default')).length === 0, 'the retries to succeed');
    const posts = net.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/events'));
    assert.ok(posts.length >= 3 && posts.slice(0, 2).every((r) => r.status === 200), 'two answers were lost');
    const stored = await log(s);
    assert.is(stored.length, 1);
    assert.is(stored[0].eventId, event.eventId);
    assert.equal(errors, [], 'a lost answer is no error');
    apie.close();
  });

  t('should report a 409 for its event, drop it from the queue, and push the rest', async ({ s, C }) => {
    const taken = '0b7a1c52-8d9e-4f4a-9c3b-2f1e0d9c8b7a';
    await raw(s, { eventType: 'todo-added', body: { title: 'first' }, eventId: taken });
    const errors: any[] = [];
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN, onError: (e) => errors.push(e) });
    await apie.append('default', [
      { eventType: 'todo-added', body: { title: 'other content' }, eventId: taken },
      { eventType: 'todo-added', body: { title: 'next' } },
    ]);
    // Whichever sync meets the 409 reports it: the caller of sync(), or onError.
    await apie.sync().catch((e) => errors.push(e));
    await eventually(async () => (await apie.pending('default')).length === 0, 'the rest to be pushed');
    assert.is(errors.length, 1);
    assert.instance(errors[0], C.ApieClientError);
    assert.is(errors[0].status, 409);
    assert.is(errors[0].event.eventId, taken);
    assert.equal(titles(await log(s)), ['first', 'next']);
    apie.close();
  });

  t('should never throw for being offline, and push what was queued once back', async ({ s, C }) => {
    const net = faultyFetch();
    net.offline = true;
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN, fetch: net.fetch, onError: () => {} });
    const queued = await apie.append('default', { eventType: 'todo-added', body: { title: 'offline' } });
    assert.equal(await apie.pending('default'), queued);
    const err = await apie.sync().catch((e) => e);
    assert.instance(err, C.ApieClientError);
    assert.is(err.status, 0);
    assert.equal(await apie.pending('default'), queued, 'nothing pending is lost');
    net.offline = false;
    await apie.sync();
    assert.equal(await apie.pending('default'), []);
    assert.equal(titles(await log(s)), ['offline']);
    apie.close();
  });

  t('should keep pending events in a file across a restart', async ({ s, C }) => {
    const dir = tempDir();
    try {
      const file = join(dir, 'pending.jsonl');
      const net = faultyFetch();
      net.offline = true;
      const first = new C.Apie({ url: s.url, ...ALICE_LOGIN, storage: C.fileStorage(file), fetch: net.fetch, onError: () => {} });
      await first.append('default', [{ eventType: 'todo-added', body: { title: 'one' } }, { eventType: 'todo-added', body: { title: 'two' } }]);
      first.close();
      const second = new C.Apie({ url: s.url, ...ALICE_LOGIN, storage: C.fileStorage(file) });
      assert.equal((await second.pending('default')).map((e) => e.body), [{ title: 'one' }, { title: 'two' }]);
      // Another user of the same file sees none of them: they are alice's.
      assert.equal(await new C.Apie({ url: s.url, ...BOB_LOGIN, storage: C.fileStorage(file) }).pending('default'), []);
      await second.sync();
      const third = new C.Apie({ url: s.url, ...ALICE_LOGIN, storage: C.fileStorage(file) });
      assert.equal(await third.pending('default'), []);
      assert.equal(titles(await log(s)), ['one', 'two']);
      second.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  t('should keep a projection current: acknowledged events, then pending ones, live', async ({ s, C }) => {
    await raw(s, { eventType: 'todo-added', body: { title: 'before' } });
    const net = faultyFetch();
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN, fetch: net.fetch, onError: () => {} });
    const seen: string[][] = [];
    const p = apie.projection('default', (list: string[], e) => [...list, `${(e.body as any).title}${'hash' in e ? '' : '?'}`], [], {
      onChange: (state) => seen.push(state),
    });
    await p.ready;
    assert.equal(p.state, ['before']);
    await raw(s, { eventType: 'todo-added', body: { title: 'theirs' } });
    await eventually(() => p.state.length === 2, 'a live event');
    net.offline = true;
    await apie.append('default', { eventType: 'todo-added', body: { title: 'mine' } });
    assert.equal(p.state, ['before', 'theirs', 'mine?'], 'pending events are folded last, at once');
    await raw(s, { eventType: 'todo-added', body: { title: 'theirs 2' } });
    net.offline = false;
    await apie.sync();
    assert.equal(p.state, ['before', 'theirs', 'theirs 2', 'mine']);
    assert.equal(seen.at(-1), p.state);
    p.close();
    apie.close();
  });

  t('should deliver live events to a subscriber, resume after a cut from the last hash, and stop', async ({ s, C }) => {
    const first = (await raw(s, { eventType: 'todo-added', body: { title: 'old' } })).json();
    const net = faultyFetch();
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN, fetch: net.fetch });
    const got: any[] = [];
    const stop = apie.subscribe('default', { after: first.hash }, (e) => got.push(e));
    await raw(s, { eventType: 'todo-added', body: { title: 'live 1' } });
    await eventually(() => got.length === 1, 'the first live event');
    net.disconnect();
    await raw(s, { eventType: 'todo-added', body: { title: 'while cut' } });
    net.offline = false;
    await raw(s, { eventType: 'todo-added', body: { title: 'live 2' } });
    await eventually(() => got.length === 3, 'the events after reconnecting');
    assert.equal(titles(got), ['live 1', 'while cut', 'live 2']);
    stop();
    const other: any[] = [];
    const stopOther = apie.subscribe('default', { after: got[2].hash }, (e) => other.push(e));
    await raw(s, { eventType: 'todo-added', body: { title: 'after stop' } });
    await eventually(() => other.length === 1, 'the event on another subscription');
    assert.is(got.length, 3, 'a stopped subscription hears nothing more');
    stopOther();
    apie.close();
  });

  t('should upload bytes once, skip what the store has, and download them', async ({ s, C }) => {
    const net = faultyFetch();
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN, fetch: net.fetch });
    const bytes = new TextEncoder().encode('a photo, say');
    const up = await apie.upload(bytes, { name: 'photo.jpg', contentType: 'image/jpeg' });
    assert.match(up.hash, /^[0-9a-f]{64}$/);
    assert.is(up.size, bytes.length);
    assert.match(up.url, new RegExp(`/storage/${up.hash}$`));
    const again = await apie.upload(bytes.buffer as ArrayBuffer);
    assert.is(again.hash, up.hash);
    assert.is(again.size, bytes.length);
    assert.equal(net.requests.filter((r) => r.url.includes('/storage/')).map((r) => [r.method, r.status]), [['HEAD', 404], ['PUT', 200], ['HEAD', 200]]);
    const back = await apie.download(up.hash);
    assert.instance(back, Uint8Array);
    assert.equal([...(back as Uint8Array)], [...bytes]);
    const meta = await s.site.request('HEAD', `/storage/${up.hash}`, { auth: ALICE_AUTH });
    assert.is(meta.headers['content-type'], 'image/jpeg');
    assert.match(meta.headers['content-disposition'], /photo\.jpg/);
    apie.close();
  });

  t('should refuse a malformed event or stream name before queueing anything', async ({ s, C }) => {
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN });
    for (const bad of [{ eventType: '', body: 1 }, { eventType: 'x' }, { eventType: 'x', body: 1, eventId: 'nope' }, { eventType: 'x', body: 1, hash: H0 }]) {
      assert.instance(await apie.append('default', bad as any).catch((e) => e), TypeError, JSON.stringify(bad));
    }
    assert.instance(await apie.append('Not A Name', { eventType: 'x', body: 1 }).catch((e) => e), TypeError);
    assert.equal(await apie.pending('default'), []);
    apie.close();
  });

  (STREAMS ? t : t.skip)('should keep named streams apart from default, each with its own chain', async ({ s, C }) => {
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN });
    await apie.append('news', { eventType: 'posted', body: { title: 'hello' } });
    await apie.append('default', { eventType: 'todo-added', body: { title: 'milk' } });
    await apie.sync('news');
    await apie.sync('default');
    assert.equal(titles(await log(s, '/streams/news/events')), ['hello']);
    assert.equal(titles(await log(s)), ['milk']);
    const read: any[] = [];
    for await (const e of apie.read('news')) read.push(e);
    assertChain(read);
    apie.close();
  });

  (STREAMS ? t : t.skip)('should push many pending events as one batch where the server takes batches', async ({ s, C }) => {
    const net = faultyFetch();
    net.offline = true;
    const apie = new C.Apie({ url: s.url, ...ALICE_LOGIN, fetch: net.fetch, onError: () => {} });
    await apie.append('default', Array.from({ length: 20 }, (_, i) => ({ eventType: 'n', body: { title: String(i) } })));
    net.offline = false;
    await apie.sync();
    // One event alone first (the client learns the server answers), then the
    // rest as one batch; a push kicked in the background may add one: never 20.
    const posts = net.requests.filter((r) => r.method === 'POST').length;
    assert.ok(posts >= 2 && posts <= 3, `${posts} POSTs`);
    assert.equal(titles(await log(s)), Array.from({ length: 20 }, (_, i) => String(i)));
    apie.close();
  });

  t.run();
}
