// apie init [DIR]: a working data directory with apie.json and an admin user.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from '../args.ts';
import { configJson, defaults, loadConfig, resolveDataDir } from '../config.ts';
import { ensureDir, writeFileAtomic } from '../fsutil.ts';
import { formatPasswd, readPasswd } from '../passwd.ts';

const DENY_ALL = `# Apie data: never served by the web server.
<IfModule mod_authz_core.c>
  Require all denied
</IfModule>
<IfModule !mod_authz_core.c>
  Order allow,deny
  Deny from all
</IfModule>
`;

/**
 * Creates the data directory and apie.json when missing, and when passwd has
 * no users, a user `admin` with a random password, printed once.
 */
export async function initDataDir(dir: string): Promise<void> {
  ensureDir(dir, defaults.dirMode);
  const configFile = join(dir, 'apie.json');
  if (!existsSync(configFile)) {
    writeFileSync(configFile, JSON.stringify(configJson(defaults), null, 2) + '\n', { mode: defaults.fileMode, flag: 'wx' });
    console.log(`apie: created ${configFile}`);
  }
  // In case the data directory ends up inside a web root: Apache serves nothing from it.
  const htaccess = join(dir, '.htaccess');
  if (!existsSync(htaccess)) {
    writeFileSync(htaccess, DENY_ALL, { mode: 0o644 });
  }
  const config = loadConfig(dir);
  if (readPasswd(dir).users.size > 0) return;
  const { default: bcrypt } = await import('bcryptjs');
  const password = process.getBuiltinModule('node:crypto').randomBytes(12).toString('base64url');
  const hash = await bcrypt.hash(password, config.bcryptCost);
  writeFileAtomic(join(dir, 'passwd'), formatPasswd([{ name: 'admin', hash, info: '' }]), config.fileMode);
  console.log(`apie: created user "admin" with password ${password}\n` +
    '      change it with `apie user passwd admin`, add users with `apie user add NAME`');
}

export async function init(args: string[]): Promise<number> {
  const { positionals, values } = parse(args, {});
  const dir = positionals[0] ?? resolveDataDir(values.data);
  await initDataDir(dir);
  console.log(`apie: data directory ${dir} is ready`);
  return 0;
}
