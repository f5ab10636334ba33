// Streams, permissions and batches: in a data directory of 1,000 streams with
// access rules, a CGI point read on a 100,000-event stream (against bare
// start-up) and catching up on it (against a 1,000-event stream); a batch of
// 100 events per request against single events, on the server at 16
// connections (events/s) and under CGI (one request's time).
import { rmSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { defaults, parseConfig } from '../../src/config.ts';
import { appendEvents, LogReader } from '../../src/eventlog.ts';
import { streamDir } from '../../src/streams.ts';
import { startServe, stop } from '../../test/lib/harness.ts';
import { EXE, NODE, bearerAuth, cgiEnv, dataDir, medians, type Row } from './lib.ts';
import { label, load, PUT_EVENT, token, type Appends } from './server.ts';

const STREAMS = 1_000;
const BIG = 100_000;
const SMALL = 1_000;
const BATCH = 100;
const PUT_BATCH: Appends = {
  script: join(import.meta.dirname, 'wrk', 'put-batch.lua'),
  body: JSON.stringify(Array.from({ length: BATCH }, () => ({ eventType: 'todo-added', body: { title: 'check' } }))),
};

// Rules as a real configuration might have them; the bench user's streams match the last one.
const ACCESS = {
  admins: ['root@example.com'],
  groups: { team: ['bench@example.com', 'root@example.com'], family: ['root@example.com'] },
  access: [
    { stream: 'private-{user}', read: ['{user}'], write: ['{user}'] },
    { stream: 'family-*', read: ['@family'], write: ['@family'] },
    { stream: 'news', read: ['*'], write: ['@family'] },
    ...Array.from({ length: 16 }, (_, i) => ({ stream: `project-${i}-*`, read: ['@team'], write: ['@team'] })),
    { stream: 's-*', read: ['@team'], write: ['@team'] },
  ],
};

const newEvent = (i: number) => ({
  eventId: randomUUID(), eventType: 'todo-added', body: { title: `item ${i}`, done: false, tags: ['bench'] }, createdBy: 'bench@example.com', createdAt: new Date().toISOString(),
});

// n events in a stream, through the storage module, in big commits.
async function fill(dir: string, n: number): Promise<void> {
  for (let i = 0; i < n; i += 5000) {
    await appendEvents(dir, defaults, [{ events: Array.from({ length: Math.min(5000, n - i) }, (_, j) => newEvent(i + j)) }]);
  }
}

function hashAt(dir: string, seq: number): string {
  const reader = new LogReader(dir);
  try {
    return reader.read(seq).hash;
  } finally {
    reader.close();
  }
}

export async function run(): Promise<Row[]> {
  parseConfig(ACCESS); // the rules load
  const data = dataDir(ACCESS);
  try {
    process.stderr.write(`bench: streams: ${STREAMS} streams, one of ${BIG} events…\n`);
    await fill(streamDir(data, 's-big'), BIG);
    await fill(streamDir(data, 's-small'), SMALL);
    for (let i = 0; i < STREAMS - 2; i++) await fill(streamDir(data, `s-${String(i).padStart(4, '0')}`), 1);
    const auth = { Authorization: bearerAuth(data) };
    const big = streamDir(data, 's-big');
    const small = streamDir(data, 's-small');
    const single = JSON.stringify({ eventType: 'todo-added', body: { title: 'milk' } });
    writeFileSync(join(data, '..', 'event.json'), single);
    writeFileSync(join(data, '..', 'batch.json'), PUT_BATCH.body);
    const put = (file: string, body: string) => ({
      command: `sh -c "${EXE} < ${join(data, '..', file)}"`,
      env: { ...cgiEnv(data, 'PUT', '/streams/s-appends/events', auth), CONTENT_LENGTH: String(body.length) },
      expect: 200,
    });
    const m = medians([
      { name: 'node', command: `${NODE} -e 0` },
      { name: 'one', command: EXE, env: cgiEnv(data, 'GET', `/streams/s-big/events/${hashAt(big, 31_337)}`, auth), expect: 200 },
      { name: 'big', command: EXE, env: cgiEnv(data, 'GET', `/streams/s-big/events?after=${hashAt(big, BIG - 100)}&limit=100`, auth), expect: 200 },
      { name: 'small', command: EXE, env: cgiEnv(data, 'GET', `/streams/s-small/events?after=${hashAt(small, SMALL - 100)}&limit=100`, auth), expect: 200 },
      { name: 'put', ...put('event.json', single) },
      { name: 'batch', ...put('batch.json', PUT_BATCH.body) },
    ], 100, 5, 10);
    const server = await startServe(data, ['--quiet']);
    let singles;
    let batches;
    try {
      const bearer = await token(server.base);
      singles = await load(`${server.base}/streams/s-server/events`, bearer, 16, PUT_EVENT);
      batches = await load(`${server.base}/streams/s-server/events`, bearer, 16, PUT_BATCH);
    } finally {
      await stop(server.child);
    }
    const where = `${STREAMS} streams, access rules`;
    return [
      { section: 'streams', what: `CGI \`GET /streams/NAME/events/H\`, 100,000-event stream, ${where} (bearer token)`, value: m.get('one')!, unit: 'ms', baseline: { what: 'node -e 0', value: m.get('node')! }, goal: 1.2 },
      { section: 'streams', what: `CGI \`GET /streams/NAME/events?after=H&limit=100\`, 100,000-event stream, ${where}`, value: m.get('big')!, unit: 'ms', baseline: { what: 'same on a 1,000-event stream', value: m.get('small')! }, goal: 1.1 },
      { section: 'streams', what: `server, one batch of ${BATCH} events per \`PUT\`, 16 connections${label(batches)}`, value: batches.rps * BATCH, unit: 'events/s', baseline: { what: `one event per \`PUT\`${label(singles)}`, value: singles.rps }, goal: 10, atLeast: true },
      { section: 'streams', what: `CGI \`PUT\` of a batch of ${BATCH} events`, value: m.get('batch')!, unit: 'ms', baseline: { what: 'CGI `PUT` of one event', value: m.get('put')! }, goal: 1.3 },
    ];
  } finally {
    rmSync(join(data, '..'), { recursive: true, force: true });
  }
}
