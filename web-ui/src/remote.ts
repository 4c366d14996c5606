// Away from home: the app reaches the box through a WebRTC data channel, signalled through the
// operator's broker (MQTT over WebSocket). Trust is end to end:
// - pairing: the box's invitation link carries its DTLS fingerprint and a one-time secret; this
//   browser makes an ECDSA key pair (the private half never leaves it) and hands the public half
//   to the box inside the encrypted channel;
// - every offer is signed with that key, and every answer must carry the pinned fingerprint, so
//   the operator relays the signalling (and TURN the packets) but cannot watch or stand in.
// Requests to /api/v1/ go through the tunnel: the page's own and the ones the service worker
// hands over (pictures, recordings), so every page works as at home.
import { signal } from '@preact/signals';
import { remoteOfferText } from '../../lib/remote-offer-text.ts';

export interface Pairing {
  box: string;
  topicRoot: string;
  broker: string;
  /** STUN servers (the operator's) for this browser's side. */
  stun: string[];
  fingerprint: string;
  invitation: string;
  secret: string;
}

export interface RemoteBox {
  box: string;
  topicRoot: string;
  broker: string;
  stun: string[];
  fingerprint: string;
  browser: string;
  username: string;
  key: CryptoKeyPair;
}

type Answer =
  | { ok: true; session: string; sdp: string; video: string | null; audio: string | null; tunnel: boolean }
  | { ok: false; error: { type: string; message: string } };

/** How the app reaches the box now: at home (its own address) or away (the tunnel, and how). */
export const reach = signal<{ mode: 'home' } | { mode: 'away'; path: string }>({ mode: 'home' });

const SIGNALLING_TIMEOUT_MS = 20_000;
const PING_MS = 2000;
/**
 * Nothing from the box this long (it answers each ping): the path is gone (the operator's relay
 * restarted, the phone changed networks). The tunnel is closed and made again at once, rather than
 * waiting the half minute the browser's ICE takes to give up.
 */
const SILENT_MS = 6000;

// --- This browser's pairing, kept in IndexedDB (a CryptoKey is stored as an object, not as bytes).

function database(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('fogedge-remote', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('boxes');
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}

async function stored<T>(mode: IDBTransactionMode, work: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await database();
  return new Promise((resolve, reject) => {
    const request = work(db.transaction('boxes', mode).objectStore('boxes'));
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export const savedBox = (): Promise<RemoteBox | undefined> => stored('readonly', (s) => s.get('box'));
const saveBox = (box: RemoteBox) => stored('readwrite', (s) => s.put(box, 'box'));
export const forgetBox = () => stored('readwrite', (s) => s.delete('box'));

/** The pairing in an invitation link (#pair=...), if this page was opened from one. */
export function pairingInLink(): Pairing | null {
  const m = /#pair=([\w-]+)/.exec(location.hash);
  if (!m) return null;
  try {
    const text = atob(m[1]!.replace(/-/g, '+').replace(/_/g, '/'));
    const p = JSON.parse(text) as Pairing;
    return p.box && p.broker && p.fingerprint && p.invitation && p.secret ? p : null;
  } catch {
    return null;
  }
}

// --- Signalling through the operator's broker.

const base64 = (bytes: ArrayBuffer) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const randomId = () =>
  base64(crypto.getRandomValues(new Uint8Array(18)).buffer).replace(/[+/=]/g, (c) =>
    c === '+' ? '-' : c === '/' ? '_' : '',
  );

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms))),
  ]).finally(() => clearTimeout(timer));
}

