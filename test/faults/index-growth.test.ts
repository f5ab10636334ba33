// A CGI writer killed (SIGKILL) at random moments while the lookup table
// grows (batches that split buckets and double the directory) or while it is
// rebuilt whole after being lost: every retried batch is found by eventId
// (answered, never appended twice), every event stays findable by hash in the
// meantime, and afterwards `apie verify` finds each event in the table.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, EXE, cgiEnv, makeDataDir, runCgi, runCli, tempDir } from '../lib/harness.ts';
import { generate } from '../lib/bigindex.ts';
import { seeded } from '../lib/random.ts';

const JSON_TYPE = { 'Content-Type': 'application/json' };

// Runs one CGI request and kills it `ms` in (or lets it finish first): whether it was killed.
function killedAfter(env: Record<string, string>, body: string, ms: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const child = spawn(EXE, [], { env, stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin.on('error', () => {});
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve(signal === 'SIGKILL');
    });
    child.stdin.end(body);
  });
}

function uuid(random: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20)}`;
}

const t = suite('index growth: kills');

t('should find every event by eventId and hash after writers are killed while the table grows', async () => {
  const random = seeded('index growth: kills during growth');
  const parent = tempDir();
  try {
    const dataDir = makeDataDir(parent, { config: { bcryptCost: 4 } });
    const path = '/streams/grow/events';
    let batches = 0;
    let kills = 0;
    const started = Date.now();
    // Each batch is sent once with a kill at a random moment, then again until answered: a retry must find whatever was committed.
    for (let b = 0; b < 24; b++) {
      const body = JSON.stringify(Array.from({ length: 800 }, (_, i) => ({ eventId: uuid(random), eventType: 'grown', body: { b, i } })));
      const env = cgiEnv(dataDir, 'POST', path, { auth: ALICE, body, headers: JSON_TYPE });
      if (await killedAfter(env, body, Math.floor(random() * 250))) kills++;
      const r = await runCgi(env, body);
      assert.is(r.status, 200, r.text);
      batches++;
      const head = await runCgi(cgiEnv(dataDir, 'HEAD', path, { auth: ALICE }));
      assert.is(head.headers['x-apie-count'], String(batches * 800), `after batch ${b}`);
    }
    console.log(`  index growth: ${kills} of ${batches} writers killed during growth (${Date.now() - started} ms)`);
    const all = (await runCgi(cgiEnv(dataDir, 'GET', path, { auth: ALICE }))).json();
    for (let k = 0; k < 20; k++) {
      const e = all[Math.floor(random() * all.length)];
      const one = await runCgi(cgiEnv(dataDir, 'GET', `${path}/${e.hash}`, { auth: ALICE }));
      assert.equal(one.json(), e);
    }
    const v = runCli(['verify', '--stream', 'grow'], { env: { APIE_DATA: dataDir } });
    assert.is(v.status, 0, v.stderr);
    assert.match(v.stdout, `stream grow: ok, ${batches * 800} event(s)`);
    assert.not.match(v.stdout, 'rebuilt');
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

t('should find every event while a lost table is rebuilt by writers killed at random moments, and finish the rebuild', async () => {
  const random = seeded('index growth: kills during repair');
  const parent = tempDir();
  try {
    const dataDir = makeDataDir(parent, { config: { bcryptCost: 4 } });
    const n = 150_000;
    generate(dataDir, n, { noTable: true });
    const table = join(dataDir, 'events', 'table');
    const all = (await runCgi(cgiEnv(dataDir, 'GET', '/events?limit=1000', { auth: ALICE }))).json();
    // How long a writer that rebuilds the whole table takes here: the kills fall within it.
    const timed = JSON.stringify({ eventType: 'timed', body: 0 });
    const start = Date.now();
    assert.is((await runCgi(cgiEnv(dataDir, 'PUT', '/events', { auth: ALICE, body: timed, headers: JSON_TYPE }), timed)).status, 200);
    const whole = Date.now() - start;
    let appended = 1;
    let kills = 0;
    for (let k = 0; k < 12; k++) {
      // The lost table again (a finished rebuild is removed, a killed one's build file kept): the next writer starts over or resumes.
      rmSync(table, { force: true });
      const eventId = uuid(random);
      const body = JSON.stringify({ eventId, eventType: 'after', body: k });
      const env = cgiEnv(dataDir, 'PUT', '/events', { auth: ALICE, body, headers: JSON_TYPE });
      if (await killedAfter(env, body, Math.floor(random() * whole))) kills++;
      // Meanwhile (no table, or a build left half done): found by hash all the same.
      const e = all[Math.floor(random() * all.length)];
      const one = await runCgi(cgiEnv(dataDir, 'GET', `/events/${e.hash}`, { auth: ALICE }));
      assert.equal(one.json(), e);
      const r = await runCgi(env, body);
      assert.is(r.status, 200, r.text);
      appended++;
      const head = await runCgi(cgiEnv(dataDir, 'HEAD', '/events', { auth: ALICE }));
      assert.is(head.headers['x-apie-count'], String(n + appended), `after writer ${k}`);
    }
    console.log(`  index growth: ${kills} of ${appended} writers killed while rebuilding the table of ${n} events (${whole} ms each)`);
    const v = runCli(['verify'], { env: { APIE_DATA: dataDir } });
    assert.is(v.status, 0, v.stderr);
    assert.match(v.stdout, `events: ok, ${n + appended} event(s)`);
    assert.not.match(v.stdout, 'rebuilt');
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

t.run();
