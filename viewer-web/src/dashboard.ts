// The administrators' dashboard (`#/admin/dashboard`, `GET /api/admin/dashboard`): studies
// received per clinic per UTC day, reading turnaround percentiles per priority, the
// backlog and what is overdue, discrepancy rates per clinic — as SVG charts (charts.ts)
// with the numbers also in tables for reading and copying.

import { type Dashboard, dashboard } from './admin-api';
import { groupedRows, legend, stackedColumns, stackedRows } from './charts';
import { h, replace } from './dom';
import { priorityText } from './format';
import { type PageContext, failed } from './page';

const DAY_CHOICES = [7, 14, 30, 90];

/** Seconds for people: `45s`, `12m`, `1h 30m`, `2d 3h`. */
export function duration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return m % 60 ? `${hrs}h ${m % 60}m` : `${hrs}h`;
  const d = Math.floor(hrs / 24);
  return hrs % 24 ? `${d}d ${hrs % 24}h` : `${d}d`;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function card(id: string, title: string, ...body: (Node | string | null)[]): HTMLElement {
  return h('section', { id, class: 'dash-card' }, h('h2', {}, title), ...body);
}

function kpi(id: string, label: string, value: number, extra = ''): HTMLElement {
  return h(
    'div',
    { id, class: `kpi${extra}`, data: { value: String(value) } },
    h('span', { class: 'kpi-value' }, String(value)),
    h('span', { class: 'kpi-label' }, label),
  );
}

function studiesCard(d: Dashboard): HTMLElement {
  const series = d.studies.map((c, i) => ({
    name: c.clinic ?? '(no clinic)',
    key: c.clinic ?? '(no clinic)',
    values: c.counts,
    cls: `series-${i % 8}`,
  }));
  const chart = stackedColumns({
    id: 'chart-studies',
    title: `Studies received per clinic per day, last ${d.days} days (UTC)`,
    labels: d.day_labels,
    shortLabels: d.day_labels.map((l) => l.slice(5)),
    series,
    what: (v) => plural(v, 'study', 'studies'),
  });
  const head = h('tr', {}, h('th', {}, 'Clinic'), ...d.day_labels.map((l) => h('th', { class: 'num' }, l.slice(5))), h('th', { class: 'num' }, 'Total'));
  const rows = d.studies.map((c) =>
    h(
      'tr',
      { data: { clinic: c.clinic ?? '' } },
      h('td', {}, c.clinic ?? '(no clinic)'),
      ...c.counts.map((n) => h('td', { class: n ? 'num' : 'num zero' }, String(n))),
      h('td', { class: 'num total' }, String(c.total)),
    ),
  );
  const table = h('table', { id: 'studies-per-day', class: 'compact' }, h('thead', {}, head), h('tbody', {}, ...rows));
  return card(
    'dash-studies',
    'Studies received per clinic per day',
    h('p', { class: 'hint' }, `UTC days ${d.day_labels[0]} to ${d.day_labels[d.day_labels.length - 1]}, by the time the first image arrived.`),
    chart,
    legend(series),
    h('details', {}, h('summary', {}, 'The numbers'), h('div', { class: 'scroll-x' }, table)),
  );
}

function turnaroundCard(d: Dashboard): HTMLElement {
  const measures = [
    { key: 'p50', name: 'p50', cls: 'p50' },
    { key: 'p90', name: 'p90', cls: 'p90' },
    { key: 'p95', name: 'p95', cls: 'p95' },
  ] as const;
  const chart = groupedRows({
    id: 'chart-turnaround',
    title: 'Reading turnaround (ready to signed) per priority',
    rows: d.turnaround.map((t) => ({
      label: priorityText(t.priority),
      note: plural(t.count, 'task'),
      values: measures.map((m) => ({
        key: m.key,
        name: m.name,
        cls: m.cls,
        value: m.key === 'p50' ? t.p50_seconds : m.key === 'p90' ? t.p90_seconds : t.p95_seconds,
      })),
    })),
    fmt: duration,
  });
  const rows = d.turnaround.map((t) =>
    h(
      'tr',
      { data: { priority: t.priority } },
      h('td', {}, priorityText(t.priority)),
      h('td', { class: 'num' }, String(t.count)),
      ...[t.p50_seconds, t.p90_seconds, t.p95_seconds, t.max_seconds].map((v) => h('td', { class: 'num' }, v === null ? '—' : duration(v))),
    ),
  );
  const table = h(
    'table',
    { id: 'turnaround-table', class: 'compact' },
    h('thead', {}, h('tr', {}, ...['Priority', 'Done', 'p50', 'p90', 'p95', 'Longest'].map((t, i) => h('th', { class: i ? 'num' : '' }, t)))),
    h('tbody', {}, ...rows),
  );
  return card(
    'dash-turnaround',
    'Turnaround percentiles per priority',
    h('p', { class: 'hint' }, `Tasks done in the last ${d.days} days, from ready to read to done.`),
    chart,
    table,
  );
}

