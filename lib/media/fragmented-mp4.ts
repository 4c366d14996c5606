// Repair of a fragmented MP4 that a crash cut mid-write: keep the header (ftyp, moov) and
// every complete moof+mdat pair, drop the torn tail. ISO/IEC 14496-12 §4.2: a box is a
// 32-bit size (1: a 64-bit size follows the type; 0: to the end of the file) and a 4-byte type.
import { open } from 'node:fs/promises';

interface Box {
  type: string;
  start: number;
  end: number;
}

async function* topLevelBoxes(file: string): AsyncGenerator<Box> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const header = Buffer.alloc(16);
    let offset = 0;
    while (offset + 8 <= size) {
      const { bytesRead } = await handle.read(header, 0, 16, offset);
      if (bytesRead < 8) return;
      let boxSize = header.readUInt32BE(0);
      const type = header.toString('latin1', 4, 8);
      if (boxSize === 1) {
        if (bytesRead < 16) return;
        boxSize = Number(header.readBigUInt64BE(8));
      } else if (boxSize === 0) {
        boxSize = size - offset;
      }
      if (boxSize < 8) return; // garbage: stop here
      yield { type, start: offset, end: offset + boxSize };
      offset += boxSize;
    }
  } finally {
    await handle.close();
  }
}

/** Bytes of the header (ftyp+moov) at the start of a fragmented MP4: its HLS init section. */
export async function initLength(file: string): Promise<number> {
  for await (const box of topLevelBoxes(file)) if (box.type === 'moov') return box.end;
  return 0;
}

/**
 * Truncates `file` after its last complete fragment. Returns the bytes kept, or 0 when not
 * even the header is complete (nothing playable).
 */
export async function trimToLastFragment(file: string): Promise<number> {
  const handle = await open(file, 'r+');
  try {
    const { size } = await handle.stat();
    let keep = 0;
    let headerDone = false;
    let pendingMoof = false;
    for await (const box of topLevelBoxes(file)) {
      if (box.end > size) break; // torn box: the crash happened while writing it
      if (box.type === 'moov') {
        headerDone = true;
        keep = box.end;
      } else if (box.type === 'moof') {
        pendingMoof = true;
      } else if (box.type === 'mdat' && pendingMoof) {
        pendingMoof = false;
        keep = box.end;
      } else if (!pendingMoof && headerDone) {
        keep = box.end; // other complete boxes between fragments (mfra, free, ...)
      }
    }
    if (!headerDone) return 0;
    if (keep < size) await handle.truncate(keep);
    return keep;
  } finally {
    await handle.close();
  }
}

/** Children of a box's payload (`from` skips the full-box header or fixed fields). */
function* childBoxes(
  buf: Buffer,
  from: number,
  to = buf.length,
): Generator<{ type: string; start: number; end: number }> {
  let at = from;
  while (at + 8 <= to) {
    const size = buf.readUInt32BE(at);
    if (size < 8 || at + size > to) return;
    yield { type: buf.toString('latin1', at + 4, at + 8), start: at, end: at + size };
    at += size;
  }
}

function findBox(buf: Buffer, path: string[], from = 0, to = buf.length): { start: number; end: number } | undefined {
  const [head, ...rest] = path;
  for (const box of childBoxes(buf, from, to)) {
    if (box.type !== head) continue;
    return rest.length ? findBox(buf, rest, box.start + 8, box.end) : box;
  }
  return undefined;
}

const SAMPLE_IS_NON_SYNC = 0x10000;

/**
 * Whether a fragment (moof) starts with a sync sample (keyframe), from the first sample's
 * flags: trun's first_sample_flags, its per-sample flags, tfhd's default, or the init's trex.
 */
export function startsWithKeyframe(moof: Buffer, init?: Buffer): boolean {
  // Every audio sample is a sync sample: only a video track has keyframes.
  if (init && trackOf(init, trackIdOf(moof))?.kind !== 'video') return false;
  return firstSampleIsSync(moof, init);
}

