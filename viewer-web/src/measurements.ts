// The measurements drawn on the images (Cornerstone's annotations of the length, angle,
// rectangle and ellipse ROI tools), listed with their values as text: length in mm, angle
// in degrees, ROI mean and standard deviation (HU for CT) and area. A click on one shows
// its image in a viewport that has it; × deletes it (Delete deletes the newest). They live
// as long as the reading view: leaving it clears them.

import { eventTarget } from '@cornerstonejs/core';
import { Enums as ToolEnums, annotation as annotations, type Types as ToolTypes } from '@cornerstonejs/tools';

import { h, replace } from './dom';
import type { StackPanel } from './stack-panel';
import { MEASUREMENT_TOOLS, imageRef } from './viewer';

const NAMES: Record<string, string> = {
  Length: 'Length',
  Angle: 'Angle',
  RectangleROI: 'Rectangle',
  EllipticalROI: 'Ellipse',
};

type Stats = Record<string, unknown>;

function round(v: unknown, digits = 1): string | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : undefined;
}

/** The value of a measurement in words, e.g. "45.3 mm", "Mean 41.2 SD 12.0 HU, 310.5 mm²". */
export function describe(tool: string, stats: Stats | undefined): string {
  const none = tool === 'Length' || tool === 'Angle' ? 'no value' : 'no value (is it inside the image?)';
  if (!stats) return none;
  if (tool === 'Length') {
    const l = round(stats.length);
    return l ? `${l} ${typeof stats.unit === 'string' ? stats.unit : 'mm'}` : none;
  }
  if (tool === 'Angle') {
    const a = round(stats.angle);
    return a ? `${a}°` : none;
  }
  const unit = typeof stats.modalityUnit === 'string' ? ` ${stats.modalityUnit}` : '';
  const parts: string[] = [];
  const mean = round(stats.mean);
  const sd = round(stats.stdDev);
  if (mean) parts.push(`mean ${mean}${sd ? ` SD ${sd}` : ''}${unit}`);
  const area = round(stats.area);
  if (area) parts.push(`area ${area} ${typeof stats.areaUnit === 'string' ? stats.areaUnit : 'mm²'}`);
  return parts.length ? parts.join(', ') : none;
}

export class Measurements {
  readonly element: HTMLElement;
  private readonly list: HTMLElement;
  private readonly count: HTMLElement;
  private timer: number | undefined;
  private readonly off: Array<() => void> = [];
  /** What the list shows, to leave it alone when nothing changed. */
  private shown = '';

  constructor(private readonly panel: StackPanel) {
    this.count = h('span', { id: 'measurement-count', class: 'count' }, '0');
    this.list = h('ol', { id: 'measurements', class: 'side-list' });
    this.element = h('section', { class: 'side-section', attrs: { 'aria-label': 'Measurements' } }, h('h3', {}, 'Measurements ', this.count), this.list);
    const later = () => {
      if (this.timer !== undefined) return;
      this.timer = window.setTimeout(() => {
        this.timer = undefined;
        this.render();
      }, 100);
    };
    for (const type of [ToolEnums.Events.ANNOTATION_COMPLETED, ToolEnums.Events.ANNOTATION_MODIFIED, ToolEnums.Events.ANNOTATION_REMOVED]) {
      eventTarget.addEventListener(type, later);
      this.off.push(() => eventTarget.removeEventListener(type, later));
    }
    // Statistics are (re)computed when the annotations are drawn, on the viewport elements
    // (the event does not bubble: caught on the way down).
    const rendered = ToolEnums.Events.ANNOTATION_RENDERED;
    panel.viewerBox.addEventListener(rendered, later, true);
    this.off.push(() => panel.viewerBox.removeEventListener(rendered, later, true));
    this.render();
  }

  private all(): ToolTypes.Annotation[] {
    return annotations.state.getAllAnnotations().filter((a) => MEASUREMENT_TOOLS.includes(a.metadata?.toolName ?? ''));
  }

  render(): void {
    const items = this.all();
    const signature = items
      .map((a) => {
        const stats = Object.values((a.data as { cachedStats?: Record<string, Stats> }).cachedStats ?? {})[0];
        return `${a.annotationUID}:${describe(a.metadata?.toolName ?? '', stats)}:${a.metadata?.referencedImageId ?? ''}`;
      })
      .join('|');
    if (signature === this.shown && this.list.childElementCount > 0) return;
    this.shown = signature;
    replace(this.count, String(items.length));
    this.list.dataset.count = String(items.length);
    if (items.length === 0) {
      replace(this.list, h('li', { class: 'sub' }, 'None. m length, a angle, b rectangle, o ellipse.'));
      return;
    }
    replace(
      this.list,
      ...items.map((a, i) => {
        const tool = a.metadata?.toolName ?? '';
        const stats = Object.values((a.data as { cachedStats?: Record<string, Stats> }).cachedStats ?? {})[0];
        const value = describe(tool, stats);
        const imageId = a.metadata?.referencedImageId ?? '';
        const where = this.imageNumber(imageId);
        const go = h(
          'button',
          { class: 'link', attrs: { type: 'button', title: 'Show this image' } },
          `${i + 1}. ${NAMES[tool] ?? tool} ${value}`,
          where ? h('span', { class: 'sub' }, where) : null,
        );
        go.addEventListener('click', () => this.reveal(imageId));
        const del = h('button', { class: 'remove', attrs: { type: 'button', 'aria-label': 'Delete this measurement', title: 'Delete' } }, '×');
        del.addEventListener('click', () => this.remove(a.annotationUID));
        return h('li', { data: { tool, value, uid: a.annotationUID ?? '' } }, go, del);
      }),
    );
  }

  private imageNumber(imageId: string): string {
    for (const c of this.panel.visibleCells()) {
      const i = c.viewer?.imageIds().indexOf(imageId) ?? -1;
      if (i >= 0) return `image ${i + 1}${c.prior ? ' (prior)' : ''}`;
    }
    const ref = imageRef(imageId);
    return ref && ref.frame > 1 ? `frame ${ref.frame}` : '';
  }

  private reveal(imageId: string): void {
    for (const c of this.panel.visibleCells()) {
      const i = c.viewer?.imageIds().indexOf(imageId) ?? -1;
      if (i >= 0) {
        this.panel.setActive(c.n);
        void c.viewer?.jumpTo(i);
        return;
      }
    }
  }

  private remove(uid: string | undefined): void {
    if (!uid) return;
    annotations.state.removeAnnotation(uid);
    for (const c of this.panel.visibleCells()) c.viewer?.render();
    this.render();
  }

  /** Deletes the newest measurement (Delete key). */
  removeLast(): void {
    const items = this.all();
    this.remove(items[items.length - 1]?.annotationUID);
  }

  destroy(): void {
    for (const f of this.off.splice(0)) f();
    if (this.timer !== undefined) window.clearTimeout(this.timer);
    annotations.state.removeAllAnnotations();
  }
}
