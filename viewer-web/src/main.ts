// The viewer's pages: log in, the studies you may see, one study's series in the stack
// viewer. Routes live in the URL fragment (`#/study/<uid>/series/<uid>`) so that the
// archive serves one index.html at `/` and nothing else outside /assets.

import './style.css';

import { ApiError, type Me, getDicomJson, login, logout, me } from './api';
import { type DicomJson, Tag, date, isUid, num, personName, text, texts } from './dicom';
import { h, message, replace } from './dom';
import { type StackState, StackViewer, loadSeriesImageIds } from './viewer';

const app = document.getElementById('app') as HTMLElement;
const userBox = document.getElementById('user') as HTMLElement;

let current: Me | null = null;
let viewer: StackViewer | undefined;

type Route = { page: 'studies' } | { page: 'study'; study: string; series?: string };

function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (parts[0] === 'study' && parts[1] && isUid(parts[1])) {
    if (parts[2] === 'series' && parts[3] && isUid(parts[3])) return { page: 'study', study: parts[1], series: parts[3] };
    return { page: 'study', study: parts[1] };
  }
  return { page: 'studies' };
}

/** The session ended (expired, logged out elsewhere): back to the login form. */
function sessionEnded(): void {
  current = null;
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

function showUser(): void {
  if (!current) {
    replace(userBox);
    return;
  }
  const out = h('button', { attrs: { type: 'button' } }, 'Log out');
  out.addEventListener('click', () => {
    logout()
      .catch(() => undefined)
      .finally(() => {
        current = null;
        location.hash = '#/';
        render();
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
        render();
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

async function studiesPage(isCurrent: () => boolean): Promise<void> {
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

/** Series that hold no images to scroll through. */
const NON_IMAGE_MODALITIES = new Set(['SR', 'DOC', 'KO', 'PR', 'SEG', 'RTSTRUCT']);

async function studyPage(study: string, wanted: string | undefined, isCurrent: () => boolean): Promise<void> {
  const title = h('h1', { id: 'patient-name' }, '');
  const facts = h('p', { id: 'study-facts', class: 'status' }, 'Loading the study…');
  const seriesList = h('nav', { id: 'series', attrs: { 'aria-label': 'Series' } });
  const element = h('div', { id: 'viewport', attrs: { tabindex: '0', 'aria-label': 'Image viewer' } });
  const overlayPos = h('span', { id: 'slice' });
  const overlayVoi = h('span', { id: 'voi' });
  const reset = h('button', { attrs: { type: 'button' } }, 'Reset window');
  const viewStatus = h('div', { id: 'view-status', attrs: { 'aria-live': 'polite' } });
  const viewerBox = h(
    'section',
    { id: 'viewer', data: { state: 'idle' } },
    element,
    h('div', { class: 'overlay' }, overlayPos, overlayVoi, reset),
    viewStatus,
  );
  replace(
    app,
    h('p', {}, h('a', { attrs: { href: '#/' } }, '← All studies')),
    title,
    facts,
    h('div', { class: 'study' }, seriesList, viewerBox),
  );

  let seriesRows: DicomJson[];
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
    seriesRows = await getDicomJson(`/dicom-web/studies/${study}/series`, 'the series of this study');
  } catch (e) {
    if (isCurrent()) failed(facts, e);
    return;
  }
  if (!isCurrent()) return;
  seriesRows.sort((a, b) => (num(a, Tag.SeriesNumber) ?? 0) - (num(b, Tag.SeriesNumber) ?? 0));
  const images = seriesRows.filter((s) => !NON_IMAGE_MODALITIES.has(text(s, Tag.Modality)));
  const chosen =
    (wanted && seriesRows.find((s) => text(s, Tag.SeriesInstanceUID) === wanted)) || images[0] || seriesRows[0];
  for (const s of seriesRows) {
    const uid = text(s, Tag.SeriesInstanceUID);
    const label = [
      text(s, Tag.Modality),
      text(s, Tag.SeriesNumber) && `#${text(s, Tag.SeriesNumber)}`,
      text(s, Tag.SeriesDescription),
      `(${text(s, Tag.NumberOfSeriesRelatedInstances) || '?'})`,
    ]
      .filter(Boolean)
      .join(' ');
    const link = h('a', { attrs: { href: `#/study/${study}/series/${uid}` }, data: { series: uid } }, label);
    if (s === chosen) link.setAttribute('aria-current', 'true');
    seriesList.appendChild(link);
  }
  if (!chosen) {
    viewerBox.dataset.state = 'error';
    viewerBox.dataset.series = '';
    replace(viewStatus, errorBox('This study has no series.'));
    return;
  }

  const showState = (s: StackState) => {
    viewerBox.dataset.index = String(s.index);
    viewerBox.dataset.count = String(s.count);
    replace(overlayPos, s.count > 0 ? `Image ${s.index + 1} / ${s.count}` : '');
    if (s.windowWidth !== undefined && s.windowCenter !== undefined) {
      viewerBox.dataset.voi = `${Math.round(s.windowWidth)}/${Math.round(s.windowCenter)}`;
      replace(overlayVoi, `W ${Math.round(s.windowWidth)} L ${Math.round(s.windowCenter)}`);
    }
  };
  const showError = (text: string) => {
    viewerBox.dataset.state = 'error';
    replace(viewStatus, errorBox(text));
  };
  viewer?.destroy();
  viewer = new StackViewer(element, showState, showError);
  reset.addEventListener('click', () => viewer?.reset());

  viewerBox.dataset.state = 'loading';
  viewerBox.dataset.series = text(chosen, Tag.SeriesInstanceUID);
  replace(viewStatus, 'Loading the images…');
  try {
    const imageIds = await loadSeriesImageIds(study, text(chosen, Tag.SeriesInstanceUID));
    if (!isCurrent()) return;
    if (imageIds.length === 0) {
      showError('This series has no images to show (it may be a report or a document).');
      return;
    }
    await viewer.show(imageIds);
    if (!isCurrent()) return;
    if (viewerBox.dataset.state === 'loading') {
      viewerBox.dataset.state = 'ready';
      replace(viewStatus, 'Scroll with the mouse wheel or the arrow keys; drag to change the window.');
    }
    element.focus();
  } catch (e) {
    if (!isCurrent()) return;
    if (e instanceof ApiError && e.status === 401) {
      sessionEnded();
      return;
    }
    showError(message(e));
  }
}

// ---------------------------------------------------------------------------------------

let generation = 0;

async function render(): Promise<void> {
  const mine = ++generation;
  if (!current) {
    try {
      current = await me();
    } catch (e) {
      replace(app, errorBox(message(e)));
      return;
    }
    if (mine !== generation) return;
  }
  showUser();
  if (!current) {
    viewer?.destroy();
    viewer = undefined;
    loginPage();
    return;
  }
  const route = parseRoute(location.hash);
  const isCurrent = () => mine === generation;
  if (route.page === 'study') {
    await studyPage(route.study, route.series, isCurrent);
  } else {
    viewer?.destroy();
    viewer = undefined;
    await studiesPage(isCurrent);
  }
}

window.addEventListener('hashchange', () => {
  void render();
});
void render();
