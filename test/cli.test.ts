import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCliOnce, closedPort, CONTROL_CHARS, listenOn, responseChecker, runCli, type CliRun } from './helpers/cli.js';
import { plantBackup } from './helpers/jobs.js';
import { createKey, createTenant, startStack, waitForBackup, type Stack } from './helpers/stack.js';

/*
 * backupctl as a cron host runs it: the single bundled file, started with node and no TTY,
 * against a service listening on a port. Each exit code is checked with the case that causes it.
 */

let s: Stack;
let cli: Awaited<ReturnType<typeof buildCliOnce>>;
let url: string;
let admin: string;
let operator: string;
let tenantId: string;
let home: string;
let check: Awaited<ReturnType<typeof responseChecker>>;
// The service's clock runs this far ahead of the real one (the rate-limit test moves it).
let shiftMs = 0;

beforeAll(async () => {
  [cli, s] = await Promise.all([buildCliOnce(), startStack({ now: () => new Date(Date.now() + shiftMs) })]);
  url = await listenOn(s);
  const t = await createTenant(s);
  ({ adminToken: admin, tenantId, dir: home } = t);
  operator = await createKey(s, admin, 'operator');
  await mkdir(path.join(home, 'site', 'nested'), { recursive: true });
  await writeFile(path.join(home, 'site', 'index.html'), '<h1>hello</h1>');
  await writeFile(path.join(home, 'site', 'nested', 'data.bin'), Buffer.alloc(200_000, 7));
  check = await responseChecker();
}, 60_000);
afterAll(async () => {
  await s?.close();
  await cli?.remove();
});

/** A cluster of one directory component under its own policy (no manual rate limit unless given). */
async function cluster(name: string, opts: { rate?: string | null; dir?: string } = {}) {
  const p = await s.request('POST', '/v1/policies', { token: admin, body: { name: `p-${name}`, schedule: [], manual_rate_limit: opts.rate ?? null } });
  expect(p.status, p.text).toBe(201);
  const c = await s.request('POST', '/v1/clusters', {
    token: admin,
    body: { name, policy_id: p.body.id, components: [{ name: 'files', type: 'directory', config: { path: opts.dir ?? 'site' } }] },
  });
  expect(c.status, c.text).toBe(201);
  return c.body.id as string;
}

/** Runs the CLI as `operator` (or with other env); every run must be free of terminal control characters. */
async function ctl(args: string[], env: Record<string, string> = {}, opts: Parameters<typeof runCli>[3] = {}): Promise<CliRun> {
  const r = await runCli(cli.file, args, { BACKUP_URL: url, BACKUP_TOKEN: operator, ...env }, opts);
  expect(r.stdout + r.stderr, 'no TTY: no escape sequences or carriage returns').not.toMatch(CONTROL_CHARS);
  return r;
}

const backupsOf = (id: string) => s.rt.db.backup.findMany({ where: { clusterId: id }, orderBy: { createdAt: 'asc' } });

