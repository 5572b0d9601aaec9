import { directoryDriver } from './directory.js';
import { postgresDriver } from './postgres.js';
import { redisDriver } from './redis.js';
import { mysqlDriver } from './mysql.js';
import type { ComponentDriver, ComponentType } from './types.js';

export { directoryDriver, type DirectoryConfig } from './directory.js';
export { checkRelativePath, PathEscapeError, PathNotFoundError, resolveInsideRoot } from './paths.js';
export { postgresDriver, type PostgresConfig } from './postgres.js';
export { redisDriver, checkRedisConnection, checkRedisUrl, type RedisConfig } from './redis.js';
export { mysqlDriver, checkMysqlConnection, checkMysqlUrl, type MysqlConfig } from './mysql.js';
export { checkPostgresUrl, parsePostgresUrl } from './postgres-connection.js';
export { createTargetPolicy, parseAllowedHosts, type TargetPolicy } from './postgres-targets.js';
export { createTargetGuard, DEFAULT_ALLOWED_HOSTS, type AllowedHosts, type TargetGuard, type TargetVerdict } from './targets.js';
export { describePostgresFailure } from './postgres-errors.js';
export { COMPONENT_TYPES, ComponentError } from './types.js';
export type { BackupContext, ComponentDriver, ComponentType, RestoreContext } from './types.js';
export { ArtifactChangedError } from './verify.js';
export { sweepRestoreLeftovers, type SweepReport } from './restore-swap.js';

// `any`: each driver has its own config type; callers pick the driver by the component's `type`.
export const drivers: Record<ComponentType, ComponentDriver<any>> = {
  directory: directoryDriver,
  postgres: postgresDriver,
  redis: redisDriver,
  mysql: mysqlDriver,
};

export function getDriver(type: ComponentType): ComponentDriver<unknown> {
  const driver = drivers[type];
  if (!driver) throw new Error(`unknown component type: ${String(type)}`);
  return driver;
}
