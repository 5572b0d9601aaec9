import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { Webhook } from 'standardwebhooks';
import { createKey, createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';
import type { HookCaller } from '../src/modules/hooks/hooks.js';
import { CLAIM_STALE_MS, PRE_CALL_MARGIN_MS, resumeOrphans } from '../src/modules/hooks/pause.js';

/** SPEC section 11: a cluster's hooks, configured by admins, guarded like webhooks. */
let s: Stack;
let token: string;
let receiver: Server;
let hits = 0;
let hookUrl: string;
beforeAll(async () => {
  receiver = createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  s = await startStack({ worker: false, env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true' } });
  const t = await createTenant(s);
  token = t.adminToken;
  await mkdir(path.join(t.dir, 'app'), { recursive: true });
});
afterAll(async () => {
  await s.close();
  receiver.close();
});

const components = [{ name: 'files', type: 'directory', config: { path: 'app' } }];
const NONE = { pre_backup: null, post_backup: null, pre_restore: null, post_restore: null };

describe('cluster hooks', () => {
  it('are saved and shown, with the signing secret in the answer that gave the first hook only', async () => {
    const plain = await s.request('POST', '/v1/clusters', { token, body: { name: 'no-hooks', components } });
    expect(plain.status).toBe(201);
    expect(plain.body.hooks).toEqual(NONE);
    expect(plain.body.hooks_secret).toBeUndefined();

    const res = await s.request('POST', '/v1/clusters', { token, body: { name: 'hooked', components, hooks: { pre_backup: { url: hookUrl, timeout_s: 5 }, post_backup: { url: hookUrl, timeout_s: 5 } } } });
    expect(res.status, res.text).toBe(201);
    expect(res.body.hooks).toEqual({ ...NONE, pre_backup: { url: hookUrl, timeout_s: 5 }, post_backup: { url: hookUrl, timeout_s: 5 } });
    expect(res.body.hooks_secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const got = await s.request('GET', `/v1/clusters/${res.body.id}`, { token });
    expect(got.body.hooks).toEqual(res.body.hooks);
    expect(got.text).not.toContain(res.body.hooks_secret);
    expect((await s.request('GET', '/v1/clusters', { token })).text).not.toContain(res.body.hooks_secret);
    const row = await s.rt.db.cluster.findUniqueOrThrow({ where: { id: res.body.id } });
    expect(row.hooksSecretEnc).toMatch(/^enc:v1:/);
    expect(s.rt.box.decrypt(row.hooksSecretEnc!)).toBe(res.body.hooks_secret);
    expect(s.logs()).not.toContain(res.body.hooks_secret);

    // a change keeps the hooks not named, null removes one, and the secret is not shown again
    const restore = { pre_restore: { url: `${hookUrl}?stop=1`, timeout_s: 300 }, post_restore: { url: `${hookUrl}?start=1`, timeout_s: 60 } };
    const patched = await s.request('PATCH', `/v1/clusters/${res.body.id}`, { token, body: { hooks: restore } });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body.hooks).toEqual({ ...NONE, pre_backup: { url: hookUrl, timeout_s: 5 }, post_backup: { url: hookUrl, timeout_s: 5 }, ...restore });
    expect(patched.body.hooks_secret).toBeUndefined();
    // a pair is removed together; removing half of one would leave a pause nothing ends
    const half = await s.request('PATCH', `/v1/clusters/${res.body.id}`, { token, body: { hooks: { post_backup: null } } });
    expect(half.status).toBe(422);
    expect(half.headers['content-type']).toContain('application/problem+json');
    expect(half.body.errors).toEqual([{ path: 'body.hooks.post_backup', message: 'required with pre_backup: the post_backup hook ends the pause that pre_backup starts' }]);
    const removed = await s.request('PATCH', `/v1/clusters/${res.body.id}`, { token, body: { hooks: { pre_backup: null, post_backup: null } } });
    expect(removed.status, removed.text).toBe(200);
    expect(removed.body.hooks).toEqual({ ...NONE, ...restore });

    // a cluster that gets its first hooks by a change is given its secret then
    const later = await s.request('PATCH', `/v1/clusters/${plain.body.id}`, { token, body: { hooks: { pre_restore: { url: hookUrl, timeout_s: 1 }, post_restore: { url: hookUrl, timeout_s: 1 } } } });
    expect(later.status, later.text).toBe(200);
    expect(later.body.hooks_secret).toMatch(/^whsec_/);
    expect(hits).toBe(0); // saving calls nothing
  });

  it('refuse a timeout outside 1..300 and a URL the SSRF guard refuses, naming each, changing nothing', async () => {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'bad-hooks', components } });
    const bad = await s.request('PATCH', `/v1/clusters/${c.body.id}`, {
      token,
      body: {
        hooks: {
          pre_backup: { url: hookUrl, timeout_s: 0 },
          post_backup: { url: hookUrl, timeout_s: 301 },
          pre_restore: { url: 'http://169.254.169.254/latest/meta-data', timeout_s: 10 },
          post_restore: { url: 'ftp://example.com/x', timeout_s: 10 },
        },
      },
    });
    expect(bad.status).toBe(422);
    expect(bad.headers['content-type']).toContain('application/problem+json');
    expect(bad.body.errors.map((e: { path: string }) => e.path).sort()).toEqual([
      'body.hooks.post_backup.timeout_s',
      'body.hooks.post_restore.url',
      'body.hooks.pre_backup.timeout_s',
      'body.hooks.pre_restore.url',
    ]);
    expect((await s.request('GET', `/v1/clusters/${c.body.id}`, { token })).body.hooks).toEqual(NONE);
    const credentials = await s.request('POST', '/v1/clusters', { token, body: { name: 'cred-hooks', components, hooks: { pre_backup: { url: 'https://user:pw@example.com/h', timeout_s: 5 }, post_backup: { url: hookUrl, timeout_s: 5 } } } });
    expect(credentials.status).toBe(422);
    expect(credentials.body.errors.map((e: { path: string }) => e.path)).toEqual(['body.hooks.pre_backup.url']);
    // half a pair, either half, on creation too
    for (const [given, missing] of [['pre_backup', 'post_backup'], ['post_backup', 'pre_backup'], ['pre_restore', 'post_restore'], ['post_restore', 'pre_restore']] as const) {
      const half = await s.request('POST', '/v1/clusters', { token, body: { name: `half-${given}`, components, hooks: { [given]: { url: hookUrl, timeout_s: 5 } } } });
      expect(half.status).toBe(422);
      expect(half.body.errors.map((e: { path: string }) => e.path)).toEqual([`body.hooks.${missing}`]);
    }
    const fraction = await s.request('POST', '/v1/clusters', { token, body: { name: 'frac-hooks', components, hooks: { pre_backup: { url: hookUrl, timeout_s: 1.5 } } } });
    expect(fraction.status).toBeGreaterThanOrEqual(400);
    expect(fraction.status).toBeLessThan(500);
  });

  it('are changed by admins only', async () => {
    const c = await s.request('POST', '/v1/clusters', { token, body: { name: 'admin-hooks', components } });
    const operator = await createKey(s, token, 'operator');
    const res = await s.request('PATCH', `/v1/clusters/${c.body.id}`, { token: operator, body: { hooks: { pre_backup: { url: hookUrl, timeout_s: 5 }, post_backup: { url: hookUrl, timeout_s: 5 } } } });
    expect(res.status).toBe(403);
    expect((await s.request('GET', `/v1/clusters/${c.body.id}`, { token })).body.hooks).toEqual(NONE);
  });
});

