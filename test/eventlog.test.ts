// Unit tests of the event log storage: lookups through the on-disk table as it
// grows, batch semantics, and every state a crash or a damaged file can leave.
import { appendFileSync, chmodSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaults } from '../src/config.ts';
import { ApieError } from '../src/errors.ts';
import { appendEvents, appendRaw, count, head, LogReader, verifyLog, waitForMore, type AppendRequest, type AppendResult } from '../src/eventlog.ts';
import { tempDir } from './lib/harness.ts';
import { H0, sha } from './lib/events.ts';

const config = defaults;
let n = 0;
const uuid = () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
const newEvent = (body: unknown) => ({ eventId: uuid(), eventType: 'test', body, createdBy: 'unit', createdAt: '2026-01-01T00:00:00.000Z' });
const request = (body: unknown, extra: Partial<AppendRequest> = {}): AppendRequest => ({ events: [newEvent(body)], ...extra });

// What became of each request of a batch: stored, or the code of its refusal.
const outcomes = (results: (AppendResult | ApieError)[]) => results.map((r) => (r instanceof ApieError ? r.code : r.outcome));

function all(dir: string) {
  const r = new LogReader(dir);
  try {
    return r.readRange(1, r.count);
  } finally {
    r.close();
  }
}

// Each test gets a fresh log directory (a stream's, made by the first append), removed afterwards.
const t = suite<{ dir: string; parent: string }>('eventlog');
t.before.each((ctx) => {
  ctx.parent = tempDir();
  ctx.dir = join(ctx.parent, 'data', 'events');
});
t.after.each((ctx) => {
  rmSync(ctx.parent, { recursive: true, force: true });
});
const file = (dir: string, name: string) => join(dir, name);

t('should find every event by hash and eventId while the table grows past its first size', async ({ dir }) => {
  const requests = Array.from({ length: 700 }, (_, i) => request({ i }));
  for (let i = 0; i < requests.length; i += 50) await appendEvents(dir, config, requests.slice(i, i + 50));
  const tableSize = statSync(file(dir, 'table')).size;
  assert.ok(tableSize > 32 + 1024 * 16, 'the table was rebuilt bigger');
  const events = all(dir);
  assert.is(events.length, 700);
  let prev = H0;
  for (const e of events) {
    assert.is(e.hash, sha(prev, e.json));
    prev = e.hash;
  }
  const r = new LogReader(dir);
  for (const [i, e] of events.entries()) {
    assert.is(r.seqOfHash(e.hash), i + 1);
    assert.is(r.seqOfEventId(requests[i].events[0].eventId), i + 1);
  }
  assert.is(r.seqOfHash('ab'.repeat(32)), undefined);
  assert.is(r.seqOfEventId(uuid()), undefined);
  r.close();
  assert.equal(head(dir), { count: 700, hash: prev });
});

t('should decide a batch in order: If-Match sees earlier appends, a repeated eventId is a retry', async ({ dir }) => {
  const first = request(1, { ifMatch: [H0] });
  const results = await appendEvents(dir, config, [
    first,
    request(2, { ifMatch: [H0] }), // stale: the first one moved the head
    { events: [{ ...first.events[0] }] }, // the same event again: a retry
    { events: [{ ...first.events[0], body: 'other' }] }, // same id, other content
    request(3, { ifMatch: ['*'] }),
  ]);
  assert.equal(outcomes(results), ['appended', 'precondition-failed', 'existing', 'conflict', 'appended']);
  assert.is((results[1] as ApieError).data.lastHash, (results[0] as AppendResult).events[0].hash);
  const [a, , again] = results as any[];
  assert.is(again.events[0].hash, a.events[0].hash);
  assert.is(count(dir), 2);
  const later = await appendEvents(dir, config, [{ events: [{ ...first.events[0], createdAt: 'later' }] }]);
  assert.equal(outcomes(later), ['existing']);
  assert.is(count(dir), 2);
});

