// HTTP helpers (unit): entity tags, ranges, Content-Disposition, routing.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ApieError, HttpError } from '../src/errors.ts';
import { contentDisposition, parseEtags, parseRange } from '../src/http.ts';
import { allowed, route } from '../src/routes.ts';

const H = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function status(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof HttpError || err instanceof ApieError ? err.status : -1;
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

t('should answer 400 for an entity tag that is not a hash', () => {
  assert.is(status(() => parseEtags('"abc"')), 400);
  assert.is(status(() => parseEtags(H.toUpperCase())), 400);
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

t('should answer 416 for a range past the end', () => {
  assert.is(status(() => parseRange('bytes=100-', 100)), 416);
  assert.is(status(() => parseRange('bytes=0-', 0)), 416);
  assert.is(status(() => parseRange('bytes=-0', 100)), 416);
});

t('should encode non-ASCII and quoted download names per RFC 6266', () => {
  assert.is(contentDisposition('report.pdf'), 'attachment; filename="report.pdf"');
  assert.is(contentDisposition('rapport été.pdf'), `attachment; filename="rapport _t_.pdf"; filename*=UTF-8''rapport%20%C3%A9t%C3%A9.pdf`);
  assert.is(contentDisposition('a"b.txt'), `attachment; filename="a_b.txt"; filename*=UTF-8''a%22b.txt`);
});

t('should route by path and method, with 404 and 405', () => {
  assert.equal(route('GET', `/events/${H}`).params, [H]);
  assert.equal(route('PUT', '/storage/report.pdf').params, ['report.pdf']);
  assert.equal(route('PUT', '/storage/').params, ['']);
  assert.ok(route('POST', '/storage/verify'));
  assert.is(status(() => route('GET', '/nope')), 404);
  assert.is(status(() => route('PATCH', '/events')), 405);
  assert.is(allowed('/info'), 'GET, HEAD, OPTIONS');
  // The verify paths belong to their own routes, not to /events/H or /storage/NAME.
  assert.is(status(() => route('GET', '/events/verify')), 405);
  assert.is(status(() => route('PUT', '/storage/verify')), 405);
  assert.is(allowed('/storage/verify'), 'POST, OPTIONS');
});

t.run();
