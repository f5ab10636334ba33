// The command line: parses argv and hands over to one module per command.
import { workerOptions } from './args.ts';
import { ApieError } from './errors.ts';
import { VERSION } from './version.ts';

const USAGE = `Apie ${VERSION}: an event log, a content store and Basic auth, as CGI or a server.

Usage:
  apie serve [--host 127.0.0.1] [--port 8000] [--data DIR] [--workers N] [--max-connections N] [--quiet]
  apie init [DIR]                       create a data directory with apie.json and an admin user
  apie user add NAME [--info TEXT]      add a user (password from the terminal or stdin)
  apie user passwd NAME                 change a user's password
  apie user remove NAME                 remove a user
  apie user list                        list users
  apie token rotate                     new token secret: every bearer token stops working
  apie streams                          list the streams with their counts and last hashes
  apie verify [--stream NAME]           check passwd, every stream's chain and every blob (or one stream); restore modes
  apie import-apie DIR [--stream NAME]  import an original Apie data directory: its events (into NAME, default: default) and blobs
  apie migrate                          create or upgrade the schema of the PostgreSQL event store ("eventStore")
  apie migrate --to URL|DIR [--stream NAME]
                                        copy the events (every stream, or NAME) to a PostgreSQL database or a data directory; resumable, verified
  apie --version | --help

The data directory is the first of: --data DIR; $APIE_DATA; the directory named
in apie-data.path beside the executable; apie-data beside the executable;
apie-data in the home directory of the account apie runs as (from the passwd
database; init and serve create it there when none is found).
The events live in the data directory, or in PostgreSQL when apie.json's "eventStore"
(or $APIE_EVENT_STORE) is a postgres:// URL.
Started by a web server (GATEWAY_INTERFACE set), apie answers one CGI request instead.
`;

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./commands/serve.ts')).serve,
  init: async () => (await import('./commands/init.ts')).init,
  user: async () => (await import('./commands/user.ts')).user,
  token: async () => (await import('./commands/token.ts')).token,
  verify: async () => (await import('./commands/verify.ts')).verify,
  streams: async () => (await import('./commands/streams.ts')).streams,
  'import-apie': async () => (await import('./commands/import.ts')).importApie,
  migrate: async () => (await import('./commands/migrate.ts')).migrate,
};

/** Runs the command line; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  if (workerOptions() !== undefined) return (await import('./commands/serve.ts')).serveWorker();
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-v') {
    console.log(`Apie ${VERSION} (Node ${process.version})`);
    return 0;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const known = name !== undefined && Object.hasOwn(commands, name);
  try {
    if (!known) throw new ApieError('usage', name === undefined ? 'no command given' : `unknown command "${name}"`);
    return await (await commands[name]())(rest);
  } catch (err) {
    return exitCode(err, known ? `apie ${name}` : 'apie');
  }
}

// The one place an error becomes an exit code: bad arguments are 2 with the
// usage; what Apie refused or found wrong is 1 with its message; anything
// else is a bug, 1 with the stack.
function exitCode(err: unknown, prefix: string): number {
  if (err instanceof ApieError && err.code === 'usage') {
    process.stderr.write(`${prefix}: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  console.error(`${prefix}: ${err instanceof ApieError ? err.message : err instanceof Error ? err.stack : err}`);
  // The operator's details (paths, the account) that an HTTP client never sees.
  if (err instanceof ApieError && typeof err.cause === 'string') console.error(`  (${err.cause})`);
  return 1;
}
