import { api, ok } from '../api.ts';
import { UsageChart, type Point } from '../ui/chart.tsx';
import { bytes } from '../ui/format.ts';
import { ErrorNote, PageTitle, useLoad } from '../ui/kit.tsx';

/**
 * Storage: the totals of GET /v1/usage, and how they grew. The history is built from the
 * completed backups the tenant still has: each adds its logical size and the bytes it stored
 * (after deduplication and compression), in the order they completed; the last point is the
 * service's own figure of today.
 */
export function Usage() {
  const data = useLoad(async () => {
    const usage = ok(await api.GET('/v1/usage'));
    const clusters = ok(await api.GET('/v1/clusters', { params: { query: { limit: 100 } } })).items;
    const done = (
      await Promise.all(clusters.map(async (c) => ok(await api.GET('/v1/clusters/{id}/backups', { params: { path: { id: c.id }, query: { status: 'completed', limit: 100 } } })).items))
    )
      .flat()
      .filter((b) => b.completed_at)
      .sort((a, b) => a.completed_at!.localeCompare(b.completed_at!));
    const points: Point[] = [];
    let logical = 0;
    let stored = 0;
    for (const b of done) {
      logical += b.size_bytes ?? 0;
      stored += b.stored_bytes ?? 0;
      points.push({ at: b.completed_at!, logical, stored });
    }
    if (points.length > 0) points.push({ at: new Date().toISOString(), logical: usage.logical_bytes, stored: usage.stored_bytes });
    return { usage, points };
  }, []);
  const d = data.data;
  return (
    <>
      <PageTitle>Usage</PageTitle>
      <ErrorNote error={data.error} />
      {d && (
        <>
          <dl class="facts">
            <dt>Logical bytes</dt>
            <dd>{bytes(d.usage.logical_bytes)}</dd>
            <dt>Stored bytes</dt>
            <dd>{bytes(d.usage.stored_bytes)}</dd>
            <dt>Ratio</dt>
            <dd>{d.usage.logical_bytes > 0 ? `${((d.usage.stored_bytes / d.usage.logical_bytes) * 100).toFixed(0)}% of logical` : '—'}</dd>
          </dl>
          <h2>Over time</h2>
          <UsageChart id="usage-chart" points={d.points} />
          <p class="note-text">
            Built from the completed backups kept today, in the order they completed: each adds its logical size and the bytes it stored when it ran. The last point is the service's
            total now, which also counts data that pruned backups stored and later backups still share.
          </p>
          <h2>By cluster</h2>
          <table>
            <caption>Storage by cluster</caption>
            <thead>
              <tr>
                <th scope="col">Cluster</th>
                <th scope="col">Logical</th>
                <th scope="col">Stored</th>
              </tr>
            </thead>
            <tbody>
              {d.usage.clusters.map((c) => (
                <tr key={c.cluster_id}>
                  <td>{c.name}</td>
                  <td>{bytes(c.logical_bytes)}</td>
                  <td>{bytes(c.stored_bytes)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </>
  );
}
