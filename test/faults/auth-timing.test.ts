// The timing oracle of Basic auth: whether a name is in passwd must not show
// in how long a wrong password takes, whatever bcrypt costs the file holds
// (htpasswd writes cost 5, Apie bcryptCost). Timed nowhere: the real bcryptjs
// runs, watched, and every hash it computes counts 2^cost units of work
// (bcrypt's key schedule runs 2^cost rounds). The bench measures the times.
import bcrypt from 'bcryptjs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { checkPassword } from '../../src/auth.ts';
import { parsePasswd } from '../../src/passwd.ts';

// bcryptjs, counting the work of every hash it computes.
function watched() {
  const costs: number[] = [];
  const compare = (password: string, hash: string) => {
    costs.push(Number(hash.slice(4, 6)));
    return bcrypt.compare(password, hash);
  };
  return { compare, units: () => costs.reduce((sum, c) => sum + 2 ** c, 0), costs };
}

const passwdOf = (costs: Record<string, number>) =>
  parsePasswd(Object.entries(costs).map(([name, cost]) => `${name}:${bcrypt.hashSync('right', cost)}\n`).join(''));

const t = suite('auth: timing of Basic checks');

t('should spend the work of the dearest hash in passwd on every check, known name or not', async () => {
  // Low costs keep the real bcrypt quick; the rule is the same at 5 and 12.
  const { users } = passwdOf({ 'four@example.com': 4, 'five@example.com': 5, 'seven@example.com': 7 });
  for (const name of ['four@example.com', 'five@example.com', 'seven@example.com', 'nobody@example.com']) {
    for (const password of ['right', 'wrong']) {
      const w = watched();
      const user = await checkPassword(users, name, password, w.compare, 10);
      assert.is(w.units(), 2 ** 7, `${name} / ${password}: costs ${w.costs.join(',')}`);
      assert.is(user?.name, password === 'right' && name !== 'nobody@example.com' ? name : undefined);
    }
  }
});

t('should cost an unknown name what the users cost when they all share one cost', async () => {
  const { users } = passwdOf({ 'a@example.com': 4, 'b@example.com': 4 });
  for (const name of ['a@example.com', 'nobody@example.com']) {
    const w = watched();
    await checkPassword(users, name, 'wrong', w.compare, 10);
    assert.equal(w.costs, [4], name);
  }
});

t('should spend bcryptCost when passwd holds nobody', async () => {
  const w = watched();
  assert.is(await checkPassword(new Map(), 'nobody@example.com', 'x', w.compare, 5), null);
  assert.equal(w.costs, [5]);
});

t('should refuse a passwd line whose cost bcrypt cannot run, instead of failing every check', () => {
  const hash = bcrypt.hashSync('right', 4);
  for (const cost of ['03', '32', '99']) {
    const p = parsePasswd(`bad@example.com:${hash.slice(0, 4)}${cost}${hash.slice(6)}\n`);
    assert.is(p.users.size, 0, cost);
    assert.is(p.problems.length, 1, cost);
  }
});

t.run();
