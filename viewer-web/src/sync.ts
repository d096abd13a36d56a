// Synchronised scrolling of the viewports that show series of the same orientation (the
// current study and a prior side by side): scrolling one moves the others to the image
// nearest in slice position. Positions are along the slice normal, from Image Position and
// Orientation (Patient). Two studies seldom share a frame of reference, so the offset
// between them is taken when the synchronisation starts (or a series is shown): what is
// side by side then stays side by side. Series without geometry (US, multi-frame, CR)
// are not synchronised.

import type { Cell, StackPanel } from './stack-panel';

/** |cos| of the angle between two slice normals above which they count as parallel. */
const PARALLEL = 0.95;

function dot(a: number[], b: number[]): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

function positionOf(cell: Cell): number | undefined {
  return cell.images?.positions[cell.state.index];
}

function closest(cell: Cell, target: number): number {
  let best = -1;
  let distance = Infinity;
  cell.images?.positions.forEach((p, i) => {
    if (p === undefined) return;
    const d = Math.abs(p - target);
    if (d < distance) {
      distance = d;
      best = i;
    }
  });
  return best;
}

export class SliceSync {
  private on = true;
  /** Each viewport's position when the synchronisation (re)started. */
  private anchors = new Map<number, number>();
  /** Image indices set by the synchronisation: their own events do not propagate. */
  private pending = new Map<number, number>();
  /** The image index each viewport was last seen at (only a change propagates). */
  private seen = new Map<number, number>();

  constructor(
    private readonly panel: StackPanel,
    private readonly onToggle: (on: boolean) => void,
  ) {
    panel.onCellChange((cell, what) => {
      if (what === 'series') {
        this.seen.delete(cell.n);
        this.pending.delete(cell.n);
        if (cell.images) this.reanchor();
        return;
      }
      if (what === 'state') this.follow(cell);
    });
  }

  enabled(): boolean {
    return this.on;
  }

  toggle(): void {
    this.on = !this.on;
    if (this.on) this.reanchor();
    this.onToggle(this.on);
  }

  /** Whether two viewports show series that can scroll together. */
  static compatible(a: Cell, b: Cell): boolean {
    const na = a.images?.normal;
    const nb = b.images?.normal;
    if (!na || !nb || !a.viewer || !b.viewer) return false;
    if (!a.images?.positions.some((p) => p !== undefined) || !b.images?.positions.some((p) => p !== undefined)) return false;
    return Math.abs(dot(na, nb)) >= PARALLEL;
  }

  /**
   * The first image to show of a series opened beside `source`: the same position when they
   * share a frame of reference, else the same place in the stack (by fraction).
   */
  static initialIndex(source: Cell, images: NonNullable<Cell['images']>): number {
    const n = images.imageIds.length;
    // A clip or a series without geometry starts at its beginning.
    if (n === 0 || !images.positions.some((p) => p !== undefined)) return 0;
    const pos = positionOf(source);
    if (pos !== undefined && source.images && images.frameOfReference && images.frameOfReference === source.images.frameOfReference) {
      let best = 0;
      let distance = Infinity;
      images.positions.forEach((p, i) => {
        if (p !== undefined && Math.abs(p - pos) < distance) {
          distance = Math.abs(p - pos);
          best = i;
        }
      });
      return best;
    }
    const count = source.state.count;
    return count > 1 ? Math.round((source.state.index / (count - 1)) * (n - 1)) : 0;
  }

  /** Takes the current positions as the ones that correspond. */
  reanchor(): void {
    this.anchors.clear();
    for (const c of this.panel.visibleCells()) {
      const p = positionOf(c);
      if (p !== undefined) this.anchors.set(c.n, p);
    }
  }

  private follow(source: Cell): void {
    if (this.seen.get(source.n) === source.state.index) return;
    this.seen.set(source.n, source.state.index);
    const expected = this.pending.get(source.n);
    if (expected !== undefined) {
      if (expected === source.state.index) this.pending.delete(source.n);
      return;
    }
    if (!this.on) return;
    const pos = positionOf(source);
    const sourceAnchor = this.anchors.get(source.n);
    if (pos === undefined || sourceAnchor === undefined) return;
    for (const target of this.panel.visibleCells()) {
      if (target === source || !SliceSync.compatible(source, target)) continue;
      const targetAnchor = this.anchors.get(target.n);
      if (targetAnchor === undefined) continue;
      // Along the target's own normal: the two may point opposite ways.
      const sign = Math.sign(dot(source.images?.normal ?? [0, 0, 1], target.images?.normal ?? [0, 0, 1])) || 1;
      const index = closest(target, targetAnchor + sign * (pos - sourceAnchor));
      if (index < 0 || index === target.state.index) continue;
      this.pending.set(target.n, index);
      void target.viewer?.jumpTo(index).finally(() => {
        // If the image never came (an error), do not swallow the next real scroll.
        window.setTimeout(() => {
          if (this.pending.get(target.n) === index) this.pending.delete(target.n);
        }, 2000);
      });
    }
  }
}