/**
 * Consistent backups and restore hooks through a real worker: the receiver's hooks act on the
 * tenant's tree, so what the backup holds shows the order (pre, read, post).
 */
describe('consistent backups and restores with hooks', () => {
  let w: Stack;
  let wtoken: string;
  let home: string;
  let server: Server;
  let base: string;
  /** What each hook path does, by path; every call is recorded. */
  const handlers = new Map<string, (body: any) => Promise<number> | number>();
  const calls: { path: string; body: any; headers: Record<string, string | string[] | undefined>; at: number }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (text += c));
      req.on('end', async () => {
        const body = JSON.parse(text || '{}');
        calls.push({ path: req.url ?? '', body, headers: req.headers, at: Date.now() });
        const status = await (handlers.get(req.url ?? '') ?? (() => 204))(body);
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    w = await startStack({ env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true' } });
    const t = await createTenant(w);
    wtoken = t.adminToken;
    home = t.dir;
  });
  afterAll(async () => {
    await w.close();
    server.close();
  });

  const hook = (p: string, timeout_s = 5) => ({ url: `${base}${p}`, timeout_s });
  async function hookedCluster(name: string, hooks: Record<string, unknown>) {
    await mkdir(path.join(home, name), { recursive: true });
    await writeFile(path.join(home, name, 'state.txt'), 'v1');
    const res = await w.request('POST', '/v1/clusters', { token: wtoken, body: { name, components: [{ name: 'files', type: 'directory', config: { path: name } }], hooks } });
    expect(res.status, res.text).toBe(201);
    return { id: res.body.id as string, secret: res.body.hooks_secret as string, dir: path.join(home, name) };
  }
  const backup = async (clusterId: string, body?: unknown) => {
    const res = await w.request('POST', `/v1/clusters/${clusterId}/backups`, { token: wtoken, ...(body !== undefined && { body }) });
    expect(res.status, res.text).toBe(202);
    return waitForBackup(w, wtoken, clusterId, res.body.id);
  };
  const fileIn = async (clusterId: string, backupId: string) => {
    const res = await w.request('GET', `/v1/clusters/${clusterId}/backups/${backupId}/components/files/archive`, { token: wtoken });
    return res.text;
  };

  it('pauses by default when the cluster has a pre_backup hook: pre, then the read, then post; paused_ms recorded; calls signed', async () => {
    const c = await hookedCluster('consistent', { pre_backup: hook('/c/pre'), post_backup: hook('/c/post') });
    // The pre hook's answer comes after the tree says v2; the post hook makes it v3: the backup must hold v2.
    handlers.set('/c/pre', async () => {
      await writeFile(path.join(c.dir, 'state.txt'), 'v2-paused');
      return 200;
    });
    handlers.set('/c/post', async () => {
      await writeFile(path.join(c.dir, 'state.txt'), 'v3-resumed');
      return 204;
    });
    const b = await backup(c.id);
    expect(b.status, JSON.stringify(b.error)).toBe('completed');
    expect(b.live).toBe(false);
    expect(b.paused_ms).toEqual(expect.any(Number));
    expect(b.paused_ms).toBeGreaterThanOrEqual(0);
    const mine = calls.filter((x) => x.path.startsWith('/c/'));
    expect(mine.map((x) => x.path)).toEqual(['/c/pre', '/c/post']);
    expect(mine[0]!.body).toEqual({ hook: 'pre_backup', cluster_id: c.id, backup_id: b.id, live: false });
    expect(mine[1]!.body).toEqual({ hook: 'post_backup', cluster_id: c.id, backup_id: b.id, live: false });
    const archive = await fileIn(c.id, b.id);
    expect(archive).toContain('v2-paused');
    expect(archive).not.toContain('v3-resumed');
    expect(await readFile(path.join(c.dir, 'state.txt'), 'utf8')).toBe('v3-resumed');
    // Standard Webhooks signatures under the cluster's hooks secret
    for (const x of mine) {
      const verified = new Webhook(c.secret).verify(JSON.stringify(x.body), { 'webhook-id': String(x.headers['webhook-id']), 'webhook-timestamp': String(x.headers['webhook-timestamp']), 'webhook-signature': String(x.headers['webhook-signature']) });
      expect(verified).toEqual(x.body);
    }
    // one pause: both calls name the job, the hook and the same pause (its start in ms)
    const [, pauseId] = String(mine[0]!.headers['webhook-id']).match(new RegExp(`^${b.id}\\.pre_backup\\.(\\d{13})$`)) ?? [];
    expect(pauseId).toBeDefined();
    expect(mine[1]!.headers['webhook-id']).toBe(`${b.id}.post_backup.${pauseId}`);
    const row = await w.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } });
    expect(row).toMatchObject({ hookState: 'resumed', hookPausedAt: new Date(Number(pauseId)) });
    // live: true skips the pause
    calls.length = 0;
    await w.rt.db.cluster.update({ where: { id: c.id }, data: { lastManualAt: null } });
    await w.rt.db.$executeRaw`UPDATE backups SET created_at = created_at - interval '2 hours' WHERE cluster_id = ${c.id}::uuid`;
    const live = await backup(c.id, { live: true });
    expect(live).toMatchObject({ status: 'completed', live: true, paused_ms: null });
    expect(calls.filter((x) => x.path.startsWith('/c/'))).toEqual([]);
  });

  it('a failing pre hook fails the backup with nothing read or stored and no post hook; hook.failed is recorded', async () => {
    const c = await hookedCluster('refused', { pre_backup: hook('/r/pre'), post_backup: hook('/r/post') });
    handlers.set('/r/pre', () => 503);
    const b = await backup(c.id, { live: false });
    expect(b.status).toBe('failed');
    expect(b.error).toEqual({ component: 'hook:pre_backup', message: expect.stringContaining('pre_backup hook failed') });
    expect(b).toMatchObject({ artifacts: [], stored_bytes: null, paused_ms: null });
    expect(calls.filter((x) => x.path.startsWith('/r/')).map((x) => x.path)).toEqual(['/r/pre']);
    const refs = await w.rt.db.backupChunk.count({ where: { backupId: b.id } });
    expect(refs).toBe(0);
    // nothing owed: the reconciler will not call the post hook either
    expect((await w.rt.db.backup.findUniqueOrThrow({ where: { id: b.id } })).hookState).toBeNull();
    const events = await w.request('GET', `/v1/events?type=hook.failed&cluster_id=${c.id}`, { token: wtoken });
    expect(events.body.items).toHaveLength(1);
    expect(events.body.items[0].data).toMatchObject({ backup: { id: b.id, cluster_id: c.id, live: false }, hook: { name: 'pre_backup', status_code: 503 } });
  });

  it('counts a 2xx that comes after the timeout as a failure', async () => {
    const c = await hookedCluster('late', { pre_backup: hook('/l/pre', 1), post_backup: hook('/l/post') });
    handlers.set('/l/pre', async () => {
      await new Promise((r) => setTimeout(r, 1500));
      return 200;
    });
    const b = await backup(c.id);
    expect(b.status).toBe('failed');
    expect(b.error).toEqual({ component: 'hook:pre_backup', message: expect.stringMatching(/timed out after 1000 ms/) });
    expect(b.artifacts).toEqual([]);
    expect(calls.filter((x) => x.path === '/l/post')).toEqual([]);
  });

  it('calls the post hook when the backup fails after the pause', async () => {
    const c = await hookedCluster('breaks', { pre_backup: hook('/b/pre'), post_backup: hook('/b/post') });
    // the pre hook takes the tree away: the read fails, the post hook still comes
    handlers.set('/b/pre', async () => {
      await rm(c.dir, { recursive: true, force: true });
      return 200;
    });
    const b = await backup(c.id);
    expect(b.status).toBe('failed');
    expect(b.error.component).toBe('files');
    expect(calls.filter((x) => x.path.startsWith('/b/')).map((x) => x.path)).toEqual(['/b/pre', '/b/post']);
    expect(b.paused_ms).toEqual(expect.any(Number));
  });

  it('makes scheduled backups live unless the policy says scheduled_live: false (and the cluster has a pre_backup hook)', async () => {
    const consistentPolicy = await w.request('POST', '/v1/policies', { token: wtoken, body: { name: 'scheduled consistent', scheduled_live: false } });
    expect(consistentPolicy.status, consistentPolicy.text).toBe(201);
    expect(consistentPolicy.body.scheduled_live).toBe(false);
    const livePolicy = await w.request('POST', '/v1/policies', { token: wtoken, body: { name: 'scheduled live' } });
    expect(livePolicy.body.scheduled_live).toBe(true);
    const paused = await hookedCluster('sched-paused', { pre_backup: hook('/q/pre'), post_backup: hook('/q/post') });
    const live = await hookedCluster('sched-live', { pre_backup: hook('/q/pre'), post_backup: hook('/q/post') });
    const nothing = await hookedCluster('sched-nothing', {});
    await w.request('PATCH', `/v1/clusters/${paused.id}`, { token: wtoken, body: { policy_id: consistentPolicy.body.id } });
    await w.request('PATCH', `/v1/clusters/${live.id}`, { token: wtoken, body: { policy_id: livePolicy.body.id } });
    await w.request('PATCH', `/v1/clusters/${nothing.id}`, { token: wtoken, body: { policy_id: consistentPolicy.body.id } });
    // the scheduler's claim, as it makes it (the clusters locked, then one statement)
    const ids = [paused.id, live.id, nothing.id];
    const queued = await w.rt.db.$transaction(async (tx) => {
      await tx.$queryRaw`SELECT id FROM clusters WHERE id = ANY(${ids}::uuid[]) FOR UPDATE`;
      return w.rt.ledger.queueScheduledBackups(tx, ids.map((clusterId) => ({ clusterId, next: '', busy: false })), new Date());
    });
    const liveOf = async (clusterId: string) => (await w.rt.db.backup.findFirstOrThrow({ where: { id: queued.find((q) => q.clusterId === clusterId)!.id } })).live;
    expect(await liveOf(paused.id)).toBe(false);
    expect(await liveOf(live.id)).toBe(true);
    expect(await liveOf(nothing.id)).toBe(true); // nothing to pause
    for (const q of queued) await w.rt.queues.add('backups', 'run-backup', { tenant_id: q.tenantId, backup_id: q.id }, q.id);
    const done = await Promise.all(queued.map((q) => waitForBackup(w, wtoken, q.clusterId, q.id)));
    expect(done.map((b) => b.status)).toEqual(['completed', 'completed', 'completed']);
    // only the consistent one paused
    expect(done.find((b) => b.cluster_id === paused.id).paused_ms).toEqual(expect.any(Number));
    expect(done.filter((b) => b.paused_ms !== null)).toHaveLength(1);
  });

  it('refuses live: false for a cluster with no pre_backup hook (nothing to pause)', async () => {
    // hooks, but none that pauses a backup
    const c = await hookedCluster('no-pause', { pre_restore: hook('/n/pre-restore'), post_restore: hook('/n/post-restore') });
    const res = await w.request('POST', `/v1/clusters/${c.id}/backups`, { token: wtoken, body: { live: false } });
    expect(res.status).toBe(422);
    expect(res.body.detail).toContain('nothing to pause');
    expect(res.body.errors[0].path).toBe('body.live');
    const bad = await w.request('POST', `/v1/clusters/${c.id}/backups`, { token: wtoken, body: { live: 'no' } });
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect(bad.status).toBeLessThan(500);
    // no body: live, since there is nothing to pause
    const b = await backup(c.id);
    expect(b).toMatchObject({ status: 'completed', live: true, paused_ms: null });
    expect(calls.filter((x) => x.path.startsWith('/n/'))).toEqual([]);
  });

  it('a consistent backup whose cluster lost its pre_backup hook before it ran is taken, and recorded, live', async () => {
    const c = await hookedCluster('unhooked', { pre_backup: hook('/u/pre'), post_backup: hook('/u/post') });
    const backups = w.worker!.workers.workers.find((x) => x.name === 'backups')!;
    await backups.pause();
    try {
      const res = await w.request('POST', `/v1/clusters/${c.id}/backups`, { token: wtoken, body: { live: false } });
      expect(res.status, res.text).toBe(202);
      const removed = await w.request('PATCH', `/v1/clusters/${c.id}`, { token: wtoken, body: { hooks: { pre_backup: null, post_backup: null } } });
      expect(removed.status, removed.text).toBe(200);
      backups.resume();
      const b = await waitForBackup(w, wtoken, c.id, res.body.id);
      expect(b).toMatchObject({ status: 'completed', live: true, paused_ms: null });
      expect(calls.filter((x) => x.path.startsWith('/u/'))).toEqual([]);
    } finally {
      backups.resume();
    }
  });

  it('brackets a restore with pre_restore and post_restore, also when the pre hook fails it touches nothing', async () => {
    const c = await hookedCluster('restored', {});
    const b = await backup(c.id);
    expect(b.status).toBe('completed');
    await w.request('PATCH', `/v1/clusters/${c.id}`, { token: wtoken, body: { hooks: { pre_restore: hook('/s/pre'), post_restore: hook('/s/post') } } });
    await writeFile(path.join(c.dir, 'state.txt'), 'changed since');
    const seen: string[] = [];
    handlers.set('/s/pre', async () => {
      seen.push(`pre:${await readFile(path.join(c.dir, 'state.txt'), 'utf8')}`);
      return 200;
    });
    handlers.set('/s/post', async () => {
      seen.push(`post:${await readFile(path.join(c.dir, 'state.txt'), 'utf8')}`);
      return 200;
    });
    const restore = async () => {
      const r = await w.request('POST', `/v1/clusters/${c.id}/backups/${b.id}/restore`, { token: wtoken, body: {} });
      expect(r.status, r.text).toBe(202);
      return waitFor(async () => {
        const g = await w.request('GET', `/v1/clusters/${c.id}/restores/${r.body.id}`, { token: wtoken });
        return ['completed', 'failed'].includes(g.body.status) ? g.body : null;
      }, 30_000, 'the restore');
    };
    const done = await restore();
    expect(done.status, JSON.stringify(done.error)).toBe('completed');
    expect(seen).toEqual(['pre:changed since', 'post:v1']);
    // a failing pre_restore: the restore fails, the tree stays as it is, no post hook
    await writeFile(path.join(c.dir, 'state.txt'), 'keep me');
    handlers.set('/s/pre', () => 500);
    seen.length = 0;
    const calledBefore = calls.filter((x) => x.path === '/s/post').length;
    const refused = await restore();
    expect(refused.status).toBe('failed');
    expect(refused.error.component).toBe('hook:pre_restore');
    expect(await readFile(path.join(c.dir, 'state.txt'), 'utf8')).toBe('keep me');
    expect(calls.filter((x) => x.path === '/s/post').length).toBe(calledBefore);
  });
});

