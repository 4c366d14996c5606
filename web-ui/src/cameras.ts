// The cameras as GET /api/v1/cameras answers them, kept current by the box's live updates; the
// pages that list or pick cameras share this one hook.
import { api } from './api.ts';
import { useUpdates } from './updates.ts';
import { useLoad } from './components/ui.tsx';
import type { CameraView } from '../../services/cameras/cameras.schemas.ts';

/** A camera as GET /api/v1/cameras answers it. */
export type Camera = CameraView;

export function useCameras() {
  const cameras = useLoad(() => api<Camera[]>('/cameras'));
  useUpdates(['camera.'], () => void cameras.reload());
  return cameras;
}
