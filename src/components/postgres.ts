import type { Readable } from 'node:stream';
import { dbnameArgument, parsePostgresUrl } from './postgres-connection.js';
import { childEnv, lazyReadable, runWithInput, spawnOutput } from './process.js';
import type { ComponentDriver } from './types.js';

export interface PostgresConfig {
  /** postgresql:// URL, possibly with a password. */
  url: string;
}

export const postgresDriver: ComponentDriver<PostgresConfig> = {
  type: 'postgres',
  artifactExtension: 'pgdump',

  backup(config, ctx): Readable {
    return lazyReadable(() => {
      const conn = parsePostgresUrl(config.url);
      return spawnOutput('pg_dump', ['--format=custom', '--no-password', dbnameArgument(conn.database)], {
        label: 'pg_dump',
        env: childEnv(conn.env),
        redact: conn.redact,
      });
    }, ctx.signal);
  },

  async restore(config, artifact, ctx): Promise<void> {
    let conn;
    try {
      conn = parsePostgresUrl(config.url);
    } catch (err) {
      artifact.destroy();
      throw err;
    }
    // One transaction: a failed or aborted restore leaves the database as it was.
    await runWithInput(
      'pg_restore',
      [
        '--clean',
        '--if-exists',
        '--no-owner',
        '--no-privileges',
        '--single-transaction',
        '--exit-on-error',
        '--no-password',
        dbnameArgument(conn.database),
      ],
      artifact,
      { label: 'pg_restore', env: childEnv(conn.env), redact: conn.redact, ...(ctx.signal ? { signal: ctx.signal } : {}) },
    );
  },
};
