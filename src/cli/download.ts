import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { printJson, resolveBackup, resolveCluster, type Ctx } from './context.js';
import { CliError, EXIT, type ExitCode } from './exit.js';
import { humanBytes } from './format.js';
import { apiError } from './http.js';

/**
 * Streams a component's portable copy (a tar, or a pg_dump custom-format file) to FILE. It is
 * written to FILE.partial and renamed at the end, so a transfer the service cuts off (it does so
 * when a chunk fails its check) never leaves a complete-looking FILE. `-o -` writes to stdout.
 */
export async function download(ctx: Ctx, clusterArg: string, backupArg: string, component: string, output: string): Promise<ExitCode> {
  const cluster = await resolveCluster(ctx, clusterArg);
  const backupId = await resolveBackup(ctx, cluster, backupArg);
  const r = await ctx.client.GET('/v1/clusters/{id}/backups/{backup_id}/components/{name}/archive', {
    params: { path: { id: cluster.id, backup_id: backupId, name: component } },
    parseAs: 'stream',
  });
  if (!r.response.ok) throw apiError(r.response, r.error, `download of component ${component} of backup ${backupId}`);
  const body = r.response.body;
  if (!body) throw new CliError(EXIT.unavailable, 'the service answered without a body');
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  const source = Readable.fromWeb(body as unknown as WebReadableStream<Uint8Array>);
  const toStdout = output === '-';
  const partial = `${output}.partial`;
  try {
    await pipeline(source, count, toStdout ? process.stdout : createWriteStream(partial, { mode: 0o600 }));
  } catch (err) {
    if (!toStdout) await rm(partial, { force: true });
    throw new CliError(EXIT.unavailable, `the transfer was cut off after ${humanBytes(bytes)} (${(err as Error).message}); nothing was written to ${output}`);
  }
  if (toStdout) return EXIT.ok;
  await rename(partial, output);
  const type = r.response.headers.get('content-type') ?? 'application/octet-stream';
  if (ctx.json) printJson(ctx, { file: output, bytes, content_type: type });
  else ctx.out(`wrote ${humanBytes(bytes)} (${type}) to ${output}`);
  return EXIT.ok;
}
