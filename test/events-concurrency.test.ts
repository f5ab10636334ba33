// Many writers at once and writers killed mid-append: the log keeps exactly
// the accepted events in one chain that verifies, and loses no answered 200.
import * as assert from 'uvu/assert';
import { ALICE, FRONT_END, siteSuite, type Site } from './lib/harness.ts';
import { assertChain, cgiProcess, logHead, put } from './lib/events.ts';
import { seeded } from './lib/random.ts';

const WRITERS = 8;
const EACH = 50;

async function allEvents(site: Site): Promise<any[]> {
  const r = await site.request('GET', '/events', { auth: ALICE });
  assert.is(r.status, 200);
  return r.json();
}

async function verifies(site: Site): Promise<void> {
  const r = await site.request('POST', '/events/verify', { auth: ALICE });
  assert.is(r.status, 200, r.text);
  const cli = site.cli(['verify']);
  assert.is(cli.status, 0, cli.stderr);
}

{
  const t = siteSuite(FRONT_END.apache, 'events: concurrent writers via apache');

  t(`should keep all ${WRITERS}×${EACH} appends of concurrent writers in one chain`, async ({ site }) => {
    const answered: string[] = [];
    await Promise.all(Array.from({ length: WRITERS }, async (_, w) => {
      for (let i = 0; i < EACH; i++) {
        const r = await put(site, { eventType: 'concurrent', body: { w, i } });
        assert.is(r.status, 200, r.text);
        answered.push(r.json().hash);
      }
    }));
    const events = await allEvents(site);
    assert.is(events.length, WRITERS * EACH);
    assertChain(events);
    assert.equal(new Set(events.map((e) => e.hash)), new Set(answered));
    // Each writer's own events are in the order it sent them.
    for (let w = 0; w < WRITERS; w++) assert.equal(events.filter((e) => e.body.w === w).map((e) => e.body.i), [...Array(EACH).keys()]);
    await verifies(site);
  });

  t('should let exactly one of the writers racing on the same If-Match win each time', async ({ site }) => {
    const start = await logHead(site);
    const accepted: { hash: string; after: string }[] = [];
    let refused = 0;
    await Promise.all(Array.from({ length: WRITERS }, async (_, w) => {
      let known = (await logHead(site)).hash;
      for (let i = 0; i < EACH; i++) {
        const r = await put(site, { eventType: 'guarded', body: { w, i } }, { 'If-Match': `"${known}"` });
        if (r.status === 200) {
          accepted.push({ hash: r.json().hash, after: known });
          known = r.json().hash;
        } else {
          assert.is(r.status, 412, r.text);
          refused++;
          known = r.headers['x-apie-hash']; // a 412 tells the current last hash
          assert.ok(known);
        }
      }
    }));
    assert.ok(accepted.length >= EACH, `accepted ${accepted.length}`); // at least one writer always makes progress
    assert.is(accepted.length + refused, WRITERS * EACH);
    const events = (await allEvents(site)).slice(start.count);
    assert.is(events.length, accepted.length);
    assertChain(events, start.hash);
    // Every accepted event sits right after the hash its If-Match named.
    const prevOf = new Map(events.map((e, i) => [e.hash, i ? events[i - 1].hash : start.hash]));
    for (const a of accepted) assert.is(prevOf.get(a.hash), a.after);
    await verifies(site);
  });
  t.run();
}

const ROUNDS = 30;
// A dead writer's lock blocks others for 2 s only.
const t = siteSuite(FRONT_END.cgi, 'events: writers killed with SIGKILL', { config: { lockStaleSeconds: 2 } });
// When each kill lands: random, replayable from the seed it prints.
const random = seeded('events: writers killed with SIGKILL');

t(`should verify and keep every answered event after ${ROUNDS} rounds of kill -9`, async ({ site }) => {
  // How long an append takes here, so kills land before, inside and after it.
  const t0 = Date.now();
  for (let i = 0; i < 3; i++) assert.is((await put(site, { eventType: 'warm', body: i })).status, 200);
  const span = (Date.now() - t0) / 3;
  const answered = new Set<string>((await allEvents(site)).map((e) => e.hash));
  let killed = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const body = (w: number) => JSON.stringify({ eventType: 'crash', body: { round, w } });
    const runs = await Promise.all([0, 1, 2].map((w) => cgiProcess(site, 'PUT', '/events', body(w), {}, w === 2 ? undefined : span * (0.3 + random()))));
    for (const run of runs) {
      if (run.killed) killed++;
      else {
        assert.is(run.reply!.status, 200, run.reply!.text);
        answered.add(run.reply!.json().hash);
      }
    }
    // Readers never see a half-written event, whatever was killed.
    const events = await allEvents(site);
    assertChain(events);
    const present = new Set(events.map((e) => e.hash));
    for (const h of answered) assert.ok(present.has(h), `answered event ${h} is missing after round ${round}`);
  }
  assert.ok(killed > ROUNDS / 2, `only ${killed} processes were killed`);
  await verifies(site);
});
t.run();
