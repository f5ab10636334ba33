// Helpers for the content-store tests: raw requests (paths exactly as given,
// bodies streamed from generators), deterministic big bodies, and a look at
// what the store holds on disk.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join, relative } from 'node:path';
import { EXE, cgiEnv, parseCgiOutput, type Reply, type Site } from './harness.ts';

export const CHUNK = 1024 * 1024;
export const EMPTY_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
export const basic = (auth: string) => `Basic ${Buffer.from(auth).toString('base64')}`;

/** `size` bytes that differ for every seed, produced 1 MiB at a time (never held whole). */
export function* pattern(size: number, seed: number): Generator<Buffer> {
  // One pseudo-random block per seed (xorshift32), stamped with the chunk's
  // number so that no two chunks are alike; cheap enough for a GiB.
  const block = Buffer.alloc(CHUNK);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < CHUNK; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    block.writeUInt32LE(x, i);
  }
  for (let off = 0, n = 0; off < size; off += CHUNK, n++) {
    block.writeUInt32LE(n, 0);
    yield block.subarray(0, Math.min(CHUNK, size - off));
  }
}

/** The SHA-256 of pattern(size, seed). */
export function patternHash(size: number, seed: number): string {
  const h = createHash('sha256');
  for (const b of pattern(size, seed)) h.update(b);
  return h.digest('hex');
}

/** pattern(size, seed) in one buffer, for small sizes. */
export function patternBytes(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let off = 0;
  for (const b of pattern(size, seed)) off += b.copy(out, off);
  return out;
}

export interface RawOptions {
  headers?: Record<string, string>;
  /** A whole body, or chunks streamed without Content-Length (chunked / to EOF). */
  body?: Buffer | Iterable<Buffer>;
  auth?: string;
}

/**
 * A request with the path sent exactly as given (fetch would normalize dot
 * segments). Under CGI the path is decoded into PATH_INFO as Apache does.
 */
export function rawRequest(site: Site, method: string, path: string, opts: RawOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.auth) headers.Authorization = basic(opts.auth);
  const whole = Buffer.isBuffer(opts.body) ? opts.body : undefined;
  if (site.kind === 'cgi') {
    const env = cgiEnv(site.dataDir, method, path, { headers, body: whole });
    return new Promise((resolve, reject) => {
      const child = spawn(EXE, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      child.stdout.on('data', (d) => out.push(d));
      child.stderr.resume();
      child.on('error', reject);
      child.stdin.on('error', () => {}); // the program may answer before reading it all
      child.on('close', () => {
        try {
          resolve(parseCgiOutput(Buffer.concat(out)));
        } catch (err) {
          reject(err);
        }
      });
      void pump(opts.body, (b) => child.stdin.write(b), (cb) => child.stdin.once('drain', cb)).finally(() => child.stdin.end());
    });
  }
  const url = new URL(site.base);
  return new Promise((resolve, reject) => {
    if (whole) headers['Content-Length'] = String(whole.length);
    const req = httpRequest({ host: url.hostname, port: url.port, method, path: url.pathname.replace(/\/$/, '') + path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const h: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h[k] = Array.isArray(v) ? v.join(', ') : v;
        resolve({ status: res.statusCode!, headers: h, body, text: body.toString('utf8'), json: () => JSON.parse(body.toString('utf8')) });
      });
    });
    req.on('error', reject);
    void pump(opts.body, (b) => req.write(b), (cb) => req.once('drain', cb)).finally(() => req.end());
  });
}

// Writes a body with back-pressure; stops quietly when the other side has gone.
async function pump(body: RawOptions['body'], write: (b: Buffer) => boolean, drain: (cb: () => void) => void): Promise<void> {
  if (body === undefined) return;
  try {
    for (const b of Buffer.isBuffer(body) ? [body] : body) {
      if (!write(Buffer.from(b))) await new Promise<void>((r) => drain(r));
    }
  } catch {
    // EPIPE after an early answer: the answer is what the test checks.
  }
}

/** Every file under the data directory's store (relative paths, sorted), lock directories aside. */
export function storeFiles(dataDir: string): string[] {
  const root = join(dataDir, 'storage');
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (!e.name.endsWith('.lock')) walk(p);
      } else out.push(relative(root, p));
    }
  };
  if (statSync(root, { throwIfNoEntry: false })) walk(root);
  return out.sort();
}

/** Directories under storage/blobs (relative), to check that none is left empty. */
export function blobDirs(dataDir: string): string[] {
  const root = join(dataDir, 'storage', 'blobs');
  if (!statSync(root, { throwIfNoEntry: false })) return [];
  return readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
}

/** The blob file of a hash, as the store lays it out. */
export const blobPath = (dataDir: string, hash: string) => join(dataDir, 'storage', 'blobs', hash.slice(0, 2), hash);

/** Peak resident memory (VmHWM) of a live process, in KiB; undefined once it is gone. */
export function peakKiB(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
