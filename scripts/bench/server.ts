// `apie serve` under load from wrk on 127.0.0.1: one event by hash and a
// catch-up read on a 100,000-event log, against the same reads served by the
// CGI executable through a real Apache in the same run; and appends at 1, 16
// and 64 connections (with group commit, throughput rises with concurrency).
import { execFile } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FRONT_ENDS, giveToWebUser, startServe, stop, type Site } from '../../test/lib/harness.ts';
import { hashAt, logOf } from './events.ts';
import { EXE, basicAuth, cgiEnv, median, type Row } from './lib.ts';
import { stallRows } from './stalls.ts';

const SECONDS = 5;
const EVENTS = 100_000;
const PUT_SCRIPT = join(import.meta.dirname, 'wrk', 'put-event.lua');

export interface Load {
  rps: number;
  /** 99th percentile latency, ms. */
  p99: number;
  /** Mean latency, ms. */
  mean: number;
  /** Responses that were neither 2xx nor 3xx, plus socket errors (connect, read, write, timeout). */
  failures: string;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

// One wrk run of `seconds` at `connections`, read from its summary.
async function wrk(url: string, auth: string, connections: number, seconds: number, script?: string): Promise<Load> {
  // A long --timeout: a slow answer then counts in the percentiles instead of being dropped.
  const args = ['-c', String(connections), '-t', String(Math.min(connections, 2)), '-d', `${seconds}s`, '--timeout', '10s', '--latency', '-H', `Authorization: ${auth}`];
  if (script) args.push('-s', script);
  const { stdout } = await promisify(execFile)('wrk', [...args, url], { timeout: (seconds + 30) * 1000 });
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(stdout);
  const mean = /^\s+Latency\s+([\d.]+)(us|ms|s|m)/m.exec(stdout);
  if (!rps || !p99 || !mean) throw new Error(`unexpected wrk output:\n${stdout}`);
  const bad = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout)?.slice(1).map(Number) ?? [0, 0, 0, 0];
  const failures = [bad && `${bad} non-2xx`, socket.some((n) => n) && `socket errors ${socket.join('/')} (connect/read/write/timeout)`].filter(Boolean).join(', ');
  if (failures) process.stderr.write(`bench: ${url} at ${connections} connections: ${failures}\n`);
  return { rps: Number(rps[1]), p99: Number(p99[1]) * UNIT_MS[p99[2]], mean: Number(mean[1]) * UNIT_MS[mean[2]], failures };
}

/** Appends under load: wrk's script, and a body like the ones it sends, to check first. */
export interface Appends {
  script: string;
  body: string;
}

/** One event per request. */
export const PUT_EVENT: Appends = { script: PUT_SCRIPT, body: JSON.stringify({ eventType: 'todo-added', body: { title: 'check' } }) };