function firstSampleIsSync(moof: Buffer, init: Buffer | undefined): boolean {
  const traf = findBox(moof, ['moof', 'traf']);
  if (!traf) return false;
  const trun = findBox(moof, ['trun'], traf.start + 8, traf.end);
  const tfhd = findBox(moof, ['tfhd'], traf.start + 8, traf.end);
  if (!trun || !tfhd) return false;
  const trunFlags = moof.readUInt32BE(trun.start + 8) & 0xffffff;
  let at = trun.start + 16 + (trunFlags & 0x1 ? 4 : 0); // after sample_count and data_offset
  if (trunFlags & 0x4) return (moof.readUInt32BE(at) & SAMPLE_IS_NON_SYNC) === 0;
  if (trunFlags & 0x400) {
    at += trunFlags & 0x100 ? 4 : 0; // sample_duration
    at += trunFlags & 0x200 ? 4 : 0; // sample_size
    return (moof.readUInt32BE(at) & SAMPLE_IS_NON_SYNC) === 0;
  }
  const tfhdFlags = moof.readUInt32BE(tfhd.start + 8) & 0xffffff;
  if (tfhdFlags & 0x20) {
    const f =
      tfhd.start +
      16 +
      (tfhdFlags & 0x1 ? 8 : 0) +
      (tfhdFlags & 0x2 ? 4 : 0) +
      (tfhdFlags & 0x8 ? 4 : 0) +
      (tfhdFlags & 0x10 ? 4 : 0);
    return (moof.readUInt32BE(f) & SAMPLE_IS_NON_SYNC) === 0;
  }
  const trex = init && trexOf(init, trackIdOf(moof));
  return trex ? (init!.readUInt32BE(trex.start + 28) & SAMPLE_IS_NON_SYNC) === 0 : false;
}

/** The track a fragment belongs to: its (first) traf's tfhd track_ID. */
export function trackIdOf(moof: Buffer): number | undefined {
  const traf = findBox(moof, ['moof', 'traf']);
  const tfhd = traf && findBox(moof, ['tfhd'], traf.start + 8, traf.end);
  return tfhd ? moof.readUInt32BE(tfhd.start + 12) : undefined;
}

/** The trex (track defaults) of one track; the first one when the track is not given. */
function trexOf(init: Buffer, trackId: number | undefined): { start: number; end: number } | undefined {
  const mvex = findBox(init, ['moov', 'mvex']);
  if (!mvex) return undefined;
  for (const box of childBoxes(init, mvex.start + 8, mvex.end)) {
    if (box.type !== 'trex') continue;
    if (trackId === undefined || init.readUInt32BE(box.start + 12) === trackId) return box;
  }
  return undefined;
}

export interface Track {
  id: number;
  kind: 'video' | 'audio' | 'other';
  /** Ticks a second. */
  timescale: number;
  /** The RFC 6381 codecs value (avc1.4d401f, mp4a.40.2, ...). */
  codec: string;
  /** Where its trak box lies in the init segment. */
  box: { start: number; end: number };
}

/** The tracks of an init segment (ftyp+moov), in their order. */
export function tracksOf(init: Buffer): Track[] {
  const moov = findBox(init, ['moov']);
  if (!moov) return [];
  const tracks: Track[] = [];
  for (const trak of childBoxes(init, moov.start + 8, moov.end)) {
    if (trak.type !== 'trak') continue;
    const tkhd = findBox(init, ['tkhd'], trak.start + 8, trak.end);
    const mdia = findBox(init, ['mdia'], trak.start + 8, trak.end);
    const mdhd = mdia && findBox(init, ['mdhd'], mdia.start + 8, mdia.end);
    const hdlr = mdia && findBox(init, ['hdlr'], mdia.start + 8, mdia.end);
    if (!tkhd || !mdhd || !hdlr) continue;
    const handler = init.toString('latin1', hdlr.start + 16, hdlr.start + 20);
    const v1 = init[tkhd.start + 8] === 1; // 64-bit times before the track id
    tracks.push({
      id: init.readUInt32BE(tkhd.start + (v1 ? 28 : 20)),
      kind: handler === 'vide' ? 'video' : handler === 'soun' ? 'audio' : 'other',
      timescale: init.readUInt32BE(mdhd.start + (init[mdhd.start + 8] === 1 ? 28 : 20)),
      codec: sampleEntryCodec(init, trak) ?? 'unknown',
      box: trak,
    });
  }
  return tracks;
}

