/**
 * backupctl: the service's command line, for people and for cron (SPEC section 9).
 *
 * Libraries, and why:
 * - commander (14, the release line that supports Node 20) parses the arguments: nested
 *   subcommands (`backup create`), per-option parsers and choices, `--live`/`--consistent`
 *   conflicts, generated help, and `exitOverride` so that every usage error ends with our exit
 *   code 2 instead of commander's 1. It has no dependencies and is the most used parser on npm,
 *   so the single bundled file stays small.
 * - cli-progress draws the `--wait` bar (rate, ETA) on a terminal, redrawn in place; without a
 *   terminal we do not use it at all and print one plain line per 10 s, so cron logs hold no
 *   control characters. Small, dependency-light, and long-lived.
 * The API is called through the typed client (src/client, openapi-fetch over types generated
 * from openapi/openapi.json), so a change of the document is a compile error here.
 *
 * Output: results on stdout (tables, or the API's JSON with --json); progress, retries and
 * errors on stderr. Nothing ever reads stdin: under cron a missing setting is exit 2, not a prompt.
 */
import { Command, CommanderError, Option } from 'commander';
import { createBackup, deleteBackup, getBackupCommand, listBackups, verifyBackup, type CreateFlags, type ListFlags, type WaitFlags } from './backups.js';
import { resolveSettings, type GlobalOptions } from './config.js';
import { makeCtx, type Ctx } from './context.js';
import { download } from './download.js';
import { CliError, EXIT, type ExitCode } from './exit.js';
import { parseDuration, parseLimit, parseList } from './format.js';
import { connect } from './http.js';
import { listClusters, listPolicies, showRetention } from './listings.js';
import { listRestores, restoreCommand, type RestoreFlags } from './restores.js';

const VERSION = '0.1.0';

const ENV_HELP = `
Configuration (flags override the environment):
  BACKUP_URL                 the service, e.g. https://backups.example.com
  BACKUP_TOKEN               an API key, or
  BACKUP_CLIENT_ID           an API client's id and
  BACKUP_CLIENT_SECRET       its secret (exchanged for a token at POST /oauth/token)

CLUSTER is a cluster's id or name; BACKUP is a backup's id or "latest" (its newest completed backup).

Exit codes:
  0 done                      4 refused for now (409 busy, 429 rate limited): says when to retry
  1 backup/restore/verify     5 authentication or permission
    ended failed              6 service unreachable, or 5xx after retries
  2 usage                     7 not found
  3 --timeout passed (the work goes on in the service)
`;

