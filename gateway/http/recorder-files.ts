// The recorder's files (segments, clips) as HTTP answers: streamed over the bus from whichever node
// records, with byte ranges, so the gateway needs no share of that node's disk.
import { Readable } from 'node:stream';
import type { Context } from 'hono';
import type { ServiceBroker } from 'moleculer';
import { CLIP_NAME } from '../../services/recorder/recorder.schemas.ts';
import { callAs, type HttpEnv } from './context.ts';

export interface Clip {
  name: string;
  bytes: number;
}

/** One "bytes=" range of an HTTP Range header; undefined: the whole file (also for multi-range). */
function byteRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '');
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  // A suffix longer than the file asks for all of it (RFC 9110 14.1.2); "-0" asks for nothing.
  if (m[1] === '' && Number(m[2]) === 0) return 'unsatisfiable';
  const [start, end] =
    m[1] === ''
      ? [Math.max(0, size - Number(m[2])), size - 1]
      : [Number(m[1]), m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)];
  return start < 0 || start > end || start >= size ? 'unsatisfiable' : { start, end };
}

/** A file of the recorder (a segment or a clip), whole or the range asked for. */
export async function sendRecorderFile(
  c: Context<HttpEnv>,
  broker: ServiceBroker,
  kind: 'segment' | 'clip',
  name: string,
  headers: Record<string, string>,
) {
  const { bytes } = await callAs<{ bytes: number }>(broker, c, 'recorder.fileSize', { kind, name });
  const range = byteRange(c.req.header('range'), bytes);
  if (range === 'unsatisfiable') return c.body(null, 416, { 'content-range': `bytes */${bytes}` });
  const base = { ...headers, 'accept-ranges': 'bytes' };
  if (bytes === 0) return c.body(null, 200, { ...base, 'content-length': '0' });
  const { start, end } = range ?? { start: 0, end: bytes - 1 };
  const stream = await callAs<Readable>(broker, c, 'recorder.file', { kind, name, start, end });
  const body = Readable.toWeb(stream) as ReadableStream;
  const length = { 'content-length': String(end - start + 1) };
  return range
    ? c.body(body, 206, { ...base, ...length, 'content-range': `bytes ${start}-${end}/${bytes}` })
    : c.body(body, 200, { ...base, ...length });
}

/** A clip the recorder made, as a download. */
export function sendClip(c: Context<HttpEnv>, broker: ServiceBroker, clip: Clip) {
  if (!CLIP_NAME.test(clip.name)) throw new Error(`unexpected clip name ${clip.name}`);
  return sendRecorderFile(c, broker, 'clip', clip.name, {
    'content-type': 'video/mp4',
    'content-disposition': `attachment; filename="${clip.name}"`,
  });
}
