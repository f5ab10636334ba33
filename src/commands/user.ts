// apie user add|passwd|remove|list: the passwd file from the command line.
import { accessOf, isAdmin } from '../access.ts';
import { parse } from '../args.ts';
import { ApieError } from '../errors.ts';
import { defaults, loadConfig } from '../config.ts';
import { resolveDataDir } from '../datadir.ts';
import { ensureDir } from '../fsutil.ts';
import { passwordProblem, readPasswd, updatePasswd, validInfo, validName } from '../passwd.ts';

const NAME_RULE = 'a user name must be 1 to 256 characters without ":" or control characters';

export async function user(args: string[]): Promise<number> {
  const { positionals, values } = parse(args, { info: { type: 'string' } });
  const [action, name, extra] = positionals;
  const wantsName = action === 'add' || action === 'passwd' || action === 'remove';
  if (!wantsName && action !== 'list') throw new ApieError('usage', action === undefined ? 'say add, passwd, remove or list' : `unknown action "${action}"`);
  if (wantsName && name === undefined) throw new ApieError('usage', `user ${action} needs a NAME`);
  if ((wantsName ? extra : name) !== undefined) throw new ApieError('usage', `unexpected argument "${wantsName ? extra : name}"`);
  if (values.info !== undefined && action !== 'add') throw new ApieError('usage', '--info goes with user add');
  if (name !== undefined && !validName(name)) throw new ApieError('bad-request', NAME_RULE);
  const info = values.info ?? '';
  if (!validInfo(info)) throw new ApieError('bad-request', '--info must be at most 1024 characters without control characters');

  const dataDir = resolveDataDir(values.data);
  if (action === 'list') return list(dataDir);
  ensureDir(dataDir, defaults.dirMode);
  const config = loadConfig(dataDir);
  const exists = () => readPasswd(dataDir).users.has(name!);
  if (action === 'remove') {
    await updatePasswd(dataDir, config, (users) => {
      if (!users.delete(name!)) throw new ApieError('not-found', `no user "${name}"`);
    });
    console.log(`apie: removed user "${name}"`);
    return 0;
  }
  // Checked before asking for a password, and again under the lock.
  if (action === 'add' && exists()) throw new ApieError('conflict', `user "${name}" exists; use \`apie user passwd\``);
  if (action === 'passwd' && !exists()) throw new ApieError('not-found', `no user "${name}"`);
  const password = await readPassword(`Password for ${name}: `);
  const problem = passwordProblem(password);
  if (problem) throw new ApieError('bad-request', problem);
  const { default: bcrypt } = await import('bcryptjs');
  const hash = await bcrypt.hash(password, config.bcryptCost);
  await updatePasswd(dataDir, config, (users) => {
    const old = users.get(name!);
    if (action === 'add' && old) throw new ApieError('conflict', `user "${name}" exists; use \`apie user passwd\``);
    if (action === 'passwd' && !old) throw new ApieError('not-found', `no user "${name}"`);
    users.set(name!, { name: name!, hash, info: old?.info ?? info });
  });
  console.log(action === 'add' ? `apie: added user "${name}"` : `apie: changed the password of "${name}"; its tokens no longer work`);
  return 0;
}

// One user a line, four fields apart by tabs (info has no control characters):
// the name, `admin` or `user`, the groups (comma-separated, `-` for none), the info.
function list(dataDir: string): number {
  const access = accessOf(loadConfig(dataDir));
  const { users, problems } = readPasswd(dataDir);
  for (const problem of problems) console.error(`apie: ${problem}`);
  for (const u of users.values()) {
    const groups = [...access.groups].filter(([, members]) => members.has(u.name)).map(([group]) => group);
    console.log([u.name, isAdmin(access, u.name) ? 'admin' : 'user', groups.join(',') || '-', u.info].join('\t'));
  }
  return 0;
}

/** A password: typed at a terminal without echo (twice), or the first line of piped stdin. */
async function readPassword(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
  }
  const first = await promptHidden(prompt);
  if (first === '') return first;
  if ((await promptHidden('Again: ')) !== first) throw new ApieError('bad-request', 'the passwords differ; nothing changed');
  return first;
}

// Raw mode: keys arrive one by one and nothing is echoed.
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  // Echo goes off before the prompt shows, so nothing typed after it is echoed.
  stdin.setRawMode(true);
  process.stderr.write(prompt);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let typed: string[] = [];
    const finish = (err?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(typed.join(''));
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish();
        // Ctrl-C, or Ctrl-D on an empty line: give up, change nothing.
        if (ch === '\x03' || (ch === '\x04' && typed.length === 0)) return finish(new ApieError('bad-request', 'cancelled; nothing changed'));
        if (ch === '\x7f' || ch === '\b') typed = typed.slice(0, -1);
        else if (ch >= ' ') typed.push(ch);
      }
    };
    stdin.on('data', onData);
  });
}
