// Who may do what, from apie.json: `admins`, `groups` and the `access` rules
// per stream. Without these keys every user is an admin (the original's
// behaviour). Otherwise admins may do everything, and for anyone else the
// first rule whose stream pattern matches decides; a stream no rule matches
// is for admins only. Checking reads nothing but the configuration.
import { ApieError } from './errors.ts';
import { validName } from './passwd.ts';
import type { Context } from './types.ts';

/** An access rule as apie.json spells it. */
export interface AccessRule {
  stream: string;
  read?: string[];
  write?: string[];
}

/** The access keys of apie.json, as loaded. */
export interface AccessConfig {
  admins: string[] | null;
  groups: Record<string, string[]>;
  access: AccessRule[];
}

export type Action = 'read' | 'write';

// A pattern is literal text, `*` and `{user}`.
const STAR = 0;
const USER = 1;
type Token = string | typeof STAR | typeof USER;

interface Grant {
  everyone: boolean;
  /** `{user}`: the caller, whose name the pattern matched. */
  caller: boolean;
  users: Set<string>;
  groups: string[];
}

interface Rule {
  /** The pattern as written. */
  stream: string;
  tokens: Token[];
  /** The pattern as a RegExp when it has no `{user}`. */
  fixed?: RegExp;
  read: Grant;
  write: Grant;
}

/** The access configuration, checked and ready for lookups. */
export interface Access {
  /** null: everyone is an admin. */
  admins: Set<string> | null;
  groups: Map<string, Set<string>>;
  rules: Rule[];
}

const NAME_CHARS = /^[a-z0-9._-]*$/;
const GROUP_RE = /^[A-Za-z0-9._-]{1,64}$/;

function refused(message: string): ApieError {
  return new ApieError('misconfigured', `apie.json: ${message}`);
}

/**
 * A user's name as it stands for `{user}` in a stream name: every byte of its
 * UTF-8 outside a-z, 0-9, `.` and `-` (and `_` itself) written as `_` and two
 * lowercase hex digits, so no two names give the same string.
 */
export function userKey(name: string): string {
  let key = '';
  for (const b of Buffer.from(name, 'utf8')) {
    const plain = (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2e || b === 0x2d;
    key += plain ? String.fromCharCode(b) : `_${b.toString(16).padStart(2, '0')}`;
  }
  return key;
}

function escapeRe(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
}

function patternRe(tokens: Token[], key: string): RegExp {
  return new RegExp(`^${tokens.map((t) => (t === STAR ? '[a-z0-9._-]*' : escapeRe(t === USER ? key : t))).join('')}$`);
}

function parsePattern(pattern: unknown, where: string): Token[] {
  if (typeof pattern !== 'string' || pattern === '' || pattern.length > 256) throw refused(`${where}: "stream" must be a pattern such as "family-*" or "private-{user}"`);
  const tokens: Token[] = [];
  for (const part of pattern.split(/(\*|\{user\})/)) {
    if (part === '*') tokens.push(STAR);
    else if (part === '{user}') tokens.push(USER);
    else if (!NAME_CHARS.test(part)) throw refused(`${where}: "stream" may hold a-z, 0-9, ".", "_", "-", "*" and "{user}" only`);
    else if (part) tokens.push(part);
  }
  if (typeof tokens[0] === 'string' && !/^[a-z0-9]/.test(tokens[0])) throw refused(`${where}: "stream" can never match: stream names start with a letter or digit`);
  return tokens;
}

function parseGrant(value: unknown, where: string, groups: Map<string, Set<string>>, hasUser: boolean): Grant {
  const grant: Grant = { everyone: false, caller: false, users: new Set(), groups: [] };
  if (value === undefined) return grant;
  if (!Array.isArray(value)) throw refused(`${where} must be a list of user names, "@group", "{user}" or "*"`);
  for (const who of value) {
    if (who === '*') grant.everyone = true;
    else if (who === '{user}') {
      // Without {user} in the pattern it would mean every caller: say "*" then.
      if (!hasUser) throw refused(`${where}: "{user}" needs {user} in the rule's "stream" pattern`);
      grant.caller = true;
    } else if (typeof who === 'string' && who.startsWith('@')) {
      if (!groups.has(who.slice(1))) throw refused(`${where}: unknown group "${who}"`);
      grant.groups.push(who.slice(1));
    } else if (typeof who === 'string' && validName(who)) grant.users.add(who);
    else throw refused(`${where}: ${JSON.stringify(who)} is not a user name, "@group", "{user}" or "*"`);
  }
  return grant;
}

function userList(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || !value.every((u) => typeof u === 'string' && validName(u) && !u.startsWith('@'))) {
    throw refused(`${where} must be a list of user names`);
  }
  return value;
}

