/**
 * A small router over the History API: the console's pages are paths under /console/ (the
 * server answers index.html for every one of them). Nothing secret ever goes into a path.
 */
import { useEffect, useState } from 'preact/hooks';

export const BASE = '/console';

export function href(path: string): string {
  return `${BASE}${path === '/' ? '/' : path}`;
}

export function navigate(path: string) {
  history.pushState(null, '', href(path));
  dispatchEvent(new PopStateEvent('popstate'));
}

/** The current path, relative to /console, e.g. `/clusters/<id>`. */
export function usePath(): string {
  const read = () => location.pathname.replace(/^\/console/, '') || '/';
  const [path, setPath] = useState(read);
  useEffect(() => {
    const on = () => setPath(read());
    addEventListener('popstate', on);
    return () => removeEventListener('popstate', on);
  }, []);
  return path;
}

/** Named segments of `pattern` (`/clusters/:id`) in `path`, or null when it does not match. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split('/');
  const s = path.replace(/\/$/, '').split('/');
  if (p.length !== s.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i]!.startsWith(':')) {
      try {
        out[p[i]!.slice(1)] = decodeURIComponent(s[i]!);
      } catch {
        return null; // a malformed escape (%E0) names nothing: the "not found" page, not a blank console
      }
    } else if (p[i] !== s[i]) return null;
  }
  return out;
}
