// `apie import-apie` on a data directory the original Apie wrote
// (test/fixtures/original-apie-data): every event as the original answers it,
// byte for byte, with every hash; both blobs under their names; its event
// log directory alone, into a named stream; and a refusal that writes nothing.
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { ALICE, FRONT_ENDS, ROOT, giveToWebUser, siteSuite, tempDir } from './lib/harness.ts';
import { assertChain, logHead } from './lib/events.ts';

const FIXTURES = join(ROOT, 'test', 'fixtures');
const ANSWER = readFileSync(join(FIXTURES, 'original-apie-data.events.json'), 'utf8').trimEnd();
const EVENTS: any[] = JSON.parse(ANSWER);
const BLOBS = [
  { hash: 'a0639d03e7e77d7630dffce7bfe26d51813d4c799f13821e5b6786e2736baaed', name: 'hello.txt', size: 11 },
  { hash: '88c5fa25becf775c9dfa73d9da3355a3c20d85889419950e71ac2f2123d0fbf7', name: 'random.bin', size: 5000 },
];

// Tests run CLI commands as the web server's user under Apache: the original goes in a directory it can read.
for (const fe of FRONT_ENDS.filter((f) => f.name !== 'server')) {
  const t = siteSuite<{ parent: string; original: string }>(fe, `import-apie: the original's data directory via ${fe.name}`);
  t.before.each((ctx) => {
    ctx.parent = tempDir('apie-original-');
    ctx.original = join(ctx.parent, 'original-apie-data');
    cpSync(join(FIXTURES, 'original-apie-data'), ctx.original, { recursive: true });
    giveToWebUser(ctx.parent);
  });
  t.after.each((ctx) => {
    rmSync(ctx.parent, { recursive: true, force: true });
  });

  t('should import every event byte for byte with its hash, and both blobs under their names', async ({ site, original }) => {
    const r = site.cli(['import-apie', original]);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, `imported 30 event(s) into the stream default; it has 30, last hash ${EVENTS.at(-1).hash}`);
    assert.match(r.stdout, 'imported 2 blob(s)');
    const all = await site.request('GET', '/events', { auth: ALICE });
    assert.is(all.text, ANSWER);
    assert.equal(all.json(), EVENTS);
    const one = await site.request('GET', `/events/${EVENTS[2].hash}`, { auth: ALICE });
    assert.equal(one.json(), EVENTS[2]);
    for (const blob of BLOBS) {
      const b = await site.request('GET', `/storage/${blob.hash}`, { auth: ALICE });
      assert.is(b.status, 200, blob.name);
      assert.is(b.body.length, blob.size);
      assert.equal(b.body, readFileSync(join(original, 'media', blob.hash.slice(0, 2), blob.hash, blob.name)));
      assert.is(b.headers['content-disposition'], `attachment; filename="${blob.name}"`);
    }
    // The chain goes on from the original's last hash.
    const next = await site.request('PUT', '/events', { auth: ALICE, headers: { 'Content-Type': 'application/json', 'If-Match': EVENTS.at(-1).hash }, body: '{"eventType":"after","body":1}' });
    assert.is(next.status, 200, next.text);
    assertChain([next.json()], EVENTS.at(-1).hash);
    const verify = site.cli(['verify']);
    assert.is(verify.status, 0, verify.stderr);
    assert.match(verify.stdout, 'storage: ok, 2 blob(s)');
  });

  t('should import the original\'s event log directory alone into a named stream', async ({ site, original }) => {
    const r = site.cli(['import-apie', join(original, 'events', 'default'), '--stream', 'imported']);
    assert.is(r.status, 0, r.stderr);
    assert.equal((await site.request('GET', '/streams/imported/events', { auth: ALICE })).json(), EVENTS);
    assert.is((await logHead(site)).count, 0); // the stream default is untouched
    assert.is((await site.request('GET', `/storage/${BLOBS[0].hash}`, { auth: ALICE })).status, 404);
  });

  t('should refuse an original whose chain or blob is broken, naming it, and import nothing', async ({ site, original }) => {
    const seventh = join(original, 'events', 'default', EVENTS[6].hash.slice(0, 2), EVENTS[6].hash, '0000000007.json');
    const good = readFileSync(seventh, 'utf8');
    writeFileSync(seventh, good.replace('"eventType":"', '"eventType":"X'));
    const broken = site.cli(['import-apie', original]);
    assert.is(broken.status, 1);
    assert.match(broken.stderr, /entry 7 \(0000000007\): its bytes do not hash/);
    writeFileSync(seventh, good);
    const blob = join(original, 'media', BLOBS[0].hash.slice(0, 2), BLOBS[0].hash, BLOBS[0].name);
    writeFileSync(blob, 'tampered');
    const tampered = site.cli(['import-apie', original]);
    assert.is(tampered.status, 1);
    assert.match(tampered.stderr, new RegExp(`blob ${BLOBS[0].hash} \\(hello.txt\\): its bytes hash to`));
    assert.is((await logHead(site)).count, 0);
    assert.is((await site.request('GET', `/storage/${BLOBS[1].hash}`, { auth: ALICE })).status, 404);
  });

  t.run();
}
