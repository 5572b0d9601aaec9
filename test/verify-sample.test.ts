import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSampleVerifier } from '../src/modules/repository/repository.jobs.js';
import { createTenant, startStack, type Stack } from './helpers/stack.js';
import { chunksOfBackup, packFile } from './helpers/repo.js';
import { backupNow, createCluster, MiB, pseudoRandom } from './helpers/repo-tree.js';

let s: Stack;
beforeAll(async () => {
  s = await startStack({ env: { PACK_TARGET_BYTES: String(MiB) } });
});
afterAll(async () => {
  await s?.close();
});

const sampler = (percent: number) =>
  createSampleVerifier({ db: s.rt.db, repo: s.rt.repo, settings: { gcGraceMs: 0, gcRepackThreshold: 0.5, verifySamplePercent: percent }, now: () => new Date(), log: s.rt.log });

describe('the periodic sampled check (VERIFY_SAMPLE_PERCENT)', () => {
  it('re-reads the share of packs checked longest ago and records on each damaged pack what is wrong', async () => {
    const t = await createTenant(s);
    await mkdir(path.join(t.dir, 'src'), { recursive: true });
    for (let i = 0; i < 6; i++) await writeFile(path.join(t.dir, 'src', `f${i}.bin`), pseudoRandom(700 * 1024, `sample-${i}`));
    const clusterId = await createCluster(s, t.adminToken, 'sampled', [{ name: 'files', type: 'directory', config: { path: 'src' } }]);
    const backup = await backupNow(s, t.adminToken, clusterId);
    const packs = await s.rt.db.pack.findMany({ where: { tenantId: t.tenantId, status: 'live' }, orderBy: { id: 'asc' } });
    expect(packs.length).toBeGreaterThanOrEqual(3);
    // Packs are cut at the chunk that reaches PACK_TARGET_BYTES: each holds at most one chunk (here < 1 MiB) more.
    expect(packs.every((p) => Number(p.bytes) < 2 * MiB), JSON.stringify(packs.map((p) => Number(p.bytes)))).toBe(true);

    // Damage one chunk of one pack in the store.
    const chunk = (await chunksOfBackup(s, backup.id))[0]!;
    const file = packFile(s.storageRoot, t.tenantId, chunk.pack_id);
    const body = await readFile(file);
    body[chunk.pack_offset + Math.floor(chunk.length / 2)]! ^= 0x01;
    await writeFile(file, body);

    // 100 %: every pack is checked; only the damaged one records a problem, naming its copy and the chunk.
    await sampler(100)({ tenant_id: t.tenantId });
    const after = await s.rt.db.pack.findMany({ where: { tenantId: t.tenantId, status: 'live' } });
    expect(after.every((p) => p.verifiedAt !== null)).toBe(true);
    const damaged = after.filter((p) => p.verifyError !== null);
    expect(damaged.map((p) => p.id)).toEqual([chunk.pack_id]);
    expect(damaged[0]!.verifyError).toContain(`primary copy of pack ${chunk.pack_id.slice(0, 12)}`);
    expect(damaged[0]!.verifyError).toContain(`chunk ${chunk.id.slice(0, 12)}`);
    expect((await s.rt.db.repository.findUniqueOrThrow({ where: { tenantId: t.tenantId } })).verifiedAt).not.toBeNull();

    // A small share: exactly one pack (at least one), the one checked longest ago.
    const oldest = [...after].sort((a, b) => a.verifiedAt!.getTime() - b.verifiedAt!.getTime() || a.id.localeCompare(b.id))[0]!;
    await new Promise((r) => setTimeout(r, 5));
    await sampler(1)({ tenant_id: t.tenantId });
    const again = await s.rt.db.pack.findMany({ where: { tenantId: t.tenantId, status: 'live' } });
    const moved = again.filter((p) => p.verifiedAt!.getTime() !== after.find((x) => x.id === p.id)!.verifiedAt!.getTime());
    expect(moved.map((p) => p.id)).toEqual([oldest.id]);
  });
});