/** One offer to the box's topic, its answer from the box's answer topic for it. */
async function exchange(
  target: { broker: string; topicRoot: string; box: string },
  offer: { id: string } & Record<string, unknown>,
): Promise<Answer> {
  // Loaded only away from home: at home the app never needs it.
  const { default: mqtt } = await import('mqtt');
  const client = mqtt.connect(target.broker, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000 });
  try {
    await within(
      new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', reject);
      }),
      10_000,
      "the operator's broker does not answer",
    );
    const answerTopic = `${target.topicRoot}/${target.box}/remote/answer/${offer.id}`;
    const answer = new Promise<Answer>((resolve) =>
      client.on('message', (topic, payload) => {
        if (topic === answerTopic) resolve(JSON.parse(payload.toString()) as Answer);
      }),
    );
    await client.subscribeAsync(answerTopic, { qos: 1 });
    await client.publishAsync(`${target.topicRoot}/${target.box}/remote/offer`, JSON.stringify(offer), { qos: 1 });
    return await within(answer, SIGNALLING_TIMEOUT_MS, 'the box did not answer (is it on and online?)');
  } finally {
    client.end(true);
  }
}

/** The offer with every candidate in it (one message each way through the operator). */
async function offerOf(pc: RTCPeerConnection): Promise<string> {
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete')
    await within(
      new Promise<void>((resolve) =>
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve()),
      ),
      5000,
      'ICE gathering did not end',
    ).catch(() => undefined); // go with the candidates gathered so far
  return pc.localDescription!.sdp;
}

/** The answer must be from the box this browser paired with: its DTLS fingerprint, pinned. */
function checkPinned(sdp: string, pinned: string): void {
  const m = /a=fingerprint:(\S+) (\S+)/i.exec(sdp);
  const given = m ? `${m[1]!.toLowerCase()} ${m[2]!.toUpperCase()}` : 'none';
  if (given !== pinned.replace(/^(\S+) /, (a) => a.toLowerCase()))
    throw new Error(`the answer is not from the paired box (its certificate is ${given}); someone in between?`);
}

function opened(channel: RTCDataChannel, ms: number): Promise<void> {
  if (channel.readyState === 'open') return Promise.resolve();
  return within(
    new Promise<void>((resolve, reject) => {
      channel.addEventListener('open', () => resolve());
      channel.addEventListener('close', () => reject(new Error('the box closed the channel')));
    }),
    ms,
    'no connection to the box (the network between you and it blocks it, and no relay helped)',
  );
}

async function accepted(
  pc: RTCPeerConnection,
  answer: Answer,
  fingerprint: string,
): Promise<Extract<Answer, { ok: true }>> {
  if (!answer.ok) throw new Error(`${answer.error.message} (${answer.error.type})`);
  checkPinned(answer.sdp, fingerprint);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  return answer;
}

/** This side's connection: the operator's STUN servers find the address the box can answer to. */
const peerConnection = (stun: string[] = []) =>
  new RTCPeerConnection({ iceServers: stun.length ? [{ urls: stun }] : [] });

/** Pairs this browser with the box of an invitation; remembers the box. */
export async function pair(p: Pairing, name: string): Promise<RemoteBox> {
  const key = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  const publicKey = base64(await crypto.subtle.exportKey('spki', key.publicKey));
  const pc = peerConnection(p.stun);
  try {
    const channel = pc.createDataChannel('pair');
    const sdp = await offerOf(pc);
    const answer = await exchange(p, {
      id: randomId(),
      v: 1,
      at: Date.now(),
      box: p.box,
      invitation: p.invitation,
      sdp,
    });
    await accepted(pc, answer, p.fingerprint);
    await opened(channel, 20_000);
    const reply = new Promise<{ paired?: { id: string; username: string }; error?: { message: string } }>((resolve) =>
      channel.addEventListener('message', (m) => resolve(JSON.parse(String(m.data)))),
    );
    channel.send(JSON.stringify({ pair: { secret: p.secret, publicKey, name } }));
    const result = await within(reply, 10_000, 'the box did not confirm the pairing');
    if (!result.paired) throw new Error(result.error?.message ?? 'the box refused the pairing');
    const box: RemoteBox = {
      box: p.box,
      topicRoot: p.topicRoot,
      broker: p.broker,
      stun: p.stun ?? [],
      fingerprint: p.fingerprint,
      browser: result.paired.id,
      username: result.paired.username,
      key,
    };
    await saveBox(box);
    return box;
  } finally {
    pc.close();
  }
}

