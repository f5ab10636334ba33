// The sync algorithm under random interleavings: three clients append while
// offline and online, lose answers, get cut off mid-request and restart from
// their storage file, concurrently against one real `apie serve`. However it
// went, once all are back every client's projection is the server's log,
// every event appended is in it exactly once, each client's events keep the
// order they were made in, and the chain verifies.
//
// Only the server front end: the run makes a few thousand requests, and the
// algorithm does not depend on the front end (test/client.test.ts runs each
// call through CGI and Apache too). Seeded: APIE_TEST_SEED=N repeats a run.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { FRONT_ENDS } from './lib/harness.ts';
import { mulberry32 } from './lib/random.ts';
import { ALICE_AUTH, ALICE_LOGIN, BOB_LOGIN, eventually, faultyFetch, loadClient, openWithUrl, type Client, type UrlSite } from './lib/client.ts';

const SEED = Number(process.env.APIE_TEST_SEED ?? 20261127);
const STEPS = 80;
const CLIENTS = 3;


const ids = (list: string[], e: { eventId: string }) => [...list, e.eventId];

const t = suite<{ s: UrlSite; C: Client; dir: string }>('client sync: random interleavings');
const server = FRONT_ENDS.find((fe) => fe.name === 'server')!;

t.before(async (ctx) => {
  ctx.s = await openWithUrl(server);
  ctx.C = await loadClient(ctx.s.url);
  ctx.dir = ctx.s.site.dataDir;
});
t.after(async (ctx) => {
  await ctx.s.close();
});

t('should converge on one log without duplicates, whatever is lost or cut', async ({ s, C, dir }) => {
  console.log(`client sync: seed ${SEED} (APIE_TEST_SEED=${SEED} repeats this run)`);
  const logins = [ALICE_LOGIN, BOB_LOGIN, ALICE_LOGIN];
  const clients = Array.from({ length: CLIENTS }, (_, i) => {
    const net = faultyFetch();
    // Each client its own device: its own storage file, even for the same user.
    const file = join(dir, '..', `client-${i}.jsonl`);
    const c = {
      net,
      made: [] as string[],
      apie: undefined as any,
      view: undefined as any,
      faults: 0,
      start() {
        c.apie = new C.Apie({ url: s.url, ...logins[i], storage: C.fileStorage(file), fetch: net.fetch, onError: () => {} });
        c.view = c.apie.projection('default', ids, [] as string[]);
      },
      stop() {
        c.view.close();
        c.apie.close();
      },
    };
    c.start();
    return c;
  });

  // Each client runs its own random script; the three run at once.
  // The seed fixes each client's script; how the three interleave is up to the machine.
  const scripts = clients.map(async (c, i) => {
    const rnd = mulberry32(SEED + i);
    const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
    for (let step = 0; step < STEPS; step++) {
      const action = pick(['append', 'append', 'append', 'offline', 'online', 'lose', 'restart', 'sync', 'wait']);
      switch (action) {
        case 'append': {
          const n = 1 + Math.floor(rnd() * 3);
          const events = await c.apie.append('default', Array.from({ length: n }, (_, k) => ({ eventType: 'n', body: { client: i, step, k } })));
          c.made.push(...events.map((e: { eventId: string }) => e.eventId));
          break;
        }
        case 'offline':
          c.net.disconnect();
          c.faults++;
          break;
        case 'online':
          c.net.offline = false;
          break;
        case 'lose': {
          // Lost answers to appends, or to any request on the stream (reads, long polls).
          const appendsOnly = rnd() < 0.7;
          c.net.loseAnswers(1 + Math.floor(rnd() * 2), (method: string, url: string) => url.includes('/events') && (method === 'POST' || !appendsOnly));
          c.faults++;
          break;
        }
        case 'restart':
          c.stop();
          c.start();
          c.faults++;
          break;
        case 'sync':
          await c.apie.sync().catch(() => {});
          break;
        case 'wait':
          await new Promise((r) => setTimeout(r, rnd() * 50));
          break;
      }
      await new Promise((r) => setTimeout(r, rnd() * 10));
    }
  });
  await Promise.all(scripts);

  // Everyone back: nothing lost on the way any more.
  for (const c of clients) {
    c.net.offline = false;
    c.net.loseAnswers(0);
  }
  for (const c of clients) {
    await eventually(async () => {
      await c.apie.sync().catch(() => {});
      return (await c.apie.pending('default')).length === 0;
    }, 'every pending event to be acknowledged', 60_000);
  }
  const log = (await s.site.request('GET', '/events', { auth: ALICE_AUTH })).json() as { eventId: string; body: { client: number } }[];
  const logIds = log.map((e) => e.eventId);
  const made = clients.flatMap((c) => c.made);
  console.log(`client sync: ${made.length} events appended, ${clients.reduce((n, c) => n + c.faults, 0)} faults injected, ${log.length} stored`);
  assert.is(new Set(logIds).size, logIds.length, 'no eventId twice in the log');
  assert.equal([...logIds].sort(), [...made].sort(), 'every appended event stored, nothing else');
  for (const c of clients) {
    const mine = new Set(c.made);
    assert.equal(logIds.filter((id) => mine.has(id)), c.made, 'each client\'s events in the order it made them');
  }
  for (const [i, c] of clients.entries()) {
    await eventually(() => JSON.stringify(c.view.state) === JSON.stringify(logIds), `client ${i}'s projection to equal the log`, 60_000);
  }
  const verify = await s.site.request('POST', '/events/verify', { auth: ALICE_AUTH });
  assert.is(verify.status, 200, verify.text);
  assert.is(verify.json().count, log.length);
  for (const c of clients) c.stop();
});

t.run();
