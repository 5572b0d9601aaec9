import { open, rename, rm, type FileHandle } from 'node:fs/promises';
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
  const toStdout = output === '-';
  const partial = `${output}.partial`;
  // The file first: a path we cannot write is the caller's mistake, found before any transfer.
  let file: FileHandle | null = null;
  if (!toStdout) {
    try {
      file = await open(partial, 'w', 0o600);
    } catch (err) {
      throw new CliError(EXIT.usage, `cannot write ${partial}: ${(err as Error).message}`);
    }
  }
  let bytes = 0;
  let type = 'application/octet-stream';
  try {
    const r = await ctx.client.GET('/v1/clusters/{id}/backups/{backup_id}/components/{name}/archive', {
      params: { path: { id: cluster.id, backup_id: backupId, name: component } },
      parseAs: 'stream',
    });
    if (!r.response.ok) throw apiError(r.response, r.error, `download of component ${component} of backup ${backupId}`);
    if (!r.response.body) throw new CliError(EXIT.unavailable, 'the service answered without a body');
    type = r.response.headers.get('content-type') ?? type;
    const count = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        cb(null, chunk);
      },
    });
    const source = Readable.fromWeb(r.response.body as unknown as WebReadableStream<Uint8Array>);
    try {
      await pipeline(source, count, file ? file.createWriteStream() : process.stdout);
    } catch (err) {
      throw new CliError(EXIT.unavailable, `the transfer was cut off after ${humanBytes(bytes)} (${(err as Error).message}); nothing was written to ${output}`);
    }
  } catch (err) {
    if (file) {
      await file.close().catch(() => {});
      await rm(partial, { force: true });
    }
    throw err;
  }
  if (toStdout) return EXIT.ok;
  await rename(partial, output);
  if (ctx.json) printJson(ctx, { file: output, bytes, content_type: type });
  else ctx.out(`wrote ${humanBytes(bytes)} (${type}) to ${output}`);
  return EXIT.ok;
}
