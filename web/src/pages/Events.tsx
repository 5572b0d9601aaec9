import { useState } from 'preact/hooks';
import { api, EVENT_TYPES, ok, type EventType, type Schemas } from '../api.ts';
import { short, when } from '../ui/format.ts';
import { ErrorNote, Link, PageTitle, useLoad } from '../ui/kit.tsx';


/** The resource an event is about, as `kind id`. */
function subject(e: Schemas['Event']): string {
  for (const kind of ['backup', 'restore', 'cluster', 'webhook'] as const) {
    const r = e.data[kind] as { id?: string } | undefined;
    if (r?.id) return `${kind} ${short(r.id)}`;
  }
  return '—';
}

/** Changes of state of backups, restores and clusters (GET /v1/events), newest first. */
export function Events() {
  const [type, setType] = useState<EventType | ''>('');
  const list = useLoad(async () => ok(await api.GET('/v1/events', { params: { query: { limit: 100, ...(type && { type }) } } })).items, [type], { everyMs: 5000 });
  return (
    <>
      <PageTitle>Events</PageTitle>
      <div class="field inline">
        <label for="events-type">Type</label>
        <select id="events-type" value={type} onChange={(e) => setType(e.currentTarget.value as EventType | '')}>
          <option value="">all</option>
          {EVENT_TYPES.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
      </div>
      <ErrorNote error={list.error} />
      {list.data && list.data.length === 0 && <p>No events.</p>}
      {list.data && list.data.length > 0 && (
        <table class="events">
          <caption>Events, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Type</th>
              <th scope="col">Cluster</th>
              <th scope="col">About</th>
            </tr>
          </thead>
          <tbody>
            {list.data.map((e) => (
              <tr key={e.id}>
                <td>{when(e.occurred_at)}</td>
                <td>
                  <span class={`event event-${e.type.split('.')[1]}`}>{e.type}</span>
                </td>
                <td>{e.cluster_id ? <Link to={`/clusters/${e.cluster_id}`}>{short(e.cluster_id)}</Link> : '—'}</td>
                <td>{subject(e)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
