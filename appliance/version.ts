// The FogEdge software version, from package.json (one source of truth).
import { readFileSync } from 'node:fs';
import { projectPath } from '../lib/project-root.ts';

export const version: string = (JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string })
  .version;
