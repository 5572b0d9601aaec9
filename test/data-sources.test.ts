import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MysqlFixture, mysqlUrl } from './helpers/mysql.js';
import { startRedisServer, type ScratchRedisServer } from './helpers/redis-server.js';
import { createKey, createTenant, startStack, waitFor, waitForBackup, type Stack } from './helpers/stack.js';

/**
 * SPEC section 12 through the API and a real worker: redis and mysql components are saved with
 * their secrets encrypted and masked, refused when they name the service's own servers or cannot
 * be backed up (422 naming the problem), backed up, downloaded and restored.
 */
let s: Stack;
let admin: string;
let operator: string;
let redis: ScratchRedisServer;
let closedPort: number;
const my = new MysqlFixture('bk_ds');
let database: string;
let mysqlUser: string;
const REDIS_PASSWORD = `redis-pw-${randomBytes(6).toString('hex')}`;
const MYSQL_PASSWORD = `mysql-pw-${randomBytes(6).toString('hex')}`;

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

beforeAll(async () => {
  s = await startStack();
  ({ adminToken: admin } = await createTenant(s));
  operator = await createKey(s, admin, 'operator');
  redis = await startRedisServer({ args: ['--requirepass', REDIS_PASSWORD] });
  closedPort = await freePort();
  database = await my.createDatabase('app');
  mysqlUser = await my.createUser('bk', MYSQL_PASSWORD, [`GRANT ALL PRIVILEGES ON \`${database}\`.* TO {user}`, `GRANT ALL PRIVILEGES ON \`${database}__bk_%\`.* TO {user}`]);
});
afterAll(async () => {
  await s?.close();
  await redis?.stop();
  await my.cleanup();
});

const redisUrl = (password = REDIS_PASSWORD, port = redis.port, user = '') => `redis://${user}:${password}@127.0.0.1:${port}`;
const client = () => new Redis({ port: redis.port, host: '127.0.0.1', password: REDIS_PASSWORD, lazyConnect: true, maxRetriesPerRequest: 1 });

async function newCluster(components: unknown[]) {
  const p = await s.request('POST', '/v1/policies', { token: admin, body: { name: `p-${randomBytes(4).toString('hex')}`, manual_rate_limit: null, schedule: [] } });
  const c = await s.request('POST', '/v1/clusters', { token: admin, body: { name: `c-${randomBytes(4).toString('hex')}`, policy_id: p.body.id, components } });
  return c;
}

async function backup(clusterId: string) {
  const b = await s.request('POST', `/v1/clusters/${clusterId}/backups`, { token: operator });
  expect(b.status, b.text).toBe(202);
  return waitForBackup(s, operator, clusterId, b.body.id);
}

