// Atomic batches: a JSON array of 1–1000 events appended all or none,
// contiguous and in order, through every front end; retries; malformed
// batches that write nothing; batches of many processes at once (CGI under
// Apache, and the server's group commit) that never interleave; and writers
// killed with SIGKILL mid-batch while a reader watches: only whole batches
// are ever seen.
import { spawn, spawnSync } from 'node:child_process';
import * as assert from 'uvu/assert';
import { ALICE, EXE, FRONT_END, EVENT_FRONT_ENDS, cgiEnv, parseCgiOutput, siteSuite, startServe, stop, type Site } from './lib/harness.ts';
import { assertChain, assertWholeBatches, batchOf, cgiProcess, H0, JSON_HEADERS, logHead, put, uuid } from './lib/events.ts';
import { reportFaults } from './lib/faults.ts';
import { seeded } from './lib/random.ts';

const PATH = '/streams/orders/events';

async function all(site: Site, path = PATH): Promise<any[]> {
  const r = await site.request('GET', path, { auth: ALICE });
  assert.is(r.status, 200, r.text);
  return r.json();
}

for (const fe of EVENT_FRONT_ENDS) {
  const t = siteSuite(fe, `batches via ${fe.name}`, { config: { maxEventBytes: 65536 } });

  t('should append a batch whole, in order, answering the stored events with the last hash as ETag', async ({ site }) => {
    for (const method of ['POST', 'PUT']) {
      const before = await logHead(site, PATH);
      const r = await site.request(method, PATH, { auth: ALICE, headers: { 'Content-Type': 'application/json', 'If-Match': `"${before.hash}"` }, body: JSON.stringify(batchOf(3, method)) });
      assert.is(r.status, 200, r.text);
      const stored = r.json();
      assert.is(stored.length, 3);
      assert.equal(stored.map((e: any) => e.body), batchOf(3, method).map((e) => e.body));
      assert.ok(stored.every((e: any) => e.createdBy === 'alice@example.com' && /^[0-9a-f-]{36}$/.test(e.eventId)));
      assert.is(r.headers.etag, `"${stored[2].hash}"`);
      assert.is(r.headers['x-apie-hash'], stored[2].hash);
      assertChain(stored, before.hash);
    }
    const events = await all(site);
    assert.is(events.length, 6);
    assertChain(events);
    // A batch of one, and the largest batch there is.
    assert.is((await put(site, batchOf(1, 'one'), {}, PATH)).json().length, 1);
    const big = await put(site, batchOf(1000, 'big'), {}, PATH);
    assert.is(big.status, 200, big.text);
    assert.is(big.json().length, 1000);
    assertWholeBatches(await all(site));
  });

  t('should check If-Match once, against the head before the batch', async ({ site }) => {
    const first = (await put(site, batchOf(2, 'first'), { 'If-Match': H0 }, PATH)).json();
    const stale = await put(site, batchOf(2, 'stale'), { 'If-Match': first[0].hash }, PATH);
    assert.is(stale.status, 412);
    assert.is(stale.headers['x-apie-hash'], first[1].hash);
    assert.is((await put(site, batchOf(2, 'stale'), { 'If-Match': H0 }, PATH)).status, 412);
    assert.equal(await logHead(site, PATH), { count: 2, hash: first[1].hash });
  });

  t('should answer a retried batch with the stored events, and one stored only in part with 409', async ({ site }) => {
    const batch = batchOf(4, 'paid', true);
    const first = await put(site, batch, { 'If-Match': H0 }, PATH);
    assert.is(first.status, 200, first.text);
    const head = await logHead(site, PATH);
    // The same batch again, its If-Match now stale, keys in another order: the stored events, nothing appended.
    const again = batch.map(({ eventId, body, eventType }) => ({ body, eventId: eventId!.toUpperCase(), eventType }));
    const retry = await put(site, again, { 'If-Match': H0 }, PATH);
    assert.is(retry.status, 200, retry.text);
    assert.equal(retry.json(), first.json());
    assert.is(retry.headers.etag, first.headers.etag);
    const cases: [string, unknown[]][] = [
      ['some stored, some new', [batch[0], batch[1], { eventType: 'line', body: 'new', eventId: uuid(99) }]],
      ['all stored, one with other content', [batch[0], { ...batch[1], body: 'changed' }, batch[2], batch[3]]],
      ['one stored, one without eventId', [batch[3], { eventType: 'line', body: 'fresh' }]],
    ];
    for (const [what, events] of cases) {
      const r = await put(site, events, {}, PATH);
      assert.is(r.status, 409, what);
      assert.is(r.json().status, 'error');
    }
    // A part of the batch alone is a retry of those events: they are all stored.
    assert.equal((await put(site, [batch[1], batch[2]], {}, PATH)).json(), first.json().slice(1, 3));
    assert.equal(await logHead(site, PATH), head);
  });

  t('should refuse a malformed batch with 400 or 413 naming the problem, and write nothing', async ({ site }) => {
    assert.is((await put(site, batchOf(2, 'before'), {}, PATH)).status, 200);
    const before = await logHead(site, PATH);
    const ok = { eventType: 'x', body: 1 };
    const cases: [string, unknown, number, RegExp][] = [
      ['empty', [], 400, /at least one/],
      ['numbers', [1, 2], 400, /event 1 .*object/],
      ['a null member', [ok, null], 400, /event 2 .*object/],
      ['a nested array', [[ok]], 400, /event 1 .*object/],
      ['one member without eventType', [ok, ok, ok, { body: 1 }, ok], 400, /event 4 .*eventType/],
      ['one member with an unknown field', [ok, { ...ok, hash: H0 }], 400, /event 2 .*hash/],
      ['one member with a bad eventId', [ok, { ...ok, eventId: 'nope' }], 400, /event 2 .*eventId/],
      ['an eventId twice', [{ ...ok, eventId: uuid(7) }, { ...ok, eventId: uuid(7).toUpperCase() }], 400, /twice/],
      ['over 1000 events', Array(1001).fill(ok), 400, /at most 1000/],
      // The whole request counts against maxEventBytes (65536 here), not each event.
      ['over maxEventBytes in all', Array(3).fill({ eventType: 'x', body: 'y'.repeat(30_000) }), 413, /limit/],
    ];
    for (const [what, body, status, message] of cases) {
      const r = await put(site, body, {}, PATH);
      assert.is(r.status, status, `${what}: ${r.text}`);
      assert.match(r.json().errorMessage, message, what);
    }
    assert.equal(await logHead(site, PATH), before);
  });

  t.run();
}

