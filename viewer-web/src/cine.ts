// Cine: plays the active viewport's stack (a multi-frame US clip, or any series) in a loop
// at a chosen rate. Space plays and pauses, [ and ] change the rate; the rate starts at
// what the images declare (Recommended Display Frame Rate, Cine Rate, Frame Time) or
// 10 frames per second. Each step waits for its image, so a slow network slows the clip
// instead of piling up requests.

import { h, replace } from './dom';
import type { Cell, StackPanel } from './stack-panel';

const DEFAULT_FPS = 10;
const MIN_FPS = 1;
const MAX_FPS = 60;

export class Cine {
  readonly element: HTMLElement;
  private readonly button: HTMLButtonElement;
  private readonly rate: HTMLInputElement;
  private playing: Cell | undefined;
  private timer: number | undefined;
  private fps = DEFAULT_FPS;

  constructor(private readonly panel: StackPanel) {
    this.button = h('button', { id: 'cine-play', attrs: { type: 'button', title: 'Play / pause (space)', 'aria-pressed': 'false' } }, '▶ Play');
    this.rate = h('input', {
      id: 'cine-fps',
      attrs: { type: 'number', min: String(MIN_FPS), max: String(MAX_FPS), step: '1', value: String(DEFAULT_FPS), 'aria-label': 'Frames per second', title: 'Frames per second ([ slower, ] faster)' },
    });
    this.button.addEventListener('click', () => this.toggle());
    this.rate.addEventListener('change', () => this.setFps(Number(this.rate.value)));
    this.element = h('span', { class: 'cine', data: { playing: 'false' } }, this.button, this.rate, h('span', { class: 'unit' }, 'fps'));
    panel.onCellChange((cell, what) => {
      if (what === 'series' && cell === this.playing) this.stop();
      if (what === 'series' && cell === panel.active() && cell.images?.framesPerSecond && !this.playing) {
        this.setFps(cell.images.framesPerSecond);
      }
    });
  }

  isPlaying(): boolean {
    return this.playing !== undefined;
  }

  toggle(): void {
    if (this.playing) this.stop();
    else this.play();
  }

  /** Faster (+1) or slower (−1). */
  step(delta: number): void {
    this.setFps(this.fps + delta * (this.fps >= 20 ? 5 : this.fps >= 5 ? 2 : 1));
  }

  setFps(fps: number): void {
    if (!Number.isFinite(fps)) fps = DEFAULT_FPS;
    this.fps = Math.round(Math.min(MAX_FPS, Math.max(MIN_FPS, fps)));
    this.rate.value = String(this.fps);
    this.element.dataset.fps = String(this.fps);
  }

  play(): void {
    const cell = this.panel.active();
    if (!cell.viewer || cell.state.count < 2) return;
    this.playing = cell;
    this.show(true);
    const tick = async () => {
      const started = performance.now();
      if (this.playing !== cell || !cell.viewer) return;
      await cell.viewer.scroll(1, true);
      if (this.playing !== cell) return;
      const wait = Math.max(0, 1000 / this.fps - (performance.now() - started));
      this.timer = window.setTimeout(() => void tick(), wait);
    };
    this.timer = window.setTimeout(() => void tick(), 1000 / this.fps);
  }

  stop(): void {
    this.playing = undefined;
    if (this.timer !== undefined) window.clearTimeout(this.timer);
    this.timer = undefined;
    this.show(false);
  }

  private show(playing: boolean): void {
    this.element.dataset.playing = playing ? 'true' : 'false';
    this.button.setAttribute('aria-pressed', playing ? 'true' : 'false');
    replace(this.button, playing ? '❚❚ Pause' : '▶ Play');
  }
}
