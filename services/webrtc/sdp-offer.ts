// What a viewer's SDP offer asks for (RFC 8866 text, RFC 8829 rules): each media section's mid,
// kind and direction, and the payload types it can receive, so that the box answers with the
// viewer's own numbers for the codec the camera sends.

export interface OfferedCodec {
  payloadType: number;
  /** Lower case: h264, h265, pcma, pcmu, opus, ... */
  name: string;
  clockRate: number;
  channels: number;
  /** The a=fmtp parameters, by name. */
  fmtp: Record<string, string>;
}

export interface OfferedMedia {
  kind: 'video' | 'audio' | 'application';
  mid: string;
  direction: 'sendrecv' | 'recvonly' | 'sendonly' | 'inactive';
  codecs: OfferedCodec[];
}

export class BadOfferError extends Error {}

/** The media sections of an offer; throws BadOfferError naming what is wrong. */
export function parseOffer(sdp: string): OfferedMedia[] {
  if (typeof sdp !== 'string' || !sdp.startsWith('v=0'))
    throw new BadOfferError('the offer is not SDP (no "v=0" line)');
  if (sdp.length > 64 * 1024) throw new BadOfferError('the offer is longer than 64 KiB');
  const media: OfferedMedia[] = [];
  let current: (OfferedMedia & { order: number[] }) | undefined;
  for (const raw of sdp.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('m=')) {
      const [kind, , , ...formats] = line.slice(2).split(' ');
      current = {
        kind: kind === 'video' || kind === 'audio' ? kind : 'application',
        mid: '',
        direction: 'sendrecv',
        codecs: [],
        order: formats.map(Number).filter((n) => Number.isInteger(n)),
      };
      media.push(current);
      continue;
    }
    if (!current) continue;
    const attribute = /^a=([\w-]+)(?::(.*))?$/.exec(line);
    if (!attribute) continue;
    const [, name, value = ''] = attribute;
    if (name === 'mid') current.mid = value;
    else if (name === 'sendrecv' || name === 'recvonly' || name === 'sendonly' || name === 'inactive')
      current.direction = name;
    else if (name === 'rtpmap') {
      const m = /^(\d+) ([\w.-]+)\/(\d+)(?:\/(\d+))?/.exec(value);
      if (m)
        current.codecs.push({
          payloadType: Number(m[1]),
          name: m[2]!.toLowerCase(),
          clockRate: Number(m[3]),
          channels: Number(m[4] ?? 1),
          fmtp: {},
        });
    } else if (name === 'fmtp') {
      const m = /^(\d+) (.*)$/.exec(value);
      const codec = m && current.codecs.find((c) => c.payloadType === Number(m[1]));
      if (codec)
        for (const pair of m[2]!.split(';')) {
          const eq = pair.indexOf('=');
          if (eq > 0) codec.fmtp[pair.slice(0, eq).trim().toLowerCase()] = pair.slice(eq + 1).trim();
        }
    }
  }
  for (const m of media) {
    if (!m.mid) throw new BadOfferError(`a ${m.kind} section of the offer has no a=mid`);
    // The offer's order is its preference (RFC 3264 §5.1).
    const order = (m as { order?: number[] }).order ?? [];
    m.codecs.sort((a, b) => order.indexOf(a.payloadType) - order.indexOf(b.payloadType));
    delete (m as { order?: number[] }).order;
  }
  if (!media.length) throw new BadOfferError('the offer has no media section');
  return media;
}

/** The first section of a kind (with that mid, when one is named) the box can send to (the viewer receives on it). */
export function receiving(media: OfferedMedia[], kind: 'video' | 'audio', mid?: string): OfferedMedia | undefined {
  return media.find(
    (m) =>
      m.kind === kind &&
      (mid === undefined || m.mid === mid) &&
      (m.direction === 'recvonly' || m.direction === 'sendrecv'),
  );
}

/**
 * The H.264 payload type to send on: packetization mode 1 (FU-A, what a camera's frames need),
 * the camera's own profile first (profile_idc from its SPS), else any the viewer takes.
 */
export function pickH264(media: OfferedMedia, profileIdc: number | undefined): OfferedCodec | undefined {
  const usable = media.codecs.filter((c) => c.name === 'h264' && c.fmtp['packetization-mode'] === '1');
  const profileOf = (c: OfferedCodec) => Number.parseInt((c.fmtp['profile-level-id'] ?? '').slice(0, 2), 16);
  return usable.find((c) => profileOf(c) === profileIdc) ?? usable[0];
}

/** The audio payload type to send on: the camera's G.711 as it is, or Opus. */
export function pickAudio(media: OfferedMedia, preferred: 'pcma' | 'pcmu' | 'opus'): OfferedCodec | undefined {
  return media.codecs.find((c) => c.name === preferred && (preferred === 'opus' || c.clockRate === 8000));
}
