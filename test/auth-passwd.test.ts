// The passwd module on its own: parsing every line shape, and rewriting the
// file under its lock without losing lines it does not understand.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { defaults } from '../src/config.ts';
import { parsePasswd, passwordProblem, updatePasswd, validName } from '../src/passwd.ts';

const H = '$2y$05$' + 'a'.repeat(53);
const H2 = '$2b$10$' + 'b'.repeat(53);

const p = suite('passwd: parsing');

p('should read htpasswd and original-Apie lines, CRLF and blank lines', () => {
  const { users, problems } = parsePasswd(`ann:${H}\r\n\n  \nben:${H2}:Ben: the builder\n`);
  assert.equal(problems, []);
  assert.equal([...users.values()], [
    { name: 'ann', hash: H, info: '' },
    { name: 'ben', hash: H2, info: 'Ben: the builder' },
  ]);
});

p('should report each malformed line by number and let nobody in through it', () => {
  const bad = ['nocolon', `:${H}`, 'ann:', 'ann:plaintext', `ann:$2x$05$${'a'.repeat(53)}`, `ann:$2b$05$${'a'.repeat(52)}`, `ann:${H}x`, `an\x01n:${H}`];
  const { users, problems } = parsePasswd([...bad, `ok:${H}`].join('\n'));
  assert.equal([...users.keys()], ['ok']);
  assert.equal(problems, bad.map((_, i) => `passwd line ${i + 1}: not "name:bcrypt-hash[:info]"`));
});

p('should count the first line of a name and report the others', () => {
  const { users, problems } = parsePasswd(`ann:${H}\nann:${H2}\n`);
  assert.is(users.get('ann')!.hash, H);
  assert.equal(problems, ['passwd line 2: user "ann" appears twice; the first line counts']);
});

p('should accept names and passwords by the documented rules', () => {
  assert.ok(validName('alice@example.com') && validName('jörg') && validName('x'.repeat(256)));
  for (const bad of ['', 'a:b', 'a\tb', 'a\nb', 'a\x7fb', 'x'.repeat(257)]) assert.not.ok(validName(bad), JSON.stringify(bad));
  assert.is(passwordProblem('ok'), null);
  assert.is(passwordProblem('ä'.repeat(36)), null); // 72 bytes
  assert.ok(passwordProblem(''));
  assert.ok(passwordProblem('ä'.repeat(37)));
});
p.run();

const u = suite<{ dir: string }>('passwd: updates');
u.before.each((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'apie-passwd-'));
});
u.after.each((ctx) => {
  rmSync(ctx.dir, { recursive: true, force: true });
});
const file = (dir: string) => join(dir, 'passwd');

u('should change a user in place and keep malformed and blank lines and the mode', async ({ dir }) => {
  writeFileSync(file(dir), `# a comment is a malformed line\nann:${H}\n\nben:${H}:old\n`, { mode: 0o604 });
  await updatePasswd(dir, defaults, (users) => {
    users.set('ben', { ...users.get('ben')!, hash: H2, info: 'new' });
    users.set('cy', { name: 'cy', hash: H, info: '' });
  });
  assert.is(readFileSync(file(dir), 'utf8'), `# a comment is a malformed line\nann:${H}\n\nben:${H2}:new\ncy:${H}\n`);
  assert.is(statSync(file(dir)).mode & 0o777, 0o604);
});

u('should remove every line of a removed user, so an ignored duplicate never takes over', async ({ dir }) => {
  writeFileSync(file(dir), `ann:${H}\nben:${H}\nann:${H2}\n`);
  await updatePasswd(dir, defaults, (users) => users.delete('ann'));
  assert.is(readFileSync(file(dir), 'utf8'), `ben:${H}\n`);
});

u('should create a missing file without access for others, and end it with a newline', async ({ dir }) => {
  await updatePasswd(dir, { ...defaults, fileMode: 0o666 }, (users) => users.set('ann', { name: 'ann', hash: H, info: '' }));
  assert.is(readFileSync(file(dir), 'utf8'), `ann:${H}\n`);
  assert.is(statSync(file(dir)).mode & 0o777, 0o660);
  writeFileSync(file(dir), `ann:${H}`);
  await updatePasswd(dir, defaults, (users) => users.set('ben', { name: 'ben', hash: H, info: '' }));
  assert.is(readFileSync(file(dir), 'utf8'), `ann:${H}\nben:${H}\n`);
});

u('should change nothing when the edit throws, and release the lock', async ({ dir }) => {
  writeFileSync(file(dir), `ann:${H}\n`);
  const err = await updatePasswd(dir, defaults, () => {
    throw new Error('refused');
  }).catch((e: Error) => e);
  assert.instance(err, Error);
  assert.is(readFileSync(file(dir), 'utf8'), `ann:${H}\n`);
  await updatePasswd(dir, defaults, (users) => users.delete('ann'));
  assert.is(readFileSync(file(dir), 'utf8'), '');
});
u.run();
