// The reading view of one task (`#/read/<task>/<study>`): the patient banner, the study's
// series (with thumbnails), the patient's priors, the measurements and key images on the
// left; the viewports (wheel/arrow scrolling, window drag, presets on number keys, invert,
// reset, and the image tools of tools.ts: zoom, pan, rotate, flip, measurements, cine,
// layouts, synchronised scrolling, key images) and the report panel beside them. Opening the view claims the task
// (or renews the claim) and renews it every 4 minutes while the view is open, so the lease
// (10 min by default) never lapses under a radiologist who is still reading.

import { ApiError, getDicomJson } from './api';
import { type DicomJson, Tag, personName, text, texts } from './dicom';
import { helpDialog } from './dialogs';
import { h, message, replace } from './dom';
import { ageOn, countdown, dicomDate, priorityText, sexText } from './format';
import { live } from './live';
import { notify } from './messages';
import { type PageContext, typingIn } from './page';
import { type KeyImage, type WorklistItem, claim, studyReports, taskHints, templates, worklist } from './reading-api';
import { ReportPanel } from './report-panel';
import { KeyImages } from './key-images';
import { Measurements } from './measurements';
import { Priors } from './priors';
import { destroyViewer, stackPanel } from './stack-panel';
import { TOOL_SHORTCUTS, ViewerTools } from './tools';

/** Window presets (width, level) on the number keys, in Hounsfield units. */
export const PRESETS: [string, string, number, number][] = [
  ['1', 'CT brain', 80, 40],
  ['2', 'Lung', 1500, -600],
  ['3', 'Bone', 2000, 300],
  ['4', 'Abdomen', 400, 50],
];

export const SHORTCUTS: [string, string][] = [
  ['Ctrl + S', 'Save the draft'],
  ['Ctrl + Enter', 'Sign the report (asks for confirmation); on a signed report, sign the addendum'],
  ['↑ / ↓, PgUp / PgDn, wheel', 'Previous / next image'],
  ['Left drag', 'Window width (left/right) and level (up/down)'],
  ...PRESETS.map(([key, name, w, l]): [string, string] => [key, `Window preset ${name} (W ${w} / L ${l})`]),
  ['i', 'Invert'],
  ['r', 'Reset window, zoom, pan, rotation and flips'],
  ...TOOL_SHORTCUTS,
  ['f', 'Write the findings'],
  ['w', 'Back to the worklist'],
  ['?', 'This help'],
  ['Esc', 'Close a dialog; leave a text field'],
];

const LEASE_RENEWAL_MS = 4 * 60 * 1000;

