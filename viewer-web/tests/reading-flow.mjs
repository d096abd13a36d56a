// A whole reading, as the people involved do it, in Debian's Chromium (headless, driven by
// playwright-core; never a downloaded browser); reports what happened as one JSON object
// on stdout. The Rust end-to-end test (tests/e2e/reading_flow.rs) runs it against a real
// `pacs serve` whose routing made the task, and judges the report.
//
//   node tests/reading-flow.mjs BASE_URL RADIOLOGIST DOCTOR_A DOCTOR_B PASSWORD STUDY_UID UPLOAD.dcm SCREENSHOT_DIR
//
// 1. The radiologist logs in and lands on the worklist: the study's task is there.
// 2. In a second browser, the township doctor of the sending clinic logs in (the portal),
//    writes a preliminary impression of the study, and uploads UPLOAD.dcm (STOW-RS): its
//    task appears in the radiologist's worklist without a reload (live feed). The
//    radiologist claims the pool's task from the Pool tab.
// 3. The radiologist selects the task with the arrow keys and opens it with Enter; scrolls
//    the CT (wheel, arrow key), drags the window, presses preset 2 (lung) and i (invert),
//    checking the canvas pixels after each; gives the verdict on the preliminary impression,
//    writes findings and impression, saves the draft (Ctrl+S), signs (Ctrl+Enter → the
//    confirmation → Sign), signs an addendum, opens the help (?), goes back to the worklist
//    (w), and signs the uploaded study with a critical finding; logs out.
// 4. The township doctor, still in the portal, sees the report arrive (state "reported",
//    the impression) and its PDF link, and acknowledges the critical finding; another
//    clinic's doctor does not see the study.
// Screenshots at 1280×800: worklist.png, reading.png, portal.png in SCREENSHOT_DIR.
//
// Every wait is bounded; the browser is closed whatever happens. The exit status is 0 when
// a report was written (the test decides what is acceptable), 1 when the run itself broke.

import { readFileSync } from 'node:fs';
import { canvasStats, logIn as logInAt, newReport, runInBrowser, screenshots, viewerState, waitForChange, waitForPicture, waitUntil } from './page-watch.mjs';

const [base, radiologist, doctorA, doctorB, password, studyUid, upload, shots] = process.argv.slice(2);
if (!base || !radiologist || !doctorA || !doctorB || !password || !studyUid || !upload || !shots) {
  console.error('usage: reading-flow.mjs BASE_URL RADIOLOGIST DOCTOR_A DOCTOR_B PASSWORD STUDY_UID UPLOAD.dcm SCREENSHOT_DIR');
  process.exit(2);
}

const STEP_MS = 60_000;
const PRELIMINARY = 'Pneumonia right base? 右下肺炎?';
const FINDINGS = 'Consolidation of the right lower lobe with air bronchograms. No effusion.';
const IMPRESSION = 'Right lower lobe pneumonia.';
const ADDENDUM = 'Addendum: small right pleural effusion on review of the lower slices.';

const report = newReport({ liveFrames: [], steps: {} });
const shot = screenshots(report, shots);

const url = (path) => new URL(path, base).toString();

const logIn = (page, username) => logInAt(page, base, username, password);

async function logOut(page) {
  await page.click('#user button');
  await page.locator('form#login').waitFor();
}

async function worklistRows(page) {
  return page.$$eval('table#worklist tbody tr', (rows) =>
    rows.map((r) => ({
      task: Number(r.dataset.task),
      study: r.dataset.study,
      priority: r.dataset.priority,
      selected: r.getAttribute('aria-selected') === 'true',
      name: r.querySelector('.patient-name span')?.textContent ?? '',
      cells: Array.from(r.querySelectorAll('td')).map((td) => td.textContent),
      countdownColor: getComputedStyle(r.querySelector('.countdown')).color,
      priorityColor: getComputedStyle(r.querySelector('.badge.priority')).backgroundColor,
    })),
  );
}

