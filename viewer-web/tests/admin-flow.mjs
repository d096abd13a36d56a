// The admin pages, as an administrator uses them, in Debian's Chromium (headless, driven by
// playwright-core; never a downloaded browser); reports what happened as one JSON object
// on stdout. The Rust end-to-end test (tests/e2e/viewer_admin.rs) runs it against a real
// `pacs serve` and judges the report.
//
//   node tests/admin-flow.mjs BASE_URL ADMIN NON_ADMIN PASSWORD NEW_CLINIC SCREENSHOT_DIR
//
// 1. The administrator logs in and lands on the dashboard: the charts' bars and the tables'
//    numbers are read (studies per clinic per day, turnaround, backlog, overdue,
//    discrepancies); screenshot admin-dashboard.png.
// 2. Clinics: creates NEW_CLINIC (and tries again: refused, in words), tries to register
//    a report receiver without a port (refused before sending, in words), registers it with
//    host and port, edits it (TLS only); screenshot admin-clinics.png.
// 3. Users: creates a clinician of NEW_CLINIC, disables them.
// 4. Routing rules: edits `chest-cr` (sets priority urgent), disables `msk-mr-knee`.
// 5. Audit: searches the administrator's security alerts (110113) and finds the clinic's
//    creation; pages to older entries and back.
// 6. The non-administrator: no Admin link; #/admin/dashboard says in words that it is for
//    administrators.
//
// Every wait is bounded; the browser is closed whatever happens. Exit 0 when a report was
// written (the test decides what is acceptable), 1 when the run itself broke.

import { logIn as logInAt, newReport, runInBrowser, screenshots, waitUntil } from './page-watch.mjs';

const [base, admin, nonAdmin, password, newClinic, shots] = process.argv.slice(2);
if (!base || !admin || !nonAdmin || !password || !newClinic || !shots) {
  console.error('usage: admin-flow.mjs BASE_URL ADMIN NON_ADMIN PASSWORD NEW_CLINIC SCREENSHOT_DIR');
  process.exit(2);
}

const STEP_MS = 30_000;
const NEW_USER = 'hill.nurse';
const NEW_USER_PASSWORD = 'hill nurse passphrase 2468';
const AE = 'HILL_RIS';

const report = newReport();
const shot = screenshots(report, shots);
const url = (path) => new URL(path, base).toString();

const logIn = (page, username) => logInAt(page, base, username, password);

const navLinks = (page) => page.$$eval('#nav a', (as) => as.map((a) => ({ href: a.getAttribute('href'), text: a.textContent })));
const text = (page, sel) => page.locator(sel).first().textContent();

/** Closes the notifications (they would cover the page in a screenshot). */
async function dismissNotes(page) {
  for (const b of await page.locator('#messages .note .close').all()) await b.click().catch(() => {});
}

/** The error lines shown in `scope` (what the user reads). */
const errorsIn = (page, scope) => page.$$eval(`${scope} .error`, (es) => es.map((e) => e.textContent));

