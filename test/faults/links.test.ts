// Symbolic links planted in the data directory. The web server's user can
// write it, so a link must never make Apie read, chmod, delete or serve a file
// elsewhere, least of all `apie verify` run as root. Links are damage: verify
// lists them and exits 1, a request that meets one answers 500, and the
// file a link points to keeps its bytes and its mode. Every link points into
// the test's own temporary directory, never at a real system file.
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, FRONT_ENDS, cgiEnv, makeDataDir, runCgi, runCli, tempDir, type Site } from '../lib/harness.ts';
import { reportFaults } from '../lib/faults.ts';
import { sha256 } from '../lib/storage.ts';

const JSON_TYPE = { 'Content-Type': 'application/json' };
// Modes verify would never give: a change shows it touched the file.
const VICTIM_FILE = 0o604;
const VICTIM_DIR = 0o711;
const BLOB = 'the bytes a link must never stand in for\n';
const BLOB_HASH = sha256(BLOB);
const FAN = BLOB_HASH.slice(0, 2);

let injected = 0;
let lost = 0;

const cgi = (dataDir: string, method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
  runCgi(cgiEnv(dataDir, method, path, { auth: ALICE, headers, body }), body);

/** Every file and directory under (and including) path, with its mode and, for files, its bytes. */
function snapshot(path: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string, rel: string) => {
    const s = lstatSync(p);
    if (s.isDirectory()) {
      out.set(rel, `dir ${(s.mode & 0o777).toString(8)}`);
      for (const e of readdirSync(p).sort()) walk(join(p, e), `${rel}/${e}`);
    } else {
      out.set(rel, `file ${(s.mode & 0o777).toString(8)} ${sha256(readFileSync(p))}`);
    }
  };
  walk(path, '.');
  return out;
}

/** Gives a copied tree modes verify would change. */
function markVictim(path: string): void {
  const s = lstatSync(path);
  if (s.isDirectory()) {
    for (const e of readdirSync(path)) markVictim(join(path, e));
    chmodSync(path, VICTIM_DIR);
  } else {
    chmodSync(path, VICTIM_FILE);
  }
}

function markReadable(path: string): void {
  const dir = lstatSync(path).isDirectory();
  if (dir) for (const e of readdirSync(path)) markReadable(join(path, e));
  chmodSync(path, dir ? 0o755 : 0o644);
}

// A data directory with something in every place verify looks: an event,
// a blob, the token secret, a temporary upload directory.
async function populated(parent: string): Promise<{ dataDir: string; event: string }> {
  const dataDir = makeDataDir(parent);
  const e = await cgi(dataDir, 'PUT', '/events', JSON.stringify({ eventType: 'kept', body: 1 }), JSON_TYPE);
  assert.is(e.status, 200, e.text);
  const b = await cgi(dataDir, 'PUT', '/storage/kept.txt', BLOB, { 'Content-Type': 'text/plain' });
  assert.is(b.status, 200, b.text);
  assert.is((await cgi(dataDir, 'POST', '/auth/token')).status, 200);
  assert.ok(existsSync(join(dataDir, 'storage', 'tmp')));
  return { dataDir, event: e.json().hash };
}

// The places verify walks or chmods. Each is replaced by a link to a copy of
// itself: through the link everything would check out, so only refusing to
// follow it finds the damage.
const PLACES = [
  'passwd',
  'apie.json',
  'token-secret',
  'events',
  'events/log',
  'events/offsets',
  'events/table',
  'storage',
  'storage/tmp',
  'storage/blobs',
  `storage/blobs/${FAN}`,
  `storage/blobs/${FAN}/${BLOB_HASH}`,
  `storage/blobs/${FAN}/${BLOB_HASH}.json`,
];

const t = suite<{ parent: string }>('links: apie verify as root');
t.before.each((ctx) => {
  ctx.parent = tempDir();
});
t.after.each((ctx) => {
  rmSync(ctx.parent, { recursive: true, force: true });
});