/** One track of an init segment by its id. */
export function trackOf(init: Buffer, id: number | undefined): Track | undefined {
  return tracksOf(init).find((t) => t.id === id);
}

/** The video track's timescale (ticks a second). */
export function timescaleOf(init: Buffer): number | undefined {
  return tracksOf(init).find((t) => t.kind === 'video')?.timescale;
}

/**
 * When a fragment starts (tfdt's baseMediaDecodeTime) and how long it lasts, in timescale
 * ticks: its samples' durations from trun, or tfhd's default, or the init's trex default.
 */
export function fragmentTiming(moof: Buffer, init?: Buffer): { start: number; duration: number } | undefined {
  const traf = findBox(moof, ['moof', 'traf']);
  const tfdt = traf && findBox(moof, ['tfdt'], traf.start + 8, traf.end);
  const tfhd = traf && findBox(moof, ['tfhd'], traf.start + 8, traf.end);
  if (!traf || !tfdt || !tfhd) return undefined;
  const start =
    moof[tfdt.start + 8] === 1 ? Number(moof.readBigUInt64BE(tfdt.start + 12)) : moof.readUInt32BE(tfdt.start + 12);
  const tfhdFlags = moof.readUInt32BE(tfhd.start + 8) & 0xffffff;
  let fallback = 0;
  if (tfhdFlags & 0x8)
    fallback = moof.readUInt32BE(tfhd.start + 16 + (tfhdFlags & 0x1 ? 8 : 0) + (tfhdFlags & 0x2 ? 4 : 0));
  else {
    const trex = init && trexOf(init, moof.readUInt32BE(tfhd.start + 12));
    if (trex) fallback = init!.readUInt32BE(trex.start + 20);
  }
  let duration = 0;
  for (const trun of childBoxes(moof, traf.start + 8, traf.end)) {
    if (trun.type !== 'trun') continue;
    const flags = moof.readUInt32BE(trun.start + 8) & 0xffffff;
    const count = moof.readUInt32BE(trun.start + 12);
    if (!(flags & 0x100)) {
      duration += count * fallback;
      continue;
    }
    const stride = 4 * [0x100, 0x200, 0x400, 0x800].filter((f) => flags & f).length;
    let at = trun.start + 16 + (flags & 0x1 ? 4 : 0) + (flags & 0x4 ? 4 : 0);
    for (let i = 0; i < count && at + 4 <= trun.end; i++, at += stride) duration += moof.readUInt32BE(at);
  }
  return { start, duration };
}

/** Moves a fragment on its track's timeline: rewrites tfdt in place (a 32-bit tfdt wraps). */
export function setFragmentStart(moof: Buffer, start: number): void {
  const traf = findBox(moof, ['moof', 'traf']);
  const tfdt = traf && findBox(moof, ['tfdt'], traf.start + 8, traf.end);
  if (!tfdt) return;
  if (moof[tfdt.start + 8] === 1) moof.writeBigUInt64BE(BigInt(start), tfdt.start + 12);
  else moof.writeUInt32BE(start % 2 ** 32, tfdt.start + 12);
}

/** The RFC 6381 codecs value a browser's MediaSource needs: each track's, video first. */
export function codecString(init: Buffer): string | undefined {
  const tracks = tracksOf(init).filter((t) => t.kind !== 'other');
  if (!tracks.length) return undefined;
  return tracks
    .sort((a, b) => (a.kind === b.kind ? a.id - b.id : a.kind === 'video' ? -1 : 1))
    .map((t) => t.codec)
    .join(',');
}

