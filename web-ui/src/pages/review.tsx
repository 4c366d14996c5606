// Review: each camera's activity as items, alerts first (the labels and zones the household
// cares about) and detections apart; a preview plays on hover or tap; items are marked reviewed
// one by one or all up to now.
import { useRef, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, can, formatTime, url } from '../api.ts';
import { useUpdates } from '../updates.ts';
import { Page, Problem, useAction, useLoad } from '../components/ui.tsx';
import { useCameras } from '../cameras.ts';
import type { ReviewItem } from '../../../services/events/events.schemas.ts';

const SEVERITIES = [
  ['alert', 'Alerts'],
  ['detection', 'Detections'],
] as const;

const seconds = (item: ReviewItem) =>
  Math.max(1, Math.round(((item.end ? Date.parse(item.end) : Date.now()) - Date.parse(item.start)) / 1000));

/** The item's picture (its surest object's thumbnail); its preview in its place while pointed at or tapped. */
function ItemPicture({ item, playing }: { item: ReviewItem; playing: boolean }) {
  const [state, setState] = useState<'loading' | 'loaded' | 'failed'>('loading');
  return (
    <div class={`thumb ${state}`}>
      {state === 'failed' ? (
        <span class="no-picture">no picture</span>
      ) : (
        <img
          src={url(`/events/${item.thumbnailEvent}/thumbnail.jpg`)}
          alt={`${item.labels.join(', ')} on ${item.camera}`}
          loading="lazy"
          onLoad={() => setState('loaded')}
          onError={() => setState('failed')}
        />
      )}
      {playing && item.hasPreview && (
        <video class="preview" src={url(`/review/${item.id}/preview.mp4`)} autoplay muted loop playsInline />
      )}
    </div>
  );
}

export function ReviewPage() {
  const { query, route } = useLocation();
  const { data: cameras } = useCameras();
  const severity = query['severity'] === 'detection' ? 'detection' : 'alert';
  const camera = query['camera'] ?? '';
  const showReviewed = query['all'] === '1';
  const items = useLoad(
    () =>
      api<ReviewItem[]>('/review', {
        query: { severity, camera, reviewed: showReviewed ? undefined : 'false', limit: 200 },
      }),
    [severity, camera, showReviewed],
  );
  useUpdates(['review.'], () => void items.reload());
  const [playing, setPlaying] = useState<string>();
  const { error: problem, run: act } = useAction(items.reload);
  const set = (changes: Record<string, string>) => {
    const q = new URLSearchParams({ severity, camera, all: showReviewed ? '1' : '', ...changes });
    for (const [k, v] of [...q]) if (!v) q.delete(k);
    route(`/review?${q}`, true);
  };
  // While an item's preview plays, the list keeps its order: a new alert would otherwise push the
  // pointed-at item down and play another. New items show once the pointer leaves.
  const frozen = useRef<string[] | undefined>(undefined);
  const latest = items.data ?? [];
  if (!playing) frozen.current = undefined;
  else frozen.current ??= latest.map((i) => i.id);
  const byId = new Map(latest.map((i) => [i.id, i]));
  const list = frozen.current ? frozen.current.flatMap((id) => byId.get(id) ?? []) : latest;
  const nameOf = (id: string) => cameras?.find((c) => c.id === id)?.name ?? id;

  return (
    <Page title="Review">
      <nav class="tabs" aria-label="Severity">
        {SEVERITIES.map(([value, label]) => (
          <button
            class={severity === value ? 'active' : ''}
            aria-pressed={severity === value}
            onClick={() => set({ severity: value })}
          >
            {label}
          </button>
        ))}
      </nav>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <select aria-label="Camera" value={camera} onChange={(e) => set({ camera: e.currentTarget.value })}>
          <option value="">All cameras</option>
          {cameras?.map((c) => (
            <option value={c.id}>{c.name}</option>
          ))}
        </select>
        <label>
          <input
            type="checkbox"
            checked={showReviewed}
            onChange={(e) => set({ all: e.currentTarget.checked ? '1' : '' })}
          />{' '}
          Show reviewed
        </label>
        {can('events.review') && list.some((i) => !i.reviewed) && (
          <button
            type="button"
            onClick={() =>
              act(() =>
                api('/review/reviewed', {
                  method: 'POST',
                  body: { before: new Date().toISOString(), severity, ...(camera ? { camera } : {}) },
                }),
              )
            }
          >
            Mark all reviewed
          </button>
        )}
      </form>
      <Problem error={items.error ?? problem} />
      {items.data && list.length === 0 && (
        <p>{severity === 'alert' ? 'No alerts' : 'No detections'} to review. All caught up.</p>
      )}
      <ul class="review-items">
        {list.map((item) => (
          <li
            key={item.id}
            class={item.reviewed ? 'review-item reviewed' : 'review-item'}
            data-item={item.id}
            onMouseEnter={() => setPlaying(item.id)}
            onMouseLeave={() => setPlaying(undefined)}
          >
            <button
              class="event-head"
              onClick={() => setPlaying(playing === item.id ? undefined : item.id)}
              aria-label={`Play the preview of ${item.labels.join(', ')} on ${nameOf(item.camera)}`}
            >
              <ItemPicture item={item} playing={playing === item.id} />
              <span class="event-text">
                <strong>{item.labels.join(', ')}</strong> on {nameOf(item.camera)}
                <small>
                  {formatTime(item.start)} · {item.end ? `${seconds(item)} s` : 'going on'} · {item.objects.length}{' '}
                  {item.objects.length === 1 ? 'object' : 'objects'}
                  {item.zones.length ? ` · ${item.zones.join(', ')}` : ''}
                </small>
              </span>
            </button>
            <p class="buttons">
              <a href={`/recordings?camera=${item.camera}&at=${encodeURIComponent(item.start)}`}>Recordings</a>
              {can('events.review') && !item.reviewed && (
                <button
                  onClick={() => act(() => api('/review/reviewed', { method: 'POST', body: { ids: [item.id] } }))}
                >
                  Mark reviewed
                </button>
              )}
            </p>
          </li>
        ))}
      </ul>
    </Page>
  );
}
