import { lstat, readlink } from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, isWithin } from './paths.js';

/** The kernel's limit on symlinks followed in one lookup (MAXSYMLINKS). */
const MAX_HOPS = 40;

/**
 * `settled`: no path inside the restored tree that is not (yet) one of its symlinks was looked
 * up, so symlinks further on in the archive cannot change the outcome (only the disk outside can).
 */
export type LinkResolution = { resolved: string; settled: boolean } | { loop: true };

/** The symlink at `p` on disk (its target), or null for anything else, missing included. */
export type LinkLookup = (p: string) => string | null | Promise<string | null>;

/** Symlinks as they are on disk, each path looked up once. */
export function diskLookup(): LinkLookup {
  const seen = new Map<string, Promise<string | null>>();
  return (p) => {
    let known = seen.get(p);
    if (!known) {
      known = lstat(p).then(
        (st) => (st.isSymbolicLink() ? readlink(p) : null),
        (err: unknown) => {
          if (['ENOENT', 'ENOTDIR'].includes(errnoCode(err) ?? '')) return null;
          throw err;
        },
      );
      seen.set(p, known);
    }
    return known;
  };
}

const split = (p: string) => p.split('/').filter((s) => s !== '' && s !== '.');

/**
 * Where the symlink in directory `dir` (a real path: no symlink on the way) with content `target`
 * leads, component by component the way the kernel resolves it: `a/../b` goes through `a` before
 * going up, which a lexical normalization gets wrong whenever `a` is a symlink. Missing components
 * are taken lexically (nothing there can redirect the lookup today).
 */
export async function follow(dir: string, target: string, linkAt: LinkLookup): Promise<{ resolved: string } | { loop: true }> {
  let current = target.startsWith('/') ? '/' : dir;
  const rest = split(target);
  let hops = 1;
  for (let part = rest.shift(); part !== undefined; part = rest.shift()) {
    if (part === '..') {
      current = path.dirname(current); // `current` never holds a symlink, so this is exact
      continue;
    }
    const next = path.join(current, part);
    const link = await linkAt(next);
    if (link === null) {
      current = next;
      continue;
    }
    if (++hops > MAX_HOPS) return { loop: true };
    rest.unshift(...split(link));
    if (link.startsWith('/')) current = '/';
  }
  return { resolved: current };
}

/**
 * Whether the symlink at `linkAbs` (content `target`, its parents real directories) leads outside
 * `dataRootReal` once followed. Pointing at DATA_ROOT itself is allowed; a loop leads nowhere.
 */
export async function symlinkEscapes(dataRootReal: string, linkAbs: string, target: string): Promise<boolean> {
  const outcome = await follow(path.dirname(linkAbs), target, diskLookup());
  return 'resolved' in outcome && !isWithin(dataRootReal, outcome.resolved);
}

/**
 * Where symlinks of an archive will lead once the archive is unpacked at `finalRoot`: inside
 * `finalRoot` through the archive's own symlinks (what will be there after the swap, not what is
 * there now), outside it through the symlinks on disk. With `b -> ../..` at `d1/d2/b`, the link
 * `a -> d1/d2/b/../../..` looks like it stays inside but leaves the tree.
 */
export function linkResolver(finalRoot: string, archiveLinks: ReadonlyMap<string, string>) {
  const onDisk = diskLookup();
  /** Resolves the archive symlink at `linkRel` (relative to finalRoot; its parents hold no symlink). */
  return async (linkRel: string): Promise<LinkResolution> => {
    const target = archiveLinks.get(linkRel);
    if (target === undefined) throw new Error(`not a symlink of the archive: ${linkRel}`);
    let settled = true;
    const linkAt: LinkLookup = (p) => {
      if (p === finalRoot) return null; // the restored root is a directory
      if (!isWithin(finalRoot, p)) return onDisk(p);
      const link = archiveLinks.get(path.relative(finalRoot, p));
      if (link === undefined) settled = false;
      return link ?? null;
    };
    const outcome = await follow(path.dirname(path.join(finalRoot, linkRel)), target, linkAt);
    return 'loop' in outcome ? outcome : { resolved: outcome.resolved, settled };
  };
}
