// The viewer's pages: log in, then the landing page of the role — the worklist for
// radiologists (worklist.ts, reading view in reading.ts), the clinic portal for clinic
// users (portal.ts) — and for everyone the studies they may see and one study's series in
// the stack viewer. Routes live in the URL fragment (router.ts) so that the archive serves
// one index.html at `/` and nothing else outside /assets.

import './style.css';

import { adminPage } from './admin';
import { ApiError, type Me, getDicomJson, login, logout, me } from './api';
import { type DicomJson, Tag, date, personName, text, texts } from './dicom';
import { h, message, replace } from './dom';
import { live } from './live';
import { clearMessages, clearNotices } from './messages';
import type { PageContext } from './page';
import { portalPage } from './portal';
import { studyReports, taskHints } from './reading-api';
import { type Route, landing, navLinks, parseRoute } from './router';
import { worklistPage } from './worklist';
import { destroyViewer, imaging } from './imaging-loader';

const app = document.getElementById('app') as HTMLElement;
const userBox = document.getElementById('user') as HTMLElement;
const nav = document.getElementById('nav') as HTMLElement;

let current: Me | null = null;
/** Clean-up of the page shown (timers, subscriptions, key handlers). */
let leaving: Array<() => void> = [];

function leavePage(): void {
  for (const fn of leaving.splice(0).reverse()) {
    try {
      fn();
    } catch {
      // A page's clean-up failing must not keep the next page from showing.
    }
  }
}

/** The session ended (expired, logged out elsewhere): back to the login form. */
function sessionEnded(): void {
  current = null;
  live.stop();
  void render().then(() => {
    const status = document.getElementById('login-status');
    if (status) replace(status, errorBox('Your session has ended: log in again.'));
  });
}

/** Shows what went wrong in `where`, or the login form when the session has ended. */
function failed(where: HTMLElement, e: unknown): void {
  if (e instanceof ApiError && e.status === 401) {
    sessionEnded();
    return;
  }
  replace(where, errorBox(message(e)));
}

/** An error box: what went wrong, in words. */
function errorBox(text: string): HTMLElement {
  return h('p', { class: 'error', attrs: { role: 'alert' } }, text);
}

function showUser(route: Route | undefined): void {
  if (!current) {
    replace(userBox);
    replace(nav);
    return;
  }
  const page = route?.page === 'read' ? 'worklist' : route?.page === 'study' ? 'studies' : route?.page;
  replace(
    nav,
    ...navLinks(current).map(([href, label, p]) =>
      h('a', { attrs: { href, ...(p === page ? { 'aria-current': 'page' } : {}) }, data: { page: p } }, label),
    ),
  );
  const out = h('button', { attrs: { type: 'button' } }, 'Log out');
  out.addEventListener('click', () => {
    logout()
      .catch(() => undefined)
      .finally(() => {
        current = null;
        live.stop();
        clearMessages();
        history.replaceState(null, '', '#/');
        void render();
      });
  });
  const clinic = current.clinic ? `, ${current.clinic}` : '';
  replace(userBox, h('span', { id: 'who' }, `${current.username} (${current.role}${clinic})`), out);
}

// ---------------------------------------------------------------------------------------
// Log in

