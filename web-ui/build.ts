// Builds the web UI (vite) when web-ui/dist is missing or older than its sources: npm start and
// npm test call it, so a fresh clone and a changed page both just work. --force always builds.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));
const stamp = path.join(root, 'dist', 'index.html');
const SOURCES = ['src', 'public', 'index.html', 'vite.config.ts', '../lib/permissions.ts', '../package-lock.json'];

function newest(p: string): number {
  const full = path.resolve(root, p);
  if (!existsSync(full)) return 0;
  const s = statSync(full);
  if (!s.isDirectory()) return s.mtimeMs;
  return Math.max(0, ...readdirSync(full).map((f) => newest(path.join(p, f))));
}

const force = process.argv.includes('--force');
if (force || !existsSync(stamp) || Math.max(...SOURCES.map(newest)) > statSync(stamp).mtimeMs) {
  await build({ configFile: path.join(root, 'vite.config.ts'), logLevel: 'warn' });
  console.log(`web UI built into ${path.relative(process.cwd(), path.join(root, 'dist'))}`);
}