/** A track's sample entry (stsd's first child), e.g. avc1 or mp4a. */
function sampleEntry(init: Buffer, trak: { start: number; end: number }) {
  const stsd = findBox(init, ['mdia', 'minf', 'stbl', 'stsd'], trak.start + 8, trak.end);
  return stsd && [...childBoxes(init, stsd.start + 16, stsd.end)][0];
}

/** The boxes inside a visual sample entry (avcC, hvcC, ...): after its 78 bytes of fixed fields. */
const visualConfig = (init: Buffer, entry: { start: number; end: number }) => [
  ...childBoxes(init, entry.start + 8 + 78, entry.end),
];

/** A track's codecs value, from its sample entry. */
function sampleEntryCodec(init: Buffer, trak: { start: number; end: number }): string | undefined {
  const entry = sampleEntry(init, trak);
  if (!entry) return undefined;
  if (entry.type === 'mp4a') return aacCodec(init, entry);
  const config = visualConfig(init, entry);
  const avcC = config.find((b) => b.type === 'avcC');
  if (avcC) return `${entry.type}.${init.subarray(avcC.start + 9, avcC.start + 12).toString('hex')}`;
  const hvcC = config.find((b) => b.type === 'hvcC');
  if (hvcC) {
    // ISO/IEC 14496-15 Annex E: profile space and idc, compatibility flags (bit-reversed), tier and level.
    const b = hvcC.start + 8;
    const byte1 = init[b + 1]!;
    const space = ['', 'A', 'B', 'C'][byte1 >> 6];
    const compat = init.readUInt32BE(b + 2);
    let reversed = 0;
    for (let i = 0; i < 32; i++) if (compat & (1 << i)) reversed |= 1 << (31 - i);
    const tier = byte1 & 0x20 ? 'H' : 'L';
    const constraints = [...init.subarray(b + 6, b + 12)];
    while (constraints.length && constraints[constraints.length - 1] === 0) constraints.pop();
    return [
      `${entry.type}`,
      `${space}${byte1 & 0x1f}`,
      (reversed >>> 0).toString(16),
      `${tier}${init[b + 12]}`,
      ...constraints.map((c) => c.toString(16)),
    ].join('.');
  }
  return entry.type;
}

/**
 * mp4a.OO.A (RFC 6381 §3.3): the esds's object type and, for MPEG-4 audio (0x40), the audio
 * object type from the first 5 bits of its decoder config (2: AAC-LC).
 */
function aacCodec(init: Buffer, entry: { start: number; end: number }): string {
  // An audio sample entry has 28 bytes of fixed fields before its child boxes.
  const esds = [...childBoxes(init, entry.start + 8 + 28, entry.end)].find((b) => b.type === 'esds');
  if (!esds) return 'mp4a.40.2';
  // ISO/IEC 14496-1 descriptors: a tag, a size in 7-bit groups, the payload.
  let at = esds.start + 12;
  const descriptor = (): { tag: number; body: number } | undefined => {
    if (at >= esds.end) return undefined;
    const tag = init[at++]!;
    let size = 0;
    for (let i = 0; i < 4 && at < esds.end; i++) {
      const b = init[at++]!;
      size = (size << 7) | (b & 0x7f);
      if (!(b & 0x80)) break;
    }
    return { tag, body: at };
  };
  const es = descriptor();
  if (es?.tag !== 0x03) return 'mp4a.40.2';
  const flags = init[at + 2]!;
  at += 3 + (flags & 0x80 ? 2 : 0) + (flags & 0x40 ? 1 + init[at + 3]! : 0) + (flags & 0x20 ? 2 : 0);
  const config = descriptor();
  if (config?.tag !== 0x04) return 'mp4a.40.2';
  const objectType = init[at]!;
  at += 13;
  const specific = objectType === 0x40 ? descriptor() : undefined;
  const audioObjectType = specific?.tag === 0x05 ? init[at]! >> 3 : undefined;
  return `mp4a.${objectType.toString(16)}${audioObjectType ? `.${audioObjectType}` : ''}`;
}