/** A remote session: the tunnel, and the camera's video and sound when one is named. */
export async function connect(b: RemoteBox, camera?: string): Promise<Tunnel> {
  const pc = peerConnection(b.stun);
  const channel = pc.createDataChannel('api');
  const media = new MediaStream();
  // Always a first slot: WebRTC cannot add media to a connection made without any. With no camera
  // named it waits, free, for the first camera the app shows.
  const first = {
    video: pc.addTransceiver('video', { direction: 'recvonly' }),
    audio: pc.addTransceiver('audio', { direction: 'recvonly' }),
  };
  if (camera) pc.addEventListener('track', (e) => media.addTrack(e.track));
  try {
    const sdp = await offerOf(pc);
    const offer = {
      v: 1,
      id: randomId(),
      at: Date.now(),
      box: b.box,
      browser: b.browser,
      stream: 'main',
      sdp,
      ...(camera ? { camera } : {}),
    };
    const signature = base64(
      await crypto.subtle.sign(
        { name: 'ECDSA', hash: 'SHA-256' },
        b.key.privateKey,
        new TextEncoder().encode(remoteOfferText(offer)),
      ),
    );
    const answer = await accepted(pc, await exchange(b, { ...offer, signature }), b.fingerprint);
    if (!answer.tunnel) throw new Error('the box has no API on its WebRTC node');
    await opened(channel, 30_000);
    return new Tunnel(pc, channel, media, answer.session, camera ? undefined : first);
  } catch (err) {
    pc.close();
    throw err;
  }
}

/** A refusal from the box through the tunnel: its message, and the HTTP status it came with. */
export class TunnelError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** A slot of the tunnel's connection: the transceivers one camera's picture and sound come on. */
interface Slot {
  video: RTCRtpTransceiver;
  audio: RTCRtpTransceiver;
}

/** A camera shown on the tunnel's own connection. */
export interface RemoteView {
  media: MediaStream;
  /** Its picture's receiver (its stats are this camera's alone). */
  receiver: RTCRtpReceiver;
  /** The slot stops sending and waits for the next camera shown. */
  close(): void;
}

interface Pending {
  head(status: number, headers: Record<string, string>): void;
  chunk(bytes: Uint8Array): void;
  end(): void;
  fail(err: Error): void;
}

/** The box's API over the data channel (gateway/http/tunnel.ts speaks the other end). */
export class Tunnel {
  private next = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(type: string, data: unknown) => void>();
  private readonly pinger: ReturnType<typeof setInterval>;
  private updating = false;
  private heardAt = performance.now();
  /** Slots whose camera is no longer shown, for the next one. */
  private readonly free: Slot[] = [];
  /** Offers after the first go one at a time. */
  private negotiation: Promise<unknown> = Promise.resolve();
  private readonly closeListeners = new Set<() => void>();
  onclose: (() => void) | undefined;

  constructor(
    readonly pc: RTCPeerConnection,
    private readonly channel: RTCDataChannel,
    /** The named camera's video and sound, when the session carries them. */
    readonly media: MediaStream,
    /** The box's id of this session. */
    readonly session: string,
    /** The slot the session was opened with, when no camera was named. */
    firstSlot?: Slot,
  ) {
    if (firstSlot) this.free.push(firstSlot);
    channel.binaryType = 'arraybuffer';
    channel.onmessage = (m) => this.received(m.data as string | ArrayBuffer);
    channel.onclose = () => this.closed();
    pc.addEventListener('connectionstatechange', () => pc.connectionState === 'failed' && this.closed());
    this.pinger = setInterval(() => {
      if (performance.now() - this.heardAt > SILENT_MS) return this.close();
      this.send({ ping: Date.now() });
    }, PING_MS);
  }

  get open(): boolean {
    return this.channel.readyState === 'open';
  }