/**
 * The reconciler's side of the pause (hooks/pause.ts): an owed post hook is claimed by exactly
 * one caller, however many reconcilers run; a claim whose caller died is taken over once it is
 * older than the longest hook timeout; a fresh claim is left alone.
 */
describe('post hooks owed by lost jobs', () => {
  it('are called once by racing reconcilers, and a stale claim (its caller died mid-call) is taken over', async () => {
    const c = await s.request('POST', '/v1/clusters', {
      token,
      body: { name: 'orphans', components, hooks: { pre_backup: { url: hookUrl, timeout_s: 5 }, post_backup: { url: hookUrl, timeout_s: 5 } } },
    });
    expect(c.status, c.text).toBe(201);
    const b = await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token }); // no worker here: it stays queued
    expect(b.status, b.text).toBe(202);
    const pausedAt = new Date(Date.now() - 10_000);
    await s.rt.db.backup.update({ where: { id: b.body.id }, data: { status: 'failed', hookState: 'paused', hookPausedAt: pausedAt } });
    const ids: string[] = [];
    const caller: HookCaller = {
      async call(_cluster, name, body, pause) {
        ids.push(`${'backup_id' in body ? body.backup_id : body.restore_id}.${name}.${pause}`);
        await new Promise((r) => setTimeout(r, 100));
        return { outcome: 'delivered', statusCode: 204, durationMs: 100, error: null };
      },
    };
    const deps = { db: s.rt.db, hooks: caller, now: () => new Date(), log: s.rt.log };
    const runs = await Promise.all([resumeOrphans(deps), resumeOrphans(deps), resumeOrphans(deps)]);
    await Promise.all(runs.map((r) => r.done));
    expect(runs.map((r) => r.claimed).sort()).toEqual([0, 0, 1]);
    expect(ids).toEqual([`${b.body.id}.post_backup.${pausedAt.getTime()}`]);
    expect((await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.body.id } })).hookState).toBe('resumed');
    expect((await resumeOrphans(deps)).claimed).toBe(0); // resumed: nothing owed

    // a claim made just now is someone's call in progress; one older than CLAIM_STALE_MS is a dead caller's
    await s.rt.db.backup.update({ where: { id: b.body.id }, data: { hookState: 'resuming', hookClaimedAt: new Date() } });
    expect((await resumeOrphans(deps)).claimed).toBe(0);
    await s.rt.db.backup.update({ where: { id: b.body.id }, data: { hookClaimedAt: new Date(Date.now() - CLAIM_STALE_MS - 1000) } });
    const again = await resumeOrphans(deps);
    await again.done;
    expect(again.claimed).toBe(1);
    expect(ids).toEqual([`${b.body.id}.post_backup.${pausedAt.getTime()}`, `${b.body.id}.post_backup.${pausedAt.getTime()}`]); // the same pause, the same webhook-id
    expect((await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.body.id } })).hookState).toBe('resumed');
  });

  it('a pause still calling its pre hook is taken over only once that call is certainly over (its timeout_s, plus a margin)', async () => {
    const c = await s.request('POST', '/v1/clusters', {
      token,
      body: { name: 'pausing-orphan', components, hooks: { pre_backup: { url: hookUrl, timeout_s: 30 }, post_backup: { url: hookUrl, timeout_s: 5 } } },
    });
    expect(c.status, c.text).toBe(201);
    const b = await s.request('POST', `/v1/clusters/${c.body.id}/backups`, { token });
    expect(b.status, b.text).toBe(202);
    const calls: string[] = [];
    const caller: HookCaller = {
      async call(_cluster, name) {
        calls.push(name);
        return { outcome: 'delivered', statusCode: 204, durationMs: 1, error: null };
      },
    };
    const deps = { db: s.rt.db, hooks: caller, now: () => new Date(), log: s.rt.log };
    // the job failed (its worker lost) 20 s into a pre hook that may take 30 s: not yet
    await s.rt.db.backup.update({ where: { id: b.body.id }, data: { status: 'failed', hookState: 'pausing', hookPausedAt: new Date(Date.now() - 20_000) } });
    expect((await resumeOrphans(deps)).claimed).toBe(0);
    expect(calls).toEqual([]);
    // once the pre call cannot be under way any more, its post hook is owed and called
    await s.rt.db.backup.update({ where: { id: b.body.id }, data: { hookPausedAt: new Date(Date.now() - 30_000 - PRE_CALL_MARGIN_MS - 1000) } });
    const r = await resumeOrphans(deps);
    await r.done;
    expect(r.claimed).toBe(1);
    expect(calls).toEqual(['post_backup']);
    expect((await s.rt.db.backup.findUniqueOrThrow({ where: { id: b.body.id } })).hookState).toBe('resumed');
  });
});
