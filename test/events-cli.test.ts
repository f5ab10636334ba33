// The event log from the command line: `apie import-apie DIR` keeps every hash
// and byte of an original Apie log and refuses a broken one; `apie verify`
// names the first damaged event and restores file modes.
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { ALICE, FRONT_ENDS, giveToWebUser, siteSuite, tempDir } from './lib/harness.ts';
import { H0, logHead, put, writeOriginalApie } from './lib/events.ts';

// J as the original wrote it: compact, pretty-printed (newlines inside), non-ASCII.
const originals = Array.from({ length: 12 }, (_, i) => {
  const event = { eventId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, eventType: 'imported', body: { i, text: 'ü ✓' }, createdBy: 'old@example.com', createdAt: '2020-01-01T00:00:00.000Z' };
  return i % 3 === 1 ? JSON.stringify(event, null, 2) : JSON.stringify(event);
});

for (const fe of FRONT_ENDS.filter((f) => f.name !== 'server')) {
  const t = siteSuite(fe, `events command line via ${fe.name}`, { config: { fileMode: '0640', dirMode: '0750' } });
  // Original directories made by a test, removed after it.
  const made: string[] = [];
  t.after.each(() => {
    for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  // The original directory, readable by the user the CLI runs as.
  const original = (opts: Parameters<typeof writeOriginalApie>[2] = {}) => {
    const parent = tempDir('apie-original-');
    made.push(parent);
    const dir = join(parent, 'apie');
    const hashes = writeOriginalApie(dir, originals, opts);
    giveToWebUser(join(dir, '..'));
    return { dir, hashes };
  };

  for (const finalNewline of [false, true]) {
    t(`should import an original log with every hash and byte${finalNewline ? ' (files ending in an unhashed newline)' : ''}, then append after it`, async ({ site }) => {
      const { dir, hashes } = original({ finalNewline });
      const r = site.cli(['import-apie', dir]);
      assert.is(r.status, 0, r.stderr);
      assert.match(r.stdout, `imported ${originals.length} event(s)`);
      const events = (await site.request('GET', '/events', { auth: ALICE })).json();
      assert.equal(events.map((e: any) => e.hash), hashes);
      // The pretty-printed bytes come back as they were, newlines and all.
      const one = await site.request('GET', `/events/${hashes[1]}`, { auth: ALICE });
      assert.is(one.text.slice(0, originals[1].length - 1), originals[1].slice(0, -1));
      const next = await put(site, { eventType: 'after-import', body: 1 }, { 'If-Match': hashes.at(-1)! });
      assert.is(next.status, 200, next.text);
      const verify = site.cli(['verify']);
      assert.is(verify.status, 0, verify.stderr);
      assert.match(verify.stdout, `events: ok, ${originals.length + 1} event(s)`);
    });
  }

  t('should refuse a chain that does not verify, naming the first bad entry, and import nothing', async ({ site }) => {
    const { dir, hashes } = original();
    const file = join(dir, hashes[6]);
    writeFileSync(file, readFileSync(file, 'utf8').replace('"i":6', '"i":66'));
    const r = site.cli(['import-apie', dir]);
    assert.is(r.status, 1);
    assert.match(r.stderr, /entry 7 \(/);
    assert.is((await logHead(site)).count, 0);
    // A missing entry breaks the link of the one after it.
    const gap = original();
    writeFileSync(join(gap.dir, 'index'), gap.hashes.filter((_, i) => i !== 3).join('\n') + '\n');
    const g = site.cli(['import-apie', gap.dir]);
    assert.is(g.status, 1);
    assert.match(g.stderr, /entry 4 \(/);
    assert.is(site.cli(['import-apie', join(dir, 'nope')]).status, 1);
    assert.is((await logHead(site)).count, 0);
  });

  t('should refuse to import into a log that does not end where the import starts', async ({ site }) => {
    assert.is((await put(site, { eventType: 'first', body: 1 })).status, 200);
    const { dir } = original();
    const r = site.cli(['import-apie', dir]);
    assert.is(r.status, 1);
    assert.match(r.stderr, new RegExp(`starts after ${H0}`));
    assert.is((await logHead(site)).count, 1);
  });

  t('should name the first damaged event in verify and restore file modes', async ({ site }) => {
    for (let i = 0; i < 4; i++) assert.is((await put(site, { eventType: 'e', body: `value-${i}` })).status, 200);
    const log = join(site.dataDir, 'events', 'log');
    chmodSync(log, 0o666);
    const ok = site.cli(['verify']);
    assert.is(ok.status, 0, ok.stderr);
    assert.is(statSync(log).mode & 0o777, 0o640);
    writeFileSync(log, readFileSync(log, 'utf8').replace('value-2', 'value-X'));
    const bad = site.cli(['verify']);
    assert.is(bad.status, 1);
    assert.match(bad.stderr, /event 3: /);
    const http = await site.request('POST', '/events/verify', { auth: ALICE });
    assert.is(http.status, 500);
    assert.match(http.json().errorMessage, /event 3: /);
    assert.not.match(http.text, /\/tmp\//);
  });
  t.run();
}
