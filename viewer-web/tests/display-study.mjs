// Opens a stored study in the web viewer as a person would, in Debian's Chromium (headless,
// driven by playwright-core; never a downloaded browser), and reports what happened as one
// JSON object on stdout. The Rust end-to-end test (tests/e2e/viewer.rs) runs it against a
// real `pacs serve` and judges the report.
//
//   node tests/display-study.mjs BASE_URL USER PASSWORD STUDY_UID SCREENSHOT.png [SERIES_UID]
//
// Steps: log in through the login form (a wrong password first); find the study in the study list and open it (and
// the given series, if any, from the series list); wait until the viewport shows an image;
// scroll with the mouse wheel and with the arrow key; drag to change the window; take a
// screenshot; log out. Reported: every request and its status, console messages of the page and of
// its workers, uncaught errors, Content-Security-Policy violations, dialogs (an `alert`
// from injected markup would show here), the names in the study list as displayed, and
// canvas pixel statistics after each step.
//
// Every wait is bounded; the browser is closed whatever happens. The exit status is 0 when
// a report was written (the test decides what is acceptable), 1 when the run itself broke.

import { chromium } from 'playwright-core';

const [base, username, password, studyUid, screenshot, seriesUid] = process.argv.slice(2);
if (!base || !username || !password || !studyUid || !screenshot) {
  console.error('usage: display-study.mjs BASE_URL USER PASSWORD STUDY_UID SCREENSHOT.png [SERIES_UID]');
  process.exit(2);
}

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const STEP_MS = 60_000;

const report = {
  webgl: null,
  requests: [],
  console: [],
  pageErrors: [],
  cspViolations: [],
  dialogs: [],
  studyList: [],
  imagesInStudyList: null,
  patientName: null,
  series: [],
  viewer: {},
  steps: {},
  screenshot,
};

/** Pixel statistics of the viewport's canvas: what a person would see change. */
async function canvasStats(page) {
  return page.evaluate(() => {
    const canvas = document.querySelector('#viewport canvas');
    if (!canvas || canvas.width === 0 || canvas.height === 0) return null;
    const w = canvas.width;
    const hgt = canvas.height;
    const scratch = document.createElement('canvas');
    scratch.width = w;
    scratch.height = hgt;
    const ctx = scratch.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(canvas, 0, 0);
    const px = ctx.getImageData(0, 0, w, hgt).data;
    let sum = 0;
    let sumSq = 0;
    let nonBlack = 0;
    const levels = new Set();
    const n = w * hgt;
    for (let i = 0; i < px.length; i += 4) {
      const g = (px[i] + px[i + 1] + px[i + 2]) / 3;
      sum += g;
      sumSq += g * g;
      if (g > 8) nonBlack++;
      levels.add(Math.round(g));
    }
    const mean = sum / n;
    // A 16×16 grid of mean grey levels: two renderings of the same image agree here, two
    // different slices or windows do not.
    const grid = [];
    const cells = 16;
    for (let gy = 0; gy < cells; gy++) {
      for (let gx = 0; gx < cells; gx++) {
        let s = 0;
        let c = 0;
        const x0 = Math.floor((gx * w) / cells);
        const x1 = Math.floor(((gx + 1) * w) / cells);
        const y0 = Math.floor((gy * hgt) / cells);
        const y1 = Math.floor(((gy + 1) * hgt) / cells);
        for (let y = y0; y < y1; y += 2) {
          for (let x = x0; x < x1; x += 2) {
            const i = (y * w + x) * 4;
            s += (px[i] + px[i + 1] + px[i + 2]) / 3;
            c++;
          }
        }
        grid.push(c ? Math.round(s / c) : 0);
      }
    }
    return {
      width: w,
      height: hgt,
      mean,
      stddev: Math.sqrt(Math.max(0, sumSq / n - mean * mean)),
      nonBlackFraction: nonBlack / n,
      distinctLevels: levels.size,
      grid,
    };
  });
}

async function viewerState(page) {
  return page.evaluate(() => {
    const v = document.querySelector('#viewer');
    if (!v) return null;
    return {
      state: v.dataset.state ?? null,
      series: v.dataset.series ?? null,
      index: v.dataset.index === undefined ? null : Number(v.dataset.index),
      count: v.dataset.count === undefined ? null : Number(v.dataset.count),
      voi: v.dataset.voi ?? null,
      slice: document.querySelector('#slice')?.textContent ?? '',
      window: document.querySelector('#voi')?.textContent ?? '',
      status: document.querySelector('#view-status')?.textContent ?? '',
    };
  });
}

/** Waits until `pred(state)` holds, or STEP_MS; returns the last state either way. */
async function waitForState(page, pred) {
  const deadline = Date.now() + STEP_MS;
  let s = await viewerState(page);
  while (!(s && pred(s)) && Date.now() < deadline) {
    await page.waitForTimeout(100);
    s = await viewerState(page);
  }
  return s;
}

/** Waits until the canvas shows something (not one uniform colour), or STEP_MS. */
async function waitForPicture(page) {
  const deadline = Date.now() + STEP_MS;
  let st = await canvasStats(page);
  while (!(st && st.stddev > 1) && Date.now() < deadline) {
    await page.waitForTimeout(200);
    st = await canvasStats(page);
  }
  return st;
}

/** Waits until the canvas differs from `before` (the grid), or a few seconds. */
async function waitForChange(page, before) {
  const deadline = Date.now() + 10_000;
  let st = await canvasStats(page);
  while (st && before && JSON.stringify(st.grid) === JSON.stringify(before.grid) && Date.now() < deadline) {
    await page.waitForTimeout(100);
    st = await canvasStats(page);
  }
  return st;
}

