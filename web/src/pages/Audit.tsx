import { api, ok } from '../api.ts';
import { short, when } from '../ui/format.ts';
import { ErrorNote, PageTitle, Status, useLoad } from '../ui/kit.tsx';

/** Who did what through the API (GET /v1/audit-events), newest first. */
export function Audit() {
  const list = useLoad(async () => ok(await api.GET('/v1/audit-events', { params: { query: { limit: 100 } } })).items, []);
  return (
    <>
      <PageTitle>Audit log</PageTitle>
      <ErrorNote error={list.error} />
      {list.data && list.data.length === 0 && <p>No audited actions yet.</p>}
      {list.data && list.data.length > 0 && (
        <table>
          <caption>Audited actions, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Action</th>
              <th scope="col">Actor</th>
              <th scope="col">Target</th>
              <th scope="col">Outcome</th>
              <th scope="col">Request</th>
            </tr>
          </thead>
          <tbody>
            {list.data.map((a) => (
              <tr key={a.id}>
                <td>{when(a.created_at)}</td>
                <td>{a.action}</td>
                <td>{a.actor.key_id ? `${a.actor.type} ${short(a.actor.key_id)}` : a.actor.type}</td>
                <td>{a.target.id ? `${a.target.type ?? ''} ${short(a.target.id)}` : '—'}</td>
                <td>
                  <Status value={a.outcome} /> {a.status_code}
                </td>
                <td>
                  {a.method} <code>{a.path}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