export async function readingPage(ctx: PageContext, taskId: number, study: string): Promise<void> {
  const name = h('h1', { id: 'patient-name' }, '');
  const facts = h('div', { id: 'patient-facts', class: 'facts' }, h('span', { class: 'status' }, 'Loading the study…'));
  const taskFacts = h('div', { id: 'task-facts', class: 'facts' });
  const help = helpDialog(SHORTCUTS);
  const helpButton = h('button', { id: 'help-button', attrs: { type: 'button', title: 'Keyboard shortcuts (?)' } }, 'Shortcuts ?');
  helpButton.addEventListener('click', () => help.toggle());
  const banner = h(
    'header',
    { id: 'patient-banner', class: 'banner' },
    h('a', { class: 'back', attrs: { href: '#/worklist/mine', title: 'Back to the worklist (w)' } }, '← Worklist'),
    h('div', { class: 'who' }, name, facts),
    taskFacts,
    helpButton,
  );

  const panel: ReportPanel = new ReportPanel({
    taskId,
    me: ctx.me,
    sessionEnded: ctx.sessionEnded,
    isCurrent: ctx.isCurrent,
    onSigned: () => {
      renewing = false;
      taskHints.set(taskId, 'done');
    },
    keyImages: {
      get: (): KeyImage[] => keyImages.get(),
      set: (items: KeyImage[] | undefined): void => keyImages.set(items),
    },
  });
  let bodyParts: string[] = [];
  let listed: () => void = () => undefined;
  const seriesListed = new Promise<void>((resolve) => (listed = resolve));
  const stack = stackPanel({
    isCurrent: ctx.isCurrent,
    sessionEnded: ctx.sessionEnded,
    seriesHref: () => `#/read/${taskId}/${study}`,
    hint: 'Wheel or ↑/↓ scroll, drag sets the window, right drag zooms, 1–4 presets, m measures, space plays; ? lists every shortcut.',
    onSeriesListed: (rows) => {
      bodyParts = rows.flatMap((s) => texts(s, Tag.BodyPartExamined));
      listed();
    },
  });
  const presets = h(
    'div',
    { class: 'presets', attrs: { role: 'toolbar', 'aria-label': 'Window presets' } },
    ...PRESETS.map(([key, label, w, l]) => {
      const b = h('button', { attrs: { type: 'button', title: `W ${w} / L ${l} (key ${key})` }, data: { preset: key } }, `${key} ${label}`);
      b.addEventListener('click', () => applyPreset(key));
      return b;
    }),
    (() => {
      const b = h('button', { attrs: { type: 'button', title: 'Invert (i)' } }, 'i Invert');
      b.addEventListener('click', () => stack.viewer()?.toggleInvert());
      return b;
    })(),
  );
  const measurements = new Measurements(stack);
  const keyImages: KeyImages = new KeyImages(stack, study, () => panel.editable(), () => panel.markChanged());
  const priors = new Priors(stack, ctx.sessionEnded, ctx.isCurrent);
  const tools = new ViewerTools(stack, measurements, keyImages);
  stack.viewerBox.insertBefore(tools.toolbar, stack.viewerBox.firstChild);
  stack.viewerBox.insertBefore(presets, stack.viewerBox.firstChild);
  stack.viewerBox.querySelector('.overlay')?.appendChild(keyImages.mark);
  const side = h('aside', { id: 'side', class: 'side', attrs: { 'aria-label': 'Series, priors, measurements' } },
    h('h3', {}, 'Series'), stack.seriesList, priors.element, measurements.element, keyImages.element);
  ctx.app.dataset.page = 'reading';
  replace(ctx.app, banner, h('div', { class: 'reading' }, side, stack.viewerBox, panel.element));

  function applyPreset(key: string): void {
    const p = PRESETS.find(([k]) => k === key);
    const v = stack.viewer();
    if (!p || !v) return;
    v.setWindow(p[2], p[3]);
    stack.viewerBox.dataset.preset = p[1];
  }

  // Keyboard: report actions anywhere (also while writing), viewer keys outside fields.
  const onKey = (evt: KeyboardEvent) => {
    const confirmOpen = document.getElementById('confirm-dialog');
    if (confirmOpen) return;
    const mod = evt.ctrlKey || evt.metaKey;
    if (mod && !evt.altKey && (evt.key === 's' || evt.key === 'S')) {
      evt.preventDefault();
      void panel.save();
      return;
    }
    if (mod && evt.key === 'Enter') {
      evt.preventDefault();
      void panel.primaryAction();
      return;
    }
    if (evt.key === 'Escape' && typingIn(evt.target)) {
      (evt.target as HTMLElement).blur();
      stack.viewerBox.querySelector<HTMLElement>('#viewport')?.focus();
      return;
    }
    if (mod || evt.altKey || typingIn(evt.target)) return;
    if (help.isOpen()) {
      if (evt.key === '?') {
        evt.preventDefault();
        help.close();
      }
      return;
    }
    const v = stack.viewer();
    const target = evt.target as HTMLElement | null;
    const inViewport = target?.id === 'viewport';
    // Arrow keys keep their meaning on controls (radio buttons, links, buttons).
    const onControl = target instanceof HTMLInputElement || target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement;
    switch (evt.key) {
      case '?':
        help.toggle();
        break;
      case '1':
      case '2':
      case '3':
      case '4':
        applyPreset(evt.key);
        break;
      case 'i':
      case 'I':
        v?.toggleInvert();
        break;
      case 'r':
      case 'R':
        v?.reset();
        delete stack.viewerBox.dataset.preset;
        break;
      case 'f':
        panel.focusFirst();
        break;
      case 'w':
        location.hash = '#/worklist/mine';
        break;
      case 'ArrowDown':
      case 'PageDown':
        if (inViewport || onControl) return; // the viewer scrolls itself
        v?.scroll(1);
        break;
      case 'ArrowUp':
      case 'PageUp':
        if (inViewport || onControl) return;
        v?.scroll(-1);
        break;
      default:
        // Space and Enter on a button are the button's.
        if ((evt.key === ' ' || evt.key === 'Enter') && onControl) return;
        if (!tools.handleKey(evt)) return;
    }
    evt.preventDefault();
  };
  document.addEventListener('keydown', onKey);
  const beforeUnload = (evt: BeforeUnloadEvent) => {
    if (panel.dirty) evt.preventDefault();
  };
  window.addEventListener('beforeunload', beforeUnload);

  // The claim: taken now, renewed while the view is open.
  // A done task (its report signed) is not claimed again: the view shows the signed
  // report and its addenda. The server says so only in words ("task N is closed").
  let renewing = true;
  const renew = async (): Promise<void> => {
    if (!renewing) return;
    try {
      await claim(taskId);
    } catch (e) {
      if (!ctx.isCurrent()) return;
      if (e instanceof ApiError && e.status === 401) ctx.sessionEnded();
      else if (e instanceof ApiError && e.status === 409 && /is closed/.test(e.message)) renewing = false;
      else notify(`You do not hold this task: ${message(e)}`, 'error');
    }
  };
  const renewal = window.setInterval(() => void renew(), LEASE_RENEWAL_MS);
  let item: WorklistItem | undefined;
  const ticker = window.setInterval(() => showTask(), 1000);
  const offLive = live.subscribe((e) => {
    if (e.study_instance_uid !== study) return;
    if (e.kind === 'task_reassigned' || e.kind === 'task_released') {
      notify('This task was moved: check the worklist before signing.', 'error');
    }
  });
  // Unsaved changes are saved every minute, and when the view is left.
  const autosave = window.setInterval(() => {
    if (panel.dirty) void panel.save();
  }, 60_000);
  ctx.onLeave(() => {
    window.clearInterval(autosave);
    panel.saveOnLeave();
    document.removeEventListener('keydown', onKey);
    window.removeEventListener('beforeunload', beforeUnload);
    window.clearInterval(renewal);
    window.clearInterval(ticker);
    offLive();
    help.close();
    tools.destroy();
    measurements.destroy();
    destroyViewer();
    delete ctx.app.dataset.page;
  });

  function showTask(): void {
    if (!item) return;
    const c = countdown(item.due_at, Date.now());
    replace(
      taskFacts,
      h('span', { class: `badge priority priority-${item.priority}` }, priorityText(item.priority)),
      h('span', { class: `countdown${c.overdue ? ' overdue' : ''}`, attrs: { title: 'Time left to report' } }, c.text),
    );
  }

  function showStudy(row: DicomJson, clinic: string | null): void {
    replace(name, personName(row, Tag.PatientName) || '(no name)');
    const studyDate = text(row, Tag.StudyDate);
    const birth = text(row, Tag.PatientBirthDate);
    const age = ageOn(birth, studyDate);
    const sex = sexText(text(row, Tag.PatientSex));
    const fact = (label: string, value: string, field: string) =>
      value ? h('span', { class: 'fact', data: { field } }, h('span', { class: 'label' }, label), value) : null;
    replace(
      facts,
      fact('Sex', sex, 'sex'),
      fact('Age', [age, birth && `born ${dicomDate(birth)}`].filter(Boolean).join(', '), 'age'),
      fact('ID', text(row, Tag.PatientID), 'patient-id'),
      fact('Clinic', clinic ?? '', 'clinic'),
      fact('Study', [dicomDate(studyDate), text(row, Tag.StudyDescription)].filter(Boolean).join(' · '), 'study'),
      fact('Accession', text(row, Tag.AccessionNumber), 'accession'),
    );
  }

  // The claim first: a pool task's study becomes visible to the radiologist only once
  // claimed. A task that is done (its report signed) is not claimed: the view shows its
  // report. Opened from the worklist or a study page, the task is known; opened from an
  // address (a reload), it is looked up in the worklist, and claimed unless found done.
  const hint = taskHints.get(taskId);
  if (hint === 'done') {
    renewing = false;
  } else if (hint) {
    item = hint;
  } else {
    const items = await worklist('all').catch(() => undefined);
    if (!ctx.isCurrent()) return;
    item = items?.find((i) => i.task_id === taskId);
  }
  await renew();
  if (!ctx.isCurrent()) return;
  showTask();
  const images = stack.load(study);
  void priors.load(study);
  const rest = (async () => {
    const [row] = await getDicomJson(`/dicom-web/studies?StudyInstanceUID=${study}`, 'this study');
    if (!ctx.isCurrent()) return;
    if (!row) throw new ApiError(404, 'This study was not found, or you may not see it.');
    showStudy(row, item?.clinic ?? null);
    const [reports, tpls] = await Promise.all([studyReports(study), templates(), seriesListed]);
    if (!ctx.isCurrent()) return;
    const modalities = item?.modalities.length ? item.modalities : texts(row, Tag.ModalitiesInStudy);
    panel.load(reports, tpls, modalities, bodyParts);
  })().catch((e: unknown) => {
    if (!ctx.isCurrent()) return;
    if (e instanceof ApiError && e.status === 401) {
      ctx.sessionEnded();
      return;
    }
    panel.showLoadError(message(e));
    replace(facts, h('span', { class: 'error', attrs: { role: 'alert' } }, message(e)));
  });
  await Promise.all([images, rest]);
}
