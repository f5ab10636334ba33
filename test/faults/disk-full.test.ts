// A full disk, for real: a small tmpfs mounted over the data directory fills
// up. Every write that cannot be stored answers 507 and changes nothing (no
// event that later surfaces, no partial blob, no changed password); nothing
// acknowledged is lost, the log verifies, and writes work again once there is
// space. Through every front end (tests run as root to mount).
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, FRONT_ENDS, giveToWebUser, tempDir, type Reply, type Site } from '../lib/harness.ts';
import { allEvents, assertChain, H0, put, writeOriginalApie } from '../lib/events.ts';
import { CAN_MOUNT, mountOver } from '../lib/disk.ts';
import { reportFaults } from '../lib/faults.ts';
import { seeded } from '../lib/random.ts';

const PAGE = 4096;
let injected = 0;
let lost = 0;


function verifies(site: Site): void {
  const r = site.cli(['verify']);
  assert.is(r.status, 0, r.stdout + r.stderr);
}

function isFull(r: Reply, what: string): void {
  assert.is(r.status, 507, `${what}: ${r.text}`);
  assert.is(r.headers['content-type'], 'application/json');
  assert.match(r.json().errorMessage, /space|full/i);
  // Nothing about the server's files in the answer.
  assert.not.match(r.text, /\/tmp\/|ENOSPC|at .*\.ts/);
}

// Opens a site and mounts a tmpfs of `bytes` over its data directory for the test.
async function onTmpfs(fe: (typeof FRONT_ENDS)[number], bytes: number, fn: (site: Site, disk: ReturnType<typeof mountOver>) => Promise<void>): Promise<void> {
  const site = await fe.open();
  let disk: ReturnType<typeof mountOver> | undefined;
  try {
    disk = mountOver(site.dataDir, bytes);
    await fn(site, disk);
  } finally {
    disk?.unmount();
    await site.close();
  }
}

if (!CAN_MOUNT) console.log('SKIPPED: disk-full tests (they need root and mount(8) for a tmpfs)');

for (const fe of CAN_MOUNT ? FRONT_ENDS : []) {
  const t = suite(`disk full via ${fe.name}`);

  t('should answer 507 to an append, an upload and a password change, change nothing, and work again once space is freed', async () => {
    await onTmpfs(fe, 1024 * 1024, async (site, disk) => {
      const acked: string[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await put(site, { eventType: 'before', body: i });
        assert.is(r.status, 200, r.text);
        acked.push(r.json().hash);
      }
      disk.fill();
      // Bigger than a page, so it cannot fit in what the log's last page has left.
      const big = { eventId: randomUUID(), eventType: 'big', body: 'x'.repeat(3 * PAGE) };
      injected++;
      isFull(await put(site, big), 'append');
      const blob = Buffer.alloc(64 * 1024, 7);
      const blobHash = createHash('sha256').update(blob).digest('hex');
      injected++;
      isFull(await site.request('PUT', '/storage/full.bin', { auth: ALICE, body: blob }), 'upload');
      injected++;
      const update = await site.request('POST', '/user/update', { auth: ALICE, headers: { 'Content-Type': 'application/json' }, body: '{"password":"changed"}' });
      isFull(update, 'password change');
      injected++;
      const add = site.cli(['user', 'add', 'bob@example.com'], 'pw\n');
      assert.is(add.status, 1, add.stderr);
      assert.match(add.stderr, /^apie user: the disk is full: nothing was written\n$/);
      // The first token needs a secret file: there is no room for it either.
      injected++;
      isFull(await site.request('POST', '/auth/token', { auth: ALICE }), 'first token');

      // Nothing changed: the same events, no blob, no temporary file, the old password.
      const events = await allEvents(site);
      assert.equal(events.map((e) => e.hash), acked);
      assert.is((await site.request('GET', `/storage/${blobHash}`, { auth: ALICE })).status, 404);
      const tmp = join(site.dataDir, 'storage', 'tmp');
      assert.equal(existsSync(tmp) ? readdirSync(tmp) : [], [], 'no temporary upload left behind');
      assert.equal(readdirSync(site.dataDir).filter((n) => n.endsWith('.tmp')), [], 'no temporary passwd left behind');
      verifies(site);

      disk.free();
      const again = await put(site, big);
      assert.is(again.status, 200, again.text);
      acked.push(again.json().hash);
      const stored = await site.request('PUT', '/storage/full.bin', { auth: ALICE, body: blob });
      assert.is(stored.status, 200, stored.text);
      assert.is(stored.json().hash, blobHash);
      const changed = await site.request('POST', '/user/update', { auth: ALICE, headers: { 'Content-Type': 'application/json' }, body: '{"password":"changed"}' });
      assert.is(changed.status, 200, changed.text);
      assert.is((await site.request('GET', '/events', { auth: 'alice@example.com:changed' })).status, 200);
      assert.is((await site.request('POST', '/auth/token', { auth: 'alice@example.com:changed' })).status, 200);
      assert.is(site.cli(['user', 'add', 'bob@example.com'], 'pw\n').status, 0);
      const final = (await site.request('GET', '/events', { auth: 'alice@example.com:changed' })).json();
      assert.equal(final.map((e: any) => e.hash), acked);
      assertChain(final);
      verifies(site);
    });
  });

  // The log's records are synced before the offsets entry that commits them.
  // When the log write fits in its last page but the offsets entry needs a
  // new one, a complete record is left past the committed end: unless it is
  // taken back, the next append would commit it, and an event answered 507
  // would appear in the log.
  t('should take back an event whose offsets entry found no space, so it never surfaces later', async () => {
    await onTmpfs(fe, 1024 * 1024, async (site, disk) => {
      // 170 imported events fill offsets to 4,080 bytes: the 171st entry crosses a page.
      const parent = tempDir('apie-original-');
      try {
        const jsons = originalFilling(170);
        const dir = join(parent, 'apie');
        writeOriginalApie(dir, jsons);
        giveToWebUser(parent);
        const r = site.cli(['import-apie', dir]);
        assert.is(r.status, 0, r.stderr);
      } finally {
        rmSync(parent, { recursive: true, force: true });
      }
      const events = join(site.dataDir, 'events');
      assert.is(statSync(join(events, 'offsets')).size, 170 * 24);
      assert.is(statSync(join(events, 'log')).size % PAGE, PAGE / 2, 'the log has half a page left');
      disk.fill();
      const eventId = randomUUID();
      injected++;
      isFull(await put(site, { eventId, eventType: 'small', body: 'first' }), 'append');
      assert.is((await allEvents(site)).length, 170);
      verifies(site);
      disk.free();
      // The eventId is free: the refused event is not in the log, then or now.
      const other = await put(site, { eventId, eventType: 'small', body: 'second' });
      assert.is(other.status, 200, other.text);
      const all = await allEvents(site);
      assert.is(all.length, 171);
      assert.is(all.filter((e) => e.eventId === eventId).length, 1);
      assert.is(all.at(-1).body, 'second');
      verifies(site);
    });
  });

  t.run();
}

