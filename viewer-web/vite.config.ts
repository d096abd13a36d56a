import { defineConfig } from 'vite';

// The archive (`pacs serve`) serves the built files: index.html at `/`, everything else
// under `/assets/` (reading-workstation-api/src/viewer.rs). Its Content-Security-Policy
// allows scripts, workers and WebAssembly from its own origin only, so nothing may be
// inlined: no data: URIs for assets, no inline scripts.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2022',
    assetsInlineLimit: 0,
    // Cornerstone (vtk.js) is large; one viewer bundle is expected.
    chunkSizeWarningLimit: 6000,
  },
  worker: {
    // The image loader's decode worker is an ES module that imports the codecs.
    format: 'es',
  },
  optimizeDeps: {
    // Dev server only: the loader's worker and wasm URLs must stay relative to the package.
    exclude: ['@cornerstonejs/dicom-image-loader'],
    include: ['dicom-parser'],
  },
  server: {
    // `npm run dev` against a local `pacs serve` on the default port.
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/dicom-web': 'http://127.0.0.1:8080',
    },
  },
});
