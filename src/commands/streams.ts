// apie streams: every stream that holds events, with its count and last hash.
import { parse } from '../args.ts';
import { resolveDataDir } from '../datadir.ts';
import { ApieError } from '../errors.ts';
import { loadConfig } from '../config.ts';
import { openStreams } from '../eventstore.ts';

export async function streams(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (positionals.length) throw new ApieError('usage', `unexpected argument "${positionals[0]}"`);
  const dataDir = resolveDataDir(values.data);
  const streams = openStreams(dataDir, loadConfig(dataDir));
  for (const name of await streams.names()) {
    const view = await streams.stream(name).view();
    view.close();
    if (view.count > 0) console.log(`${name}\t${view.count}\t${view.head}`);
  }
  return 0;
}
