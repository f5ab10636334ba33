// The content store through every front end: upload, download, ranges,
// conditional requests, names, digests, limits, delete, verify, concurrency.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as assert from 'uvu/assert';
import { ALICE, FRONT_ENDS, fileMode, siteSuite, type Site } from './lib/harness.ts';
import { EMPTY_HASH, blobDirs, blobPath, pattern, patternBytes, rawRequest, sha256, storeFiles } from './lib/storage.ts';

const put = (site: Site, name: string, body: Buffer | string, headers: Record<string, string> = {}) =>
  site.request('PUT', `/storage/${encodeURIComponent(name)}`, { auth: ALICE, body, headers });
const get = (site: Site, hash: string, headers: Record<string, string> = {}) => site.request('GET', `/storage/${hash}`, { auth: ALICE, headers });

// Names a client may use, and what Content-Disposition must say for them.
const GOOD_NAMES: [string, string][] = [
  ['report.pdf', 'attachment; filename="report.pdf"'],
  ['my report 2024.pdf', 'attachment; filename="my report 2024.pdf"'],
  ['say "hi".txt', `attachment; filename="say _hi_.txt"; filename*=UTF-8''say%20%22hi%22.txt`],
  ['Grüße – 日本.txt', `attachment; filename="Gr__e _ __.txt"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%E2%80%93%20%E6%97%A5%E6%9C%AC.txt`],
  ["it's (1).txt", `attachment; filename="it's (1).txt"`],
  ['x'.repeat(255), `attachment; filename="${'x'.repeat(255)}"`],
];

// Every forbidden form, as sent on the wire. NUL cannot reach a CGI program
// at all (environment strings end at NUL), so it is tried on the others only.
// Apache and the server's URL parser resolve dot segments, even encoded ones
// (`/storage/%2E` arrives as `/storage/`): those reach Apie only as CGI.
const BAD_NAMES: { why: string; path: string; skip?: string[] }[] = [
  { why: 'a slash', path: 'a%2Fb' },
  { why: 'a backslash', path: 'a%5Cb' },
  { why: 'NUL', path: 'a%00b', skip: ['cgi'] },
  { why: 'a C0 control character', path: 'a%01b' },
  { why: 'a newline', path: 'a%0Ab' },
  { why: 'DEL', path: 'a%7Fb' },
  { why: 'a C1 control character', path: 'a%C2%85b' },
  { why: '.', path: '%2E', skip: ['server', 'apache', 'suexec'] },
  { why: '..', path: '%2E%2E', skip: ['server', 'apache', 'suexec'] },
  { why: '256 ASCII bytes', path: 'x'.repeat(256) },
  { why: '256 UTF-8 bytes in 128 characters', path: encodeURIComponent('é'.repeat(128)) },
];

