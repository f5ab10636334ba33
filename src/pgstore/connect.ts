// Reaching PostgreSQL: the driver (`pg`, loaded here only, and only by a
// process whose event store is a postgres:// URL), the connections a process
// keeps (a pool for a server, one connection for a CGI request or a command),
// and the one translation of the driver's failures into ApieErrors. A
// database that cannot be reached (stopped, restarting, the network gone,
// too many connections) is 'busy': 503 with Retry-After, and the next request
// connects again. Details, never the URL's password, go to stderr only.
import type pg from 'pg';
import { ApieError } from '../errors.ts';

type Driver = typeof pg;
let driver: Promise<Driver> | undefined;

// The bundle keeps the driver in a lazily evaluated module: only this import runs it.
function loadDriver(): Promise<Driver> {
  driver ??= import('pg').then((m) => ((m as { default?: Driver }).default ?? (m as unknown as Driver)));
  return driver;
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:@/]*):[^@/]*@/, '$1:***@');
}

// SQLSTATE classes and codes that mean "not now" rather than "never":
// 08 connection exceptions, 57P0x shutdown/restart, 53 out of resources
// (too many connections), 40 serialization failures and deadlocks.
const TRANSIENT = /^(08|53|40|57P0[123]|57014)/;
// Socket errors of a database that went away or is not there yet.
const SOCKET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND']);

/**
 * The ApieError for whatever the driver threw: 'busy' when the database is
 * away or overloaded (the caller may retry), 'misconfigured' when it refuses
 * us for good (authentication, no such database, no schema), 'internal' otherwise.
 */
export function storeError(err: unknown): ApieError {
  if (err instanceof ApieError) return err;
  const e = err as { code?: string; message?: string };
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = String(e?.message ?? err);
  if (TRANSIENT.test(code) || SOCKET.has(code) || /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable|connection is closed/i.test(message)) {
    return new ApieError('busy', 'the event store (PostgreSQL) is unavailable; retry', { cause: err, headers: { 'Retry-After': '1' } });
  }
  if (code === '42P01' || code === '42703') {
    return new ApieError('misconfigured', 'the event store (PostgreSQL) has no Apie schema, or an older one: run `apie migrate`', { cause: err });
  }
  if (/^(28|3D)/.test(code)) return new ApieError('misconfigured', 'the event store (PostgreSQL) refused the connection: check "eventStore"', { cause: err });
  return new ApieError('internal', 'internal error', { cause: err });
}

/** What the stores need of a connection: queries, and notifications for the listener. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** A process's connections to one database. */
export interface Database {
  /** Runs one statement on any connection; failures are ApieErrors. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  /** Runs fn in one transaction on one connection: committed when fn resolves, rolled back when it throws. */
  transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  /** A connection of its own (for LISTEN), not from the pool. */
  client(): Promise<pg.Client>;
  end(): Promise<void>;
}

// How long a request waits for a connection before it is told to come back later.
const CONNECT_TIMEOUT_MS = 5000;

/**
 * Connections to the database at `url`: a pool of up to `max` (a server), or
 * one connection made on first use (max 1: a CGI request or a command).
 */
export function openDatabase(url: string, max: number): Database {
  let pool: Promise<pg.Pool> | undefined;
  const prepared = new Map<string, string>();
  const getPool = () => {
    pool ??= loadDriver().then((driver) => {
      // allowExitOnIdle: a CGI request or a command ends when its work is done,
      // without closing the pool (PostgreSQL takes an idle client's EOF quietly).
      const p = new driver.Pool({ connectionString: url, max, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, idleTimeoutMillis: 30_000, allowExitOnIdle: true });
      // An idle connection that the database dropped (a restart): the pool replaces it; say so once.
      p.on('error', (err) => console.error(`apie: the event store's connection was lost: ${(err as Error).message}`));
      return p;
    });
    return pool;
  };
  return {
    async query(text, values) {
      try {
        // Prepared once per connection: the requests' few statements are planned once, not per request.
        let name = prepared.get(text);
        if (name === undefined) prepared.set(text, (name = `apie${prepared.size + 1}`));
        return (await (await getPool()).query({ name, text, values })).rows;
      } catch (err) {
        throw storeError(err);
      }
    },
    async transaction(fn) {
      let client: pg.PoolClient;
      try {
        client = await (await getPool()).connect();
      } catch (err) {
        throw storeError(err);
      }
      let broken: unknown;
      // The connection dropping between two statements must not crash the process: the next statement fails instead.
      const ignore = () => {};
      client.on('error', ignore);
      try {
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        // A connection that failed mid-transaction is not given back to the pool:
        // what it was doing is undone by the database (the transaction never committed).
        broken = err;
        await client.query('ROLLBACK').catch(() => {});
        throw storeError(err);
      } finally {
        client.off('error', ignore);
        const error = broken !== undefined && storeError(broken).code === 'busy' ? (broken as Error) : undefined;
        client.release(error);
      }
    },
    async client() {
      const driver = await loadDriver();
      const client = new driver.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
      try {
        await client.connect();
      } catch (err) {
        client.end().catch(() => {});
        throw storeError(err);
      }
      return client;
    },
    async end() {
      if (pool) await (await pool).end().catch(() => {});
    },
  };
}