describe('backupctl: exit codes', () => {
  // First and alone: it moves the service's clock. Every other case has its own cluster and runs
  // concurrently with the rest.
  it('4: rate limited (429) says when to retry; --retry-after-limit waits out Retry-After once', async () => {
    const id = await cluster('hourly', { rate: '1h' });
    expect((await ctl(['backup', 'create', 'hourly', '--wait'])).code).toBe(0);
    const limited = await ctl(['backup', 'create', 'hourly']);
    expect(limited.code).toBe(4);
    expect(limited.stderr).toMatch(/429 .*retry after (59|60) min \(at \d{4}-\d\d-\d\dT/);
    // A Retry-After longer than --timeout is not waited for.
    const impatient = await ctl(['backup', 'create', 'hourly', '--retry-after-limit', '--timeout', '5s']);
    expect(impatient.code).toBe(4);
    expect(impatient.stderr).toMatch(/not waiting: that is past --timeout/);
    expect(impatient.ms).toBeLessThan(4000);

    // The service's clock moved on: the slot frees 2 s from now (the cluster given by id: one request less before the POST). The CLI waits it out, then succeeds.
    const freeIn = async (ms: number) => {
      const [last] = await s.rt.db.backup.findMany({ where: { clusterId: id }, orderBy: { createdAt: 'desc' }, take: 1 });
      shiftMs = last!.createdAt.getTime() + 3600_000 - ms - Date.now();
    };
    try {
      await freeIn(2000);
      const patient = await ctl(['backup', 'create', id, '--retry-after-limit', '--wait']);
      expect(patient.code, patient.stderr).toBe(0);
      expect(patient.stderr).toMatch(/429 .*waiting [12](\.\d)? s \(--retry-after-limit\)/);
      expect(patient.ms).toBeGreaterThanOrEqual(1000);
      expect((await backupsOf(id)).map((b) => b.status)).toEqual(['completed', 'completed']);

      // Once only: when the second try is refused again (here: the clock went back a minute while
      // the CLI waited), it exits 4 instead of waiting again.
      await freeIn(2000);
      let moved = false;
      const once = await ctl(['backup', 'create', id, '--retry-after-limit'], {}, {
        onStderr: (err) => {
          if (!moved && /waiting/.test(err)) {
            moved = true;
            shiftMs -= 60_000;
          }
        },
      });
      expect(moved).toBe(true);
      expect(once.code, once.stderr).toBe(4);
      expect(once.stderr.match(/waiting/g)).toHaveLength(1);
      expect(once.stderr).toMatch(/429 .*retry after/);
      expect(once.ms).toBeLessThan(10_000);
      expect(await backupsOf(id)).toHaveLength(2);
    } finally {
      shiftMs = 0;
    }
  });

  it.concurrent('0: backup create --wait completes; --json answers match the document', async () => {
    const id = await cluster('web');
    const r = await ctl(['backup', 'create', 'web', '--wait']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/status:\s+completed/);
    const [b] = await backupsOf(id);
    expect(b?.status).toBe('completed');
    expect(r.stdout).toContain(b!.id);

    // --json prints the API's JSON: it parses, and it is what the document says the answer is.
    const [got, list, clusters, policies, retention] = await Promise.all([
      ctl(['--json', 'backup', 'get', 'web', 'latest']),
      ctl(['backups', 'list', id, '--json', '--status', 'completed', '--limit', '5']),
      ctl(['clusters', 'list', '--json']),
      ctl(['policies', 'list', '--json']),
      ctl(['retention', 'web', '--json']),
    ]);
    for (const r of [got, list, clusters, policies, retention]) expect(r.code, r.stderr).toBe(0);
    const backup = JSON.parse(got.stdout);
    expect(check('get', '/v1/clusters/{id}/backups/{backup_id}', 200, backup)).toBeNull();
    expect(backup).toMatchObject({ id: b!.id, cluster_id: id, status: 'completed', trigger: 'manual' });
    expect(check('get', '/v1/clusters/{id}/backups', 200, JSON.parse(list.stdout))).toBeNull();
    expect(JSON.parse(list.stdout).items.map((x: { id: string }) => x.id)).toEqual([b!.id]);
    expect(check('get', '/v1/clusters', 200, JSON.parse(clusters.stdout))).toBeNull();
    expect(JSON.parse(clusters.stdout).items.map((c: { name: string }) => c.name)).toContain('web');
    expect(check('get', '/v1/policies', 200, JSON.parse(policies.stdout))).toBeNull();
    expect(check('get', '/v1/clusters/{id}/retention', 200, JSON.parse(retention.stdout))).toBeNull();
    expect(JSON.parse(retention.stdout).items).toEqual([expect.objectContaining({ backup_id: b!.id, keep: true })]);

    // The human forms are tables with a header row.
    const table = await ctl(['backups', 'list', 'web']);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID\s+STATUS\s+TRIGGER\s+CREATED/);
    expect(table.stdout).toContain(b!.id);
  });

  it.concurrent('0: verify, download and restore --wait do their work', async () => {
    const id = await cluster('shop');
    await mkdir(path.join(home, 'copy'), { recursive: true });
    const target = await cluster('shop-copy', { dir: 'copy' });
    expect((await ctl(['backup', 'create', id, '--wait'])).code).toBe(0);
    const verified = await ctl(['backup', 'verify', 'shop', 'latest', '--wait', '--json']);
    expect(verified.code, verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout).verification.status).toBe('passed');

    const out = path.join(home, '..', `shop-${randomUUID()}.tar`);
    const dl = await ctl(['download', 'shop', 'latest', 'files', '-o', out]);
    expect(dl.code, dl.stderr).toBe(0);
    const { stdout: listing } = await promisify(execFile)('tar', ['-tf', out]);
    expect(listing).toContain('nested/data.bin');

    const restored = await ctl(['restore', 'shop', 'latest', '--target-cluster', target, '--wait', '--json']);
    expect(restored.code, restored.stderr).toBe(0);
    const restore = JSON.parse(restored.stdout);
    expect(check('get', '/v1/clusters/{id}/restores/{restore_id}', 200, restore)).toBeNull();
    expect(restore).toMatchObject({ status: 'completed', source_cluster_id: id, cluster_id: target });
    const restores = await ctl(['restores', 'list', 'shop', '--json']);
    expect(check('get', '/v1/clusters/{id}/restores', 200, JSON.parse(restores.stdout))).toBeNull();
    expect(JSON.parse(restores.stdout).items.map((x: { id: string }) => x.id)).toEqual([restore.id]);

    // delete --wait returns once the backup is gone.
    const gone = await ctl(['backup', 'delete', 'shop', restore.backup_id, '--wait']);
    expect(gone.code, gone.stderr).toBe(0);
    expect(gone.stdout).toContain(`backup ${restore.backup_id} deleted`);
    expect(await backupsOf(id)).toEqual([]);
  });

  it.concurrent('1: a backup that ends failed (its directory was removed before the backup)', async () => {
    await mkdir(path.join(home, 'doomed'), { recursive: true });
    const id = await cluster('doomed', { dir: 'doomed' });
    await rm(path.join(home, 'doomed'), { recursive: true });
    const r = await ctl(['backup', 'create', 'doomed', '--wait']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/status:\s+failed/);
    expect(r.stderr).toMatch(/failed/);
    expect((await backupsOf(id)).map((b) => b.status)).toEqual(['failed']);
  });

  it.concurrent('0 and 5 with an API client: BACKUP_CLIENT_ID/SECRET are exchanged at POST /oauth/token', async () => {
    const id = await cluster('oauth');
    const c = await s.request('POST', '/v1/api-clients', { token: admin, body: { name: 'cron', role: 'operator' } });
    expect(c.status, c.text).toBe(201);
    const env = { BACKUP_TOKEN: '', BACKUP_CLIENT_ID: c.body.client_id as string, BACKUP_CLIENT_SECRET: c.body.client_secret as string };
    const r = await ctl(['backup', 'create', 'oauth', '--wait'], env);
    expect(r.code, r.stderr).toBe(0);
    expect((await backupsOf(id)).map((b) => b.status)).toEqual(['completed']);
    // A wrong secret (here a flag overriding the environment's) is refused by the token endpoint.
    const wrong = await ctl(['clusters', 'list', '--client-secret', 'not-the-secret'], env);
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toMatch(/oauth\/token: 401 invalid_client/);
    // Half a client is a usage error naming the missing variable.
    const half = await ctl(['clusters', 'list'], { ...env, BACKUP_CLIENT_SECRET: '' });
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/BACKUP_CLIENT_SECRET/);
  });

  it.concurrent('2: usage errors (commander\'s and missing configuration)', async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['backup', 'create'], {}, /missing required argument/],
      [['backup', 'create', 'web', '--bogus'], {}, /unknown option/],
      [['backup', 'create', 'web', '--timeout', 'soon'], {}, /duration/],
      [['backup', 'create', 'web', '--live', '--consistent'], {}, /cannot be used with/],
      [['backups', 'list', 'web', '--status', 'sleeping'], {}, /Allowed choices/],
      [['frobnicate'], {}, /unknown command/],
      [['backup'], {}, /Usage: backupctl backup/],
      [['clusters', 'list'], { BACKUP_URL: '' }, /BACKUP_URL/],
      [['clusters', 'list'], { BACKUP_TOKEN: '' }, /BACKUP_TOKEN/],
    ];
    const runs = await Promise.all(cases.map(([args, env]) => ctl(args, env)));
    cases.forEach(([args, , message], i) => {
      const r = runs[i]!;
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stdout).toBe('');
    });
    // Help asked for is not an error.
    for (const args of [['--help'], ['help', 'backup'], ['backup', 'create', '--help']]) {
      const r = await ctl(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: backupctl/);
    }
  });

  it.concurrent('3: --timeout passes while the backup is still running (the work goes on)', async () => {
    const id = await cluster('slow');
    // A backup some worker is running right now and will not finish while we watch.
    const planted = await plantBackup(s.rt, { id: randomUUID(), tenantId, clusterId: id, trigger: 'manual', status: 'running', startedAt: new Date(), components: [] });
    const r = await ctl(['backup', 'get', 'slow', planted.id, '--wait', '--timeout', '1500ms']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/--timeout passed: backup .* is still running/);
    // Without a terminal, progress is plain lines (one when waiting starts).
    expect(r.stderr).toMatch(/^backupctl: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ backup [0-9a-f]{8}: running/m);
    expect(r.ms).toBeGreaterThanOrEqual(1400);
    expect(r.ms).toBeLessThan(8000);
    expect((await s.rt.db.backup.findUniqueOrThrow({ where: { id: planted.id } })).status).toBe('running');

    // 4: a backup already running refuses another (409): says to retry later.
    const busy = await ctl(['backup', 'create', 'slow']);
    expect(busy.code, busy.stderr).toBe(4);
    expect(busy.stderr).toMatch(/409 .*already queued or running; retry once the work in progress has ended/);
    expect(await backupsOf(id)).toHaveLength(1);
    await s.rt.ledger.fail('backup', planted.id, { component: null, message: 'test' }, { now: new Date() });
  });

  it.concurrent('5: a bad token, and a token without the permission', async () => {
    const id = await cluster('five');
    const bad = await ctl(['clusters', 'list'], { BACKUP_TOKEN: 'bk_not-a-real-key' });
    expect(bad.code).toBe(5);
    expect(bad.stderr).toMatch(/401/);
    const viewer = await createKey(s, admin, 'viewer');
    const refused = await ctl(['backup', 'create', 'five'], { BACKUP_TOKEN: viewer });
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/403/);
    expect(await backupsOf(id)).toEqual([]);
    // A flag overrides the environment.
    expect((await ctl(['clusters', 'list', '--token', operator], { BACKUP_TOKEN: 'bk_not-a-real-key' })).code).toBe(0);
  });

  it.concurrent('6: the service is unreachable (retried, then given up)', async () => {
    const port = await closedPort();
    const r = await ctl(['clusters', 'list'], { BACKUP_URL: `http://127.0.0.1:${port}` });
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/ECONNREFUSED; trying again/);
    expect(r.stderr).toMatch(/cannot reach the service at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\) after 4 attempts/);
  });

  it.concurrent('7: an unknown cluster name, backup or component', async () => {
    const id = await cluster('seven');
    const taken = await s.request('POST', `/v1/clusters/${id}/backups`, { token: operator });
    expect((await waitForBackup(s, operator, id, taken.body.id)).status).toBe('completed');
    const out = path.join(home, '..', `x-${randomUUID()}`);
    const [name, backup, clusterId, component] = await Promise.all([
      ctl(['backups', 'list', 'no-such-cluster']),
      ctl(['backup', 'get', 'seven', randomUUID()]),
      ctl(['backup', 'get', randomUUID(), randomUUID()]),
      ctl(['download', 'seven', 'latest', 'nope', '-o', out]),
    ]);
    expect(name.code).toBe(7);
    expect(name.stderr).toMatch(/no cluster named "no-such-cluster"/);
    expect(backup.code).toBe(7);
    expect(backup.stderr).toMatch(/404 .*backup/);
    expect(clusterId.code).toBe(7);
    expect(clusterId.stderr).toMatch(/404/);
    expect(component.code).toBe(7);
    expect(component.stderr).toMatch(/404 .*component "nope"/);
    // Neither the file nor its partial copy is left behind.
    expect(await readdir(path.dirname(out))).not.toContainEqual(expect.stringContaining(path.basename(out)));
  });
});
