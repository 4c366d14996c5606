// Cheap motion detection that gates object detection: small grayscale frames, a running
// average background, a threshold, one dilation, connected regions as boxes. No motion,
// no inference.
import { rasterize, type Polygon } from './geometry.ts';
import type { Box, Frame } from './yolox.ts';

export interface MotionOptions {
  /** Grey-level difference that counts as change (1..255): lower is more sensitive. */
  threshold: number;
  /** Smallest region that counts as motion, in % of the frame. */
  minAreaPercent: number;
  /** Areas where motion is ignored (trees, a busy road, a timestamp overlay). */
  masks: Polygon[];
  /** How fast the background follows the scene, per frame (default 0.1): fewer frames a second want more. */
  backgroundRate?: number;
}

/** More than this share of the frame changing at once is light, not motion (a cloud, IR switching on). */
const LIGHTING_CHANGE_SHARE = 0.6;
const SHRINK = 2;

export class MotionDetector {
  private background: Float32Array | undefined;
  private mask: Uint8Array | undefined;
  private w = 0;
  private h = 0;
  /** The last frame changed nearly everywhere at once: a new scene, or the light changed. */
  sceneChanged = false;

  constructor(private readonly options: MotionOptions) {}

  /** Boxes (in frame pixels) of the regions that moved since the background. */
  detect(frame: Frame): Box[] {
    const w = Math.floor(frame.width / SHRINK);
    const h = Math.floor(frame.height / SHRINK);
    if (w !== this.w || h !== this.h) {
      this.w = w;
      this.h = h;
      this.background = undefined;
      this.mask = rasterize(this.options.masks, w, h);
    }
    const gray = grayBlurred(frame, w, h);
    const bg = this.background;
    this.sceneChanged = false;
    if (!bg) {
      this.background = Float32Array.from(gray);
      return [];
    }
    const changed = new Uint8Array(w * h);
    let count = 0;
    const mask = this.mask!;
    const rate = this.options.backgroundRate ?? 0.1;
    for (let i = 0; i < gray.length; i++) {
      const g = gray[i]!;
      if (!mask[i] && Math.abs(g - bg[i]!) > this.options.threshold) {
        changed[i] = 1;
        count++;
      }
      bg[i] = bg[i]! + (g - bg[i]!) * rate;
    }
    if (count > gray.length * LIGHTING_CHANGE_SHARE) {
      this.sceneChanged = true;
      this.background = Float32Array.from(gray);
      return [];
    }
    if (count === 0) return [];
    const grown = dilate(changed, w, h);
    const minArea = (w * h * this.options.minAreaPercent) / 100;
    return regions(grown, w, h)
      .filter((r) => r.area >= minArea)
      .map((r) => [r.x1 * SHRINK, r.y1 * SHRINK, (r.x2 + 1) * SHRINK, (r.y2 + 1) * SHRINK] as Box);
  }
}

/** Luma of 2x2 blocks, then a 3x3 box blur against noise (separable: rows, then columns). */
function grayBlurred(frame: Frame, w: number, h: number): Uint8Array {
  const src = frame.data;
  const stride = frame.width * 3;
  const small = new Uint16Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0, i = y * 2 * stride, o = y * w; x < w; x++, i += 6, o++) {
      const j = i + stride; // the row below
      small[o] =
        (src[i]! * 77 +
          src[i + 1]! * 150 +
          src[i + 2]! * 29 +
          src[i + 3]! * 77 +
          src[i + 4]! * 150 +
          src[i + 5]! * 29 +
          src[j]! * 77 +
          src[j + 1]! * 150 +
          src[j + 2]! * 29 +
          src[j + 3]! * 77 +
          src[j + 4]! * 150 +
          src[j + 5]! * 29) >>
        10;
    }
  }
  const rows = new Uint16Array(w * h);
  for (let y = 0; y < h; y++) {
    const o = y * w;
    for (let x = 0; x < w; x++) {
      const l = x > 0 ? small[o + x - 1]! : small[o + x]!;
      const r = x < w - 1 ? small[o + x + 1]! : small[o + x]!;
      rows[o + x] = l + small[o + x]! + r;
    }
  }
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    const up = y > 0 ? -w : 0;
    const down = y < h - 1 ? w : 0;
    for (let x = 0, o = y * w; x < w; x++, o++) out[o] = (rows[o + up]! + rows[o]! + rows[o + down]!) / 9;
  }
  return out;
}

function dilate(src: Uint8Array, w: number, h: number): Uint8Array {
  const out = new Uint8Array(src.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!src[y * w + x]) continue;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < h && xx >= 0 && xx < w) out[yy * w + xx] = 1;
        }
      }
    }
  }
  return out;
}

/** 4-connected regions of set pixels, with their bounding boxes. */
function regions(bits: Uint8Array, w: number, h: number) {
  const seen = new Uint8Array(bits.length);
  const out: Array<{ x1: number; y1: number; x2: number; y2: number; area: number }> = [];
  const stack: number[] = [];
  for (let start = 0; start < bits.length; start++) {
    if (!bits[start] || seen[start]) continue;
    const r = { x1: w, y1: h, x2: 0, y2: 0, area: 0 };
    stack.push(start);
    seen[start] = 1;
    while (stack.length) {
      const i = stack.pop()!;
      const x = i % w;
      const y = (i - x) / w;
      r.area++;
      if (x < r.x1) r.x1 = x;
      if (x > r.x2) r.x2 = x;
      if (y < r.y1) r.y1 = y;
      if (y > r.y2) r.y2 = y;
      for (const n of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1]) {
        if (n >= 0 && bits[n] && !seen[n]) {
          seen[n] = 1;
          stack.push(n);
        }
      }
    }
    out.push(r);
  }
  return out;
}
