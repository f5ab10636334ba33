// The event-stream contract through every front end, at `${E}` and at a
// named stream's `/streams/NAME/events`: appends, the hash chain, ranges and
// paging, conditional requests, idempotent retries, HEAD, wait, verify, and
// bad input that must leave the log unchanged.
import * as assert from 'uvu/assert';
import { ALICE, EVENT_FRONT_ENDS, siteSuite, untilWaiting, waitFor, type Site } from './lib/harness.ts';
import { assertChain, cgiProcess, H0, logHead as headOf, put as putTo, seed as seedAt, sha } from './lib/events.ts';

const UNKNOWN = 'ab'.repeat(32);

for (const fe of EVENT_FRONT_ENDS) for (const E of ['/events', '/streams/todo.list-1/events']) {
  // Each test has its own data directory, and appends the events it needs.
  const t = siteSuite(fe, `events at ${E} via ${fe.name}`, { config: { maxEventBytes: 4096 } });
  const put = (site: Site, event: unknown, headers: Record<string, string> = {}) => putTo(site, event, headers, E);
  const logHead = (site: Site) => headOf(site, E);
  const seed = (site: Site, n: number) => seedAt(site, n, E);
  const get = (site: Site, path: string, headers: Record<string, string> = {}) => site.request('GET', path, { auth: ALICE, headers });

  t('should answer an empty log with [] and HEAD with count 0 and no ETag', async ({ site }) => {
    const r = await get(site, E);
    assert.is(r.status, 200);
    assert.is(r.headers['content-type'], 'application/json');
    assert.equal(r.json(), []);
    assert.is(r.headers.etag, undefined);
    const head = await site.request('HEAD', E, { auth: ALICE });
    assert.is(head.status, 200);
    assert.is(head.body.length, 0);
    assert.is(head.headers['x-apie-count'], '0');
    assert.is(head.headers.etag, undefined);
    assert.is(head.headers['x-apie-hash'], undefined);
  });

  t('should append the first event with If-Match of the empty log and chain it from H(0)', async ({ site }) => {
    const r = await put(site, { eventType: 'todo-added', body: { title: 'milk' } }, { 'If-Match': `"${H0}"` });
    assert.is(r.status, 200, r.text);
    const e = r.json();
    assert.equal(Object.keys(e), ['eventId', 'eventType', 'body', 'createdBy', 'createdAt', 'hash']);
    assert.match(e.eventId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.is(e.createdBy, 'alice@example.com');
    assert.match(e.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.is(r.headers.etag, `"${e.hash}"`);
    assert.is(r.headers['x-apie-hash'], e.hash);
    assertChain([e]);
  });

  t('should chain events, keeping any JSON body and a given eventId', async ({ site }) => {
    const bodies = [{ title: 'milk' }, [1, 'two', null], 'text ü ✓', null, { nested: { deep: [true, 1.5e300] } }];
    const events: any[] = [];
    for (const [i, body] of bodies.entries()) {
      const eventId = i === 1 ? '0b7a1c52-8d9e-4f4a-9c3b-2f1e0d9c8b7a' : undefined;
      const r = await put(site, { eventType: `type-${i}`, body, ...(eventId ? { eventId } : {}) });
      assert.is(r.status, 200, r.text);
      assert.equal(r.json().body, body);
      if (eventId) assert.is(r.json().eventId, eventId);
      events.push(r.json());
    }
    const all = await get(site, E);
    assert.equal(all.json(), events);
    const last = assertChain(all.json());
    assert.is(all.headers.etag, `"${last}"`);
    assert.is(all.headers['x-apie-hash'], last);
  });

  t('should answer HEAD with the count and the last hash', async ({ site }) => {
    const events = await seed(site, 3);
    const head = await site.request('HEAD', E, { auth: ALICE });
    assert.is(head.headers['x-apie-count'], String(events.length));
    assert.is(head.headers.etag, `"${events.at(-1).hash}"`);
    assert.is(head.body.length, 0);
  });

  t('should select with from, after and to, inclusive where the contract says', async ({ site }) => {
    const events = await seed(site, 5);
    const [a, b, c, d, e] = events.map((x) => x.hash);
    const cases: [string, any[]][] = [
      [`from=${a}`, events],
      [`from=${c}`, events.slice(2)],
      [`from=${e}`, events.slice(4)], // the last event alone
      [`after=${a}`, events.slice(1)],
      [`after=${e}`, []], // nothing after the last
      [`after=${H0}`, events], // after the empty log: everything
      [`to=${a}`, events.slice(0, 1)], // the first event alone
      [`to=${e}`, events],
      [`from=${b}&to=${d}`, events.slice(1, 4)],
      [`after=${b}&to=${d}`, events.slice(2, 4)],
      [`from=${d}&to=${b}`, []], // to before from: an empty range
      [`from=${c}&to=${c}`, events.slice(2, 3)],
    ];
    for (const [query, want] of cases) {
      const r = await get(site, `${E}?${query}`);
      assert.is(r.status, 200, query);
      assert.equal(r.json(), want, query);
      assert.is(r.headers.etag, want.length ? `"${want.at(-1).hash}"` : undefined, query);
    }
  });

  t('should answer 404 for an unknown hash and 400 for a malformed one or bad parameters', async ({ site }) => {
    for (const q of [`from=${UNKNOWN}`, `after=${UNKNOWN}`, `to=${UNKNOWN}`, `from=${H0}`]) {
      const r = await get(site, `${E}?${q}`);
      assert.is(r.status, 404, q);
      assert.is(r.json().status, 'error');
    }
    for (const q of ['from=abc', `after=${UNKNOWN.toUpperCase()}`, 'limit=0', 'limit=-1', 'limit=x', `from=${H0}&after=${H0}`,
      'wait=5', `after=${H0}&wait=0`, `after=${H0}&wait=61`, 'colour=blue', 'limit=1&limit=2']) {
      const r = await get(site, `${E}?${q}`);
      assert.is(r.status, 400, q);
      assert.is(r.json().status, 'error');
    }
  });

  t('should page with limit and a Link to the next page until the end', async ({ site }) => {
    const events = await seed(site, 5);
    const seen: any[] = [];
    let path: string | undefined = `${E}?limit=2`;
    for (let page = 0; path && page < 10; page++) {
      const r = await get(site, path);
      assert.is(r.status, 200);
      assert.ok(r.json().length <= 2);
      seen.push(...r.json());
      assert.is(r.headers.etag, `"${r.json().at(-1).hash}"`);
      const link = r.headers.link;
      if (!link) break;
      const m = /^<(.+)>; rel="next"$/.exec(link);
      assert.ok(m, link);
      const url = new URL(m![1]);
      assert.is(url.searchParams.get('after'), r.json().at(-1).hash);
      assert.is(url.searchParams.get('limit'), '2');
      assert.ok(url.pathname.endsWith(E), url.pathname); // the next page of the same stream
      if (site.kind !== 'cgi') assert.is(m![1].slice(0, site.base.length), site.base); // absolute, on this site
      path = `${E}${url.search}`;
    }
    assert.equal(seen, events);
    // Exactly as many as remain: no Link.
    const exact = await get(site, `${E}?limit=${events.length}`);
    assert.is(exact.json().length, events.length);
    assert.is(exact.headers.link, undefined);
    // A Link keeps the to bound.
    const bounded = await get(site, `${E}?limit=1&to=${events[2].hash}`);
    assert.match(bounded.headers.link, `to=${events[2].hash}`);
  });

  t('should answer 304 to If-None-Match with the would-be ETag, in any spelling', async ({ site }) => {
    const events = await seed(site, 2);
    const last = events.at(-1).hash;
    for (const inm of [`"${last}"`, last, `W/"${last}"`, `"${UNKNOWN}", "${last}"`, '*']) {
      const r = await get(site, E, { 'If-None-Match': inm });
      assert.is(r.status, 304, inm);
      assert.is(r.body.length, 0);
    }
    const other = await get(site, E, { 'If-None-Match': `"${events[0].hash}"` });
    assert.is(other.status, 200);
    const page = await get(site, `${E}?to=${events[0].hash}`, { 'If-None-Match': `"${events[0].hash}"` });
    assert.is(page.status, 304);
  });

  t('should answer GET /events/H with one event and its ETag', async ({ site }) => {
    const events = await seed(site, 2);
    for (const e of [events[0], events.at(-1)]) {
      const r = await get(site, `${E}/${e.hash}`);
      assert.is(r.status, 200);
      assert.equal(r.json(), e);
      assert.is(r.headers.etag, `"${e.hash}"`);
      const again = await get(site, `${E}/${e.hash}`, { 'If-None-Match': `"${e.hash}"` });
      assert.is(again.status, 304);
    }
    assert.is((await get(site, `${E}/${UNKNOWN}`)).status, 404);
    assert.is((await get(site, `${E}/${H0}`)).status, 404);
    assert.is((await get(site, `${E}/not-a-hash`)).status, 400);
  });

  t('should honour If-Match right (quoted, unquoted, W/, *) and refuse a wrong one with 412', async ({ site }) => {
    const events = await seed(site, 1);
    for (const form of [(h: string) => h, (h: string) => `"${h}"`, (h: string) => `W/"${h}"`, () => '*']) {
      const last = events.at(-1).hash;
      const r = await put(site, { eventType: 'if-match', body: form('x') }, { 'If-Match': form(last) });
      assert.is(r.status, 200, form(last));
      assert.is(r.json().hash, sha(last, JSON.stringify((({ hash, ...rest }) => rest)(r.json()))));
      events.push(r.json());
    }
    const before = await logHead(site);
    for (const wrong of [events.at(-2).hash, H0, UNKNOWN]) {
      const r = await put(site, { eventType: 'if-match', body: 'stale' }, { 'If-Match': `"${wrong}"` });
      assert.is(r.status, 412);
      assert.is(r.json().status, 'error');
      // The current last hash, for a retry.
      assert.is(r.headers['x-apie-hash'], before.hash);
      assert.is(r.headers.etag, `"${before.hash}"`);
    }
    assert.is((await put(site, { eventType: 'x', body: 1 }, { 'If-Match': 'nonsense' })).status, 400);
    assert.equal(await logHead(site), before);
  });

  t('should answer a retried eventId with the stored event, and other content with 409', async ({ site }) => {
    const eventId = '7d444840-9dc0-41d3-aa4b-e5c3f3a4e6f1';
    const first = await put(site, { eventType: 'paid', body: { amount: 5, currency: 'EUR' }, eventId });
    assert.is(first.status, 200);
    const before = await logHead(site);
    // Same content (keys in another order, a stale If-Match): the same event, nothing appended.
    const retry = await put(site, { eventId, body: { currency: 'EUR', amount: 5 }, eventType: 'paid' }, { 'If-Match': H0 });
    assert.is(retry.status, 200);
    assert.equal(retry.json(), first.json());
    assert.is(retry.headers.etag, first.headers.etag);
    const upper = await put(site, { eventType: 'paid', body: { amount: 5, currency: 'EUR' }, eventId: eventId.toUpperCase() });
    assert.equal(upper.json(), first.json());
    for (const other of [{ eventType: 'paid', body: { amount: 6, currency: 'EUR' } }, { eventType: 'refunded', body: { amount: 5, currency: 'EUR' } }]) {
      const r = await put(site, { ...other, eventId });
      assert.is(r.status, 409);
      assert.is(r.json().status, 'error');
    }
    assert.equal(await logHead(site), before);
  });

  t('should refuse malformed events with 400 naming the problem, and leave the log unchanged', async ({ site }) => {
    const before = await logHead(site);
    const cases: [string, RegExp][] = [
      ['{"eventType": "x", "body": ', /JSON/],
      ['', /JSON/],
      ['[1,2]', /object/],
      ['"text"', /object/],
      ['null', /object/],
      ['{"body": 1}', /eventType/],
      ['{"eventType": "", "body": 1}', /eventType/],
      ['{"eventType": 7, "body": 1}', /eventType/],
      [JSON.stringify({ eventType: 'x'.repeat(257), body: 1 }), /eventType/],
      ['{"eventType": "x"}', /body/],
      ['{"eventType": "x", "body": 1, "eventId": "not-a-uuid"}', /eventId/],
      ['{"eventType": "x", "body": 1, "eventId": 12}', /eventId/],
      ['{"eventType": "x", "body": 1, "hash": "ab"}', /hash/],
      ['{"eventType": "x", "body": 1, "createdBy": "mallory"}', /createdBy/],
    ];
    for (const [body, message] of cases) {
      const r = await put(site, body);
      assert.is(r.status, 400, body.slice(0, 60));
      assert.match(r.json().errorMessage, message, body.slice(0, 60));
    }
    const big = await put(site, { eventType: 'big', body: 'x'.repeat(5000) });
    assert.is(big.status, 413);
    assert.is(big.json().status, 'error');
    // 256 characters is still fine (counted as characters, not bytes).
    const edge = await put(site, { eventType: 'é'.repeat(256), body: 1 });
    assert.is(edge.status, 200, edge.text);
    const after = await logHead(site);
    assert.is(after.count, before.count + 1);
  });

  t('should hold a wait request until another process appends, and answer [] when none does', async ({ site }) => {
    const [{ hash }] = await seed(site, 1);
    let answered = false;
    const waiting = get(site, `${E}?after=${hash}&wait=60`).finally(() => (answered = true));
    await untilWaiting(site.dataDir);
    assert.not.ok(answered, 'held until an append');
    const appended = await cgiProcess(site, 'PUT', E, JSON.stringify({ eventType: 'woke', body: 1 }));
    assert.is(appended.reply!.status, 200);
    // Woken by the append: well before its 60 s run out.
    await waitFor('the waiting request to be answered', () => answered, 30_000);
    const r = await waiting;
    assert.is(r.status, 200);
    assert.equal(r.json(), [appended.reply!.json()]);
    const last = appended.reply!.json().hash;
    const idle = await get(site, `${E}?after=${last}&wait=1`);
    assert.is(idle.status, 200);
    assert.equal(idle.json(), []);
  });

  t('should verify the chain and report count and last hash', async ({ site }) => {
    await seed(site, 3);
    const head = await logHead(site);
    const r = await site.request('POST', `${E}/verify`, { auth: ALICE });
    assert.is(r.status, 200, r.text);
    assert.equal(r.json(), { status: 'ok', count: head.count, hash: head.hash });
    const all = await get(site, E);
    assert.is(assertChain(all.json()), head.hash);
  });

  t('should ask for credentials before anything else', async ({ site }) => {
    assert.is((await site.request('GET', E)).status, 401);
    assert.is((await site.request('PUT', E, { body: '{"eventType":"x","body":1}' })).status, 401);
  });

  t.run();
}
