// bench/viewer's browser half for pacs: Debian's Chromium, headless (playwright-core from
// viewer-web/node_modules, launched as viewer-web/tests/page-watch.mjs launches it), against
// a running `pacs serve` on loopback. Prints one JSON line per measured run on stdout.
//
//   node pacs.mjs open     BASE USER PASSWORD STUDY_UID RUNS   time to first image, whole series
//   node pacs.mjs url      BASE USER PASSWORD STUDY_UID RUNS   the same, opened by its URL
//   node pacs.mjs fetchall BASE USER PASSWORD STUDY_UID RUNS   the frames fetched, no viewer
//   node pacs.mjs worklist BASE USER PASSWORD COUNT RUNS       the worklist of COUNT tasks
//
// Every run has a fresh browser context (no cookies, an empty HTTP cache, a new page and so
// a new Cornerstone cache); the login is not timed. Times are performance.now() inside the
// page (milliseconds), so the driver's own round trips are not in them.
//
// open: the worklist is shown, the task's row is selected (arrow keys) and Enter pressed.
//   t0 = the Enter keydown's timeStamp. firstImage = the first Cornerstone IMAGE_RENDERED
//   after t0 at which the viewport's canvas is not blank (grey-level standard deviation of a
//   64×64 reduction > 1). allLoaded = when the viewer reports every slice loaded (its
//   stack prefetch: decoded and cached, so that any slice scrolled to shows at once; the
//   page is left alone until then) − t0: the whole series scrollable. Then paging:
//   ArrowDown keydown events are dispatched to the viewport, each as soon as the previous
//   slice was rendered, until the last slice is rendered; allSlices = the last slice's
//   IMAGE_RENDERED − t0 (every slice has then been displayed once).
// url: the same from a navigation to #/read/<task>/<study> (t0 = navigation start), as a
//   viewer opened by its URL (the Orthanc comparison is measured this way).
// fetchall: a logged-in page fetches all frames (fetch, 6 at a time — Chromium's
//   connections per host over HTTP/1.1 — cache: no-store); the time to move the series'
//   pixel data into the browser without decoding or drawing any of it.
// worklist: a navigation to /#/worklist/mine (t0 = navigation start): rowsInDom = when the
//   table holds COUNT rows; painted = the second animation frame after that; and the
//   /api/worklist?view=mine request (Resource Timing). Then the same by the top bar's link
//   from the study list (t0 = the click).

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { chromium } = await import(join(ROOT, 'viewer-web/node_modules/playwright-core/index.mjs'));
const { launchOptions } = await import(join(ROOT, 'viewer-web/tests/page-watch.mjs'));

const [mode, base, user, password, arg, runsArg] = process.argv.slice(2);
const RUNS = Number(runsArg);
if (!['open', 'url', 'fetchall', 'worklist'].includes(mode) || !base || !user || !password || !arg || !(RUNS > 0)) {
  console.error('usage: pacs.mjs open|url|fetchall|worklist BASE USER PASSWORD STUDY_UID|COUNT RUNS');
  process.exit(2);
}
const STEP_MS = 120_000;
const url = (p) => new URL(p, base).toString();

