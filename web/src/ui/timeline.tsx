/**
 * The retention timeline: every backup a mark on a time axis, coloured by the rule that keeps it
 * (the first of its reasons), or marked for deletion. Drawn as SVG; the table beside it carries
 * the same facts for screen readers and keyboard users.
 */
import type { Retention } from '../api.ts';
import { short, when } from './format.ts';

type Item = Retention['items'][number];

export const RULES = [
  { key: 'schedule', label: 'kept by a schedule bucket (e.g. 1d x 7)' },
  { key: 'manual', label: 'kept by manual_count' },
  { key: 'newest', label: 'kept as the newest' },
  { key: 'inuse', label: 'kept: a restore is reading it' },
  { key: 'failed', label: 'kept by failed_count' },
  { key: 'progress', label: 'in progress' },
  { key: 'delete', label: 'would be deleted' },
  { key: 'deleting', label: 'being deleted' },
] as const;
export type RuleKey = (typeof RULES)[number]['key'];

export function ruleOf(item: Pick<Item, 'keep' | 'reasons'>): RuleKey {
  if (!item.keep) return item.reasons.includes('being deleted') ? 'deleting' : 'delete';
  const r = item.reasons[0] ?? '';
  if (/^\d+[hdwMy] x \d+$/.test(r)) return 'schedule';
  if (r === 'manual_count') return 'manual';
  if (r === 'newest') return 'newest';
  if (r === 'in use') return 'inuse';
  if (r === 'failed_count') return 'failed';
  if (r === 'in progress') return 'progress';
  return 'schedule';
}

const W = 720;
const H = 90;
const PAD = 24;

export function Timeline(props: { items: Item[]; title: string; id: string }) {
  const { items } = props;
  const times = items.map((i) => Date.parse(i.created_at));
  const min = Math.min(...times);
  const max = Math.max(...times);
  const x = (t: number) => (max === min ? W / 2 : PAD + ((t - min) / (max - min)) * (W - 2 * PAD));
  const used = new Set(items.map(ruleOf));
  return (
    <figure class="timeline">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby={`${props.id}-title`} class="timeline-svg">
        <title id={`${props.id}-title`}>{props.title}</title>
        <line x1={PAD} x2={W - PAD} y1={H / 2} y2={H / 2} class="axis" />
        {items.map((it, i) => {
          const rule = ruleOf(it);
          const cx = x(times[i]!);
          // Stagger marks of one instant so none hides another.
          const cy = H / 2 + ((i % 3) - 1) * 14;
          return rule === 'delete' || rule === 'deleting' ? (
            <g class={`mark rule-${rule}`} key={it.backup_id}>
              <title>{`${short(it.backup_id)} ${when(it.created_at)}: ${rule === 'delete' ? 'would be deleted' : 'being deleted'}`}</title>
              <path d={`M${cx - 6} ${cy - 6} L${cx + 6} ${cy + 6} M${cx + 6} ${cy - 6} L${cx - 6} ${cy + 6}`} />
            </g>
          ) : (
            <circle class={`mark rule-${rule}`} cx={cx} cy={cy} r={7} key={it.backup_id}>
              <title>{`${short(it.backup_id)} ${when(it.created_at)}: kept (${it.reasons.join(', ')})`}</title>
            </circle>
          );
        })}
        {items.length > 0 && (
          <>
            <text x={PAD} y={H - 4} class="tick">
              {when(new Date(min).toISOString())}
            </text>
            <text x={W - PAD} y={H - 4} class="tick end">
              {when(new Date(max).toISOString())}
            </text>
          </>
        )}
      </svg>
      <figcaption>
        <ul class="legend">
          {RULES.filter((r) => used.has(r.key)).map((r) => (
            <li key={r.key}>
              <span class={`swatch rule-${r.key}`} aria-hidden="true" />
              {r.label}
            </li>
          ))}
        </ul>
      </figcaption>
    </figure>
  );
}

export function RetentionTable(props: { items: Item[]; caption: string }) {
  return (
    <table>
      <caption>{props.caption}</caption>
      <thead>
        <tr>
          <th scope="col">Backup</th>
          <th scope="col">Created</th>
          <th scope="col">Trigger</th>
          <th scope="col">Status</th>
          <th scope="col">Retention</th>
        </tr>
      </thead>
      <tbody>
        {props.items.map((it) => (
          <tr key={it.backup_id} class={it.keep ? '' : 'row-delete'}>
            <td>
              <code>{short(it.backup_id)}</code>
            </td>
            <td>{when(it.created_at)}</td>
            <td>{it.trigger}</td>
            <td>{it.status}</td>
            <td>
              <span class={`swatch rule-${ruleOf(it)}`} aria-hidden="true" />
              {it.keep ? `kept: ${it.reasons.join(', ')}` : it.reasons.includes('being deleted') ? 'being deleted' : 'would be deleted'}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