function loginPage(): void {
  const username = h('input', { id: 'username', attrs: { name: 'username', autocomplete: 'username', required: '' } });
  const password = h('input', {
    id: 'password',
    attrs: { name: 'password', type: 'password', autocomplete: 'current-password', required: '' },
  });
  const submit = h('button', { attrs: { type: 'submit' } }, 'Log in');
  const status = h('div', { id: 'login-status', attrs: { 'aria-live': 'polite' } });
  const form = h(
    'form',
    { id: 'login', class: 'card' },
    h('h1', {}, 'Log in'),
    h('label', { attrs: { for: 'username' } }, 'Username'),
    username,
    h('label', { attrs: { for: 'password' } }, 'Password'),
    password,
    submit,
    status,
  );
  form.addEventListener('submit', (evt) => {
    evt.preventDefault();
    submit.disabled = true;
    replace(status, 'Logging in…');
    login(username.value.trim(), password.value)
      .then((m) => {
        current = m;
        password.value = '';
        // The landing page of the role, whatever address the login form was shown at.
        history.replaceState(null, '', '#/');
        void render();
      })
      .catch((e: unknown) => {
        replace(status, errorBox(message(e)));
        password.select();
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  replace(app, form);
  username.focus();
}

// ---------------------------------------------------------------------------------------
// Studies

async function studiesPage(ctx: PageContext): Promise<void> {
  const isCurrent = ctx.isCurrent;
  const status = h('p', { class: 'status' }, 'Loading the studies…');
  replace(app, h('h1', {}, 'Studies'), status);
  let studies: DicomJson[];
  try {
    studies = await getDicomJson('/dicom-web/studies?limit=200', 'the list of studies');
  } catch (e) {
    if (isCurrent()) failed(status, e);
    return;
  }
  if (!isCurrent()) return;
  if (studies.length === 0) {
    replace(status, 'No studies that you may see are in the archive yet.');
    return;
  }
  status.remove();
  const rows = studies.map((s) => {
    const uid = text(s, Tag.StudyInstanceUID);
    const open = h('a', { attrs: { href: `#/study/${uid}` } }, personName(s, Tag.PatientName) || '(no name)');
    return h(
      'tr',
      { data: { study: uid } },
      h('td', { class: 'patient-name' }, open),
      h('td', {}, text(s, Tag.PatientID)),
      h('td', {}, date(s, Tag.StudyDate)),
      h('td', {}, text(s, Tag.StudyDescription)),
      h('td', {}, texts(s, Tag.ModalitiesInStudy).join(', ')),
      h('td', { class: 'num' }, text(s, Tag.NumberOfStudyRelatedInstances)),
    );
  });
  const head = ['Patient', 'Patient ID', 'Date', 'Description', 'Modalities', 'Images'].map((t) => h('th', {}, t));
  app.appendChild(h('table', { id: 'studies' }, h('thead', {}, h('tr', {}, ...head)), h('tbody', {}, ...rows)));
}

// ---------------------------------------------------------------------------------------
// One study

async function studyPage(ctx: PageContext, study: string, wanted: string | undefined): Promise<void> {
  const title = h('h1', { id: 'patient-name' }, '');
  const facts = h('p', { id: 'study-facts', class: 'status' }, 'Loading the study…');
  const loaded = await imagingFor(ctx);
  if (!loaded) return;
  const { stackPanel } = loaded;
  const stack = stackPanel({
    isCurrent: ctx.isCurrent,
    sessionEnded: ctx.sessionEnded,
    seriesHref: (series) => `#/study/${study}/series/${series}`,
    // The address follows the series picked, without reloading the page.
    onSeries: (series) => history.replaceState(null, '', `#/study/${study}/series/${series}`),
  });
  ctx.onLeave(destroyViewer);
  const reports = h('p', { id: 'study-reports', class: 'status' });
  replace(
    app,
    h('p', {}, h('a', { attrs: { href: '#/studies' } }, '← All studies')),
    title,
    facts,
    reports,
    h('div', { class: 'study' }, stack.seriesList, stack.viewerBox),
  );
  // The study's reports, where they are read or amended: the reading view for
  // radiologists (a signed one takes addenda there), the portal for clinic users.
  if (ctx.me.role === 'radiologist' || ctx.me.role === 'township-doctor' || ctx.me.role === 'clinician') {
    studyReports(study)
      .then((found) => {
        if (!ctx.isCurrent() || found.reports.length === 0) return;
        const links = found.reports.map((r) => {
          if (r.state !== 'draft') taskHints.set(r.task_id, 'done');
          return h(
            'a',
            {
              attrs: {
                href: ctx.me.role === 'radiologist' ? `#/read/${r.task_id}/${study}` : `#/portal/study/${study}`,
              },
              data: { report: String(r.id) },
            },
            `Report ${r.state === 'final' ? 'signed' : r.state} by ${r.author}`,
          );
        });
        replace(reports, ...links.flatMap((l, i) => (i > 0 ? [' · ', l] : [l])));
      })
      .catch((e: unknown) => {
        if (ctx.isCurrent()) failed(reports, e);
      });
  }
  try {
    const [studyRow] = await getDicomJson(`/dicom-web/studies?StudyInstanceUID=${study}`, 'this study');
    if (!studyRow) throw new ApiError(404, 'This study was not found, or you may not see it.');
    replace(title, personName(studyRow, Tag.PatientName) || '(no name)');
    replace(
      facts,
      [
        `Patient ID ${text(studyRow, Tag.PatientID) || '—'}`,
        date(studyRow, Tag.StudyDate),
        text(studyRow, Tag.StudyDescription),
        text(studyRow, Tag.AccessionNumber) && `Accession ${text(studyRow, Tag.AccessionNumber)}`,
      ]
        .filter(Boolean)
        .join(' · '),
    );
  } catch (e) {
    failed(facts, e);
    return;
  }
  if (!ctx.isCurrent()) return;
  await stack.load(study, wanted);
}

// ---------------------------------------------------------------------------------------

/**
 * The imaging chunk for a page that shows images; if it cannot be loaded, the page says
 * so in words (and gives nothing to go on with).
 */
async function imagingFor(ctx: PageContext): Promise<Awaited<ReturnType<typeof imaging>> | undefined> {
  try {
    const m = await imaging();
    return ctx.isCurrent() ? m : undefined;
  } catch (e) {
    if (ctx.isCurrent()) replace(ctx.app, errorBox(message(e)));
    return undefined;
  }
}

let generation = 0;

async function render(): Promise<void> {
  const mine = ++generation;
  leavePage();
  clearNotices();
  if (!current) {
    try {
      current = await me();
    } catch (e) {
      replace(app, errorBox(message(e)));
      return;
    }
    if (mine !== generation) return;
  }
  if (!current) {
    showUser(undefined);
    destroyViewer();
    live.stop();
    loginPage();
    return;
  }
  let route = parseRoute(location.hash);
  if (route.page === 'home') route = landing(current);
  showUser(route);
  live.start();
  const ctx: PageContext = {
    app,
    me: current,
    isCurrent: () => mine === generation,
    sessionEnded,
    onLeave: (fn) => {
      if (mine === generation) leaving.push(fn);
      else fn();
    },
  };
  delete app.dataset.page;
  switch (route.page) {
    case 'worklist':
      await worklistPage(ctx, route.view);
      break;
    case 'read': {
      const loaded = await imagingFor(ctx);
      if (loaded) await loaded.readingPage(ctx, route.task, route.study);
      break;
    }
    case 'portal':
      await portalPage(ctx, route.study);
      break;
    case 'study':
      await studyPage(ctx, route.study, route.series);
      break;
    case 'admin':
      await adminPage(ctx, route.section);
      break;
    default:
      await studiesPage(ctx);
  }
}

window.addEventListener('hashchange', () => {
  void render();
});
void render();
