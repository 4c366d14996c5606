// Types for stream-throttle (it ships none): a token bucket shared by many streams.
declare module 'stream-throttle' {
  import type { Transform, TransformOptions } from 'node:stream';
  export interface ThrottleOptions extends TransformOptions {
    /** Bytes per second. */
    rate: number;
    /** Largest piece let through at once, bytes (default rate / 10). */
    chunksize?: number;
  }
  export class Throttle extends Transform {
    constructor(options: ThrottleOptions);
  }
  export class ThrottleGroup {
    constructor(options: ThrottleOptions);
    throttle(options?: TransformOptions): Throttle;
  }
}
