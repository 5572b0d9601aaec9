import { readdirSync, readFileSync } from 'node:fs';

/**
 * The /proc stat fields of each thread of this process, by thread id, from field 3 (state) on:
 * index 11 and 12 are utime and stime (clock ticks), 16 the nice value (proc(5), fields 14, 15, 19).
 * Linux only; a thread that ends between the listing and the read is left out.
 */
export function threadStats(): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      out.set(Number(tid), stat.slice(stat.lastIndexOf(')') + 2).split(' '));
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}