for (const fe of FRONT_ENDS) {
  const t = siteSuite(fe, `storage via ${fe.name}`, { config: { maxUploadBytes: 8 * 1024 * 1024 } });

  t('should store an upload and give back the same bytes with all the headers', async ({ site }) => {
    const bytes = patternBytes(3 * 1024 * 1024 + 17, 1);
    const hash = sha256(bytes);
    const r = await put(site, 'data.bin', bytes, { 'Content-Type': 'image/png' });
    assert.is(r.status, 200, r.text);
    assert.is(r.headers['content-type'], 'application/json');
    const body = r.json();
    assert.equal(Object.keys(body).sort(), ['contentType', 'hash', 'size', 'status', 'url']);
    assert.is(body.status, 'ok');
    assert.is(body.hash, hash);
    assert.is(body.size, bytes.length);
    assert.is(body.contentType, 'image/png');
    assert.is(body.url, `${site.kind === 'cgi' ? 'http://127.0.0.1/cgi-bin/apie.cgi' : site.base}/storage/${hash}`);
    assert.ok(readFileSync(blobPath(site.dataDir, hash)).equals(bytes), 'on disk as sent');

    const g = await get(site, hash);
    assert.is(g.status, 200);
    assert.ok(g.body.equals(bytes), 'downloaded byte for byte');
    assert.is(g.headers['content-type'], 'image/png');
    // Apache streams a big CGI response chunked, whatever Content-Length the CGI sent.
    if (!site.apache) assert.is(g.headers['content-length'], String(bytes.length));
    assert.is(g.headers.etag, `"${hash}"`);
    assert.is(g.headers['cache-control'], 'private, max-age=31536000, immutable');
    assert.is(g.headers['content-disposition'], 'attachment; filename="data.bin"');
    assert.is(g.headers['x-content-type-options'], 'nosniff');

    const h = await site.request('HEAD', `/storage/${hash}`, { auth: ALICE });
    assert.is(h.status, 200);
    assert.is(h.body.length, 0);
    for (const k of ['content-type', 'etag', 'cache-control', 'content-disposition']) assert.is(h.headers[k], g.headers[k], k);
    // Apache recomputes Content-Length from the (empty) body of a HEAD and drops it.
    if (!site.apache) assert.is(h.headers['content-length'], String(bytes.length));
  });

  t('should accept PUT /storage/ without a name, as application/octet-stream', async ({ site }) => {
    // A Buffer body: fetch would label a string text/plain.
    const r = await site.request('PUT', '/storage/', { auth: ALICE, body: Buffer.from('no name') });
    assert.is(r.status, 200, r.text);
    assert.is(r.json().contentType, 'application/octet-stream');
    const g = await get(site, r.json().hash);
    assert.is(g.text, 'no name');
    assert.is(g.headers['content-disposition'], 'attachment');
    assert.is(g.headers['content-type'], 'application/octet-stream');
  });

  t('should accept POST like PUT', async ({ site }) => {
    const r = await site.request('POST', '/storage/posted.txt', { auth: ALICE, body: 'posted' });
    assert.is(r.status, 200, r.text);
    assert.is(r.json().hash, sha256('posted'));
  });

  t('should keep names with spaces, quotes and non-ASCII as the download name', async ({ site }) => {
    for (const [i, [name, disposition]] of GOOD_NAMES.entries()) {
      const r = await put(site, name, `file ${i}`);
      assert.is(r.status, 200, `${name}: ${r.text}`);
      const g = await get(site, r.json().hash);
      assert.is(g.headers['content-disposition'], disposition, name);
    }
  });

  t('should refuse every forbidden name with 400 and write nothing', async ({ site }) => {
    for (const bad of BAD_NAMES) {
      if (bad.skip?.includes(site.kind)) continue;
      const r = await rawRequest(site, 'PUT', `/storage/${bad.path}`, { auth: ALICE, body: Buffer.from('forbidden') });
      // Apache itself refuses an encoded slash or NUL (404/400) before Apie sees it.
      if (site.apache && /%2F|%00/.test(bad.path)) assert.ok([400, 404].includes(r.status), `${bad.why}: ${r.status}`);
      else assert.is(r.status, 400, `${bad.why}: ${r.status} ${r.text}`);
      assert.equal(storeFiles(site.dataDir), [], bad.why);
    }
  });

  t('should store an empty body as the empty blob', async ({ site }) => {
    const r = await site.request('PUT', '/storage/empty.txt', { auth: ALICE, body: '' });
    assert.is(r.status, 200, r.text);
    assert.is(r.json().hash, EMPTY_HASH);
    assert.is(r.json().size, 0);
    const g = await get(site, EMPTY_HASH);
    assert.is(g.status, 200);
    assert.is(g.body.length, 0);
    assert.is(g.headers.etag, `"${EMPTY_HASH}"`);
  });

  t('should check Content-Digest and X-Apie-Hash, storing nothing on a mismatch', async ({ site }) => {
    const bytes = patternBytes(100_000, 2);
    const digest = (b: Buffer) => `sha-256=:${createHash('sha256').update(b).digest('base64')}:`;
    const truncated = bytes.subarray(0, bytes.length - 1);
    const cases: [string, Record<string, string>][] = [
      ['a Content-Digest of other bytes', { 'Content-Digest': digest(truncated) }],
      ['an X-Apie-Hash of other bytes', { 'X-Apie-Hash': sha256(truncated) }],
      ['an X-Apie-Hash that is no hash', { 'X-Apie-Hash': 'abc' }],
      ['an X-Apie-Hash in upper case', { 'X-Apie-Hash': sha256(bytes).toUpperCase() }],
      ['a Content-Digest that is not 32 bytes', { 'Content-Digest': 'sha-256=:AAAA:' }],
      ['a right Content-Digest with a wrong X-Apie-Hash', { 'Content-Digest': digest(bytes), 'X-Apie-Hash': sha256(truncated) }],
    ];
    for (const [why, headers] of cases) {
      const r = await put(site, 'x.bin', bytes, headers);
      assert.is(r.status, 400, `${why}: ${r.text}`);
      assert.is(r.json().status, 'error');
      assert.equal(storeFiles(site.dataDir).filter((f) => f.startsWith('blobs/')), [], why);
    }
    assert.equal(storeFiles(site.dataDir), [], 'no temporary file left either');
    const good: Record<string, string>[] = [{ 'Content-Digest': digest(bytes) }, { 'X-Apie-Hash': sha256(bytes) }, { 'Content-Digest': `sha-512=:${'A'.repeat(86)}==:, ${digest(bytes)}` }];
    for (const headers of good) {
      const r = await put(site, 'x.bin', bytes, headers);
      assert.is(r.status, 200, `${JSON.stringify(headers)}: ${r.text}`);
      assert.is(r.json().hash, sha256(bytes));
    }
  });

  t('should store identical bytes once, keeping the first name and type', async ({ site }) => {
    const first = await put(site, 'first.txt', 'same bytes', { 'Content-Type': 'text/plain' });
    const second = await put(site, 'second.bin', 'same bytes', { 'Content-Type': 'application/x-other' });
    assert.is(first.status, 200);
    assert.is(second.status, 200);
    assert.is(second.json().hash, first.json().hash);
    assert.is(second.json().contentType, 'text/plain');
    const h = first.json().hash;
    assert.equal(storeFiles(site.dataDir), [`blobs/${h.slice(0, 2)}/${h}`, `blobs/${h.slice(0, 2)}/${h}.json`]);
    assert.is((await get(site, h)).headers['content-disposition'], 'attachment; filename="first.txt"');
  });

  t('should refuse a body over the limit with 413 and leave nothing behind', async ({ site }) => {
    const limit = 8 * 1024 * 1024;
    // Declared too big: refused before reading.
    const declared = await put(site, 'big.bin', patternBytes(limit + 1, 3));
    assert.is(declared.status, 413, declared.text);
    assert.equal(storeFiles(site.dataDir), []);
    // No Content-Length (chunked, or read to EOF under CGI): refused as it arrives.
    const streamed = await rawRequest(site, 'PUT', '/storage/big.bin', { auth: ALICE, body: pattern(limit + 3 * 1024 * 1024, 3) });
    assert.is(streamed.status, 413, streamed.text);
    assert.equal(storeFiles(site.dataDir), []);
    const exact = await put(site, 'limit.bin', patternBytes(limit, 3));
    assert.is(exact.status, 200, 'exactly the limit is fine');
  });

  t('should refuse a malformed Content-Type', async ({ site }) => {
    const r = await put(site, 'x', 'x', { 'Content-Type': 'not a type' });
    assert.is(r.status, 400);
    assert.equal(storeFiles(site.dataDir), []);
  });

  t('should answer single ranges at the start, middle and end, and 416 beyond', async ({ site }) => {
    const bytes = patternBytes(1_000_000, 4);
    const hash = (await put(site, 'r.bin', bytes)).json().hash;
    const size = bytes.length;
    const cases: [string, number, number][] = [
      ['bytes=0-0', 0, 0],
      ['bytes=0-99', 0, 99],
      ['bytes=400000-600000', 400000, 600000],
      ['bytes=999990-', 999990, size - 1],
      ['bytes=-10', size - 10, size - 1],
      ['bytes=999000-2000000', 999000, size - 1], // end past the size is clamped
      ['bytes=-2000000', 0, size - 1], // suffix longer than the blob: all of it
    ];
    for (const [range, start, end] of cases) {
      const r = await get(site, hash, { Range: range });
      assert.is(r.status, 206, range);
      assert.is(r.headers['content-range'], `bytes ${start}-${end}/${size}`, range);
      if (!site.apache) assert.is(r.headers['content-length'], String(end - start + 1), range);
      assert.ok(r.body.equals(bytes.subarray(start, end + 1)), `${range}: bytes`);
    }
    for (const range of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, 'bytes=-0']) {
      const r = await get(site, hash, { Range: range });
      assert.is(r.status, 416, range);
      assert.is(r.headers['content-range'], `bytes */${size}`, range);
    }
    // Several ranges or nonsense may be ignored: the whole blob.
    for (const range of ['bytes=0-1,5-6', 'lines=1-2']) {
      const r = await get(site, hash, { Range: range });
      assert.is(r.status, 200, range);
      assert.ok(r.body.equals(bytes), range);
    }
    // If-Range with another entity tag: the whole blob.
    const other = await get(site, hash, { Range: 'bytes=0-9', 'If-Range': `"${EMPTY_HASH}"` });
    assert.is(other.status, 200);
    const same = await get(site, hash, { Range: 'bytes=0-9', 'If-Range': `"${hash}"` });
    assert.is(same.status, 206);
  });

  t('should answer If-None-Match with 304 in every spelling', async ({ site }) => {
    const hash = (await put(site, 'c.txt', 'cached')).json().hash;
    for (const tag of [`"${hash}"`, hash, `W/"${hash}"`, '*', `"${EMPTY_HASH}", "${hash}"`]) {
      const r = await get(site, hash, { 'If-None-Match': tag });
      assert.is(r.status, 304, tag);
      assert.is(r.body.length, 0);
      assert.is(r.headers.etag, `"${hash}"`);
    }
    assert.is((await get(site, hash, { 'If-None-Match': `"${EMPTY_HASH}"` })).status, 200);
  });

  t('should answer 404 for an unknown blob and 400 for a malformed hash', async ({ site }) => {
    assert.is((await get(site, EMPTY_HASH)).status, 404);
    for (const bad of ['abc', EMPTY_HASH.toUpperCase(), `${EMPTY_HASH}0`]) {
      assert.is((await get(site, bad)).status, 400, bad);
      assert.is((await site.request('DELETE', `/storage/${bad}`, { auth: ALICE })).status, 400, bad);
    }
  });

  t('should delete a blob with its metadata and leave no empty directory', async ({ site }) => {
    const keep = (await put(site, 'keep.txt', 'keep')).json().hash;
    const gone = (await put(site, 'gone.txt', 'gone')).json().hash;
    const r = await site.request('DELETE', `/storage/${gone}`, { auth: ALICE });
    assert.is(r.status, 200, r.text);
    assert.equal(r.json(), { status: 'ok' });
    assert.is((await get(site, gone)).status, 404);
    assert.is((await site.request('DELETE', `/storage/${gone}`, { auth: ALICE })).status, 404);
    assert.equal(storeFiles(site.dataDir), [`blobs/${keep.slice(0, 2)}/${keep}`, `blobs/${keep.slice(0, 2)}/${keep}.json`]);
    assert.equal(blobDirs(site.dataDir), [keep.slice(0, 2)]);
    assert.is((await get(site, keep)).text, 'keep');
    // Uploading again after a delete works.
    assert.is((await put(site, 'gone.txt', 'gone')).status, 200);
    assert.is((await get(site, gone)).text, 'gone');
  });

  t('should verify every blob, name the corrupt ones and narrow modes wider than fileMode, never widening', async ({ site }) => {
    const a = (await put(site, 'a', 'blob a')).json().hash;
    const b = (await put(site, 'b', 'blob b')).json().hash;
    const ok = await site.request('POST', '/storage/verify', { auth: ALICE });
    assert.is(ok.status, 200, ok.text);
    assert.equal(ok.json(), { status: 'ok', count: 2 });
    const configured = parseInt((await site.request('GET', '/info', { auth: ALICE })).json().config.fileMode, 8);
    chmodSync(blobPath(site.dataDir, a), 0o666);
    chmodSync(`${blobPath(site.dataDir, a)}.json`, 0o600); // narrower than configured (suEXEC): stays
    writeFileSync(blobPath(site.dataDir, b), 'blob B'); // a flipped bit on disk
    const bad = await site.request('POST', '/storage/verify', { auth: ALICE });
    assert.is(bad.status, 500);
    assert.match(bad.json().errorMessage, b);
    assert.not.match(bad.json().errorMessage, a);
    assert.not.match(bad.text, /\/tmp\//); // no absolute paths
    assert.is(fileMode(blobPath(site.dataDir, a)), configured);
    assert.is(fileMode(`${blobPath(site.dataDir, a)}.json`), 0o600);
  });

  t('should serve a blob whose metadata is damaged with safe defaults, and repair it on re-upload', async ({ site }) => {
    const hash = (await put(site, 'report.pdf', 'the report', { 'Content-Type': 'application/pdf' })).json().hash;
    const meta = `${blobPath(site.dataDir, hash)}.json`;
    for (const damage of ['{"name":"report.pdf",', '[]', '{"name":"a/b","contentType":"text/plain"}', '{"name":"","contentType":"text/html\\r\\nSet-Cookie: a=b"}']) {
      writeFileSync(meta, damage);
      // The bytes are what their hash says; only the name and type are lost.
      const r = await get(site, hash);
      assert.is(r.status, 200, `${damage}: ${r.text}`);
      assert.is(r.text, 'the report');
      assert.is(r.headers['content-type'], 'application/octet-stream');
      assert.is(r.headers['content-disposition'], 'attachment');
      assert.is(r.headers['set-cookie'], undefined);
      const bad = await site.request('POST', '/storage/verify', { auth: ALICE });
      assert.is(bad.status, 500, damage);
      assert.match(bad.json().errorMessage, `${hash}: unreadable metadata`);
      // Uploading the same bytes again writes the metadata anew.
      const again = await put(site, 'report.pdf', 'the report', { 'Content-Type': 'application/pdf' });
      assert.is(again.status, 200, again.text);
      assert.is(again.json().contentType, 'application/pdf');
      assert.equal(JSON.parse(readFileSync(meta, 'utf8')), { name: 'report.pdf', contentType: 'application/pdf', claims: ['alice@example.com'] });
      assert.is((await get(site, hash)).headers['content-disposition'], 'attachment; filename="report.pdf"');
      assert.is((await site.request('POST', '/storage/verify', { auth: ALICE })).status, 200);
    }
  });

  t('should store two concurrent uploads of the same bytes once', async ({ site }) => {
    const bytes = patternBytes(6 * 1024 * 1024, 5);
    const [r1, r2] = await Promise.all([put(site, 'one', bytes), put(site, 'two', bytes)]);
    assert.is(r1.status, 200, r1.text);
    assert.is(r2.status, 200, r2.text);
    const hash = sha256(bytes);
    assert.is(r1.json().hash, hash);
    assert.is(r2.json().hash, hash);
    assert.equal(storeFiles(site.dataDir), [`blobs/${hash.slice(0, 2)}/${hash}`, `blobs/${hash.slice(0, 2)}/${hash}.json`]);
    assert.ok((await get(site, hash)).body.equals(bytes));
  });

  t('should never leave a blob without metadata or metadata without a blob when deletes race uploads', async ({ site }) => {
    const bytes = patternBytes(512 * 1024, 6);
    const hash = sha256(bytes);
    const files = () => storeFiles(site.dataDir).filter((f) => f.startsWith('blobs/'));
    for (let round = 0; round < 6; round++) {
      assert.is((await put(site, 'race', bytes)).status, 200);
      const [up, del] = await Promise.all([put(site, 'race', bytes), site.request('DELETE', `/storage/${hash}`, { auth: ALICE })]);
      assert.is(up.status, 200, up.text);
      assert.ok(del.status === 200 || del.status === 404, del.text);
      const now = files();
      // Either both files or neither, and what is there is served whole.
      assert.ok(now.length === 0 || now.length === 2, now.join());
      if (now.length) assert.ok((await get(site, hash)).body.equals(bytes));
      else assert.is((await get(site, hash)).status, 404);
    }
  });

  t.run();
}