{
  const WRITERS = 6;
  const BATCHES = 8;
  const t = siteSuite(FRONT_END.apache, 'batches: concurrent writers via apache');

  t(`should keep the batches of ${WRITERS} concurrent writers whole, contiguous and all there`, async ({ site }) => {
    const answered: string[] = [];
    await Promise.all(Array.from({ length: WRITERS }, async (_, w) => {
      for (let b = 0; b < BATCHES; b++) {
        // Sizes differ, so batches of different writers overlap in time in every way.
        const r = await put(site, batchOf(5 + ((w * 7 + b * 3) % 40), { w, b }), {}, PATH);
        assert.is(r.status, 200, r.text);
        answered.push(...r.json().map((e: any) => e.hash));
      }
    }));
    const events = await all(site);
    assertChain(events);
    assertWholeBatches(events);
    assert.equal(new Set(events.map((e) => e.hash)), new Set(answered));
    const verify = await site.request('POST', `${PATH}/verify`, { auth: ALICE });
    assert.is(verify.status, 200, verify.text);
  });
  t.run();
}

{
  const t = siteSuite(FRONT_END.server, 'batches: the server\'s group commit');

  t('should commit concurrent batches and single events in groups without interleaving them', async ({ site }) => {
    const replies = await Promise.all(Array.from({ length: 64 }, (_, k) => (k % 4 === 3
      ? put(site, { eventType: 'line', body: { tag: `single-${k}`, i: 0, n: 1 } }, {}, PATH)
      : put(site, batchOf(1 + (k % 17), `batch-${k}`), {}, PATH))));
    assert.equal(replies.filter((r) => r.status !== 200).map((r) => r.text), []);
    const events = await all(site);
    assert.is(events.length, replies.reduce((n, r) => n + (Array.isArray(r.json()) ? r.json().length : 1), 0));
    assertChain(events);
    assertWholeBatches(events);
  });
  t.run();
}

