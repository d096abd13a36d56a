// The clinic portal (clinic users' landing page): the clinic's critical findings to
// acknowledge, its studies with where they stand (received, in reading, reported,
// critical) from `GET /api/portal/studies`, and the chosen study's report readable in the
// page with a "Download PDF" link. Township doctors can write their preliminary impression
// of a study not yet reported. The page follows the live feed: a signed report, a critical
// finding or a study being read shows as a notification and refreshes the lists.

import { ApiError } from './api';
import { h, message, replace } from './dom';
import { dateTime, dicomDate, personNameText } from './format';
import { describeEvent, live } from './live';
import { notify } from './messages';
import { type PageContext, errorBox } from './page';
import {
  type CriticalNotice,
  type PortalStudy,
  type Report,
  type StudyReports,
  acknowledgeCritical,
  criticalFindings,
  portalStudies,
  reportPdfUrl,
  savePreliminary,
  studyReports,
} from './reading-api';
import { liveIndicator } from './worklist';

const SECTIONS: [keyof Report & string, string][] = [
  ['clinical_information', 'Clinical information'],
  ['technique', 'Technique'],
  ['findings', 'Findings'],
  ['impression', 'Impression'],
];

const VERDICT_TEXT: Record<string, string> = {
  agree: 'agrees with the preliminary impression',
  minor: 'minor discrepancy with the preliminary impression',
  major: 'MAJOR discrepancy with the preliminary impression',
};

/** Live events the portal shows as notifications. */
const NOTIFIED = new Set(['report_signed', 'report_amended', 'critical_finding', 'critical_unacknowledged']);

