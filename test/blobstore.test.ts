// Unit tests of src/blobstore.ts: names, limits, digests, the layout, clean-up
// and verification, without HTTP in between.
import { mkdirSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { deleteBlob, findBlob, nameProblem, putBlob, staticPath, verifyBlobs } from '../src/blobstore.ts';
import { defaults } from '../src/config.ts';
import { ApieError, type ErrorCode } from '../src/errors.ts';
import { tempDir } from './lib/harness.ts';
import { sha256, storeFiles } from './lib/storage.ts';

const config = defaults;
const opts = { owner: 'alice' as string | null, name: 'n.txt', contentType: 'text/plain', limit: 1024 };

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

async function rejects(p: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, ApieError);
    assert.is((err as ApieError).code, code);
    assert.match((err as ApieError).message, message);
    return;
  }
  assert.unreachable(`expected a ${code} ApieError`);
}

const t = suite<{ dir: string }>('blobstore');
t.before.each((ctx) => {
  ctx.dir = tempDir('apie-blobstore-');
});
t.after.each((ctx) => {
  rmSync(ctx.dir, { recursive: true, force: true });
});

t('should accept ordinary names and refuse every forbidden form', () => {
  for (const ok of ['', 'a', 'report 2024 "final".pdf', 'Grüße.txt', 'x'.repeat(255), 'é'.repeat(127)]) assert.is(nameProblem(ok), null, ok);
  for (const bad of ['a/b', 'a\\b', 'a\0b', 'a\nb', 'a\x7fb', 'a\u0085b', '.', '..', 'x'.repeat(256), 'é'.repeat(128)]) {
    assert.type(nameProblem(bad), 'string', JSON.stringify(bad));
  }
});

t('should store chunks under their hash with metadata beside them', async ({ dir }) => {
  const r = await putBlob(dir, config, chunks('hello ', 'world'), opts);
  const hash = sha256('hello world');
  assert.equal(r, { hash, size: 11, name: 'n.txt', contentType: 'text/plain', created: true });
  assert.equal(storeFiles(dir), [`blobs/${hash.slice(0, 2)}/${hash}`, `blobs/${hash.slice(0, 2)}/${hash}.json`]);
  assert.equal(findBlob(dir, hash)?.info, { hash, size: 11, name: 'n.txt', contentType: 'text/plain' });
  assert.is(staticPath(hash), `${hash.slice(0, 2)}/${hash}`);
  const again = await putBlob(dir, config, chunks('hello world'), { ...opts, name: 'other' });
  assert.is(again.created, false);
  assert.is(again.name, 'n.txt');
});

t('should refuse too much, a wrong expected hash and a bad name, leaving nothing', async ({ dir }) => {
  await rejects(putBlob(dir, config, chunks('a'.repeat(600), 'b'.repeat(600)), opts), 'too-large', /over the limit/);
  await rejects(putBlob(dir, config, chunks('abc'), { ...opts, expected: sha256('abd') }), 'bad-request', /SHA-256 is/);
  await rejects(putBlob(dir, config, chunks('abc'), { ...opts, name: '..' }), 'bad-request', /name must not be/);
  assert.equal(storeFiles(dir), []);
});

t('should pass on a failure of the body and remove its temporary file', async ({ dir }) => {
  async function* broken(): AsyncGenerator<Uint8Array> {
    yield Buffer.from('partial');
    throw new Error('connection reset');
  }
  try {
    await putBlob(dir, config, broken(), opts);
    assert.unreachable('should fail');
  } catch (err) {
    assert.is((err as Error).message, 'connection reset');
  }
  assert.equal(storeFiles(dir), []);
});

const ADMIN = { name: 'root', admin: true };
const as = (name: string) => ({ name, admin: false });

t('should delete blob, metadata and the emptied directory; unknown is not-found', async ({ dir }) => {
  const { hash } = await putBlob(dir, config, chunks('x'), opts);
  assert.equal(await deleteBlob(dir, config, hash, ADMIN), { removed: true });
  assert.equal(readdirSync(join(dir, 'storage', 'blobs')), []);
  assert.is(findBlob(dir, hash), null);
  await rejects(deleteBlob(dir, config, hash, ADMIN), 'not-found', /no such blob/);
});

