// The example app (src/example) in headless Chromium, against `apie serve`
// (the app on another origin, through CORS) and against apie.cgi under Apache
// (the app in a folder beside cgi-bin, as on shared hosting): two users see
// each other's items live, converge after both were offline, keep pending
// items through an offline reload, share a photo, and lose nothing when the
// server is killed in the middle of a sync. Screenshots of each step go to
// $APIE_SCREENSHOTS when set (kept), else to a temporary directory.
//
// Chromium is Debian's (/usr/bin/chromium) driven by playwright-core, which
// never downloads a browser of its own.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ALICE, EXE, FRONT_ENDS, ROOT, freePort, giveToWebUser, makeDataDir, tempDir } from './lib/harness.ts';
import { USERS, eventually } from './lib/client.ts';

// What the functions run in the page see; the project is typed for Node, not the DOM.
declare const document: any;
declare const navigator: any;

const CHROMIUM = '/usr/bin/chromium';
const EXAMPLE = join(ROOT, 'src', 'example');
const SHOTS = process.env.APIE_SCREENSHOTS ?? tempDir('apie-screenshots-');
mkdirSync(SHOTS, { recursive: true });
if (!process.env.APIE_SCREENSHOTS) process.once('exit', () => rmSync(SHOTS, { recursive: true, force: true }));
else console.log(`browser: screenshots in ${SHOTS}`);

const [ALICE_USER, ALICE_PASSWORD] = ALICE.split(':');
const BOB_USER = 'bob@example.com';
const BOB_PASSWORD = USERS[BOB_USER];

/** Where the app runs and how to reach its Apie. */
interface Deployment {
  kind: string;
  /** The app's page. */
  app: string;
  /** The Apie's base URL. */
  api: string;
  dataDir: string;
  /** Kills the server with SIGKILL and starts it again on the same port and data (server only). */
  crash?(): Promise<void>;
  close(): Promise<void>;
}

// ---- the two deployments -----------------------------------------------------

function serveOn(dataDir: string, port: number): Promise<ChildProcess> {
  const child = spawn(EXE, ['serve', '--host', '127.0.0.1', '--port', String(port), '--data', dataDir, '--workers', '1', '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`apie serve exited ${code}: ${out}`)));
  });
}

