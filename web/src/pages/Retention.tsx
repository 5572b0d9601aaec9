import { api, ok } from '../api.ts';
import { ErrorNote, PageTitle, useLoad } from '../ui/kit.tsx';
import { RetentionTable, Timeline } from '../ui/timeline.tsx';
import { ClusterNav } from './ClusterNav.tsx';

/** What retention keeps of one cluster, and which rule keeps each backup, as a timeline. */
export function Retention(props: { id: string }) {
  const { id } = props;
  const data = useLoad(async () => {
    const [cluster, retention] = await Promise.all([
      api.GET('/v1/clusters/{id}', { params: { path: { id } } }).then(ok),
      api.GET('/v1/clusters/{id}/retention', { params: { path: { id } } }).then(ok),
    ]);
    return { cluster, retention };
  }, [id]);
  const d = data.data;
  const pending = d?.retention.items.filter((i) => !i.keep) ?? [];
  return (
    <>
      <PageTitle>{d ? `Retention of ${d.cluster.name}` : 'Retention'}</PageTitle>
      <ClusterNav id={id} current="retention" />
      <ErrorNote error={data.error} />
      {d && d.retention.items.length === 0 && <p>No backups yet.</p>}
      {d && d.retention.items.length > 0 && (
        <>
          <p>
            {d.retention.items.length - pending.length} kept, {pending.length} {pending.length === 1 ? 'deletion' : 'deletions'} pending.
          </p>
          <Timeline id="retention-timeline" items={d.retention.items} title={`Retention timeline of ${d.cluster.name}: each backup coloured by the rule that keeps it`} />
          <RetentionTable items={d.retention.items} caption="Every backup and the rules that keep it" />
        </>
      )}
    </>
  );
}
