// apie token rotate: a new token secret, so every bearer token stops working.
import { existsSync } from 'node:fs';
import { parse } from '../args.ts';
import { ApieError } from '../errors.ts';
import { resolveDataDir } from '../config.ts';
import { rotateSecret } from '../token.ts';

export async function token(args: string[]): Promise<number> {
  const { positionals, values } = parse(args, {});
  if (positionals[0] !== 'rotate') throw new ApieError('usage', positionals[0] === undefined ? 'say rotate' : `unknown action "${positionals[0]}"`);
  if (positionals.length > 1) throw new ApieError('usage', `unexpected argument "${positionals[1]}"`);
  const dataDir = resolveDataDir(values.data);
  if (!existsSync(dataDir)) throw new ApieError('not-found', `no data directory at ${dataDir}`);
  rotateSecret(dataDir);
  console.log('apie: new token secret written; every bearer token issued so far no longer works');
  return 0;
}
