import { api, ok } from '../api.ts';
import { when } from '../ui/format.ts';
import { ErrorNote, Link, PageTitle, Status, useLoad } from '../ui/kit.tsx';

/** Every cluster: status, its last backup and that backup's result, the next scheduled one. */
export function Clusters() {
  const { data, error } = useLoad(async () => {
    const clusters = ok(await api.GET('/v1/clusters', { params: { query: { limit: 100 } } })).items;
    return Promise.all(
      clusters.map(async (c) => {
        const last = ok(await api.GET('/v1/clusters/{id}/backups', { params: { path: { id: c.id }, query: { limit: 1 } } })).items[0] ?? null;
        return { c, last };
      }),
    );
  }, []);
  return (
    <>
      <PageTitle>Clusters</PageTitle>
      <ErrorNote error={error} />
      {data && data.length === 0 && <p>No clusters yet. Create one with the API or backupctl.</p>}
      {data && data.length > 0 && (
        <table>
          <caption>Clusters of the tenant</caption>
          <thead>
            <tr>
              <th scope="col">Cluster</th>
              <th scope="col">Environment</th>
              <th scope="col">Status</th>
              <th scope="col">Last backup</th>
              <th scope="col">Result</th>
              <th scope="col">Next backup</th>
            </tr>
          </thead>
          <tbody>
            {data.map(({ c, last }) => (
              <tr key={c.id}>
                <td>
                  <Link to={`/clusters/${c.id}`}>{c.name}</Link>
                </td>
                <td>{c.environment}</td>
                <td>
                  <Status value={c.status} />
                </td>
                <td>{last ? when(last.created_at) : 'none'}</td>
                <td>{last ? <Status value={last.status} /> : '—'}</td>
                <td>{c.next_backup_at ? when(c.next_backup_at) : 'not scheduled'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
