// The command line: parses argv and hands over to one module per command.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from './config.ts';
import { ApieError, HttpError } from './errors.ts';
import { VERSION } from './version.ts';

export const USAGE = `Apie ${VERSION}: an event log, a content store and Basic auth, as CGI or a server.

Usage:
  apie serve [--host 127.0.0.1] [--port 8000] [--data DIR] [--workers N] [--quiet]
  apie init [DIR]                       create a data directory with apie.json and an admin user
  apie user add NAME [--info TEXT]      add a user (password from the terminal or stdin)
  apie user passwd NAME                 change a user's password
  apie user remove NAME                 remove a user
  apie user list                        list users
  apie token rotate                     new token secret: every bearer token stops working
  apie verify                           check passwd, the event chain and every blob; restore modes
  apie import-apie DIR                  import the event log of an original Apie data directory
  apie --version | --help

The data directory is $APIE_DATA, else --data DIR, else apie-data beside the executable.
Started by a web server (GATEWAY_INTERFACE set), apie answers one CGI request instead.
`;

/** Bad flags or arguments: usage is printed, exit code 2. */
export class UsageError extends Error {}
/** A failure the user can act on: its message is printed, exit code 1. */
export class CliError extends Error {}

export type Options = Record<string, string | boolean | undefined>;
export interface Parsed {
  positionals: string[];
  values: Options;
}

/** Parses flags strictly: unknown flags and missing values are usage errors. */
export function parse(args: string[], options: ParseArgsConfig['options']): Parsed {
  try {
    const { values, positionals } = parseArgs({ args, options: { ...options, data: { type: 'string' } }, allowPositionals: true, strict: true });
    return { values: values as Options, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./commands/serve.ts')).serve,
  init: async () => (await import('./commands/init.ts')).init,
  user: async () => (await import('./commands/user.ts')).user,
  token: async () => (await import('./commands/token.ts')).token,
  verify: async () => (await import('./commands/verify.ts')).verify,
  'import-apie': async () => (await import('./commands/import.ts')).importApie,
};

/** Runs the command line; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  if (process.env.APIE_SERVE_WORKER !== undefined) return (await import('./commands/serve.ts')).serveWorker();
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-v') {
    console.log(`Apie ${VERSION} (Node ${process.version})`);
    return 0;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (name === undefined || !Object.hasOwn(commands, name)) {
    process.stderr.write(`${name === undefined ? 'apie: no command given' : `apie: unknown command "${name}"`}\n\n${USAGE}`);
    return 2;
  }
  try {
    return await (await commands[name]())(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`apie ${name}: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    // Expected failures carry a message meant for people; anything else is a bug.
    const expected = err instanceof CliError || err instanceof ConfigError || err instanceof HttpError || err instanceof ApieError;
    console.error(`apie ${name}: ${expected ? (err as Error).message : err instanceof Error ? err.stack : err}`);
    return 1;
  }
}