function backlogCard(d: Dashboard): HTMLElement {
  const chart = stackedRows({
    id: 'chart-backlog',
    title: 'Backlog per priority: open and claimed tasks',
    rows: d.backlog.map((b) => ({
      label: priorityText(b.priority),
      note: b.overdue ? `${b.overdue} overdue` : '',
      segments: [
        { key: 'open', name: 'open', value: b.open, cls: 'open' },
        { key: 'claimed', name: 'claimed', value: b.claimed, cls: 'claimed' },
      ],
    })),
    what: (s) => plural(s.value, 'task'),
    inside: (s) => String(s.value),
  });
  const rows = d.backlog.map((b) =>
    h(
      'tr',
      { data: { priority: b.priority } },
      h('td', {}, priorityText(b.priority)),
      h('td', { class: 'num' }, String(b.open)),
      h('td', { class: 'num' }, String(b.claimed)),
      h('td', { class: b.overdue ? 'num overdue' : 'num' }, String(b.overdue)),
    ),
  );
  const table = h(
    'table',
    { id: 'backlog-table', class: 'compact' },
    h('thead', {}, h('tr', {}, ...['Priority', 'Open', 'Claimed', 'Overdue'].map((t, i) => h('th', { class: i ? 'num' : '' }, t)))),
    h('tbody', {}, ...rows),
  );
  return card(
    'dash-backlog',
    'Backlog and overdue',
    chart,
    legend([
      { name: 'open', cls: 'open' },
      { name: 'claimed', cls: 'claimed' },
    ]),
    table,
  );
}

function discrepancyCard(d: Dashboard): HTMLElement {
  if (d.discrepancies.length === 0) {
    return card(
      'dash-discrepancies',
      'Discrepancy rates per clinic',
      h('p', { class: 'status' }, 'No signed report has judged a preliminary impression yet.'),
    );
  }
  const pct = (v: number, total: number) => (total ? `${Math.round((v / total) * 100)}%` : '—');
  const chart = stackedRows({
    id: 'chart-discrepancies',
    title: 'How the radiologists judged each clinic’s preliminary impressions',
    percent: true,
    rows: d.discrepancies.map((c) => ({
      label: c.clinic,
      note: `${c.reviewed} reviewed`,
      segments: [
        { key: 'agree', name: 'agree', value: c.agree, cls: 'agree' },
        { key: 'minor', name: 'minor discrepancy', value: c.minor, cls: 'minor' },
        { key: 'major', name: 'major discrepancy', value: c.major, cls: 'major' },
      ],
    })),
    what: (s, total) => `${s.value} of ${total} (${pct(s.value, total)})`,
    inside: (s, total) => pct(s.value, total),
  });
  return card(
    'dash-discrepancies',
    'Discrepancy rates per clinic',
    h('p', { class: 'hint' }, 'All signed reports with a verdict on a township preliminary impression.'),
    chart,
    legend([
      { name: 'agree', cls: 'agree' },
      { name: 'minor discrepancy', cls: 'minor' },
      { name: 'major discrepancy', cls: 'major' },
    ]),
  );
}

export async function dashboardSection(ctx: PageContext, box: HTMLElement): Promise<void> {
  const select = h('select', { id: 'dash-days', attrs: { 'aria-label': 'Days shown' } });
  for (const n of DAY_CHOICES) select.appendChild(h('option', { attrs: { value: String(n) } }, `last ${n} days`));
  select.value = '14';
  const status = h('p', { class: 'status', attrs: { 'aria-live': 'polite' } }, 'Loading the dashboard…');
  const body = h('div', { id: 'dashboard' });
  const refresh = h('button', { id: 'dash-refresh', attrs: { type: 'button' } }, 'Refresh');
  replace(box, h('div', { class: 'section-head' }, h('label', {}, 'Show ', select), refresh, status), body);

  const load = async () => {
    const days = Number(select.value);
    replace(status, 'Loading the dashboard…');
    body.dataset.state = 'loading';
    let d: Dashboard;
    try {
      d = await dashboard(days);
    } catch (e) {
      failed(ctx, status, e);
      return;
    }
    if (!ctx.isCurrent()) return;
    const received = d.studies.reduce((s, c) => s + c.total, 0);
    const done = d.turnaround.reduce((s, t) => s + t.count, 0);
    const waiting = d.backlog.reduce((s, b) => s + b.open + b.claimed, 0);
    replace(status, `As of ${new Date(d.until / 1000).toLocaleString()}`);
    replace(
      body,
      h(
        'div',
        { class: 'kpis' },
        kpi('kpi-received', `studies received in ${d.days} days`, received),
        kpi('kpi-done', `readings done in ${d.days} days`, done),
        kpi('kpi-backlog', 'tasks waiting (open or claimed)', waiting),
        kpi('kpi-overdue', 'overdue now', d.overdue, d.overdue > 0 ? ' alarm' : ''),
      ),
      h(
        'div',
        { class: 'dash-grid' },
        h('div', { class: 'dash-col' }, studiesCard(d), discrepancyCard(d)),
        h('div', { class: 'dash-col' }, turnaroundCard(d), backlogCard(d)),
      ),
    );
    body.dataset.state = 'ready';
    body.dataset.days = String(d.days);
  };
  select.addEventListener('change', () => void load());
  refresh.addEventListener('click', () => void load());
  await load();
}
