// apie user …: placeholder until the authentication issue lands.
import { CliError } from '../cli.ts';

export async function user(): Promise<number> {
  throw new CliError('not implemented yet');
}
