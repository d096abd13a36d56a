// Small SVG charts for the dashboard, built with createElementNS: no chart library, no
// HTML strings, no style attributes (the Content-Security-Policy allows styles from the
// stylesheet only). Sizes and positions are SVG attributes; colours are classes
// (admin.css). Every value is a text node; every bar carries its numbers in data
// attributes and a <title> (the tooltip), so that a reader — or a test — can check them.

import { h } from './dom';

const NS = 'http://www.w3.org/2000/svg';

type Attrs = Record<string, string | number>;

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Node | string)[]): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (/^on/i.test(k) || k.toLowerCase() === 'style') throw new Error(`attribute ${k} not allowed`);
    e.setAttribute(k, String(v));
  }
  for (const c of children) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  return e;
}

/** A rectangle with its numbers: data attributes and a tooltip. */
function bar(x: number, y: number, w: number, hgt: number, cls: string, tooltip: string, data: Record<string, string>): SVGRectElement {
  const attrs: Attrs = { x, y, width: Math.max(0, w), height: Math.max(0, hgt), class: `bar ${cls}` };
  for (const [k, v] of Object.entries(data)) attrs[`data-${k}`] = v;
  return svg('rect', attrs, svg('title', {}, tooltip));
}

/** Round tick steps (1, 2, 5 × 10ⁿ) covering 0…max in about `n` steps. */
export function ticks(max: number, n = 4): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 0.999; v += step) out.push(Math.round(v * 1e6) / 1e6);
  return out;
}

export interface Series {
  /** Shown in the legend and tooltips. */
  name: string;
  /** One value per label. */
  values: number[];
  /** Colour class (`series-0`…). */
  cls: string;
  /** Identifies the series in data attributes. */
  key: string;
}

/** A legend: a swatch of each series' colour class and its name, as text. */
export function legend(items: { name: string; cls: string }[]): HTMLElement {
  return h(
    'ul',
    { class: 'legend' },
    ...items.map((i) => h('li', {}, h('span', { class: `swatch ${i.cls}`, attrs: { 'aria-hidden': 'true' } }), i.name)),
  );
}

/**
 * Vertical bars stacked per label (e.g. studies per clinic per day), the total above each
 * stack. `what(value)` words a value for tooltips ("3 studies").
 */
export function stackedColumns(opts: {
  id: string;
  title: string;
  labels: string[];
  /** Shorter labels under the axis (every one is in the tooltips anyway). */
  shortLabels?: string[];
  series: Series[];
  what: (v: number) => string;
}): SVGSVGElement {
  const W = 720;
  const H = 240;
  const left = 34;
  const right = 8;
  const top = 16;
  const bottom = 30;
  const n = opts.labels.length;
  const totals = opts.labels.map((_, i) => opts.series.reduce((s, se) => s + (se.values[i] ?? 0), 0));
  const axis = ticks(Math.max(1, ...totals));
  const max = axis[axis.length - 1];
  const plotH = H - top - bottom;
  const slot = (W - left - right) / Math.max(1, n);
  const bw = Math.max(2, Math.min(48, slot * 0.7));
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const root = svg('svg', {
    id: opts.id,
    class: 'chart',
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': opts.title,
  });
  root.appendChild(svg('title', {}, opts.title));
  for (const t of axis) {
    root.appendChild(svg('line', { x1: left, x2: W - right, y1: y(t), y2: y(t), class: 'grid' }));
    root.appendChild(svg('text', { x: left - 6, y: y(t) + 4, 'text-anchor': 'end', class: 'tick' }, String(t)));
  }
  // Every n-th label under the axis so that they do not overlap.
  const every = Math.max(1, Math.ceil(n / 16));
  opts.labels.forEach((label, i) => {
    const x = left + slot * i + (slot - bw) / 2;
    let base = 0;
    const group = svg('g', { class: 'column', 'data-label': label, 'data-total': totals[i] });
    for (const se of opts.series) {
      const v = se.values[i] ?? 0;
      if (v <= 0) continue;
      group.appendChild(
        bar(x, y(base + v), bw, y(base) - y(base + v), se.cls, `${se.name}, ${label}: ${opts.what(v)}`, {
          series: se.key,
          label,
          value: String(v),
        }),
      );
      base += v;
    }
    if (totals[i] > 0) {
      group.appendChild(svg('text', { x: x + bw / 2, y: y(totals[i]) - 4, 'text-anchor': 'middle', class: 'value' }, String(totals[i])));
    }
    root.appendChild(group);
    if (i % every === 0 || i === n - 1) {
      root.appendChild(
        svg('text', { x: x + bw / 2, y: H - bottom + 16, 'text-anchor': 'middle', class: 'tick' }, (opts.shortLabels ?? opts.labels)[i]),
      );
    }
  });
  root.appendChild(svg('line', { x1: left, x2: W - right, y1: top + plotH, y2: top + plotH, class: 'axis' }));
  return root;
}

