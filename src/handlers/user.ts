// POST /auth/token and POST /user/update. Placeholder until the authentication issue lands.
import { httpError } from '../errors.ts';

export function postToken(): never {
  throw httpError(501, 'not implemented yet');
}
export const postUpdate = postToken;