// In every page, before its scripts: the probes the measurements read.
function probes() {
  performance.setResourceTimingBufferSize(5000);
  const b = (window.__bench = { t0: null, firstImage: null, allLoaded: null, rendered: 0, lastRender: null, errors: [] });
  const blank = () => {
    const c = document.querySelector('#viewport canvas');
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
  b.blank = blank;
  // Cornerstone's events do not bubble; a capturing listener on the document sees them.
  document.addEventListener(
    'CORNERSTONE_IMAGE_RENDERED',
    () => {
      const now = performance.now();
      b.rendered++;
      b.lastRender = now;
      if (b.firstImage === null && (b.t0 !== null || b.fromNavigation) && !blank()) b.firstImage = now;
      for (const w of b.renderWaiters?.splice(0) ?? []) w(now);
    },
    true,
  );
  // When the viewer reports every slice of its series loaded (`data-loaded` = `data-count`:
  // decoded, in Cornerstone's cache, so scrolling to any of them is instant).
  new MutationObserver((records) => {
    for (const r of records) {
      const v = r.target;
      if (v.id !== 'viewer' || b.allLoaded) continue;
      const count = Number(v.dataset.count);
      if (count > 0 && Number(v.dataset.loaded) === count) b.allLoaded = performance.now();
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-loaded', 'data-count'] });
  document.addEventListener(
    'keydown',
    (e) => {
      if (e.key === 'Enter' && e.target?.closest?.('table#worklist') && b.t0 === null) b.t0 = e.timeStamp;
    },
    true,
  );
}

async function freshPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-GB' });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('response', (r) => {
    // Before the login the app asks who is logged in: 401 is its answer then.
    if (r.status() >= 400 && !(r.status() === 401 && r.url().endsWith('/api/me'))) {
      errors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
    }
  });
  await page.addInitScript(probes);
  return { context, page, errors };
}

async function logIn(page) {
  await page.goto(url('/'), { waitUntil: 'load' });
  await page.locator('form#login').waitFor();
  await page.fill('#username', user);
  await page.fill('#password', password);
  await page.click('form#login button[type=submit]');
  await page.locator('#who').waitFor();
}

/** Pages through the whole stack from the first image, in the page; times in page ms. */
async function scrollAll(page) {
  return page.evaluate(async (stepMs) => {
    const b = window.__bench;
    const viewer = document.querySelector('#viewer');
    const el = document.querySelector('#viewport');
    const count = Number(viewer.dataset.count);
    const nextRender = () => new Promise((res) => (b.renderWaiters ??= []).push(res));
    const start = performance.now();
    const steps = [];
    const marks = [];
    let last = start;
    for (let i = Number(viewer.dataset.index) + 1; i < count; i++) {
      const t = performance.now();
      const before = performance.getEntriesByType('resource').length;
      el.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowDown', bubbles: true, cancelable: true }));
      const deadline = t + stepMs;
      // The slice is shown when a render happened and the viewer reports its index.
      for (;;) {
        const at = await Promise.race([nextRender(), new Promise((res) => setTimeout(() => res(null), 5000))]);
        await new Promise((res) => setTimeout(res, 0));
        if (at !== null && Number(viewer.dataset.index) === i) {
          last = at;
          steps.push(at - t);
          marks.push({ t, at, before });
          break;
        }
        if (performance.now() > deadline) return { error: `slice ${i} not rendered within ${stepMs} ms`, count };
      }
    }
    steps.sort((x, y) => x - y);
    // Where a step's time goes: keydown → the frame's request, its request → response end
    // (network and server), response end → rendered (decode, hand-off, draw).
    const all = performance.getEntriesByType('resource');
    const parts = { toRequest: [], request: [], toRender: [] };
    for (const m of marks) {
      const e = all.slice(m.before).find((x) => /\/frames\/\d+$/.test(x.name) && x.startTime >= m.t - 1);
      if (!e) continue;
      parts.toRequest.push(e.startTime - m.t);
      parts.request.push(e.responseEnd - e.startTime);
      parts.toRender.push(m.at - e.responseEnd);
    }
    const med = (xs) => (xs.sort((x, y) => x - y), xs[Math.floor(xs.length / 2)] ?? null);
    return {
      stepToRequestMs: med(parts.toRequest),
      stepRequestMs: med(parts.request),
      stepToRenderMs: med(parts.toRender),
      count,
      lastIndex: Number(viewer.dataset.index),
      scrollStart: start,
      lastRender: last,
      stepMedian: steps[Math.floor(steps.length / 2)] ?? null,
      stepP90: steps[Math.floor(steps.length * 0.9)] ?? null,
      blankAtEnd: b.blank(),
    };
  }, STEP_MS);
}

function frameEntries(page) {
  return page.evaluate(() =>
    performance
      .getEntriesByType('resource')
      .filter((e) => /\/frames\/\d+$/.test(e.name))
      .map((e) => ({ start: e.startTime, end: e.responseEnd, bytes: e.encodedBodySize })),
  );
}

async function waitFirstImage(page) {
  await page.waitForFunction(() => window.__bench.firstImage !== null, null, { timeout: STEP_MS, polling: 50 });
}

async function runOpen(browser, studyUid, i) {
  const { context, page, errors } = await freshPage(browser);
  try {
    await logIn(page);
    await page.locator('table#worklist').waitFor();
    const row = page.locator(`table#worklist tbody tr[data-study="${studyUid}"]`);
    await row.waitFor();
    await page.locator('table#worklist tbody tr[aria-selected="true"]').waitFor();
    // Select the row with the keyboard (as a radiologist does), then Enter.
    await page.keyboard.press('Home');
    for (let n = 0; n < 2000; n++) {
      if ((await page.getAttribute('table#worklist tbody tr[aria-selected="true"]', 'data-study')) === studyUid) break;
      await page.keyboard.press('ArrowDown');
    }
    await page.waitForTimeout(300);
    await page.keyboard.press('Enter');
    await waitFirstImage(page);
    await page.waitForFunction(() => document.querySelector('#viewer')?.dataset.state === 'ready', null, { timeout: STEP_MS });
    const first = await page.evaluate(() => {
      const b = window.__bench;
      return {
        t0: b.t0,
        firstImage: b.firstImage,
        framesRequestedByThen: performance.getEntriesByType('resource').filter((e) => /\/frames\/\d+$/.test(e.name) && e.startTime <= b.firstImage).length,
      };
    });
    // The whole series loaded behind the first image (the stack prefetch), untouched.
    await page.waitForFunction(() => window.__bench.allLoaded !== null, null, { timeout: STEP_MS, polling: 50 });
    const allLoaded = await page.evaluate(() => window.__bench.allLoaded);
    const scroll = await scrollAll(page);
    const frames = await frameEntries(page);
    return {
      kind: 'open',
      run: i,
      firstImageMs: first.firstImage - first.t0,
      allLoadedMs: allLoaded - first.t0,
      allSlicesMs: scroll.error ? null : scroll.lastRender - first.t0,
      scrollOnlyMs: scroll.error ? null : scroll.lastRender - scroll.scrollStart,
      stepMedianMs: scroll.stepMedian,
      stepP90Ms: scroll.stepP90,
      stepToRequestMs: scroll.stepToRequestMs,
      stepRequestMs: scroll.stepRequestMs,
      stepToRenderMs: scroll.stepToRenderMs,
      slices: scroll.count,
      lastIndex: scroll.lastIndex,
      blankAtEnd: scroll.blankAtEnd,
      framesRequestedAtFirstImage: first.framesRequestedByThen,
      framesFetched: frames.length,
      frameBytes: frames.reduce((s, f) => s + f.bytes, 0),
      scrollError: scroll.error ?? null,
      errors,
    };
  } finally {
    await context.close();
  }
}

async function runUrl(browser, studyUid, i) {
  const { context, page, errors } = await freshPage(browser);
  try {
    await logIn(page);
    const items = await page.evaluate(async () => (await fetch('/api/worklist?view=mine&limit=1000')).json());
    const task = (items.find((x) => x.study_instance_uid === studyUid) ?? {}).task_id;
    if (task === undefined) throw new Error('the task is not in the worklist');
    // A new page of the same context (session cookie, empty memory cache of the new page).
    const p2 = await context.newPage();
    p2.setDefaultTimeout(STEP_MS);
    p2.on('pageerror', (e) => errors.push(String(e)));
    await p2.addInitScript(probes);
    await p2.addInitScript(() => {
      window.__bench.fromNavigation = true;
      window.__bench.t0 = 0;
    });
    await page.close();
    await p2.goto(url(`/#/read/${task}/${studyUid}`), { waitUntil: 'commit' });
    await waitFirstImage(p2);
    await p2.waitForFunction(() => document.querySelector('#viewer')?.dataset.state === 'ready', null, { timeout: STEP_MS });
    const first = await p2.evaluate(() => window.__bench.firstImage);
    await p2.waitForFunction(() => window.__bench.allLoaded !== null, null, { timeout: STEP_MS, polling: 50 });
    const allLoaded = await p2.evaluate(() => window.__bench.allLoaded);
    const scroll = await scrollAll(p2);
    return {
      kind: 'url',
      run: i,
      firstImageMs: first,
      allLoadedMs: allLoaded,
      allSlicesMs: scroll.error ? null : scroll.lastRender,
      stepMedianMs: scroll.stepMedian,
      slices: scroll.count,
      lastIndex: scroll.lastIndex,
      scrollError: scroll.error ?? null,
      errors,
    };
  } finally {
    await context.close();
  }
}

async function runFetchAll(browser, studyUid, i) {
  const { context, page, errors } = await freshPage(browser);
  try {
    await logIn(page);
    const r = await page.evaluate(async (study) => {
      const series = await (await fetch(`/dicom-web/studies/${study}/series`, { headers: { Accept: 'application/dicom+json' } })).json();
      const se = series[0]['0020000E'].Value[0];
      const meta = await (await fetch(`/dicom-web/studies/${study}/series/${se}/metadata`, { headers: { Accept: 'application/dicom+json' } })).json();
      const urls = meta.map((m) => `/dicom-web/studies/${study}/series/${se}/instances/${m['00080018'].Value[0]}/frames/1`);
      const t = performance.now();
      let bytes = 0;
      let next = 0;
      const worker = async () => {
        while (next < urls.length) {
          const u = urls[next++];
          const res = await fetch(u, {
            cache: 'no-store',
            headers: { Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' },
          });
          if (!res.ok) throw new Error(`${res.status} ${u}`);
          const n = (await res.arrayBuffer()).byteLength;
          bytes += n;
        }
      };
      await Promise.all(Array.from({ length: 6 }, worker));
      return { frames: urls.length, bytes, ms: performance.now() - t };
    }, studyUid);
    return { kind: 'fetchall', run: i, ...r, errors };
  } finally {
    await context.close();
  }
}

async function runWorklist(browser, count, i) {
  const { context, page, errors } = await freshPage(browser);
  try {
    await logIn(page);
    await page.locator('table#worklist').waitFor();
    await page.waitForFunction((n) => document.querySelector('table#worklist')?.dataset.count === String(n), count, { timeout: STEP_MS });
    const p2 = await context.newPage();
    p2.setDefaultTimeout(STEP_MS);
    p2.on('pageerror', (e) => errors.push(String(e)));
    await p2.addInitScript(probes);
    // Watch for the table's rows from the first script on.
    await p2.addInitScript((n) => {
      const b = window.__bench;
      const seen = () => {
        const t = document.querySelector('table#worklist');
        if (b.rowsInDom == null && t && t.querySelectorAll('tbody tr').length >= n) {
          b.rowsInDom = performance.now();
          requestAnimationFrame(() => requestAnimationFrame(() => (b.painted = performance.now())));
        }
      };
      new MutationObserver(seen).observe(document, { childList: true, subtree: true });
    }, count);
    await page.close();
    await p2.goto(url('/#/worklist/mine'), { waitUntil: 'commit' });
    await p2.waitForFunction(() => window.__bench.painted != null, null, { timeout: STEP_MS, polling: 50 });
    const load = await p2.evaluate(() => {
      const api = performance.getEntriesByType('resource').find((e) => e.name.includes('/api/worklist?view=mine'));
      const nav = performance.getEntriesByType('navigation')[0];
      return {
        rows: document.querySelectorAll('table#worklist tbody tr').length,
        rowsInDom: window.__bench.rowsInDom,
        painted: window.__bench.painted,
        domContentLoaded: nav?.domContentLoadedEventEnd ?? null,
        apiStart: api?.startTime ?? null,
        apiMs: api ? api.responseEnd - api.startTime : null,
        apiTtfbMs: api ? api.responseStart - api.requestStart : null,
        apiBytes: api?.encodedBodySize ?? null,
      };
    });
    // The same by the top bar: from the study list back to the worklist (the app loaded).
    await p2.goto(url('/#/studies'));
    await p2.waitForFunction(() => !document.querySelector('table#worklist'), null, { timeout: STEP_MS });
    await p2.waitForTimeout(500);
    const spa = await p2.evaluate(async (n) => {
      performance.clearResourceTimings();
      const t0 = performance.now();
      location.hash = '#/worklist/mine';
      const rowsInDom = await new Promise((res) => {
        const check = () => {
          const t = document.querySelector('table#worklist');
          if (t && t.querySelectorAll('tbody tr').length >= n) {
            obs.disconnect();
            res(performance.now());
          }
        };
        const obs = new MutationObserver(check);
        obs.observe(document, { childList: true, subtree: true });
        check();
      });
      const painted = await new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(() => res(performance.now()))));
      const api = performance.getEntriesByType('resource').find((e) => e.name.includes('/api/worklist?view=mine'));
      return {
        rowsInDom: rowsInDom - t0,
        painted: painted - t0,
        apiMs: api ? api.responseEnd - api.startTime : null,
        apiTtfbMs: api ? api.responseStart - api.requestStart : null,
      };
    }, count);
    return { kind: 'worklist', run: i, count, load, spa, errors };
  } finally {
    await context.close();
  }
}

let browser;
let exit = 0;
try {
  browser = await chromium.launch(launchOptions());
  for (let i = 1; i <= RUNS; i++) {
    let r;
    if (mode === 'open') r = await runOpen(browser, arg, i);
    else if (mode === 'url') r = await runUrl(browser, arg, i);
    else if (mode === 'fetchall') r = await runFetchAll(browser, arg, i);
    else r = await runWorklist(browser, Number(arg), i);
    r.chromium = browser.version();
    console.log(JSON.stringify(r));
  }
} catch (e) {
  console.error(`pacs.mjs ${mode}: ${e && e.stack ? e.stack : e}`);
  exit = 1;
} finally {
  await browser?.close().catch(() => {});
}
process.exit(exit);
