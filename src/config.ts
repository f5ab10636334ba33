// apie.json: every key optional, unknown keys and wrong types rejected by name.
import { parseAccess, type AccessConfig } from './access.ts';
import { ApieError } from './errors.ts';
import { isOrigin } from './http.ts';
import { readFileNoFollow } from './nofollow.ts';

/** Every key of apie.json; `admins`, `groups` and `access` are access.ts's. */
export interface Config extends AccessConfig {
  /** Largest accepted event request body, in bytes. */
  maxEventBytes: number;
  /** Largest accepted blob upload, in bytes. */
  maxUploadBytes: number;
  /** Mode of files Apie creates in the data directory (passwd and the secret stay 0600/0640). */
  fileMode: number;
  dirMode: number;
  /** bcrypt cost of hashes Apie writes; existing hashes of any cost keep working. */
  bcryptCost: number;
  /** Lifetime of bearer tokens from POST /auth/token, in seconds. */
  tokenTtlSeconds: number;
  /** Browser origins allowed by CORS; empty means no CORS headers at all. */
  corsOrigins: string[];
  /** Public base URL of the content store for `url`; null means this API's /storage/. */
  storageBaseUrl: string | null;
  /** Whether the web server serves blobs directly as static files. */
  storageStatic: boolean;
  /** The URL clients reach Apie at (`Link`, upload `url`); null: as each request says. */
  publicUrl: string | null;
  /** Whether `apie serve` believes X-Forwarded-Proto, -Host and -For from the proxy in front of it. */
  trustProxy: boolean;
  /** Where the event streams live: null for the files of the data directory, or a postgres:// URL (libpq's form). */
  eventStore: string | null;
}

export const defaults: Config = {
  maxEventBytes: 1024 * 1024,
  maxUploadBytes: 2 * 1024 * 1024 * 1024,
  fileMode: 0o640,
  dirMode: 0o750,
  bcryptCost: 10,
  tokenTtlSeconds: 12 * 60 * 60,
  corsOrigins: [],
  storageBaseUrl: null,
  storageStatic: false,
  publicUrl: null,
  trustProxy: false,
  eventStore: null,
  admins: null,
  groups: {},
  access: [],
};

// The keys access.ts checks, together (rules name groups; groups need admins).
const ACCESS_KEYS = new Set(['admins', 'groups', 'access']);

// A broken apie.json is the operator's to fix: each message names the key.
function misconfigured(message: string, cause?: unknown): ApieError {
  return new ApieError('misconfigured', message, { cause });
}

// Keys that meant something once and are ignored now, so that the apie.json
// files that set them still load. lockStaleSeconds: the lock has no stale state (lock.ts).
const OBSOLETE = new Set(['lockStaleSeconds']);

type Check = (value: unknown, key: string) => unknown;

