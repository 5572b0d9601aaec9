import { CliError, EXIT } from './exit.js';

/** The options every command takes (main.ts declares them on the program). */
export interface GlobalOptions {
  url?: string;
  token?: string;
  clientId?: string;
  clientSecret?: string;
  json?: boolean;
}

export type Credentials = { kind: 'token'; token: string } | { kind: 'client'; clientId: string; clientSecret: string };

export interface Settings {
  /** The service's root, without a trailing slash. */
  url: string;
  credentials: Credentials;
  json: boolean;
}

/**
 * Where the service is and who we are: flags first, then BACKUP_URL with BACKUP_TOKEN or
 * BACKUP_CLIENT_ID + BACKUP_CLIENT_SECRET. A credential given by flag wins as a whole (a
 * `--token` over a client in the environment, a `--client-id` over BACKUP_TOKEN); the missing
 * half of a client given by flag may come from the environment. Anything missing is a usage
 * error naming the variables (exit 2), never a prompt.
 */
export function resolveSettings(flags: GlobalOptions, env: NodeJS.ProcessEnv): Settings {
  const rawUrl = flags.url ?? env.BACKUP_URL;
  if (!rawUrl) throw new CliError(EXIT.usage, 'no service URL: set BACKUP_URL (e.g. https://backups.example.com) or pass --url');
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new CliError(EXIT.usage, `${flags.url ? '--url' : 'BACKUP_URL'} is not a URL: expected http(s)://host[:port], got ${JSON.stringify(rawUrl)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new CliError(EXIT.usage, `${flags.url ? '--url' : 'BACKUP_URL'} must be an http:// or https:// URL, got ${JSON.stringify(rawUrl)}`);
  const base = url.href.replace(/\/+$/, '');
  return { url: base, credentials: credentialsOf(flags, env), json: flags.json === true };
}

function credentialsOf(flags: GlobalOptions, env: NodeJS.ProcessEnv): Credentials {
  const client = (id: string | undefined, secret: string | undefined): Credentials => {
    if (!id || !secret)
      throw new CliError(EXIT.usage, `an API client needs both its id and its secret: set ${id ? 'BACKUP_CLIENT_SECRET (or --client-secret)' : 'BACKUP_CLIENT_ID (or --client-id)'}`);
    return { kind: 'client', clientId: id, clientSecret: secret };
  };
  if (flags.token) return { kind: 'token', token: flags.token };
  if (flags.clientId || flags.clientSecret) return client(flags.clientId ?? env.BACKUP_CLIENT_ID, flags.clientSecret ?? env.BACKUP_CLIENT_SECRET);
  if (env.BACKUP_TOKEN) return { kind: 'token', token: env.BACKUP_TOKEN };
  if (env.BACKUP_CLIENT_ID || env.BACKUP_CLIENT_SECRET) return client(env.BACKUP_CLIENT_ID, env.BACKUP_CLIENT_SECRET);
  throw new CliError(EXIT.usage, 'no credentials: set BACKUP_TOKEN (an API key), or BACKUP_CLIENT_ID and BACKUP_CLIENT_SECRET (an API client), or pass --token');
}
