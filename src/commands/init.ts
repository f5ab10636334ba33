// apie init [DIR]: a working data directory with apie.json and an admin user.
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse } from '../args.ts';
import { ApieError } from '../errors.ts';
import { configJson, defaults, loadConfig } from '../config.ts';
import { accountName, dataDirToCreate, locateDataDir, POINTER_FILE } from '../datadir.ts';
import { executableDir, isPackaged, programName } from '../executable.ts';
import { ensureDir, statOrNull, writeFileAtomic } from '../fsutil.ts';
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
  if (positionals.length > 1) throw new ApieError('usage', `unexpected argument "${positionals[1]}"`);
  const dir = positionals[0] !== undefined ? resolve(positionals[0]) : dataDirToCreate(values.data);
  const fresh = !existsSync(join(dir, 'apie.json'));
  await initDataDir(dir);
  // The events in PostgreSQL: their tables too (as `apie migrate` makes them).
  const { eventStore } = loadConfig(dir);
  if (eventStore !== null) {
    const { from, to } = await (await import('../pgstore/schema.ts')).migrateDatabase(eventStore);
    if (from !== to) console.log(`apie: created the event store's tables (schema version ${to})`);
  }
  console.log(`apie: data directory ${dir} is ready`);
  if (isPackaged()) printDeploy(dir, fresh);
  return 0;
}

// What this account still has to do for the CGI program beside this
// executable to find and use the directory, as lines to paste.
function printDeploy(dir: string, fresh: boolean): void {
  const exeDir = executableDir();
  const exe = join(exeDir, programName());
  const pointer = join(exeDir, POINTER_FILE);
  const lines: string[] = [];
  // CGI sees no --data and, under suEXEC, no APIE_DATA. Found in the home
  // directory is not enough: without suEXEC the web server's user has another.
  let located;
  try {
    located = locateDataDir(undefined, {});
  } catch {
    // An unreadable or malformed apie-data.path: the lines below replace it.
  }
  const found = located?.dir === dir && (located.via === 'pointer' || located.via === 'beside');
  if (!found) lines.push(`echo ${sh(dir)} > ${sh(pointer)}`, `chmod 644 ${sh(pointer)}`);
  // suEXEC refuses a program that others may write to.
  if ((statSync(exe).mode & 0o7777) !== 0o755) lines.push(`chmod 755 ${sh(exe)}`);
  const htaccess = existsSync(join(exeDir, '.htaccess'));
  if (lines.length || !htaccess) {
    console.log(`apie: for ${exe} to find it as CGI (with suEXEC or without)${lines.length ? ', run:' : ''}`);
    for (const line of lines) console.log(`        ${line}`);
    if (!htaccess) console.log(`      and put the shipped .htaccess beside ${programName()}.`);
  }
  // Under suEXEC nobody but the account needs the data. Only offered for a
  // fresh apie.json: the line replaces it.
  if (fresh) {
    console.log(`apie: under suEXEC (CGI running as ${accountName()}), keep it private to that account:`);
    console.log(`        echo '{ "fileMode": "0600", "dirMode": "0700" }' > ${sh(join(dir, 'apie.json'))}`);
    console.log(`        chmod -R go= ${sh(dir)}`);
  }
  // Without suEXEC the web server's own user runs the program: it must reach and write the data.
  const blocked = parents(dir).filter((p) => ((statOrNull(p)?.mode ?? 0o777) & 0o001) === 0);
  console.log(`apie: without suEXEC (CGI running as the web server's user, not as ${accountName()}), also:`);
  for (const p of blocked) console.log(`        chmod o+x ${sh(p)}`);
  console.log(`        sudo chown -R www-data: ${sh(dir)}     # then run ${programName()} as that user: sudo -u www-data ./${programName()} …`);
}

// The directories above dir, down from the first below /.
function parents(dir: string): string[] {
  const out: string[] = [];
  for (let p = dirname(dir); p !== dirname(p); p = dirname(p)) out.unshift(p);
  return out;
}

// A path as one shell word.
function sh(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}
