// Connection-level failures (refused, timed out, pool exhausted, server shutting down): these are
// outages, answered 503, not programming errors.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EPIPE',
  'P1001',
  'P1002',
  'P1017',
  'P2024',
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08001',
  '08003',
  '08006',
]);

export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const x = e as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown };
    if (typeof x.code === 'string' && UNAVAILABLE_CODES.has(x.code)) return true;
    if (x.name === 'DriverAdapterError' || x.name === 'PrismaClientInitializationError') {
      const m = String(x.message ?? '');
      if (/connect|timeout|terminat|ECONN|closed/i.test(m)) return true;
    }
    if (typeof x.message === 'string' && /Connection terminated|timeout exceeded when trying to connect|ECONNREFUSED/i.test(x.message)) return true;
    e = x.cause;
  }
  return false;
}

/** Prisma unique-constraint violation. */
export function isUniqueViolation(err: unknown): boolean {
  const x = err as { code?: string; cause?: { code?: string } };
  return x?.code === 'P2002' || x?.cause?.code === '23505';
}

/** Runs `fn`, turning a unique-constraint violation into the domain error `onDuplicate()` returns. */
export async function onUniqueViolation<T>(fn: () => Promise<T>, onDuplicate: () => Error): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isUniqueViolation(err)) throw onDuplicate();
    throw err;
  }
}