export async function portalPage(ctx: PageContext, wanted: string | undefined): Promise<void> {
  const critical = h('section', { id: 'critical-findings', attrs: { 'aria-label': 'Critical findings' } });
  const status = h('div', { id: 'portal-status', class: 'status', attrs: { 'aria-live': 'polite' } }, 'Loading the studies…');
  const body = h('tbody');
  const head = ['Patient', 'Patient ID', 'Study date', 'Study', 'Modality', 'Received', 'State'].map((t) =>
    h('th', { attrs: { scope: 'col' } }, t),
  );
  const table = h('table', { id: 'portal-studies', class: 'worklist' }, h('thead', {}, h('tr', {}, ...head)), body);
  const detail = h('section', { id: 'portal-report', class: 'portal-detail', attrs: { 'aria-live': 'polite' } });
  replace(
    detail,
    h('p', { class: 'status' }, 'Choose a study to read its report.'),
  );
  const title = ctx.me.clinic ? `Clinic portal — ${ctx.me.clinic}` : 'Clinic portal';
  replace(
    ctx.app,
    h('div', { class: 'page-head' }, h('h1', {}, title), liveIndicator(ctx)),
    critical,
    h('div', { class: 'portal' }, h('div', { class: 'portal-list' }, status, table), detail),
  );

  let studies: PortalStudy[] = [];
  let chosen = wanted;

  const stateBadge = (state: string) => h('span', { class: `badge state-${state.replace(/ /g, '-')}` }, state);

  function row(s: PortalStudy): HTMLTableRowElement {
    const tr = h(
      'tr',
      {
        attrs: { tabindex: '0', 'aria-selected': s.study_instance_uid === chosen ? 'true' : 'false' },
        data: { study: s.study_instance_uid, state: s.state },
      },
      h('td', { class: 'patient-name' }, personNameText(s.patient_name) || '(no name)'),
      h('td', {}, s.patient_id),
      h('td', { class: 'nowrap' }, dicomDate(s.study_date)),
      h('td', {}, s.study_description ?? ''),
      h('td', {}, s.modalities.join(', ')),
      h('td', { class: 'nowrap' }, dateTime(s.received_at)),
      h('td', { class: 'state' }, stateBadge(s.state)),
    );
    const open = () => choose(s.study_instance_uid);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (evt) => {
      if (evt.key === 'Enter' || evt.key === ' ') {
        evt.preventDefault();
        open();
      } else if (evt.key === 'ArrowDown') {
        evt.preventDefault();
        (tr.nextElementSibling as HTMLElement | null)?.focus();
      } else if (evt.key === 'ArrowUp') {
        evt.preventDefault();
        (tr.previousElementSibling as HTMLElement | null)?.focus();
      }
    });
    return tr;
  }

  function criticalCard(n: CriticalNotice): HTMLElement {
    const s = studies.find((x) => x.study_instance_uid === n.study_instance_uid);
    const ack = h('button', { class: 'primary', attrs: { type: 'button' }, data: { report: String(n.report_id) } }, 'Acknowledge');
    ack.addEventListener('click', () => {
      ack.disabled = true;
      acknowledgeCritical(n.report_id)
        .then(() => {
          notify('Critical finding acknowledged: the radiologist is told that you received it.', 'success');
          void refresh();
        })
        .catch((e: unknown) => {
          ack.disabled = false;
          if (e instanceof ApiError && e.status === 401) ctx.sessionEnded();
          else notify(message(e), 'error');
        });
    });
    const read = h('button', { attrs: { type: 'button' } }, 'Read the report');
    read.addEventListener('click', () => choose(n.study_instance_uid));
    const overdue = n.ack_due_at <= Date.now() * 1000;
    return h(
      'div',
      { class: 'critical-card', data: { report: String(n.report_id), study: n.study_instance_uid } },
      h('p', { class: 'critical-title' }, 'Critical finding', s ? ` — ${personNameText(s.patient_name) || s.patient_id}` : ''),
      h('p', { class: 'critical-impression' }, n.impression),
      h(
        'p',
        { class: 'sub' },
        `Signed by ${n.signer}, notified ${dateTime(n.notified_at)}; acknowledge by ${dateTime(n.ack_due_at)}`,
        overdue ? h('strong', { class: 'overdue' }, ' (overdue)') : null,
      ),
      h('div', { class: 'actions' }, ack, read),
    );
  }

  function reportView(r: Report, s: PortalStudy | undefined): HTMLElement {
    const pdf = h('a', { id: 'report-pdf', class: 'button', attrs: { href: reportPdfUrl(r.id), download: `report-${r.id}.pdf` } }, 'Download PDF');
    const images = h('a', { class: 'button', attrs: { href: `#/study/${r.study_instance_uid}` } }, 'Open the images');
    const sections = h('dl', { class: 'report-text' });
    for (const [name, label] of SECTIONS) {
      sections.append(h('dt', {}, label), h('dd', { data: { section: name } }, (r[name] as string) || '—'));
    }
    return h(
      'article',
      { id: 'report', data: { report: String(r.id), state: r.state } },
      h('h2', {}, 'Report', s ? ` — ${personNameText(s.patient_name) || s.patient_id}` : ''),
      h(
        'p',
        { class: 'signed' },
        `Signed by ${r.author}, ${dateTime(r.signed_at)}`,
        r.state === 'amended' ? ' (amended)' : '',
        r.critical ? h('span', { class: 'badge state-critical' }, 'critical finding') : null,
      ),
      r.agreement
        ? h(
            'p',
            { id: 'verdict', class: `verdict-${r.agreement}` },
            `The radiologist ${VERDICT_TEXT[r.agreement] ?? r.agreement}`,
            r.agreement_comment ? `: ${r.agreement_comment}` : '.',
          )
        : null,
      sections,
      r.addenda.length
        ? h(
            'section',
            { id: 'addenda' },
            h('h3', {}, 'Addenda'),
            ...r.addenda.map((a) => h('div', { class: 'addendum' }, h('p', {}, a.text), h('p', { class: 'sub' }, `${a.author}, ${dateTime(a.signed_at)}`))),
          )
        : null,
      h('div', { class: 'actions' }, pdf, images),
    );
  }

  function preliminaryForm(uid: string, data: StudyReports): HTMLElement {
    const textArea = h('textarea', { id: 'preliminary-text', attrs: { rows: '3', placeholder: 'Your first impression, for the radiologist.' } });
    const urgent = h('input', { id: 'preliminary-urgent', attrs: { type: 'checkbox' } });
    const save = h('button', { id: 'save-preliminary', class: 'primary', attrs: { type: 'button' } }, 'Send preliminary impression');
    const out = h('div', { attrs: { 'aria-live': 'polite' } });
    save.addEventListener('click', () => {
      const t = textArea.value.trim();
      if (!t) {
        replace(out, errorBox('Write the impression first.'));
        return;
      }
      save.disabled = true;
      savePreliminary(uid, t, urgent.checked)
        .then(() => {
          notify('Preliminary impression sent to the radiologist.', 'success');
          void showDetail(uid);
        })
        .catch((e: unknown) => {
          save.disabled = false;
          if (e instanceof ApiError && e.status === 401) ctx.sessionEnded();
          else replace(out, errorBox(message(e)));
        });
    });
    return h(
      'section',
      { class: 'preliminary' },
      h('h3', {}, data.preliminary.length ? 'Update your preliminary impression' : 'Preliminary impression'),
      textArea,
      h('label', {}, urgent, ' Urgent (raises a routine reading to urgent)'),
      h('div', { class: 'actions' }, save),
      out,
    );
  }

  let detailShown = 0;
  async function showDetail(uid: string): Promise<void> {
    const mine = ++detailShown;
    const s = studies.find((x) => x.study_instance_uid === uid);
    replace(detail, h('p', { class: 'status' }, 'Loading the report…'));
    let data: StudyReports;
    try {
      data = await studyReports(uid);
    } catch (e) {
      if (!ctx.isCurrent() || mine !== detailShown) return;
      if (e instanceof ApiError && e.status === 401) {
        ctx.sessionEnded();
        return;
      }
      replace(detail, errorBox(message(e)));
      return;
    }
    if (!ctx.isCurrent() || mine !== detailShown) return;
    const signed = data.reports.filter((r) => r.state !== 'draft');
    const latest = signed[signed.length - 1];
    const prelim = data.preliminary.length
      ? h(
          'section',
          { id: 'preliminary-list', class: 'preliminary' },
          h('h3', {}, 'Preliminary impression'),
          ...data.preliminary.map((p) => h('p', {}, p.text, h('span', { class: 'sub' }, ` — ${p.author}, ${dateTime(p.updated_at)}`))),
        )
      : null;
    if (latest) {
      replace(detail, reportView(latest, s), prelim);
    } else {
      replace(
        detail,
        h('h2', {}, s ? personNameText(s.patient_name) || s.patient_id : 'Study'),
        h('p', { id: 'no-report', class: 'status' }, s ? `Not reported yet (${s.state}).` : 'Not reported yet.'),
        h('p', {}, h('a', { class: 'button', attrs: { href: `#/study/${uid}` } }, 'Open the images')),
        prelim,
        ctx.me.role === 'township-doctor' ? preliminaryForm(uid, data) : null,
      );
    }
  }

  function choose(uid: string): void {
    chosen = uid;
    history.replaceState(null, '', `#/portal/study/${uid}`);
    for (const tr of body.querySelectorAll('tr')) {
      tr.setAttribute('aria-selected', (tr as HTMLElement).dataset.study === uid ? 'true' : 'false');
    }
    void showDetail(uid);
  }

  async function refresh(): Promise<void> {
    try {
      const [list, notices] = await Promise.all([portalStudies(), criticalFindings()]);
      if (!ctx.isCurrent()) return;
      studies = list;
      replace(body, ...list.map(row));
      table.dataset.count = String(list.length);
      replace(
        status,
        list.length === 0 ? 'No studies of your clinic yet.' : `${list.length} stud${list.length === 1 ? 'y' : 'ies'}.`,
      );
      if (notices.length === 0) replace(critical);
      else
        replace(
          critical,
          h('h2', { class: 'critical-head' }, `Critical findings to acknowledge (${notices.length})`),
          ...notices.map(criticalCard),
        );
    } catch (e) {
      if (!ctx.isCurrent()) return;
      if (e instanceof ApiError && e.status === 401) {
        ctx.sessionEnded();
        return;
      }
      replace(status, errorBox(message(e)));
    }
  }

  let pending: number | undefined;
  const off = live.subscribe((e) => {
    // A critical report is announced once, as the critical finding.
    const criticalReport = e.kind === 'report_signed' && e.payload?.critical === true;
    if (NOTIFIED.has(e.kind) && !criticalReport) {
      const s = studies.find((x) => x.study_instance_uid === e.study_instance_uid);
      const who = s ? ` (${personNameText(s.patient_name) || s.patient_id})` : '';
      notify(`${describeEvent(e).replace(/\.$/, '')}${who}.`, e.kind.startsWith('critical') ? 'critical' : 'info');
    }
    if (pending !== undefined) return;
    pending = window.setTimeout(() => {
      pending = undefined;
      void refresh().then(() => {
        if (chosen && chosen === e.study_instance_uid && ctx.isCurrent()) void showDetail(chosen);
      });
    }, 250);
  });
  const poll = window.setInterval(() => void refresh(), 60_000);
  ctx.onLeave(() => {
    off();
    window.clearInterval(poll);
    if (pending !== undefined) window.clearTimeout(pending);
  });
  await refresh();
  if (chosen && ctx.isCurrent()) {
    if (studies.some((s) => s.study_instance_uid === chosen)) void showDetail(chosen);
    else replace(detail, errorBox('That study is not among your clinic’s studies.'));
  }
}
