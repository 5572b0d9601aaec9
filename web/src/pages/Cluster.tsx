import { useState } from 'preact/hooks';
import { api, downloadComponent, ok, type Backup } from '../api.ts';
import { bytes, short, when } from '../ui/format.ts';
import { ErrorNote, Link, PageTitle, Status, useLoad } from '../ui/kit.tsx';
import { ClusterNav } from './ClusterNav.tsx';
import { Files } from './Files.tsx';

const busy = (b: Backup) => b.status === 'queued' || b.status === 'running' || b.verification?.status === 'queued' || b.verification?.status === 'running';

/** One cluster's backups, with live progress while any runs, and what can be done with each. */
export function Cluster(props: { id: string }) {
  const { id } = props;
  const cluster = useLoad(async () => ok(await api.GET('/v1/clusters/{id}', { params: { path: { id } } })), [id]);
  const backups = useLoad(async () => ok(await api.GET('/v1/clusters/{id}/backups', { params: { path: { id }, query: { limit: 50 } } })).items, [id], {
    everyMs: 1000,
    keepPolling: (items) => items.some(busy),
  });
  const [note, setNote] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);

  const act = async (fn: () => Promise<string>) => {
    setError(null);
    try {
      setNote(await fn());
      backups.reload();
    } catch (err) {
      setError(err);
    }
  };
  const c = cluster.data;
  const opened = backups.data?.find((b) => b.id === open) ?? null;
  return (
    <>
      <PageTitle>{c ? `Cluster ${c.name}` : 'Cluster'}</PageTitle>
      <ClusterNav id={id} current="backups" />
      <ErrorNote error={cluster.error ?? backups.error} />
      {c && (
        <dl class="facts">
          <dt>Status</dt>
          <dd>
            <Status value={c.status} />
          </dd>
          <dt>Environment</dt>
          <dd>{c.environment}</dd>
          <dt>Next backup</dt>
          <dd>{c.next_backup_at ? when(c.next_backup_at) : 'not scheduled'}</dd>
          <dt>Components</dt>
          <dd>{c.components.map((x) => `${x.name} (${x.type})`).join(', ')}</dd>
        </dl>
      )}
      <div class="toolbar">
        <button type="button" onClick={() => act(async () => `Backup ${short(ok(await api.POST('/v1/clusters/{id}/backups', { params: { path: { id } }, body: {} })).id)} queued`)}>
          Back up now
        </button>
      </div>
      <p role="status" class="note">
        {note}
      </p>
      <ErrorNote error={error} />
      <h2>Backups</h2>
      {backups.data && backups.data.length === 0 && <p>No backups yet.</p>}
      {backups.data && backups.data.length > 0 && (
        <table class="backups">
          <caption>Backups, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Backup</th>
              <th scope="col">Trigger</th>
              <th scope="col">Status</th>
              <th scope="col">Created</th>
              <th scope="col">Size</th>
              <th scope="col">Stored</th>
              <th scope="col">Verification</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {backups.data.map((b) => (
              <tr key={b.id} data-backup={b.id}>
                <td>
                  <code>{short(b.id)}</code>
                </td>
                <td>{b.trigger}</td>
                <td>
                  <Status value={b.status} />
                  {(b.status === 'running' || b.status === 'queued') && <Progress b={b} />}
                  {b.error && <span class="error-inline">{b.error.message}</span>}
                </td>
                <td>{when(b.created_at)}</td>
                <td>{bytes(b.size_bytes)}</td>
                <td>{bytes(b.stored_bytes)}</td>
                <td>{b.verification ? <Status value={b.verification.status} /> : 'never'}</td>
                <td class="actions">
                  {b.status === 'completed' && (
                    <>
                      <button type="button" aria-expanded={open === b.id} aria-label={`Files of backup ${short(b.id)}`} onClick={() => setOpen(open === b.id ? null : b.id)}>
                        Files
                      </button>
                      <button
                        type="button"
                        aria-label={`Verify backup ${short(b.id)}`}
                        onClick={() => act(async () => (ok(await api.POST('/v1/clusters/{id}/backups/{backup_id}/verify', { params: { path: { id, backup_id: b.id } } })), `Verification of ${short(b.id)} started`))}
                      >
                        Verify
                      </button>
                      <Link to={`/clusters/${id}/backups/${b.id}/restore`} class="button">
                        <span aria-hidden="true">Restore</span>
                        <span class="visually-hidden">Restore backup {short(b.id)}</span>
                      </Link>
                    </>
                  )}
                  {(b.status === 'completed' || b.status === 'failed') &&
                    (confirming === b.id ? (
                      <span class="confirm">
                        <button
                          type="button"
                          class="danger"
                          onClick={() =>
                            act(async () => {
                              setConfirming(null);
                              ok(await api.DELETE('/v1/clusters/{id}/backups/{backup_id}', { params: { path: { id, backup_id: b.id } } }));
                              return `Backup ${short(b.id)} is being deleted`;
                            })
                          }
                        >
                          Confirm delete of {short(b.id)}
                        </button>
                        <button type="button" onClick={() => setConfirming(null)}>
                          Cancel
                        </button>
                      </span>
                    ) : (
                      <button type="button" aria-label={`Delete backup ${short(b.id)}`} onClick={() => setConfirming(b.id)}>
                        Delete
                      </button>
                    ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {opened && c && (
        <section aria-labelledby="files-title" class="panel">
          <h2 id="files-title">Files of backup {short(opened.id)}</h2>
          <h3>Download a component</h3>
          <ul class="downloads">
            {opened.artifacts.map((a) => (
              <li key={a.component}>
                <button
                  type="button"
                  onClick={() =>
                    act(async () => {
                      const d = await downloadComponent(id, opened.id, a.component);
                      return `Downloaded ${d.name} (${bytes(d.bytes)})`;
                    })
                  }
                >
                  Download {a.component}
                </button>{' '}
                {a.type}, {bytes(a.bytes)}
              </li>
            ))}
          </ul>
          <Files clusterId={id} backup={opened} components={c.components.filter((x) => x.type === 'directory').map((x) => x.name)} />
        </section>
      )}
    </>
  );
}

function Progress(props: { b: Backup }) {
  const p = props.b.progress;
  const total = p.bytes_total ?? undefined;
  return (
    <span class="progress">
      <progress max={total} value={total ? p.bytes_done : undefined} aria-label={`Progress of backup ${short(props.b.id)}`} />
      <span>
        {bytes(p.bytes_done)}
        {p.bytes_total !== null ? ` of ${bytes(p.bytes_total)}` : ''}, {p.files_done}
        {p.files_total !== null ? `/${p.files_total}` : ''} files
      </span>
    </span>
  );
}

