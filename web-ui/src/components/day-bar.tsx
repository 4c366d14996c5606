// A time bar: recorded ranges as filled stretches, review items as coloured bands under them,
// events as marks; pointing along the bar shows the picture of the item there; a click picks a time.
import type { TargetedMouseEvent } from 'preact';
import { useState } from 'preact/hooks';

export interface Mark {
  at: Date;
  label: string;
  id?: string;
}

export interface Band {
  id: string;
  start: Date;
  end: Date;
  severity: 'alert' | 'detection';
  label: string;
  /** Its picture, shown while pointing at it. */
  picture: string;
}

export function DayBar(props: {
  from: Date;
  to: Date;
  ranges?: Array<{ start: string; end: string }>;
  /** Where the picture moved: a thin line along the top of the bar. */
  motion?: Array<{ start: string; end: string }>;
  marks?: Mark[];
  bands?: Band[];
  cursor?: Date | undefined;
  onPick: (at: Date, markId?: string) => void;
}) {
  const span = props.to.getTime() - props.from.getTime();
  const pct = (t: number) => `${Math.min(100, Math.max(0, ((t - props.from.getTime()) / span) * 100))}%`;
  const pick = (e: TargetedMouseEvent<HTMLDivElement>) => {
    const r = e.currentTarget.getBoundingClientRect();
    props.onPick(new Date(props.from.getTime() + ((e.clientX - r.left) / r.width) * span));
  };
  const [pointed, setPointed] = useState<{ band: Band; left: string }>();
  const point = (e: TargetedMouseEvent<HTMLDivElement>) => {
    const r = e.currentTarget.getBoundingClientRect();
    const t = props.from.getTime() + ((e.clientX - r.left) / r.width) * span;
    // A band of a few seconds is a pixel on a day: the nearest within 1 % of the bar counts.
    const slack = span / 100;
    const band = props.bands?.find((b) => b.start.getTime() - slack <= t && t <= b.end.getTime() + slack);
    setPointed(band ? { band, left: pct(t) } : undefined);
  };
  const hours = span <= 2 * 86_400_000 ? [0, 6, 12, 18, 24].map((h) => props.from.getTime() + (h / 24) * span) : [];
  return (
    <div class="day-bar" role="group" aria-label="Timeline">
      <div
        class="bar"
        onClick={pick}
        onMouseMove={point}
        onMouseLeave={() => setPointed(undefined)}
        data-testid="timeline"
      >
        {props.bands?.map((b) => (
          <span
            class={`band ${b.severity}`}
            data-item={b.id}
            style={{
              left: pct(b.start.getTime()),
              width: `max(3px, calc(${pct(b.end.getTime())} - ${pct(b.start.getTime())}))`,
            }}
          />
        ))}
        {props.ranges?.map((r) => (
          <span
            class="range"
            style={{
              left: pct(Date.parse(r.start)),
              width: `calc(${pct(Date.parse(r.end))} - ${pct(Date.parse(r.start))})`,
            }}
          />
        ))}
        {props.motion?.map((r) => (
          <span
            class="motion"
            style={{
              left: pct(Date.parse(r.start)),
              width: `max(2px, calc(${pct(Date.parse(r.end))} - ${pct(Date.parse(r.start))}))`,
            }}
          />
        ))}
        {props.marks?.map((m) => (
          <button
            class="mark"
            title={`${m.label}, ${m.at.toLocaleTimeString()}`}
            aria-label={`${m.label} at ${m.at.toLocaleTimeString()}`}
            style={{ left: pct(m.at.getTime()) }}
            onClick={(e) => {
              e.stopPropagation();
              props.onPick(m.at, m.id);
            }}
          />
        ))}
        {props.cursor && <span class="cursor" style={{ left: pct(props.cursor.getTime()) }} />}
        {pointed && (
          <span class="scrub" style={{ left: pointed.left }}>
            <img src={pointed.band.picture} alt={pointed.band.label} />
            <small>
              {pointed.band.label}, {pointed.band.start.toLocaleTimeString()}
            </small>
          </span>
        )}
      </div>
      <div class="ticks">
        {hours.map((t) => (
          <span style={{ left: pct(t) }}>
            {new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}
          </span>
        ))}
      </div>
    </div>
  );
}
