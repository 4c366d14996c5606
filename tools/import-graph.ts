// The import graph of the project's own code, room by room, and the layout rule it must keep:
//   lib/                      shared code; imports only lib/
//   services/<name>/          one service; imports lib/, appliance/, its own folder, and other
//                             services' contracts (<other>/<other>.schemas.ts), never their internals
//   services/*/*.schemas.ts   contracts; import only lib/ and other contracts
//   appliance/                configuration, data root, releases; imports lib/ and contracts
//   camera-agent/             the camera's own program; imports lib/ and itself
//   gateway/                  composition: the HTTP API, the node's wiring; imports contracts,
//                             and services' *.service.ts only from gateway/services.ts
//   web-ui/src/               the browser app; imports lib/ and contracts
// `npm run graph` prints the room-to-room arrows; test/layout.test.ts fails on a broken rule.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..');
const SOURCES = ['lib', 'services', 'appliance', 'camera-agent', 'gateway', 'web-ui/src'];
const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)|^import\s+['"](\.{1,2}\/[^'"]+)['"]/gm;

export interface Import {
  from: string;
  to: string;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(ROOT, dir))) {
    const rel = path.join(dir, name);
    if (name === 'node_modules' || name === 'dist') continue;
    if (statSync(path.join(ROOT, rel)).isDirectory()) out.push(...sourceFiles(rel));
    else if (/\.(ts|tsx|mjs)$/.test(name)) out.push(rel);
  }
  return out;
}

export function imports(): Import[] {
  const out: Import[] = [];
  for (const from of SOURCES.flatMap(sourceFiles)) {
    for (const m of readFileSync(path.join(ROOT, from), 'utf8').matchAll(IMPORT)) {
      out.push({ from, to: path.normalize(path.join(path.dirname(from), (m[1] ?? m[2] ?? m[3])!)) });
    }
  }
  return out;
}

/** services/<name>, web-ui, or the top folder. */
export const roomOf = (file: string) => {
  const [top, second] = file.split('/');
  return top === 'services' ? `services/${second}` : top === 'web-ui' ? 'web-ui' : top!;
};
const isContract = (file: string) => /^services\/([^/]+)\/\1\.schemas\.ts$/.test(file);
const isServiceEntry = (file: string) => /^services\/([^/]+)\/\1\.service\.ts$/.test(file);

/** Why this import breaks the layout rule, or null. */
export function breach({ from, to }: Import): string | null {
  const a = roomOf(from);
  const b = roomOf(to);
  if (a === b) return null;
  if (b === 'lib') return null;
  if (a === 'lib') return 'lib/ is shared code: it imports only lib/';
  if (!['lib', 'services', 'appliance', 'camera-agent', 'gateway', 'web-ui'].includes(b.split('/')[0]!))
    return `${to} is outside the project's sources`;
  if (isContract(from) && !isContract(to)) return 'a contract (*.schemas.ts) imports only lib/ and other contracts';
  if (a === 'camera-agent') return 'the camera agent is its own program: it imports only lib/';
  if (b === 'gateway') return 'only the gateway wires services together: nothing imports gateway/';
  if (b === 'camera-agent') return 'the camera agent is its own program: share its code through lib/';
  if (b.startsWith('services/')) {
    if (isContract(to)) return null;
    if (from === 'gateway/services.ts' && isServiceEntry(to)) return null;
    return `${to} is inside the ${b.slice('services/'.length)} service: use its contract (${b}/${b.slice('services/'.length)}.schemas.ts) or the bus`;
  }
  if (b === 'appliance' && a !== 'web-ui') return null;
  return `${a} may not import ${b}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arrows = new Map<string, number>();
  for (const i of imports()) {
    const a = roomOf(i.from);
    const b = roomOf(i.to);
    if (a !== b) arrows.set(`${a} -> ${b}`, (arrows.get(`${a} -> ${b}`) ?? 0) + 1);
  }
  for (const [arrow, n] of [...arrows].sort()) console.log(`${arrow}  (${n})`);
  const broken = imports().filter((i) => breach(i));
  console.log(`\n${arrows.size} room-to-room arrows; ${broken.length} imports break the layout rule`);
  for (const i of broken) console.log(`  ${i.from} -> ${i.to}: ${breach(i)}`);
}