describe('redis and mysql components', () => {
  it('are saved with their secrets encrypted and masked, backed up, downloaded and restored to the state at backup time', async () => {
    const r = client();
    await r.connect();
    const m = await my.connection();
    try {
      await r.select(0);
      await r.set('greeting', 'hello');
      await r.hset('user:1', { name: 'Ada', lang: 'en' });
      await r.select(3);
      await r.rpush('queue', 'a', 'b', 'c');
      await r.set(Buffer.from([0xff, 0x00, 0xfe]), Buffer.from([0x01, 0x02, 0x00, 0x9f]));
      await r.set('expiring', 'soon', 'EX', 3600);
      await m.query(`CREATE TABLE \`${database}\`.accounts (id INT PRIMARY KEY, owner VARCHAR(50) NOT NULL, balance DECIMAL(12,2)) ENGINE=InnoDB`);
      await m.query(`INSERT INTO \`${database}\`.accounts VALUES (1, 'ada', 10.50), (2, 'grace', 20.00)`);

      const c = await newCluster([
        { name: 'cache', type: 'redis', config: { url: redisUrl() } },
        { name: 'sql', type: 'mysql', config: { url: mysqlUrl(database, mysqlUser, MYSQL_PASSWORD) } },
      ]);
      expect(c.status, c.text).toBe(201);
      // masked in every answer, encrypted at rest, never logged
      expect(c.body.components.map((x: { config: { url: string } }) => x.config.url)).toEqual([
        `redis://:***@127.0.0.1:${redis.port}`,
        `mysql://${mysqlUser}:***@127.0.0.1:3306/${database}`,
      ]);
      const listed = await s.request('GET', `/v1/clusters/${c.body.id}`, { token: operator });
      for (const text of [c.text, listed.text, JSON.stringify((await s.rt.db.cluster.findUniqueOrThrow({ where: { id: c.body.id } })).components), s.logs()]) {
        expect(text).not.toContain(REDIS_PASSWORD);
        expect(text).not.toContain(MYSQL_PASSWORD);
      }

      const b = await backup(c.body.id);
      expect(b.status, JSON.stringify(b.error)).toBe('completed');
      expect(b.artifacts.map((a: { component: string; type: string }) => [a.component, a.type])).toEqual([
        ['cache', 'redis'],
        ['sql', 'mysql'],
      ]);
      expect(b.artifacts.every((a: { bytes: number }) => a.bytes > 0)).toBe(true);

      // portable copies: the RDB file redis-server loads, the SQL mysql runs
      const rdb = await s.request('GET', `/v1/clusters/${c.body.id}/backups/${b.id}/components/cache/archive`, { token: operator });
      expect(rdb.status).toBe(200);
      expect(rdb.headers['content-disposition']).toMatch(/attachment; filename=".*\.rdb"/);
      expect(rdb.text.startsWith('REDIS')).toBe(true);
      const sql = await s.request('GET', `/v1/clusters/${c.body.id}/backups/${b.id}/components/sql/archive`, { token: operator });
      expect(sql.status).toBe(200);
      expect(sql.headers['content-type']).toContain('application/sql');
      expect(sql.text).toContain('CREATE TABLE `accounts`');
      expect(sql.text).not.toContain(MYSQL_PASSWORD);

      // changes after the backup ...
      await r.select(0);
      await r.set('greeting', 'changed');
      await r.set('added-later', 'x');
      await r.del('user:1');
      await m.query(`UPDATE \`${database}\`.accounts SET balance = 0 WHERE id = 1`);
      await m.query(`CREATE TABLE \`${database}\`.later (id INT PRIMARY KEY)`);
      // ... are gone after the restore
      const res = await s.request('POST', `/v1/clusters/${c.body.id}/backups/${b.id}/restore`, { token: operator });
      expect(res.status, res.text).toBe(202);
      const restore = await waitFor(async () => {
        const x = await s.request('GET', `/v1/clusters/${c.body.id}/restores/${res.body.id}`, { token: operator });
        return ['completed', 'failed'].includes(x.body.status) ? x.body : null;
      }, 60_000, 'restore');
      expect(restore.status, JSON.stringify(restore.error)).toBe('completed');
      await r.select(0);
      expect(await r.get('greeting')).toBe('hello');
      expect(await r.exists('added-later')).toBe(0);
      expect(await r.hgetall('user:1')).toEqual({ name: 'Ada', lang: 'en' });
      await r.select(3);
      expect(await r.lrange('queue', 0, -1)).toEqual(['a', 'b', 'c']);
      expect(await r.getBuffer(Buffer.from([0xff, 0x00, 0xfe]))).toEqual(Buffer.from([0x01, 0x02, 0x00, 0x9f]));
      const ttl = await r.ttl('expiring');
      expect(ttl).toBeGreaterThan(3500);
      expect(ttl).toBeLessThanOrEqual(3600);
      const [rows] = await m.query(`SELECT id, owner, balance FROM \`${database}\`.accounts ORDER BY id`);
      expect(rows).toEqual([
        { id: 1, owner: 'ada', balance: '10.50' },
        { id: 2, owner: 'grace', balance: '20.00' },
      ]);
      const [tables] = await m.query(`SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1`, [database]);
      expect(tables).toEqual([{ t: 'accounts' }]);
      expect(await my.databasesLike(`${database}__bk_`)).toEqual([]); // no scratch database left behind
    } finally {
      r.disconnect();
    }
  });

  it("refuse the service's own Redis and PostgreSQL servers under several spellings", async () => {
    const ownRedis = new URL(s.rt.config.redisUrl);
    const redisPort = ownRedis.port || '6379';
    for (const host of ['127.0.0.1', 'localhost', '[::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '0.0.0.0']) {
      const res = await newCluster([{ name: 'cache', type: 'redis', config: { url: `redis://${host}:${redisPort}` } }]);
      expect(res.status, `${host}: ${res.text}`).toBe(422);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.body.errors).toEqual([{ path: 'body.components.0.config.url', message: expect.stringMatching(/^redis target refused: (that is the backup service's own Redis server|host .* is not among the hosts the operator allows \(TARGET_ALLOWED_HOSTS\))$/) }]);
    }
    const ownPg = new URL(s.databaseUrl);
    for (const host of ['127.0.0.1', 'localhost', '[::1]']) {
      for (const [type, url] of [
        ['mysql', `mysql://root@${host}:${ownPg.port || 5432}/backups`],
        ['redis', `redis://${host}:${ownPg.port || 5432}`],
      ] as const) {
        const res = await newCluster([{ name: 'x', type, config: { url } }]);
        expect(res.status, `${url}: ${res.text}`).toBe(422);
        expect(res.body.errors[0].message).toMatch(new RegExp(`^${type} target refused: (that is the backup service's own database server|host .* is not among the hosts the operator allows \\(TARGET_ALLOWED_HOSTS\\))$`));
      }
    }
    // the exact spellings the operator's list lets through reach the refusal of the server itself
    const plain = await newCluster([{ name: 'cache', type: 'redis', config: { url: `redis://127.0.0.1:${redisPort}` } }]);
    expect(plain.body.errors[0].message).toBe("redis target refused: that is the backup service's own Redis server");
  });

  it('answer 422 naming the problem when the server cannot be backed up: wrong password, missing database, unreachable, missing rights', async () => {
    const r = client();
    await r.connect();
    const norepl = `norepl_${randomBytes(3).toString('hex')}`;
    await r.call('ACL', 'SETUSER', norepl, 'on', '>norepl-pw', '~*', '+@all', '-sync', '-psync');
    const weak = await my.createUser('weak', 'weak-pw', [`GRANT INSERT ON \`${database}\`.* TO {user}`]);
    try {
      const cases: [string, string, RegExp][] = [
        ['redis', redisUrl('wrong-password'), /authentication failed/],
        ['redis', `redis://127.0.0.1:${closedPort}`, /unreachable/],
        ['redis', `redis://${norepl}:norepl-pw@127.0.0.1:${redis.port}`, /may not replicate, which a snapshot needs: grant it \+psync \+replconf \+sync/],
        ['redis', 'http://127.0.0.1:1/x', /redis:\/\//],
        ['mysql', mysqlUrl(database, mysqlUser, 'wrong-password'), /authentication failed/],
        ['mysql', mysqlUrl(`${database}_missing`, 'root'), /database .*_missing does not exist/],
        ['mysql', mysqlUrl(database, 'root', undefined, '127.0.0.1', closedPort), /unreachable/],
        ['mysql', mysqlUrl(database, weak, 'weak-pw'), /SELECT|SHOW VIEW|LOCK TABLES/],
        ['mysql', 'mysql://127.0.0.1', /database/],
      ];
      for (const [type, url, message] of cases) {
        const res = await newCluster([{ name: 'x', type, config: { url } }]);
        expect(res.status, `${type} ${url}: ${res.text}`).toBe(422);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.body.errors[0].path).toBe('body.components.0.config.url');
        expect(res.body.errors[0].message, url).toMatch(message);
        expect(res.text).not.toContain('wrong-password');
        expect(res.text).not.toContain('weak-pw');
      }
    } finally {
      await r.call('ACL', 'DELUSER', norepl);
      r.disconnect();
    }
  });

  it('a server that goes away after the save fails the backup naming the component, and nothing answers 5xx', async () => {
    const gone = await startRedisServer();
    const c = await newCluster([{ name: 'cache', type: 'redis', config: { url: gone.url } }]);
    expect(c.status, c.text).toBe(201);
    await gone.stop();
    const b = await backup(c.body.id);
    expect(b.status).toBe('failed');
    expect(b.error).toEqual({ component: 'cache', message: expect.stringMatching(/unreachable/) });
    expect(JSON.stringify(b.error)).not.toContain(String(gone.port));
  });
});
