// Live: every camera in a grid, one camera full-screen. A tile plays the low-latency stream; when
// that cannot start it shows snapshots, and an offline camera says why.
import { useEffect, useRef, useState } from 'preact/hooks';
import { can, formatTime, url } from '../api.ts';
import { LivePlayer, type LiveState } from '../live-player.ts';
import { WebRtcPlayer } from '../webrtc-player.ts';
import { tunnel } from '../remote.ts';
import { Page, Problem } from '../components/ui.tsx';
import { ModeBar } from '../components/mode-bar.tsx';
import { useCameras, type Camera } from '../cameras.ts';

/** Snapshots every few seconds: the fallback when live video cannot play. */
function Snapshots({ camera, why }: { camera: string; why?: string | undefined }) {
  const [tick, setTick] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setTick(Date.now()), 5000);
    return () => clearInterval(t);
  }, []);
  return (
    <>
      <img
        class="snapshot"
        src={url(`/cameras/${camera}/snapshot.jpg`, { t: tick })}
        alt={`Latest picture of ${camera}`}
      />
      {why && <span class="tile-note">Snapshots: {why}</span>}
    </>
  );
}

export function LiveVideo({
  camera,
  stream,
  muted = true,
}: {
  camera: Camera;
  stream: 'main' | 'sub';
  /** Live view starts muted: browsers play on their own only without sound. */
  muted?: boolean;
}) {
  const video = useRef<HTMLVideoElement>(null);
  const [state, setState] = useState<{ state: LiveState; why?: string | undefined }>({ state: 'connecting' });
  // WebRTC first (a few frames of delay, the camera's H.264 as it is); MSE when WebRTC cannot.
  const [transport, setTransport] = useState<'webrtc' | 'mse'>(WebRtcPlayer.available() ? 'webrtc' : 'mse');
  const [fellBack, setFellBack] = useState<string | undefined>();
  const online = camera.status?.state === 'online';
  useEffect(() => {
    if (!online || !video.current) return;
    const player =
      transport === 'webrtc'
        ? new WebRtcPlayer(
            video.current,
            camera.id,
            stream,
            (s, why) => {
              if (s === 'unsupported' || (s === 'failed' && !video.current?.dataset['firstFrameMs'])) {
                setFellBack(why);
                setTransport('mse');
              } else setState({ state: s, why });
            },
            // Away, on a slow link, the main stream steps down to the sub-stream.
            stream === 'main' && Boolean(camera.subStream) && Boolean(tunnel()),
          )
        : new LivePlayer(video.current, camera.id, stream, (s, why) => setState({ state: s, why }));
    player.start();
    return () => player.close();
  }, [camera.id, stream, online, transport]);
  if (!camera.status || camera.status.state !== 'online') {
    const s = camera.status;
    return (
      <div class="offline" data-state={s?.state ?? 'unknown'}>
        <strong>
          {s?.state === 'starting'
            ? s.restarts > 0
              ? 'Reconnecting…'
              : 'Starting…'
            : s?.state === 'disabled'
              ? 'Turned off'
              : 'Offline'}
        </strong>
        {s?.reason && (
          <span>
            {s.reason}
            {s.detail ? `: ${s.detail}` : ''}
          </span>
        )}
        {s?.lastFrameAt && <small>last picture {formatTime(s.lastFrameAt)}</small>}
      </div>
    );
  }
  const fallback =
    state.state === 'unsupported' || (state.state === 'failed' && !video.current?.dataset['firstFrameMs']);
  return (
    <>
      <video
        ref={video}
        muted={muted}
        playsInline
        autoplay
        data-live-state={state.state}
        data-transport={transport}
        title={transport === 'webrtc' ? 'Live over WebRTC' : `Live over MSE${fellBack ? ` (WebRTC: ${fellBack})` : ''}`}
        hidden={fallback}
      />
      {fallback && <Snapshots camera={camera.id} why={state.why} />}
      {state.state === 'playing' && <span class="transport">{transport === 'webrtc' ? 'WebRTC' : 'MSE'}</span>}
      {state.state === 'connecting' && <span class="tile-note">Connecting…</span>}
    </>
  );
}

export function LivePage() {
  const { data: cameras, error } = useCameras();
  return (
    <Page title="Live">
      <ModeBar />
      <Problem error={error} />
      {cameras?.length === 0 && (
        <p>
          No camera yet.{' '}
          {can('cameras.manage') ? (
            <a href="/cameras/new">Add the first camera</a>
          ) : (
            'Ask the admin or installer to add one.'
          )}
        </p>
      )}
      <div class="grid">
        {cameras?.map((c) => (
          <a class="tile" href={`/live/${c.id}`} data-camera={c.id} key={c.id}>
            <LiveVideo camera={c} stream={c.subStream ? 'sub' : 'main'} />
            <span class="tile-name">{c.name}</span>
          </a>
        ))}
      </div>
    </Page>
  );
}

export function CameraLivePage({ id }: { id: string }) {
  const { data: cameras, error } = useCameras();
  const camera = cameras?.find((c) => c.id === id);
  const s = camera?.status;
  const [sound, setSound] = useState(false);
  return (
    <Page title={camera?.name ?? id} actions={<a href="/">All cameras</a>}>
      <Problem error={error} />
      {cameras && !camera && <p class="problem">There is no camera "{id}".</p>}
      {camera && (
        <>
          <div class="full" data-camera={camera.id}>
            <LiveVideo camera={camera} stream="main" muted={!sound} />
          </div>
          <p class="status-line">
            {s ? `${s.state}${s.reason ? ` (${s.reason})` : ''}` : 'no status'}
            {s?.codec && ` · ${s.codec} ${s.width}×${s.height} · ${s.fps ?? '?'} fps · ${s.bitrateKbps ?? '?'} kbit/s`}
            {s?.audio && ` · sound (${s.audio})`}
          </p>
          <p class="links">
            {s?.audio && (
              <button type="button" aria-pressed={sound} onClick={() => setSound(!sound)}>
                {sound ? 'Sound off' : 'Sound on'}
              </button>
            )}
            <button
              type="button"
              onClick={() =>
                void document
                  .querySelector('.full')
                  ?.requestFullscreen?.()
                  .catch(() => undefined)
              }
            >
              Full screen
            </button>
            {can('events.view') && <a href={`/events?camera=${camera.id}`}>Events</a>}
            {can('recordings.view') && <a href={`/recordings?camera=${camera.id}`}>Recordings</a>}
            {can('cameras.manage') && <a href={`/cameras/${camera.id}`}>Settings</a>}
          </p>
        </>
      )}
    </Page>
  );
}
