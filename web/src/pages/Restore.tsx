import { useState } from 'preact/hooks';
import { api, ok } from '../api.ts';
import { short, when } from '../ui/format.ts';
import { ErrorNote, Link, PageTitle, Status, useLoad } from '../ui/kit.tsx';

/**
 * Restores a backup: into its own cluster (in place) or another cluster of the tenant, all
 * components or a subset. The cluster overwritten must be named by typing its name; until the
 * text matches, the button does nothing.
 */
export function Restore(props: { id: string; backupId: string }) {
  const { id, backupId } = props;
  const data = useLoad(async () => {
    const [backup, clusters] = await Promise.all([
      api.GET('/v1/clusters/{id}/backups/{backup_id}', { params: { path: { id, backup_id: backupId } } }).then(ok),
      api.GET('/v1/clusters', { params: { query: { limit: 100 } } }).then(ok),
    ]);
    return { backup, clusters: clusters.items };
  }, [id, backupId]);
  const [target, setTarget] = useState(id);
  const [chosen, setChosen] = useState<Set<string> | null>(null);
  const [typed, setTyped] = useState('');
  const [hint, setHint] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [restoreId, setRestoreId] = useState<string | null>(null);
  // One confirmation, one restore: a second submit while the first is being sent does nothing.
  const [busy, setBusy] = useState(false);
  const restore = useLoad(
    async () => (restoreId ? ok(await api.GET('/v1/clusters/{id}/restores/{restore_id}', { params: { path: { id: target, restore_id: restoreId } } })) : null),
    [restoreId],
    { everyMs: 1000, keepPolling: (r) => r !== null && (r.status === 'queued' || r.status === 'running') },
  );

  if (!data.data) return <ErrorNote error={data.error} />;
  const { backup, clusters } = data.data;
  const source = clusters.find((c) => c.id === id);
  const targetCluster = clusters.find((c) => c.id === target);
  const components = backup.artifacts.map((a) => a.component);
  const selected = chosen ?? new Set(components);
  const inPlace = target === id;
  const matches = !!targetCluster && typed === targetCluster.name;

  return (
    <>
      <PageTitle>Restore backup {short(backup.id)}</PageTitle>
      <p>
        Backup of <Link to={`/clusters/${id}`}>{source?.name ?? 'the cluster'}</Link>, taken {when(backup.created_at)}.
      </p>
      <form
        class="restore"
        onSubmit={async (e) => {
          e.preventDefault();
          if (busy) return;
          if (!matches) {
            setHint(`Type ${targetCluster?.name ?? 'the cluster name'} exactly to restore.`);
            return;
          }
          if (selected.size === 0) {
            setHint('Choose at least one component.');
            return;
          }
          setHint('');
          setError(null);
          setBusy(true);
          try {
            const all = selected.size === components.length;
            const r = ok(
              await api.POST('/v1/clusters/{id}/backups/{backup_id}/restore', {
                params: { path: { id, backup_id: backupId } },
                body: { ...(!inPlace && { target_cluster_id: target }), ...(!all && { components: [...selected] }) },
              }),
            );
            setRestoreId(r.id);
            setTyped(''); // another restore needs the name typed again
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <fieldset>
          <legend>Where to</legend>
          <label for="restore-target">Target cluster</label>
          <select
            id="restore-target"
            value={target}
            onChange={(e) => {
              setTarget(e.currentTarget.value);
              setTyped('');
            }}
          >
            {clusters.map((c) => (
              <option key={c.id} value={c.id}>
                {c.id === id ? `${c.name} (in place)` : c.name}
              </option>
            ))}
          </select>
        </fieldset>
        <fieldset>
          <legend>Components</legend>
          {components.map((n) => (
            <div key={n} class="check">
              <input
                type="checkbox"
                id={`restore-component-${n}`}
                checked={selected.has(n)}
                onChange={(e) => {
                  const next = new Set(selected);
                  if (e.currentTarget.checked) next.add(n);
                  else next.delete(n);
                  setChosen(next);
                }}
              />
              <label for={`restore-component-${n}`}>{n}</label>
            </div>
          ))}
        </fieldset>
        <div class="warning">
          <p id="restore-warning">
            {inPlace ? 'In place: ' : ''}This replaces the data of {selected.size === components.length ? 'every component' : `${[...selected].join(', ') || 'no component'}`} of cluster{' '}
            <strong>{targetCluster?.name}</strong> with the backup's.
          </p>
          <label for="restore-confirm">Type the cluster name ({targetCluster?.name}) to confirm</label>
          <input id="restore-confirm" autoComplete="off" spellcheck={false} value={typed} onInput={(e) => setTyped(e.currentTarget.value)} aria-describedby="restore-warning" />
        </div>
        <button type="submit" class="danger" aria-disabled={!matches}>
          Restore into {targetCluster?.name}
        </button>
        <p role="status" class="note">
          {hint}
        </p>
      </form>
      <ErrorNote error={error} />
      {restore.data && (
        <section aria-labelledby="restore-status-title" class="panel">
          <h2 id="restore-status-title">Restore {short(restore.data.id)}</h2>
          <p>
            Status: <Status value={restore.data.status} />
            {restore.data.error && <span class="error-inline">{restore.data.error.message}</span>}
          </p>
          <p>Components: {restore.data.components.join(', ')}</p>
        </section>
      )}
    </>
  );
}
