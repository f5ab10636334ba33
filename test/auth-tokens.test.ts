// Bearer tokens of names passwd does not have: refused like any bad token,
// after the same work as a real one (the secret read, the HMAC), so timing
// tells nobody which names exist. No timings here: the secret is damaged on
// purpose, and both kinds of token must meet it alike.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { ALICE, FRONT_ENDS, siteSuite } from './lib/harness.ts';
import { bearer, tokenFor, whoami } from './lib/auth.ts';

// The same token with another name in it (its signature no longer fits either way).
const renamed = (token: string, name: string) => [Buffer.from(name).toString('base64url'), ...token.split('.').slice(1)].join('.');

for (const fe of FRONT_ENDS) {
  const t = siteSuite(fe, `auth: tokens of unknown users via ${fe.name}`, { users: { 'alice@example.com': 'secret', 'bob@example.com': 'pw' } });

  t('should refuse a token of an unknown name as it refuses a wrong one, after reading the secret for both', async ({ site }) => {
    const { token } = await tokenFor(site, ALICE);
    assert.is(await whoami(site, bearer(token)), 'alice@example.com');
    assert.is(await whoami(site, bearer(renamed(token, 'bob@example.com'))), 401);
    assert.is(await whoami(site, bearer(renamed(token, 'nobody@example.com'))), 401);
    // With the secret unreadable as one, a known and an unknown name fail the same way: both read it.
    writeFileSync(join(site.dataDir, 'token-secret'), 'damaged\n');
    const known = await whoami(site, bearer(renamed(token, 'bob@example.com')));
    const unknown = await whoami(site, bearer(renamed(token, 'nobody@example.com')));
    assert.is(known, 500);
    assert.is(unknown, known);
  });

  t.run();
}
