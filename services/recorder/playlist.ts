// HLS VOD playlist (RFC 8216) of recorded segments. Each segment file is its own fMP4: its
// header is the init section (EXT-X-MAP with a byte range) and the rest its media segment;
// timestamps restart in every file, hence a discontinuity between files (§4.3.2.3).
import type { Segment } from './recorder.schemas.ts';
import { initLength } from '../../lib/media/fragmented-mp4.ts';

export async function vodPlaylist(
  segments: Segment[],
  /** Where a segment's file is (the hot disk or the archive). */
  locate: (s: Segment) => string,
  urlOf: (s: Segment) => string,
): Promise<string> {
  const lines = [
    '#EXTM3U',
    '#EXT-X-VERSION:7',
    '#EXT-X-PLAYLIST-TYPE:VOD',
    '#EXT-X-MEDIA-SEQUENCE:0',
    '#EXT-X-INDEPENDENT-SEGMENTS',
  ];
  const longest = Math.max(1, ...segments.map((s) => (s.end - s.start) / 1000));
  lines.push(`#EXT-X-TARGETDURATION:${Math.ceil(longest)}`);
  let first = true;
  for (const s of segments) {
    const init = await initLength(locate(s));
    if (init <= 0 || init >= s.bytes) continue; // nothing playable in it
    if (!first) lines.push('#EXT-X-DISCONTINUITY');
    first = false;
    const url = urlOf(s);
    lines.push(
      `#EXT-X-MAP:URI="${url}",BYTERANGE="${init}@0"`,
      `#EXT-X-PROGRAM-DATE-TIME:${new Date(s.start).toISOString()}`,
      `#EXTINF:${((s.end - s.start) / 1000).toFixed(3)},`,
      `#EXT-X-BYTERANGE:${s.bytes - init}@${init}`,
      url,
    );
  }
  lines.push('#EXT-X-ENDLIST');
  return lines.join('\n') + '\n';
}
