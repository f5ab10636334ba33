// Bearer tokens (POST /auth/token). Placeholder until the authentication issue lands.
import type { Context, User } from './types.ts';

/** The user a bearer token speaks for, or null. */
export function verifyToken(_ctx: Context, _token: string): User | null {
  return null;
}