  /** Which way the packets go: "direct" (peer to peer) or "relay" (the operator's TURN server). */
  async path(): Promise<string> {
    const stats = await this.pc.getStats();
    let pair: { localCandidateId?: string; remoteCandidateId?: string } | undefined;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    const local = pair?.localCandidateId ? stats.get(pair.localCandidateId) : undefined;
    const remote = pair?.remoteCandidateId ? stats.get(pair.remoteCandidateId) : undefined;
    return local?.candidateType === 'relay' || remote?.candidateType === 'relay' ? 'relay' : 'direct';
  }

  fetch(
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: string } = {},
  ): Promise<Response> {
    if (!this.open) return Promise.reject(new TypeError('the tunnel to the box is closed'));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      let controller!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({
        start: (c) => void (controller = c),
        cancel: () => this.send({ cancel: id }),
      });
      this.pending.set(id, {
        head: (status, headers) =>
          resolve(new Response(status === 204 || status === 304 ? null : body, { status, headers })),
        chunk: (bytes) => controller.enqueue(bytes),
        end: () => {
          this.pending.delete(id);
          controller.close();
        },
        fail: (err) => {
          this.pending.delete(id);
          reject(err);
          try {
            controller.error(err);
          } catch {
            // already closed
          }
        },
      });
      this.send({
        id,
        method: init.method ?? 'GET',
        path,
        headers: init.headers ?? {},
        ...(init.body !== undefined ? { body: init.body } : {}),
      });
    });
  }

  /**
   * A camera's picture and sound on this connection, beside the API: a free slot (or a new one,
   * offered to the box through the tunnel) is handed the camera.
   */
  async watch(camera: string, stream: 'main' | 'sub'): Promise<RemoteView> {
    let slot = this.free.pop();
    if (!slot) {
      const turn = this.negotiation.then(() => this.addSlot());
      this.negotiation = turn.catch(() => undefined);
      slot = await turn;
    }
    try {
      await this.call('PUT', `/api/v1/webrtc/sessions/${this.session}/slots/${slot.video.mid}`, { camera, stream });
    } catch (err) {
      if (this.open) this.free.push(slot);
      throw err;
    }
    return this.view(slot);
  }

  /** Called when the tunnel closes (every camera shown on it stops with it). */
  onClosed(listener: () => void): () => void {
    this.closeListeners.add(listener);
    return () => void this.closeListeners.delete(listener);
  }

  /** One more slot on this connection: an offer with its two sections, through the tunnel. */
  private async addSlot(): Promise<Slot> {
    const video = this.pc.addTransceiver('video', { direction: 'recvonly' });
    const audio = this.pc.addTransceiver('audio', { direction: 'recvonly' });
    try {
      await this.pc.setLocalDescription(await this.pc.createOffer());
      const answer = (await this.call('POST', `/api/v1/webrtc/sessions/${this.session}/slots`, {
        sdp: this.pc.localDescription!.sdp,
        video: video.mid,
        audio: audio.mid,
      })) as { sdp: string };
      await this.pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      return { video, audio };
    } catch (err) {
      if (this.pc.signalingState === 'have-local-offer')
        await this.pc.setLocalDescription({ type: 'rollback' }).catch(() => undefined);
      video.stop();
      audio.stop();
      throw err;
    }
  }

  private view(slot: Slot): RemoteView {
    let closed = false;
    return {
      media: new MediaStream([slot.video.receiver.track, slot.audio.receiver.track]),
      receiver: slot.video.receiver,
      close: () => {
        if (closed) return;
        closed = true;
        // Free only once the box has emptied it: a camera handed to it sooner would be emptied too.
        void this.call('DELETE', `/api/v1/webrtc/sessions/${this.session}/slots/${slot.video.mid}`).then(
          () => this.open && this.free.push(slot),
          () => undefined,
        );
      },
    };
  }

  /** A JSON request to the box through the tunnel; a refusal throws its message and status. */
  private async call(method: string, path: string, body?: object): Promise<unknown> {
    const res = await this.fetch(path, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const answer = (await res.json().catch(() => undefined)) as { error?: { message?: string } } | undefined;
    if (!res.ok) throw new TunnelError(answer?.error?.message ?? `the box answered ${res.status}`, res.status);
    return answer;
  }

  /** The updates stream ({type, data}, "hello" first), as /api/v1/updates gives it at home. */
  onUpdate(listener: (type: string, data: unknown) => void): () => void {
    this.listeners.add(listener);
    if (!this.updating) {
      this.updating = true;
      this.send({ updates: true });
    }
    return () => void this.listeners.delete(listener);
  }

  close(): void {
    this.pc.close();
    this.closed();
  }

  private send(message: object): void {
    if (this.open) this.channel.send(JSON.stringify(message));
  }

  private received(data: string | ArrayBuffer): void {
    this.heardAt = performance.now();
    if (typeof data !== 'string') {
      const id = new DataView(data).getUint32(0);
      this.pending.get(id)?.chunk(new Uint8Array(data, 4));
      return;
    }
    const m = JSON.parse(data) as {
      id?: number;
      status?: number;
      headers?: Record<string, string>;
      end?: boolean;
      error?: string;
      update?: { type: string; data: unknown };
    };
    if (m.update) for (const l of this.listeners) l(m.update.type, m.update.data);
    else if (m.id !== undefined) {
      const p = this.pending.get(m.id);
      if (m.status !== undefined) p?.head(m.status, m.headers ?? {});
      else if (m.end) p?.end();
      else if (m.error) p?.fail(new TypeError(m.error));
    }
  }

  private closed(): void {
    clearInterval(this.pinger);
    this.free.length = 0;
    for (const l of [...this.closeListeners]) l();
    this.closeListeners.clear();
    for (const p of this.pending.values()) p.fail(new TypeError('the tunnel to the box closed'));
    this.pending.clear();
    const handler = this.onclose;
    this.onclose = undefined;
    handler?.();
  }
}

