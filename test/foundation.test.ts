// The request path through every front end: root, info, 401/404/405, HEAD.
import * as assert from 'uvu/assert';
import { ALICE, FRONT_END, FRONT_ENDS, frontEndSuite, siteSuite } from './lib/harness.ts';

for (const fe of FRONT_ENDS) {
  const t = siteSuite(fe, `foundation via ${fe.name}`);

  t('should answer GET / with the version as text', async ({ site }) => {
    const r = await site.request('GET', '/', { auth: ALICE });
    assert.is(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/plain/);
    assert.match(r.text, /^Apie \d+\.\d+\.\d+/);
  });

  t('should answer 401 with a Basic challenge and a JSON error without credentials', async ({ site }) => {
    const r = await site.request('GET', '/');
    assert.is(r.status, 401);
    assert.match(r.headers['www-authenticate'], /^Basic realm="Apie"/);
    assert.is(r.headers['content-type'], 'application/json');
    assert.equal(Object.keys(r.json()), ['status', 'errorMessage']);
    assert.is(r.json().status, 'error');
  });

  t('should refuse a wrong password and an unknown user alike', async ({ site }) => {
    const wrong = await site.request('GET', '/', { auth: 'alice@example.com:nope' });
    const unknown = await site.request('GET', '/', { auth: 'mallory@example.com:secret' });
    assert.is(wrong.status, 401);
    assert.is(unknown.status, 401);
    assert.is(wrong.json().errorMessage, unknown.json().errorMessage);
  });

  t('should answer 404 as JSON for an unknown path', async ({ site }) => {
    const r = await site.request('GET', '/no/such/thing', { auth: ALICE });
    assert.is(r.status, 404);
    assert.is(r.headers['content-type'], 'application/json');
    assert.is(r.json().status, 'error');
  });

  t('should answer 405 with Allow for a known path and another method', async ({ site }) => {
    const r = await site.request('DELETE', '/info', { auth: ALICE });
    assert.is(r.status, 405);
    assert.is(r.headers.allow, 'GET, HEAD, OPTIONS');
    assert.is(r.json().status, 'error');
    const events = await site.request('DELETE', '/events', { auth: ALICE });
    assert.is(events.status, 405);
    assert.is(events.headers.allow, 'GET, PUT, POST, HEAD, OPTIONS');
  });

  t('should answer HEAD like GET without a body', async ({ site }) => {
    const get = await site.request('GET', '/', { auth: ALICE });
    const head = await site.request('HEAD', '/', { auth: ALICE });
    assert.is(head.status, 200);
    assert.is(head.body.length, 0);
    // Apache recomputes Content-Length from the (empty) body of a HEAD and drops it.
    if (site.kind !== 'apache') assert.is(head.headers['content-length'], String(get.body.length));
    assert.is(head.headers['content-type'], get.headers['content-type']);
  });

  t('should show the caller and the configuration in /info, and no secrets', async ({ site }) => {
    const r = await site.request('GET', '/info', { auth: ALICE });
    assert.is(r.status, 200);
    assert.is(r.headers['content-type'], 'application/json');
    const info = r.json();
    assert.is(info.auth.user.email, 'alice@example.com');
    assert.is(info.config.bcryptCost, 10);
    assert.not.match(r.text, /\$2[aby]\$/); // no password hash
    assert.not.match(r.text, /APIE_DATA|PATH|authorization/i); // no environment, no headers
  });
  t.run();
}

{
  const t = siteSuite(FRONT_END.apache, 'apache: the shipped .htaccess');

  t('should route paths under the directory to apie.cgi', async ({ site }) => {
    const dir = site.base.replace(/\/apie\.cgi$/, '');
    const r = await fetch(`${dir}/info`, { headers: { Authorization: `Basic ${Buffer.from(ALICE).toString('base64')}` } });
    assert.is(r.status, 200);
    assert.is(((await r.json()) as any).auth.user.email, 'alice@example.com');
  });

  t('should never serve passwd, apie.json or the .htaccess as files', async ({ site }) => {
    const dir = site.base.replace(/\/apie\.cgi$/, '');
    for (const file of ['apie-data/passwd', 'apie-data/apie.json', '.htaccess']) {
      const r = await fetch(`${dir}/${file}`, { headers: { Authorization: `Basic ${Buffer.from(ALICE).toString('base64')}` } });
      const text = await r.text();
      assert.ok(r.status === 404 || r.status === 403, `${file}: ${r.status}`);
      assert.not.match(text, /\$2[aby]\$|bcryptCost|RewriteRule/, file);
    }
  });
  t.run();
}

for (const fe of FRONT_ENDS) {
  const t = frontEndSuite(fe, `configuration via ${fe.name}`);
  t('should answer 500 naming an unknown key in apie.json, readable by an allowed origin', async () => {
    const origin = 'https://app.example.com';
    const site = await fe.open({ config: { maxEventBytes: 10, colour: 'blue', corsOrigins: [origin] } }).catch((err: Error) => err);
    if (site instanceof Error) {
      // The server refuses to start on a bad configuration: that is the check.
      assert.match(site.message, /unknown key "colour"/);
      return;
    }
    try {
      const r = await site.request('GET', '/', { auth: ALICE, headers: { Origin: origin } });
      assert.is(r.status, 500);
      assert.match(r.json().errorMessage, /unknown key "colour"/);
      // The error is answered like any other: a browser app can read it.
      assert.is(r.headers['access-control-allow-origin'], origin);
      assert.not.match(r.text, /\/tmp\//); // no absolute paths
    } finally {
      await site.close();
    }
  });
  t.run();
}
