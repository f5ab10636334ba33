// node scripts/genlog.ts DATA_DIR COUNT [--stream NAME] [--no-table]
// Appends COUNT generated events to a stream of a data directory at disk
// speed, straight through the event log module (not through HTTP): a valid
// chain with a UUID eventId per event, for tests and `npm run bench`.
// --no-table removes the lookup table afterwards, as a lost table leaves it.
// Prints `COUNT HASH` of the stream's head.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.ts';
import { generateEvents } from '../src/eventlog.ts';
import { parseStreamName, streamDir } from '../src/streams.ts';
import { generatedEvent } from '../test/lib/bigindex.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { stream: { type: 'string', default: 'default' }, 'no-table': { type: 'boolean' } } });
const [dataDir, countArg] = positionals;
const count = Number(countArg);
if (!dataDir || !Number.isSafeInteger(count) || count < 0) {
  console.error('usage: node scripts/genlog.ts DATA_DIR COUNT [--stream NAME] [--no-table]');
  process.exit(2);
}
const dir = streamDir(dataDir, parseStreamName(values.stream));
const head = await generateEvents(dir, loadConfig(dataDir), count, generatedEvent, !values['no-table']);
if (values['no-table']) rmSync(join(dir, 'table'), { force: true });
console.log(`${head.count} ${head.hash}`);
