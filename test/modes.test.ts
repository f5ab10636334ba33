// A data directory shared with the web server's group, as the README sets it
// up without suEXEC when you cannot become www-data: owned by your account,
// group www-data with the setgid bit, modes 0660/0770. Whatever the web server
// and your command line create keeps that group, so each can keep writing
// what the other made.
import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ALICE, chownTree, EXE, FRONT_ENDS, SUEXEC_MISSING, suexecUser, treePaths, WEB_USER } from './lib/harness.ts';
import { put } from './lib/events.ts';

const apache = FRONT_ENDS.find((f) => f.name === 'apache');

// Needs a real account besides www-data that shares its group: the throwaway suEXEC one.
if (apache && WEB_USER && SUEXEC_MISSING === null) {
  const t = suite('modes: a data directory shared with the web server\'s group');

  t('should keep the group on everything the web server and the account create, so both keep writing', async () => {
    const account = suexecUser();
    const www = WEB_USER!;
    const site = await apache.open({ config: { fileMode: '0660', dirMode: '0770', bcryptCost: 4 } });
    // The account's command line, as a member of the web server's group.
    const cli = (args: string[], input = '') => spawnSync('setpriv', ['--reuid', String(account.uid), '--regid', String(account.gid), '--groups', String(www.gid), EXE, ...args], {
      env: { PATH: process.env.PATH ?? '', APIE_DATA: site.dataDir },
      input,
      encoding: 'utf8',
    });
    try {
      // The README's recipe: chgrp -R www-data, chmod -R g+rwX, g+s on directories.
      chownTree(site.dataDir, account.uid, www.gid);
      for (const p of treePaths(site.dataDir)) chmodSync(p, lstatSync(p).isDirectory() ? 0o2770 : 0o660);
      assert.is((await put(site, { eventType: 'e', body: 1 })).status, 200);
      assert.is((await site.request('PUT', '/storage/a.txt', { auth: ALICE, body: 'shared' })).status, 200);
      // The account replaces passwd and rebuilds the lookup table the web server made.
      const add = cli(['user', 'add', 'bob'], 'bobs-password\n');
      assert.is(add.status, 0, add.stderr);
      rmSync(join(site.dataDir, 'events', 'table'));
      const verify = cli(['verify']);
      assert.is(verify.status, 0, verify.stderr);
      // The web server still reads and writes all of it.
      assert.is((await site.request('GET', '/info', { auth: 'bob:bobs-password' })).status, 200);
      assert.is((await put(site, { eventType: 'e', body: 2 })).status, 200);
      assert.is((await site.request('PUT', '/storage/b.txt', { auth: ALICE, body: 'more' })).status, 200);
      for (const p of treePaths(site.dataDir)) {
        const s = statSync(p);
        assert.is(s.gid, www.gid, `${p}: group`);
        if (s.isDirectory()) assert.is(s.mode & 0o2000, 0o2000, `${p}: setgid`);
      }
    } finally {
      await site.close();
    }
  });
  t.run();
}