// The example's files, with the Apie's URL written into index.html.
function staticServer(api: string): Promise<{ server: Server; origin: string }> {
  const types: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css' };
  const server = createServer((req, res) => {
    const name = new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/$/, '/index.html').slice(1);
    const file = join(EXAMPLE, name);
    if (!/^[a-z]+\.(html|js|css)$/.test(name) || !existsSync(file)) return void res.writeHead(404).end();
    let body = readFileSync(file, 'utf8');
    if (name === 'index.html') body = body.replace(/(<meta name="apie-url" content=")[^"]*/, `$1${api}`);
    res.writeHead(200, { 'Content-Type': types[extname(name)], 'Cache-Control': 'no-cache' }).end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` })));
}

// The app on its own origin, the Apie (`apie serve`) on another: CORS as configured.
async function serverDeployment(): Promise<Deployment> {
  const parent = tempDir();
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  const { server, origin } = await staticServer(api);
  const dataDir = makeDataDir(parent, { users: USERS, config: { corsOrigins: [origin] } });
  let child = await serveOn(dataDir, port);
  return {
    kind: 'server',
    app: `${origin}/`,
    api,
    dataDir,
    async crash() {
      await new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGKILL');
      });
      child = await serveOn(dataDir, port);
    },
    async close() {
      child.kill('SIGTERM');
      await new Promise((resolve) => server.close(resolve));
      rmSync(parent, { recursive: true, force: true });
    },
  };
}

// The app in a folder beside cgi-bin, as the README tells shared hosting to do.
async function apacheDeployment(): Promise<Deployment> {
  const site = await FRONT_ENDS.find((fe) => fe.name === 'apache')!.open({ users: USERS });
  const siteDir = join(site.dataDir, '..', '..');
  cpSync(EXAMPLE, join(siteDir, 'todo'), { recursive: true });
  giveToWebUser(join(siteDir, 'todo'));
  return {
    kind: 'apache',
    app: site.base.replace(/cgi-bin\/apie\.cgi$/, 'todo/'),
    api: site.base,
    dataDir: site.dataDir,
    close: () => site.close(),
  };
}

// ---- driving the app -----------------------------------------------------------

async function login(context: BrowserContext, d: Deployment, user: string, password: string): Promise<Page> {
  const page = await context.newPage();
  const open = new Set<string>();
  page.on('request', (r) => open.add(`${r.method()} ${r.url()}`));
  page.on('requestfinished', (r) => open.delete(`${r.method()} ${r.url()}`));
  page.on('requestfailed', (r) => open.delete(`${r.method()} ${r.url()}`));
  await page.goto(d.app);
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await page.click('#login button');
  // The page reloads once logged in: a locator, unlike a function, lives through that.
  await page.locator('#main:visible, #login-error:not(:empty)').first().waitFor().catch(async (err) => {
    throw new Error(`${err.message}\nunanswered: ${[...open].join(', ')}\npage: ${(await page.content()).slice(0, 300)}`);
  });
  const refused = await page.textContent('#login-error');
  if (refused) throw new Error(`${user} could not log in: ${refused}`);
  // Offline starts need the service worker in control and the first catch-up done.
  await page.waitForFunction(() => navigator.serviceWorker?.controller !== null && document.body.dataset.pending === '0');
  return page;
}

async function add(page: Page, title: string): Promise<void> {
  await page.fill('#title', title);
  await page.press('#title', 'Enter');
  await item(page, title).waitFor();
}

const item = (page: Page, title: string) => page.locator('#items li', { has: page.locator(`.title:text-is("${title}")`) });

async function list(page: Page): Promise<{ title: string; done: boolean }[]> {
  return page.$$eval('#items li', (lis) => lis.map((li: any) => ({ title: li.querySelector('.title')!.textContent!, done: li.querySelector('input[type=checkbox]').checked })));
}

const synced = (page: Page) => page.waitForFunction(() => document.body.dataset.pending === '0' && !document.querySelector('li.pending'));

let shot = 0;
async function screenshot(page: Page, d: Deployment, name: string): Promise<void> {
  const file = join(SHOTS, `${String(++shot).padStart(2, '0')}-${d.kind}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  assert.ok(statSync(file).size > 1000, `screenshot ${name} has content`);
}

async function apiLog(d: Deployment): Promise<any[]> {
  const res = await fetch(`${d.api}/events`, { headers: { Authorization: `Basic ${btoa(ALICE)}` } });
  return (await res.json()) as any[];
}

async function verify(d: Deployment): Promise<void> {
  const res = await fetch(`${d.api}/events/verify`, { method: 'POST', headers: { Authorization: `Basic ${btoa(ALICE)}` } });
  assert.is(res.status, 200, await res.clone().text());
  const log = await apiLog(d);
  assert.is(((await res.json()) as { count: number }).count, log.length);
  assert.is(new Set(log.map((e) => e.eventId)).size, log.length, 'no event stored twice');
}

// ---- the suites -----------------------------------------------------------------

const deployments = [serverDeployment, ...(FRONT_ENDS.some((fe) => fe.name === 'apache') ? [apacheDeployment] : [])];
if (!existsSync(CHROMIUM)) console.log(`SKIPPED: browser tests (${CHROMIUM} is not installed; .ci/run installs Debian's chromium)`);

for (const deploy of existsSync(CHROMIUM) ? deployments : []) {
  const name = deploy === serverDeployment ? 'server' : 'apache';
  const t = suite<{ browser: Browser; d: Deployment; contexts: BrowserContext[] }>(`example app in chromium via ${name}`);
  t.before(async (ctx) => {
    const { chromium } = await import('playwright-core');
    ctx.browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  t.after(async (ctx) => {
    await ctx.browser.close();
  });
  // A fresh deployment and fresh browser contexts (storage, service workers) for each test.
  t.before.each(async (ctx) => {
    ctx.d = await deploy();
    ctx.contexts = [];
  });
  t.after.each(async (ctx) => {
    for (const c of ctx.contexts) await c.close();
    await ctx.d.close();
  });
  const context = async (ctx: { browser: Browser; contexts: BrowserContext[] }, opts: Parameters<Browser['newContext']>[0] = {}) => {
    const c = await ctx.browser.newContext({ viewport: { width: 560, height: 640 }, ...opts });
    c.setDefaultTimeout(20_000);
    // What the page says goes to the test's output, so a failure explains
    // itself; failed requests are what going offline is about, not news.
    const expected = /^Failed to load resource|^Access to fetch at .*\/streams'|^Service Worker registration blocked/;
    c.on('console', (m) => {
      if ((m.type() === 'error' || m.type() === 'warning') && !expected.test(m.text())) console.log(`browser ${m.type()}: ${m.text()}`);
    });
    c.on('weberror', (e) => console.log(`browser error: ${e.error().message}`));
    ctx.contexts.push(c);
    return c;
  };

  t('should show each user\'s items to the other live, and refuse a wrong password', async (ctx) => {
    const { d } = ctx;
    const stranger = await (await context(ctx)).newPage();
    await stranger.goto(d.app);
    await stranger.fill('input[name=user]', ALICE_USER);
    await stranger.fill('input[name=password]', 'wrong');
    await stranger.click('#login button');
    await stranger.locator('#login-error:text("Wrong user name or password.")').waitFor();
    await screenshot(stranger, d, 'wrong-password');
    const alice = await login(await context(ctx), d, ALICE_USER, ALICE_PASSWORD);
    const bob = await login(await context(ctx), d, BOB_USER, BOB_PASSWORD);
    await add(alice, 'milk');
    await item(bob, 'milk').waitFor();
    await add(bob, 'eggs');
    await item(alice, 'eggs').waitFor();
    await item(alice, 'milk').locator('input[type=checkbox]').check();
    await bob.waitForFunction(() => document.querySelector('#items li input[type=checkbox]')?.checked === true);
    await synced(alice);
    await synced(bob);
    assert.equal(await list(alice), await list(bob));
    assert.equal(await list(bob), [{ title: 'milk', done: true }, { title: 'eggs', done: false }]);
    await screenshot(bob, d, 'live');
  });

  t('should converge after both users were offline, with a log that verifies and no duplicates', async (ctx) => {
    const { d } = ctx;
    const [ca, cb] = [await context(ctx), await context(ctx)];
    const alice = await login(ca, d, ALICE_USER, ALICE_PASSWORD);
    const bob = await login(cb, d, BOB_USER, BOB_PASSWORD);
    await add(alice, 'milk');
    await item(bob, 'milk').waitFor();
    await ca.setOffline(true);
    await cb.setOffline(true);
    await add(alice, 'bread');
    await item(alice, 'milk').locator('input[type=checkbox]').check();
    await add(bob, 'butter');
    await add(bob, 'jam');
    await item(bob, 'jam').locator('input[type=checkbox]').check();
    // Offline for real: the other side has seen none of it.
    assert.ok(Number(await alice.evaluate(() => document.body.dataset.pending)) >= 2);
    assert.is(await item(alice, 'butter').count(), 0);
    assert.is(await item(bob, 'bread').count(), 0);
    await screenshot(alice, d, 'offline-alice');
    await screenshot(bob, d, 'offline-bob');
    await ca.setOffline(false);
    await cb.setOffline(false);
    for (const page of [alice, bob]) {
      await synced(page);
      await page.waitForFunction(() => document.querySelectorAll('#items li').length === 4);
    }
    await eventually(async () => JSON.stringify(await list(alice)) === JSON.stringify(await list(bob)), 'the two lists to be the same');
    const final = await list(alice);
    assert.equal(final.map((i) => i.title).sort(), ['bread', 'butter', 'jam', 'milk']);
    assert.equal(final.filter((i) => i.done).map((i) => i.title).sort(), ['jam', 'milk']);
    await screenshot(alice, d, 'converged');
    await verify(d);
    assert.is((await apiLog(d)).length, 6, '4 added, 2 ticked, each once');
  });

  t('should keep pending items through a reload while offline', async (ctx) => {
    const { d } = ctx;
    const ca = await context(ctx);
    const alice = await login(ca, d, ALICE_USER, ALICE_PASSWORD);
    await add(alice, 'milk');
    await synced(alice);
    await ca.setOffline(true);
    await add(alice, 'bread');
    await add(alice, 'cheese');
    await alice.reload();
    await item(alice, 'cheese').waitFor();
    // The synced item comes from the cached projection, the others from the queue.
    assert.equal((await list(alice)).map((i) => i.title), ['milk', 'bread', 'cheese']);
    assert.is(await alice.locator('li.pending').count(), 2);
    await screenshot(alice, d, 'reloaded-offline');
    await ca.setOffline(false);
    await synced(alice);
    assert.equal((await apiLog(d)).map((e) => e.body.title), ['milk', 'bread', 'cheese']);
    await verify(d);
  });

  t('should upload a photo and show it to the other user', async (ctx) => {
    const { d } = ctx;
    const alice = await login(await context(ctx), d, ALICE_USER, ALICE_PASSWORD);
    const bob = await login(await context(ctx), d, BOB_USER, BOB_PASSWORD);
    await add(alice, 'flowers');
    await item(bob, 'flowers').waitFor();
    // A real image: a screenshot of the page itself.
    const png = await alice.screenshot({ clip: { x: 0, y: 0, width: 200, height: 120 } });
    await item(alice, 'flowers').locator('input[type=file]').setInputFiles({ name: 'flowers.png', mimeType: 'image/png', buffer: png });
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => {
        const img = document.querySelector('img.photo');
        return img !== null && img.complete && img.naturalWidth === 200;
      });
    }
    await screenshot(bob, d, 'photo');
    const event = (await apiLog(d)).find((e) => e.eventType === 'todo-photo');
    const blob = await fetch(`${d.api}/storage/${event.body.photo}`, { headers: { Authorization: `Basic ${btoa(ALICE)}` } });
    assert.equal(Buffer.from(await blob.arrayBuffer()), png);
    assert.is(blob.headers.get('content-type'), 'image/png');
  });

  if (name === 'server') {
    t('should lose nothing when the server is killed with SIGKILL in the middle of a sync', async (ctx) => {
      const { d } = ctx;
      // No service worker here: the test intercepts the page's own requests.
      const ca = await context(ctx, { serviceWorkers: 'block' });
      const page = await ca.newPage();
      await page.goto(d.app);
      await page.fill('input[name=user]', ALICE_USER);
      await page.fill('input[name=password]', ALICE_PASSWORD);
      await page.click('#login button');
      await page.locator('#main').waitFor();
      await synced(page);
      await ca.setOffline(true);
      const titles = Array.from({ length: 20 }, (_, i) => `item ${i + 1}`);
      for (const title of titles) await add(page, title);
      // The second push (after one single event, the client sends the rest as
      // one batch) reaches the server and is stored; then the server dies
      // before its answer gets out.
      let pushes = 0;
      let crashed: Promise<void> | undefined;
      await page.route(`${d.api}/events`, async (route) => {
        if (route.request().method() !== 'POST' || ++pushes !== 2) return route.continue();
        await route.fetch();
        crashed = d.crash!();
        await route.abort('connectionreset');
      });
      await ca.setOffline(false);
      await eventually(() => crashed !== undefined, 'the crash in the middle of the sync');
      await crashed;
      await screenshot(page, d, 'after-crash');
      await synced(page);
      // Whether by a retried push or by reading the batch back, every item is
      // acknowledged once: nothing lost, nothing twice.
      const log = await apiLog(d);
      assert.equal(log.map((e) => e.body.title), titles);
      await verify(d);
      await screenshot(page, d, 'recovered');
    });
  }

  t.run();
}
