// The lookup table of a big log, under CGI: a log of APIE_BENCH_INDEX_EVENTS
// events (10,000,000 by default, ~2.5 GB; made by scripts/genlog.ts and
// deleted after) against one of 1,000: point read, catch-up of 100, append;
// the peak memory of an append, of an append that doubles the table's
// directory, and of a repair of the whole table; index bytes per event; and
// the slowest of APIE_BENCH_INDEX_APPENDS (20,000) sequential appends to a
// new log, whose table grows through splits and doublings, against their median.
import { rmSync, statSync, openSync, readSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { idKey } from '../../src/eventindex.ts';
import { eventsDir } from '../../src/streams.ts';
import { cgiPeak, generate } from '../../test/lib/bigindex.ts';
import { EXE, bearerAuth, cgiEnv, dataDir, median, medians, type Row } from './lib.ts';
import { hashAt } from './events.ts';

const BIG = Number(process.env.APIE_BENCH_INDEX_EVENTS ?? 10_000_000);
const APPENDS = Number(process.env.APIE_BENCH_INDEX_APPENDS ?? 20_000);
const BUDGET = 96;
const fmtN = (n: number) => n.toLocaleString('en-US');

function tableBytes(dir: string): number {
  return statSync(join(eventsDir(dir), 'table')).blocks * 512;
}

function tableDepth(dir: string): number {
  const fd = openSync(join(eventsDir(dir), 'table'), 'r');
  const b = Buffer.alloc(4);
  readSync(fd, b, 0, 4, 8);
  closeSync(fd);
  return b.readUInt32LE(0);
}

// 520 events whose eventIds share one bucket (more than a bucket holds): the append must split it, and the first split of a table built whole doubles its directory.
function crowdedBatch(depth: number): string {
  const mask = 2 ** depth - 1;
  const events = [];
  for (let i = 0; events.length < 520; i++) {
    const id = `${i.toString(16).padStart(8, '0')}-1111-4111-8111-111111111111`;
    if ((idKey(id).readUInt32LE(0) & mask) === 0) events.push({ eventId: id, eventType: 'crowded', body: i });
  }
  return JSON.stringify(events);
}

async function peak(dir: string, auth: string, body: string, path = '/events'): Promise<{ mib: number; ms: number }> {
  const method = body.startsWith('[') ? 'POST' : 'PUT';
  const start = process.hrtime.bigint();
  const env = { ...cgiEnv(dir, method, path, { Authorization: auth, 'Content-Type': 'application/json' }), CONTENT_LENGTH: String(Buffer.byteLength(body)) };
  const r = await cgiPeak(env, body);
  if (r.reply?.status !== 200) throw new Error(`append failed: ${r.reply?.text ?? r.stderr}`);
  return { mib: r.peakMiB, ms: Number(process.hrtime.bigint() - start) / 1e6 };
}

export async function run(): Promise<Row[]> {
  const small = dataDir({}, undefined, 4);
  const big = dataDir({}, undefined, 4);
  const fresh = dataDir({}, undefined, 4);
  try {
    generate(small, 1_000);
    let start = Date.now();
    generate(big, BIG);
    process.stderr.write(`bench: index: ${fmtN(BIG)} events generated in ${((Date.now() - start) / 1000).toFixed(0)} s\n`);
    const [aSmall, aBig, aFresh] = [small, big, fresh].map((dir) => bearerAuth(dir));
    const one = JSON.stringify({ eventType: 'bench', body: { title: 'milk' } });
    const body = join(fresh, '..', 'event.json');
    writeFileSync(body, one);
    const put = (dir: string, auth: string) => ({ ...cgiEnv(dir, 'PUT', '/events', { Authorization: auth, 'Content-Type': 'application/json' }), CONTENT_LENGTH: String(one.length) });
    const m = medians([
      { name: 'read-small', command: EXE, env: cgiEnv(small, 'GET', `/events/${hashAt(small, 337)}`, { Authorization: aSmall }), expect: 200 },
      { name: 'read-big', command: EXE, env: cgiEnv(big, 'GET', `/events/${hashAt(big, BIG - 31_337)}`, { Authorization: aBig }), expect: 200 },
      { name: 'after-small', command: EXE, env: cgiEnv(small, 'GET', `/events?after=${hashAt(small, 900)}&limit=100`, { Authorization: aSmall }), expect: 200 },
      { name: 'after-big', command: EXE, env: cgiEnv(big, 'GET', `/events?after=${hashAt(big, BIG - 100)}&limit=100`, { Authorization: aBig }), expect: 200 },
      { name: 'put-small', command: `sh -c "${EXE} < ${body}"`, env: put(small, aSmall), expect: 200 },
      { name: 'put-big', command: `sh -c "${EXE} < ${body}"`, env: put(big, aBig), expect: 200 },
    ], 60, 5, 6);
    const bytesBuilt = tableBytes(big) / BIG;
    const plain = await peak(big, aBig, one);
    const growth = await peak(big, aBig, crowdedBatch(tableDepth(big)));
    rmSync(join(eventsDir(big), 'table'));
    const repair = await peak(big, aBig, one);
    // Sequential appends to a new log: its table grows from one bucket through splits and directory doublings.
    // Which of them grew the table (a split, a chain page or a doubling) is
    // told by its size, so that a growth step's own cost is told apart from
    // the machine's hiccups, which the slowest of all also catches.
    const times: number[] = [];
    const growing: number[] = [];
    let worstMiB = 0;
    const tableSize = () => {
      try {
        return statSync(join(eventsDir(fresh), 'table')).size;
      } catch {
        return 0;
      }
    };
    start = Date.now();
    for (let i = 0; i < APPENDS; i++) {
      const before = tableSize();
      const p = await peak(fresh, aFresh, one);
      times.push(p.ms);
      if (i > 0 && tableSize() > before) growing.push(p.ms);
      worstMiB = Math.max(worstMiB, p.mib);
    }
    const sorted = [...times].sort((a, b) => a - b);
    const p999 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.999))];
    process.stderr.write(`bench: index: ${fmtN(APPENDS)} sequential appends in ${((Date.now() - start) / 1000).toFixed(0)} s, table depth ${tableDepth(fresh)}\n`);
    const grown = tableBytes(fresh) / (APPENDS);
    const budget = { what: 'budget', value: BUDGET };
    const N = fmtN(BIG);
    return [
      { section: 'index', what: `CGI \`GET /events/H\`, ${N}-event log`, value: m.get('read-big')!, unit: 'ms', baseline: { what: 'same on 1,000 events', value: m.get('read-small')! }, goal: 1.2 },
      { section: 'index', what: `CGI \`GET /events?after=H&limit=100\`, ${N}-event log`, value: m.get('after-big')!, unit: 'ms', baseline: { what: 'same on 1,000 events', value: m.get('after-small')! }, goal: 1.2 },
      { section: 'index', what: `CGI \`PUT /events\`, ${N}-event log`, value: m.get('put-big')!, unit: 'ms', baseline: { what: 'same on 1,000 events', value: m.get('put-small')! }, goal: 1.2 },
      { section: 'index', what: `peak memory of a CGI append, ${N}-event log`, value: plain.mib, unit: 'MiB', baseline: budget, goal: 1 },
      { section: 'index', what: `peak memory of a CGI append of 520 events into one bucket (a split and a directory doubling), ${N}-event log (${plain.ms.toFixed(0)} → ${growth.ms.toFixed(0)} ms)`, value: growth.mib, unit: 'MiB', baseline: budget, goal: 1 },
      { section: 'index', what: `peak memory of a CGI append that rebuilds the lost table, ${N}-event log (took ${(repair.ms / 1000).toFixed(1)} s)`, value: repair.mib, unit: 'MiB', baseline: budget, goal: 1 },
      { section: 'index', what: `slowest of the ${fmtN(growing.length)} appends that grew the table (a split or a doubling), among ${fmtN(APPENDS)} sequential CGI appends to a new log`, value: Math.max(...growing), unit: 'ms', baseline: { what: 'median of all', value: median(times) }, goal: 3 },
      { section: 'index', what: `slowest of all ${fmtN(APPENDS)} (growth or the machine; their 99.9th percentile: ${p999.toFixed(0)} ms)`, value: Math.max(...times), unit: 'ms', baseline: { what: 'median of all', value: median(times) } },
      { section: 'index', what: `peak memory of any of those appends`, value: worstMiB, unit: 'MiB', baseline: budget, goal: 1 },
      { section: 'index', what: `table bytes per event: ${N}-event log, table built whole`, value: bytesBuilt, unit: 'B/event', baseline: { what: 'limit', value: 64 }, goal: 1 },
      { section: 'index', what: `table bytes per event: ${fmtN(APPENDS)} events, table grown by appends`, value: grown, unit: 'B/event', baseline: { what: 'limit', value: 64 }, goal: 1 },
    ];
  } finally {
    for (const dir of [small, big, fresh]) rmSync(join(dir, '..'), { recursive: true, force: true });
  }
}
