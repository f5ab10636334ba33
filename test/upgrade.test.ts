// A data directory written by 0.1.0 (test/fixtures/apie-0.1.0) opens as it
// is: its log, directly in events/, is the stream default with every event
// and hash unchanged, takes appends after its last hash, and lives beside
// new streams. Through every front end.
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { ALICE, FRONT_ENDS, ROOT, frontEndSuite, type Site } from './lib/harness.ts';
import { assertChain, put } from './lib/events.ts';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'apie-0.1.0');
const EXPECTED: any[] = JSON.parse(readFileSync(join(FIXTURE, 'events.json'), 'utf8'));

for (const fe of FRONT_ENDS) {
  const t = frontEndSuite<{ site: Site }>(fe, `upgrade: a 0.1.0 data directory via ${fe.name}`);
  t.before.each(async (ctx) => {
    ctx.site = await fe.open();
    // Its events, blobs and passwd (alice@example.com, secret) over the fresh site's.
    for (const part of ['events', 'storage', 'passwd']) cpSync(join(FIXTURE, 'apie-data', part), join(ctx.site.dataDir, part), { recursive: true });
    ctx.site.own(ctx.site.dataDir);
  });
  t.after.each(async (ctx) => {
    await ctx.site.close();
  });
  const get = (site: Site, path: string) => site.request('GET', path, { auth: ALICE });

  t('should serve every event of 0.1.0 with its hash, at /events and as the stream default', async ({ site }) => {
    for (const path of ['/events', '/streams/default/events']) {
      const r = await get(site, path);
      assert.is(r.status, 200, r.text);
      assert.equal(r.json(), EXPECTED, path);
      assert.is(r.headers['x-apie-hash'], EXPECTED.at(-1).hash);
    }
    assertChain(EXPECTED);
    const one = await get(site, `/streams/default/events/${EXPECTED[1].hash}`);
    assert.equal(one.json(), EXPECTED[1]);
    const after = await get(site, `/events?after=${EXPECTED[29].hash}`);
    assert.equal(after.json(), EXPECTED.slice(30));
    const head = await site.request('HEAD', '/events', { auth: ALICE });
    assert.is(head.headers['x-apie-count'], String(EXPECTED.length));
    const streams = await get(site, '/streams');
    assert.equal(streams.json(), [{ name: 'default', count: EXPECTED.length, hash: EXPECTED.at(-1).hash }]);
  });

  t('should append after the last hash of 0.1.0, beside a new stream, and verify', async ({ site }) => {
    const last = EXPECTED.at(-1).hash;
    const r = await put(site, { eventType: 'after-upgrade', body: 1 }, { 'If-Match': `"${last}"` });
    assert.is(r.status, 200, r.text);
    const other = await site.request('PUT', '/streams/other/events', { auth: ALICE, body: JSON.stringify({ eventType: 'x', body: 2 }), headers: { 'Content-Type': 'application/json' } });
    assert.is(other.status, 200, other.text);
    const all = (await get(site, '/events')).json();
    assert.equal(all.slice(0, -1), EXPECTED);
    assertChain(all);
    assertChain((await get(site, '/streams/other/events')).json());
    const verify = await site.request('POST', '/events/verify', { auth: ALICE });
    assert.equal(verify.json(), { status: 'ok', count: EXPECTED.length + 1, hash: all.at(-1).hash });
    const cli = site.cli(['verify']);
    assert.is(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, `events: ok, ${EXPECTED.length + 1} event(s), last hash ${all.at(-1).hash}`);
    assert.match(cli.stdout, 'stream other: ok, 1 event(s)');
  });

  t('should serve the blob 0.1.0 stored, under its name', async ({ site }) => {
    const r = await get(site, '/storage/b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9');
    assert.is(r.status, 200);
    assert.is(r.text, 'hello world');
    assert.match(r.headers['content-disposition'], 'hello.txt');
  });

  t.run();
}
