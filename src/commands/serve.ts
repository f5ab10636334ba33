// apie serve: the HTTP server on a data directory (created on first run),
// in one process or as N node:cluster workers sharing the port.
import type { Cluster } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { createContext } from '../app.ts';
import { parse, workerEnv, workerOptions } from '../args.ts';
import { loadConfig } from '../config.ts';
import { dataDirToCreate } from '../datadir.ts';
import { ApieError } from '../errors.ts';
import { DEFAULT_MAX_CONNECTIONS, startServer, stopServer } from '../server.ts';
import { initDataDir } from './init.ts';

interface Options {
  host: string;
  port: number;
  workers: number;
  quiet: boolean;
  maxConnections: number;
  dataDir: string;
}

export async function serve(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8000' },
    workers: { type: 'string' },
    quiet: { type: 'boolean', default: false },
    'max-connections': { type: 'string' },
  });
  if (positionals.length) throw new ApieError('usage', `unexpected argument "${positionals[0]}"`);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ApieError('usage', `--port must be a port number, not "${values.port}"`);
  const workers = values.workers === undefined ? availableParallelism() : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new ApieError('usage', `--workers must be a whole number from 1 to 256, not "${values.workers}"`);
  const maxConnections = values['max-connections'] === undefined ? DEFAULT_MAX_CONNECTIONS : Number(values['max-connections']);
  if (!Number.isInteger(maxConnections) || maxConnections < 1 || maxConnections > 1_000_000) {
    throw new ApieError('usage', `--max-connections must be a whole number from 1 to 1000000, not "${values['max-connections']}"`);
  }
  const opts: Options = { host: values.host, port, workers, quiet: values.quiet, maxConnections, dataDir: dataDirToCreate(values.data) };
  await initDataDir(opts.dataDir);
  // Said once, here: CGI loads the configuration on every request, and its stderr is the error log.
  if (loadConfig(opts.dataDir).corsOrigins.includes('*')) {
    console.error('apie: warning: "corsOrigins": ["*"] lets any web page call this API with its visitors\' credentials; list your app\'s origins instead');
  }
  return workers > 1 ? primary(opts) : run(opts, false);
}

/** Runs one cluster worker with the options its primary gave it. */
export function serveWorker(): Promise<number> {
  return run(workerOptions() as Options, true);
}

async function run(opts: Options, worker: boolean): Promise<number> {
  const server = await startServer({ host: opts.host, port: opts.port, ctx: createContext(opts.dataDir), quiet: opts.quiet, maxConnections: opts.maxConnections });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : opts.port;
  if (!worker) console.log(`apie: listening on http://${opts.host}:${bound}/ (data: ${opts.dataDir})`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (!stopping) void stopServer(server).then(resolve);
      stopping = true;
    };
    // `on`, not `once`: a second signal during shutdown must not kill us midway.
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    // A worker whose primary died stops too.
    if (worker) process.once('disconnect', stop);
  });
  // The channel to the primary would keep a worker alive.
  if (worker && process.connected) process.disconnect();
  return 0;
}

async function primary(opts: Options): Promise<number> {
  // At run time this is the cluster object itself; its declared type is the ES namespace.
  const cluster = process.getBuiltinModule('node:cluster') as unknown as Cluster;
  // Port 0 would give every worker a port of its own: pick one for all.
  if (opts.port === 0) opts = { ...opts, port: await freePort(opts.host) };
  const env = workerEnv(opts);
  cluster.setupPrimary({ args: [] });
  const forks = Array.from({ length: opts.workers }, () => cluster.fork(env));
  await Promise.all(forks.map((w) => new Promise<void>((resolve, reject) => {
    w.once('listening', () => resolve());
    // The worker has said why on stderr; this says what it means for serve.
    w.once('exit', (code) => reject(new ApieError('internal', `a worker exited with status ${code} before listening`)));
  })));
  console.log(`apie: listening on http://${opts.host}:${opts.port}/ with ${opts.workers} workers (data: ${opts.dataDir})`);
  let stopping = false;
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    // A crashed worker is replaced: its in-flight requests are lost, nothing on disk is.
    console.error(`apie: worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
    cluster.fork(env);
  });
  await new Promise<void>((resolve) => {
    const stop = () => {
      if (stopping) return;
      stopping = true;
      // A signal, not worker.disconnect(): that waits for every connection to
      // close first, so an open event stream would hold the shutdown forever.
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      const check = () => (Object.keys(cluster.workers ?? {}).length === 0 ? resolve() : setTimeout(check, 20));
      check();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  return 0;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = process.getBuiltinModule('node:net').createServer().once('error', reject).listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
