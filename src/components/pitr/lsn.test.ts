import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatLsn, parseLsn, parseSegmentName, walSegmentName } from './lsn.js';

describe('LSNs and WAL file names', () => {
  it('match what PostgreSQL writes', () => {
    // pg_walfile_name('0/3000148') on timeline 1 with 16 MiB segments
    expect(walSegmentName(1, parseLsn('0/3000148'))).toBe('000000010000000000000003');
    expect(walSegmentName(2, parseLsn('1/FF000000'))).toBe('0000000200000001000000FF');
    expect(walSegmentName(1, parseLsn('A/40000000'), 1 << 30)).toBe('000000010000000A00000001');
    expect(parseSegmentName('0000000200000001000000FF')).toEqual({ timeline: 2, startLsn: parseLsn('1/FF000000') });
    expect(formatLsn(parseLsn('16/b374d848'))).toBe('16/B374D848');
  });

  it('refuse what is not one', () => {
    for (const bad of ['', '0', '0/', '/0', '0/123456789', 'g/0', '0/0/0']) expect(() => parseLsn(bad), bad).toThrow(RangeError);
    expect(() => parseSegmentName('00000001000000000000003')).toThrow(RangeError);
    expect(() => walSegmentName(0, 0n)).toThrow(RangeError);
    expect(() => walSegmentName(1, 0n, 3 << 20)).toThrow(RangeError);
  });

  it('round-trip: a position is inside the segment its name gives; the text form parses back', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.integer({ min: 1, max: 0xffffffff }), fc.integer({ min: 20, max: 30 }), (lsn, tli, bits) => {
        const size = 1 << bits;
        expect(parseLsn(formatLsn(lsn))).toBe(lsn);
        const seg = parseSegmentName(walSegmentName(tli, lsn, size), size);
        expect(seg.timeline).toBe(tli);
        expect(seg.startLsn <= lsn && lsn < seg.startLsn + BigInt(size)).toBe(true);
        expect(seg.startLsn % BigInt(size)).toBe(0n);
      }),
    );
  });
});