/** Cuts a fragmented MP4 byte stream (ffmpeg writing to a pipe) into whole top-level boxes. */
export class BoxSplitter {
  /** Bytes received but not yet a whole box; joined once a box is complete, not per chunk. */
  private parts: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly onBox: (type: string, box: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.parts.push(chunk);
    this.bytes += chunk.length;
    while (this.bytes >= 8) {
      const head = this.parts[0]!.length >= 8 ? this.parts[0]! : this.flatten();
      const size = head.readUInt32BE(0);
      if (size < 8) {
        this.parts = []; // not MP4: drop, the next run starts clean
        this.bytes = 0;
        return;
      }
      if (this.bytes < size) return;
      const all = this.flatten();
      const rest = all.subarray(size);
      this.parts = rest.length ? [rest] : [];
      this.bytes = rest.length;
      this.onBox(all.toString('latin1', 4, 8), all.subarray(0, size));
    }
  }

  private flatten(): Buffer {
    const one = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.bytes);
    this.parts = [one];
    return one;
  }
}

/** Width and height of the video track, from the init segment's tkhd (16.16 fixed point at its end). */
export function videoSize(init: Buffer): { width: number; height: number } | undefined {
  const moov = findBox(init, ['moov']);
  if (!moov) return undefined;
  for (const trak of childBoxes(init, moov.start + 8, moov.end)) {
    if (trak.type !== 'trak') continue;
    const tkhd = findBox(init, ['tkhd'], trak.start + 8, trak.end);
    if (!tkhd) continue;
    const width = init.readUInt32BE(tkhd.end - 8) >>> 16;
    const height = init.readUInt32BE(tkhd.end - 4) >>> 16;
    if (width > 0 && height > 0) return { width, height };
  }
  return undefined;
}

/**
 * Reads a fragmented MP4 byte stream, cut anywhere, as whole init segments (ftyp+moov; a new
 * one when the stream restarts) and whole fragments (moof+mdat) with their keyframe flag.
 */
export class FragmentReader {
  /** The newest init segment. */
  init: Buffer | undefined;
  private ftyp: Buffer | undefined;
  private moof: Buffer | undefined;
  private readonly splitter = new BoxSplitter((type, box) => this.onBox(type, box));

  constructor(
    private readonly on: {
      init(init: Buffer): void;
      fragment(moof: Buffer, mdat: Buffer, keyframe: boolean, track: Track['kind']): void;
    },
  ) {}

  push(chunk: Buffer): void {
    this.splitter.push(chunk);
  }

  /** Each track's kind by its id, for the newest init. */
  private kinds = new Map<number, Track['kind']>();

  private onBox(type: string, box: Buffer): void {
    if (type === 'ftyp') this.ftyp = box;
    else if (type === 'moov') {
      this.init = this.ftyp ? Buffer.concat([this.ftyp, box]) : box;
      this.kinds = new Map(tracksOf(this.init).map((t) => [t.id, t.kind]));
      this.on.init(this.init);
    } else if (type === 'moof') this.moof = box;
    else if (type === 'mdat' && this.moof) {
      const moof = this.moof;
      this.moof = undefined;
      // No init yet (a stream read from its middle): taken as video, as before tracks were told apart.
      const kind = this.kinds.get(trackIdOf(moof) ?? 0) ?? (this.kinds.size ? 'other' : 'video');
      this.on.fragment(moof, box, kind === 'video' && firstSampleIsSync(moof, this.init), kind);
    }
  }
}

export interface Sample {
  /** The sample's bytes: for H.264/H.265, NAL units each after a 4-byte length. */
  data: Buffer;
  /** Decode time, in the track's timescale. */
  dts: number;
  /** Presentation time minus decode time (B-frames make it non-zero). */
  cts: number;
  duration: number;
}

