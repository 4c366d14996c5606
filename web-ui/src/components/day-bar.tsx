// A time bar: recorded ranges as filled stretches, events as marks; a click picks a time.
import type { TargetedMouseEvent } from 'preact';

export interface Mark {
  at: Date;
  label: string;
  id?: string;
}

export function DayBar(props: {
  from: Date;
  to: Date;
  ranges?: Array<{ start: string; end: string }>;
  marks?: Mark[];
  cursor?: Date | undefined;
  onPick: (at: Date, markId?: string) => void;
}) {
  const span = props.to.getTime() - props.from.getTime();
  const pct = (t: number) => `${Math.min(100, Math.max(0, ((t - props.from.getTime()) / span) * 100))}%`;
  const pick = (e: TargetedMouseEvent<HTMLDivElement>) => {
    const r = e.currentTarget.getBoundingClientRect();
    props.onPick(new Date(props.from.getTime() + ((e.clientX - r.left) / r.width) * span));
  };
  const hours = span <= 2 * 86_400_000 ? [0, 6, 12, 18, 24].map((h) => props.from.getTime() + (h / 24) * span) : [];
  return (
    <div class="day-bar" role="group" aria-label="Timeline">
      <div class="bar" onClick={pick} data-testid="timeline">
        {props.ranges?.map((r) => (
          <span
            class="range"
            style={{
              left: pct(Date.parse(r.start)),
              width: `calc(${pct(Date.parse(r.end))} - ${pct(Date.parse(r.start))})`,
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
