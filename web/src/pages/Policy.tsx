import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, message, ok, previewRetention, type Policy as PolicyT, type PolicyDraft, type Retention } from '../api.ts';
import { short, when } from '../ui/format.ts';
import { ErrorNote, PageTitle, useLoad } from '../ui/kit.tsx';
import { Timeline } from '../ui/timeline.tsx';
import { ClusterNav } from './ClusterNav.tsx';

type Errors = Record<string, string>;

const draftOf = (p: PolicyT): PolicyDraft => ({
  timezone: p.timezone,
  schedule: p.schedule.map((e) => ({ ...e })),
  max_backups: p.max_backups,
  manual_count: p.manual_count,
  manual_rate_limit: p.manual_rate_limit,
  failed_count: p.failed_count,
  scheduled_live: p.scheduled_live,
});

/** Field problems of an API answer by field path without the body prefix (`schedule.0.interval`). */
function fieldErrors(err: unknown, prefix: RegExp): Errors | null {
  if (!(err instanceof ApiError) || err.status !== 422) return null;
  return Object.fromEntries(err.fields.map((f) => [f.path.replace(prefix, ''), f.message]));
}

/**
 * Edits the cluster's policy. Every change of the draft is sent to the retention preview: the
 * API checks it with the rules (and messages) of its own 422, and answers what retention would
 * keep and delete; nothing is saved until Save.
 */
