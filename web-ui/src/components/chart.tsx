// A small line chart of one figure over time (SVG, no library): the System page's last day.
export function LineChart(props: {
  label: string;
  values: Array<number | null>;
  /** The top of the scale; the largest value when larger. */
  max?: number;
  format: (v: number) => string;
  /** Said after the newest value. */
  note?: string;
}) {
  const points = props.values.map((v, i) => [i, v] as const).filter((p): p is [number, number] => p[1] !== null);
  const top = Math.max(props.max ?? 0, ...points.map(([, v]) => v), 1e-9);
  const last = points.at(-1)?.[1];
  const [w, h] = [300, 48];
  const x = (i: number) => (props.values.length > 1 ? (i / (props.values.length - 1)) * w : w);
  const y = (v: number) => h - (v / top) * h;
  return (
    <figure class="chart" data-label={props.label}>
      <svg viewBox={`0 0 ${w} ${h}`} preserveAspectRatio="none" role="img" aria-label={`${props.label} over time`}>
        <polyline points={points.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ')} />
      </svg>
      <figcaption>
        {props.label}: <strong>{last === undefined ? '–' : props.format(last)}</strong>
        {props.note && ` · ${props.note}`}
        {points.length > 1 && <span class="muted"> (most {props.format(Math.max(...points.map(([, v]) => v)))})</span>}
      </figcaption>
    </figure>
  );
}
