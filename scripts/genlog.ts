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

const { values, positionals } = parseArgs({ allowPositionals: true, options: { stream: { type: 'string', default: 'default' }, 'no-table': { type: 'boolean' } } });
const [dataDir, countArg] = positionals;
const count = Number(countArg);
if (!dataDir || !Number.isSafeInteger(count) || count < 0) {
  console.error('usage: node scripts/genlog.ts DATA_DIR COUNT [--stream NAME] [--no-table]');
  process.exit(2);
}
const dir = streamDir(dataDir, parseStreamName(values.stream));
const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
// About 200 bytes, like a small app's event; the eventId is unique per position.
const event = (seq: number) => Buffer.from(JSON.stringify({
  eventId: `${hex(seq, 8)}-0000-4000-8000-${hex(Math.imul(seq, 0x9e3779b1) >>> 0, 12)}`,
  eventType: 'generated',
  body: { seq, text: 'a generated event of about two hundred bytes, for size and speed' },
  createdBy: 'generator@example.com',
  createdAt: new Date(Date.UTC(2025, 0, 1) + seq * 1000).toISOString(),
}));
const head = await generateEvents(dir, loadConfig(dataDir), count, event, !values['no-table']);
if (values['no-table']) rmSync(join(dir, 'table'), { force: true });
console.log(`${head.count} ${head.hash}`);
