// The reading view's image tools, as a radiologist uses them, in Debian's Chromium
// (headless, driven by playwright-core; never a downloaded browser); reports what happened
// as one JSON object on stdout for the Rust end-to-end test (tests/e2e/viewer_tools.rs)
// to judge.
//
//   node tests/reading-tools.mjs BASE_URL RADIOLOGIST PASSWORD STUDY_UID PRIOR_UID SCREENSHOT_DIR
//
// At 1280×800: log in, open STUDY_UID's task from the worklist; the series thumbnails load;
// zoom with a right drag and +, rotate (t), flip (h), reset (r); cine plays the CT stack
// (space) and stops; layout 1×2 (Shift+2) shows two viewports with images; the prior
// PRIOR_UID opens from the priors list in the second viewport; scrolling the first (wheel) scrolls the second (synchronised);
// a length (m) and an ellipse ROI (o) drawn with the mouse are listed with their values;
// a key image (k) is marked and the draft saved (Ctrl+S); the screenshot
// reading-tools.png; an angle (a) and a rectangle ROI (b), Delete removes the newest; synchronisation off (s) leaves the second viewport where it is;
// 2×2 (Shift+3) and back; the US clip (the other prior, multi-frame) plays in the second
// viewport (space); the help; then the same view at 1920×1080 (reading-tools-1080.png);
// the page reloaded, the key image is back with the draft.
//
// Every wait is bounded; the browser is closed whatever happens. The exit status is 0 when
// a report was written (the test decides what is acceptable), 1 when the run itself broke.

import { canvasStats, logIn, newReport, runInBrowser, screenshots, viewerState, waitForChange, waitForPicture, waitUntil } from './page-watch.mjs';

const [base, radiologist, password, studyUid, priorUid, shots] = process.argv.slice(2);
if (!base || !radiologist || !password || !studyUid || !priorUid || !shots) {
  console.error('usage: reading-tools.mjs BASE_URL RADIOLOGIST PASSWORD STUDY_UID PRIOR_UID SCREENSHOT_DIR');
  process.exit(2);
}

const STEP_MS = 60_000;
const report = newReport({ steps: {} });
const shot = screenshots(report, shots);
const url = (path) => new URL(path, base).toString();

/** The state of each viewport (its `.cell`'s data attributes). */
async function cells(page) {
  return page.$$eval('#grid .cell', (cs) =>
    cs.map((c) => ({
      cell: Number(c.dataset.cell),
      hidden: c.hidden,
      active: c.dataset.active === 'true',
      state: c.dataset.state ?? null,
      study: c.dataset.study ?? null,
      series: c.dataset.series ?? null,
      prior: c.dataset.prior ?? null,
      index: c.dataset.index === undefined ? null : Number(c.dataset.index),
      count: c.dataset.count === undefined ? null : Number(c.dataset.count),
      label: c.querySelector('.cell-label')?.textContent ?? '',
      box: (() => {
        const r = c.getBoundingClientRect();
        return { x: r.x, y: r.y, width: r.width, height: r.height };
      })(),
    })),
  );
}

async function viewerData(page) {
  return page.evaluate(() => ({ ...document.querySelector('#viewer')?.dataset }));
}

async function measurements(page) {
  return page.$$eval('#measurements li[data-tool]', (ls) => ls.map((l) => ({ tool: l.dataset.tool, value: l.dataset.value, text: l.textContent })));
}

async function drag(page, from, to, button = 'left', steps = 10) {
  // Two moves: the tools take the press where the last move over the element was.
  await page.mouse.move(from[0] - 2, from[1] - 2);
  await page.mouse.move(from[0], from[1]);
  await page.mouse.down({ button });
  for (let i = 1; i <= steps; i++) {
    await page.mouse.move(from[0] + ((to[0] - from[0]) * i) / steps, from[1] + ((to[1] - from[1]) * i) / steps);
  }
  await page.mouse.up({ button });
}

