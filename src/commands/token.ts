// apie token …: placeholder until the authentication issue lands.
import { CliError } from '../cli.ts';

export async function token(): Promise<number> {
  throw new CliError('not implemented yet');
}
