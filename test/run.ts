// Runs each test file in its own Node process (servers and ports stay apart),
// one after another, and prints one closing line: "N passed, N failed".
//   npm test                 every test/**/*.test.ts
//   npm test -- nats api     only files whose path contains one of the words
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const filters = process.argv.slice(2);
const files = readdirSync(path.join(root, 'test'), { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.test.ts'))
  .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)))
  .sort();

let passed = 0;
let failed = 0;
const failedFiles: string[] = [];
const started = Date.now();
const FILE_TIMEOUT_MS = Number(process.env['TEST_FILE_TIMEOUT_MS'] ?? 10 * 60_000);

for (const file of files) {
  const t0 = Date.now();
  const output = await new Promise<{ code: number | null; text: string }>((resolve) => {
    // Own process group, so a hung file and everything it started can be killed together.
    const child = spawn(process.execPath, ['--import', 'tsx', path.join('test', file)], {
      cwd: root,
      env: process.env,
      detached: true,
    });
    let text = '';
    const timer = setTimeout(() => {
      text += `\nkilled: still running after ${FILE_TIMEOUT_MS / 1000} s\n`;
      process.kill(-child.pid!, 'SIGKILL');
    }, FILE_TIMEOUT_MS);
    // uvu's summary ends the file; a child a failed test left running must not keep it alive.
    let ended = false;
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      if (!ended && /Duration:/.test(text)) {
        ended = true;
        setTimeout(() => child.exitCode === null && process.kill(-child.pid!, 'SIGKILL'), 3000).unref();
      }
    });
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('close', (code) => (clearTimeout(timer), resolve({ code, text })));
  });
  // uvu prints "Total: N", "Passed: N" at the end of each file.
  const total = Number(/Total:\s+(\d+)/.exec(output.text)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(output.text)?.[1] ?? 0);
  const finished = /Duration:/.test(output.text);
  const fileFailed = (output.code !== 0 && !(finished && output.code === null)) || total === 0 || ok < total;
  passed += ok;
  failed += fileFailed ? Math.max(total - ok, 1) : 0;
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`${fileFailed ? 'FAIL' : 'ok  '} ${file} (${ok}/${total}, ${seconds} s)`);
  if (fileFailed) {
    failedFiles.push(file);
    console.log(
      output.text
        .split('\n')
        .map((l) => `    ${l}`)
        .join('\n'),
    );
  }
}

console.log(
  `\n${files.length} files in ${((Date.now() - started) / 1000).toFixed(0)} s${failedFiles.length ? `; failed: ${failedFiles.join(', ')}` : ''}`,
);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || files.length === 0 ? 1 : 0);
