// A radiologist's worklist of a thousand tasks in Debian's Chromium (headless, driven by
// playwright-core), reported as one JSON object on stdout for the Rust end-to-end test
// (tests/e2e/viewer_reading.rs, `long_worklist_…`), which judges it.
//
//   node tests/long-worklist.mjs BASE_URL USER PASSWORD
//
// Steps: log in; wait for the worklist's rows; read what the API says the list is
// (`/api/worklist?view=mine&limit=1000`); press End (the last task is selected, focused
// and on screen), Home (the first again), End and Enter (the last task opens in the
// reading view). The rows off screen are laid out lazily (`content-visibility: auto`):
// the report says what each selected row holds, where it is on the screen, whether its
// cells are drawn there (hit testing at its patient column), and the row heights of the
// first screenful, so that a row drawn empty or collapsed is seen.
//
// Every wait is bounded; the exit status is 0 when a report was written, 1 when the run
// itself broke.

import { logIn, newReport, runInBrowser } from './page-watch.mjs';

const [base, username, password] = process.argv.slice(2);
if (!base || !username || !password) {
  console.error('usage: long-worklist.mjs BASE_URL USER PASSWORD');
  process.exit(2);
}

const STEP_MS = 60_000;
const report = newReport({ steps: {} });

/** The selected row: its task, text, place on the screen and whether it has the focus. */
function selectedRow(page) {
  return page.evaluate(() => {
    const r = document.querySelector('table#worklist tbody tr[aria-selected="true"]');
    if (!r) return null;
    const box = r.getBoundingClientRect();
    // What is drawn at the patient column of the row (hit testing follows what is laid
    // out): the row's own patient cell when the row's contents are drawn.
    const th = document.querySelectorAll('table#worklist thead th')[4].getBoundingClientRect();
    const hit = document.elementFromPoint(th.left + 4, box.top + box.height / 2);
    const hitCell = hit?.closest('td');
    return {
      patientCellDrawn: hitCell != null && hitCell === r.cells[4],
      task: Number(r.dataset.task),
      index: r.sectionRowIndex,
      selectedRows: document.querySelectorAll('table#worklist tbody tr[aria-selected="true"]').length,
      focused: document.activeElement === r,
      onScreen: box.top >= 0 && box.bottom <= window.innerHeight && box.height > 0,
      height: box.height,
      cells: Array.from(r.cells).map((c) => c.textContent),
    };
  });
}

await runInBrowser(report, { stepMs: STEP_MS }, async (open) => {
  const page = await open();

  await logIn(page, base, username, password);
  await page.locator('table#worklist[data-count]').waitFor();
  report.count = await page.getAttribute('table#worklist', 'data-count');
  report.rowsInPage = await page.locator('table#worklist tbody tr').count();
  report.api = await page.evaluate(async () => {
    const res = await fetch('/api/worklist?view=mine&limit=1000');
    return (await res.json()).map((t) => t.task_id);
  });
  // The first screenful: every row drawn with its height (none collapsed to nothing).
  report.firstHeights = await page.$$eval('table#worklist tbody tr', (rows) =>
    rows.slice(0, 10).map((r) => r.getBoundingClientRect().height),
  );
  report.steps.loaded = await selectedRow(page);

  await page.keyboard.press('End');
  await page.waitForFunction(() => document.activeElement?.matches('table#worklist tbody tr:last-child'));
  // Scrolled into view by the focus: wait for the scroll to settle.
  await page.waitForTimeout(300);
  report.steps.end = await selectedRow(page);

  await page.keyboard.press('Home');
  await page.waitForFunction(() => document.activeElement?.matches('table#worklist tbody tr:first-child'));
  await page.waitForTimeout(300);
  report.steps.home = await selectedRow(page);

  await page.keyboard.press('End');
  await page.waitForFunction(() => document.activeElement?.matches('table#worklist tbody tr:last-child'));
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash.startsWith('#/read/'));
  report.opened = await page.evaluate(() => location.hash);
});