export interface Segment {
  key: string;
  name: string;
  value: number;
  cls: string;
}

export interface HRow {
  label: string;
  segments: Segment[];
  /** Text after the bar (a total, a count). */
  note?: string;
}

/**
 * Horizontal bars, one row per label, each split into segments (stacked). `percent`:
 * every row is scaled to its own total (shares, e.g. discrepancy rates); otherwise all rows
 * share one scale. `what(segment, row total)` words a segment for its tooltip and label.
 */
export function stackedRows(opts: {
  id: string;
  title: string;
  rows: HRow[];
  percent?: boolean;
  what: (s: Segment, total: number) => string;
  /** Text inside a segment wide enough for it. */
  inside?: (s: Segment, total: number) => string;
}): SVGSVGElement {
  const W = 520;
  const rowH = 26;
  const gap = 10;
  const left = 130;
  const right = 110;
  const top = 6;
  const H = top + opts.rows.length * (rowH + gap) + 4;
  const totals = opts.rows.map((r) => r.segments.reduce((s, x) => s + x.value, 0));
  const max = opts.percent ? 1 : Math.max(1, ...totals);
  const plotW = W - left - right;
  const root = svg('svg', { id: opts.id, class: 'chart hbars', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': opts.title });
  root.appendChild(svg('title', {}, opts.title));
  opts.rows.forEach((r, i) => {
    const y = top + i * (rowH + gap);
    const total = totals[i];
    const group = svg('g', { class: 'row', 'data-label': r.label, 'data-total': total });
    group.appendChild(svg('text', { x: left - 8, y: y + rowH / 2 + 4, 'text-anchor': 'end', class: 'label' }, r.label));
    group.appendChild(svg('rect', { x: left, y, width: plotW, height: rowH, class: 'track' }));
    let x = left;
    for (const s of r.segments) {
      if (s.value <= 0) continue;
      const w = opts.percent ? (total > 0 ? (s.value / total) * plotW : 0) : (s.value / max) * plotW;
      group.appendChild(bar(x, y, w, rowH, s.cls, `${r.label} — ${s.name}: ${opts.what(s, total)}`, { series: s.key, value: String(s.value) }));
      const inside = opts.inside?.(s, total);
      if (inside && w >= inside.length * 7 + 6) {
        group.appendChild(svg('text', { x: x + w / 2, y: y + rowH / 2 + 4, 'text-anchor': 'middle', class: 'inside' }, inside));
      }
      x += w;
    }
    if (r.note) group.appendChild(svg('text', { x: left + plotW + 8, y: y + rowH / 2 + 4, class: 'note' }, r.note));
    root.appendChild(group);
  });
  return root;
}

/**
 * Horizontal grouped bars: for each row (a priority), one thin bar per measure (p50, p90,
 * p95) on a shared scale, each labelled with `fmt(value)`.
 */
export function groupedRows(opts: {
  id: string;
  title: string;
  rows: { label: string; note: string; values: { key: string; name: string; value: number | null; cls: string }[] }[];
  fmt: (v: number) => string;
}): SVGSVGElement {
  const W = 520;
  const barH = 11;
  const left = 130;
  const right = 70;
  const top = 6;
  const per = opts.rows[0]?.values.length ?? 1;
  const rowH = per * (barH + 2) + 14;
  const H = top + opts.rows.length * rowH;
  const all = opts.rows.flatMap((r) => r.values.map((v) => v.value ?? 0));
  const max = Math.max(1, ...all);
  const plotW = W - left - right;
  const root = svg('svg', { id: opts.id, class: 'chart hbars', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': opts.title });
  root.appendChild(svg('title', {}, opts.title));
  opts.rows.forEach((r, i) => {
    const y0 = top + i * rowH;
    const group = svg('g', { class: 'row', 'data-label': r.label });
    group.appendChild(svg('text', { x: left - 8, y: y0 + (per * (barH + 2)) / 2 + 2, 'text-anchor': 'end', class: 'label' }, r.label));
    group.appendChild(svg('text', { x: left - 8, y: y0 + (per * (barH + 2)) / 2 + 15, 'text-anchor': 'end', class: 'tick' }, r.note));
    r.values.forEach((v, j) => {
      const y = y0 + j * (barH + 2);
      if (v.value === null) {
        if (j === 0) group.appendChild(svg('text', { x: left + 4, y: y + barH, class: 'note' }, 'none done'));
        return;
      }
      const w = Math.max(1, (v.value / max) * plotW);
      group.appendChild(bar(left, y, w, barH, v.cls, `${r.label} — ${v.name}: ${opts.fmt(v.value)}`, { series: v.key, value: String(v.value) }));
      group.appendChild(svg('text', { x: left + w + 4, y: y + barH - 1, class: 'note' }, `${v.name} ${opts.fmt(v.value)}`));
    });
    root.appendChild(group);
  });
  return root;
}
