// Helpers for the authentication tests: raw Authorization headers, tokens,
// and command-line runs that overlap in time.
import { spawn } from 'node:child_process';
import * as assert from 'uvu/assert';
import { EXE, type Site } from './harness.ts';

/** A Basic Authorization header from raw credential bytes (which need not be UTF-8). */
export function basicHeader(credentials: string | Buffer): { Authorization: string } {
  return { Authorization: `Basic ${Buffer.from(credentials).toString('base64')}` };
}

/** A Bearer Authorization header. */
export function bearer(token: string): { Authorization: string } {
  return { Authorization: `Bearer ${token}` };
}

/** A token from POST /auth/token for user:password, checked for shape. */
export async function tokenFor(site: Site, auth: string): Promise<{ token: string; expiresAt: string }> {
  const r = await site.request('POST', '/auth/token', { auth });
  assert.is(r.status, 200, r.text);
  const body = r.json();
  assert.type(body.token, 'string');
  return body;
}

/** The user name /info reports for a set of headers, or the status when it is not 200. */
export async function whoami(site: Site, headers: Record<string, string>): Promise<string | number> {
  const r = await site.request('GET', '/info', { headers });
  return r.status === 200 ? r.json().auth.user.email : r.status;
}

/** Runs the command line against a site without waiting, so many runs overlap (as the web server's user under Apache). */
export function cliAsync(site: Site, args: string[], input = ''): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(EXE, args, {
      env: { PATH: process.env.PATH ?? '', APIE_DATA: site.dataDir },
      stdio: ['pipe', 'ignore', 'pipe'],
      ...site.runAs,
    });
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stderr });
    });
    child.stdin!.end(input);
  });
}
