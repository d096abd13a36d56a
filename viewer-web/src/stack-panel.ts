// A study's series list beside the image viewer, as the study page and the reading view
// show them: `nav#series` (one link per series with its thumbnail; picking one shows it in
// the active viewport) and `section#viewer` (the viewports of the layout, the overlay with
// image number and window of the active one, a status line in words). The active
// viewport's state is mirrored in data attributes of `#viewer` (state, series, index,
// count, voi, invert, zoom, rotation, layout, active), each viewport's in its `.cell`, for
// the browser tests. The first viewport is `#viewport`.

import { ApiError, getDicomJson } from './api';
import { type DicomJson, Tag, num, text } from './dicom';
import { h, message, replace } from './dom';
import { type Layout, LAYOUTS, cellCount } from './layout';
import { Thumbnails } from './thumbnails';
import { type LeftTool, type SeriesImages, type StackState, StackViewer, loadSeries } from './viewer';

/** Series that hold no images to scroll through. */
const NON_IMAGE_MODALITIES = new Set(['SR', 'DOC', 'KO', 'PR', 'SEG', 'RTSTRUCT']);
const MAX_CELLS = 4;

let current: StackPanel | undefined;

/** Ends the viewers of the page (leaving a page that had them). */
export function destroyViewer(): void {
  current?.destroy();
  current = undefined;
}

export interface StackPanelOptions {
  /** Whether the page that asked is still the one shown. */
  isCurrent: () => boolean;
  /** A 401: the session has ended. */
  sessionEnded: () => void;
  /** The link of a series (for the address bar and opening in a new tab). */
  seriesHref: (series: string) => string;
  /** Called when the user picks another series. */
  onSeries?: (series: string) => void;
  /** Shown in the status line once the images are there. */
  hint?: string;
  /** Called with the study's series (QIDO-RS rows) as soon as they are listed. */
  onSeriesListed?: (series: DicomJson[]) => void;
}

/** One viewport of the layout and what it shows. */
export interface Cell {
  readonly n: number;
  readonly box: HTMLElement;
  readonly element: HTMLDivElement;
  readonly label: HTMLElement;
  viewer: StackViewer | undefined;
  study: string;
  series: string;
  /** A prior study (not the one being read). */
  prior: boolean;
  images: SeriesImages | undefined;
  state: StackState;
  /** Counts the series shown, to drop late answers. */
  generation: number;
  /** The viewers this viewport showed before, until they are gone (see `StackViewer.retire`). */
  retiring: Promise<void>;
}

export interface ShowOptions {
  /** The label above the images (series description, prior's date). */
  caption?: string;
  prior?: boolean;
  /** Picks the first image to show once the series' geometry is known. */
  initialIndex?: (images: SeriesImages) => number;
}

export interface StackPanel {
  /** The series list and the viewer, to put in the page. */
  seriesList: HTMLElement;
  viewerBox: HTMLElement;
  /** The study's series (QIDO-RS rows), once loaded. */
  series: DicomJson[];
  /** Loads the study's series and shows `wanted` (or the first image series). */
  load(study: string, wanted?: string): Promise<void>;
  /** The active viewport's viewer. */
  viewer(): StackViewer | undefined;
  cells(): Cell[];
  /** The viewports shown by the layout. */
  visibleCells(): Cell[];
  active(): Cell;
  setActive(n: number): void;
  layout(): Layout;
  /** Changes the layout; new viewports show the study's next series unless `fill` is false. */
  setLayout(layout: Layout, fill?: boolean): void;
  /** Shows a series (of this study or a prior) in viewport `n`. */
  show(n: number, study: string, series: string, opts?: ShowOptions): Promise<void>;
  /** The next (+1) or previous (−1) image series of the study in the active viewport. */
  stepSeries(delta: number): void;
  setLeftTool(tool: LeftTool): void;
  /** Called when a viewport changes (image, window, series, activity). */
  onCellChange(fn: (cell: Cell, what: 'state' | 'series' | 'active') => void): void;
  destroy(): void;
}

