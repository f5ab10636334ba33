// The server's stalls (issue 12): how appends, a verify and Basic credentials
// weigh on everyone else's reads, appends against the server as it was before
// its fsyncs left the event loop (built from BEFORE in the same run), and
// reads against a bare node:http cluster of the same size.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startServe, stop } from '../../test/lib/harness.ts';
import { executableAt } from './baseline.ts';
import { basicAuth, NODE, type Row } from './lib.ts';
import { label, load, PUT_EVENT, token, type Load } from './server.ts';

/** The last commit before the server's request path went asynchronous. */
const BEFORE = '7ab5467';

// A bare node:http cluster answering a fixed 200-byte JSON body: Node's own ceiling here.
const BARE = `
const cluster = require('node:cluster');
const http = require('node:http');
const [port, workers] = process.argv.slice(1).map(Number);
const body = JSON.stringify({ pad: 'x'.repeat(190) });
if (cluster.isPrimary) {
  let up = 0;
  for (let i = 0; i < workers; i++) cluster.fork().on('listening', () => { if (++up === workers) console.log('listening'); });
  process.on('SIGTERM', () => { for (const w of Object.values(cluster.workers)) w.kill(); process.exit(0); });
} else {
  http.createServer((req, res) => res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length }).end(body)).listen(port, '127.0.0.1');
}`;

async function bare(port: number, workers: number): Promise<ChildProcess> {
  const child = spawn(NODE, ['-e', BARE, String(port), String(workers)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`bare node:http exited ${code}`)));
  });
  return child;
}

// Verifies the log over and over until stopped.
function verifying(base: string, auth: string): { stop(): Promise<number> } {
  let stopped = false;
  let runs = 0;
  const loop = (async () => {
    while (!stopped) {
      const res = await fetch(`${base}/events/verify`, { method: 'POST', headers: { Authorization: auth } });
      if (res.status !== 200) throw new Error(`POST /events/verify: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
      runs++;
    }
  })();
  return { stop: async () => { stopped = true; await loop; return runs; } };
}

// Each pair of measurements whose ratio is a goal is taken in turns, ROUNDS
// times, and the median of each side kept: the machine is shared, and a
// change in its load between two measurements taken once each moved a ratio
// by 2x between runs.
const ROUNDS = 3;

type Pick = 'rps' | 'p99';

async function inTurns(a: () => Promise<Load>, b: () => Promise<Load>, by: Pick): Promise<[Load, Load]> {
  const as: Load[] = [];
  const bs: Load[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    as.push(await a());
    bs.push(await b());
  }
  const mid = (ls: Load[]) => [...ls].sort((x, y) => x[by] - y[by])[Math.floor(ls.length / 2)];
  return [mid(as), mid(bs)];
}

/** The six ratios of issue 12 on `log` (100,000 events); `one` is the path of one event. */
export async function stallRows(log: string, one: string): Promise<Row[]> {
  const workers = availableParallelism();
  const s = `server (${workers} workers)`;
  // The server built from BEFORE gets a copy of the log, loaded in turns with
  // this one: it knows only the table's first format, so on a shared log it
  // would rebuild, under the lock both take, the table this one converted
  // (and this one convert it back), and both would measure that.
  const copy = mkdtempSync(join(tmpdir(), 'apie-bench-before-'));
  cpSync(log, copy, { recursive: true });
  const old = await startServe(copy, ['--quiet'], executableAt(BEFORE));
  let server: Awaited<ReturnType<typeof startServe>> | undefined;
  let node: ChildProcess | undefined;
  try {
    server = await startServe(log, ['--quiet']);
    const port = await freePort();
    node = await bare(port, workers);
    const { base } = server;
    const auth = await token(base);
    const url = base + one;
    const reads = () => load(url, auth, 16);
    const [put, before] = await inTurns(() => load(`${base}/events`, auth, 64, PUT_EVENT), () => load(`${old.base}/events`, auth, 64, PUT_EVENT), 'rps');
    const [readsWhileAppending, readsAlone] = await inTurns(async () => (await Promise.all([reads(), load(`${base}/events`, auth, 64, PUT_EVENT)]))[0], reads, 'rps');
    let verifies = 0;
    const [readsWhileVerifying, readsUnverified] = await inTurns(async () => {
      const verify = verifying(base, auth);
      try {
        return await reads();
      } finally {
        verifies += await verify.stop();
      }
    }, reads, 'p99');
    const [basic, bearer] = await inTurns(() => load(url, basicAuth(), 16), reads, 'rps');
    const [ours, ceiling] = await inTurns(reads, () => load(`http://127.0.0.1:${port}/`, auth, 16), 'rps');
    const taken = `median of ${ROUNDS} in turns`;
    return [
      { section: 'server', what: `${s} \`PUT /events\` p99, 64 connections${label(put)}`, value: put.p99, unit: 'ms', baseline: { what: 'mean latency, same run', value: put.mean }, goal: 4 },
      { section: 'server', what: `${s} \`PUT /events\`, 64 connections, ${taken}`, value: put.rps, unit: 'req/s', baseline: { what: `the server at ${BEFORE}${label(before)}`, value: before.rps }, goal: 2, atLeast: true },
      { section: 'server', what: `${s} \`GET /events/H\`, 16 connections, while 64 connections append, ${taken}${label(readsWhileAppending)}`, value: readsWhileAppending.rps, unit: 'req/s', baseline: { what: `no appends${label(readsAlone)}`, value: readsAlone.rps }, goal: 0.5, atLeast: true },
      { section: 'server', what: `${s} \`GET /events/H\` p99 while the 100,000-event log is verified (${verifies} verifies), ${taken}${label(readsWhileVerifying)}`, value: readsWhileVerifying.p99, unit: 'ms', baseline: { what: 'no verify', value: readsUnverified.p99 }, goal: 3 },
      { section: 'server', what: `${s} \`GET /events/H\` with Basic credentials, ${taken}${label(basic)}`, value: basic.rps, unit: 'req/s', baseline: { what: 'a bearer token', value: bearer.rps }, goal: 0.8, atLeast: true },
      { section: 'server', what: `${s} \`GET /events/H\` with a bearer token, ${taken}`, value: ours.rps, unit: 'req/s', baseline: { what: `bare node:http, ${workers} workers, 200-byte JSON${label(ceiling)}`, value: ceiling.rps }, goal: 0.5, atLeast: true },
    ];
  } finally {
    node?.kill('SIGTERM');
    if (server) await stop(server.child);
    await stop(old.child);
    rmSync(copy, { recursive: true, force: true });
  }
}
