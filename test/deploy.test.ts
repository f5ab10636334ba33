// The README's *Deploy to shared hosting*, run as written on a suEXEC host:
// the commands are taken from the README's own code blocks and run by bash
// as the site's account, with only the host name and the printed password
// filled in. If the README and the program drift apart, this fails.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, lstatSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EXE, HTACCESS, ROOT, SUEXEC_MISSING, suexecBase, suexecUser, treePaths } from './lib/harness.ts';
import { withAccountHome, type Account } from './lib/suexec.ts';

/** The bash blocks of a README section, unindented. */
function bashBlocks(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README has no "${heading}"`);
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^( *)```bash\n([\s\S]*?)^\1```$/gm)].map(([, indent, body]) =>
    body.split('\n').map((line) => line.slice(indent.length)).join('\n'));
}

const HAS_CURL = spawnSync('curl', ['--version']).status === 0;

if (SUEXEC_MISSING !== null || !HAS_CURL) {
  console.log(`SKIPPED: the README's deploy commands (${SUEXEC_MISSING ?? 'curl is not installed'})`);
} else {
  const blocks = bashBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'), '## Deploy to shared hosting');
  const pick = (what: string, test: (b: string) => boolean) => {
    const found = blocks.filter(test);
    assert.is(found.length, 1, `one README block ${what}`);
    return found[0];
  };
  const setup = pick('running init', (b) => b.includes('./apie.cgi init'));
  const tryIt = pick('trying it with curl', (b) => b.trimStart().startsWith('curl'));
  const privately = pick('for suEXEC', (b) => b.includes('chmod -R go='));

  // bash as the account, in its home directory, with the environment a login gives it.
  const asAccount = (account: Account, script: string, input = '') => {
    const r = spawnSync('bash', ['-eu', '-o', 'pipefail', '-c', script], {
      cwd: account.home,
      uid: account.uid,
      gid: account.gid,
      env: { HOME: account.home, USER: account.name, LOGNAME: account.name, PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' },
      input,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.is(r.status, 0, `${script}\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };

  const t = suite('deploy: the README on a suEXEC host');

  t('should answer 200 with the printed password after the README\'s commands, also once the data is private', async () => {
    const account = suexecUser();
    const base = await suexecBase();
    const cgiBin = join(account.docroot, 'cgi-bin');
    const data = join(account.home, 'apie-data');
    await withAccountHome(account, async () => {
      rmSync(cgiBin, { recursive: true, force: true });
      rmSync(data, { recursive: true, force: true });
      try {
        // Step 2, the upload: the files arrive owned by the account, as an FTP upload leaves them (0644).
        mkdirSync(cgiBin, { mode: 0o755 });
        for (const [from, to] of [[EXE, 'apie.cgi'], [HTACCESS, '.htaccess']]) {
          copyFileSync(from, join(cgiBin, to));
          chmodSync(join(cgiBin, to), 0o644);
          chownSync(join(cgiBin, to), account.uid, account.gid);
        }
        chownSync(cgiBin, account.uid, account.gid);

        const out = asAccount(account, setup);
        const password = /created user "admin" with password (\S+)/.exec(out)?.[1];
        assert.ok(password, out);
        // init prints the same lines for this account as the README gives.
        assert.match(out, `echo ${data} > ${cgiBin}/apie-data.path`);
        assert.match(out, `chmod -R go= ${data}`);
        const curl = tryIt.replaceAll('https://example.com', base).replaceAll('PASSWORD', password);
        const info = () => JSON.parse(asAccount(account, curl));
        assert.is(info().auth?.user?.email, 'admin');

        asAccount(account, `cd ~/public_html/cgi-bin && ./apie.cgi user add alice@example.com`, 'alices password\n');
        const alice = asAccount(account, `curl -s -u 'alice@example.com:alices password' ${base}/cgi-bin/info`);
        assert.is(JSON.parse(alice).auth?.user?.email, 'alice@example.com');

        asAccount(account, privately);
        const open = treePaths(data).filter((p) => (lstatSync(p).mode & 0o077) !== 0);
        assert.equal(open, [], 'private to the account');
        assert.is(info().auth?.user?.email, 'admin');
      } finally {
        rmSync(cgiBin, { recursive: true, force: true });
        rmSync(data, { recursive: true, force: true });
      }
    });
  });
  t.run();
}
