// CGI start-up: the executable answering GET / without credentials (its 401:
// start-up and request path, no password hashing) against the embedded Node
// runtime's bare start-up (`node -e 0`); and what the SEA code cache buys,
// against the same executable built without it.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { EXE, NODE, ROOT, cgiEnv, dataDir, medians, type Row } from './lib.ts';

export async function run(): Promise<Row[]> {
  const data = dataDir();
  const noCache = join(ROOT, 'build', 'apie-no-code-cache.cgi');
  const build = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build.ts'), '--sea', '--no-code-cache', '--out', noCache], { encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`build without code cache failed: ${build.stderr}`);
  const env = cgiEnv(data, 'GET', '/');
  const m = medians([
    { name: 'node', command: `${NODE} -e 0` },
    { name: 'cgi', command: EXE, env, expect: 401 },
    { name: 'nocache', command: noCache, env, expect: 401 },
  ], 60, 10);
  const node = m.get('node')!;
  return [
    { section: 'start-up', what: 'CGI `GET /` → 401 (no credentials)', value: m.get('cgi')!, unit: 'ms', baseline: { what: 'node -e 0', value: node }, goal: 1.15 },
    { section: 'start-up', what: 'the same, built without the SEA code cache', value: m.get('nocache')!, unit: 'ms', baseline: { what: 'node -e 0', value: node } },
    { section: 'start-up', what: 'executable size', value: statSync(EXE).size / 1024 / 1024, unit: 'MiB' },
  ];
}
