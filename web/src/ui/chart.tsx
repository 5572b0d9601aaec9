/**
 * A line chart of two series over time (stored and logical bytes), in SVG; the table under it
 * holds the same numbers. No chart library: two polylines, two axes, a legend.
 */
import { bytes, when } from './format.ts';

export interface Point {
  at: string;
  logical: number;
  stored: number;
}

const W = 720;
const H = 240;
const L = 80;
const R = 16;
const T = 16;
const B = 36;

export function UsageChart(props: { points: Point[]; id: string }) {
  const pts = props.points;
  if (pts.length === 0) return <p>No completed backups yet.</p>;
  const t0 = Date.parse(pts[0]!.at);
  const t1 = Date.parse(pts[pts.length - 1]!.at);
  const top = Math.max(1, ...pts.map((p) => Math.max(p.logical, p.stored)));
  const x = (at: string) => (t1 === t0 ? (L + W - R) / 2 : L + ((Date.parse(at) - t0) / (t1 - t0)) * (W - L - R));
  const y = (v: number) => T + (1 - v / top) * (H - T - B);
  const line = (k: 'logical' | 'stored') => pts.map((p) => `${x(p.at).toFixed(1)},${y(p[k]).toFixed(1)}`).join(' ');
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby={`${props.id}-title`} class="chart-svg">
        <title id={`${props.id}-title`}>{`Stored bytes against logical bytes over time: now ${bytes(pts[pts.length - 1]!.stored)} stored for ${bytes(pts[pts.length - 1]!.logical)} logical`}</title>
        <line x1={L} x2={L} y1={T} y2={H - B} class="axis" />
        <line x1={L} x2={W - R} y1={H - B} y2={H - B} class="axis" />
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1={L - 4} x2={W - R} y1={y(top * f)} y2={y(top * f)} class="grid" />
            <text x={L - 8} y={y(top * f) + 4} class="tick end">
              {bytes(Math.round(top * f))}
            </text>
          </g>
        ))}
        <text x={L} y={H - 12} class="tick">
          {when(pts[0]!.at)}
        </text>
        <text x={W - R} y={H - 12} class="tick end">
          {when(pts[pts.length - 1]!.at)}
        </text>
        <polyline points={line('logical')} class="series series-logical" />
        <polyline points={line('stored')} class="series series-stored" />
        {pts.map((p, i) => (
          <g key={i}>
            <circle cx={x(p.at)} cy={y(p.logical)} r={3} class="dot series-logical" />
            <circle cx={x(p.at)} cy={y(p.stored)} r={3} class="dot series-stored" />
          </g>
        ))}
      </svg>
      <figcaption>
        <ul class="legend">
          <li>
            <span class="swatch series-logical" aria-hidden="true" />
            logical bytes (what the backups hold)
          </li>
          <li>
            <span class="swatch series-stored" aria-hidden="true" />
            stored bytes (after deduplication and compression)
          </li>
        </ul>
      </figcaption>
    </figure>
  );
}