t('should append a batch all or none: If-Match once, a whole retry found again, a partial one refused', async ({ dir }) => {
  const batch: AppendRequest = { events: [newEvent('a'), newEvent('b'), newEvent('c')], ifMatch: [H0] };
  const [first] = await appendEvents(dir, config, [batch]);
  assert.equal(outcomes([first]), ['appended']);
  const stored = (first as AppendResult).events;
  assert.equal(stored.map((e) => e.seq), [1, 2, 3]);
  assert.equal(all(dir).map((e) => e.hash), stored.map((e) => e.hash));
  const results = await appendEvents(dir, config, [
    { events: batch.events, ifMatch: [H0] }, // the same batch again, If-Match stale: a retry
    { events: [batch.events[0], newEvent('d')] }, // only some stored
    { events: [batch.events[0], { ...batch.events[1], body: 'B' }, batch.events[2]] }, // one with other content
    { events: [newEvent('e'), newEvent('f')], ifMatch: [stored[1].hash] }, // stale head
  ]);
  assert.equal(outcomes(results), ['existing', 'conflict', 'conflict', 'precondition-failed']);
  assert.equal((results[0] as AppendResult).events.map((e) => e.hash), stored.map((e) => e.hash));
  const twice = newEvent('twice');
  assert.equal(outcomes(await appendEvents(dir, config, [{ events: [twice, { ...twice }] }])), ['bad-request']);
  assert.is(count(dir), 3);
});

t('should show none of a commit whose offsets entries were cut short, and commit all of it on the next append', async ({ dir }) => {
  await appendEvents(dir, config, [request(1)]);
  await appendEvents(dir, config, [{ events: [2, 3, 4, 5, 6].map(newEvent) }]);
  // A kill inside the one write of the batch's entries: two whole entries and part of a third.
  truncateSync(file(dir, 'offsets'), 24 * 3 + 10);
  assert.is(count(dir), 1);
  assert.is(all(dir).length, 1);
  assert.is(head(dir).count, 1);
  // Its records were synced before any entry was written: the next writer commits them all.
  await appendEvents(dir, config, [request(7)]);
  assert.equal(all(dir).map((e) => JSON.parse(e.json.toString()).body), [1, 2, 3, 4, 5, 6, 7]);
  assert.is((await verifyLog(dir, config)).count, 7);
});

t('should drop whole records past the count when the commit never reached the table', async ({ dir }) => {
  await appendEvents(dir, config, [request(1)]);
  // Records of a batch written (even completely) but not yet synced and indexed when the writer died.
  let prev = head(dir).hash;
  for (const n of [2, 3]) {
    const json = JSON.stringify({ eventId: uuid(), eventType: 'test', body: n });
    const hash = sha(prev, json);
    appendFileSync(file(dir, 'log'), `${hash} ${Buffer.byteLength(json)}\n${json}\n`);
    prev = hash;
  }
  assert.is(count(dir), 1);
  await appendEvents(dir, config, [request(4)]);
  assert.equal(all(dir).map((e) => JSON.parse(e.json.toString()).body), [1, 4]);
  assert.is((await verifyLog(dir, config)).count, 2);
});

t('should ignore and then cut off a record cut short by a crash', async ({ dir }) => {
  await appendEvents(dir, config, [request(1), request(2)]);
  const before = all(dir);
  appendFileSync(file(dir, 'log'), `${'ab'.repeat(32)} 500\n{"half":`);
  assert.equal(all(dir), before); // readers never look past the committed count
  assert.equal(outcomes(await appendEvents(dir, config, [request(3)])), ['appended']);
  assert.is(count(dir), 3);
  assert.equal((await verifyLog(dir, config)).count, 3);
});

t('should commit a complete record whose offsets entry was never written', async ({ dir }) => {
  const lost = request('lost');
  await appendEvents(dir, config, [request(1)]);
  await appendEvents(dir, config, [lost]);
  // A crash after the log and the table were synced, before the commit point.
  truncateSync(file(dir, 'offsets'), 24);
  assert.is(count(dir), 1);
  await appendEvents(dir, config, [request(3)]);
  const events = all(dir);
  assert.is(events.length, 3);
  assert.is(JSON.parse(events[1].json.toString()).eventId, lost.events[0].eventId);
  // Its client saw no answer: the retry finds it.
  assert.equal(outcomes(await appendEvents(dir, config, [lost])), ['existing']);
  assert.is((await verifyLog(dir, config)).count, 3);
});