{
  const ROUNDS = 20;
  const SIZE = 400;
  const name = 'batches: writers killed with SIGKILL';
  // A dead writer's lock blocks others for 2 s only.
  const t = siteSuite(FRONT_END.cgi, name, { config: { lockStaleSeconds: 2, maxEventBytes: 1 << 20 } });
  // When each kill lands: random, replayable from the seed it prints.
  const random = seeded(name);

  t(`should show only whole batches, to a reader watching throughout, over ${ROUNDS} rounds of kill -9`, async ({ site }) => {
    // A server on the same data directory is the reader: it reads as often as it can while writers die.
    const reader = await startServe(site.dataDir, ['--quiet', '--workers', '1']);
    const auth = { Authorization: `Basic ${Buffer.from(ALICE).toString('base64')}` };
    const seen = new Map<string, number>();
    let last = H0;
    let reads = 0;
    let reading = true;
    const watch = (async () => {
      while (reading) {
        const r = await fetch(`${reader.base}${PATH}?after=${last}`, { headers: auth });
        assert.is(r.status, 200);
        const events = (await r.json()) as any[];
        reads++;
        for (const e of events) seen.set(e.body.tag, (seen.get(e.body.tag) ?? 0) + 1);
        if (events.length) last = events.at(-1).hash;
        // Whatever was killed, a read ends on a batch boundary: no batch seen in part.
        for (const e of events) assert.is(seen.get(e.body.tag), e.body.n, `batch ${e.body.tag} seen in part`);
      }
    })();
    try {
      const t0 = Date.now();
      assert.is((await put(site, batchOf(SIZE, 'warm'), {}, PATH)).status, 200);
      // How long a batch takes here, so kills land before, inside and after it.
      const span = Date.now() - t0;
      const answered = new Set<string>(['warm']);
      let killed = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const runs = await Promise.all([0, 1, 2].map((w) => cgiProcess(site, 'POST', PATH, JSON.stringify(batchOf(SIZE, `${round}-${w}`)), {}, w === 2 ? undefined : span * (0.2 + 1.2 * random()))));
        runs.forEach((run, w) => {
          if (run.killed) return void killed++;
          assert.is(run.reply!.status, 200, run.reply!.text);
          answered.add(`${round}-${w}`);
        });
      }
      reading = false;
      await watch;
      const events = await all(site);
      assertChain(events);
      assertWholeBatches(events);
      const present = new Set(events.map((e) => e.body.tag));
      const lost = [...answered].filter((tag) => !present.has(tag));
      reportFaults(name, killed, lost.length);
      assert.equal(lost, [], 'answered batches are missing');
      assert.ok(killed > ROUNDS / 2, `only ${killed} processes were killed`);
      assert.ok(reads > ROUNDS, `the reader read only ${reads} times`);
      const verify = site.cli(['verify', '--stream', 'orders']);
      assert.is(verify.status, 0, verify.stderr);
    } finally {
      reading = false;
      await watch.catch(() => {});
      await stop(reader.child);
    }
  });
  t.run();
}

// strace can kill a process at the entry of its Nth call of a syscall: every
// point between two writes or syncs of an append, not just the ones a timer
// happens to hit. Without strace (or ptrace) these tests are skipped.
const HAS_STRACE = spawnSync('strace', ['-qq', '-o', '/dev/null', 'true']).status === 0;

/** One CGI request, killed by strace on entering its `n`th `syscall`; killed: whether that call came. */
function killedAt(site: Site, syscall: string, n: number, path: string, body: string): Promise<{ killed: boolean; status?: number }> {
  const env = cgiEnv(site.dataDir, 'POST', path, { auth: ALICE, headers: JSON_HEADERS, body });
  return new Promise((resolve, reject) => {
    const child = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-e', `trace=${syscall}`, '-e', `inject=${syscall}:signal=KILL:when=${n}`, EXE], { env, stdio: ['pipe', 'pipe', 'ignore'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stdin.on('error', () => {});
    child.on('error', reject);
    // strace ends as its tracee did: killed by the signal, or with its exit code.
    child.on('close', (code, signal) => resolve(signal === 'SIGKILL' || code === 137 ? { killed: true } : { killed: false, status: parseCgiOutput(Buffer.concat(out)).status }));
    child.stdin.end(body);
  });
}

{
  const name = 'batches: a writer killed at every write and sync';
  const t = siteSuite(HAS_STRACE ? FRONT_END.cgi : { ...FRONT_END.cgi, available: false }, name, { config: { lockStaleSeconds: 2 } });

  t('should leave whole batches only, whichever write or sync of an append it dies before', async ({ site }) => {
    let injected = 0;
    const answered = new Set<string>();
    // The first append makes the stream's directory and files; later ones repair what the last one left.
    for (const syscall of ['pwrite64', 'fdatasync', 'fsync', 'ftruncate', 'rename', 'mkdir']) {
      for (let n = 1; n < 100; n++) {
        const tag = `${syscall}-${n}`;
        const run = await killedAt(site, syscall, n, PATH, JSON.stringify(batchOf(7, tag)));
        if (!run.killed) {
          // Fewer calls than n: this append ran to its end.
          assert.is(run.status, 200, tag);
          answered.add(tag);
          break;
        }
        injected++;
        const events = await all(site);
        assertChain(events);
        assertWholeBatches(events);
      }
    }
    const events = await all(site);
    const present = new Set(events.map((e) => e.body.tag));
    const lost = [...answered].filter((tag) => !present.has(tag));
    reportFaults(name, injected, lost.length);
    assert.equal(lost, []);
    assert.ok(injected > 20, `only ${injected} kills`);
    const verify = site.cli(['verify', '--stream', 'orders']);
    assert.is(verify.status, 0, verify.stderr);
  });
  t.run();
}