t('should keep a claim per uploader: a delete drops the caller\'s, the bytes go with the last', async ({ dir }) => {
  const { hash } = await putBlob(dir, config, chunks('shared'), { ...opts, owner: 'alice' });
  await putBlob(dir, config, chunks('shared'), { ...opts, owner: 'bob' });
  await putBlob(dir, config, chunks('shared'), { ...opts, owner: 'bob' }); // once is enough
  const meta = () => JSON.parse(readFileSync(join(dir, 'storage', 'blobs', hash.slice(0, 2), `${hash}.json`), 'utf8'));
  assert.equal(meta().claims, ['alice', 'bob']);
  await rejects(deleteBlob(dir, config, hash, as('carol')), 'forbidden', /did not upload/);
  assert.equal(await deleteBlob(dir, config, hash, as('alice')), { removed: false });
  assert.ok(findBlob(dir, hash), 'still there for bob');
  await rejects(deleteBlob(dir, config, hash, as('alice')), 'forbidden', /did not upload/);
  assert.equal(await deleteBlob(dir, config, hash, as('bob')), { removed: true });
  assert.is(findBlob(dir, hash), null);
});

t('should let only admins delete a blob from before claims, whoever uploads it again', async ({ dir }) => {
  const { hash } = await putBlob(dir, config, chunks('old'), opts);
  // Metadata as 0.1.0 wrote it: no claims.
  const file = join(dir, 'storage', 'blobs', hash.slice(0, 2), `${hash}.json`);
  writeFileSync(file, JSON.stringify({ name: 'old.txt', contentType: 'text/plain' }));
  await rejects(deleteBlob(dir, config, hash, as('alice')), 'forbidden', /did not upload/);
  await putBlob(dir, config, chunks('old'), { ...opts, owner: 'bob' });
  assert.equal(JSON.parse(readFileSync(file, 'utf8')).claims, [null, 'bob']);
  assert.equal(await deleteBlob(dir, config, hash, as('bob')), { removed: false });
  assert.ok(findBlob(dir, hash));
  assert.equal(await deleteBlob(dir, config, hash, ADMIN), { removed: true });
});

t('should remove temporary files of dead processes and old ones, not live ones', async ({ dir }) => {
  const tmp = join(dir, 'storage', 'tmp');
  mkdirSync(tmp, { recursive: true });
  const dead = `${2 ** 22 + 12345}-abc.tmp`; // above pid_max's default: never a live process
  const live = `${process.pid}-def.tmp`;
  const old = `1-123.tmp`; // pid 1 lives, but nobody wrote this for two hours
  for (const f of [dead, live, old]) writeFileSync(join(tmp, f), 'x');
  const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
  utimesSync(join(tmp, old), twoHoursAgo, twoHoursAgo);
  await putBlob(dir, config, chunks('y'), opts);
  assert.equal(readdirSync(tmp), [live]);
});

t('should verify, name corrupt blobs and tidy what a crash leaves', async ({ dir }) => {
  const a = await putBlob(dir, config, chunks('aaa'), opts);
  const b = await putBlob(dir, config, chunks('bbb'), opts);
  assert.equal(await verifyBlobs(dir, config), { count: 2, problems: [] });
  const fan = (h: string) => join(dir, 'storage', 'blobs', h.slice(0, 2));
  writeFileSync(join(fan(b.hash), b.hash), 'bbc');
  // An interrupted commit: bytes without metadata are removed, not reported.
  const orphan = sha256('orphan');
  mkdirSync(fan(orphan), { recursive: true });
  writeFileSync(join(fan(orphan), orphan), 'orphan');
  const r = await verifyBlobs(dir, config);
  assert.is(r.count, 2);
  assert.equal(r.problems, [`${b.hash}: bytes hash to ${sha256('bbc')}`]);
  assert.not.ok(existsSync(join(fan(orphan), orphan)));
  // Metadata whose bytes are gone is reported.
  rmSync(join(fan(a.hash), a.hash));
  assert.ok((await verifyBlobs(dir, config)).problems.includes(`${a.hash}: metadata without bytes`));
});

t.run();