// Original-Apie JSON texts for `count` events whose log records end half-way
// into a page (record = 64 hex + space + length + newline + J + newline).
function originalFilling(count: number): string[] {
  const jsons = Array.from({ length: count }, (_, i) => JSON.stringify({ eventId: randomUUID(), eventType: 'filling', body: i, createdBy: 'old@example.com', createdAt: '2020-01-01T00:00:00.000Z' }));
  const record = (json: string) => 64 + 1 + String(Buffer.byteLength(json)).length + 1 + Buffer.byteLength(json) + 1;
  const total = () => jsons.reduce((sum, j) => sum + record(j), 0);
  const last = JSON.parse(jsons[count - 1]);
  let pad = 0;
  while (total() % PAGE !== PAGE / 2) jsons[count - 1] = JSON.stringify({ ...last, body: 'p'.repeat(++pad) });
  return jsons;
}

// Many writers until the disk is full: every 200 is in the log, no 507 is,
// and once the file system grows, every refused event can be sent again.
// Event sizes are random (the seed is printed; the interleaving is the
// scheduler's). Apache runs the same CGI program as the cgi front end.
for (const fe of CAN_MOUNT ? FRONT_ENDS.filter((f) => f.name !== 'apache') : []) {
  const t = suite(`disk full: concurrent writers via ${fe.name}`);
  t('should lose no acknowledged append and keep no refused one while the disk fills', async () => {
    const random = seeded(`disk full via ${fe.name}`);
    await onTmpfs(fe, 256 * 1024, async (site, disk) => {
      const acked = new Map<string, string>();
      const refused: { eventId: string; event: unknown }[] = [];
      let sent = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (refused.length < 12 && sent < 2000) {
          sent++;
          const event = { eventId: randomUUID(), eventType: 'filling', body: 'y'.repeat(Math.floor(random() * 12_000)) };
          const r = await put(site, event);
          if (r.status === 200) acked.set(event.eventId, r.json().hash);
          else {
            isFull(r, 'append');
            refused.push({ eventId: event.eventId, event });
          }
        }
      }));
      injected += refused.length;
      assert.ok(refused.length >= 12, `the disk filled up (${acked.size} stored, ${refused.length} refused)`);
      const events = await allEvents(site);
      assertChain(events, H0);
      const byId = new Map(events.map((e) => [e.eventId, e.hash]));
      const missing = [...acked].filter(([id, hash]) => byId.get(id) !== hash).length;
      lost += missing;
      assert.is(missing, 0, 'every acknowledged append is in the log');
      assert.equal(refused.filter((r) => byId.has(r.eventId)).map((r) => r.eventId), [], 'no refused append is in the log');
      assert.is(events.length, acked.size);
      verifies(site);
      disk.resize(8 * 1024 * 1024);
      for (const { event } of refused) {
        const r = await put(site, event);
        assert.is(r.status, 200, r.text);
      }
      const after = await allEvents(site);
      assert.is(after.length, acked.size + refused.length);
      assertChain(after);
      verifies(site);
    });
  });
  t.run();
}

const report = suite('disk full: faults');
report('should report the full-disk refusals', () => {
  reportFaults('disk full', injected, lost);
});
report.run();