const positiveInt: Check = (v, key) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw misconfigured(`apie.json: "${key}" must be a positive integer`);
  return v;
};
// Modes are written as octal strings ("0640") because JSON has no octal numbers.
const mode: Check = (v, key) => {
  if (typeof v === 'string' && /^0?[0-7]{3}$/.test(v)) return parseInt(v, 8);
  throw misconfigured(`apie.json: "${key}" must be an octal string such as "0640"`);
};
function flag(v: unknown, key: string): boolean {
  if (typeof v !== 'boolean') throw misconfigured(`apie.json: "${key}" must be true or false`);
  return v;
}
const checks: Record<Exclude<keyof Config, keyof AccessConfig>, Check> = {
  maxEventBytes: positiveInt,
  maxUploadBytes: positiveInt,
  fileMode: mode,
  dirMode: mode,
  bcryptCost: (v, key) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 4 || v > 31) throw misconfigured(`apie.json: "${key}" must be an integer from 4 to 31`);
    return v;
  },
  tokenTtlSeconds: positiveInt,
  corsOrigins: (v, key) => {
    if (!Array.isArray(v) || !v.every((o) => typeof o === 'string' && (o === '*' || (/^https?:/.test(o) && isOrigin(o))))) {
      throw misconfigured(`apie.json: "${key}" must be a list of origins such as "https://app.example.com"`);
    }
    return v;
  },
  storageBaseUrl: (v, key) => {
    if (v === null || (typeof v === 'string' && /^https?:\/\/\S+$/.test(v))) return typeof v === 'string' ? v.replace(/\/+$/, '') : v;
    throw misconfigured(`apie.json: "${key}" must be an http(s) URL or null`);
  },
  storageStatic: flag,
  publicUrl: (v, key) => {
    if (v === null) return v;
    let url: URL | undefined;
    try {
      url = typeof v === 'string' ? new URL(v) : undefined;
    } catch {
      // said below
    }
    // Origin and path only: a query or fragment would end up inside every URL built on it.
    if (!url || !/^https?:$/.test(url.protocol) || url.search || url.hash || url.username || /\s/.test(v as string)) {
      throw misconfigured(`apie.json: "${key}" must be the http(s) URL clients reach Apie at, such as "https://example.com/cgi-bin/apie.cgi", or null`);
    }
    return (v as string).replace(/\/+$/, '');
  },
  trustProxy: flag,
  eventStore: (v, key) => {
    if (v === null || (typeof v === 'string' && isPostgresUrl(v))) return v;
    throw misconfigured(`${key === EVENT_STORE_ENV ? EVENT_STORE_ENV : `apie.json: "${key}"`} must be a PostgreSQL URL (postgres://…) or null`);
  },
};

/** Whether an event store setting names PostgreSQL. */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

// Overrides apie.json's eventStore: several servers can share one data directory's settings and each name its database.
const EVENT_STORE_ENV = 'APIE_EVENT_STORE';

/** Validates parsed apie.json content and fills in the defaults. */
export function parseConfig(raw: unknown): Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw misconfigured('apie.json: must hold a JSON object');
  const config: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(raw)) {
    if (OBSOLETE.has(key) || ACCESS_KEYS.has(key)) continue;
    if (!Object.hasOwn(checks, key)) throw misconfigured(`apie.json: unknown key "${key}"`);
    config[key] = checks[key as keyof typeof checks](value, key);
  }
  Object.assign(config, parseAccess(raw as Record<string, unknown>));
  return config as unknown as Config;
}

/**
 * The configuration as apie.json spells it (modes as octal strings), without
 * who is an admin or in which group: `GET /info` shows every user this, and
 * each user what applies to them instead.
 */
export function configJson(config: Config): Record<string, unknown> {
  const octal = (mode: number) => `0${mode.toString(8)}`;
  // eventStore may hold the database's password.
  const { admins: _admins, groups: _groups, access: _access, eventStore: _eventStore, ...rest } = config;
  return { ...rest, fileMode: octal(config.fileMode), dirMode: octal(config.dirMode) };
}

/** Reads DIR/apie.json (a missing file means all defaults), and APIE_EVENT_STORE. */
export function loadConfig(dataDir: string): Config {
  const config = readConfig(dataDir);
  const env = process.env[EVENT_STORE_ENV];
  if (env) config.eventStore = checks.eventStore(env, EVENT_STORE_ENV) as string;
  return config;
}

function readConfig(dataDir: string): Config {
  const bytes = readFileNoFollow(dataDir, 'apie.json');
  if (bytes === null) return { ...defaults };
  const text = bytes.toString('utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw misconfigured(`apie.json: not valid JSON (${(err as Error).message})`, err);
  }
  return parseConfig(raw);
}

/**
 * The CORS origins of a data directory whose apie.json does not load, as far
 * as they can be read ([] otherwise), so the browser app that made a request
 * can still read the error.
 */
export function corsOriginsDespiteErrors(dataDir: string): string[] {
  try {
    const raw = JSON.parse(readFileNoFollow(dataDir, 'apie.json')?.toString('utf8') ?? '{}');
    return checks.corsOrigins(raw.corsOrigins ?? [], 'corsOrigins') as string[];
  } catch {
    return [];
  }
}
