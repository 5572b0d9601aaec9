import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';

const base = { ENCRYPTION_KEY: randomBytes(32).toString('base64') };
const load = (env: Record<string, string>) => {
  const warnings: string[] = [];
  const config = loadConfig({ ...base, ...env }, tmpdir(), (m) => warnings.push(m));
  return { config, warnings };
};

describe('target configuration', () => {
  it('allows public addresses only by default, and the service server not at all', () => {
    const { config, warnings } = load({});
    expect(config.targetAllowedHosts.public).toBe(true);
    expect(config.targetAllowedHosts.addresses.rules).toEqual([]);
    expect(config.targetAllowServiceServer).toBe(false);
    expect(warnings).toEqual([]);
  });

  it('reads TARGET_ALLOWED_HOSTS, and POSTGRES_ALLOWED_HOSTS as a deprecated alias', () => {
    expect(load({ TARGET_ALLOWED_HOSTS: 'db.internal, 10.0.0.0/8' }).config.targetAllowedHosts.public).toBe(false);
    const alias = load({ POSTGRES_ALLOWED_HOSTS: 'db.internal' });
    expect([...alias.config.targetAllowedHosts.names]).toEqual(['db.internal']);
    expect(alias.warnings).toEqual(['POSTGRES_ALLOWED_HOSTS is deprecated: rename it TARGET_ALLOWED_HOSTS']);
    const both = load({ TARGET_ALLOWED_HOSTS: 'a.internal', POSTGRES_ALLOWED_HOSTS: 'b.internal' });
    expect([...both.config.targetAllowedHosts.names]).toEqual(['a.internal']);
    expect(both.warnings).toEqual(['POSTGRES_ALLOWED_HOSTS is deprecated and ignored since TARGET_ALLOWED_HOSTS is set']);
    expect(() => load({ TARGET_ALLOWED_HOSTS: 'db.internal, not a host' })).toThrow(/^invalid configuration: TARGET_ALLOWED_HOSTS: "not a host" is neither/);
  });

  it('TARGET_ALLOW_SERVICE_SERVER=true lifts the refusal, with a warning', () => {
    const { config, warnings } = load({ TARGET_ALLOW_SERVICE_SERVER: 'true' });
    expect(config.targetAllowServiceServer).toBe(true);
    expect(warnings).toEqual([expect.stringMatching(/^TARGET_ALLOW_SERVICE_SERVER=true: .*unsafe with untrusted tenants$/)]);
    expect(() => load({ TARGET_ALLOW_SERVICE_SERVER: 'yes' })).toThrow(/TARGET_ALLOW_SERVICE_SERVER: must be true or false/);
  });
});
