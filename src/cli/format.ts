import { InvalidArgumentError } from 'commander';

/*
 * Plain-text output: tables padded with spaces, sizes in binary units, durations in s/m/h. No
 * colours and no control characters anywhere, so cron mail and log files stay readable.
 */

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `90`, `90s`, `5m`, `1.5h`, `250ms` → milliseconds (a bare number is seconds). For commander. */
export function parseDuration(value: string): number {
  const m = DURATION_RE.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a duration such as 90s, 5m or 1h (a bare number is seconds)');
  const ms = Number(m[1]) * UNIT_MS[(m[2] ?? 's') as keyof typeof UNIT_MS];
  if (!Number.isFinite(ms) || ms <= 0) throw new InvalidArgumentError('expected a duration greater than 0');
  return ms;
}

export function parseLimit(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 100) throw new InvalidArgumentError('expected a whole number from 1 to 100');
  return Number(value);
}

/** `a,b,c` → ['a','b','c'] (empty items dropped). */
export function parseList(value: string): string[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError('expected a comma-separated list');
  return items;
}

export function humanSeconds(s: number): string {
  if (s < 10) return `${Math.round(s * 10) / 10} s`;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round((s / 3600) * 10) / 10} h`;
  return `${Math.round(s / 86_400)} d`;
}

export function humanBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** An RFC 3339 time as `2026-12-02 16:48:00Z` (or '-'). */
export function humanTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** Columns padded to their widest cell; every control character in a cell becomes a space. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => clean(c === null || c === undefined ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** `key: value` lines, keys aligned. */
export function fields(pairs: [string, string | number | null | undefined][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 1)} ${clean(v === null || v === undefined ? '-' : String(v))}`).join('\n');
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
/** The API's strings (names, error messages) printed as they are, minus control characters. */
export function clean(s: string): string {
  return s.replace(CONTROL, ' ');
}
