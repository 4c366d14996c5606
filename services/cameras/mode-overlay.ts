// A camera's settings as the site's mode makes them: the mode's entry for every camera ('*'),
// then its entry for this camera, laid over what the camera has. Nothing is written: leaving the
// mode gives the camera's own settings back.
import { ALL_CAMERAS, type CameraOverrides, type Mode } from '../modes/modes.schemas.ts';
import type { Camera } from './cameras.schemas.ts';

function lay(camera: Camera, o: CameraOverrides | undefined): Camera {
  if (!o) return camera;
  return {
    ...camera,
    detection: { ...camera.detection, ...o.detection },
    recording: { ...camera.recording, ...o.recording },
    review: { ...camera.review, ...o.review },
    ...(o.notifications === undefined ? {} : { notifications: o.notifications }),
  };
}

export function withMode(camera: Camera, mode: Mode | undefined): Camera {
  if (!mode) return camera;
  return lay(lay(camera, mode.cameras[ALL_CAMERAS]), mode.cameras[camera.id]);
}

/** The settings the mode changes on this camera, as paths (detection.enabled, notifications). */
export function modeChanges(camera: Camera, mode: Mode | undefined): string[] {
  const effective = withMode(camera, mode);
  const out: string[] = [];
  for (const group of ['detection', 'recording', 'review'] as const) {
    const before = camera[group] as Record<string, unknown>;
    const after = effective[group] as Record<string, unknown>;
    for (const key of Object.keys(after))
      if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) out.push(`${group}.${key}`);
  }
  if (effective.notifications !== camera.notifications) out.push('notifications');
  return out;
}