await runInBrowser(report, { stepMs: STEP_MS }, async (open) => {
  const page = await open('radiologist');

  // --- Log in, open the study's task from the worklist.
  await logIn(page, base, radiologist, password);
  await page.locator('table#worklist').waitFor();
  await page.locator(`table#worklist tr[data-study="${studyUid}"]`).click();
  await page.locator('#report-panel').waitFor();
  const ready = await waitUntil(page, () => viewerState(page), (s) => s && (s.state === 'ready' || s.state === 'error'), STEP_MS);
  report.viewer = ready;
  if (ready?.state !== 'ready') throw new Error(`the viewer is not ready: ${JSON.stringify(ready)}`);
  const initial = await waitForPicture(page);
  report.steps.initial = { state: await viewerData(page), stats: initial };

  // --- Thumbnails: one image per series, decoded.
  await waitUntil(
    page,
    () => page.$$eval('#series .thumb', (ts) => ts.every((t) => t.dataset.state !== 'loading')),
    (done) => done,
    20_000,
  );
  report.thumbnails = await page.$$eval('#series a', (as) =>
    as.map((a) => {
      const img = a.querySelector('.thumb img');
      return {
        series: a.dataset.series,
        state: a.querySelector('.thumb')?.dataset.state ?? null,
        src: img ? img.getAttribute('src')?.slice(0, 5) : null,
        naturalWidth: img ? img.naturalWidth : 0,
        complete: img ? img.complete : false,
        label: a.textContent,
      };
    }),
  );

  const canvas = page.locator('#viewport canvas').first();
  let box = await canvas.boundingBox();
  let cx = box.x + box.width / 2;
  let cy = box.y + box.height / 2;

  // --- Zoom: right drag upwards (Cornerstone's ZoomTool on the secondary button).
  const zoomBefore = (await viewerData(page)).zoom;
  await drag(page, [cx, cy], [cx, cy + 120], 'right');
  await waitUntil(page, () => viewerData(page), (d) => d.zoom !== zoomBefore, 10_000);
  const zoomed = await waitForChange(page, initial);
  report.steps.zoom = { before: zoomBefore, state: await viewerData(page), stats: zoomed };
  await page.keyboard.press('+');
  await page.waitForTimeout(200);
  report.steps.zoomKey = { state: await viewerData(page) };
  // --- Rotate and flip, then reset.
  await page.keyboard.press('t');
  await waitUntil(page, () => viewerData(page), (d) => d.rotation === '90', 5_000);
  report.steps.rotate = { state: await viewerData(page), stats: await waitForChange(page, zoomed) };
  await page.keyboard.press('h');
  await waitUntil(page, () => viewerData(page), (d) => d.flip === 'h', 5_000);
  report.steps.flip = { state: await viewerData(page), stats: await waitForChange(page, report.steps.rotate.stats) };
  await page.keyboard.press('r');
  await waitUntil(page, () => viewerData(page), (d) => d.rotation === '0' && d.flip === '' && d.zoom === zoomBefore, 5_000);
  report.steps.reset = { state: await viewerData(page), stats: await canvasStats(page) };

  // --- Cine: space plays the stack, space stops it.
  const startIndex = (await viewerState(page)).index;
  await page.focus('#viewport');
  await page.keyboard.press('Space');
  const seen = new Set([startIndex]);
  const cineDeadline = Date.now() + 10_000;
  while (seen.size < 4 && Date.now() < cineDeadline) {
    seen.add((await viewerState(page)).index);
    await page.waitForTimeout(30);
  }
  report.steps.cine = {
    playing: await page.getAttribute('.cine', 'data-playing'),
    fps: await page.inputValue('#cine-fps'),
    indicesSeen: [...seen],
  };
  await page.keyboard.press('Space');
  await page.waitForTimeout(300);
  const stoppedAt = (await viewerState(page)).index;
  await page.waitForTimeout(500);
  report.steps.cineStopped = {
    playing: await page.getAttribute('.cine', 'data-playing'),
    stoppedAt,
    after: (await viewerState(page)).index,
  };
  // Back to the first image for what follows.
  await page.keyboard.press('Home');
  await page.focus('#viewport');
  for (let i = 0; i < 12; i++) await page.keyboard.press('ArrowUp');
  await waitUntil(page, () => viewerState(page), (s) => s.index === 0, 5_000);

  // --- Layout 1×2: two viewports with images.
  await page.keyboard.press('Shift+Digit2');
  await waitUntil(page, () => cells(page), (cs) => cs[1] && !cs[1].hidden && cs[1].state === 'ready', 20_000);
  report.layout12 = {
    viewer: await viewerData(page),
    cells: await cells(page),
    left: await waitForPicture(page, 10_000, '#viewport canvas'),
    right: await waitForPicture(page, 10_000, '#viewport-2 canvas'),
  };

  // --- The priors: the CT prior opens in the second viewport.
  await page.locator('#priors[data-state="ready"]').waitFor();
  report.priors = await page.$$eval('#priors li', (ls) => ls.map((l) => ({ study: l.dataset.study ?? null, text: l.textContent })));
  await page.click(`#priors li[data-study="${priorUid}"] button`);
  await waitUntil(page, () => cells(page), (cs) => cs[1].study === priorUid && cs[1].state === 'ready', 30_000);
  const priorPicture = await waitForPicture(page, 10_000, '#viewport-2 canvas');
  report.prior = { cells: await cells(page), viewer: await viewerData(page), picture: priorPicture };

  // --- Synchronised scrolling: the wheel over the first viewport moves both.
  box = await page.locator('#viewport canvas').first().boundingBox();
  cx = box.x + box.width / 2;
  cy = box.y + box.height / 2;
  const beforeSync = await cells(page);
  const rightBefore = await canvasStats(page, '#viewport-2 canvas');
  await page.mouse.move(cx, cy);
  for (let i = 0; i < 3; i++) {
    await page.mouse.wheel(0, 120);
    await page.waitForTimeout(150);
  }
  const afterSync = await waitUntil(
    page,
    () => cells(page),
    (cs) => cs[0].index !== beforeSync[0].index && cs[1].index === cs[0].index,
    10_000,
  );
  report.sync = {
    before: beforeSync.map((c) => c.index),
    after: afterSync.map((c) => c.index),
    state: (await viewerData(page)).sync,
    rightChanged: await waitForChange(page, rightBefore, 5_000, '#viewport-2 canvas'),
    rightBefore,
  };

  // --- Measurements on the first viewport: a length and an ellipse ROI.
  await page.mouse.click(cx, cy);
  // Cornerstone holds a press within 400 ms of a click as a possible double click.
  await page.waitForTimeout(600);
  await page.keyboard.press('m');
  report.toolAfterM = (await viewerData(page)).tool;
  await drag(page, [cx - box.width * 0.3, cy + box.height * 0.12], [cx + box.width * 0.3, cy + box.height * 0.12]);
  await waitUntil(page, () => measurements(page), (ms) => ms.some((m) => m.tool === 'Length' && /mm$/.test(m.value)), 10_000);
  await page.keyboard.press('o');
  await page.waitForTimeout(600);
  await drag(page, [cx, cy], [cx + box.width * 0.035, cy + box.height * 0.06]);
  await waitUntil(page, () => measurements(page), (ms) => ms.some((m) => m.tool === 'EllipticalROI' && /mean/.test(m.value)), 10_000);
  await page.keyboard.press('c');
  await page.waitForTimeout(500);
  report.measurements = {
    list: await measurements(page),
    count: await page.textContent('#measurement-count'),
    // Cornerstone draws annotations in an SVG layer over the canvas.
    svgShapes: await page.$$eval('#viewport svg :is(line, ellipse, path, circle, polyline)', (es) => es.length),
    textBoxes: await page.$$eval('#viewport svg text', (ts) => ts.map((t) => t.textContent)),
  };

  // --- A key image, saved with the draft.
  await page.keyboard.press('k');
  await waitUntil(page, () => page.textContent('#key-image-count'), (t) => t === '1', 5_000);
  report.keyImages = {
    count: await page.textContent('#key-image-count'),
    mark: await page.textContent('#key-mark'),
    list: await page.$$eval('#key-images li[data-sop]', (ls) => ls.map((l) => ({ sop: l.dataset.sop, frame: l.dataset.frame, text: l.textContent }))),
  };
  await page.fill('#report-findings', 'Tools test findings.');
  await page.focus('#report-findings');
  await page.keyboard.press('Control+s');
  await waitUntil(page, () => page.textContent('#report-status'), (t) => /Draft saved/.test(t ?? ''), 10_000);
  report.keyImages.status = await page.textContent('#report-status');
  report.keyImages.error = await page.textContent('#report-error');
  report.keyImages.reportState = await page.getAttribute('#report-panel', 'data-state');
  const reportId = await page.getAttribute('#report-panel', 'data-report');
  if (reportId) {
    const r = await page.request.get(url(`/api/reports/${reportId}`));
    report.keyImages.saved = r.status() === 200 ? ((await r.json()).key_images ?? null) : `HTTP ${r.status()}`;
  }

  // --- The screenshot: 1×2, the measurements, the prior beside.
  await page.focus('#viewport');
  await page.mouse.move(5, 400);
  await page.waitForTimeout(400);
  await shot(page, 'reading-tools.png');

  // --- An angle (drag the first arm, click the third point) and a rectangle ROI.
  await page.keyboard.press('a');
  await page.waitForTimeout(600);
  await drag(page, [cx - box.width * 0.2, cy - box.height * 0.2], [cx, cy - box.height * 0.1]);
  await page.waitForTimeout(500);
  for (let i = 1; i <= 5; i++) await page.mouse.move(cx + box.width * 0.04 * i, cy - box.height * 0.1 - box.height * 0.02 * i);
  await page.mouse.down();
  await page.mouse.up();
  await waitUntil(page, () => measurements(page), (ms) => ms.some((m) => m.tool === 'Angle' && /°$/.test(m.value)), 10_000);
  await page.keyboard.press('b');
  await page.waitForTimeout(600);
  await drag(page, [cx + box.width * 0.1, cy + box.height * 0.02], [cx + box.width * 0.25, cy + box.height * 0.08]);
  await waitUntil(page, () => measurements(page), (ms) => ms.some((m) => m.tool === 'RectangleROI' && /mean/.test(m.value)), 10_000);
  await page.keyboard.press('c');
  await page.waitForTimeout(500);
  report.moreMeasurements = { list: await measurements(page), count: await page.textContent('#measurement-count') };
  // Delete removes the newest (the rectangle).
  await page.focus('#viewport');
  await page.keyboard.press('Delete');
  await waitUntil(page, () => page.textContent('#measurement-count'), (t) => t === '3', 5_000);
  report.afterDelete = { list: await measurements(page), count: await page.textContent('#measurement-count') };

  // --- Synchronisation off: the second viewport stays where it is.
  await page.keyboard.press('s');
  report.syncOff = { state: (await viewerData(page)).sync };
  const beforeOff = await cells(page);
  await page.mouse.move(cx, cy);
  await page.mouse.wheel(0, -120);
  await waitUntil(page, () => cells(page), (cs) => cs[0].index !== beforeOff[0].index, 5_000);
  await page.waitForTimeout(500);
  report.syncOff.before = beforeOff.map((c) => c.index);
  report.syncOff.after = (await cells(page)).map((c) => c.index);
  await page.keyboard.press('s');

  // --- 2×2, then back to 1×2.
  await page.keyboard.press('Shift+Digit3');
  await waitUntil(page, () => cells(page), (cs) => cs.every((c) => !c.hidden && c.state === 'ready'), 20_000);
  report.layout22 = { cells: await cells(page), viewer: await viewerData(page) };
  await page.click('#image-tools button[data-layout="1x2"]');
  await waitUntil(page, () => cells(page), (cs) => cs[2].hidden && cs[3].hidden, 5_000);
  report.layoutBack = { cells: await cells(page), viewer: await viewerData(page) };

  // --- The US clip (the patient's other prior, multi-frame) in the second viewport: cine.
  const usPrior = await page.$eval('#priors li[data-study]', (l) => l.dataset.study);
  await page.click(`#priors li[data-study="${usPrior}"] button`);
  await waitUntil(page, () => cells(page), (cs) => cs[1].study === usPrior && cs[1].state === 'ready', 30_000);
  const usBox = await page.locator('#viewport-2 canvas').first().boundingBox();
  await page.mouse.click(usBox.x + usBox.width / 2, usBox.y + usBox.height / 2);
  const usStart = (await cells(page))[1].index;
  await page.keyboard.press('Space');
  const usSeen = new Set([usStart]);
  const usDeadline = Date.now() + 10_000;
  while (usSeen.size < 4 && Date.now() < usDeadline) {
    usSeen.add((await cells(page))[1].index);
    await page.waitForTimeout(30);
  }
  report.usCine = {
    study: usPrior,
    cell: (await cells(page))[1],
    active: (await viewerData(page)).active,
    playing: await page.getAttribute('.cine', 'data-playing'),
    indicesSeen: [...usSeen],
    picture: await canvasStats(page, '#viewport-2 canvas'),
  };
  await page.keyboard.press('Space');
  // The CT prior back beside the study, the first viewport active.
  await page.click(`#priors li[data-study="${priorUid}"] button`);
  await waitUntil(page, () => cells(page), (cs) => cs[1].study === priorUid && cs[1].state === 'ready', 30_000);
  await page.mouse.click(cx, cy);

  // --- The help lists the tools' keys.
  await page.focus('#viewport');
  await page.keyboard.press('?');
  await page.locator('dialog#help').waitFor();
  report.help = await page.$$eval('dialog#help tr', (trs) => trs.map((t) => t.textContent));
  await page.keyboard.press('Escape');
  await page.locator('dialog#help').waitFor({ state: 'detached' });

  // --- A reading screen: 1920×1080.
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.waitForTimeout(800);
  report.at1080 = {
    cells: await cells(page),
    left: await canvasStats(page, '#viewport canvas'),
    right: await canvasStats(page, '#viewport-2 canvas'),
    scroll: await page.evaluate(() => ({ w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight })),
  };
  await shot(page, 'reading-tools-1080.png');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.waitForTimeout(500);
  report.at800 = {
    scroll: await page.evaluate(() => ({ w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight })),
    toolbar: await page.evaluate(() => {
      const r = document.querySelector('#image-tools')?.getBoundingClientRect();
      return r ? { x: r.x, y: r.y, width: r.width, height: r.height } : null;
    }),
    cells: await cells(page),
  };
  // --- The key image comes back with the draft when the view is opened again.
  await page.reload({ waitUntil: 'load' });
  await page.locator('#report-panel[data-state="draft"]').waitFor();
  report.keyImagesAfterReload = {
    count: await waitUntil(page, () => page.textContent('#key-image-count'), (t) => t === '1', 10_000),
    list: await page.$$eval('#key-images li[data-sop]', (ls) => ls.map((l) => ({ sop: l.dataset.sop, frame: l.dataset.frame }))),
  };
  await page.waitForTimeout(300);
});
