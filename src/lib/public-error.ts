/**
 * Error text fit for a tenant: a job's `error.message` is shown to the tenant, so it never
 * carries a server path (a store's or DATA_ROOT's absolute path, a temp file) and is bounded.
 * The full error stays in the server log.
 */
const MAX = 2000;
// An absolute path: a slash-led run of path characters, at the start or after a space, quote,
// bracket or `=`; URLs (scheme://) are left alone since `://` never precedes it.
const ABSOLUTE_PATH = /(^|[\s'"`(\[=,])(\/(?:[^\s'"`)\],:]+))/g;

export function publicMessage(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  const m = raw.replace(ABSOLUTE_PATH, (_all, lead: string) => `${lead}<server path>`);
  return m.length > MAX ? m.slice(0, MAX) + '…' : m;
}
