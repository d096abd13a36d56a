import { defineConfig } from 'vite';

// The archive (`pacs serve`) serves the built files: index.html at `/`, everything else
// under `/assets/` (reading-workstation-api/src/viewer.rs). Its Content-Security-Policy
// allows scripts, workers and WebAssembly from its own origin only, so nothing may be
// inlined: no data: URIs for assets, no inline scripts.
export default defineConfig({
  base: '/',
  resolve: {
    alias: [
      // The loader's colour JPEG baseline decoder goes through a `data:` URL, which the CSP
      // blocks: src/jpeg-baseline-color.ts does the same without one.
      {
        find: /^\.\/decodeJPEGBaseline8BitColor\.js$/,
        replacement: decodeURIComponent(new URL('./src/jpeg-baseline-color.ts', import.meta.url).pathname),
      },
    ],
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2022',
    assetsInlineLimit: 0,
    // Cornerstone (vtk.js) is large; one viewer bundle is expected.
    chunkSizeWarningLimit: 6000,
    rollupOptions: {
      // No "plugin timings" report in every build log.
      checks: { pluginTimings: false },
      onwarn(warning, warn) {
        // The codecs' Emscripten glue imports Node's `fs` and `path` in branches that run
        // under Node only, and vtk.js's XML reader (unused here) Node's `url`: Vite leaves
        // them out of the browser bundle, as it should. Other warnings are shown.
        const known = /Module "(fs|path|url)" has been externalized for browser compatibility, imported by "[^"]*node_modules\/(@cornerstonejs\/codec-[a-z0-9-]+|@oozcitak\/url)\//;
        if (known.test(warning.message)) return;
        warn(warning);
      },
    },
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
