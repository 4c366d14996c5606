// Builds the web UI into web-ui/dist, which the gateway serves. `npx vite web-ui` runs a dev
// server that sends /api and the WebSockets to a box on localhost:8080.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

const box = process.env['FOGEDGE_BOX'] ?? 'http://localhost:8080';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  plugins: [preact()],
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', reportCompressedSize: true },
  server: { proxy: { '/api': { target: box, ws: true, changeOrigin: false } } },
});
