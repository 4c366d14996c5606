// Compiles the box's programs (gateway/main.ts, gateway/cli.ts) into build/ as plain JavaScript:
// one bundle each of the project's own code, the npm packages left as imports. npm start, the
// release runner and the balena image run the bundle, not TypeScript through a loader (no second
// thread, no compiling at each start); the tests run the sources.
// Usage: npm run build
import { build } from 'esbuild';
import { PROJECT_ROOT } from '../lib/project-root.ts';

export const BUILD_ENTRIES = ['gateway/main.ts', 'gateway/cli.ts'];

export async function buildBox(root = PROJECT_ROOT): Promise<void> {
  await build({
    absWorkingDir: root,
    entryPoints: BUILD_ENTRIES,
    outdir: 'build',
    outbase: '.',
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    logLevel: 'warning',
  });
}

if (import.meta.url === `file://${process.argv[1]}`) await buildBox();