// A request that must succeed before it is measured: a load of 401s or 404s is fast and worthless.
async function check(url: string, auth: string, appends?: Appends): Promise<void> {
  const method = appends ? 'PUT' : 'GET';
  const res = await fetch(url, { method, headers: { Authorization: auth, 'Content-Type': 'application/json' }, body: appends?.body });
  if (res.status !== 200) throw new Error(`${method} ${url}: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

/** A checked request, a second of warm-up, then the measured run: reads, or appends as `appends` says. */
export async function load(url: string, auth: string, connections: number, appends?: Appends): Promise<Load> {
  await check(url, auth, appends);
  await wrk(url, auth, connections, 1, appends?.script);
  return wrk(url, auth, connections, SECONDS, appends?.script);
}

/** A bearer token from the server, so no bcrypt is measured. */
export async function token(base: string): Promise<string> {
  const res = await fetch(`${base}/auth/token`, { method: 'POST', headers: { Authorization: basicAuth() } });
  if (res.status !== 200) throw new Error(`POST /auth/token: ${res.status} ${await res.text()}`);
  return `Bearer ${((await res.json()) as { token: string }).token}`;
}

// A site under the harness's Apache holding a copy of the log (token secret
// included, so the same bearer token works), owned by the CGI's user.
async function apacheCopy(log: string): Promise<Site> {
  const apache = FRONT_ENDS.find((f) => f.name === 'apache');
  if (!apache) throw new Error('bench server: Apache 2.4 is needed for the CGI baseline (apt-get install apache2)');
  const site = await apache.open({ users: { 'bench@example.com': 'bench' } });
  cpSync(log, site.dataDir, { recursive: true, force: true });
  giveToWebUser(site.dataDir);
  return site;
}

/** What a measurement's label says of its failures (none: nothing). */
export const label = (l: Load) => (l.failures ? ` — ${l.failures}` : '');

interface Wake {
  /** Median ms from sending an append to the event reaching a waiting client. */
  sse: number;
  poll: number;
  /** The same for appends by another process (a CGI request). */
  sseFromCgi: number;
  /** Median round trip of the appends themselves. */
  append: number;
  cgiAppend: number;
}

// How soon waiting clients hear of an append: an event stream and a long poll
// are open while events are appended through the server and through CGI.
async function wakeLatency(base: string, auth: string, dataDir: string, rounds = 15): Promise<Wake> {
  const headers = { Authorization: auth, 'Content-Type': 'application/json' };
  const body = JSON.stringify({ eventType: 'wake', body: {} });
  const stream = await fetch(`${base}/events?after=${(await head(base, auth)).hash}`, { headers: { Authorization: auth, Accept: 'text/event-stream' } });
  const reader = stream.body!.getReader();
  const arrivals = new Map<string, number>();
  let text = '';
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      text += Buffer.from(value).toString();
      for (const m of text.matchAll(/^id: ([0-9a-f]{64})$/gm)) if (!arrivals.has(m[1])) arrivals.set(m[1], performance.now());
    }
  })().catch(() => {});
  const arrived = async (hash: string) => {
    while (!arrivals.has(hash)) await new Promise((r) => setTimeout(r, 1));
    return arrivals.get(hash)!;
  };
  const sse: number[] = [];
  const poll: number[] = [];
  const append: number[] = [];
  const fromCgi: number[] = [];
  const cgiAppend: number[] = [];
  const env = { ...cgiEnv(dataDir, 'PUT', '/events', { Authorization: auth }), CONTENT_LENGTH: String(body.length) };
  for (let i = 0; i < rounds; i++) {
    const last = (await head(base, auth)).hash;
    const polled = fetch(`${base}/events?after=${last}&wait=30`, { headers }).then(async (r) => { await r.arrayBuffer(); return performance.now(); });
    await new Promise((r) => setTimeout(r, 20));
    const sent = performance.now();
    const res = await fetch(`${base}/events`, { method: 'PUT', headers, body });
    const answered = performance.now();
    const { hash } = (await res.json()) as { hash: string };
    append.push(answered - sent);
    sse.push((await arrived(hash)) - sent);
    poll.push((await polled) - sent);
    // Another process appends: the server hears of it through the file system.
    const started = performance.now();
    const out = await new Promise<string>((resolve) => {
      const child = execFile(EXE, [], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'latin1' }, (_err, stdout) => resolve(stdout));
      child.stdin!.end(body);
    });
    const cgiHash = /"hash":"([0-9a-f]{64})"/.exec(out)?.[1];
    if (!cgiHash) throw new Error(`CGI append failed: ${out.slice(0, 200)}`);
    cgiAppend.push(performance.now() - started);
    fromCgi.push((await arrived(cgiHash)) - started);
  }
  await reader.cancel();
  return { sse: median(sse), poll: median(poll), append: median(append), sseFromCgi: median(fromCgi), cgiAppend: median(cgiAppend) };
}

async function head(base: string, auth: string): Promise<{ count: number; hash: string }> {
  const res = await fetch(`${base}/events`, { method: 'HEAD', headers: { Authorization: auth } });
  return { count: Number(res.headers.get('x-apie-count')), hash: res.headers.get('x-apie-hash')! };
}

export async function run(): Promise<Row[]> {
  const log = await logOf(EVENTS);
  const one = `/events/${hashAt(log, EVENTS / 2)}`;
  const after = `/events?after=${hashAt(log, EVENTS - 100)}&limit=100`;
  const workers = availableParallelism();
  let server: Awaited<ReturnType<typeof startServe>> | undefined;
  let site: Site | undefined;
  try {
    server = await startServe(log, ['--quiet']);
    const auth = await token(server.base);
    site = await apacheCopy(log);
    // Reads first, while both logs are the same 100,000 events.
    const sOne = await load(server.base + one, auth, 16);
    const aOne = await load(site.base + one, auth, 4);
    const sAfter = await load(server.base + after, auth, 16);
    const aAfter = await load(site.base + after, auth, 4);
    const put = new Map<number, Load>();
    for (const c of [1, 16, 64]) put.set(c, await load(`${server.base}/events`, auth, c, PUT_EVENT));
    await stop(server.child);
    server = undefined;
    // One process: no cluster, every append in one group-commit queue.
    server = await startServe(log, ['--quiet', '--workers', '1']);
    const oneOne = await load(server.base + one, auth, 16);
    const onePut = await load(`${server.base}/events`, auth, 64, PUT_EVENT);
    const wake = await wakeLatency(server.base, auth, log);
    await stop(server.child);
    server = undefined;
    const stalls = await stallRows(log, one);
    const [p1, p16, p64] = [put.get(1)!, put.get(16)!, put.get(64)!];
    const s = `server (${workers} workers)`;
    const cgi = 'CGI under Apache, 4 connections';
    return [
      { section: 'server', what: `${s} \`GET /events/H\`, 100,000-event log, 16 connections${label(sOne)}`, value: sOne.rps, unit: 'req/s', baseline: { what: `${cgi}${label(aOne)}`, value: aOne.rps }, goal: 20, atLeast: true },
      { section: 'server', what: `${s} \`GET /events?after=H&limit=100\`, 16 connections${label(sAfter)}`, value: sAfter.rps, unit: 'req/s', baseline: { what: `${cgi}${label(aAfter)}`, value: aAfter.rps }, goal: 20, atLeast: true },
      { section: 'server', what: `${s} \`PUT /events\`, 64 connections${label(p64)}`, value: p64.rps, unit: 'req/s', baseline: { what: `1 connection${label(p1)}`, value: p1.rps }, goal: 5, atLeast: true },
      { section: 'server', what: `${s} \`PUT /events\`, 16 connections${label(p16)}`, value: p16.rps, unit: 'req/s', baseline: { what: '1 connection', value: p1.rps } },
      { section: 'server', what: `${s} \`GET /events/H\` p99`, value: sOne.p99, unit: 'ms', baseline: { what: cgi, value: aOne.p99 } },
      { section: 'server', what: `${s} \`GET /events?after=H&limit=100\` p99`, value: sAfter.p99, unit: 'ms', baseline: { what: cgi, value: aAfter.p99 } },
      { section: 'server', what: `${s} \`PUT /events\` p99, 64 connections`, value: p64.p99, unit: 'ms', baseline: { what: '1 connection', value: p1.p99 } },
      { section: 'server', what: `${s} \`PUT /events\` p99, 16 connections`, value: p16.p99, unit: 'ms', baseline: { what: '1 connection', value: p1.p99 } },
      { section: 'server', what: `server (--workers 1) \`GET /events/H\`, 16 connections${label(oneOne)}`, value: oneOne.rps, unit: 'req/s', baseline: { what: `${workers} workers`, value: sOne.rps } },
      { section: 'server', what: `server (--workers 1) \`PUT /events\`, 64 connections${label(onePut)}`, value: onePut.rps, unit: 'req/s', baseline: { what: `${workers} workers`, value: p64.rps } },
      // Waiting clients hear of an append about when its writer does (goal: within 100 ms).
      { section: 'server', what: 'append → event on an open event stream (from sending the PUT)', value: wake.sse, unit: 'ms', baseline: { what: 'the PUT\'s own round trip', value: wake.append } },
      { section: 'server', what: 'append → answer to a waiting long poll (`wait=30`)', value: wake.poll, unit: 'ms', baseline: { what: 'the PUT\'s own round trip', value: wake.append } },
      { section: 'server', what: 'CGI append by another process → event on the stream (inotify)', value: wake.sseFromCgi, unit: 'ms', baseline: { what: 'the CGI process\'s run', value: wake.cgiAppend } },
      ...stalls,
    ];
  } finally {
    if (server) await stop(server.child);
    await site?.close();
    rmSync(join(log, '..'), { recursive: true, force: true });
  }
}
