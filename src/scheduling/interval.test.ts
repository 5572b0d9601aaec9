import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addInterval,
  intervalOrder,
  isInterval,
  nominalSeconds,
  parseInterval,
  subtractInterval,
} from './interval.js';

describe('parseInterval', () => {
  it.each([
    ['1h', { n: 1, unit: 'h' }],
    ['7d', { n: 7, unit: 'd' }],
    ['2w', { n: 2, unit: 'w' }],
    ['12M', { n: 12, unit: 'M' }],
    ['1000y', { n: 1000, unit: 'y' }],
  ])('parses %s', (s, expected) => {
    expect(parseInterval(s)).toEqual(expected);
    expect(isInterval(s)).toBe(true);
  });

  it.each(['', 'h', '0d', '01d', '+1d', '-1d', '1.5d', '1 d', ' 1d', '1d ', '1D', '1m', '1Y', '1001d', '10000h', '1dd', 'd1', '1e3d'])(
    'rejects %j',
    (s) => {
      expect(parseInterval(s)).toBeNull();
      expect(isInterval(s)).toBe(false);
    },
  );

  it('rejects non-strings', () => {
    expect(isInterval(1)).toBe(false);
    expect(isInterval(null)).toBe(false);
  });

  it('round-trips every valid interval', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.constantFrom('h', 'd', 'w', 'M', 'y'), (n, unit) => {
        expect(parseInterval(`${n}${unit}`)).toEqual({ n, unit });
      }),
    );
  });
});

describe('intervalOrder', () => {
  it('orders by nominal length', () => {
    const sorted = ['1y', '1M', '1w', '1d', '1h', '25h', '13M', '6d'].sort(intervalOrder);
    expect(sorted).toEqual(['1h', '1d', '25h', '6d', '1w', '1M', '1y', '13M']);
    expect(nominalSeconds('1M')).toBe(30 * 86_400);
    expect(nominalSeconds('2y')).toBe(2 * 365 * 86_400);
  });

  it('breaks nominal ties by the smaller unit, so the order is total', () => {
    expect(intervalOrder('24h', '1d')).toBeLessThan(0);
    expect(intervalOrder('1w', '7d')).toBeGreaterThan(0);
    expect(intervalOrder('3d', '3d')).toBe(0);
  });

  it('throws on an invalid interval', () => {
    expect(() => intervalOrder('1d', 'x')).toThrow(RangeError);
  });
});

describe('addInterval / subtractInterval', () => {
  it('adds a local day across spring-forward keeping the wall-clock time (23 h)', () => {
    const t = new Date('2024-03-30T10:00:00Z'); // 11:00 CET
    expect(addInterval(t, '1d', 'Europe/Berlin').toISOString()).toBe('2024-03-31T09:00:00.000Z');
    expect(addInterval(t, '24h', 'Europe/Berlin').toISOString()).toBe('2024-03-31T10:00:00.000Z');
  });

  it('subtracts months calendar-aware (clamping to the month end)', () => {
    const t = new Date('2024-03-31T12:00:00Z');
    expect(subtractInterval(t, '1M', 'UTC').toISOString()).toBe('2024-02-29T12:00:00.000Z');
    expect(subtractInterval(t, '1y', 'UTC').toISOString()).toBe('2023-03-31T12:00:00.000Z');
    expect(subtractInterval(t, '1w', 'UTC').toISOString()).toBe('2024-03-24T12:00:00.000Z');
  });

  it('gives the rate-limit window start one hour back exactly, whatever the zone', () => {
    const now = new Date('2024-10-27T01:30:00Z'); // inside Berlin's repeated hour
    expect(subtractInterval(now, '1h', 'Europe/Berlin').toISOString()).toBe('2024-10-27T00:30:00.000Z');
  });

  it('throws on an unknown zone or interval', () => {
    expect(() => addInterval(new Date(), '1d', 'Mars/Olympus')).toThrow(RangeError);
    expect(() => addInterval(new Date(), '0d', 'UTC')).toThrow(RangeError);
  });
});
