// The content store when processes die mid-upload, when uploads overlap, and
// with a 1 GiB upload whose memory must stay flat. CGI and server only: these
// drive the processes directly (kill -9, /proc).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { ALICE, EXE, FRONT_END, cgiEnv, parseCgiOutput, siteSuite, startServe, stop, waitFor } from './lib/harness.ts';
import { CHUNK, basic, pattern, patternBytes, patternHash, peakKiB, rawRequest, sha256, storeFiles } from './lib/storage.ts';

const tempFiles = (dataDir: string) => readdirSync(join(dataDir, 'storage', 'tmp'));
const blobFiles = (dataDir: string) => storeFiles(dataDir).filter((f) => f.startsWith('blobs/'));

// Waits until some upload's temporary file holds at least `bytes`.
const tempHolds = (dataDir: string, bytes: number) => () => {
  try {
    return tempFiles(dataDir).some((f) => statSync(join(dataDir, 'storage', 'tmp', f)).size >= bytes);
  } catch {
    return false;
  }
};

/** A CGI upload of `size` bytes of which only `sent` are written for now. */
function startCgiUpload(dataDir: string, size: number, seed: number, sent: number): { child: ChildProcess; finish(): Promise<ReturnType<typeof parseCgiOutput>> } {
  const env = { ...cgiEnv(dataDir, 'PUT', '/storage/partial.bin', { auth: ALICE }), CONTENT_LENGTH: String(size) };
  const child = spawn(EXE, [], { env, stdio: ['pipe', 'pipe', 'ignore'] });
  const out: Buffer[] = [];
  child.stdout!.on('data', (d) => out.push(d));
  child.stdin!.on('error', () => {});
  const chunks = pattern(size, seed);
  const closed = new Promise<void>((r) => child.on('close', () => r()));
  // Not for…of: leaving that loop would end the generator.
  for (let written = 0; written < sent;) {
    const c = chunks.next().value!;
    child.stdin!.write(Buffer.from(c));
    written += c.length;
  }
  return {
    child,
    async finish() {
      for (const c of chunks) if (!child.stdin!.write(Buffer.from(c))) await new Promise((r) => child.stdin!.once('drain', r));
      child.stdin!.end();
      await closed;
      return parseCgiOutput(Buffer.concat(out));
    },
  };
}

{
  const t = siteSuite(FRONT_END.cgi, 'storage crashes via cgi');

  t('should show no partial blob after kill -9 mid-upload, and accept the same upload later', async ({ site }) => {
    const size = 24 * CHUNK;
    const upload = startCgiUpload(site.dataDir, size, 7, 12 * CHUNK);
    await waitFor('half the upload on disk', tempHolds(site.dataDir, 4 * CHUNK));
    await stop(upload.child, 'SIGKILL');
    assert.equal(blobFiles(site.dataDir), [], 'nothing visible');
    assert.is(tempFiles(site.dataDir).length, 1, 'the dead upload left its temporary file');
    assert.is((await site.request('POST', '/storage/verify', { auth: ALICE })).status, 200);

    const bytes = patternBytes(size, 7);
    const r = await site.request('PUT', '/storage/partial.bin', { auth: ALICE, body: bytes });
    assert.is(r.status, 200, r.text);
    assert.is(r.json().hash, sha256(bytes));
    assert.equal(tempFiles(site.dataDir), [], 'the dead upload was cleaned up');
    assert.is(blobFiles(site.dataDir).length, 2);
    assert.ok((await site.request('GET', `/storage/${sha256(bytes)}`, { auth: ALICE })).body.equals(bytes));
  });

  t('should leave a running upload alone while cleaning up', async ({ site }) => {
    const size = 16 * CHUNK;
    const running = startCgiUpload(site.dataDir, size, 8, 4 * CHUNK);
    await waitFor('the upload on disk', tempHolds(site.dataDir, 2 * CHUNK));
    // Another upload sweeps the temporary files meanwhile.
    assert.is((await site.request('PUT', '/storage/other', { auth: ALICE, body: Buffer.from('other') })).status, 200);
    assert.is(tempFiles(site.dataDir).length, 1, 'the running upload keeps its file');
    const r = await running.finish();
    assert.is(r.status, 200, r.text);
    assert.is(r.json().hash, patternHash(size, 8));
    assert.equal(tempFiles(site.dataDir), []);
  });

  t('should stream a 1 GiB upload in under 100 MiB of memory', async ({ site }) => {
    const size = 1024 * CHUNK;
    const env = { ...cgiEnv(site.dataDir, 'PUT', '/storage/huge.bin', { auth: ALICE }), CONTENT_LENGTH: String(size) };
    const child = spawn(EXE, [], { env, stdio: ['pipe', 'pipe', 'ignore'] });
    const out: Buffer[] = [];
    child.stdout!.on('data', (d) => out.push(d));
    const closed = new Promise<void>((r) => child.on('close', () => r()));
    // VmHWM only grows: the last reading before the process ends is its peak.
    let peak = 0;
    const poll = setInterval(() => (peak = Math.max(peak, peakKiB(child.pid!) ?? 0)), 20);
    const hash = createHash('sha256');
    try {
      for (const c of pattern(size, 9)) {
        hash.update(c);
        if (!child.stdin!.write(Buffer.from(c))) await new Promise((r) => child.stdin!.once('drain', r));
      }
      child.stdin!.end();
      // The process commits after the last byte: keep watching until it ends.
      while (child.exitCode === null) {
        peak = Math.max(peak, peakKiB(child.pid!) ?? 0);
        await new Promise((r) => setTimeout(r, 5));
      }
      await closed;
    } finally {
      clearInterval(poll);
    }
    const r = parseCgiOutput(Buffer.concat(out));
    assert.is(r.status, 200, r.text);
    assert.is(r.json().size, size);
    assert.is(r.json().hash, hash.digest('hex'));
    assert.ok(peak > 0, 'memory was measured');
    assert.ok(peak < 100 * 1024, `peak memory ${(peak / 1024).toFixed(1)} MiB`);
    console.log(`  1 GiB CGI upload: peak memory ${(peak / 1024).toFixed(1)} MiB`);
  });

  t.run();
}

