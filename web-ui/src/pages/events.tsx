// Events: what the detector found, newest first, filtered by camera, label, zone and time;
// each with its snapshot and box, its clip playable in place, marked reviewed or deleted.
import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, can, formatTime, url } from '../api.ts';
import { useUpdates } from '../updates.ts';
import { Page, Problem, useAction, useLoad } from '../components/ui.tsx';
import { useCameras } from '../cameras.ts';
import { DayBar } from '../components/day-bar.tsx';
import type { StoredEvent } from '../../../services/events/events.schemas.ts';

const LABELS = ['person', 'car', 'bicycle', 'motorcycle', 'dog', 'cat'];

/**
 * The event's thumbnail with its box drawn over it: a neutral placeholder until it has loaded,
 * and a new URL (?v=) whenever the event's picture changes.
 */
export function EventPicture({ event }: { event: StoredEvent }) {
  const [state, setState] = useState<'loading' | 'loaded' | 'failed'>('loading');
  const [x1, y1, x2, y2] = event.box;
  if (!event.hasSnapshot || state === 'failed') return <div class="thumb empty">no picture</div>;
  return (
    <div class={`thumb ${state}`}>
      <img
        src={url(`/events/${event.id}/thumbnail.jpg`, { v: event.snapshotVersion })}
        alt={`${event.label} on ${event.camera}`}
        loading="lazy"
        onLoad={() => setState('loaded')}
        onError={() => setState('failed')}
      />
      <svg viewBox="0 0 1 1" preserveAspectRatio="none" aria-hidden="true">
        <rect x={x1} y={y1} width={x2 - x1} height={y2 - y1} />
      </svg>
    </div>
  );
}

const dayInput = (d: Date) =>
  `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;

export function EventsPage() {
  const { query, route } = useLocation();
  const { data: cameras } = useCameras();
  const filter = {
    camera: query['camera'] ?? '',
    label: query['label'] ?? '',
    zone: query['zone'] ?? '',
    day: query['day'] ?? '',
    reviewed: query['reviewed'] ?? '',
  };
  const from = filter.day ? new Date(`${filter.day}T00:00`) : undefined;
  const to = from ? new Date(from.getTime() + 86_400_000) : undefined;
  const events = useLoad(
    () =>
      api<StoredEvent[]>('/events', {
        query: {
          camera: filter.camera,
          label: filter.label,
          zone: filter.zone,
          reviewed: filter.reviewed,
          from: from?.toISOString(),
          to: to?.toISOString(),
          limit: 200,
        },
      }),
    [filter.camera, filter.label, filter.zone, filter.day, filter.reviewed],
  );
  useUpdates(['event.'], () => void events.reload());
  const [open, setOpen] = useState<string>();

  const set = (key: string, value: string) => {
    const q = new URLSearchParams({ ...filter, [key]: value });
    for (const [k, v] of [...q]) if (!v) q.delete(k);
    route(`/events${q.size ? `?${q}` : ''}`, true);
  };
  const { error: problem, run: act } = useAction(events.reload);
  const list = events.data ?? [];
  const zones = [...new Set((cameras ?? []).flatMap((c) => c.detection.zones.map((z) => z.name)))];

  return (
    <Page title="Events">
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <select aria-label="Camera" value={filter.camera} onChange={(e) => set('camera', e.currentTarget.value)}>
          <option value="">All cameras</option>
          {cameras?.map((c) => (
            <option value={c.id}>{c.name}</option>
          ))}
        </select>
        <select aria-label="Label" value={filter.label} onChange={(e) => set('label', e.currentTarget.value)}>
          <option value="">All objects</option>
          {LABELS.map((l) => (
            <option value={l}>{l}</option>
          ))}
        </select>
        <select aria-label="Zone" value={filter.zone} onChange={(e) => set('zone', e.currentTarget.value)}>
          <option value="">All zones</option>
          {zones.map((z) => (
            <option value={z}>{z}</option>
          ))}
        </select>
        <input
          aria-label="Day"
          type="date"
          value={filter.day}
          max={dayInput(new Date())}
          onChange={(e) => set('day', e.currentTarget.value)}
        />
        <select aria-label="Reviewed" value={filter.reviewed} onChange={(e) => set('reviewed', e.currentTarget.value)}>
          <option value="">Reviewed or not</option>
          <option value="false">Not reviewed</option>
          <option value="true">Reviewed</option>
        </select>
      </form>
      <DayBar
        from={from ?? new Date(Date.now() - 86_400_000)}
        to={to ?? new Date()}
        marks={list.map((e) => ({ at: new Date(e.start), label: `${e.label} on ${e.camera}`, id: e.id }))}
        onPick={(at, id) => id && setOpen(id)}
      />
      <Problem error={events.error ?? problem} />
      {events.data && list.length === 0 && (
        <p>No events{filter.camera || filter.label || filter.zone || filter.day ? ' match these filters' : ' yet'}.</p>
      )}
      <ul class="events">
        {list.map((e) => (
          <li key={e.id} class={e.reviewed ? 'event reviewed' : 'event'} data-event={e.id}>
            <button
              class="event-head"
              onClick={() => setOpen(open === e.id ? undefined : e.id)}
              aria-expanded={open === e.id}
            >
              <EventPicture event={e} />
              <span class="event-text">
                <strong>{e.label}</strong> on {cameras?.find((c) => c.id === e.camera)?.name ?? e.camera} ·{' '}
                {Math.round(e.topScore * 100)}%
                <small>
                  {formatTime(e.start)}
                  {e.end ? '' : ' · still there'}
                  {e.zones.length ? ` · ${e.zones.join(', ')}` : ''}
                </small>
              </span>
            </button>
            {open === e.id && (
              <div class="event-body">
                {e.end ? (
                  <video class="clip" controls autoplay muted playsInline src={url(`/events/${e.id}/clip.mp4`)} />
                ) : (
                  <p>The clip is ready when the event ends.</p>
                )}
                {can('events.review') && (
                  <p class="buttons">
                    {!e.reviewed && (
                      <button
                        onClick={() =>
                          act(() => api(`/events/${e.id}/review`, { method: 'POST', body: { reviewed: true } }))
                        }
                      >
                        Mark reviewed
                      </button>
                    )}
                    <button
                      class="danger"
                      onClick={() =>
                        confirm('Delete this event and its picture? The recordings stay.') &&
                        act(() => api(`/events/${e.id}`, { method: 'DELETE' }))
                      }
                    >
                      Delete
                    </button>
                  </p>
                )}
              </div>
            )}
          </li>
        ))}
      </ul>
    </Page>
  );
}
