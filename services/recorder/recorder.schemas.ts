// What the recorder tells others: recorded segments (the recording.segment event, sync, playback)
// and clip files (cached exports, named by what they hold).

/** One recorded file of a camera. */
export interface Segment {
  camera: string;
  path: string; // relative to the media folder
  start: number; // ms since epoch
  end: number;
  bytes: number;
}

export interface Range {
  start: number;
  end: number;
}

export interface ClipRequest {
  camera: string;
  from: number; // ms
  to: number;
}

/** Clip files are named by what they hold, so a repeated request reuses the file. */
export const clipName = (r: ClipRequest) => `${r.camera}-${r.from}-${r.to}.mp4`;
export const CLIP_NAME = /^[a-z0-9][a-z0-9-]{0,31}-\d{13}-\d{13}\.mp4$/;
