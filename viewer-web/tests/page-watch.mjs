// What the browser tests share: how a test runs (`runInBrowser`), logging in through the
// form, and what they record about a page: every response and failed request, console
// messages of the page and its workers, uncaught errors, Content-Security-Policy
// violations and dialogs (an `alert` from injected markup would show there), screenshots,
// and canvas pixel statistics of the viewport.

import { join } from 'node:path';

import { chromium } from 'playwright-core';

/** What every browser test reports, with the test's own fields (`extra`). */
export function newReport(extra = {}) {
  return { requests: [], console: [], pageErrors: [], cspViolations: [], dialogs: [], ...extra };
}

/**
 * Runs a browser test: launches Chromium and calls `body(open)`, where `open(who)` makes a
 * page in a context of its own (1280×800, en-GB, then `context`) that records into `report`
 * as `who` and waits at most `stepMs` for any step. Then, whatever happened, closes the
 * browser, writes `report` to stdout as one JSON line and exits: 0 when the report is
 * complete, 1 with `report.fatal` when `body` threw (the run itself broke).
 */
export async function runInBrowser(report, { stepMs, context = {} }, body) {
  let browser;
  let exitCode = 0;
  try {
    browser = await chromium.launch(launchOptions());
    const open = async (who = '') => {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-GB', ...context });
      const page = await ctx.newPage();
      page.setDefaultTimeout(stepMs);
      await watch(page, report, who);
      return page;
    };
    await body(open);
  } catch (e) {
    report.fatal = String(e && e.stack ? e.stack : e);
    exitCode = 1;
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  // Exit once the whole report is written (a pipe takes it in 64 KiB pieces).
  process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(exitCode));
}

/** `shot(page, name)`: the page as seen, into `dir`/`name`, listed in `report.screenshots`. */
export function screenshots(report, dir) {
  report.screenshots ??= {};
  return async (page, name) => {
    const path = join(dir, name);
    await page.screenshot({ path, fullPage: false });
    report.screenshots[name] = path;
  };
}

/** Logs in through the form on BASE's first page; resolves once the top bar names the user. */
export async function logIn(page, base, username, password) {
  await page.goto(new URL('/', base).toString(), { waitUntil: 'load' });
  await page.locator('form#login').waitFor();
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('form#login button[type=submit]');
  await page.locator('#who').waitFor();
}

/** Starts recording into `report` (requests, console, pageErrors, cspViolations, dialogs). */
export async function watch(page, report, who = '') {
  page.on('response', (res) => {
    const req = res.request();
    report.requests.push({
      who,
      method: req.method(),
      url: res.url(),
      status: res.status(),
      contentType: res.headers()['content-type'] ?? null,
      accept: req.headers()['accept'] ?? null,
    });
  });
  page.on('requestfailed', (req) => {
    report.requests.push({ who, method: req.method(), url: req.url(), status: 0, failure: req.failure()?.errorText ?? '' });
  });
  page.on('console', (msg) => {
    report.console.push({ who, from: 'page', type: msg.type(), text: msg.text(), url: msg.location()?.url ?? '' });
  });
  page.on('worker', (worker) => {
    worker.on('console', (msg) =>
      report.console.push({ who, from: 'worker', type: msg.type(), text: msg.text(), url: msg.location()?.url ?? '' }),
    );
  });
  page.on('pageerror', (err) => report.pageErrors.push(`${who ? `${who}: ` : ''}${String(err && err.stack ? err.stack : err)}`));
  page.on('dialog', async (dialog) => {
    report.dialogs.push({ who, type: dialog.type(), message: dialog.message() });
    await dialog.dismiss().catch(() => {});
  });
  // Violations are events in the page (and console errors, recorded above).
  await page.exposeFunction('__reportCspViolation', (v) => report.cspViolations.push({ who, ...v }));
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
}

/** Pixel statistics of the viewport's canvas: what a person would see change. */
export async function canvasStats(page, selector = '#viewport canvas') {
  return page.evaluate((selector) => {
    const canvas = document.querySelector(selector);
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
  }, selector);
}

/** The viewer's state as its data attributes and overlay show it. */
export async function viewerState(page) {
  return page.evaluate(() => {
    const v = document.querySelector('#viewer');
    if (!v) return null;
    return {
      state: v.dataset.state ?? null,
      series: v.dataset.series ?? null,
      index: v.dataset.index === undefined ? null : Number(v.dataset.index),
      count: v.dataset.count === undefined ? null : Number(v.dataset.count),
      loaded: v.dataset.loaded === undefined ? null : Number(v.dataset.loaded),
      loading: document.querySelector('#loading')?.textContent ?? '',
      voi: v.dataset.voi ?? null,
      invert: v.dataset.invert ?? null,
      slice: document.querySelector('#slice')?.textContent ?? '',
      window: document.querySelector('#voi')?.textContent ?? '',
      status: document.querySelector('#view-status')?.textContent ?? '',
    };
  });
}

/** Waits until `pred()` (async) holds, or `ms`; returns its last value either way. */
export async function waitUntil(page, probe, pred, ms = 60_000) {
  const deadline = Date.now() + ms;
  let v = await probe();
  while (!pred(v) && Date.now() < deadline) {
    await page.waitForTimeout(100);
    v = await probe();
  }
  return v;
}

/** Waits until the canvas shows something (not one uniform colour). */
export async function waitForPicture(page, ms = 60_000, selector = '#viewport canvas') {
  return waitUntil(page, () => canvasStats(page, selector), (st) => st && st.stddev > 1, ms);
}

/** Waits until the canvas differs from `before` (the grid), or a few seconds. */
export async function waitForChange(page, before, ms = 10_000, selector = '#viewport canvas') {
  return waitUntil(
    page,
    () => canvasStats(page, selector),
    (st) => !(st && before && JSON.stringify(st.grid) === JSON.stringify(before.grid)),
    ms,
  );
}

/** The browser: Debian's Chromium, headless, WebGL through SwiftShader. */
export function launchOptions() {
  return {
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    // WebGL through SwiftShader (software), as a machine without a GPU has it: Cornerstone
    // renders on its GPU path then, as on a workstation.
    args: ['--enable-unsafe-swiftshader', '--use-angle=swiftshader', '--ignore-gpu-blocklist'],
  };
}