function write(stream: NodeJS.WriteStream, text: string) {
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** The program; each action resolves to its exit code through `done`. */
export function buildProgram(env: NodeJS.ProcessEnv, done: (code: ExitCode) => void): Command {
  const program = new Command('backupctl');
  program
    .description('Back up, restore and inspect the clusters of a backup service tenant.')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError('(backupctl --help shows the commands)')
    .option('--url <url>', 'the service (default: $BACKUP_URL)')
    .option('--token <token>', 'an API key (default: $BACKUP_TOKEN; the environment keeps it out of `ps`)')
    .option('--client-id <id>', 'an API client id (default: $BACKUP_CLIENT_ID)')
    .option('--client-secret <secret>', 'the API client secret (default: $BACKUP_CLIENT_SECRET)')
    .option('--json', "print the API's JSON instead of tables")
    .addHelpText('after', ENV_HELP);

  /** The context of one invocation (settings resolved only when a command runs). */
  const ctxOf = (cmd: Command, key?: string): Ctx => {
    const settings = resolveSettings(cmd.optsWithGlobals<GlobalOptions>(), env);
    const note = (line: string) => write(process.stderr, `backupctl: ${line}`);
    return makeCtx(connect(settings, note), settings.json, (text) => write(process.stdout, text), key);
  };
  const act =
    <A extends unknown[]>(fn: (cmd: Command, ...args: A) => Promise<ExitCode>) =>
    async (...args: unknown[]) => {
      const cmd = args.at(-1) as Command;
      done(await fn(cmd, ...(args.slice(0, -2) as A)));
    };
  const waitOptions = (c: Command) =>
    c
      .option('--wait', 'wait until it has ended, showing progress')
      .addOption(new Option('--timeout <duration>', 'stop waiting after this long (e.g. 90s, 30m; implies --wait): exit 3, the work goes on').argParser(parseDuration));

  program
    .command('clusters')
    .description('clusters of the tenant')
    .command('list')
    .description('list the clusters')
    .action(act((cmd) => listClusters(ctxOf(cmd))));

  program
    .command('backups')
    .description('backups of a cluster')
    .command('list <cluster>')
    .description('list backups, newest first')
    .addOption(new Option('--status <status>', 'only backups in this status').choices(['queued', 'running', 'completed', 'failed', 'deleting']))
    .addOption(new Option('--trigger <trigger>', 'only manual or scheduled backups').choices(['manual', 'scheduled']))
    .addOption(new Option('--limit <n>', 'at most this many (1..100, default 20)').argParser(parseLimit))
    .action(act((cmd, cluster: string) => listBackups(ctxOf(cmd), cluster, cmd.opts<ListFlags>())));

  const backup = program.command('backup').description('one backup: create, get, delete, verify');
  waitOptions(
    backup
      .command('create <cluster>')
      .description('request a manual backup (one Idempotency-Key per invocation, so retries never create two)')
      .addOption(new Option('--live', 'a live backup (no pre/post backup hooks)').conflicts('consistent'))
      .addOption(new Option('--consistent', 'a consistent backup (the cluster\'s pre_backup hook is called first)').conflicts('live'))
      .option('--idempotency-key <key>', 'use this key instead of a generated one (e.g. one per cron slot)')
      .option('--retry-after-limit', "when rate limited (429), wait out the answer's Retry-After once and try again"),
  ).action(
    act((cmd, cluster: string) => {
      const o = cmd.opts<CreateFlags & { idempotencyKey?: string }>();
      return createBackup(ctxOf(cmd, o.idempotencyKey), cluster, o);
    }),
  );
  waitOptions(backup.command('get <cluster> <backup>').description('show a backup (with --wait: until it has ended)')).action(
    act((cmd, cluster: string, id: string) => getBackupCommand(ctxOf(cmd), cluster, id, cmd.opts<WaitFlags>())),
  );
  waitOptions(backup.command('delete <cluster> <backup>').description('delete a backup and its stored data (with --wait: until it is gone)')).action(
    act((cmd, cluster: string, id: string) => deleteBackup(ctxOf(cmd), cluster, id, cmd.opts<WaitFlags>())),
  );
  waitOptions(backup.command('verify <cluster> <backup>').description("re-read and re-hash every stored copy of a completed backup (exit 1 when it fails)")).action(
    act((cmd, cluster: string, id: string) => verifyBackup(ctxOf(cmd), cluster, id, cmd.opts<WaitFlags>())),
  );

  waitOptions(
    program
      .command('restore <cluster> <backup>')
      .description('restore a completed backup into its cluster or another one')
      .option('--target-cluster <cluster>', 'restore into this cluster (id or name) instead')
      .addOption(new Option('--components <a,b>', 'only these components').argParser(parseList))
      .addOption(new Option('--paths <p,q>', 'only these paths of one directory component').argParser(parseList)),
  ).action(act((cmd, cluster: string, id: string) => restoreCommand(ctxOf(cmd), cluster, id, cmd.opts<RestoreFlags>())));

  program
    .command('restores')
    .description('restores of a cluster')
    .command('list <cluster>')
    .description('restores into this cluster or from its backups, newest first')
    .addOption(new Option('--limit <n>', 'at most this many (1..100, default 20)').argParser(parseLimit))
    .action(act((cmd, cluster: string) => listRestores(ctxOf(cmd), cluster, cmd.opts<{ limit?: number }>())));

  program
    .command('retention <cluster>')
    .description('which backups retention keeps, and which rule keeps each')
    .action(act((cmd, cluster: string) => showRetention(ctxOf(cmd), cluster)));

  program
    .command('policies')
    .description('backup policies of the tenant')
    .command('list')
    .description('list the policies')
    .action(act((cmd) => listPolicies(ctxOf(cmd))));

  program
    .command('download <cluster> <backup> <component>')
    .description('download a portable copy of one component (tar, or pg_dump custom format)')
    .requiredOption('-o, --output <file>', 'write it here ("-" for stdout)')
    .action(act((cmd, cluster: string, id: string, component: string) => download(ctxOf(cmd), cluster, id, component, cmd.opts<{ output: string }>().output)));

  return program;
}

/** Runs one invocation and answers its exit code (never throws). */
export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<ExitCode> {
  let code: ExitCode = EXIT.ok;
  const program = buildProgram(env, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help asked for and --version end well (commander's 0); everything it refuses is a usage error.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof CliError) {
      write(process.stderr, `backupctl: ${err.message}`);
      return err.code;
    }
    write(process.stderr, `backupctl: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return EXIT.unavailable;
  }
}

// `backupctl ... | head` closes stdout early: that ends the output, it is not a crash.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(Number(process.exitCode ?? 0));
  throw err;
});
const code = await run(process.argv.slice(2), process.env);
process.exitCode = code;
// Exit once stdout has taken everything (a pipe may still hold the last table).
process.stdout.write('', () => process.exit(code));
