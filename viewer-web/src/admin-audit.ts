// Audit search (`#/admin/audit`, `GET /api/admin/audit`): by user, event, study and time
// range, newest first, a page at a time (older pages with `before`). Every search is
// itself recorded in the trail by the server.

import { type AuditEntry, type AuditQuery, auditSearch } from './admin-api';
import { field, input, select } from './admin-form';
import { isUid } from './dicom';
import { h, replace } from './dom';
import { dateTime } from './format';
import { type PageContext, errorBox, failed } from './page';

const PAGE_SIZES = ['25', '50', '100', '200'];

/** PS3.15 audit event IDs (A.5.3). */
const EVENTS: [string, string][] = [
  ['', 'any event'],
  ['110100', '110100 Application Activity'],
  ['110101', '110101 Audit Log Used'],
  ['110102', '110102 Begin Transferring DICOM Instances'],
  ['110103', '110103 DICOM Instances Accessed'],
  ['110104', '110104 DICOM Instances Transferred'],
  ['110105', '110105 DICOM Study Deleted'],
  ['110106', '110106 Export'],
  ['110107', '110107 Import'],
  ['110108', '110108 Network Entry'],
  ['110109', '110109 Order Record'],
  ['110110', '110110 Patient Record'],
  ['110111', '110111 Procedure Record'],
  ['110112', '110112 Query'],
  ['110113', '110113 Security Alert'],
  ['110114', '110114 User Authentication'],
];

/** A `datetime-local` value (local time) as RFC 3339 in UTC, or undefined when empty. */
function rfc3339(v: string): string | undefined | null {
  if (!v) return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

function entryRow(e: AuditEntry): HTMLTableRowElement {
  const failedOutcome = e.outcome !== 0;
  return h(
    'tr',
    { class: failedOutcome ? 'failure' : '', data: { id: String(e.id), event: String(e.event_id) } },
    h('td', { class: 'num' }, String(e.id)),
    h('td', { class: 'nowrap' }, dateTime(e.occurred_at)),
    h('td', {}, `${e.event}${e.event_type_meaning ? ` (${e.event_type_meaning})` : ''}`),
    h('td', {}, e.action),
    h('td', { class: failedOutcome ? 'outcome bad' : 'outcome' }, e.outcome_meaning),
    h('td', {}, e.user, e.user_role ? h('span', { class: 'sub' }, e.user_role) : null),
    h('td', { class: 'mono' }, e.source_ip ?? ''),
    h('td', {}, e.patient_id ?? ''),
    h('td', { class: 'mono uid' }, e.study_instance_uid ?? ''),
    h('td', { class: 'detail' }, [e.detail, e.outcome_description].filter(Boolean).join(' — ')),
  );
}

export async function auditSection(ctx: PageContext, box: HTMLElement): Promise<void> {
  const user = input('user', { id: 'audit-user', placeholder: 'username or AE title' });
  const event = select('event', EVENTS);
  event.id = 'audit-event';
  const study = input('study', { id: 'audit-study', placeholder: 'Study Instance UID', size: '30' });
  const since = input('since', { id: 'audit-since', type: 'datetime-local' });
  const until = input('until', { id: 'audit-until', type: 'datetime-local' });
  const size = select('limit', PAGE_SIZES.map((n): [string, string] => [n, `${n} a page`]), '50');
  size.id = 'audit-limit';
  const search = h('button', { class: 'primary', attrs: { type: 'submit' } }, 'Search');
  const form = h(
    'form',
    { id: 'audit-form', class: 'inline-form' },
    field('User', user),
    field('Event', event),
    field('Study', study),
    field('From (local time)', since),
    field('Until', until),
    field('Entries', size),
    search,
  );
  const status = h('p', { id: 'audit-status', class: 'status', attrs: { 'aria-live': 'polite' } });
  const newer = h('button', { id: 'audit-newer', attrs: { type: 'button' } }, '← Newer');
  const older = h('button', { id: 'audit-older', attrs: { type: 'button' } }, 'Older →');
  const pager = h('div', { class: 'pager' }, newer, h('span', { id: 'audit-page', class: 'hint' }), older);
  const results = h('div', { id: 'audit-results' });
  replace(box, form, status, results, pager);

  // The filters of the search shown, and the `before` of each page visited (paging back).
  let query: AuditQuery = { limit: Number(size.value) };
  let searches = 0;
  const pages: (number | undefined)[] = [];

  const show = async (before: number | undefined) => {
    search.disabled = true;
    replace(status, 'Searching the audit trail…');
    let found: AuditEntry[];
    try {
      found = await auditSearch({ ...query, before });
    } catch (e) {
      failed(ctx, status, e);
      return;
    } finally {
      search.disabled = false;
    }
    if (!ctx.isCurrent()) return;
    // The server answers oldest first; the newest is shown first.
    found.reverse();
    results.dataset.count = String(found.length);
    if (found.length === 0) {
      replace(status, pages.length > 1 ? 'No older entries.' : 'No entry matches these filters.');
      replace(results);
    } else {
      replace(status, `Entries ${found[found.length - 1].id} to ${found[0].id}, newest first.`);
      const head = ['Id', 'Time', 'Event', 'Action', 'Outcome', 'User', 'From', 'Patient', 'Study', 'Detail'].map((t) => h('th', {}, t));
      replace(results, h('table', { id: 'audit-table', class: 'compact' }, h('thead', {}, h('tr', {}, ...head)), h('tbody', {}, ...found.map(entryRow))));
    }
    newer.disabled = pages.length <= 1;
    older.disabled = found.length < query.limit;
    older.dataset.before = found.length ? String(found[found.length - 1].id) : '';
    replace(pager.querySelector('#audit-page') as HTMLElement, `page ${pages.length}`);
    // Which answer is shown (tests wait for the next one).
    results.dataset.search = String(++searches);
  };

  form.addEventListener('submit', (evt) => {
    evt.preventDefault();
    const s = study.value.trim();
    if (s && !isUid(s)) {
      replace(status, errorBox('The study must be a Study Instance UID: digits and dots, e.g. 1.2.826.0.1.3680043.'));
      return;
    }
    const from = rfc3339(since.value);
    const to = rfc3339(until.value);
    if (from === null || to === null) {
      replace(status, errorBox('A time in the range is not a valid date and time.'));
      return;
    }
    query = { limit: Number(size.value), user: user.value.trim() || undefined, event: event.value || undefined, study: s || undefined, since: from, until: to };
    pages.length = 0;
    pages.push(undefined);
    void show(undefined);
  });
  older.addEventListener('click', () => {
    const before = Number(older.dataset.before);
    if (!before) return;
    pages.push(before);
    void show(before);
  });
  newer.addEventListener('click', () => {
    if (pages.length <= 1) return;
    pages.pop();
    void show(pages[pages.length - 1]);
  });
  pages.push(undefined);
  await show(undefined);
}
