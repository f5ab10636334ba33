// CGI under suEXEC, as most shared hosts run it: the program runs as the
// site's account with a short list of safe variables, so SetEnv APIE_DATA
// never arrives. Apie finds its data anyway (apie-data.path, ~/apie-data),
// says how to fix it when it cannot (500, never 401), and keeps a data
// directory private to the account private, verify included.
import { appendFileSync, chmodSync, lstatSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, FRONT_ENDS, SUEXEC_FRONT_END, suexecUser, treePaths, type Site } from './lib/harness.ts';
import { withAccountHome } from './lib/suexec.ts';
import { put } from './lib/events.ts';

const apache = FRONT_ENDS.find((f) => f.name === 'apache');

if (apache) {
  const t = suite('apache: SetEnv APIE_DATA');
  t('should pass SetEnv APIE_DATA from the .htaccess on to apie.cgi without suEXEC', async () => {
    const site = await apache.open();
    try {
      // The data moves away from beside the program; only SetEnv can name it.
      const moved = join(site.dataDir, '..', '..', 'moved-data');
      renameSync(site.dataDir, moved);
      appendFileSync(join(site.programDir!, '.htaccess'), `\nSetEnv APIE_DATA ${moved}\n`);
      const r = await site.request('GET', '/info', { auth: ALICE });
      assert.is(r.status, 200, r.text);
    } finally {
      await site.close();
    }
  });
  t.run();
}

if (SUEXEC_FRONT_END) {
  const suexec = SUEXEC_FRONT_END;
  const t = suite('suexec: the data directory');

  t('should answer 500 naming the fix when no data directory is found, though .htaccess sets APIE_DATA', async () => {
    const account = suexecUser();
    const site = await suexec.open({ noPointer: true });
    try {
      await withAccountHome(account, async () => {
        rmSync(join(account.home, 'apie-data'), { recursive: true, force: true });
        // The README's old advice: suEXEC drops the variable, and this used to be a 401.
        appendFileSync(join(site.programDir!, '.htaccess'), `\nSetEnv APIE_DATA ${site.dataDir}\n`);
        const r = await site.request('GET', '/info', { auth: ALICE });
        assert.is(r.status, 500, r.text);
        assert.match(r.json().errorMessage, /^no data directory found: run `apie\.cgi init` as this site's account, or write the data directory's path into apie-data\.path beside apie\.cgi$/);
      });
    } finally {
      await site.close();
    }
  });

  t('should find ~/apie-data of the site\'s account without apie-data.path', async () => {
    const account = suexecUser();
    const site = await suexec.open({ noPointer: true });
    try {
      await withAccountHome(account, async () => {
        const home = join(account.home, 'apie-data');
        rmSync(home, { recursive: true, force: true });
        renameSync(site.dataDir, home);
        try {
          const r = await site.request('GET', '/info', { auth: ALICE });
          assert.is(r.status, 200, r.text);
          assert.is(r.json().auth.user.email, 'alice@example.com');
        } finally {
          rmSync(home, { recursive: true, force: true });
        }
      });
    } finally {
      await site.close();
    }
  });
  t.run();

  const m = suite<{ site: Site }>('suexec: modes');
  m.before.each(async (ctx) => {
    // Configured wider than the operator made the files: verify must not undo that.
    ctx.site = await suexec.open({ config: { fileMode: '0640', dirMode: '0750' } });
  });
  m.after.each(async (ctx) => {
    await ctx.site.close();
  });

  m('should keep a data directory private to the account (0700/0600) through verify, and narrow wider modes', async ({ site }) => {
    assert.is((await put(site, { eventType: 'e', body: 1 })).status, 200);
    const up = await site.request('PUT', '/storage/a.txt', { auth: ALICE, body: 'private bytes' });
    assert.is(up.status, 200, up.text);
    assert.is((await site.request('POST', '/auth/token', { auth: ALICE })).status, 200);
    for (const p of treePaths(site.dataDir)) chmodSync(p, lstatSync(p).isDirectory() ? 0o700 : 0o600);
    const log = join(site.dataDir, 'events', 'log');
    chmodSync(log, 0o666); // wider than fileMode: narrowed to it
    const cli = site.cli(['verify']);
    assert.is(cli.status, 0, cli.stderr);
    for (const path of ['/events/verify', '/storage/verify']) {
      const r = await site.request('POST', path, { auth: ALICE });
      assert.is(r.status, 200, `${path}: ${r.text}`);
    }
    assert.is(lstatSync(log).mode & 0o777, 0o640);
    const widened = treePaths(site.dataDir).filter((p) => p !== log && (lstatSync(p).mode & 0o077) !== 0);
    assert.equal(widened, [], 'nothing but the log may be readable by group or others');
    // Still the account's: the site keeps working.
    assert.is((await put(site, { eventType: 'e', body: 2 })).status, 200);
  });
  m.run();
}
