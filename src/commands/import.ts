// apie import-apie: placeholder until the authentication issue lands.
import { CliError } from '../cli.ts';

export async function importApie(): Promise<number> {
  throw new CliError('not implemented yet');
}
