// The content store under CGI, with a 256 MiB file: ingest against the least
// work any store must do with the same bytes (`tee COPY < FILE | sha256sum`,
// then `sync COPY`), download against `cat FILE > /dev/null`, and the peak
// memory (VmHWM) of each CGI process.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { EXE, bearerAuth, cgiEnv, median, dataDir, medians, type Row } from './lib.ts';

const SIZE = 256 * 1024 * 1024;
const RUNS = 5;

interface Run {
  ms: number;
  /** Peak resident memory in MiB. */
  peak: number;
}

// Runs a command with stdin/stdout from files, timing it and watching its VmHWM.
function measure(cmd: string, args: string[], env: Record<string, string>, stdin: string, stdout = '/dev/null'): Promise<Run> {
  const input = openSync(stdin, 'r');
  const output = openSync(stdout, 'w');
  const started = performance.now();
  const child = spawn(cmd, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: [input, output, 'inherit'] });
  let peak = 0;
  const poll = setInterval(() => {
    try {
      peak = Math.max(peak, Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0));
    } catch {
      // gone already
    }
  }, 5);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = performance.now() - started;
      clearInterval(poll);
      closeSync(input);
      closeSync(output);
      if (code !== 0) reject(new Error(`${cmd} exited ${code}`));
      else resolve({ ms, peak: peak / 1024 });
    });
  });
}

export async function run(): Promise<Row[]> {
  const data = dataDir();
  const dir = dirname(data);
  const file = join(dir, 'file.bin');
  const copy = join(dir, 'copy.bin');
  writeFileSync(file, randomBytes(SIZE));
  const hash = createHash('sha256').update(readFileSync(file)).digest('hex');
  // A bearer token, as a client that cares about speed would use: no bcrypt per request.
  const auth = { Authorization: bearerAuth(data) };
  const put = { ...cgiEnv(data, 'PUT', '/storage/file.bin', auth), CONTENT_LENGTH: String(SIZE) };

  // Interleaved, each starting from nothing stored: every run writes and fsyncs 256 MiB.
  const ingest: Run[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    rmSync(join(data, 'storage'), { recursive: true, force: true });
    ingest.push(await measure(EXE, [], put, file));
    rmSync(copy, { force: true });
    baseline.push((await measure('sh', ['-c', `tee ${copy} | sha256sum > /dev/null && sync ${copy}`], {}, file)).ms);
  }
  rmSync(copy, { force: true });

  const get = cgiEnv(data, 'GET', `/storage/${hash}`, auth);
  const m = medians([
    { name: 'cat', command: `cat ${file}` },
    { name: 'cgi', command: EXE, env: get, expect: 200 },
    { name: '404', command: EXE, env: cgiEnv(data, 'GET', `/storage/${'0'.repeat(64)}`, auth), expect: 404 },
  ], 10, 2);
  const download = await measure(EXE, [], get, '/dev/null');
  rmSync(dir, { recursive: true, force: true });

  return [
    { section: 'storage', what: 'CGI ingest of 256 MiB (hash, write, fsync)', value: median(ingest.map((r) => r.ms)), unit: 'ms', baseline: { what: 'tee COPY < FILE piped to sha256sum, then sync COPY', value: median(baseline) }, goal: 1.3 },
    { section: 'storage', what: 'CGI download of 256 MiB', value: m.get('cgi')!, unit: 'ms', baseline: { what: 'cat FILE > /dev/null', value: m.get('cat')! }, goal: 2 },
    // The fixed part of every CGI download: start-up, auth, lookup (an unknown blob's 404).
    { section: 'storage', what: 'CGI `GET /storage/<unknown>` → 404 (start-up share of a download)', value: m.get('404')!, unit: 'ms' },
    { section: 'storage', what: 'peak memory, CGI ingest of 256 MiB', value: Math.max(...ingest.map((r) => r.peak)), unit: 'MiB' },
    { section: 'storage', what: 'peak memory, CGI download of 256 MiB', value: download.peak, unit: 'MiB' },
  ];
}
