// Key images: the images of the study being read that the radiologist marks (K, or the
// button) to go with the report — at most 8. They are saved with the draft
// (`key_images` of `PUT /api/worklist/tasks/{id}/report`: series and SOP instance UIDs and
// the 1-based frame) and come back with the report. The list shows them; a click shows one,
// × unmarks it. A signed report's key images no longer change.

import { h, replace } from './dom';
import { notify } from './messages';
import type { KeyImage } from './reading-api';
import type { StackPanel } from './stack-panel';
import { imageRef } from './viewer';

export const MAX_KEY_IMAGES = 8;

export class KeyImages {
  readonly element: HTMLElement;
  /** "★ Key image" over the active viewport when its image is one. */
  readonly mark: HTMLElement;
  private readonly list: HTMLElement;
  private readonly count: HTMLElement;
  private items: KeyImage[] = [];

  constructor(
    private readonly panel: StackPanel,
    private readonly study: string,
    /** Whether the key images may change now (a draft the user may write). */
    private readonly editable: () => boolean,
    private readonly onChange: () => void,
  ) {
    this.count = h('span', { id: 'key-image-count', class: 'count' }, '0');
    this.list = h('ol', { id: 'key-images', class: 'side-list' });
    this.mark = h('span', { id: 'key-mark' });
    this.element = h('section', { class: 'side-section', attrs: { 'aria-label': 'Key images' } }, h('h3', {}, 'Key images ', this.count), this.list);
    panel.onCellChange((cell) => {
      if (cell === panel.active()) this.showMark();
    });
    this.render();
  }

  get(): KeyImage[] {
    return this.items.map((k) => ({ ...k }));
  }

  /** The key images of a loaded report. */
  set(items: KeyImage[] | undefined): void {
    this.items = (items ?? []).slice(0, MAX_KEY_IMAGES).map((k) => ({ ...k }));
    this.render();
  }

  private current(): KeyImage | undefined {
    const cell = this.panel.active();
    if (cell.prior || cell.study !== this.study) return undefined;
    const id = cell.viewer?.currentImageId();
    const ref = id ? imageRef(id) : undefined;
    if (!ref) return undefined;
    return { series_instance_uid: ref.series, sop_instance_uid: ref.sop, frame: ref.frame };
  }

  private indexOf(k: KeyImage): number {
    return this.items.findIndex(
      (x) => x.series_instance_uid === k.series_instance_uid && x.sop_instance_uid === k.sop_instance_uid && x.frame === k.frame,
    );
  }

  /** Marks the active viewport's image as a key image, or unmarks it (K). */
  toggle(): void {
    if (!this.editable()) {
      notify('Key images can be changed only on a draft report you are writing.', 'error');
      return;
    }
    const k = this.current();
    if (!k) {
      notify('Key images are images of the study being read: pick one in its viewport first.', 'error');
      return;
    }
    const at = this.indexOf(k);
    if (at >= 0) this.items.splice(at, 1);
    else if (this.items.length >= MAX_KEY_IMAGES) {
      notify(`At most ${MAX_KEY_IMAGES} key images: unmark one first.`, 'error');
      return;
    } else this.items.push(k);
    this.render();
    this.onChange();
  }

  private render(): void {
    replace(this.count, String(this.items.length));
    this.list.dataset.count = String(this.items.length);
    if (this.items.length === 0) {
      replace(this.list, h('li', { class: 'sub' }, 'None. k marks the image shown.'));
    } else {
      replace(
        this.list,
        ...this.items.map((k, i) => {
          const go = h('button', { class: 'link', attrs: { type: 'button', title: 'Show this image' } }, `${i + 1}. ${this.describe(k)}`);
          go.addEventListener('click', () => this.reveal(k));
          const del = h('button', { class: 'remove', attrs: { type: 'button', 'aria-label': 'Unmark this key image', title: 'Unmark' } }, '×');
          del.disabled = !this.editable();
          del.addEventListener('click', () => {
            if (!this.editable()) return;
            const at = this.indexOf(k);
            if (at >= 0) this.items.splice(at, 1);
            this.render();
            this.onChange();
          });
          return h('li', { data: { sop: k.sop_instance_uid, frame: String(k.frame) } }, go, del);
        }),
      );
    }
    this.showMark();
  }

  private describe(k: KeyImage): string {
    const s = this.panel.series.find((r) => r['0020000E']?.Value?.[0] === k.series_instance_uid);
    const modality = (s?.['00080060']?.Value?.[0] as string | undefined) ?? '';
    const number = s?.['00200011']?.Value?.[0];
    const index = this.imageIndex(k);
    return [modality, number !== undefined ? `#${String(number)}` : '', index !== undefined ? `image ${index + 1}` : `frame ${k.frame}`]
      .filter(Boolean)
      .join(' ');
  }

  private imageIndex(k: KeyImage): number | undefined {
    for (const c of this.panel.visibleCells()) {
      if (c.series !== k.series_instance_uid || c.prior) continue;
      const i = c.viewer?.imageIds().findIndex((id) => {
        const r = imageRef(id);
        return r?.sop === k.sop_instance_uid && r.frame === k.frame;
      });
      if (i !== undefined && i >= 0) return i;
    }
    return undefined;
  }

  private async reveal(k: KeyImage): Promise<void> {
    const cell = this.panel.active();
    if (cell.series !== k.series_instance_uid || cell.prior) {
      await this.panel.show(cell.n, this.study, k.series_instance_uid);
    }
    const i = this.imageIndex(k);
    if (i !== undefined) await this.panel.active().viewer?.jumpTo(i);
  }

  private showMark(): void {
    const k = this.current();
    const on = k !== undefined && this.indexOf(k) >= 0;
    this.panel.viewerBox.dataset.key = on ? 'true' : 'false';
    replace(this.mark, on ? '★ Key image' : '');
  }
}
