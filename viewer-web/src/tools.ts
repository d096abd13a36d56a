// The reading view's image tools: the tool bar (what the left mouse button does — window,
// zoom, pan, length, angle, rectangle and ellipse ROI —, rotate, flip, zoom steps, cine,
// layouts, synchronised scrolling, key image) and their keys. The right button always
// zooms, the middle one pans, the wheel scrolls. Keys are single letters outside text
// fields; the reading view passes them here after its own (presets, invert, reset, report).

import { Cine } from './cine';
import { h, replace } from './dom';
import type { KeyImages } from './key-images';
import { type Layout, LAYOUT_KEYS } from './layout';
import type { Measurements } from './measurements';
import type { StackPanel } from './stack-panel';
import { SliceSync } from './sync';
import type { LeftTool } from './viewer';

/** [key, tool, label] of the left mouse button's tools. */
export const TOOL_KEYS: [string, LeftTool, string][] = [
  ['c', 'window', 'Window'],
  ['z', 'zoom', 'Zoom'],
  ['p', 'pan', 'Pan'],
  ['m', 'length', 'Length'],
  ['a', 'angle', 'Angle'],
  ['b', 'rectangle', 'Rectangle'],
  ['o', 'ellipse', 'Ellipse'],
];

export const TOOL_SHORTCUTS: [string, string][] = [
  ...TOOL_KEYS.map(([key, , label]): [string, string] => [key, `Left drag: ${label.toLowerCase()}${['length', 'angle', 'rectangle', 'ellipse'].includes(label.toLowerCase()) ? ' measurement' : ''}`]),
  ['Right drag / middle drag', 'Zoom / pan (with any tool)'],
  ['+ / −', 'Zoom in / out'],
  ['t / Shift + T', 'Rotate 90° clockwise / counter-clockwise'],
  ['h / v', 'Flip left-right / top-bottom'],
  ['Delete', 'Delete the newest measurement'],
  ['Space', 'Cine: play / pause the active viewport'],
  ['[ / ]', 'Cine: slower / faster'],
  ['Shift + 1 / 2 / 3', 'Layout 1×1 / 1×2 / 2×2'],
  ['n', 'Next viewport (the active one is outlined)'],
  [', / .', 'Previous / next series in the active viewport'],
  ['s', 'Synchronised scrolling on / off'],
  ['k', 'Mark / unmark the image as a key image'],
];

export class ViewerTools {
  readonly toolbar: HTMLElement;
  readonly cine: Cine;
  readonly sync: SliceSync;
  private readonly toolButtons = new Map<LeftTool, HTMLButtonElement>();
  private readonly layoutButtons = new Map<Layout, HTMLButtonElement>();
  private readonly syncButton: HTMLButtonElement;

  constructor(
    private readonly panel: StackPanel,
    private readonly measurements: Measurements,
    private readonly keyImages: KeyImages,
  ) {
    this.cine = new Cine(panel);
    this.syncButton = button('s Sync', 'Synchronised scrolling of same-orientation series (s)', () => this.sync.toggle());
    this.syncButton.id = 'sync-toggle';
    this.sync = new SliceSync(panel, (on) => this.showSync(on));
    this.showSync(true);

    const tools = TOOL_KEYS.map(([key, tool, label]) => {
      const b = button(`${key} ${label}`, `Left drag: ${label.toLowerCase()} (${key})`, () => this.setTool(tool));
      b.dataset.tool = tool;
      this.toolButtons.set(tool, b);
      return b;
    });
    const view = [
      button('+', 'Zoom in (+)', () => panel.viewer()?.zoomBy(1.25)),
      button('−', 'Zoom out (−)', () => panel.viewer()?.zoomBy(0.8)),
      button('t Rotate', 'Rotate 90° clockwise (t)', () => panel.viewer()?.rotate90(true)),
      button('h Flip', 'Flip left-right (h)', () => panel.viewer()?.flip(true)),
      button('v Flip', 'Flip top-bottom (v)', () => panel.viewer()?.flip(false)),
    ];
    const layouts = LAYOUT_KEYS.map(([layout, label, code]) => {
      const b = button(label, `Layout ${label} (Shift+${code.slice(-1)})`, () => panel.setLayout(layout));
      b.dataset.layout = layout;
      this.layoutButtons.set(layout, b);
      return b;
    });
    const key = button('k Key image', 'Mark / unmark the image shown as a key image (k)', () => keyImages.toggle());
    key.id = 'key-image-toggle';
    this.toolbar = h(
      'div',
      { id: 'image-tools', class: 'presets tools', attrs: { role: 'toolbar', 'aria-label': 'Image tools' } },
      group('Left button', ...tools),
      group('View', ...view),
      group('Cine', this.cine.element),
      group('Layout', ...layouts, this.syncButton),
      key,
    );
    this.setTool('window');
    this.showLayout();
    panel.onCellChange((_cell, what) => {
      if (what === 'series' || what === 'active') this.showLayout();
    });
  }

