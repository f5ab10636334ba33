// The content store. Placeholder until the content-store issue lands.
import { httpError } from '../errors.ts';

export function getBlob(): never {
  throw httpError(501, 'not implemented yet');
}
export const putBlob = getBlob;
export const deleteBlob = getBlob;
export const verifyStorage = getBlob;