{
  const t = siteSuite(FRONT_END.server, 'storage crashes via server');

  t('should show no partial blob after kill -9 of the server mid-upload', async ({ site }) => {
    // A second server on the same data directory, to be killed: one process,
    // so the process killed is the one writing the upload.
    const victim = await startServe(site.dataDir, ['--quiet', '--workers', '1']);
    const url = new URL(victim.base);
    const req = httpRequest({ host: url.hostname, port: url.port, method: 'PUT', path: '/storage/partial.bin', headers: { Authorization: basic(ALICE), 'Content-Length': String(24 * CHUNK) } });
    req.on('error', () => {});
    let sent = 0;
    for (const c of pattern(24 * CHUNK, 10)) {
      req.write(Buffer.from(c));
      if ((sent += c.length) >= 12 * CHUNK) break;
    }
    await waitFor('half the upload on disk', tempHolds(site.dataDir, 4 * CHUNK));
    await stop(victim.child, 'SIGKILL');
    req.destroy();
    assert.equal(blobFiles(site.dataDir), [], 'nothing visible');
    assert.is(tempFiles(site.dataDir).length, 1);

    const r = await rawRequest(site, 'PUT', '/storage/partial.bin', { auth: ALICE, body: patternBytes(24 * CHUNK, 10) });
    assert.is(r.status, 200, r.text);
    assert.is(r.json().hash, patternHash(24 * CHUNK, 10));
    assert.equal(tempFiles(site.dataDir), [], 'the dead server\'s upload was cleaned up');
    assert.is((await site.request('POST', '/storage/verify', { auth: ALICE })).json().count, 1);
  });

  t('should remove the temporary file of an upload the client abandons', async ({ site }) => {
    const url = new URL(site.base);
    const req = httpRequest({ host: url.hostname, port: url.port, method: 'PUT', path: '/storage/abandoned.bin', headers: { Authorization: basic(ALICE), 'Content-Length': String(16 * CHUNK) } });
    req.on('error', () => {});
    for (const c of pattern(4 * CHUNK, 11)) req.write(Buffer.from(c));
    await waitFor('the upload on disk', tempHolds(site.dataDir, 2 * CHUNK));
    req.destroy();
    await waitFor('the temporary file removed', () => tempFiles(site.dataDir).length === 0);
    assert.equal(blobFiles(site.dataDir), []);
  });

  t.run();
}