/** Checks the access keys of apie.json; a problem is refused naming the key and the rule. */
export function parseAccess(raw: Record<string, unknown>): AccessConfig {
  const has = (key: string) => Object.hasOwn(raw, key);
  const admins = has('admins') ? userList(raw.admins, '"admins"') : null;
  if (admins === null && (has('groups') || has('access'))) {
    throw refused(`"${has('access') ? 'access' : 'groups'}" needs "admins" (a list of user names, [] for none): without it every user is an admin`);
  }
  const groups: Record<string, string[]> = {};
  if (has('groups')) {
    const value = raw.groups;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw refused('"groups" must be an object of group name → list of user names');
    for (const [name, members] of Object.entries(value)) {
      if (!GROUP_RE.test(name)) throw refused(`"groups": "${name}" is not a group name (1–64 of A-Z, a-z, 0-9, ".", "_", "-")`);
      groups[name] = userList(members, `"groups.${name}"`);
    }
  }
  const access: AccessRule[] = [];
  if (has('access')) {
    if (!Array.isArray(raw.access)) throw refused('"access" must be a list of rules such as {"stream": "news", "read": ["*"], "write": ["@editors"]}');
    raw.access.forEach((rule: unknown, i) => {
      const where = `"access[${i}]"`;
      if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw refused(`${where} must be an object with "stream", "read" and "write"`);
      const named = typeof (rule as AccessRule).stream === 'string' ? `${where} (stream "${(rule as AccessRule).stream}")` : where;
      for (const key of Object.keys(rule)) if (!['stream', 'read', 'write'].includes(key)) throw refused(`${named}: unknown key "${key}"`);
      access.push(rule as AccessRule);
    });
  }
  const config = { admins, groups, access };
  // Patterns and group references are checked now, at load, not at the first request that needs them.
  compile(config);
  return config;
}

function compile(config: AccessConfig): Access {
  const groups = new Map(Object.entries(config.groups).map(([name, members]) => [name, new Set(members)]));
  const rules = config.access.map((rule, i): Rule => {
    const where = `"access[${i}]" (stream ${JSON.stringify(rule.stream)})`;
    const tokens = parsePattern(rule.stream, where);
    const hasUser = tokens.includes(USER);
    return {
      stream: rule.stream,
      tokens,
      fixed: hasUser ? undefined : patternRe(tokens, ''),
      read: parseGrant(rule.read, `${where} "read"`, groups, hasUser),
      write: parseGrant(rule.write, `${where} "write"`, groups, hasUser),
    };
  });
  return { admins: config.admins === null ? null : new Set(config.admins), groups, rules };
}

const compiled = new WeakMap<AccessConfig, Access>();

/** The access configuration ready for lookups (compiled once per loaded configuration). */
export function accessOf(config: AccessConfig): Access {
  let access = compiled.get(config);
  if (!access) compiled.set(config, (access = compile(config)));
  return access;
}

/** Whether a user is an admin. */
export function isAdmin(access: Access, user: string): boolean {
  return access.admins === null || access.admins.has(user);
}

function grants(grant: Grant, access: Access, user: string): boolean {
  return grant.everyone || grant.caller || grant.users.has(user) || grant.groups.some((g) => access.groups.get(g)!.has(user));
}

function matches(rule: Rule, stream: string, user: string): boolean {
  return (rule.fixed ?? patternRe(rule.tokens, userKey(user))).test(stream);
}

/** Whether a user may read or write a stream: admins always; anyone else as the first matching rule says. */
export function allows(access: Access, user: string, stream: string, action: Action): boolean {
  if (isAdmin(access, user)) return true;
  const rule = access.rules.find((r) => matches(r, stream, user));
  return rule !== undefined && grants(rule[action], access, user);
}

/** Whether the caller is an admin. */
export function callerIsAdmin(ctx: Context): boolean {
  return isAdmin(accessOf(ctx.config), ctx.user!.name);
}

/** Throws 403 unless the caller is an admin. */
export function requireAdmin(ctx: Context): void {
  if (!callerIsAdmin(ctx)) throw new ApieError('forbidden', 'only admins may do this');
}

/** Throws 403 unless the caller may do `action` on the stream ('admin': only admins may). */
export function authorize(ctx: Context, stream: string, action: Action | 'admin'): void {
  if (action === 'admin') return requireAdmin(ctx);
  if (!allows(accessOf(ctx.config), ctx.user!.name, stream, action)) throw new ApieError('forbidden', `you may not ${action} the stream "${stream}"`);
}

/** Whether the caller may read a stream. */
export function mayRead(ctx: Context, stream: string): boolean {
  return allows(accessOf(ctx.config), ctx.user!.name, stream, 'read');
}

/** What `GET /info` says about the caller: admin or not, and what each rule grants them. */
export function describeAccess(ctx: Context): { admin: boolean; access: { stream: string; read: boolean; write: boolean }[] } {
  const access = accessOf(ctx.config);
  const user = ctx.user!.name;
  const admin = isAdmin(access, user);
  return {
    admin,
    access: access.rules.map((r) => ({
      // The caller's own stream name where the pattern has {user}.
      stream: r.tokens.map((t) => (t === STAR ? '*' : t === USER ? userKey(user) : t)).join(''),
      read: admin || grants(r.read, access, user),
      write: admin || grants(r.write, access, user),
    })),
  };
}