  setTool(tool: LeftTool): void {
    this.panel.setLeftTool(tool);
    for (const [t, b] of this.toolButtons) b.setAttribute('aria-pressed', t === tool ? 'true' : 'false');
  }

  private showLayout(): void {
    for (const [l, b] of this.layoutButtons) b.setAttribute('aria-pressed', l === this.panel.layout() ? 'true' : 'false');
  }

  private showSync(on: boolean): void {
    this.syncButton.setAttribute('aria-pressed', on ? 'true' : 'false');
    this.panel.viewerBox.dataset.sync = on ? 'on' : 'off';
    replace(this.syncButton, on ? 's Sync on' : 's Sync off');
  }

  /** Handles a key of the tools (outside text fields); false when it is not one. */
  handleKey(evt: KeyboardEvent): boolean {
    if (evt.shiftKey) {
      const layout = LAYOUT_KEYS.find(([, , code]) => code === evt.code);
      if (layout) {
        this.panel.setLayout(layout[0]);
        this.showLayout();
        return true;
      }
    }
    const tool = TOOL_KEYS.find(([k]) => k === evt.key);
    if (tool) {
      this.setTool(tool[1]);
      return true;
    }
    const v = this.panel.viewer();
    switch (evt.key) {
      case '+':
      case '=':
        v?.zoomBy(1.25);
        return true;
      case '-':
        v?.zoomBy(0.8);
        return true;
      case 't':
        v?.rotate90(true);
        return true;
      case 'T':
        v?.rotate90(false);
        return true;
      case 'h':
        v?.flip(true);
        return true;
      case 'v':
        v?.flip(false);
        return true;
      case 'Delete':
        this.measurements.removeLast();
        return true;
      case ' ':
        this.cine.toggle();
        return true;
      case '[':
        this.cine.step(-1);
        return true;
      case ']':
        this.cine.step(1);
        return true;
      case 'n': {
        const cells = this.panel.visibleCells();
        this.panel.setActive((this.panel.active().n + 1) % cells.length);
        this.panel.active().element.focus();
        return true;
      }
      case ',':
        this.panel.stepSeries(-1);
        return true;
      case '.':
        this.panel.stepSeries(1);
        return true;
      case 's':
        this.sync.toggle();
        return true;
      case 'k':
        this.keyImages.toggle();
        return true;
      default:
        return false;
    }
  }

  destroy(): void {
    this.cine.stop();
  }
}

function button(label: string, title: string, onClick: () => void): HTMLButtonElement {
  const b = h('button', { attrs: { type: 'button', title } }, label);
  b.addEventListener('click', onClick);
  return b;
}

function group(label: string, ...children: HTMLElement[]): HTMLElement {
  return h('span', { class: 'tool-group', attrs: { role: 'group', 'aria-label': label } }, ...children);
}
