// apie verify: placeholder until the authentication issue lands.
import { CliError } from '../cli.ts';

export async function verify(): Promise<number> {
  throw new CliError('not implemented yet');
}
