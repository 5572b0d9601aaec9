import { execFile } from 'node:child_process';
import { constants } from 'node:os';

/**
 * renameat2(2)'s syscall number per architecture. Node has no binding for it, so a perl one-liner
 * makes the call: perl-base is Essential on Debian (so it is in node:*-bookworm-slim, where
 * python3 is not), and its `syscall` builtin needs no module. An architecture missing here just
 * takes the caller's fallback.
 */
const SYS_RENAMEAT2: Partial<Record<NodeJS.Architecture, number>> = {
  x64: 316,
  arm64: 276,
  riscv64: 276,
  loong64: 276,
  ia32: 353,
  arm: 382,
  ppc64: 357,
  ppc: 357,
  s390x: 347,
};

const AT_FDCWD = -100;
const RENAME_EXCHANGE = 2;

// Exit 0: exchanged. Exit 3: the call failed, errno on stderr. Paths are argv strings, which
// perl passes to the syscall as NUL-terminated pointers (a literal would be read-only).
const SCRIPT = `my $r = syscall(0 + $ARGV[0], ${AT_FDCWD}, $ARGV[1], ${AT_FDCWD}, $ARGV[2], ${RENAME_EXCHANGE});
if ($r != 0) { print STDERR 0 + $!; exit 3 } exit 0`;

/**
 * What says "this kernel or file system cannot exchange" rather than "these paths are wrong":
 * ENOSYS (kernel < 3.15, or a seccomp filter that answers so), EINVAL (a file system without
 * RENAME_EXCHANGE support, e.g. some network or FUSE file systems), EOPNOTSUPP, and EPERM (what
 * older container seccomp profiles answer for syscalls they do not know). A caller falling back
 * to rename(2) gets a real permission problem reported by rename itself.
 */
const UNSUPPORTED = new Set([constants.errno.ENOSYS, constants.errno.EINVAL, constants.errno.EOPNOTSUPP, constants.errno.EPERM]);
const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

let helperMissing = false;

export type ExchangeOutcome = 'exchanged' | 'unsupported';

/**
 * Atomically swaps two existing paths of one file system (renameat2 with RENAME_EXCHANGE): at
 * every instant each name refers to one of the two entries, neither is ever missing. Resolves
 * 'unsupported' (nothing changed) where the platform, kernel, file system or helper cannot do it;
 * rejects with an errno-coded error (ENOENT, EXDEV, EACCES...) for anything else.
 */
export function exchangePaths(a: string, b: string): Promise<ExchangeOutcome> {
  const nr = SYS_RENAMEAT2[process.arch];
  if (process.platform !== 'linux' || nr === undefined || helperMissing) return Promise.resolve('unsupported');
  return new Promise((resolve, reject) => {
    execFile('perl', ['-e', SCRIPT, String(nr), a, b], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } }, (err, _stdout, stderr) => {
      if (!err) return resolve('exchanged');
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        helperMissing = true; // no perl on PATH: stays so for this process
        return resolve('unsupported');
      }
      const errno = Number.parseInt(String(stderr).trim(), 10);
      if ((err as { code?: unknown }).code !== 3 || !Number.isInteger(errno)) {
        return reject(Object.assign(new Error(`renameat2 helper failed: ${String(stderr).trim() || err.message}`), { code: 'EIO' }));
      }
      if (UNSUPPORTED.has(errno)) return resolve('unsupported');
      const code = ERRNO_NAMES.get(errno) ?? `ERRNO${errno}`;
      reject(Object.assign(new Error(`${code}: renameat2 exchange failed`), { code, errno: -errno, syscall: 'renameat2' }));
    });
  });
}
