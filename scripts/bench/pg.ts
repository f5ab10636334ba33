// Several servers on one PostgreSQL against one server on the file store, in
// the same run, on the same 100,000-event log (moved with `apie migrate`):
// `GET /events/H` at 32 connections and appends at 64, split evenly over two
// servers as a load balancer would; and a CGI `GET /events/H` with each store,
// with what opening the database connection takes of it. All of it runs on
// this one machine: the two servers get half its cores each, and share them
// with PostgreSQL and wrk.
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { startServe, stop } from '../../test/lib/harness.ts';
import { POSTGRES_MISSING, startCluster } from '../../test/lib/postgres.ts';
import { hashAt, logOf } from './events.ts';
import { EXE, cgiEnv, median, medians, type Row } from './lib.ts';
import { label, load, PUT_EVENT, token, type Load } from './server.ts';

const EVENTS = 100_000;

// The same load over several servers at once (connections split evenly): the sum of their rates.
async function spread(bases: string[], path: string, auth: string, connections: number, appends?: typeof PUT_EVENT): Promise<Load> {
  const loads = await Promise.all(bases.map((b) => load(b + path, auth, connections / bases.length, appends)));
  const rps = loads.reduce((n, l) => n + l.rps, 0);
  // Each server's mean weighed by its share of the requests.
  const mean = loads.reduce((n, l) => n + l.mean * l.rps, 0) / (rps || 1);
  return { rps, p99: Math.max(...loads.map((l) => l.p99)), mean, failures: loads.map((l) => l.failures).filter(Boolean).join('; ') };
}

// Median ms of opening a connection to the database, in a warm process.
async function connectMs(url: string): Promise<number> {
  const pg = (await import('pg')).default;
  const times: number[] = [];
  for (let i = 0; i < 30; i++) {
    const client = new pg.Client({ connectionString: url });
    const t0 = performance.now();
    await client.connect();
    times.push(performance.now() - t0);
    await client.end();
  }
  return median(times);
}

export async function run(): Promise<Row[]> {
  if (POSTGRES_MISSING !== null) {
    process.stderr.write(`bench: pg skipped (${POSTGRES_MISSING})\n`);
    return [];
  }
  const cluster = startCluster();
  const files = await logOf(EVENTS);
  const pgDir = join(files, '..', 'pg');
  const servers: Awaited<ReturnType<typeof startServe>>[] = [];
  try {
    cluster.psql('postgres', 'CREATE DATABASE apie');
    const url = cluster.url('apie');
    execFileSync(EXE, ['migrate', '--to', url, '--data', files], { stdio: 'ignore' });
    const one = `/events/${hashAt(files, EVENTS / 2)}`;

    // CGI first, with nothing else running.
    const fileServer = await startServe(files, ['--quiet']);
    servers.push(fileServer);
    const bearer = await token(fileServer.base);
    // The same users and token secret (made by the first token), the events in the database.
    cpSync(files, pgDir, { recursive: true, filter: (src) => !src.startsWith(join(files, 'events')) });
    writeFileSync(join(pgDir, 'apie.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(files, 'apie.json'), 'utf8')), eventStore: url }));
    const times = medians([
      { name: 'files', command: EXE, env: cgiEnv(files, 'GET', one, { Authorization: bearer }), expect: 200 },
      { name: 'pg', command: EXE, env: cgiEnv(pgDir, 'GET', one, { Authorization: bearer }), expect: 200 },
    ]);
    const connect = await connectMs(url);

    const fRead = await load(fileServer.base + one, bearer, 32);
    const fPut = await load(`${fileServer.base}/events`, bearer, 64, PUT_EVENT);
    await stop(fileServer.child);
    servers.length = 0;
    // As many worker processes as the file server has (one machine runs them all here): one each.
    const each = Math.max(1, Math.floor(availableParallelism() / 2));
    servers.push(await startServe(pgDir, ['--quiet', '--workers', String(each)]), await startServe(pgDir, ['--quiet', '--workers', String(each)]));
    const bases = servers.map((s) => s.base);
    const pRead = await spread(bases, one, bearer, 32);
    const pPut = await spread(bases, '/events', bearer, 64, PUT_EVENT);
    const two = `two servers (${each} worker${each > 1 ? 's' : ''} each) on one PostgreSQL`;
    const file = `one server (${availableParallelism()} workers), file store`;
    return [
      { section: 'pg', what: `${two} \`GET /events/H\`, 100,000-event log, 32 connections${label(pRead)}`, value: pRead.rps, unit: 'req/s', baseline: { what: `${file}${label(fRead)}`, value: fRead.rps }, goal: 1.5, atLeast: true },
      { section: 'pg', what: `${two} \`PUT /events\`, 64 connections${label(pPut)}`, value: pPut.rps, unit: 'req/s', baseline: { what: `${file}${label(fPut)}`, value: fPut.rps }, goal: 0.7, atLeast: true },
      { section: 'pg', what: `${two} \`GET /events/H\` p99`, value: pRead.p99, unit: 'ms', baseline: { what: file, value: fRead.p99 } },
      { section: 'pg', what: `${two} \`PUT /events\` p99`, value: pPut.p99, unit: 'ms', baseline: { what: file, value: fPut.p99 } },
      { section: 'pg', what: 'CGI `GET /events/H`, PostgreSQL store', value: times.get('pg')!, unit: 'ms', baseline: { what: 'file store', value: times.get('files')! } },
      { section: 'pg', what: 'of which: opening the connection (Unix socket, trust; in a warm process)', value: connect, unit: 'ms', baseline: { what: 'the PostgreSQL CGI request', value: times.get('pg')! } },
    ];
  } finally {
    for (const s of servers) await stop(s.child);
    cluster.destroy();
    rmSync(join(files, '..'), { recursive: true, force: true });
  }
}
