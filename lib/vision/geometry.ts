// Zones and masks are polygons in frame-relative coordinates (0..1), so they survive a
// change of resolution; an object is placed at the bottom centre of its box (its feet).
import type { Box } from './yolox.ts';

export type Point = [number, number];
export type Polygon = Point[];

export function insidePolygon([x, y]: Point, polygon: Polygon): boolean {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i]!;
    const [xj, yj] = polygon[j]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Bottom centre of a box, relative to the frame. */
export function footOf(box: Box, width: number, height: number): Point {
  return [(box[0] + box[2]) / 2 / width, box[3] / height];
}

/** A width x height bitmap, 1 where any polygon covers the pixel centre. */
export function rasterize(polygons: Polygon[], width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height);
  if (polygons.length === 0) return out;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p: Point = [(x + 0.5) / width, (y + 0.5) / height];
      if (polygons.some((poly) => insidePolygon(p, poly))) out[y * width + x] = 1;
    }
  }
  return out;
}
