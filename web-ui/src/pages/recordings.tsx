// Recordings: a camera's day on a timeline (recorded ranges, events), played from any point
// (HLS of the recorded segments: hls.js, loaded only here), and a range exported as one MP4.
import { useEffect, useRef, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, ApiError, formatBytes, request, url } from '../api.ts';
import { Page, Problem, useLoad } from '../components/ui.tsx';
import { DayBar } from '../components/day-bar.tsx';
import { useCameras } from '../cameras.ts';
import type { ReviewItem, StoredEvent } from '../../../services/events/events.schemas.ts';

interface Timeline {
  ranges: Array<{ start: string; end: string }>;
  gaps: Array<{ start: string; end: string }>;
  motion: Array<{ start: string; end: string }>;
}

const dayOf = (d: Date) =>
  `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
const today = () => dayOf(new Date());
const timeInput = (d: Date) => d.toTimeString().slice(0, 8);

/** Plays an HLS playlist: natively where the browser can (Safari), else with hls.js. */
function Player({ src }: { src: string }) {
  const video = useRef<HTMLVideoElement>(null);
  const [problem, setProblem] = useState<string>();
  useEffect(() => {
    const v = video.current!;
    setProblem(undefined);
    let hls: { destroy(): void } | undefined;
    let gone = false;
    void import('hls.js/light').then(({ default: Hls }) => {
      if (gone) return;
      // Native HLS only where there is no MediaSource (Safari on iPhone).
      if (!Hls.isSupported()) {
        v.src = src;
        return;
      }
      const h = new Hls({ maxBufferLength: 30 });
      hls = h;
      h.on(Hls.Events.ERROR, (_e, data) => {
        if (!data.fatal) return;
        setProblem(
          data.response?.code === 404
            ? 'Nothing was recorded there.'
            : `This recording cannot play here (${data.details}).`,
        );
      });
      h.loadSource(src);
      h.attachMedia(v);
      h.on(Hls.Events.MANIFEST_PARSED, () => void v.play().catch(() => undefined));
    });
    return () => {
      gone = true;
      hls?.destroy();
      v.removeAttribute('src');
    };
  }, [src]);
  return (
    <>
      <video ref={video} class="playback" controls muted autoplay playsInline data-src={src} />
      {problem && <p class="problem">{problem}</p>}
    </>
  );
}

function Export({ camera, from, to }: { camera: string; from: Date; to: Date }) {
  const [progress, setProgress] = useState<string>();
  const [file, setFile] = useState<{ href: string; name: string; bytes: number }>();
  const [error, setError] = useState<Error>();
  const run = async () => {
    setError(undefined);
    setFile(undefined);
    setProgress('Preparing the clip on the box…');
    try {
      const res = await request(`/cameras/${camera}/clip.mp4`, {
        query: { from: from.toISOString(), to: to.toISOString() },
      });
      const total = Number(res.headers.get('content-length') ?? 0);
      const reader = res.body!.getReader();
      const parts: Uint8Array[] = [];
      let got = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
        setProgress(
          total
            ? `Downloading ${Math.round((got / total) * 100)}% (${formatBytes(got)})`
            : `Downloading ${formatBytes(got)}`,
        );
      }
      const blob = new Blob(parts as BlobPart[], { type: 'video/mp4' });
      setFile({
        href: URL.createObjectURL(blob),
        name: `${camera}-${from.toISOString().slice(0, 19).replace(/:/g, '')}.mp4`,
        bytes: got,
      });
      setProgress(undefined);
    } catch (err) {
      setProgress(undefined);
      setError(
        err instanceof ApiError && err.status === 404
          ? new Error('Nothing was recorded in that range.')
          : (err as Error),
      );
    }
  };
  return (
    <div class="export">
      <button onClick={run} disabled={!!progress || to <= from}>
        Export clip
      </button>
      {progress && (
        <span role="status" class="progress">
          {progress}
        </span>
      )}
      {file && (
        <a href={file.href} download={file.name} class="button">
          Save {file.name} ({formatBytes(file.bytes)})
        </a>
      )}
      <Problem error={error} />
    </div>
  );
}

export function RecordingsPage() {
  const { query, route } = useLocation();
  const { data: cameras } = useCameras();
  const camera = query['camera'] || cameras?.[0]?.id || '';
  // ?at=<ISO> (from a review item): that moment's day, played from there once its recordings are known.
  const linkedAt = query['at'] && !Number.isNaN(Date.parse(query['at'])) ? new Date(query['at']) : undefined;
  const day = query['day'] || (linkedAt ? dayOf(linkedAt) : today());
  const from = new Date(`${day}T00:00`);
  const to = new Date(from.getTime() + 86_400_000);
  const timeline = useLoad(
    async () =>
      camera
        ? api<Timeline>(`/cameras/${camera}/timeline`, { query: { from: from.toISOString(), to: to.toISOString() } })
        : undefined,
    [camera, day],
  );
  const events = useLoad(
    async () =>
      camera
        ? api<StoredEvent[]>('/events', {
            query: { camera, from: from.toISOString(), to: to.toISOString(), limit: 500 },
          })
        : [],
    [camera, day],
  );
  const items = useLoad(
    async () =>
      camera
        ? api<ReviewItem[]>('/review', {
            query: { camera, from: from.toISOString(), to: to.toISOString(), limit: 500 },
          })
        : [],
    [camera, day],
  );
  const [at, setAt] = useState<Date>();
  const [range, setRange] = useState<{ from: string; to: string }>({ from: '', to: '' });
  const set = (key: string, value: string) =>
    route(`/recordings?${new URLSearchParams({ camera, day, [key]: value })}`, true);

  const recorded = timeline.data?.ranges ?? [];
  // Play from the picked time; a click in a gap (a pixel of a day bar is a minute or more)
  // goes to the nearest recorded moment.
  const playFrom = (picked: Date) => {
    const ms = picked.getTime();
    const nearest = recorded
      .map((r) => ({ start: Date.parse(r.start), end: Date.parse(r.end) }))
      .map((r) => ({
        at: Math.min(Math.max(ms, r.start), r.end - 1000),
        distance: ms < r.start ? r.start - ms : ms > r.end ? ms - r.end : 0,
      }))
      .sort((a, b) => a.distance - b.distance)[0];
    const t = new Date(nearest ? Math.max(nearest.at, 0) : ms);
    setAt(t);
    setRange({ from: timeInput(t), to: timeInput(new Date(Math.min(t.getTime() + 60_000, Date.now()))) });
  };
  const [linkedPlayed, setLinkedPlayed] = useState(false);
  useEffect(() => {
    if (linkedAt && timeline.data && !linkedPlayed) {
      setLinkedPlayed(true);
      playFrom(linkedAt);
    }
  }, [timeline.data]);
  const exportFrom = range.from ? new Date(`${day}T${range.from}`) : undefined;
  const exportTo = range.to ? new Date(`${day}T${range.to}`) : undefined;

  return (
    <Page title="Recordings">
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <select aria-label="Camera" value={camera} onChange={(e) => set('camera', e.currentTarget.value)}>
          {cameras?.map((c) => (
            <option value={c.id}>{c.name}</option>
          ))}
        </select>
        <input
          aria-label="Day"
          type="date"
          value={day}
          max={today()}
          onChange={(e) => set('day', e.currentTarget.value)}
        />
      </form>
      <Problem error={timeline.error} />
      <DayBar
        from={from}
        to={to}
        ranges={recorded}
        motion={timeline.data?.motion ?? []}
        cursor={at}
        marks={(events.data ?? []).map((e) => ({ at: new Date(e.start), label: e.label, id: e.id }))}
        bands={(items.data ?? []).map((i) => ({
          id: i.id,
          start: new Date(i.start),
          end: new Date(i.end ?? Date.now()),
          severity: i.severity,
          label: i.labels.join(', '),
          picture: url(`/events/${i.thumbnailEvent}/thumbnail.jpg`),
        }))}
        onPick={(t) => playFrom(t)}
      />
      <p class="hint">
        {recorded.length
          ? `${recorded.length} recorded stretch${recorded.length > 1 ? 'es' : ''} on this day. Click the bar or an event to play from there.`
          : timeline.data
            ? 'Nothing recorded on this day.'
            : ''}
      </p>
      {at && camera && (
        <Player
          src={url(`/cameras/${camera}/playback.m3u8`, {
            from: at.toISOString(),
            to: new Date(Math.max(at.getTime() + 1000, Math.min(to.getTime(), Date.now()))).toISOString(),
          })}
        />
      )}
      {camera && (
        <fieldset class="export-range">
          <legend>Export a clip</legend>
          <label>
            From{' '}
            <input
              type="time"
              step="1"
              value={range.from}
              onInput={(e) => setRange({ ...range, from: e.currentTarget.value })}
            />
          </label>
          <label>
            To{' '}
            <input
              type="time"
              step="1"
              value={range.to}
              onInput={(e) => setRange({ ...range, to: e.currentTarget.value })}
            />
          </label>
          {exportFrom && exportTo && <Export camera={camera} from={exportFrom} to={exportTo} />}
        </fieldset>
      )}
    </Page>
  );
}
