// The route table. Handlers load lazily so a CGI request only pays for the
// modules its path needs (bcrypt, lockfiles and crypto are not free).
import { ApieError } from './errors.ts';
import type { Handler } from './types.ts';

type Load = () => Promise<Handler>;
interface Route {
  pattern: RegExp;
  methods: Record<string, Load>;
  /** Answered without credentials: the client's code is no secret. */
  public?: boolean;
}

const root = () => import('./handlers/root.ts');
const user = () => import('./handlers/user.ts');
const events = () => import('./handlers/events.ts');
const storage = () => import('./handlers/storage.ts');
const client = () => import('./handlers/client.ts');

const routes: Route[] = [
  { pattern: /^\/$/, methods: { GET: async () => (await root()).getRoot } },
  { pattern: /^\/info$/, methods: { GET: async () => (await root()).getInfo } },
  { pattern: /^\/client\.(?:js|d\.ts)$/, public: true, methods: { GET: async () => (await client()).getClientFile } },
  { pattern: /^\/auth\/token$/, methods: { POST: async () => (await user()).postToken } },
  { pattern: /^\/user\/update$/, methods: { POST: async () => (await user()).postUpdate } },
  // `/events…` is the stream default; `/streams/NAME/events…` names one (the first parameter).
  { pattern: /^\/streams$/, methods: { GET: async () => (await events()).getStreams } },
  {
    pattern: /^(?:\/streams\/([^/]*))?\/events$/,
    methods: {
      GET: async () => (await events()).getEvents,
      PUT: async () => (await events()).appendEvent,
      POST: async () => (await events()).appendEvent,
      // Its own HEAD: the count and last hash without loading the events.
      HEAD: async () => (await events()).headEvents,
    },
  },
  { pattern: /^(?:\/streams\/([^/]*))?\/events\/verify$/, methods: { POST: async () => (await events()).verifyEvents } },
  { pattern: /^(?:\/streams\/([^/]*))?\/events\/([^/]*)$/, methods: { GET: async () => (await events()).getEvent } },
  { pattern: /^\/storage\/verify$/, methods: { POST: async () => (await storage()).verifyStorage } },
  {
    pattern: /^\/storage\/(.*)$/s,
    methods: {
      GET: async () => (await storage()).getBlob,
      PUT: async () => (await storage()).putBlob,
      POST: async () => (await storage()).putBlob,
      DELETE: async () => (await storage()).deleteBlob,
    },
  },
];

// Each handler is imported once: a server's later requests skip the import's promises.
for (const r of routes) {
  for (const [method, load] of Object.entries(r.methods)) {
    let loaded: Handler | undefined;
    r.methods[method] = async () => (loaded ??= await load());
  }
}

export interface Match {
  load: Load;
  params: string[];
  public: boolean;
}

// The first route whose pattern matches owns the path: /events/verify is
// never read as the event "verify", whatever the method.
function owner(path: string): { route: Route; params: string[] } | null {
  for (const r of routes) {
    const m = r.pattern.exec(path);
    if (m) return { route: r, params: m.slice(1) };
  }
  return null;
}

/** The Allow header value for a path, or null when no route has that path. */
export function allowed(path: string): string | null {
  const found = owner(path);
  if (!found) return null;
  const methods = new Set(Object.keys(found.route.methods));
  if (methods.has('GET')) methods.add('HEAD');
  methods.add('OPTIONS');
  return [...methods].join(', ');
}

/**
 * Finds the handler for a method and path: the route that owns the path
 * (the first whose pattern matches); HEAD is GET's handler unless the route
 * has its own (the body is dropped in app.ts either way). Another method
 * there is 405 with Allow.
 */
export function route(method: string, path: string): Match {
  const found = owner(path);
  if (!found) throw new ApieError('not-found', `no such path: ${path}`);
  const { methods } = found.route;
  const lookup = method === 'HEAD' && !Object.hasOwn(methods, 'HEAD') ? 'GET' : method;
  if (Object.hasOwn(methods, lookup)) return { load: methods[lookup], params: found.params, public: found.route.public === true };
  const allow = allowed(path)!;
  throw new ApieError('method-not-allowed', `${method} is not allowed here; allowed: ${allow}`, { headers: { Allow: allow } });
}