export function stackPanel(opts: StackPanelOptions): StackPanel {
  const seriesList = h('nav', { id: 'series', attrs: { 'aria-label': 'Series' } });
  const grid = h('div', { id: 'grid', class: 'grid', data: { layout: '1x1' } });
  const overlayPos = h('span', { id: 'slice' });
  const overlayVoi = h('span', { id: 'voi' });
  const overlayInvert = h('span', { id: 'invert' });
  // While the series loads behind the first image: how far it has come.
  const overlayLoading = h('span', { id: 'loading', attrs: { 'aria-live': 'off' } });
  const reset = h('button', { attrs: { type: 'button', title: 'Reset window and zoom (r)' } }, 'Reset window');
  const viewStatus = h('div', { id: 'view-status', attrs: { 'aria-live': 'polite' } });
  const viewerBox = h(
    'section',
    { id: 'viewer', data: { state: 'idle', layout: '1x1', active: '0' } },
    grid,
    h('div', { class: 'overlay' }, overlayPos, overlayVoi, overlayInvert, overlayLoading, reset),
    viewStatus,
  );
  const thumbnails = new Thumbnails();
  const listeners: Array<(cell: Cell, what: 'state' | 'series' | 'active') => void> = [];
  const emit = (cell: Cell, what: 'state' | 'series' | 'active') => {
    for (const fn of listeners) fn(cell, what);
  };

  let study = '';
  let layout: Layout = '1x1';
  let activeN = 0;
  let leftTool: LeftTool = 'window';

  const cells: Cell[] = [];
  for (let n = 0; n < MAX_CELLS; n++) {
    const element = h('div', {
      id: n === 0 ? 'viewport' : `viewport-${n + 1}`,
      class: 'viewport',
      attrs: { tabindex: '0', 'aria-label': `Image viewer ${n + 1}` },
    });
    const label = h('div', { class: 'cell-label' });
    const box = h('div', { class: 'cell', data: { cell: String(n), state: 'idle' } }, element, label);
    const cell: Cell = { n, box, element, label, viewer: undefined, study: '', series: '', prior: false, images: undefined, state: { index: 0, count: 0 }, generation: 0, retiring: Promise.resolve() };
    // A click (any button) or focus makes a viewport the active one.
    box.addEventListener('pointerdown', () => panel.setActive(n), { capture: true });
    element.addEventListener('focus', () => panel.setActive(n));
    cells.push(cell);
    grid.appendChild(box);
  }

  const labelText = (cell: Cell, caption: string) =>
    [caption, cell.state.count > 0 ? `${cell.state.index + 1}/${cell.state.count}` : ''].filter(Boolean).join(' · ');
  const captions = new Map<number, string>();

  const mirror = () => {
    const cell = cells[activeN];
    const s = cell.state;
    viewerBox.dataset.active = String(activeN);
    viewerBox.dataset.state = cell.box.dataset.state ?? 'idle';
    viewerBox.dataset.series = cell.series;
    viewerBox.dataset.index = String(s.index);
    viewerBox.dataset.count = String(s.count);
    viewerBox.dataset.invert = s.invert ? 'true' : 'false';
    viewerBox.dataset.zoom = s.zoom !== undefined ? s.zoom.toFixed(2) : '';
    viewerBox.dataset.rotation = String(s.rotation ?? 0);
    viewerBox.dataset.flip = `${s.flipHorizontal ? 'h' : ''}${s.flipVertical ? 'v' : ''}`;
    replace(overlayPos, s.count > 0 ? `Image ${s.index + 1} / ${s.count}` : '');
    replace(overlayInvert, s.invert ? 'Inverted' : '');
    viewerBox.dataset.loaded = String(s.loaded ?? 0);
    replace(overlayLoading, s.loaded !== undefined && s.count > 1 && s.loaded < s.count ? `Loading ${s.loaded} / ${s.count}` : '');
    if (s.windowWidth !== undefined && s.windowCenter !== undefined) {
      viewerBox.dataset.voi = `${Math.round(s.windowWidth)}/${Math.round(s.windowCenter)}`;
      replace(overlayVoi, `W ${Math.round(s.windowWidth)} L ${Math.round(s.windowCenter)}`);
    } else {
      delete viewerBox.dataset.voi;
      replace(overlayVoi);
    }
    for (const a of seriesList.querySelectorAll('a')) {
      if ((a as HTMLElement).dataset.series === cell.series && !cell.prior) a.setAttribute('aria-current', 'true');
      else a.removeAttribute('aria-current');
    }
  };

  const cellState = (cell: Cell) => (s: StackState) => {
    cell.state = s;
    cell.box.dataset.index = String(s.index);
    cell.box.dataset.count = String(s.count);
    replace(cell.label, labelText(cell, captions.get(cell.n) ?? ''));
    if (cell.n === activeN) mirror();
    emit(cell, 'state');
  };
  const cellError = (cell: Cell) => (t: string) => {
    cell.box.dataset.state = 'error';
    replace(cell.label, h('span', { class: 'error', attrs: { role: 'alert' } }, t));
    if (cell.n === activeN) {
      viewerBox.dataset.state = 'error';
      replace(viewStatus, h('p', { class: 'error', attrs: { role: 'alert' } }, t));
    }
  };

  function seriesCaption(uid: string): string {
    const s = panel.series.find((r) => text(r, Tag.SeriesInstanceUID) === uid);
    if (!s) return '';
    return [text(s, Tag.Modality), text(s, Tag.SeriesNumber) && `#${text(s, Tag.SeriesNumber)}`, text(s, Tag.SeriesDescription)]
      .filter(Boolean)
      .join(' ');
  }

  function imageSeries(): DicomJson[] {
    return panel.series.filter((s) => !NON_IMAGE_MODALITIES.has(text(s, Tag.Modality)));
  }

  /** Takes the viewport's viewer away at once; it goes when its first image is done. */
  function retire(cell: Cell): void {
    const old = cell.viewer;
    cell.viewer = undefined;
    // A viewer that fails to go must not keep the viewport from the next one.
    if (old) cell.retiring = cell.retiring.then(() => old.retire()).catch(() => undefined);
  }

  async function show(n: number, studyUid: string, uid: string, o: ShowOptions = {}): Promise<void> {
    const cell = cells[n];
    const mine = ++cell.generation;
    retire(cell);
    cell.study = studyUid;
    cell.series = uid;
    cell.prior = o.prior ?? false;
    cell.images = undefined;
    cell.state = { index: 0, count: 0 };
    cell.box.dataset.state = 'loading';
    cell.box.dataset.study = studyUid;
    cell.box.dataset.series = uid;
    cell.box.dataset.prior = cell.prior ? 'true' : 'false';
    captions.set(n, o.caption ?? seriesCaption(uid));
    replace(cell.label, `${captions.get(n) ?? ''} · loading…`);
    if (n === activeN) {
      mirror();
      replace(viewStatus, 'Loading the images…');
    }
    emit(cell, 'series');
    const still = () => opts.isCurrent() && mine === cell.generation;
    try {
      const images = await loadSeries(studyUid, uid);
      if (!still()) return;
      if (images.imageIds.length === 0) {
        cellError(cell)('This series has no images to show (it may be a report or a document).');
        return;
      }
      cell.images = images;
      // The viewport's element takes a new viewer once the one before has let go of it.
      await cell.retiring;
      if (!still()) return;
      const v = new StackViewer(cell.element, cellState(cell), cellError(cell), leftTool);
      cell.viewer = v;
      await v.show(images.imageIds, o.initialIndex?.(images) ?? 0);
      if (!still()) return;
      if (cell.box.dataset.state === 'loading') {
        cell.box.dataset.state = 'ready';
        if (n === activeN) {
          viewerBox.dataset.state = 'ready';
          replace(viewStatus, opts.hint ?? 'Scroll with the mouse wheel or the arrow keys; drag to change the window.');
          cell.element.focus();
        }
      }
      emit(cell, 'series');
    } catch (e) {
      if (!still()) return;
      if (e instanceof ApiError && e.status === 401) {
        opts.sessionEnded();
        return;
      }
      cellError(cell)(message(e));
    }
  }

  function seriesLink(s: DicomJson): HTMLElement {
    const uid = text(s, Tag.SeriesInstanceUID);
    const modality = text(s, Tag.Modality);
    const label = [
      modality,
      text(s, Tag.SeriesNumber) && `#${text(s, Tag.SeriesNumber)}`,
      text(s, Tag.SeriesDescription),
      `(${text(s, Tag.NumberOfSeriesRelatedInstances) || '?'})`,
    ]
      .filter(Boolean)
      .join(' ');
    const thumb = h('span', { class: 'thumb', data: { state: 'loading' } });
    const link = h('a', { attrs: { href: opts.seriesHref(uid) }, data: { series: uid } }, thumb, h('span', { class: 'series-label' }, label));
    if (!NON_IMAGE_MODALITIES.has(modality)) {
      thumbnails.series(study, uid).then(
        (url) => {
          const img = h('img', { attrs: { src: url, alt: '', width: '64', height: '64' } });
          img.addEventListener('load', () => (thumb.dataset.state = 'ready'), { once: true });
          img.addEventListener('error', () => (thumb.dataset.state = 'error'), { once: true });
          replace(thumb, img);
        },
        (e: unknown) => {
          // In words: short in the box, the reason on hover and for screen readers.
          thumb.dataset.state = 'error';
          thumb.title = message(e);
          thumb.setAttribute('aria-label', message(e));
          replace(thumb, 'no image');
        },
      );
    } else {
      thumb.dataset.state = 'none';
      replace(thumb, modality || '—');
    }
    link.addEventListener('click', (evt) => {
      if (evt.ctrlKey || evt.metaKey || evt.shiftKey || evt.button !== 0) return;
      evt.preventDefault();
      opts.onSeries?.(uid);
      void show(activeN, study, uid);
    });
    return link;
  }

  const panel: StackPanel = {
    seriesList,
    viewerBox,
    series: [],
    viewer: () => cells[activeN].viewer,
    cells: () => cells,
    visibleCells: () => cells.slice(0, cellCount(layout)),
    active: () => cells[activeN],
    setActive(n: number): void {
      if (n === activeN || n >= cellCount(layout)) return;
      activeN = n;
      for (const c of cells) {
        if (c.n === n) c.box.dataset.active = 'true';
        else delete c.box.dataset.active;
      }
      mirror();
      const status = cells[n].box.dataset.state;
      if (status === 'ready') replace(viewStatus, opts.hint ?? '');
      emit(cells[n], 'active');
    },
    layout: () => layout,
    setLayout(next: Layout, fill = true): void {
      if (!LAYOUTS.includes(next)) return;
      layout = next;
      grid.dataset.layout = next;
      viewerBox.dataset.layout = next;
      const count = cellCount(next);
      // New viewports show the study's next image series (the same one if it has one).
      const images = imageSeries();
      for (const c of cells) {
        c.box.hidden = c.n >= count;
        // `series`, not `viewer`: a viewport whose series is still loading has no viewer yet.
        if (c.n >= count && c.series) {
          c.generation++;
          retire(c);
          c.series = '';
          c.box.dataset.state = 'idle';
          c.state = { index: 0, count: 0 };
          emit(c, 'series');
        }
      }
      if (activeN >= count) panel.setActive(0);
      for (const c of cells.slice(0, count)) {
        if (!fill || c.series || images.length === 0 || !study) continue;
        const shownIdx = images.findIndex((s) => text(s, Tag.SeriesInstanceUID) === cells[0].series);
        const pick = images[(Math.max(0, shownIdx) + c.n) % images.length];
        void show(c.n, study, text(pick, Tag.SeriesInstanceUID));
      }
    },
    show,
    stepSeries(delta: number): void {
      const images = imageSeries();
      if (images.length === 0) return;
      const cell = cells[activeN];
      const at = cell.prior ? -1 : images.findIndex((s) => text(s, Tag.SeriesInstanceUID) === cell.series);
      const next = images[(((at + delta) % images.length) + images.length) % images.length];
      const uid = text(next, Tag.SeriesInstanceUID);
      opts.onSeries?.(uid);
      void show(activeN, study, uid);
    },
    setLeftTool(tool: LeftTool): void {
      leftTool = tool;
      viewerBox.dataset.tool = tool;
      for (const c of cells) c.viewer?.setLeftTool(tool);
    },
    onCellChange(fn) {
      listeners.push(fn);
    },
    destroy(): void {
      for (const c of cells) {
        c.generation++;
        retire(c);
      }
      thumbnails.release();
    },
    async load(studyUid: string, wanted?: string): Promise<void> {
      study = studyUid;
      let rows: DicomJson[];
      try {
        rows = await getDicomJson(`/dicom-web/studies/${study}/series`, 'the series of this study');
      } catch (e) {
        if (!opts.isCurrent()) return;
        if (e instanceof ApiError && e.status === 401) {
          opts.sessionEnded();
          return;
        }
        cellError(cells[0])(message(e));
        opts.onSeriesListed?.([]);
        return;
      }
      if (!opts.isCurrent()) return;
      rows.sort((a, b) => (num(a, Tag.SeriesNumber) ?? 0) - (num(b, Tag.SeriesNumber) ?? 0));
      panel.series = rows;
      opts.onSeriesListed?.(rows);
      const chosen = (wanted && rows.find((s) => text(s, Tag.SeriesInstanceUID) === wanted)) || imageSeries()[0] || rows[0];
      replace(seriesList, ...rows.map(seriesLink));
      if (!chosen) {
        viewerBox.dataset.series = '';
        cellError(cells[0])('This study has no series.');
        return;
      }
      await show(0, study, text(chosen, Tag.SeriesInstanceUID));
    },
  };
  cells[0].box.dataset.active = 'true';
  for (const c of cells.slice(1)) c.box.hidden = true;
  current?.destroy();
  current = panel;
  return panel;
}
