import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCliOnce, CONTROL_CHARS, droppingProxy, listenOn, runCli } from './helpers/cli.js';
import { createKey, createTenant, startStack, type Stack } from './helpers/stack.js';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/*
 * backupctl under cron: the same line in a crontab, run again within the policy's manual rate
 * limit, and a network that drops the first run's POST after the service has acted on it but
 * before the answer arrived. Exactly one backup must exist at the end.
 */

let s: Stack;
let cli: Awaited<ReturnType<typeof buildCliOnce>>;
let proxy: Awaited<ReturnType<typeof droppingProxy>>;
let env: Record<string, string>;
let clusterId: string;

beforeAll(async () => {
  [cli, s] = await Promise.all([buildCliOnce(), startStack()]);
  proxy = await droppingProxy(await listenOn(s));
  const t = await createTenant(s);
  await mkdir(path.join(t.dir, 'www'), { recursive: true });
  await writeFile(path.join(t.dir, 'www', 'index.html'), 'nightly');
  // The default manual rate limit: one manual backup per hour and cluster.
  const p = await s.request('POST', '/v1/policies', { token: t.adminToken, body: { name: 'nightly', schedule: [], manual_rate_limit: '1h' } });
  expect(p.status, p.text).toBe(201);
  const c = await s.request('POST', '/v1/clusters', {
    token: t.adminToken,
    body: { name: 'www', policy_id: p.body.id, components: [{ name: 'files', type: 'directory', config: { path: 'www' } }] },
  });
  expect(c.status, c.text).toBe(201);
  clusterId = c.body.id;
  env = { BACKUP_URL: proxy.url, BACKUP_TOKEN: await createKey(s, t.adminToken, 'operator') };
}, 60_000);
afterAll(async () => {
  await proxy?.close();
  await s?.close();
  await cli?.remove();
});

describe('backupctl under cron', () => {
  it('the first run creates the backup through a dropped connection; the second, within the rate limit, exits 4 saying when', async () => {
    // `backupctl backup create www` from a crontab: no TTY, the same environment each time.
    const first = await runCli(cli.file, ['backup', 'create', 'www'], env);
    expect(first.code, first.stderr).toBe(0);
    // The proxy reset the POST after the service had answered it; the CLI sent it again with the
    // same Idempotency-Key and got the first answer back, not a second backup (nor a 429).
    expect(proxy.resets()).toBe(1);
    expect(first.stderr).toMatch(/POST \/v1\/clusters\/[0-9a-f-]+\/backups: ECONNRESET; trying again/);
    expect(first.stdout).toMatch(/the answer to an earlier request with this Idempotency-Key/);
    const rows = await s.rt.db.backup.findMany({ where: { clusterId } });
    expect(rows).toHaveLength(1);
    expect(first.stdout).toContain(rows[0]!.id);

    const second = await runCli(cli.file, ['backup', 'create', 'www'], env);
    expect(second.code, second.stderr).toBe(4);
    expect(second.stderr).toMatch(/429 at most one manual backup per 1h .*; retry after (59|60) min \(at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)/);
    expect(second.stdout).toBe('');
    expect(await s.rt.db.backup.count({ where: { clusterId } })).toBe(1);
    for (const r of [first, second]) expect(r.stdout + r.stderr).not.toMatch(CONTROL_CHARS);
  });
});