t('should drop a torn offsets entry, partial or zero-filled by a power loss', async ({ dir }) => {
  await appendEvents(dir, config, [request(1), request(2)]);
  // Part of the entry of event 3, whose record reached the log.
  await appendEvents(dir, config, [request(3)]);
  const entry = readFileSync(file(dir, 'offsets')).subarray(48);
  truncateSync(file(dir, 'offsets'), 48);
  appendFileSync(file(dir, 'offsets'), entry.subarray(0, 10));
  assert.is(count(dir), 2);
  await appendEvents(dir, config, [request(4)]);
  assert.is(count(dir), 4);
  // The whole entry of event 4 zero-filled: readers refuse it instead of serving another event.
  truncateSync(file(dir, 'offsets'), 72);
  appendFileSync(file(dir, 'offsets'), Buffer.alloc(24));
  const reader = new LogReader(dir);
  assert.throws(() => reader.read(4), (e: unknown) => e instanceof ApieError && e.code === 'damaged');
  reader.close();
  await appendEvents(dir, config, [request(5)]);
  assert.equal(all(dir).map((e) => JSON.parse(e.json.toString()).body), [1, 2, 3, 4, 5]);
  assert.is((await verifyLog(dir, config)).count, 5);
});

t('should answer lookups without the table, and rebuild a missing or garbled one', async ({ dir }) => {
  const requests = [request(1), request(2), request(3)];
  await appendEvents(dir, config, requests);
  const events = all(dir);
  for (const damage of [() => rmSync(file(dir, 'table')), () => writeFileSync(file(dir, 'table'), 'garbage')]) {
    damage();
    const r = new LogReader(dir);
    assert.is(r.seqOfHash(events[2].hash), 3);
    assert.is(r.seqOfEventId(requests[1].events[0].eventId), 2);
    r.close();
    assert.equal(outcomes(await appendEvents(dir, config, [requests[0]])), ['existing']); // found through the rebuilt table
  }
  assert.ok(statSync(file(dir, 'table')).size > 1024);
});

t('should name the first damaged event in verify', async ({ dir }) => {
  await appendEvents(dir, config, [request('one'), request('two'), request('three'), request('four')]);
  const log = readFileSync(file(dir, 'log'));
  const at = log.indexOf('"three"');
  log[at + 1] = 'T'.charCodeAt(0);
  writeFileSync(file(dir, 'log'), log);
  const err = await verifyLog(dir, config).catch((e) => e);
  assert.instance(err, ApieError);
  assert.is(err.code, 'damaged');
  assert.match(err.message, /at event 3: hash does not match/);
});

t('should refuse to append over a damaged last record rather than cut off a committed event', async ({ dir }) => {
  await appendEvents(dir, config, [request(1), request(2)]);
  const log = readFileSync(file(dir, 'log'));
  writeFileSync(file(dir, 'log'), log.subarray(0, log.length - 5));
  const err = await appendEvents(dir, config, [request(3)]).catch((e) => e);
  assert.instance(err, ApieError);
  assert.is(err.code, 'damaged');
  assert.match(err.message, /at event 2: /);
  assert.is(readFileSync(file(dir, 'log')).length, log.length - 5); // nothing cut, nothing added
});

t('should create files with the configured modes and restore them in verify', async ({ dir }) => {
  const modes = { ...config, fileMode: 0o600, dirMode: 0o700 };
  await appendEvents(dir, modes, [request(1)]);
  const mode = (p: string) => statSync(p).mode & 0o777;
  assert.is(mode(dir), 0o700);
  for (const name of ['log', 'offsets', 'table']) assert.is(mode(file(dir, name)), 0o600, name);
  chmodSync(file(dir, 'log'), 0o666);
  chmodSync(dir, 0o777);
  await verifyLog(dir, modes);
  assert.is(mode(file(dir, 'log')), 0o600);
  assert.is(mode(dir), 0o700);
});

t('should keep raw bytes verbatim and continue only the chain they start from', async ({ dir }) => {
  const jsons = ['{"eventId":"a","n":1}', '{\n  "eventId": "b",\n  "n": 2\n}'].map((s) => Buffer.from(s));
  const result = await appendRaw(dir, config, H0, jsons);
  assert.is(result.hash, sha(sha(H0, jsons[0]), jsons[1]));
  assert.equal(all(dir).map((e) => e.json.toString()), jsons.map((j) => j.toString()));
  await appendRaw(dir, config, H0, jsons).then(() => assert.unreachable(), (e) => assert.match(e.message, /ends at/));
  assert.is((await verifyLog(dir, config)).count, 2);
});

t('should wake a waiter when an event is appended, and time out otherwise', async ({ dir }) => {
  await appendEvents(dir, config, [request(1)]);
  assert.is(await waitForMore(dir, 1, 300), false);
  const waiting = waitForMore(dir, 1, 30_000);
  await appendEvents(dir, config, [request(2)]);
  assert.is(await waiting, true);
});

t.run();
