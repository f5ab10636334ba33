// HTTP helpers (unit): entity tags, ranges, Content-Disposition, routing.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ApieError, type ErrorCode } from '../src/errors.ts';
import { contentDisposition, parseEtags, parseRange } from '../src/http.ts';
import { allowed, route } from '../src/routes.ts';

const H = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

// The code fn fails with (a foreign error is a bug: 'internal'), or undefined.
function code(fn: () => unknown): ErrorCode | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof ApieError ? err.code : 'internal';
  }
  return undefined;
}

const t = suite('http helpers');

t('should accept a hash quoted, unquoted, weak or as a list, and *', () => {
  assert.equal(parseEtags(`"${H}"`), [H]);
  assert.equal(parseEtags(H), [H]);
  assert.equal(parseEtags(`W/"${H}"`), [H]);
  assert.equal(parseEtags(`"${H}", *`), [H, '*']);
});

t('should refuse (400) an entity tag that is not a hash', () => {
  assert.is(code(() => parseEtags('"abc"')), 'bad-request');
  assert.is(code(() => parseEtags(H.toUpperCase())), 'bad-request');
});

t('should parse single ranges and clamp the end', () => {
  assert.equal(parseRange('bytes=0-9', 100), [0, 9]);
  assert.equal(parseRange('bytes=90-', 100), [90, 99]);
  assert.equal(parseRange('bytes=-10', 100), [90, 99]);
  assert.equal(parseRange('bytes=50-500', 100), [50, 99]);
  assert.is(parseRange(undefined, 100), null);
  // Multiple or malformed ranges may be ignored: the whole body is sent.
  assert.is(parseRange('bytes=0-1,5-6', 100), null);
  assert.is(parseRange('items=0-1', 100), null);
});

t('should refuse (416) a range past the end', () => {
  assert.is(code(() => parseRange('bytes=100-', 100)), 'range-not-satisfiable');
  assert.is(code(() => parseRange('bytes=0-', 0)), 'range-not-satisfiable');
  assert.is(code(() => parseRange('bytes=-0', 100)), 'range-not-satisfiable');
});

t('should encode non-ASCII and quoted download names per RFC 6266', () => {
  assert.is(contentDisposition('report.pdf'), 'attachment; filename="report.pdf"');
  assert.is(contentDisposition('rapport été.pdf'), `attachment; filename="rapport _t_.pdf"; filename*=UTF-8''rapport%20%C3%A9t%C3%A9.pdf`);
  assert.is(contentDisposition('a"b.txt'), `attachment; filename="a_b.txt"; filename*=UTF-8''a%22b.txt`);
});

t('should route by path and method, with 404 and 405', () => {
  // The first parameter of an events path is its stream: none for /events (the stream default).
  assert.equal(route('GET', `/events/${H}`).params, [undefined, H]);
  assert.equal(route('GET', `/streams/news/events/${H}`).params, ['news', H]);
  assert.equal(route('POST', '/streams/news/events/verify').params, ['news']);
  assert.equal(route('GET', '/streams').params, []);
  assert.is(allowed('/streams/news/events'), 'GET, PUT, POST, HEAD, OPTIONS');
  assert.equal(route('PUT', '/storage/report.pdf').params, ['report.pdf']);
  assert.equal(route('PUT', '/storage/').params, ['']);
  assert.ok(route('POST', '/storage/verify'));
  assert.is(code(() => route('GET', '/nope')), 'not-found');
  assert.is(code(() => route('PATCH', '/events')), 'method-not-allowed');
  assert.is(allowed('/info'), 'GET, HEAD, OPTIONS');
  // The verify paths belong to their own routes, not to /events/H or /storage/NAME.
  assert.is(code(() => route('GET', '/events/verify')), 'method-not-allowed');
  assert.is(code(() => route('PUT', '/storage/verify')), 'method-not-allowed');
  assert.is(allowed('/storage/verify'), 'POST, OPTIONS');
});

t.run();