async function step(page, name, before) {
  const stats = before ? await waitForChange(page, before) : await waitForPicture(page);
  report.steps[name] = { state: await viewerState(page), stats };
  return stats;
}

let browser;
let exitCode = 0;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // WebGL through SwiftShader (software), as a machine without a GPU has it: Cornerstone
    // renders on its GPU path then, as on a workstation.
    args: ['--enable-unsafe-swiftshader', '--use-angle=swiftshader', '--ignore-gpu-blocklist'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: 'en-GB' });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);

  page.on('response', (res) => {
    const req = res.request();
    report.requests.push({
      method: req.method(),
      url: res.url(),
      status: res.status(),
      contentType: res.headers()['content-type'] ?? null,
      accept: req.headers()['accept'] ?? null,
    });
  });
  page.on('requestfailed', (req) => {
    report.requests.push({ method: req.method(), url: req.url(), status: 0, failure: req.failure()?.errorText ?? '' });
  });
  page.on('console', (msg) => {
    report.console.push({ from: 'page', type: msg.type(), text: msg.text(), url: msg.location()?.url ?? '' });
  });
  page.on('worker', (worker) => {
    worker.on('console', (msg) =>
      report.console.push({ from: 'worker', type: msg.type(), text: msg.text(), url: msg.location()?.url ?? '' }),
    );
  });
  page.on('pageerror', (err) => report.pageErrors.push(String(err && err.stack ? err.stack : err)));
  page.on('dialog', async (dialog) => {
    report.dialogs.push({ type: dialog.type(), message: dialog.message() });
    await dialog.dismiss().catch(() => {});
  });
  // Violations are events in the page (and console errors, recorded above).
  await page.exposeFunction('__reportCspViolation', (v) => report.cspViolations.push(v));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__reportCspViolation({
        directive: e.effectiveDirective,
        blocked: e.blockedURI,
        source: e.sourceFile,
        line: e.lineNumber,
        sample: e.sample,
      });
    });
  });

  await page.goto(new URL('/', base).toString(), { waitUntil: 'load' });
  report.webgl = await page.evaluate(() => {
    const gl = document.createElement('canvas').getContext('webgl2');
    if (!gl) return null;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    return info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : 'webgl2';
  });

  // Log in through the form: first with a wrong password (the user must be told), then
  // with the right one.
  await page.locator('form#login').waitFor();
  await page.fill('#username', username);
  await page.fill('#password', `${password}-wrong`);
  await page.click('form#login button[type=submit]');
  await page.locator('#login-status .error').waitFor();
  report.wrongPasswordMessage = await page.textContent('#login-status .error');
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('form#login button[type=submit]');

  // The study list: what it shows as names, and that no markup from the data became elements.
  await page.locator('table#studies').waitFor();
  report.studyList = await page.$$eval('table#studies tbody tr', (rows) =>
    rows.map((r) => ({ study: r.dataset.study, name: r.querySelector('.patient-name')?.textContent ?? '' })),
  );
  report.imagesInStudyList = await page.locator('table#studies img').count();

  // Open the study as a person would: its link in the list.
  await page.click(`table#studies tr[data-study="${studyUid}"] .patient-name a`);
  await page.locator('#patient-name').filter({ hasText: /\S/ }).waitFor();
  report.patientName = await page.textContent('#patient-name');
  await page.locator('#series a').first().waitFor();
  report.series = await page.$$eval('#series a', (as) => as.map((a) => ({ series: a.dataset.series, label: a.textContent })));
  if (seriesUid) {
    await page.click(`#series a[data-series="${seriesUid}"]`);
  }
  const wanted = seriesUid ?? report.series[0]?.series;
  const ready = await waitForState(
    page,
    (s) => (!seriesUid || s.series === wanted) && (s.state === 'ready' || s.state === 'error'),
  );
  report.viewer = ready;
  if (ready?.state === 'ready') {
    const canvas = page.locator('#viewport canvas').first();
    const box = await canvas.boundingBox();
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    const initial = await step(page, 'initial');

    if ((ready.count ?? 0) > 2) {
      // Mouse wheel over the image: next slice.
      await page.mouse.move(cx, cy);
      await page.mouse.wheel(0, 120);
      await waitForState(page, (s) => s.index !== ready.index);
      const wheeled = await step(page, 'afterWheel', initial);
      // Arrow key in the focused viewport: one more.
      const before = (await viewerState(page)).index;
      await page.focus('#viewport');
      await page.keyboard.press('ArrowDown');
      await waitForState(page, (s) => s.index !== before);
      await step(page, 'afterArrowKey', wheeled);
    }

    // Left drag: window width and centre change.
    const voiBefore = (await viewerState(page)).voi;
    const shown = await canvasStats(page);
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    for (let i = 1; i <= 10; i++) await page.mouse.move(cx + i * 12, cy + i * 6);
    await page.mouse.up();
    await waitForState(page, (s) => s.voi !== voiBefore);
    await step(page, 'afterWindowDrag', shown);
  }
  // Let late console messages (a failing decode in a worker) arrive before judging.
  await page.waitForTimeout(500);
  await page.screenshot({ path: screenshot, fullPage: false });
  // Log out: back to the login form.
  await page.click('#user button');
  await page.locator('form#login').waitFor();
  report.loggedOut = true;
} catch (e) {
  report.fatal = String(e && e.stack ? e.stack : e);
  exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
process.stdout.write(JSON.stringify(report) + '\n');
process.exit(exitCode);
