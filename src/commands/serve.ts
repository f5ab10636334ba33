// apie serve: the HTTP server on a data directory (created on first run).
import { createContext } from '../app.ts';
import { parse, UsageError } from '../cli.ts';
import { resolveDataDir } from '../config.ts';
import { startServer } from '../server.ts';
import { initDataDir } from './init.ts';

export async function serve(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8000' },
    workers: { type: 'string' },
    quiet: { type: 'boolean', default: false },
  });
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, not "${values.port}"`);
  const dataDir = resolveDataDir(values.data as string | undefined);
  await initDataDir(dataDir);
  const ctx = createContext(dataDir);
  const server = await startServer({ host: values.host as string, port, ctx, quiet: values.quiet as boolean });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  console.log(`apie: listening on http://${values.host}:${bound}/ (data: ${dataDir})`);
  await new Promise<void>((resolve) => {
    const stop = () => server.close(() => resolve());
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}
