// The radiologist's worklist (`GET /api/worklist`): tabs mine / pool / overdue, one row
// per task with its priority (coloured), the deadline counting down (red once overdue),
// clinic, modality, patient, study and state. Arrow keys move the selection, Enter or a
// click opens the task in the reading view; pool tasks can be claimed. The list follows
// the live feed (task and report events) and is re-read every 30 s besides.

import { ApiError } from './api';
import { h, message, replace } from './dom';
import { preloadImaging } from './imaging-loader';
import { countdown, dicomDate, personNameText, priorityText } from './format';
import { type LiveEvent, live } from './live';
import { notify } from './messages';
import { type PageContext, errorBox, failed } from './page';
import { type WorklistItem, type WorklistView, claim, taskHints, worklist } from './reading-api';

type Tab = Exclude<WorklistView, 'all'>;
const TABS: [Tab, string][] = [
  ['mine', 'Mine'],
  ['pool', 'Pool'],
  ['overdue', 'Overdue'],
];

/** Events after which the worklist is read again. */
function touchesWorklist(e: LiveEvent): boolean {
  return (
    e.kind.startsWith('task_') ||
    e.kind === 'report_signed' ||
    e.kind === 'study_ready' ||
    e.kind === 'study_updated'
  );
}

export function liveIndicator(ctx: PageContext): HTMLElement {
  const el = h('span', { id: 'live-status', class: 'live', data: { status: 'off' } });
  const off = live.onStatus((s) => {
    el.dataset.status = s;
    replace(el, s === 'live' ? '● Live' : s === 'off' ? '' : '○ Reconnecting…');
    el.title = s === 'live' ? 'Updates arrive as they happen' : 'The live updates are reconnecting';
  });
  ctx.onLeave(off);
  return el;
}

