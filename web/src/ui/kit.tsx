/** Small shared pieces: links through the router, loading/error states, polling. */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { message } from '../api.ts';
import { href, navigate } from '../router.ts';

export function Link(props: { to: string; children: ComponentChildren; class?: string; 'aria-current'?: 'page' | undefined }) {
  return (
    <a
      href={href(props.to)}
      class={props.class}
      aria-current={props['aria-current']}
      onClick={(e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(props.to);
      }}
    >
      {props.children}
    </a>
  );
}

/** The page's heading; focused when the page opens, so keyboard and screen reader users start there. */
export function PageTitle(props: { children: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <h1 tabIndex={-1} ref={ref}>
      {props.children}
    </h1>
  );
}

export function ErrorNote(props: { error: unknown }) {
  if (!props.error) return null;
  return (
    <p class="error" role="alert">
      {message(props.error)}
    </p>
  );
}

export function Status(props: { value: string }) {
  return <span class={`status status-${props.value}`}>{props.value}</span>;
}

/**
 * Loads `fn` now and whenever `deps` change; with `everyMs`, again on that period while
 * `keepPolling(data)` says so (live progress).
 */
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[], opts: { everyMs?: number; keepPolling?: (d: T) => boolean } = {}) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const d = await fn();
        if (!live) return;
        setData(d);
        setError(null);
        if (opts.everyMs && (!opts.keepPolling || opts.keepPolling(d))) timer = setTimeout(run, opts.everyMs);
      } catch (err) {
        if (live) setError(err);
      }
    };
    void run();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [...deps, tick]);
  return { data, error, reload };
}