async function portalRows(page) {
  return page.$$eval('table#portal-studies tbody tr', (rows) =>
    rows.map((r) => ({
      study: r.dataset.study,
      state: r.dataset.state,
      name: r.querySelector('.patient-name')?.textContent ?? '',
      cells: Array.from(r.querySelectorAll('td')).map((td) => td.textContent),
    })),
  );
}

async function step(page, name, before) {
  const stats = before ? await waitForChange(page, before) : await waitForPicture(page);
  report.steps[name] = { state: await viewerState(page), stats };
  return stats;
}

await runInBrowser(report, { stepMs: STEP_MS }, async (open) => {
  /** A page of its own for `who`, whose live-feed frames are recorded too. */
  const newPage = async (who) => {
    const page = await open(who);
    page.on('websocket', (ws) => {
      ws.on('framereceived', (f) => {
        try {
          const e = JSON.parse(f.payload);
          report.liveFrames.push({ who, id: e.id, kind: e.kind, study: e.study_instance_uid });
        } catch {
          report.liveFrames.push({ who, raw: String(f.payload).slice(0, 200) });
        }
      });
    });
    return page;
  };
  const rad = await newPage('radiologist');
  const docA = await newPage('doctor-a');

  // --- 1. The radiologist's worklist: the task the routing made.
  await logIn(rad, radiologist);
  report.radiologistLanding = new URL(rad.url()).hash;
  await rad.locator('table#worklist').waitFor();
  let rows = await waitUntil(rad, () => worklistRows(rad), (r) => r.some((x) => x.study === studyUid), STEP_MS);
  report.worklistBefore = rows;
  // The shown tab's list comes first; the other tabs' counts fill in as their lists come.
  report.worklistTabs = await waitUntil(
    rad,
    () =>
      rad.$$eval('.tabs .tab', (ts) =>
        ts.map((t) => ({ view: t.dataset.view, selected: t.getAttribute('aria-selected'), text: t.textContent })),
      ),
    (ts) => ts.every((t) => /\(\d+\)$/.test(t.text)),
    10_000,
  );
  report.liveStatus = await waitUntil(
    rad,
    () => rad.getAttribute('#live-status', 'data-status'),
    (s) => s === 'live',
    10_000,
  );

  // --- 2. The township doctor: the portal, a preliminary impression, an upload.
  await logIn(docA, doctorA);
  report.doctorLanding = new URL(docA.url()).hash;
  await docA.locator('table#portal-studies').waitFor();
  report.portalBefore = await waitUntil(docA, () => portalRows(docA), (r) => r.some((x) => x.study === studyUid), 10_000);
  await docA.click(`table#portal-studies tr[data-study="${studyUid}"]`);
  await docA.locator('#preliminary-text').waitFor();
  await docA.fill('#preliminary-text', PRELIMINARY);
  // Urgent: the routine task becomes urgent.
  await docA.check('#preliminary-urgent');
  await docA.click('#save-preliminary');
  await docA.locator('#preliminary-list').waitFor();
  report.preliminaryShown = await docA.textContent('#preliminary-list');

  const me = await (await docA.request.get(url('/api/me'))).json();
  const boundary = 'reading-flow-boundary-4711';
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
    readFileSync(upload),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const stow = await docA.request.post(url('/dicom-web/studies'), {
    headers: {
      'Content-Type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
      Accept: 'application/dicom+json',
      'X-CSRF-Token': me.csrf_token,
    },
    data: body,
  });
  report.stowStatus = stow.status();
  const uploadedAt = Date.now();

  // The upload's task reaches the radiologist's open worklist by itself.
  const countBefore = rows.length;
  rows = await waitUntil(rad, () => worklistRows(rad), (r) => r.length > countBefore, 25_000);
  report.liveArrivalMs = rows.length > countBefore ? Date.now() - uploadedAt : null;
  report.worklist = rows;
  report.uploadedStudy = rows.find((x) => !report.worklistBefore.some((y) => y.study === x.study))?.study ?? null;
  report.imagesInWorklist = await rad.locator('table#worklist img').count();

  // The pool: a task nobody was routed to, claimed from there into "Mine".
  await rad.click('.tabs a[data-view="pool"]');
  await rad.locator('table#worklist[data-view="pool"]').waitFor();
  report.pool = await waitUntil(rad, () => worklistRows(rad), (r) => r.length > 0, 10_000);
  const pooled = report.pool[0];
  if (pooled) {
    await rad.click(`table#worklist tr[data-task="${pooled.task}"] button.claim`);
    report.poolAfterClaim = await waitUntil(rad, () => worklistRows(rad), (r) => !r.some((x) => x.task === pooled.task), 10_000);
  }
  await rad.click('.tabs a[data-view="mine"]');
  await rad.locator('table#worklist[data-view="mine"]').waitFor();
  rows = await waitUntil(
    rad,
    () => worklistRows(rad),
    (r) => !pooled || r.some((x) => x.task === pooled.task),
    10_000,
  );
  report.mineAfterClaim = rows;
  await rad.waitForTimeout(300);
  await shot(rad, 'worklist.png');

  // --- 3. Open the task with the keyboard.
  await rad.locator('table#worklist tbody tr[aria-selected="true"]').waitFor();
  await rad.keyboard.press('Home');
  for (let i = 0; i < rows.length; i++) {
    const sel = await rad.getAttribute('table#worklist tbody tr[aria-selected="true"]', 'data-study');
    if (sel === studyUid) break;
    await rad.keyboard.press('ArrowDown');
  }
  report.selectedBeforeEnter = await rad.getAttribute('table#worklist tbody tr[aria-selected="true"]', 'data-study');
  await rad.keyboard.press('Enter');
  await rad.locator('#report-panel').waitFor();
  report.readingRoute = new URL(rad.url()).hash;
  await rad.locator('#patient-name').filter({ hasText: /\S/ }).waitFor();
  report.banner = {
    name: await rad.textContent('#patient-name'),
    facts: await rad.textContent('#patient-facts'),
    task: await rad.textContent('#task-facts'),
  };
  const ready = await waitUntil(rad, () => viewerState(rad), (s) => s && (s.state === 'ready' || s.state === 'error'), STEP_MS);
  report.viewer = ready;
  if (ready?.state === 'ready') {
    const canvas = rad.locator('#viewport canvas').first();
    const box = await canvas.boundingBox();
    report.viewportBox = box;
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    const initial = await step(rad, 'initial');
    const initialVoi = ready.voi;
    await rad.mouse.move(cx, cy);
    await rad.mouse.wheel(0, 120);
    await waitUntil(rad, () => viewerState(rad), (s) => s.index !== ready.index, 10_000);
    const wheeled = await step(rad, 'afterWheel', initial);
    const before = (await viewerState(rad)).index;
    await rad.focus('#viewport');
    await rad.keyboard.press('ArrowDown');
    await waitUntil(rad, () => viewerState(rad), (s) => s.index !== before, 10_000);
    const arrowed = await step(rad, 'afterArrowKey', wheeled);
    const voiBefore = (await viewerState(rad)).voi;
    await rad.mouse.move(cx, cy);
    await rad.mouse.down();
    for (let i = 1; i <= 10; i++) await rad.mouse.move(cx + i * 12, cy + i * 6);
    await rad.mouse.up();
    await waitUntil(rad, () => viewerState(rad), (s) => s.voi !== voiBefore, 10_000);
    const dragged = await step(rad, 'afterWindowDrag', arrowed);
    await rad.keyboard.press('2');
    await waitUntil(rad, () => viewerState(rad), (s) => s.voi === '1500/-600', 10_000);
    const lung = await step(rad, 'afterPresetLung', dragged);
    await rad.keyboard.press('i');
    await waitUntil(rad, () => viewerState(rad), (s) => s.invert === 'true', 10_000);
    const inverted = await step(rad, 'afterInvert', lung);
    await rad.keyboard.press('i');
    await waitUntil(rad, () => viewerState(rad), (s) => s.invert === 'false', 10_000);
    await step(rad, 'afterInvertBack', inverted);
    await rad.keyboard.press('1');
    await waitUntil(rad, () => viewerState(rad), (s) => s.voi === '80/40', 10_000);
    const brain = await step(rad, 'afterPresetBrain', lung);
    await rad.keyboard.press('r');
    await waitUntil(rad, () => viewerState(rad), (s) => s.voi === initialVoi, 10_000);
    await step(rad, 'afterReset', brain);
  }

  // The report: the verdict on the preliminary impression, findings, impression.
  await rad.locator('#preliminary .prelim-text').waitFor();
  report.preliminaryInPanel = await rad.textContent('#preliminary .prelim-text');
  report.templateShown = await rad.textContent('#report-panel .panel-head');
  report.placeholders = await rad.$$eval('#report-panel textarea[data-section]', (ts) =>
    Object.fromEntries(ts.map((t) => [t.dataset.section, t.placeholder])),
  );
  await rad.check('#agreement-agree');
  await rad.fill('#report-clinical_information', 'Cough and fever for five days.');
  await rad.fill('#report-findings', FINDINGS);
  await rad.fill('#report-impression', IMPRESSION);
  await rad.focus('#report-impression');
  await rad.keyboard.press('Control+s');
  await waitUntil(rad, () => rad.textContent('#report-status'), (t) => /Draft saved/.test(t ?? ''), 10_000);
  report.afterSave = {
    status: await rad.textContent('#report-status'),
    state: await rad.getAttribute('#report-panel', 'data-state'),
  };
  // The images focused again, the impression in view: the screenshot.
  await rad.focus('#viewport');
  await rad.locator('#report-impression').scrollIntoViewIfNeeded();
  await rad.waitForTimeout(300);
  await shot(rad, 'reading.png');

  // Sign: Ctrl+Enter asks first; Cancel keeps the draft; then Sign.
  await rad.focus('#report-impression');
  await rad.keyboard.press('Control+Enter');
  await rad.locator('#confirm-dialog').waitFor();
  report.confirmText = await rad.textContent('#confirm-dialog');
  await rad.click('#confirm-cancel');
  await rad.locator('#confirm-dialog').waitFor({ state: 'detached' });
  report.afterCancel = await rad.getAttribute('#report-panel', 'data-state');
  await rad.keyboard.press('Control+Enter');
  await rad.locator('#confirm-dialog').waitFor();
  await rad.click('#confirm-ok');
  await rad.locator('#report-panel[data-state="final"]').waitFor();
  report.signed = {
    state: await rad.getAttribute('#report-panel', 'data-state'),
    reportId: await rad.getAttribute('#report-panel', 'data-report'),
    signedBy: await rad.textContent('#signed-by'),
    impression: await rad.textContent('#report-panel dd[data-section="impression"]'),
    verdict: await rad.textContent('#verdict'),
    addendumForm: await rad.locator('#addendum-text').count(),
  };
  // An addendum to the signed report, signed after its own confirmation.
  await rad.fill('#addendum-text', ADDENDUM);
  await rad.keyboard.press('Control+Enter');
  await rad.locator('#confirm-dialog').waitFor();
  report.addendumConfirmText = await rad.textContent('#confirm-dialog');
  await rad.click('#confirm-ok');
  await rad.locator('#report-panel[data-state="amended"]').waitFor();
  report.addenda = await rad.$$eval('#addenda .addendum', (as) => as.map((a) => a.textContent));
  // The help overlay on `?` (outside a text field), closed with Escape.
  await rad.focus('#viewport');
  await rad.keyboard.press('?');
  await rad.locator('dialog#help').waitFor();
  report.help = await rad.$$eval('dialog#help tr', (trs) => trs.map((t) => t.textContent));
  await rad.keyboard.press('Escape');
  await rad.locator('dialog#help').waitFor({ state: 'detached' });
  // Back on the worklist: the signed task is gone from it.
  await rad.keyboard.press('w');
  await rad.locator('table#worklist').waitFor();
  report.worklistAfter = await waitUntil(
    rad,
    () => worklistRows(rad),
    (r) => r.length > 0 && !r.some((x) => x.study === studyUid),
    10_000,
  );
  // The uploaded study: a critical finding, signed from the keyboard.
  if (report.uploadedStudy) {
    await rad.locator(`table#worklist tr[data-study="${report.uploadedStudy}"]`).click();
    await rad.locator('#report-findings').waitFor();
    await rad.fill('#report-findings', 'Free air under the right hemidiaphragm.');
    await rad.fill('#report-impression', 'Pneumoperitoneum: perforated viscus until proven otherwise.');
    await rad.check('#critical');
    await rad.keyboard.press('Control+Enter');
    await rad.locator('#confirm-dialog').waitFor();
    report.criticalConfirmText = await rad.textContent('#confirm-dialog');
    await rad.keyboard.press('Enter');
    await rad.locator('#report-panel[data-state="final"]').waitFor();
    report.criticalSigned = {
      reportId: await rad.getAttribute('#report-panel', 'data-report'),
      signedBy: await rad.textContent('#signed-by'),
    };
  }
  await logOut(rad);
  report.radiologistLoggedOut = true;

  // --- 4. The sending clinic sees the report arrive.
  report.portalAfter = await waitUntil(
    docA,
    () => portalRows(docA),
    (r) => r.some((x) => x.study === studyUid && x.state === 'reported'),
    20_000,
  );
  report.notifications = await docA.$$eval('#messages .note span', (ns) => ns.map((n) => n.textContent));
  await docA.click(`table#portal-studies tr[data-study="${studyUid}"]`);
  await docA.locator('#report').waitFor();
  report.portalReport = {
    text: await docA.textContent('#report'),
    impression: await docA.textContent('#report dd[data-section="impression"]'),
    pdfHref: await docA.getAttribute('#report-pdf', 'href'),
    verdict: await docA.textContent('#verdict'),
  };
  // The link downloads the PDF the clinic was sent (made within a second or two of signing).
  report.portalPdf = { status: 'not tried' };
  for (let i = 0; i < 40; i++) {
    const res = await docA.request.get(new URL(report.portalReport.pdfHref, docA.url()).href);
    report.portalPdf = { status: res.status(), type: res.headers()['content-type'] };
    if (res.status() === 200) {
      report.portalPdf.magic = (await res.body()).subarray(0, 5).toString('latin1');
      break;
    }
    await docA.waitForTimeout(250);
  }
  report.imagesInPortal = await docA.locator('#app img').count();
  // The critical finding waits for an acknowledgement.
  if (report.criticalSigned) {
    const card = `#critical-findings .critical-card[data-report="${report.criticalSigned.reportId}"]`;
    await docA.locator(card).waitFor();
    report.criticalCard = await docA.textContent(card);
    report.portalCritical = await portalRows(docA);
    await docA.waitForTimeout(300);
    await shot(docA, 'portal.png');
    await docA.click(`${card} button.primary`);
    await docA.locator(card).waitFor({ state: 'detached' });
    report.portalAcknowledged = await waitUntil(
      docA,
      () => portalRows(docA),
      (r) => r.some((x) => x.study === report.uploadedStudy && x.state === 'reported'),
      10_000,
    );
  } else {
    await shot(docA, 'portal.png');
  }
  await logOut(docA);
  report.doctorLoggedOut = true;

  // --- Another clinic's doctor: the study is not there.
  const docB = await newPage('doctor-b');
  await logIn(docB, doctorB);
  await docB.locator('table#portal-studies').waitFor();
  await waitUntil(docB, () => docB.getAttribute('table#portal-studies', 'data-count'), (c) => c !== null, 10_000);
  report.otherClinicPortal = await portalRows(docB);
  report.otherClinicReport = report.signed.reportId
    ? (await docB.request.get(url(`/api/reports/${report.signed.reportId}`))).status()
    : null;
  await logOut(docB);
  // Let late console messages arrive before judging.
  await docB.waitForTimeout(300);
});