/**
 * The samples of one fragment (moof followed by its mdat), from its trun: sizes, durations and
 * composition offsets, each from the sample's own field or tfhd's or the init's defaults. Data
 * offsets are from the moof's start (default-base-is-moof, as ffmpeg writes live fragments).
 */
export function samplesOf(moof: Buffer, mdat: Buffer, init?: Buffer): Sample[] {
  const traf = findBox(moof, ['moof', 'traf']);
  const tfhd = traf && findBox(moof, ['tfhd'], traf.start + 8, traf.end);
  const trun = traf && findBox(moof, ['trun'], traf.start + 8, traf.end);
  const timing = fragmentTiming(moof, init);
  if (!traf || !tfhd || !trun || !timing) return [];
  const tfhdFlags = moof.readUInt32BE(tfhd.start + 8) & 0xffffff;
  let at = tfhd.start + 16 + (tfhdFlags & 0x1 ? 8 : 0) + (tfhdFlags & 0x2 ? 4 : 0);
  const trex = init && trexOf(init, moof.readUInt32BE(tfhd.start + 12));
  let defaultDuration = trex ? init!.readUInt32BE(trex.start + 20) : 0;
  let defaultSize = trex ? init!.readUInt32BE(trex.start + 24) : 0;
  if (tfhdFlags & 0x8) {
    defaultDuration = moof.readUInt32BE(at);
    at += 4;
  }
  if (tfhdFlags & 0x10) defaultSize = moof.readUInt32BE(at);
  const flags = moof.readUInt32BE(trun.start + 8) & 0xffffff;
  const version = moof[trun.start + 8]!;
  const count = moof.readUInt32BE(trun.start + 12);
  at = trun.start + 16;
  const dataOffset = flags & 0x1 ? moof.readInt32BE(at) : moof.length + 8;
  at += (flags & 0x1 ? 4 : 0) + (flags & 0x4 ? 4 : 0);
  let offset = dataOffset - moof.length - 8; // into the mdat's payload
  let dts = timing.start;
  const samples: Sample[] = [];
  for (let i = 0; i < count && at <= trun.end; i++) {
    const duration = flags & 0x100 ? moof.readUInt32BE(at) : defaultDuration;
    at += flags & 0x100 ? 4 : 0;
    const size = flags & 0x200 ? moof.readUInt32BE(at) : defaultSize;
    at += (flags & 0x200 ? 4 : 0) + (flags & 0x400 ? 4 : 0);
    const cts = flags & 0x800 ? (version === 1 ? moof.readInt32BE(at) : moof.readUInt32BE(at)) : 0;
    at += flags & 0x800 ? 4 : 0;
    if (offset < 0 || offset + size > mdat.length - 8) break; // a trun that does not fit its mdat
    samples.push({ data: mdat.subarray(8 + offset, 8 + offset + size), dts, cts, duration });
    offset += size;
    dts += duration;
  }
  return samples;
}

/** An H.264 track's parameter sets (SPS and PPS NAL units) from its avcC, for a decoder joining late. */
export function avcParameterSets(init: Buffer): Buffer[] {
  const video = tracksOf(init).find((t) => t.kind === 'video');
  const entry = video && sampleEntry(init, video.box);
  const avcC = entry && visualConfig(init, entry).find((b) => b.type === 'avcC');
  if (!avcC) return [];
  const units: Buffer[] = [];
  let at = avcC.start + 8 + 5;
  for (const kind of ['sps', 'pps']) {
    const count = init[at++]! & (kind === 'sps' ? 0x1f : 0xff); // the SPS count has 3 reserved bits
    for (let i = 0; i < count && at + 2 <= avcC.end; i++) {
      const size = init.readUInt16BE(at);
      units.push(init.subarray(at + 2, at + 2 + size));
      at += 2 + size;
    }
  }
  return units;
}
