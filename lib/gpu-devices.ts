// The GPUs this box could use, by their device files: what the detector's accelerators need
// before they are tried (an onnxruntime execution provider, an ffmpeg hwaccel).
import { existsSync, readdirSync } from 'node:fs';

/** The first GPU render node (/dev/dri/renderD*): VAAPI, QSV, Vulkan and WebGPU open one. */
export function renderNode(): string | undefined {
  const dri = '/dev/dri';
  const node = existsSync(dri) ? readdirSync(dri).find((f) => f.startsWith('renderD')) : undefined;
  return node ? `${dri}/${node}` : undefined;
}

/** Whether an NVIDIA GPU is here (CUDA, TensorRT). */
export function nvidiaGpu(): boolean {
  return existsSync('/dev/nvidia0');
}