// --- The page away from home: the service worker's requests answered through the tunnel.

let current: Tunnel | undefined;
/** Away: the tunnel, whose connection carries the API and the cameras shown (none at home). */
export const tunnel = () => current;

/** Makes the tunnel the way to the box for this page (and the requests its service worker hands over). */
export async function goAway(t: Tunnel): Promise<void> {
  current = t;
  reach.value = { mode: 'away', path: await t.path().catch(() => 'direct') };
}

function answerWorker(e: MessageEvent): void {
  const m = e.data as { type?: string; method: string; path: string; headers: Record<string, string>; body?: string };
  const port = e.ports[0];
  if (m?.type !== 'tunnel-fetch' || !port) return;
  const t = current;
  if (!t) return port.postMessage({ passthrough: true });
  const answer = async () => {
    const res = await t.fetch(m.path, {
      method: m.method,
      headers: m.headers,
      ...(m.body !== undefined ? { body: m.body } : {}),
    });
    const body = await res.arrayBuffer();
    port.postMessage({ status: res.status, headers: Object.fromEntries(res.headers), body }, [body]);
  };
  answer().catch((err: Error) => port.postMessage({ error: err.message }));
}

/** Answers the service worker's requests (passed through while the page has no tunnel). */
export function listenToWorker(): void {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.addEventListener('message', answerWorker);
  navigator.serviceWorker.startMessages();
}

/**
 * Starts the service worker (the app shell offline; /api/ requests through this page) and waits
 * until it controls the page, so that pictures and recordings go through the tunnel too.
 */
export async function serviceWorker(): Promise<boolean> {
  if (!('serviceWorker' in navigator)) return false;
  await navigator.serviceWorker.register('/sw.js');
  if (navigator.serviceWorker.controller) return true;
  return within(
    new Promise<boolean>((resolve) =>
      navigator.serviceWorker.addEventListener('controllerchange', () => resolve(true)),
    ),
    10_000,
    'the service worker did not start',
  ).catch(() => false);
}
