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

import { canvasStats, newReport, runInBrowser, viewerState, waitForChange, waitForPicture, waitUntil } from './page-watch.mjs';

const [base, username, password, studyUid, screenshot, seriesUid] = process.argv.slice(2);
if (!base || !username || !password || !studyUid || !screenshot) {
  console.error('usage: display-study.mjs BASE_URL USER PASSWORD STUDY_UID SCREENSHOT.png [SERIES_UID]');
  process.exit(2);
}

const STEP_MS = 60_000;

const report = newReport({
  webgl: null,
  studyList: [],
  imagesInStudyList: null,
  patientName: null,
  series: [],
  viewer: {},
  steps: {},
  screenshot,
});

/** Waits until `pred(state)` holds, or STEP_MS; returns the last state either way. */
function waitForState(page, pred) {
  return waitUntil(page, () => viewerState(page), (s) => s && pred(s), STEP_MS);
}

async function step(page, name, before) {
  const stats = before ? await waitForChange(page, before) : await waitForPicture(page);
  report.steps[name] = { state: await viewerState(page), stats };
  return stats;
}

await runInBrowser(report, { stepMs: STEP_MS, context: { viewport: { width: 1280, height: 860 } } }, async (open) => {
  const page = await open();

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

  // The landing page depends on the role (a clinic user's is the portal): the study list
  // is one click away in the top bar.
  await page.locator('#nav a[data-page="studies"]').click();
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
    // The rest of the series loaded behind the first image (the stack prefetch): the
    // viewer says so, and its "Loading n / N" mark is gone.
    report.allLoaded = await waitForState(page, (s) => s.loaded === s.count);
  }
  // Let late console messages (a failing decode in a worker) arrive before judging.
  await page.waitForTimeout(500);
  await page.screenshot({ path: screenshot, fullPage: false });
  // Log out: back to the login form.
  await page.click('#user button');
  await page.locator('form#login').waitFor();
  report.loggedOut = true;
});
