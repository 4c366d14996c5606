// The project's folder, for the files it ships beside its code (the web UI, the model, the demo
// clip, the USP .proto files). Found by walking up to package.json, so it is the same from the
// sources (run by tsx) and from the compiled bundle in build/, whose own place differs.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'fogedge')
      return dir;
    if (path.dirname(dir) === dir) throw new Error(`FogEdge's package.json not found above ${from}`);
  }
}

export const PROJECT_ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));

/** A path inside the project, e.g. projectPath('web-ui', 'dist'). */
export const projectPath = (...parts: string[]): string => path.join(PROJECT_ROOT, ...parts);
