// Streams as such, through every front end: names that are refused, chains
// that stay apart, GET /streams and `apie streams`, and waiters on one stream
// that an append to another does not answer. (Everything /events does, a
// named stream does too: events.test.ts runs its cases at both paths.)
import * as assert from 'uvu/assert';
import { ALICE, FRONT_END, EVENT_FRONT_ENDS, siteSuite, untilWaiting, type Site } from './lib/harness.ts';
import { assertChain, cgiProcess, H0, logHead, put } from './lib/events.ts';

const HASH = 'ab'.repeat(32);
// Each refused for its own reason: case, first character, length, characters outside the set.
const BAD_NAMES = ['News', '-news', '.news', '_news', 'a'.repeat(129), 'a b', 'ü', 'a:b', 'a%2Fb', ''];

const event = (n: unknown) => ({ eventType: 'test', body: n });

for (const fe of EVENT_FRONT_ENDS) {
  const t = siteSuite(fe, `streams via ${fe.name}`);
  const get = (site: Site, path: string, headers: Record<string, string> = {}) => site.request('GET', path, { auth: ALICE, headers });

  t('should refuse a malformed stream name with 400 on every path, and write nothing', async ({ site }) => {
    // Runs of slashes count as one on every front end (as Apache merges them), so
    // `/streams//events` has no stream name left to refuse: it is no path at all.
    assert.is((await get(site, '/streams//events')).status, 404);
    for (const raw of BAD_NAMES.filter((n) => n !== '')) {
      const name = encodeURIComponent(raw);
      const cases: [string, string][] = [
        ['GET', `/streams/${name}/events`],
        ['HEAD', `/streams/${name}/events`],
        ['PUT', `/streams/${name}/events`],
        ['GET', `/streams/${name}/events/${HASH}`],
        ['POST', `/streams/${name}/events/verify`],
      ];
      for (const [method, path] of cases) {
        const r = await site.request(method, path, { auth: ALICE, body: method === 'PUT' ? JSON.stringify(event(1)) : undefined, headers: { 'Content-Type': 'application/json' } });
        assert.is(r.status, 400, `${method} ${path}`);
        if (method !== 'HEAD') assert.match(r.json().errorMessage, /stream name/, path);
      }
    }
    // The longest and the shortest names that are fine.
    for (const name of ['a'.repeat(128), '0', 'a.b_c-d']) assert.is((await put(site, event(name), {}, `/streams/${name}/events`)).status, 200, name);
    assert.equal((await get(site, '/streams')).json().map((s: any) => s.name), ['0', 'a.b_c-d', 'a'.repeat(128)]);
    // A stream path with more in it is no path at all.
    assert.is((await get(site, '/streams/a/b/events')).status, 404);
  });

  t('should keep each stream its own chain from H(0), and list those with events by name', async ({ site }) => {
    const answered: Record<string, any[]> = { news: [], default: [], 'b-2': [] };
    for (let i = 0; i < 3; i++) {
      for (const name of Object.keys(answered)) {
        const r = await put(site, event({ name, i }), {}, `/streams/${name}/events`);
        assert.is(r.status, 200, r.text);
        answered[name].push(r.json());
      }
    }
    for (const [name, events] of Object.entries(answered)) {
      const all = (await get(site, `/streams/${name}/events`)).json();
      assert.equal(all, events);
      assertChain(all); // from H(0), whatever the other streams hold
    }
    // /events is the stream default.
    assert.equal((await get(site, '/events')).json(), answered.default);
    // A stream never appended to reads as empty and is not listed; a refused append does not create it.
    assert.equal((await get(site, '/streams/quiet/events')).json(), []);
    assert.equal(await logHead(site, '/streams/quiet/events'), { count: 0, hash: H0 });
    assert.is((await put(site, event(0), { 'If-Match': HASH }, '/streams/quiet/events')).status, 412);
    const verify = await site.request('POST', '/streams/quiet/events/verify', { auth: ALICE });
    assert.equal(verify.json(), { status: 'ok', count: 0, hash: H0 });
    const list = await get(site, '/streams');
    assert.is(list.status, 200);
    assert.is(list.headers['content-type'], 'application/json');
    const want = ['b-2', 'default', 'news'].map((name) => ({ name, count: 3, hash: answered[name].at(-1).hash }));
    assert.equal(list.json(), want);
    // The command line says the same, one stream a line.
    const cli = site.cli(['streams']);
    assert.is(cli.status, 0, cli.stderr);
    assert.is(cli.stdout, want.map((s) => `${s.name}\t${s.count}\t${s.hash}\n`).join(''));
    const one = site.cli(['verify', '--stream', 'news']);
    assert.is(one.status, 0, one.stderr);
    assert.is(one.stdout, `stream news: ok, 3 event(s), last hash ${answered.news.at(-1).hash}\n`);
    assert.is(site.cli(['verify', '--stream', 'No']).status, 1);
  });

  t('should leave a long poll on one stream waiting while another stream is appended to', async ({ site }) => {
    const waiting = get(site, `/streams/watched/events?after=${H0}&wait=60`);
    await untilWaiting(site.dataDir);
    const elsewhere = await cgiProcess(site, 'PUT', '/streams/elsewhere/events', JSON.stringify(event('elsewhere')));
    assert.is(elsewhere.reply!.status, 200);
    assert.is((await put(site, event('default'))).status, 200);
    const mine = await put(site, event('watched'), {}, '/streams/watched/events');
    assert.is(mine.status, 200);
    const r = await waiting;
    assert.is(r.status, 200);
    assert.equal(r.json(), [mine.json()]);
  });

  t.run();
}

const live = siteSuite(FRONT_END.server, 'streams: the server');

live('should send an event stream only its own stream\'s events', async ({ site }) => {
  const res = await fetch(`${site.base}/streams/watched/events`, { headers: { Authorization: `Basic ${Buffer.from(ALICE).toString('base64')}`, Accept: 'text/event-stream' } });
  assert.is(res.status, 200);
  const reader = res.body!.getReader();
  let text = '';
  // The stream has begun (retry line) before anything is appended.
  while (!text.includes('retry:')) text += Buffer.from((await reader.read()).value!).toString();
  assert.is((await put(site, event('elsewhere'), {}, '/streams/elsewhere/events')).status, 200);
  assert.is((await put(site, event('default'))).status, 200);
  const mine = (await put(site, event('watched'), {}, '/streams/watched/events')).json();
  while (!text.includes(`id: ${mine.hash}`)) text += Buffer.from((await reader.read()).value!).toString();
  await reader.cancel();
  const ids = [...text.matchAll(/^id: (.*)$/gm)].map((m) => m[1]);
  assert.equal(ids, [mine.hash]);
});

live('should serve many more streams than it keeps open, each right', async ({ site }) => {
  // More than the server keeps open at once (128): stores are closed and reopened on the way.
  const names = Array.from({ length: 150 }, (_, i) => `s${i}`);
  const heads = new Map<string, string>();
  for (const name of names) {
    const r = await put(site, event(name), {}, `/streams/${name}/events`);
    assert.is(r.status, 200, r.text);
    heads.set(name, r.json().hash);
  }
  for (const name of names) {
    const again = await put(site, event(`${name}-2`), { 'If-Match': heads.get(name)! }, `/streams/${name}/events`);
    assert.is(again.status, 200, again.text);
    const all = (await site.request('GET', `/streams/${name}/events`, { auth: ALICE })).json();
    assert.equal(all.map((e: any) => e.body), [name, `${name}-2`]);
  }
  assert.is((await site.request('GET', '/streams', { auth: ALICE })).json().length, 150);
});

live.run();
