// bench/viewer's browser half for Orthanc's web viewer (Debian's orthanc-webviewer, 2.8,
// Cornerstone 0.11): the same Chromium, the same probes as pacs.mjs as far as the viewer
// allows. Prints one JSON line per run on stdout.
//
//   node orthanc.mjs BASE ORTHANC_SERIES_ID RUNS
//
// Each run: a fresh browser context (empty HTTP cache), a navigation to
// BASE/web-viewer/app/viewer.html?series=ID (t0 = navigation start: the viewer has no
// worklist or study list to open it from; Orthanc Explorer's "Orthanc Web Viewer" button
// opens this URL in a new window). firstImage = the first CornerstoneImageRendered at which
// the canvas is not blank (as pacs.mjs). Then the whole series: the viewer's own mouse-wheel
// handler is called (a jQuery "mousewheel" event, what a wheel notch runs), each as soon as
// the previous slice was rendered, until the last slice is rendered; allSlices = that
// render − t0. The viewer loads on demand (no prefetch) with synchronous requests, in its
// default quality (jpeg95: the plugin decodes the slice and sends an 8-bit JPEG at quality
// 95 — lossy; pacs sends the stored 16-bit pixels).

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { chromium } = await import(join(ROOT, 'viewer-web/node_modules/playwright-core/index.mjs'));
const { launchOptions } = await import(join(ROOT, 'viewer-web/tests/page-watch.mjs'));

const [base, series, runsArg] = process.argv.slice(2);
const RUNS = Number(runsArg);
if (!base || !series || !(RUNS > 0)) {
  console.error('usage: orthanc.mjs BASE ORTHANC_SERIES_ID RUNS');
  process.exit(2);
}
const STEP_MS = 120_000;

function probes() {
  performance.setResourceTimingBufferSize(5000);
  const b = (window.__bench = { firstImage: null, rendered: 0, lastRender: null });
  b.blank = () => {
    const c = document.querySelector('#dicomImage canvas');
    if (!c || !c.width || !c.height) return true;
    const s = (b.scratch ??= document.createElement('canvas'));
    s.width = 64;
    s.height = 64;
    const ctx = s.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(c, 0, 0, 64, 64);
    const px = ctx.getImageData(0, 0, 64, 64).data;
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < px.length; i += 4) {
      const g = (px[i] + px[i + 1] + px[i + 2]) / 3;
      sum += g;
      sq += g * g;
    }
    const n = px.length / 4;
    const mean = sum / n;
    return Math.sqrt(Math.max(0, sq / n - mean * mean)) <= 1;
  };
  // Registered before jQuery's own ready handler (this script runs before the page's).
  document.addEventListener(
    'DOMContentLoaded',
    () => {
      window.jQuery(document).on('CornerstoneImageRendered', () => {
        const now = performance.now();
        b.rendered++;
        b.lastRender = now;
        if (b.firstImage === null && !b.blank()) b.firstImage = now;
      });
    },
    true,
  );
}

let browser;
let exit = 0;
try {
  browser = await chromium.launch(launchOptions());
  for (let i = 1; i <= RUNS; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-GB' });
    try {
      const page = await context.newPage();
      page.setDefaultTimeout(STEP_MS);
      const errors = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('dialog', async (d) => {
        errors.push(`dialog: ${d.message()}`);
        await d.dismiss().catch(() => {});
      });
      page.on('response', (r) => {
        if (r.status() >= 400) errors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
      });
      await page.addInitScript(probes);
      await page.goto(new URL(`/web-viewer/app/viewer.html?series=${series}`, base).toString(), { waitUntil: 'commit' });
      await page.waitForFunction(() => window.__bench?.firstImage != null, null, { timeout: STEP_MS, polling: 50 });
      const r = await page.evaluate(async (stepMs) => {
        const b = window.__bench;
        const $ = window.jQuery;
        const el = $('#dicomImage');
        const count = $('#slider').slider('option', 'max') + 1;
        const first = b.firstImage;
        const start = performance.now();
        const steps = [];
        let last = start;
        for (let i = 1; i < count; i++) {
          const before = b.rendered;
          const t = performance.now();
          el.trigger($.Event('mousewheel', { originalEvent: { wheelDelta: -120, detail: 0, preventDefault() {}, stopPropagation() {} } }));
          while (b.rendered === before) {
            if (performance.now() - t > stepMs) return { error: `slice ${i} not rendered within ${stepMs} ms`, count };
            await new Promise((res) => setTimeout(res, 1));
          }
          last = b.lastRender;
          steps.push(last - t);
        }
        steps.sort((x, y) => x - y);
        const images = performance.getEntriesByType('resource').filter((e) => e.name.includes('/web-viewer/instances/'));
        const req = images.map((e) => e.responseEnd - e.startTime).sort((x, y) => x - y);
        return {
          requestMedian: req[Math.floor(req.length / 2)] ?? null,
          count,
          first,
          allSlices: last,
          scrollOnly: last - start,
          stepMedian: steps[Math.floor(steps.length / 2)] ?? null,
          stepP90: steps[Math.floor(steps.length * 0.9)] ?? null,
          imagesFetched: images.length,
          imageBytes: images.reduce((s, e) => s + e.encodedBodySize, 0),
          blankAtEnd: b.blank(),
          slider: $('#slider').slider('option', 'value'),
        };
      }, STEP_MS);
      console.log(
        JSON.stringify({
          kind: 'orthanc',
          run: i,
          firstImageMs: r.first ?? null,
          allSlicesMs: r.error ? null : r.allSlices,
          scrollOnlyMs: r.error ? null : r.scrollOnly,
          stepMedianMs: r.stepMedian ?? null,
          stepP90Ms: r.stepP90 ?? null,
          requestMedianMs: r.requestMedian ?? null,
          slices: r.count,
          lastIndex: r.slider ?? null,
          imagesFetched: r.imagesFetched ?? null,
          imageBytes: r.imageBytes ?? null,
          blankAtEnd: r.blankAtEnd ?? null,
          scrollError: r.error ?? null,
          errors,
          chromium: browser.version(),
        }),
      );
    } finally {
      await context.close();
    }
  }
} catch (e) {
  console.error(`orthanc.mjs: ${e && e.stack ? e.stack : e}`);
  exit = 1;
} finally {
  await browser?.close().catch(() => {});
}
process.exit(exit);