export function PolicyEditor(props: { id: string }) {
  const { id } = props;
  const base = useLoad(async () => {
    const cluster = ok(await api.GET('/v1/clusters/{id}', { params: { path: { id } } }));
    const [policy, current] = await Promise.all([
      api.GET('/v1/policies/{id}', { params: { path: { id: cluster.policy_id } } }).then(ok),
      api.GET('/v1/clusters/{id}/retention', { params: { path: { id } } }).then(ok),
    ]);
    return { cluster, policy, current };
  }, [id]);
  const [draft, setDraft] = useState<PolicyDraft | null>(null);
  const [errors, setErrors] = useState<Errors>({});
  const [preview, setPreview] = useState<Retention | null>(null);
  const [checking, setChecking] = useState(false);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [note, setNote] = useState('');

  useEffect(() => {
    if (base.data) setDraft(draftOf(base.data.policy));
  }, [base.data]);

  useEffect(() => {
    if (!draft) return;
    let live = true;
    setChecking(true);
    const t = setTimeout(async () => {
      try {
        const r = await previewRetention(id, draft);
        if (!live) return;
        setErrors({});
        setPreview(r);
      } catch (err) {
        if (!live) return;
        setErrors(fieldErrors(err, /^body\.policy\./) ?? { '': message(err) });
        setPreview(null);
      } finally {
        if (live) setChecking(false);
      }
    }, 250);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [draft, id]);

  if (!base.data || !draft) return <ErrorNote error={base.error} />;
  const { cluster, policy, current } = base.data;
  const set = (patch: Partial<PolicyDraft>) => {
    setNote('');
    setDraft({ ...draft, ...patch });
  };
  const num = (v: string) => (v.trim() === '' ? Number.NaN : Number(v));
  const keptNow = new Set(current.items.filter((i) => i.keep).map((i) => i.backup_id));
  const wouldDelete = preview?.items.filter((i) => !i.keep && keptNow.has(i.backup_id)) ?? [];
  const invalid = Object.keys(errors).length > 0;

  const field = (path: string) => ({
    'aria-invalid': errors[path] ? ('true' as const) : undefined,
    'aria-describedby': errors[path] ? `err-${path.replace(/\./g, '-')}` : undefined,
  });
  const errorOf = (path: string) =>
    errors[path] ? (
      <span class="field-error" id={`err-${path.replace(/\./g, '-')}`}>
        {errors[path]}
      </span>
    ) : null;
  const numberField = (key: 'max_backups' | 'manual_count' | 'failed_count', label: string) => (
    <div class="field">
      <label for={`policy-${key}`}>{label}</label>
      <input id={`policy-${key}`} type="number" inputMode="numeric" value={Number.isNaN(draft[key]) ? '' : draft[key]} onInput={(e) => set({ [key]: num(e.currentTarget.value) })} {...field(key)} />
      {errorOf(key)}
    </div>
  );

  return (
    <>
      <PageTitle>Policy of {cluster.name}</PageTitle>
      <ClusterNav id={id} current="policy" />
      <p>
        Policy <strong>{policy.name}</strong>
        {policy.is_default ? ` (the ${policy.environment} default)` : ''}. A change applies to every cluster that uses this policy; the preview shows this cluster.
      </p>
      <form
        class="policy"
        onSubmit={async (e) => {
          e.preventDefault();
          if (invalid || checking) return;
          setSaveError(null);
          try {
            const saved = ok(await api.PATCH('/v1/policies/{id}', { params: { path: { id: policy.id } }, body: draft }));
            setNote(`Saved ${when(saved.updated_at)}.`);
            base.reload();
          } catch (err) {
            const fe = fieldErrors(err, /^body\./);
            if (fe) setErrors(fe);
            setSaveError(err);
          }
        }}
      >
        <fieldset>
          <legend>Schedule</legend>
          {draft.schedule.length === 0 && <p>No scheduled backups (manual only).</p>}
          {draft.schedule.map((entry, i) => (
            <div class="schedule-row" key={i}>
              <div class="field">
                <label for={`policy-interval-${i}`}>Interval {i + 1}</label>
                <input
                  id={`policy-interval-${i}`}
                  value={entry.interval}
                  onInput={(e) => set({ schedule: draft.schedule.map((x, j) => (j === i ? { ...x, interval: e.currentTarget.value } : x)) })}
                  {...field(`schedule.${i}.interval`)}
                />
                {errorOf(`schedule.${i}.interval`)}
              </div>
              <div class="field">
                <label for={`policy-count-${i}`}>Keep (count) {i + 1}</label>
                <input
                  id={`policy-count-${i}`}
                  type="number"
                  value={Number.isNaN(entry.count) ? '' : entry.count}
                  onInput={(e) => set({ schedule: draft.schedule.map((x, j) => (j === i ? { ...x, count: num(e.currentTarget.value) } : x)) })}
                  {...field(`schedule.${i}.count`)}
                />
                {errorOf(`schedule.${i}.count`)}
              </div>
              <button type="button" aria-label={`Remove interval ${i + 1}`} onClick={() => set({ schedule: draft.schedule.filter((_, j) => j !== i) })}>
                Remove
              </button>
            </div>
          ))}
          <button type="button" onClick={() => set({ schedule: [...draft.schedule, { interval: '1d', count: 7 }] })}>
            Add interval
          </button>
        </fieldset>
        <fieldset>
          <legend>Limits</legend>
          {numberField('max_backups', 'Most backups kept (max_backups)')}
          {numberField('manual_count', 'Manual backups kept (manual_count)')}
          {numberField('failed_count', 'Failed backups kept (failed_count)')}
          <div class="field">
            <label for="policy-rate">At most one manual backup per (manual_rate_limit, empty: no limit)</label>
            <input id="policy-rate" value={draft.manual_rate_limit ?? ''} onInput={(e) => set({ manual_rate_limit: e.currentTarget.value.trim() === '' ? null : e.currentTarget.value })} {...field('manual_rate_limit')} />
            {errorOf('manual_rate_limit')}
          </div>
          <div class="field">
            <label for="policy-timezone">Time zone</label>
            <input id="policy-timezone" value={draft.timezone} onInput={(e) => set({ timezone: e.currentTarget.value })} {...field('timezone')} />
            {errorOf('timezone')}
          </div>
          <div class="check">
            <input id="policy-live" type="checkbox" checked={draft.scheduled_live} onChange={(e) => set({ scheduled_live: e.currentTarget.checked })} />
            <label for="policy-live">Scheduled backups are live (no pause)</label>
          </div>
        </fieldset>
        {errors[''] && (
          <p class="error" role="alert">
            {errors['']}
          </p>
        )}
        <button type="submit" aria-disabled={invalid || checking}>
          Save policy
        </button>
        <p role="status" class="note">
          {checking ? 'Checking…' : invalid ? `${Object.keys(errors).length} problem(s) to fix before saving` : note}
        </p>
        <ErrorNote error={saveError} />
      </form>
      <section aria-labelledby="preview-title" class="panel" aria-live="polite">
        <h2 id="preview-title">Preview of this change</h2>
        {!preview && <p>{invalid ? 'Fix the problems above to see what this policy would keep.' : 'Checking…'}</p>}
        {preview && (
          <>
            {wouldDelete.length === 0 ? (
              <p>Nothing kept today would be deleted.</p>
            ) : (
              <>
                <p>
                  {wouldDelete.length} backup{wouldDelete.length === 1 ? '' : 's'} kept today would be deleted:
                </p>
                <ul class="would-delete">
                  {wouldDelete.map((i) => (
                    <li key={i.backup_id}>
                      <code>{short(i.backup_id)}</code> {i.trigger}, {when(i.created_at)}
                    </li>
                  ))}
                </ul>
              </>
            )}
            {preview.items.length > 0 && <Timeline id="preview-timeline" items={preview.items} title="What the draft policy would keep and delete" />}
          </>
        )}
      </section>
    </>
  );
}
