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

/**
 * Splits a fragmented MP4 byte stream (ffmpeg writing to a pipe) into its header
 * (ftyp+moov) and complete fragments (moof+mdat), keeping only the newest fragment.
 */
export class FragmentTracker {
  /** Bytes received but not yet a whole box; joined once a box is complete, not per chunk. */
  private parts: Buffer[] = [];
  private bytes = 0;
  private moof: Buffer | undefined;
  private header: Buffer[] = [];
  /** ftyp+moov: what a decoder needs before any fragment. */
  init: Buffer | undefined;
  /** The newest complete fragment, as [moof, mdat]. */
  latest: { parts: Buffer[]; at: number } | undefined;

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

  private onBox(type: string, box: Buffer): void {
    if (type === 'ftyp') this.header = [box];
    else if (type === 'moov') this.init = Buffer.concat([...this.header, box]);
    else if (type === 'moof') this.moof = box;
    else if (type === 'mdat' && this.moof) {
      this.latest = { parts: [this.moof, box], at: Date.now() };
      this.moof = undefined;
    }
  }
}
