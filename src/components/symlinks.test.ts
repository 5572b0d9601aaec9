import fc from 'fast-check';
import { mkdir, mkdtemp, realpath, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errnoCode } from './paths.js';
import { linkResolver, symlinkEscapes } from './symlinks.js';

let base: string;
beforeAll(async () => {
  base = await realpath(await mkdtemp(path.join(tmpdir(), 'restored-links-')));
});
afterAll(() => rm(base, { recursive: true, force: true }));

async function scratch(): Promise<{ dataRoot: string; finalRoot: string }> {
  const dir = await mkdtemp(path.join(base, 'case-'));
  const dataRoot = path.join(dir, 'data');
  const finalRoot = path.join(dataRoot, 't', 'root');
  await mkdir(finalRoot, { recursive: true });
  await mkdir(path.join(dir, 'outside'));
  // A symlink on disk outside the restored tree, which lookups may pass through.
  await symlink('../..', path.join(dataRoot, 't', 'up'));
  return { dataRoot, finalRoot };
}

describe('linkResolver', () => {
  it('follows the archive symlinks a lexical check would miss', async () => {
    const { dataRoot, finalRoot } = await scratch();
    const links = new Map([
      ['d1/d2/b', '../..'],
      ['a', 'd1/d2/b/../../..'], // lexically finalRoot itself, really three levels above it
      ['ok', 'x/y/../../..'], // lexically above finalRoot... and really too: no links on the way
      ['deep', 'd1/d2/b/d1'],
    ]);
    const resolve = linkResolver(finalRoot, links);
    // d1 (and x) are looked up in the tree, where a later entry could still put a symlink
    expect(await resolve('a')).toEqual({ resolved: path.dirname(dataRoot), settled: false });
    expect(await resolve('ok')).toEqual({ resolved: path.dirname(finalRoot), settled: false });
    expect(await resolve('deep')).toEqual({ resolved: path.join(finalRoot, 'd1'), settled: false });
    expect(await resolve('d1/d2/b')).toEqual({ resolved: finalRoot, settled: true });
  });

  it('follows symlinks on disk outside the tree, and archive links reached through them', async () => {
    const { dataRoot, finalRoot } = await scratch();
    const links = new Map([
      ['via-up', '../up/data/t/root/back'], // t/up -> ../.. is on disk: the scratch dir
      ['back', '../../../..'],
    ]);
    const resolve = linkResolver(finalRoot, links);
    const scratchParent = path.dirname(path.dirname(dataRoot));
    expect(await resolve('back')).toEqual({ resolved: scratchParent, settled: true });
    // up to t/, through t/up to the scratch dir, down into the restored tree again, then `back`
    expect(await resolve('via-up')).toEqual({ resolved: scratchParent, settled: true });
  });

  it('reports loops instead of following them forever', async () => {
    const { finalRoot } = await scratch();
    const resolve = linkResolver(finalRoot, new Map([['x', 'y'], ['y', 'x/z']]));
    expect(await resolve('x')).toEqual({ loop: true });
  });

  // The invariants: wherever the kernel resolves a symlink of the unpacked tree, we find the same
  // place from the archive's list of symlinks alone; and an outcome judged while only the links
  // up to this one were known is, when settled, what the kernel finds once all are there.
  it('agrees with the kernel on every tree it can resolve', async () => {
    const names = ['l1', 'l2', 'l3', 'l4', 'l5'];
    const component = fc.constantFrom('..', '..', '.', 'a', 'b', 'c', 'root', 't', 'up', 'outside', 'data', ...names);
    const target = fc.tuple(fc.constantFrom('', 'root', 'data', 'base'), fc.array(component, { minLength: 1, maxLength: 7 }));
    const link = fc.record({ parent: fc.constantFrom('', 'a', 'a/b', 'c'), name: fc.constantFrom(...names), target });
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(link, { minLength: 1, maxLength: 5, selector: (l) => `${l.parent}/${l.name}` }), async (spec) => {
        const { dataRoot, finalRoot } = await scratch();
        for (const dir of ['a/b', 'c']) await mkdir(path.join(finalRoot, dir), { recursive: true });
        const archiveLinks = new Map<string, string>();
        for (const { parent, name, target: [anchor, parts] } of spec) {
          const prefix = { '': '', root: `${finalRoot}/`, data: `${dataRoot}/`, base: `${path.dirname(dataRoot)}/` }[anchor];
          const rel = parent ? `${parent}/${name}` : name;
          archiveLinks.set(rel, prefix + parts.join('/'));
          await symlink(prefix + parts.join('/'), path.join(finalRoot, rel));
        }
        const resolve = linkResolver(finalRoot, archiveLinks);
        const known = new Map<string, string>();
        const resolveKnown = linkResolver(finalRoot, known);
        for (const [rel, target] of archiveLinks) {
          known.set(rel, target);
          const early = await resolveKnown(rel);
          const ours = await resolve(rel);
          const kernel = await realpath(path.join(finalRoot, rel)).catch((err: unknown) => errnoCode(err));
          if (kernel === 'ENOENT' || kernel === 'ENOTDIR') continue;
          if (kernel === 'ELOOP') {
            expect(ours, rel).toEqual({ loop: true });
            continue;
          }
          expect(ours, rel).toMatchObject({ resolved: kernel });
          if ('settled' in early && early.settled) expect(early.resolved, rel).toBe(kernel);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('symlinkEscapes (a symlink met during a backup, judged on disk)', () => {
  let dataRoot: string;
  beforeAll(async () => {
    const dir = await mkdtemp(path.join(base, 'escapes-'));
    dataRoot = path.join(dir, 'data');
    await mkdir(path.join(dataRoot, 'apps/web/uploads'), { recursive: true });
    await mkdir(path.join(dataRoot, 'shared'), { recursive: true });
    await mkdir(path.join(dir, 'outside'));
    await symlink('../outside', path.join(dataRoot, 'escape-relative'));
    await symlink('apps/web', path.join(dataRoot, 'web-link'));
    await symlink('.', path.join(dataRoot, 'self'));
    await symlink('self/self/web-link', path.join(dataRoot, 'chain'));
    await symlink('loop-b', path.join(dataRoot, 'loop-a'));
    await symlink('loop-a', path.join(dataRoot, 'loop-b'));
  });
  const link = () => path.join(dataRoot, 'apps/web/uploads/link');

  it.each([
    ['file.txt', false],
    ['../../../shared', false],
    ['../../../', false], // DATA_ROOT itself
    ['<data>/shared/x', false],
    ['../../../../outside', true],
    ['/etc/passwd', true],
    ['../../../escape-relative', true], // inside lexically, outside once followed
    ['../../../escape-relative/missing/deeper', true],
    ['../../../missing/deeper', false],
    ['../../../self/..', true], // lexically DATA_ROOT, really its parent
    ['../../../web-link/../..', false], // lexically above DATA_ROOT, really DATA_ROOT
    ['../../../chain/../../..', true],
    ['../../../loop-a', false], // leads nowhere
  ])('%j escapes: %j', async (target, expected) => {
    expect(await symlinkEscapes(dataRoot, link(), target.replace('<data>', dataRoot))).toBe(expected);
  });
});
