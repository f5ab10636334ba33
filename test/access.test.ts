// Who may do what (unit): `{user}` as it stands in stream names, the first
// matching rule deciding, and apie.json's access keys refused at load when
// broken, naming the key and the rule.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { accessOf, allows, isAdmin, userKey } from '../src/access.ts';
import { parseConfig } from '../src/config.ts';

const t = suite('access');

t('should write {user} as its UTF-8 bytes with everything but a-z 0-9 . - escaped, _ included', () => {
  const cases: [string, string][] = [
    ['bob@example.com', 'bob_40example.com'],
    ['Bob', '_42ob'],
    ['a_b', 'a_5fb'],
    ['ü', '_c3_bc'],
    ['x y/z', 'x_20y_2fz'],
    ['0.9-a', '0.9-a'],
  ];
  for (const [name, key] of cases) assert.is(userKey(name), key, name);
  // No two names give the same string: `_` never stands for itself.
  assert.is.not(userKey('a@b'), userKey('a_40b'));
});

const config = parseConfig({
  admins: ['root'],
  groups: { family: ['alice@example.com', 'bob@example.com'] },
  access: [
    { stream: 'private-{user}', read: ['{user}'], write: ['{user}'] },
    { stream: 'private-*', read: [], write: [] },
    { stream: 'family-*', read: ['@family'], write: ['@family'] },
    { stream: 'news', read: ['*'], write: ['@family', 'editor'] },
    { stream: 'n*', read: ['carol'] },
  ],
});

t('should let admins do everything and decide for anyone else by the first rule whose pattern matches', () => {
  const access = accessOf(config);
  const may = (user: string, stream: string, action: 'read' | 'write') => allows(access, user, stream, action);
  assert.ok(isAdmin(access, 'root'));
  assert.not.ok(isAdmin(access, 'alice@example.com'));
  assert.ok(may('root', 'anything', 'write'));
  // {user} is the caller: each their own private stream, and not another's.
  assert.ok(may('bob@example.com', 'private-bob_40example.com', 'write'));
  assert.not.ok(may('alice@example.com', 'private-bob_40example.com', 'read'));
  // * matches any run of name characters, none included.
  assert.ok(may('alice@example.com', 'family-', 'read'));
  assert.ok(may('bob@example.com', 'family-chat.2024', 'write'));
  assert.not.ok(may('carol', 'family-chat', 'read'));
  assert.ok(may('carol', 'news', 'read'));
  assert.not.ok(may('carol', 'news', 'write'));
  assert.ok(may('editor', 'news', 'write'));
  // The first match decides: news is not n*, though both match.
  assert.not.ok(may('carol', 'news', 'write'));
  assert.ok(may('carol', 'notes', 'read'));
  assert.not.ok(may('carol', 'notes', 'write'));
  // A stream no rule matches is for admins only.
  assert.not.ok(may('alice@example.com', 'other', 'read'));
});

t('should make everyone an admin without the access keys', () => {
  const access = accessOf(parseConfig({}));
  assert.ok(isAdmin(access, 'anyone'));
  assert.ok(allows(access, 'anyone', 'any-stream', 'write'));
  // admins: [] means nobody is.
  assert.not.ok(isAdmin(accessOf(parseConfig({ admins: [] })), 'anyone'));
});

t('should refuse broken access keys at load, naming the key and the rule', () => {
  const rule = (r: unknown) => ({ admins: [], groups: { g: ['a'] }, access: [{ stream: 'ok', read: ['*'] }, r] });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ admins: 'root' }, /"admins" must be a list of user names/],
    [{ admins: ['@g'] }, /"admins" must be a list of user names/],
    [{ access: [] }, /"access" needs "admins"/],
    [{ groups: {} }, /"groups" needs "admins"/],
    [{ admins: [], groups: [] }, /"groups" must be an object/],
    [{ admins: [], groups: { 'a b': [] } }, /"groups": "a b" is not a group name/],
    [{ admins: [], groups: { g: 'a' } }, /"groups.g" must be a list/],
    [{ admins: [], access: {} }, /"access" must be a list/],
    [rule('news'), /"access\[1\]" must be an object/],
    [rule({ stream: 'news', reed: [] }), /"access\[1\]" \(stream "news"\): unknown key "reed"/],
    [rule({ read: [] }), /"access\[1\]".*"stream" must be a pattern/],
    [rule({ stream: 'News' }), /"access\[1\]" \(stream "News"\): "stream" may hold/],
    [rule({ stream: 'a{usr}' }), /"access\[1\]" \(stream "a\{usr\}"\): "stream" may hold/],
    [rule({ stream: '-x*' }), /"access\[1\]" \(stream "-x\*"\): "stream" can never match/],
    [rule({ stream: 'x', read: ['@nope'] }), /"access\[1\]" \(stream "x"\) "read": unknown group "@nope"/],
    [rule({ stream: 'x', write: 'a' }), /"access\[1\]" \(stream "x"\) "write" must be a list/],
    [rule({ stream: 'x', write: [7] }), /"access\[1\]" \(stream "x"\) "write": 7 is not a user name/],
    [rule({ stream: 'x', read: ['{user}'] }), /"access\[1\]" \(stream "x"\) "read": "\{user\}" needs \{user\} in the rule's "stream"/],
  ];
  for (const [raw, message] of cases) assert.throws(() => parseConfig(raw), message, JSON.stringify(raw));
  assert.throws(() => parseConfig({ admins: [] , colour: 1 }), /unknown key "colour"/);
});

t.run();
