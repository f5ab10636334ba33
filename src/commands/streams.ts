// apie streams: every stream that holds events, with its count and last hash.
import { parse } from '../args.ts';
import { resolveDataDir } from '../datadir.ts';
import { ApieError } from '../errors.ts';
import { head } from '../eventlog.ts';
import { streamDir, streamNames } from '../streams.ts';

export async function streams(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (positionals.length) throw new ApieError('usage', `unexpected argument "${positionals[0]}"`);
  const dataDir = resolveDataDir(values.data);
  for (const name of streamNames(dataDir)) {
    const { count, hash } = head(streamDir(dataDir, name));
    if (count > 0) console.log(`${name}\t${count}\t${hash}`);
  }
  return 0;
}
