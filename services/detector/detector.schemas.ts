// What the detector service tells others: its statistics per camera (detector.status, health).

export interface DetectorStats {
  frames: number;
  motionFrames: number;
  inferences: number;
  dropped: number;
  inferenceMs: number | null;
  /** Frames were dropped in the last 10 s: the detector cannot keep up. */
  behind: boolean;
  activeObjects: number;
}