await runInBrowser(report, { stepMs: STEP_MS, context: { timezoneId: 'UTC' } }, async (open) => {
  const page = await open('admin');

  // --- 1. The dashboard, the administrator's landing page.
  await logIn(page, admin);
  report.adminNav = await navLinks(page);
  await page.locator('#dashboard[data-state=ready]').waitFor();
  report.adminLanding = await page.evaluate(() => ({ hash: location.hash, section: document.querySelector('#admin-section')?.dataset.section }));
  report.dashboard = await page.evaluate(() => {
    const num = (sel) => Number(document.querySelector(sel)?.dataset.value);
    const rects = (sel) =>
      Array.from(document.querySelectorAll(`${sel} rect.bar`)).map((r) => ({
        series: r.dataset.series,
        label: r.dataset.label ?? r.closest('g.row')?.dataset.label ?? null,
        value: Number(r.dataset.value),
        height: Number(r.getAttribute('height')),
        width: Number(r.getAttribute('width')),
        title: r.querySelector('title')?.textContent ?? '',
        fill: getComputedStyle(r).fill,
      }));
    const rows = (sel) => Array.from(document.querySelectorAll(`${sel} tbody tr`)).map((tr) => Array.from(tr.cells).map((c) => c.textContent));
    return {
      days: document.querySelector('#dashboard')?.dataset.days,
      kpis: { received: num('#kpi-received'), done: num('#kpi-done'), backlog: num('#kpi-backlog'), overdue: num('#kpi-overdue') },
      overdueText: document.querySelector('#kpi-overdue')?.textContent ?? '',
      columns: Array.from(document.querySelectorAll('#chart-studies g.column')).map((g) => ({ label: g.dataset.label, total: Number(g.dataset.total) })),
      studyBars: rects('#chart-studies'),
      legend: Array.from(document.querySelectorAll('#dash-studies .legend li')).map((li) => li.textContent),
      studiesTable: rows('#studies-per-day'),
      turnaroundBars: rects('#chart-turnaround'),
      turnaroundTable: rows('#turnaround-table'),
      backlogBars: rects('#chart-backlog'),
      backlogTable: rows('#backlog-table'),
      discrepancyBars: rects('#chart-discrepancies'),
      images: document.querySelectorAll('#app img').length,
    };
  });
  await dismissNotes(page);
  await shot(page, 'admin-dashboard.png');
  // Another window: a day's bars follow the choice.
  await page.selectOption('#dash-days', '7');
  await page.locator('#dashboard[data-days="7"][data-state=ready]').waitFor();
  report.dashboard7Columns = await page.$$eval('#chart-studies g.column', (gs) => gs.length);

  // --- 2. Clinics and AE titles.
  await page.click('a.tab[data-section=clinics]');
  await page.locator('#clinics[data-count]').waitFor();
  report.clinicsBefore = await page.$$eval('.clinic-card', (cs) => cs.map((c) => c.dataset.clinic));
  await page.fill('#new-clinic-name', newClinic);
  await page.click('#new-clinic button[type=submit]');
  const card = `.clinic-card[data-clinic="${newClinic}"]`;
  await page.locator(card).waitFor();
  // The same name again: refused by the server, said in words.
  await page.fill('#new-clinic-name', newClinic);
  await page.click('#new-clinic button[type=submit]');
  await page.locator('#new-clinic .error').waitFor();
  report.duplicateClinicError = await errorsIn(page, '#new-clinic');
  // A report receiver without a port: said before anything is sent.
  const addForm = `${card} form.add-ae`;
  if (!(await page.locator(`${card} details.add-ae-box`).evaluate((d) => d.open))) await page.click(`${card} details.add-ae-box summary`);
  await page.fill(`${addForm} input[name=ae_title]`, AE);
  await page.fill(`${addForm} input[name=host]`, '127.0.0.1');
  await page.check(`${addForm} input[name=receives_reports]`);
  await page.click(`${addForm} button[type=submit]`);
  await page.locator(`${addForm} .error`).waitFor();
  report.receiverWithoutPortError = await errorsIn(page, addForm);
  await page.fill(`${addForm} input[name=port]`, '11113');
  await page.click(`${addForm} button[type=submit]`);
  const aeRow = `${card} tr[data-ae="${AE}"]`;
  await page.locator(aeRow).waitFor();
  report.aeRow = await page.$$eval(`${aeRow} td`, (tds) => tds.map((t) => t.textContent));
  report.clinicHead = await text(page, `${card} .clinic-head`);
  // Edit: TLS only.
  await page.click(`${aeRow} button.edit`);
  await page.check(`${card} tr.editing input[name=tls_only]`);
  await page.click(`${card} tr.editing button[type=submit]`);
  await waitUntil(page, () => page.$$eval(`${aeRow} td`, (tds) => tds.map((t) => t.textContent)), (r) => r[3] === '✓', 10_000);
  report.aeRowAfterEdit = await page.$$eval(`${aeRow} td`, (tds) => tds.map((t) => t.textContent));
  report.clinicNames = await page.$$eval('.clinic-card h2', (hs) => hs.map((x) => x.textContent));
  report.clinicImages = await page.locator('#app img').count();
  await dismissNotes(page);
  await shot(page, 'admin-clinics.png');

  // --- 3. Users: create a clinician of the new clinic, then disable them.
  await page.click('a.tab[data-section=users]');
  await page.locator('#users-table').waitFor();
  await page.fill('#new-username', NEW_USER);
  await page.selectOption('#new-role', 'clinician');
  await page.selectOption('#new-user-clinic', newClinic);
  await page.fill('#new-password', NEW_USER_PASSWORD);
  await page.click('#new-user button[type=submit]');
  const userRow = `#users-table tr[data-user="${NEW_USER}"]`;
  await page.locator(userRow).waitFor();
  report.userCreated = await page.$$eval(`${userRow} td`, (tds) => tds.map((t) => t.textContent));
  await page.click(`${userRow} button.disable`);
  await page.locator(`${userRow}[data-disabled=true]`).waitFor();
  report.userDisabled = await page.$$eval(`${userRow} td`, (tds) => tds.map((t) => t.textContent));
  // A password too short: said in words, nothing sent.
  await page.click(`${userRow} button.reset`);
  await page.fill('tr.editing input[name=password]', 'short');
  await page.click('tr.editing button[type=submit]');
  await page.locator('tr.editing .error').waitFor();
  report.shortPasswordError = await errorsIn(page, 'tr.editing');
  await page.click('tr.editing button:not([type=submit])');

  // --- 4. Routing rules: edit one, disable another.
  await page.click('a.tab[data-section=rules]');
  await page.locator('#rules-table').waitFor();
  const rule = '#rules-table tr[data-name="chest-cr"]';
  await page.click(`${rule} button.edit`);
  await page.selectOption('#rules-table tr.editing select[name=set_priority]', 'urgent');
  await page.fill('#rules-table tr.editing input[name=description_contains]', 'thorax');
  await page.click('#rules-table tr.editing button[type=submit]');
  await waitUntil(page, () => page.$$eval(`${rule} td`, (tds) => tds.map((t) => t.textContent)), (r) => r[4] === 'urgent', 10_000);
  report.ruleAfterEdit = await page.$$eval(`${rule} td`, (tds) => tds.map((t) => t.textContent));
  const knee = '#rules-table tr[data-name="msk-mr-knee"]';
  await page.click(`${knee} button.toggle`);
  await page.locator(`${knee}[data-enabled=false]`).waitFor();
  report.kneeRule = await page.$$eval(`${knee} td`, (tds) => tds.map((t) => t.textContent));

  // --- 5. Audit: the administrator's security-configuration changes.
  await page.click('a.tab[data-section=audit]');
  await page.locator('#audit-results[data-search]').waitFor();
  const searched = () => page.getAttribute('#audit-results', 'data-search').then(Number);
  const searchAgain = async (click) => {
    const before = await searched();
    await page.click(click);
    await waitUntil(page, searched, (n) => n > before, 10_000);
  };
  await page.fill('#audit-user', admin);
  await page.selectOption('#audit-event', '110113');
  const since = new Date(Date.now() - 3600_000).toISOString().slice(0, 16);
  await page.fill('#audit-since', since);
  await searchAgain('#audit-form button[type=submit]');
  report.audit = await page.$$eval('#audit-table tbody tr', (rows) =>
    rows.map((r) => ({ id: Number(r.dataset.id), event: r.dataset.event, cells: Array.from(r.cells).map((c) => c.textContent) })),
  );
  report.auditStatus = await text(page, '#audit-status');
  // Paging: everything, 25 a page; older, then newer again.
  await page.fill('#audit-user', '');
  await page.selectOption('#audit-event', '');
  await page.fill('#audit-since', '');
  await page.selectOption('#audit-limit', '25');
  await searchAgain('#audit-form button[type=submit]');
  const ids = () => page.$$eval('#audit-table tbody tr', (rows) => rows.map((r) => Number(r.dataset.id)));
  const firstPage = await ids();
  report.auditOlderDisabled = await page.locator('#audit-older').isDisabled();
  if (!report.auditOlderDisabled) {
    await searchAgain('#audit-older');
    const secondPage = await ids();
    report.auditPageLabel = await text(page, '#audit-page');
    await searchAgain('#audit-newer');
    report.auditPaging = { firstPage, secondPage, backTo: await ids() };
  } else {
    report.auditPaging = { firstPage };
  }
  report.auditImages = await page.locator('#app img').count();
  await page.click('#user button');
  await page.locator('form#login').waitFor();

  // --- 6. Someone else: no Admin link; the address typed by hand says no in words.
  const other = await open('non-admin');
  await logIn(other, nonAdmin);
  report.nonAdminNav = await navLinks(other);
  await other.goto(url('/#/admin/dashboard'));
  await other.locator('main[data-page=admin] .error').waitFor();
  report.nonAdminError = await text(other, 'main[data-page=admin] .error');
  report.nonAdminApi = (await other.request.get(url('/api/admin/dashboard'))).status();
  await other.click('#user button');
  await other.locator('form#login').waitFor();
  await other.waitForTimeout(300);
});
