// The event store's tables in PostgreSQL, versioned. `apie migrate` (and
// `apie init` with an eventStore configured) brings a database up to
// SCHEMA_VERSION; requests never change the schema.
//
//   apie_streams  one head row per stream: its count and last hash. An append
//                 locks it (SELECT … FOR UPDATE), so appends to one stream are
//                 serialised across every server, and the row is the commit
//                 point: events past `count` are never read.
//   apie_events   the events: (stream, seq) is the primary key, so a range is
//                 an index scan (catch-up is O(k)); hash and eventId are
//                 indexed (point reads are O(1) lookups). `bytes` are the
//                 exact bytes hashed, so the chain is the file store's.
import { ApieError } from '../errors.ts';
import { openDatabase, type Database } from './connect.ts';

export const SCHEMA_VERSION = 1;

// Step n brings version n-1 to n.
const STEPS: string[] = [
  `CREATE TABLE apie_streams (
     id serial PRIMARY KEY,
     name text NOT NULL UNIQUE,
     count bigint NOT NULL DEFAULT 0,
     head text NOT NULL
   );
   CREATE TABLE apie_events (
     stream integer NOT NULL REFERENCES apie_streams (id),
     seq bigint NOT NULL,
     hash bytea NOT NULL,
     event_id text,
     bytes bytea NOT NULL,
     PRIMARY KEY (stream, seq)
   );
   CREATE UNIQUE INDEX apie_events_hash ON apie_events (stream, hash);
   -- Not unique: an imported log may repeat an eventId (the first one counts, as in the file store).
   CREATE INDEX apie_events_event_id ON apie_events (stream, event_id) WHERE event_id IS NOT NULL;`,
];

// Two migrations at once wait for each other.
const LOCK = "SELECT pg_advisory_xact_lock(hashtext('apie schema'))";

type Rows = (text: string) => Promise<Record<string, unknown>[]>;

/** The database's schema version (0: none yet). */
async function currentVersion(rows: Rows): Promise<number> {
  const [{ exists }] = await rows("SELECT to_regclass('apie_schema') IS NOT NULL AS exists");
  if (!exists) return 0;
  const [row] = await rows('SELECT version FROM apie_schema');
  return Number(row?.version ?? 0);
}

/** Brings the schema of the database at `url` to SCHEMA_VERSION (apie migrate, apie init); returns the versions before and after. */
export async function migrateDatabase(url: string): Promise<{ from: number; to: number }> {
  const db = openDatabase(url, 1);
  try {
    return await migrateSchema(db);
  } finally {
    await db.end();
  }
}

async function migrateSchema(db: Database): Promise<{ from: number; to: number }> {
  return db.transaction(async (client) => {
    await client.query(LOCK);
    const from = await currentVersion(async (text) => (await client.query(text)).rows);
    if (from > SCHEMA_VERSION) {
      throw new ApieError('misconfigured', `the event store's schema is version ${from}, newer than this Apie's ${SCHEMA_VERSION}: upgrade Apie`);
    }
    if (from === 0) await client.query('CREATE TABLE apie_schema (version integer NOT NULL)');
    for (let v = from + 1; v <= SCHEMA_VERSION; v++) await client.query(STEPS[v - 1]);
    if (from !== SCHEMA_VERSION) {
      await client.query('DELETE FROM apie_schema');
      await client.query('INSERT INTO apie_schema (version) VALUES ($1)', [SCHEMA_VERSION]);
    }
    return { from, to: SCHEMA_VERSION };
  });
}

/** Refuses a database whose schema is missing or not this Apie's (a server checks once, at its first request). */
export async function checkSchema(db: Database): Promise<void> {
  const version = await currentVersion((text) => db.query(text));
  if (version !== SCHEMA_VERSION) {
    throw new ApieError('misconfigured', version === 0
      ? 'the event store (PostgreSQL) has no Apie schema: run `apie migrate`'
      : `the event store's schema is version ${version}, this Apie's is ${SCHEMA_VERSION}: run \`apie migrate\` with the newer of the two`);
  }
}
