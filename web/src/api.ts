/**
 * The console's only way to the API: the typed client of src/client (openapi-fetch over the
 * generated schema), same origin. The API key lives in sessionStorage only (gone with the tab),
 * is sent as `Authorization: Bearer` and never put in a URL, a log or the page.
 */
import { createApiClient, type ApiClient, type Problem, type Schemas } from '../../src/client/index.ts';

export type { Schemas, Problem };
export type Backup = Schemas['Backup'];
export type Cluster = Schemas['Cluster'];
export type Policy = Schemas['Policy'];
export type Retention = Schemas['Retention'];

const KEY = 'backups-console.api-key';

export const session = {
  token: (): string | null => sessionStorage.getItem(KEY),
  signIn: (token: string) => sessionStorage.setItem(KEY, token),
  signOut: () => sessionStorage.removeItem(KEY),
};

/** Called when the API answers 401 to a signed-in console (the key was revoked or expired). */
let onUnauthorized: () => void = () => {};
export function whenUnauthorized(fn: () => void) {
  onUnauthorized = fn;
}

export const api: ApiClient = createApiClient({
  baseUrl: window.location.origin,
  token: () => session.token() ?? '',
  fetch: async (req) => {
    const res = await fetch(req);
    if (res.status === 401 && session.token()) onUnauthorized();
    return res;
  },
});

/** A client for a key that is not signed in yet (the sign-in form checks it first). */
export function clientFor(token: string): ApiClient {
  return createApiClient({ baseUrl: window.location.origin, token });
}

/** An API error as the console shows it: the problem's detail, and each field's message by path. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | null,
  ) {
    super(problem?.detail ?? `the service answered ${status}`);
  }
  get fields(): { path: string; message: string }[] {
    return this.problem?.errors ?? [];
  }
}

/** The data of an openapi-fetch answer, or an ApiError carrying its problem+json body. */
export function ok<T>(r: { data?: T; error?: unknown; response: Response }): T {
  if (r.response.ok) return r.data as T;
  const e = r.error as Problem | undefined;
  throw new ApiError(r.response.status, e && typeof e === 'object' && 'status' in e ? e : null);
}

export function message(err: unknown): string {
  if (err instanceof ApiError) {
    const fields = err.fields.map((f) => `${f.path}: ${f.message}`).join('; ');
    return fields ? `${err.message} (${fields})` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * Downloads a component's portable copy through fetch (the key goes in the Authorization header,
 * never in a link) and hands the bytes to the browser as a file.
 */
export async function downloadComponent(clusterId: string, backupId: string, component: string): Promise<{ name: string; bytes: number }> {
  const r = await api.GET('/v1/clusters/{id}/backups/{backup_id}/components/{name}/archive', {
    params: { path: { id: clusterId, backup_id: backupId, name: component } },
    parseAs: 'blob',
  });
  const blob = ok(r) as unknown as Blob;
  const disposition = r.response.headers.get('content-disposition') ?? '';
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? `${component}.tar`;
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { name, bytes: blob.size };
}

/** The retention plan the draft policy would make for a cluster (POST .../retention/preview). */
export async function previewRetention(clusterId: string, policy: PolicyDraft): Promise<Retention> {
  return ok(await api.POST('/v1/clusters/{id}/retention/preview', { params: { path: { id: clusterId } }, body: { policy } }));
}

export type PolicyDraft = {
  timezone: string;
  schedule: { interval: string; count: number }[];
  max_backups: number;
  manual_count: number;
  manual_rate_limit: string | null;
  failed_count: number;
  scheduled_live: boolean;
};
