// What authentication costs a CGI request: `GET /info` with Basic auth at
// bcrypt cost 5 and 10, and with a bearer token (an HMAC, no bcrypt), each
// against the embedded Node runtime's bare start-up (`node -e 0`). Then the
// timing oracle: in a passwd holding costs 5 (htpasswd's default) and 10,
// a wrong password for either user and an unknown name must cost the same.
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import bcrypt from 'bcryptjs';
import { EXE, NODE, basicAuth, bearerAuth, cgiEnv, dataDir, medians, type Row } from './lib.ts';

export async function run(): Promise<Row[]> {
  const cost5 = dataDir({}, undefined, 5);
  const cost10 = dataDir({}, { 'bench@example.com': 'bench', 'other@example.com': 'other' }, 10);
  const mixed = dataDir();
  writeFileSync(join(mixed, 'passwd'), `cheap@example.com:${bcrypt.hashSync('right', 5)}\ndear@example.com:${bcrypt.hashSync('right', 10)}\n`);
  const info = (data: string, authorization: string) => cgiEnv(data, 'GET', '/info', { Authorization: authorization });
  // The token with another name in it, whose signature then fits neither: a known name and an unknown one.
  const bearer = bearerAuth(cost10);
  const renamed = (name: string) => bearer.replace(/ [^.]+\./, ` ${Buffer.from(name).toString('base64url')}.`);
  const m = medians([
    { name: 'node', command: `${NODE} -e 0` },
    { name: 'basic5', command: EXE, env: info(cost5, basicAuth()), expect: 200 },
    { name: 'basic10', command: EXE, env: info(cost10, basicAuth()), expect: 200 },
    { name: 'bearer', command: EXE, env: info(cost10, bearer), expect: 200 },
    { name: 'cheap', command: EXE, env: info(mixed, basicAuth('cheap@example.com', 'wrong')), expect: 401 },
    { name: 'dear', command: EXE, env: info(mixed, basicAuth('dear@example.com', 'wrong')), expect: 401 },
    { name: 'unknown', command: EXE, env: info(mixed, basicAuth('nobody@example.com', 'wrong')), expect: 401 },
    { name: 'forged', command: EXE, env: info(cost10, renamed('other@example.com')), expect: 401 },
    { name: 'unknown-token', command: EXE, env: info(cost10, renamed('nobody@example.com')), expect: 401 },
  ], 40, 5);
  for (const d of [cost5, cost10, mixed]) rmSync(dirname(d), { recursive: true, force: true });
  const baseline = { what: 'node -e 0', value: m.get('node')! };
  const unknown = { what: 'unknown name', value: m.get('unknown')! };
  const row = (what: string, name: string, base: { what: string; value: number }): Row => ({ section: 'auth', what, value: m.get(name)!, unit: 'ms', baseline: base, goal: 1.1 });
  return [
    { section: 'auth', what: 'CGI `GET /info`, Basic auth, bcrypt cost 5', value: m.get('basic5')!, unit: 'ms', baseline },
    { section: 'auth', what: 'CGI `GET /info`, Basic auth, bcrypt cost 10', value: m.get('basic10')!, unit: 'ms', baseline },
    { section: 'auth', what: 'CGI `GET /info`, bearer token', value: m.get('bearer')!, unit: 'ms', baseline, goal: 1.2 },
    // No timing oracle: in a passwd with costs 5 and 10 every 401 costs the
    // same, within a ±10 % band (both directions against an unknown name).
    row('401, unknown name, passwd with costs 5 and 10', 'unknown', { what: 'wrong password, cost-5 user', value: m.get('cheap')! }),
    row('401, wrong password, cost-5 user in that passwd', 'cheap', unknown),
    row('401, wrong password, cost-10 user in that passwd', 'dear', unknown),
    { section: 'auth', what: 'CGI bearer token of a name passwd does not have (401)', value: m.get('unknown-token')!, unit: 'ms', baseline: { what: 'a known name, wrong signature (401)', value: m.get('forged')! } },
  ];
}
