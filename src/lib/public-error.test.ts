import { describe, expect, it } from 'vitest';
import { publicMessage } from './public-error.js';

describe('publicMessage', () => {
  it('removes absolute server paths, keeps the rest', () => {
    const m = publicMessage(new Error("ENOENT: no such file or directory, open '/var/lib/bk/artifacts/t/c/b/db.pgdump'"));
    expect(m).toBe("ENOENT: no such file or directory, open '<server path>'");
    expect(publicMessage(new Error('cannot write /tmp/x.partial: disk full'))).toBe('cannot write <server path>: disk full');
  });
  it('leaves URLs and relative paths alone', () => {
    expect(publicMessage(new Error('GET s3://bucket/prefix/key failed; path a/b'))).toBe('GET s3://bucket/prefix/key failed; path a/b');
  });
  it('bounds the length', () => {
    expect(publicMessage('x'.repeat(5000)).length).toBeLessThanOrEqual(2001);
  });
});
