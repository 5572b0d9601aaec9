import { useState } from 'preact/hooks';
import { api, EVENT_TYPES, ok, type EventType } from '../api.ts';
import { when } from '../ui/format.ts';
import { ErrorNote, PageTitle, Status, useLoad } from '../ui/kit.tsx';


/** The tenant's webhooks (admin keys only): list, create (the secret is shown once), delete. */
export function Webhooks() {
  const list = useLoad(async () => ok(await api.GET('/v1/webhooks', { params: { query: { limit: 100 } } })).items, []);
  const [url, setUrl] = useState('');
  const [description, setDescription] = useState('');
  const [events, setEvents] = useState<Set<EventType>>(new Set(['backup.completed', 'backup.failed']));
  const [error, setError] = useState<unknown>(null);
  const [secret, setSecret] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [note, setNote] = useState('');
  return (
    <>
      <PageTitle>Webhooks</PageTitle>
      <ErrorNote error={list.error} />
      {list.data && list.data.length === 0 && <p>No webhooks.</p>}
      {list.data && list.data.length > 0 && (
        <table>
          <caption>Webhooks</caption>
          <thead>
            <tr>
              <th scope="col">URL</th>
              <th scope="col">Events</th>
              <th scope="col">State</th>
              <th scope="col">Created</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {list.data.map((w) => (
              <tr key={w.id}>
                <td>
                  <code>{w.url}</code>
                  {w.description && <div>{w.description}</div>}
                </td>
                <td>{w.events.join(', ')}</td>
                <td>
                  <Status value={w.enabled ? 'enabled' : 'disabled'} />
                  {w.disabled_reason && <span class="error-inline">{w.disabled_reason}</span>}
                </td>
                <td>{when(w.created_at)}</td>
                <td class="actions">
                  {confirming === w.id ? (
                    <>
                      <button
                        type="button"
                        class="danger"
                        onClick={async () => {
                          setConfirming(null);
                          try {
                            ok(await api.DELETE('/v1/webhooks/{id}', { params: { path: { id: w.id } } }));
                            setNote(`Deleted the webhook to ${w.url}`);
                            list.reload();
                          } catch (err) {
                            setError(err);
                          }
                        }}
                      >
                        Confirm delete of {w.url}
                      </button>
                      <button type="button" onClick={() => setConfirming(null)}>
                        Cancel
                      </button>
                    </>
                  ) : (
                    <button type="button" aria-label={`Delete webhook ${w.url}`} onClick={() => setConfirming(w.id)}>
                      Delete
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p role="status" class="note">
        {note}
      </p>
      <h2>New webhook</h2>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          setSecret(null);
          try {
            const w = ok(await api.POST('/v1/webhooks', { body: { url: url.trim(), events: [...events], ...(description.trim() && { description: description.trim() }) } }));
            setSecret(w.secret);
            setUrl('');
            setDescription('');
            list.reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <div class="field">
          <label for="webhook-url">URL (https)</label>
          <input id="webhook-url" type="url" required value={url} onInput={(e) => setUrl(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="webhook-description">Description (optional)</label>
          <input id="webhook-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </div>
        <fieldset>
          <legend>Events to deliver</legend>
          <div class="checks">
            {EVENT_TYPES.map((t) => (
              <div class="check" key={t}>
                <input
                  type="checkbox"
                  id={`webhook-event-${t}`}
                  checked={events.has(t)}
                  onChange={(e) => {
                    const next = new Set(events);
                    if (e.currentTarget.checked) next.add(t);
                    else next.delete(t);
                    setEvents(next);
                  }}
                />
                <label for={`webhook-event-${t}`}>{t}</label>
              </div>
            ))}
          </div>
        </fieldset>
        <button type="submit">Create webhook</button>
      </form>
      <ErrorNote error={error} />
      {secret && (
        <div class="panel" role="status">
          <p>
            Signing secret, shown once: <code class="secret">{secret}</code>
          </p>
        </div>
      )}
    </>
  );
}