for (const place of PLACES) {
  t(`should list a link at ${place} as damage, leave its target alone and lose nothing`, async ({ parent }) => {
    const { dataDir, event } = await populated(parent);
    const original = join(dataDir, place);
    const victim = join(parent, 'victim');
    const saved = join(parent, 'saved');
    cpSync(original, victim, { recursive: true });
    markVictim(victim);
    const before = snapshot(victim);
    renameSync(original, saved);
    symlinkSync(victim, original);
    injected++;

    const r = runCli(['verify'], { env: { APIE_DATA: dataDir } });
    assert.is(r.status, 1, `verify must fail: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, `${place} is a symbolic link`);
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
    assert.not.match(r.stderr + r.stdout, parent, 'no absolute paths');
    assert.equal(snapshot(victim), before, 'the link target keeps its modes and bytes');

    // Put the original back: verify passes and everything answered 200 is still there.
    unlinkSync(original);
    renameSync(saved, original);
    const again = runCli(['verify'], { env: { APIE_DATA: dataDir } });
    assert.is(again.status, 0, again.stdout + again.stderr);
    const ev = await cgi(dataDir, 'GET', `/events/${event}`);
    const blob = await cgi(dataDir, 'GET', `/storage/${BLOB_HASH}`);
    if (ev.status !== 200) lost++;
    if (blob.status !== 200 || blob.text !== BLOB) lost++;
    assert.is(ev.status, 200);
    assert.is(blob.text, BLOB);
  });
}

t('should list a link among the temporary uploads and leave its target alone', async ({ parent }) => {
  const { dataDir } = await populated(parent);
  const victim = join(parent, 'victim');
  writeFileSync(victim, 'not an upload');
  chmodSync(victim, VICTIM_FILE);
  // Named like the upload of a process that is gone: the sweep would take it.
  const link = join(dataDir, 'storage', 'tmp', '999999999-abc.tmp');
  symlinkSync(victim, link);
  injected++;
  const r = runCli(['verify'], { env: { APIE_DATA: dataDir } });
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stderr, 'storage/tmp/999999999-abc.tmp is a symbolic link');
  assert.is(statSync(victim).mode & 0o777, VICTIM_FILE);
  assert.is(readFileSync(victim, 'utf8'), 'not an upload');
});

t('should list every planted link in one run', async ({ parent }) => {
  const { dataDir } = await populated(parent);
  const victims = join(parent, 'victims');
  mkdirSync(victims);
  const planted = ['token-secret', 'events/log', `storage/blobs/${FAN}/${BLOB_HASH}`, 'storage/blobs/ab'];
  for (const [i, place] of planted.entries()) {
    const target = join(victims, String(i));
    if (place === 'storage/blobs/ab') mkdirSync(target);
    else cpSync(join(dataDir, place), target);
    markVictim(target);
    rmSync(join(dataDir, place), { force: true });
    symlinkSync(target, join(dataDir, place));
    injected++;
  }
  const before = snapshot(victims);
  const r = runCli(['verify'], { env: { APIE_DATA: dataDir } });
  assert.is(r.status, 1);
  for (const place of planted) assert.match(r.stderr, `${place} is a symbolic link`);
  assert.equal(snapshot(victims), before);
});

t('should not touch a blob behind a linked fan directory', async ({ parent }) => {
  const { dataDir } = await populated(parent);
  // A directory elsewhere that looks like part of the store.
  const victim = join(parent, 'victim');
  mkdirSync(victim);
  const hash = sha256('elsewhere');
  writeFileSync(join(victim, hash), 'elsewhere');
  writeFileSync(join(victim, `${hash}.json`), '{"name":"","contentType":"text/plain"}');
  markVictim(victim);
  const before = snapshot(victim);
  symlinkSync(victim, join(dataDir, 'storage', 'blobs', hash.slice(0, 2)));
  injected++;
  const r = runCli(['verify'], { env: { APIE_DATA: dataDir } });
  assert.is(r.status, 1);
  assert.match(r.stderr, `storage/blobs/${hash.slice(0, 2)} is a symbolic link`);
  assert.equal(snapshot(victim), before);
});

t.run();

// Requests that meet a link: an error, never the target's bytes, and no change to it.
for (const fe of FRONT_ENDS) {
  const s = suite<{ site: Site; victims: string }>(`links: requests via ${fe.name}`);
  s.before.each(async (ctx) => {
    ctx.site = await fe.open();
    ctx.victims = tempDir('apie-victims-');
  });
  s.after.each(async (ctx) => {
    await ctx.site.close();
    rmSync(ctx.victims, { recursive: true, force: true });
  });

  const upload = async (site: Site) => {
    const r = await site.request('PUT', '/storage/kept.txt', { auth: ALICE, body: BLOB, headers: { 'Content-Type': 'text/plain' } });
    assert.is(r.status, 200, r.text);
  };
  // Replaces a path of the data directory by a link to a readable copy of it.
  const plant = (site: Site, victims: string, place: string) => {
    const path = join(site.dataDir, place);
    const victim = join(victims, place.replace(/\//g, '_'));
    cpSync(path, victim, { recursive: true });
    // Readable by the web server's user: following the link would work.
    markReadable(victim);
    rmSync(path, { recursive: true });
    symlinkSync(victim, path);
    injected++;
    return victim;
  };

  s('should answer 500 for a blob that is a link, never the bytes it points to', async ({ site, victims }) => {
    await upload(site);
    plant(site, victims, `storage/blobs/${FAN}/${BLOB_HASH}`);
    for (const headers of [{}, { Range: 'bytes=0-9' }] as Record<string, string>[]) {
      const r = await site.request('GET', `/storage/${BLOB_HASH}`, { auth: ALICE, headers });
      assert.is(r.status, 500, r.text);
      assert.not.match(r.text, 'never stand in');
      assert.match(r.json().errorMessage, /symbolic link/);
      assert.not.match(r.text, site.dataDir);
    }
    assert.is((await site.request('HEAD', `/storage/${BLOB_HASH}`, { auth: ALICE })).status, 500);
  });

  s('should answer 500 for metadata or a fan directory that is a link', async ({ site, victims }) => {
    await upload(site);
    plant(site, victims, `storage/blobs/${FAN}/${BLOB_HASH}.json`);
    assert.is((await site.request('GET', `/storage/${BLOB_HASH}`, { auth: ALICE })).status, 500);
    rmSync(join(site.dataDir, `storage/blobs/${FAN}/${BLOB_HASH}.json`));
    cpSync(join(victims, `storage_blobs_${FAN}_${BLOB_HASH}.json`), join(site.dataDir, `storage/blobs/${FAN}/${BLOB_HASH}.json`));
    const victim = plant(site, victims, `storage/blobs/${FAN}`);
    const r = await site.request('GET', `/storage/${BLOB_HASH}`, { auth: ALICE });
    assert.is(r.status, 500, r.text);
    assert.not.match(r.text, 'never stand in');
    // A delete through the link would remove the files it points to.
    const before = snapshot(victim);
    assert.is((await site.request('DELETE', `/storage/${BLOB_HASH}`, { auth: ALICE })).status, 500);
    assert.equal(snapshot(victim), before);
  });

  s('should replace a linked blob when the same bytes are uploaded again, leaving the target alone', async ({ site, victims }) => {
    await upload(site);
    const victim = plant(site, victims, `storage/blobs/${FAN}/${BLOB_HASH}`);
    writeFileSync(victim, 'changed behind the link');
    await upload(site);
    assert.ok(lstatSync(join(site.dataDir, `storage/blobs/${FAN}/${BLOB_HASH}`)).isFile(), 'the link is replaced by the bytes');
    assert.is(readFileSync(victim, 'utf8'), 'changed behind the link');
    assert.is((await site.request('GET', `/storage/${BLOB_HASH}`, { auth: ALICE })).text, BLOB);
  });

  s('should answer 500 for event log files that are links and write nothing through them', async ({ site, victims }) => {
    const put = () => site.request('PUT', '/events', { auth: ALICE, headers: JSON_TYPE, body: JSON.stringify({ eventType: 'x', body: 1 }) });
    assert.is((await put()).status, 200);
    for (const file of ['log', 'offsets']) {
      const victim = plant(site, victims, `events/${file}`);
      const before = readFileSync(victim);
      const get = await site.request('GET', '/events', { auth: ALICE });
      assert.is(get.status, 500, `${file}: ${get.text}`);
      assert.match(get.json().errorMessage, `events/${file} is a symbolic link`);
      assert.is((await put()).status, 500);
      assert.ok(readFileSync(victim).equals(before), `${file}: the target is unchanged`);
      unlinkSync(join(site.dataDir, 'events', file));
      cpSync(victim, join(site.dataDir, 'events', file));
    }
  });

  s('should answer 500 for a passwd that is a link', async ({ site, victims }) => {
    plant(site, victims, 'passwd');
    const r = await site.request('GET', '/info', { auth: ALICE });
    assert.is(r.status, 500, r.text);
    assert.match(r.json().errorMessage, /passwd is a symbolic link/);
  });

  s.run();
}

const tally = suite('links: tally');
tally('should have lost nothing acknowledged to a planted link', () => {
  reportFaults('links', injected, lost);
  assert.ok(injected > 0);
  assert.is(lost, 0);
});
tally.run();