export async function worklistPage(ctx: PageContext, view: Tab): Promise<void> {
  const counts = new Map<Tab, HTMLElement>();
  const tabs = h(
    'div',
    { class: 'tabs', attrs: { role: 'tablist', 'aria-label': 'Worklists' } },
    ...TABS.map(([v, label]) => {
      const count = h('span', { class: 'count' }, '');
      counts.set(v, count);
      return h(
        'a',
        {
          class: 'tab',
          attrs: { role: 'tab', href: `#/worklist/${v}`, 'aria-selected': v === view ? 'true' : 'false' },
          data: { view: v },
        },
        label,
        ' ',
        count,
      );
    }),
  );
  const status = h('div', { id: 'worklist-status', class: 'status', attrs: { 'aria-live': 'polite' } }, 'Loading the worklist…');
  // The rows are laid out as grids (style.css: so that rows off screen cost nothing), which
  // takes their implicit table roles away in some browsers: the roles are given explicitly.
  const body = h('tbody', { attrs: { role: 'rowgroup' } });
  const columns = ['Priority', 'Due in', 'Clinic', 'Modality', 'Patient', 'Study', 'Date', 'State'];
  if (view === 'pool') columns.push('');
  const head = columns.map((t) =>
    h('th', { attrs: { scope: 'col', role: 'columnheader' } }, t),
  );
  const table = h(
    'table',
    { id: 'worklist', class: 'worklist', data: { view }, attrs: { role: 'table', 'aria-label': `Worklist: ${view}` } },
    h('thead', { attrs: { role: 'rowgroup' } }, h('tr', { attrs: { role: 'row' } }, ...head)),
    body,
  );
  replace(
    ctx.app,
    h('div', { class: 'page-head' }, h('h1', {}, 'Worklist'), liveIndicator(ctx)),
    tabs,
    status,
    table,
    h('p', { class: 'hint' }, '↑/↓ select a task, Enter opens it. Pool tasks: Claim takes one into your list.'),
  );

  let items: WorklistItem[] = [];
  let selected = 0;

  /** The index in the list of the row `el` is in, or -1. */
  const rowIndex = (el: EventTarget | null): number => {
    const tr = el instanceof HTMLElement ? el.closest('tr') : null;
    return tr && tr.parentElement === body ? tr.sectionRowIndex : -1;
  };
  // Only the rows whose selection changes are touched: a thousand attribute writes would
  // make the browser restyle every row, the ones off screen included.
  const select = (i: number, focus = true) => {
    const all = body.rows;
    if (all.length === 0) return;
    const before = all[selected];
    selected = Math.max(0, Math.min(all.length - 1, i));
    const now = all[selected];
    if (before !== now) before?.setAttribute('aria-selected', 'false');
    now.setAttribute('aria-selected', 'true');
    if (focus) now.focus();
  };
  const open = (item: WorklistItem) => {
    taskHints.set(item.task_id, item);
    location.hash = `#/read/${item.task_id}/${item.study_instance_uid}`;
  };

  const tick = () => {
    const now = Date.now();
    for (const el of body.querySelectorAll<HTMLElement>('.countdown')) {
      const c = countdown(Number(el.dataset.due), now);
      el.textContent = c.text;
      el.classList.toggle('overdue', c.overdue);
    }
  };

  const claimButton = (item: WorklistItem) => {
    const b = h('button', { class: 'claim', attrs: { type: 'button' } }, 'Claim');
    b.addEventListener('click', (evt) => {
      evt.stopPropagation();
      b.disabled = true;
      claim(item.task_id)
        .then(() => {
          notify(`Claimed: ${personNameText(item.patient_name) || item.patient_id}. It is in your list now.`, 'success');
          void refresh();
        })
        .catch((e: unknown) => {
          b.disabled = false;
          if (e instanceof ApiError && e.status === 401) ctx.sessionEnded();
          else notify(message(e), 'error');
        });
    });
    return b;
  };

  // Every row is a copy of one template filled in with text (textContent: never parsed as
  // HTML): cloning a row is several times cheaper than building its fourteen elements one
  // by one, which counts for a thousand rows.
  const template = h(
    'tr',
    { attrs: { role: 'row', tabindex: '-1', 'aria-selected': 'false' } },
    h('td', { attrs: { role: 'cell' } }, h('span', {})),
    h('td', { attrs: { role: 'cell' } }, h('span', {})),
    h('td', { attrs: { role: 'cell' } }),
    h('td', { attrs: { role: 'cell' } }),
    h('td', { class: 'patient-name', attrs: { role: 'cell' } }, h('span', {}), h('span', { class: 'sub' })),
    h('td', { attrs: { role: 'cell' } }),
    h('td', { class: 'nowrap', attrs: { role: 'cell' } }),
    h('td', { class: 'state', attrs: { role: 'cell' } }),
    view === 'pool' ? h('td', { class: 'actions', attrs: { role: 'cell' } }) : null,
  );
  const row = (item: WorklistItem, now: number) => {
    const stateText =
      item.state === 'claimed'
        ? item.claimed_by === ctx.me.username
          ? 'claimed by you'
          : `claimed by ${item.claimed_by ?? 'someone'}`
        : item.assigned_to
          ? item.kind === 'read'
            ? 'to read'
            : item.kind.replace(/[-_]/g, ' ')
          : 'in the pool';
    const c = countdown(item.due_at, now);
    const tr = template.cloneNode(true) as HTMLTableRowElement;
    tr.className = `priority-${item.priority}${item.overdue ? ' is-overdue' : ''}`;
    tr.dataset.task = String(item.task_id);
    tr.dataset.study = item.study_instance_uid;
    tr.dataset.priority = item.priority;
    const [priority, due, clinic, modality, patient, study, date, state, actions] = tr.cells;
    const badge = priority.firstChild as HTMLElement;
    badge.className = `badge priority priority-${item.priority}`;
    badge.textContent = priorityText(item.priority);
    const left = due.firstChild as HTMLElement;
    left.className = `countdown${c.overdue ? ' overdue' : ''}`;
    left.dataset.due = String(item.due_at);
    left.textContent = c.text;
    clinic.textContent = item.clinic ?? '';
    modality.textContent = item.modalities.join(', ');
    patient.firstChild!.textContent = personNameText(item.patient_name) || '(no name)';
    patient.lastChild!.textContent = item.patient_id;
    study.textContent = item.study_description ?? '';
    date.textContent = dicomDate(item.study_date);
    state.textContent = stateText;
    if (actions && item.state === 'open') actions.append(claimButton(item));
    return tr;
  };

  body.addEventListener('keydown', (evt) => {
    const key = evt.key;
    if (key === 'ArrowDown' || key === 'j') select(selected + 1);
    else if (key === 'ArrowUp' || key === 'k') select(selected - 1);
    else if (key === 'Home') select(0);
    else if (key === 'End') select(items.length - 1);
    else if (key === 'Enter') {
      const item = items[selected];
      if (item) open(item);
    } else return;
    evt.preventDefault();
  });
  // One listener for every row's click (a thousand rows, a thousand listeners otherwise).
  body.addEventListener('click', (evt) => {
    const i = rowIndex(evt.target);
    if (i >= 0 && items[i]) open(items[i]);
  });
  body.addEventListener('focusin', (evt) => {
    const i = rowIndex(evt.target);
    if (i >= 0 && i !== selected) select(i, false);
  });

  let first = true;
  let loading: Promise<void> | undefined;
  let again = false;
  async function refresh(): Promise<void> {
    if (loading) {
      again = true;
      return loading;
    }
    loading = (async () => {
      try {
        // The tab shown first; the other tabs' counts as their lists come.
        const lists = TABS.map(([v]) => [v, worklist(v)] as const);
        for (const [v, list] of lists) {
          if (v === view) continue;
          list.then(
            (l) => {
              if (ctx.isCurrent()) replace(counts.get(v)!, `(${l.length})`);
            },
            // The tab's own list reports a failure; a count is not worth a second message.
            () => undefined,
          );
        }
        const shown = await lists.find(([v]) => v === view)![1];
        if (!ctx.isCurrent()) return;
        replace(counts.get(view)!, `(${shown.length})`);
        const focusedTask = (document.activeElement as HTMLElement | null)?.dataset?.task;
        const keep = items[selected]?.task_id;
        items = shown;
        const now = Date.now();
        replace(body, ...items.map((item) => row(item, now)));
        table.dataset.count = String(items.length);
        if (items.length === 0) {
          replace(
            status,
            view === 'mine'
              ? 'No tasks for you right now. New studies appear here as they arrive.'
              : view === 'pool'
                ? 'The pool is empty.'
                : 'Nothing is overdue.',
          );
        } else {
          replace(status, `${items.length} task${items.length === 1 ? '' : 's'}.`);
        }
        const at = keep === undefined ? 0 : Math.max(0, items.findIndex((i) => i.task_id === keep));
        // Focus the list on first load (arrow keys and Enter work at once), and keep it
        // focused across live refreshes; never steal the focus from elsewhere.
        select(at, first || focusedTask !== undefined);
        first = false;
      } catch (e) {
        if (!ctx.isCurrent()) return;
        if (e instanceof ApiError && e.status === 401) {
          ctx.sessionEnded();
          return;
        }
        replace(status, errorBox(message(e)));
      }
    })();
    try {
      await loading;
    } finally {
      loading = undefined;
      if (again && ctx.isCurrent()) {
        again = false;
        void refresh();
      }
    }
  }

  let pending: number | undefined;
  const off = live.subscribe((e) => {
    if (!touchesWorklist(e)) return;
    if (e.kind === 'task_created') notify('A new study arrived on the worklist.', 'info');
    if (pending !== undefined) return;
    pending = window.setTimeout(() => {
      pending = undefined;
      void refresh();
    }, 250);
  });
  const ticker = window.setInterval(tick, 1000);
  const poll = window.setInterval(() => void refresh(), 30_000);
  ctx.onLeave(() => {
    off();
    window.clearInterval(ticker);
    window.clearInterval(poll);
    if (pending !== undefined) window.clearTimeout(pending);
  });
  try {
    await refresh();
  } catch (e) {
    failed(ctx, status, e);
  }
  // The next thing a reader does is open a study: have the viewer ready by then.
  if (ctx.isCurrent()) preloadImaging();
}
