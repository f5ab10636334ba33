// The event stream under CGI: catching up (100 events after a known hash) on a
// 1,000- and a 100,000-event log, one event by hash against bare start-up, the
// latency of an append, and reading 100,000 events in one GET.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { defaults } from '../../src/config.ts';
import { appendEvents, LogReader } from '../../src/eventlog.ts';
import { eventsDir } from '../../src/streams.ts';
import { EXE, NODE, bearerAuth, cgiEnv, dataDir, medians, type Row } from './lib.ts';

// Builds a log of n events through the storage module, in big batches.
export async function logOf(n: number): Promise<string> {
  const dir = dataDir({}, undefined, 4);
  for (let i = 0; i < n; i += 5000) {
    const batch = Array.from({ length: Math.min(5000, n - i) }, (_, j) => ({
      events: [{ eventId: randomUUID(), eventType: 'todo-added', body: { title: `item ${i + j}`, done: false, tags: ['bench'] }, createdBy: 'bench@example.com', createdAt: new Date().toISOString() }],
    }));
    await appendEvents(eventsDir(dir), defaults, batch);
  }
  return dir;
}

export function hashAt(dir: string, seq: number): string {
  const reader = new LogReader(eventsDir(dir));
  try {
    return reader.read(seq).hash;
  } finally {
    reader.close();
  }
}

export async function run(): Promise<Row[]> {
  const small = await logOf(1_000);
  const big = await logOf(100_000);
  const fresh = dataDir({}, undefined, 4);
  // Bearer tokens, as a client that cares about speed would use (no bcrypt per
  // request); each data directory has its own token secret.
  const [authSmall, auth, authFresh] = [small, big, fresh].map((dir) => ({ Authorization: bearerAuth(dir) }));
  const body = join(fresh, '..', 'event.json');
  writeFileSync(body, JSON.stringify({ eventType: 'todo-added', body: { title: 'milk' } }));
  const put = cgiEnv(fresh, 'PUT', '/events', authFresh);
  put.CONTENT_LENGTH = String(JSON.stringify({ eventType: 'todo-added', body: { title: 'milk' } }).length);
  const hBig = hashAt(big, 100_000 - 100);
  const m = medians([
    { name: 'node', command: `${NODE} -e 0` },
    { name: 'root', command: EXE, env: cgiEnv(big, 'GET', '/', auth), expect: 200 },
    { name: 'small', command: EXE, env: cgiEnv(small, 'GET', `/events?after=${hashAt(small, 900)}&limit=100`, authSmall), expect: 200 },
    { name: 'big', command: EXE, env: cgiEnv(big, 'GET', `/events?after=${hBig}&limit=100`, auth), expect: 200 },
    { name: 'one', command: EXE, env: cgiEnv(big, 'GET', `/events/${hashAt(big, 31_337)}`, auth), expect: 200 },
    { name: 'put', command: `sh -c "${EXE} < ${body}"`, env: put, expect: 200 },
  ], 100, 5, 10);
  const all = medians([{ name: 'all', command: EXE, env: cgiEnv(big, 'GET', '/events', auth), expect: 200 }], 5, 1).get('all')!;
  const node = m.get('node')!;
  for (const dir of [small, big, fresh]) rmSync(join(dir, '..'), { recursive: true, force: true });
  return [
    { section: 'events', what: 'CGI `GET /events?after=H&limit=100`, 100,000-event log', value: m.get('big')!, unit: 'ms', baseline: { what: 'same on 1,000 events', value: m.get('small')! }, goal: 1.1 },
    { section: 'events', what: `CGI \`GET /events/H\`, 100,000-event log (bearer token)`, value: m.get('one')!, unit: 'ms', baseline: { what: 'node -e 0', value: node }, goal: 1.2 },
    { section: 'events', what: 'the same, against an authenticated request that reads nothing', value: m.get('one')!, unit: 'ms', baseline: { what: `CGI \`GET /\` (bearer token)`, value: m.get('root')! } },
    { section: 'events', what: 'CGI `PUT /events` (append, 3 fdatasyncs)', value: m.get('put')!, unit: 'ms', baseline: { what: 'node -e 0', value: node } },
    { section: 'events', what: 'CGI `GET /events`, all 100,000 events in one answer', value: all, unit: 'ms' },
  ];
}
