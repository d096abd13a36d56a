// The report panel beside the images: the template's sections (clinical information,
// technique, findings, impression, with the template's prompts), the township doctor's
// preliminary impression with the verdict (agree / minor / major discrepancy, comment), the
// critical-finding flag, Save draft and Sign (after a confirmation). A signed report is
// shown as signed, read-only, with its addenda and a form for a new (signed) addendum.

import { ApiError, type Me } from './api';
import { confirmDialog } from './dialogs';
import { h, message, replace } from './dom';
import { clockTime, dateTime } from './format';
import { notify } from './messages';
import {
  type Agreement,
  type KeyImage,
  type Preliminary,
  type Report,
  type ReportContent,
  type StudyReports,
  type Template,
  addAddendum,
  saveDraft,
  sign,
} from './reading-api';

const SECTIONS: [keyof ReportContent & string, string][] = [
  ['clinical_information', 'Clinical information'],
  ['technique', 'Technique'],
  ['findings', 'Findings'],
  ['impression', 'Impression'],
];

const VERDICTS: [Agreement, string][] = [
  ['agree', 'Agree'],
  ['minor', 'Minor discrepancy'],
  ['major', 'Major discrepancy'],
];

/** The template for these modalities and body parts, as the server picks it. */
export function templateFor(templates: Template[], modalities: string[], bodyParts: string[]): Template | undefined {
  const has = (list: string[], want: string | null) => want === null || list.some((v) => v.toUpperCase() === want.toUpperCase());
  return templates.find((t) => has(modalities, t.modality) && has(bodyParts, t.body_part)) ?? templates[templates.length - 1];
}

export interface ReportPanelOptions {
  taskId: number;
  me: Me;
  sessionEnded: () => void;
  /** Whether the page is still shown. */
  isCurrent: () => boolean;
  /** The report is signed (now, or it was when loaded): the task is done. */
  onSigned?: () => void;
  /** The key images marked in the viewer, saved with the draft. */
  keyImages?: { get(): KeyImage[]; set(items: KeyImage[] | undefined): void };
}

export class ReportPanel {
  readonly element = h('aside', { id: 'report-panel', attrs: { 'aria-label': 'Report' }, data: { state: 'loading' } });
  private readonly errorArea = h('div', { id: 'report-error', attrs: { 'aria-live': 'assertive' } });
  private readonly statusLine = h('div', { id: 'report-status', class: 'status', attrs: { 'aria-live': 'polite' } });
  private report: Report | undefined;
  private preliminary: Preliminary[] = [];
  private template: Template | undefined;
  private fields = new Map<string, HTMLTextAreaElement>();
  private verdicts = new Map<Agreement, HTMLInputElement>();
  private comment: HTMLTextAreaElement | undefined;
  private critical: HTMLInputElement | undefined;
  private addendumText: HTMLTextAreaElement | undefined;
  /** The buttons of the form, kept in view at the bottom of the panel. */
  private actions: HTMLElement | undefined;
  private busy = false;
  /** Unsaved changes in the form. */
  dirty = false;

  constructor(private readonly opts: ReportPanelOptions) {
    replace(this.element, h('h2', {}, 'Report'), h('p', { class: 'status' }, 'Loading the report…'));
  }

  /** Whether this user may write (radiologists; the server checks the claim). */
  private get writer(): boolean {
    return this.opts.me.role === 'radiologist';
  }

  private get signed(): boolean {
    return this.report !== undefined && this.report.state !== 'draft';
  }

  showLoadError(text: string): void {
    this.element.dataset.state = 'error';
    replace(this.element, h('h2', {}, 'Report'), h('p', { class: 'error', attrs: { role: 'alert' } }, text));
  }

  load(data: StudyReports, templates: Template[], modalities: string[], bodyParts: string[]): void {
    this.report = data.reports.find((r) => r.task_id === this.opts.taskId);
    this.opts.keyImages?.set(this.report?.key_images);
    this.preliminary = data.preliminary;
    this.template =
      (this.report && templates.find((t) => t.name === this.report?.template)) ??
      templateFor(templates, modalities, bodyParts);
    this.render();
    if (this.signed) this.opts.onSigned?.();
  }

  private render(): void {
    this.fields.clear();
    this.verdicts.clear();
    this.comment = undefined;
    this.critical = undefined;
    this.addendumText = undefined;
    this.actions = undefined;
    const r = this.report;
    const state = r ? r.state : 'new';
    this.element.dataset.state = state;
    if (r) this.element.dataset.report = String(r.id);
    const badge = h('span', { id: 'report-state', class: `badge state-${state}` }, state === 'final' ? 'signed' : state);
    const head = h(
      'div',
      { class: 'panel-head' },
      h('h2', {}, 'Report'),
      badge,
      this.template ? h('span', { class: 'sub' }, `template ${this.template.name}`) : null,
    );
    replace(this.element, head);
    if (this.preliminary.length > 0) this.element.appendChild(this.preliminaryBox());
    if (this.signed && r) this.renderSigned(r);
    else this.renderForm(r);
    this.element.appendChild(h('div', { class: 'panel-foot' }, this.actions, this.statusLine, this.errorArea));
  }

  private preliminaryBox(): HTMLElement {
    const box = h(
      'section',
      { id: 'preliminary', class: 'preliminary' },
      h('h3', {}, 'Township preliminary impression'),
      ...this.preliminary.map((p) =>
        h(
          'div',
          { class: 'prelim-entry' },
          h('p', { class: 'prelim-text' }, p.text),
          h(
            'p',
            { class: 'sub' },
            `${p.author}, ${dateTime(p.updated_at)}`,
            p.urgent ? h('span', { class: 'badge priority-urgent' }, 'urgent') : null,
          ),
        ),
      ),
    );
    const r = this.report;
    if (this.signed && r) {
      const v = VERDICTS.find(([a]) => a === r.agreement);
      box.appendChild(
        h(
          'p',
          { id: 'verdict' },
          h('strong', {}, 'Verdict: '),
          v ? v[1] : 'not recorded',
          r.agreement_comment ? ` — ${r.agreement_comment}` : '',
        ),
      );
      return box;
    }
    const fieldset = h('fieldset', { class: 'verdicts', attrs: { 'aria-label': 'Agreement with the preliminary impression' } });
    fieldset.appendChild(h('legend', {}, 'Your verdict'));
    for (const [value, label] of VERDICTS) {
      const input = h('input', {
        id: `agreement-${value}`,
        attrs: { type: 'radio', name: 'agreement', value },
      });
      input.disabled = !this.writer;
      if (r?.agreement === value) input.checked = true;
      input.addEventListener('change', () => this.changed());
      this.verdicts.set(value, input);
      fieldset.appendChild(h('label', { class: `verdict verdict-${value}` }, input, ` ${label}`));
    }
    const comment = h('textarea', {
      id: 'agreement-comment',
      attrs: { rows: '1', placeholder: 'Comment for the township doctor' },
    });
    comment.value = r?.agreement_comment ?? '';
    comment.disabled = !this.writer;
    comment.addEventListener('input', () => this.changed());
    this.comment = comment;
    box.append(fieldset, h('label', { class: 'field-label', attrs: { for: 'agreement-comment' } }, 'Comment'), comment);
    return box;
  }

  private renderForm(r: Report | undefined): void {
    const prompts = new Map(this.template?.prompts ?? []);
    for (const [name, label] of SECTIONS) {
      const area = h('textarea', {
        id: `report-${name}`,
        attrs: { rows: name === 'findings' ? '5' : name === 'impression' ? '3' : '2', placeholder: prompts.get(name) ?? '' },
        data: { section: name },
      });
      area.value = (r?.[name] as string | undefined) ?? '';
      area.disabled = !this.writer;
      area.addEventListener('input', () => this.changed());
      this.fields.set(name, area);
      this.element.append(h('label', { class: 'field-label', attrs: { for: area.id } }, label), area);
    }
    const critical = h('input', { id: 'critical', attrs: { type: 'checkbox' } });
    critical.checked = r?.critical ?? false;
    critical.disabled = !this.writer;
    critical.addEventListener('change', () => this.changed());
    this.critical = critical;
    this.element.appendChild(
      h('label', { class: 'critical-flag' }, critical, ' Critical finding — the sending clinic is notified and must acknowledge'),
    );
    if (!this.writer) {
      this.element.appendChild(h('p', { class: 'status' }, 'Only radiologists write reports.'));
      return;
    }
    const save = h('button', { id: 'save-draft', attrs: { type: 'button', title: 'Ctrl+S' } }, 'Save draft');
    const signButton = h('button', { id: 'sign', class: 'primary', attrs: { type: 'button', title: 'Ctrl+Enter' } }, 'Sign…');
    save.addEventListener('click', () => void this.save());
    signButton.addEventListener('click', () => void this.signWithConfirmation());
    this.actions = h('div', { class: 'actions' }, save, h('kbd', {}, 'Ctrl+S'), signButton, h('kbd', {}, 'Ctrl+Enter'));
    replace(this.statusLine, r ? 'A draft of this report is saved.' : '');
  }

  private renderSigned(r: Report): void {
    const signedLine = h(
      'p',
      { id: 'signed-by', class: 'signed' },
      `Signed by ${r.author}, ${dateTime(r.signed_at)}`,
      r.critical ? h('span', { class: 'badge state-critical' }, 'critical finding') : null,
    );
    const sections = h('dl', { class: 'report-text' });
    for (const [name, label] of SECTIONS) {
      const v = (r[name] as string) || '—';
      sections.append(h('dt', {}, label), h('dd', { data: { section: name } }, v));
    }
    this.element.append(signedLine, sections);
    const addenda = h('section', { id: 'addenda' }, h('h3', {}, 'Addenda'));
    if (r.addenda.length === 0) addenda.appendChild(h('p', { class: 'sub' }, 'None.'));
    for (const a of r.addenda) {
      addenda.appendChild(
        h('div', { class: 'addendum' }, h('p', {}, a.text), h('p', { class: 'sub' }, `${a.author}, ${dateTime(a.signed_at)}`)),
      );
    }
    this.element.appendChild(addenda);
    if (!this.writer) return;
    const text = h('textarea', {
      id: 'addendum-text',
      attrs: { rows: '3', placeholder: 'A correction or addition; it is signed and sent like the report.' },
    });
    text.addEventListener('input', () => this.changed());
    this.addendumText = text;
    const add = h('button', { id: 'add-addendum', class: 'primary', attrs: { type: 'button' } }, 'Sign addendum…');
    add.addEventListener('click', () => void this.addendumWithConfirmation());
    this.element.append(h('label', { class: 'field-label', attrs: { for: 'addendum-text' } }, 'New addendum'), text);
    this.actions = h('div', { class: 'actions' }, add, h('kbd', {}, 'Ctrl+Enter'));
  }

  /** Whether the report can still change (a draft, written by a radiologist). */
  editable(): boolean {
    return this.writer && !this.signed;
  }

  /** Something outside the form changed (key images): unsaved. */
  markChanged(): void {
    if (this.editable()) this.changed();
  }

  private changed(): void {
    this.dirty = true;
    replace(this.statusLine, 'Unsaved changes.');
  }

  private content(): ReportContent {
    const v = (name: string) => this.fields.get(name)?.value ?? '';
    let agreement: Agreement | null = null;
    for (const [a, input] of this.verdicts) if (input.checked) agreement = a;
    const comment = this.comment?.value.trim() ?? '';
    const content: ReportContent = {
      clinical_information: v('clinical_information'),
      technique: v('technique'),
      findings: v('findings'),
      impression: v('impression'),
      agreement,
      agreement_comment: comment ? comment : null,
      critical: this.critical?.checked ?? false,
    };
    const keys = this.opts.keyImages?.get() ?? [];
    if (keys.length > 0) content.key_images = keys;
    return content;
  }

  /**
   * Saves the draft. An archive that does not take key images yet refuses the whole body
   * (400/422, unknown field): the text is then saved without them, and the user is told.
   */
  private async saveContent(content: ReportContent): Promise<Report> {
    try {
      return await saveDraft(this.opts.taskId, content);
    } catch (e) {
      // 400 or 422 (a body the server's types refuse): try once more without the new field.
      if (!(e instanceof ApiError && (e.status === 400 || e.status === 422) && content.key_images)) throw e;
      const { key_images: _dropped, ...rest } = content;
      const saved = await saveDraft(this.opts.taskId, rest);
      this.showError(
        `The draft was saved without its ${content.key_images.length} key image(s): the archive refused them, it may not store key images yet (${e.message})`,
      );
      return saved;
    }
  }

  private showError(e: unknown): void {
    if (e instanceof ApiError && e.status === 401) {
      this.opts.sessionEnded();
      return;
    }
    const text = typeof e === 'string' ? e : message(e);
    replace(this.errorArea, h('p', { class: 'error', attrs: { role: 'alert' } }, text));
  }

  private clearError(): void {
    replace(this.errorArea);
  }

  /** Saves the draft (Ctrl+S). Returns false when it could not. */
  async save(): Promise<boolean> {
    if (!this.writer || this.signed || this.busy) return false;
    this.busy = true;
    this.clearError();
    replace(this.statusLine, 'Saving the draft…');
    try {
      const saved = await this.saveContent(this.content());
      if (!this.opts.isCurrent()) return false;
      this.report = saved;
      this.dirty = false;
      this.element.dataset.state = saved.state;
      this.element.dataset.report = String(saved.id);
      const badge = this.element.querySelector('#report-state');
      if (badge) {
        replace(badge, saved.state);
        badge.className = `badge state-${saved.state}`;
      }
      replace(this.statusLine, `Draft saved at ${clockTime(Date.now() * 1000)}.`);
      return true;
    } catch (e) {
      replace(this.statusLine, '');
      this.showError(e);
      return false;
    } finally {
      this.busy = false;
    }
  }

  /** The view is being left: unsaved changes go to the draft (no answer awaited). */
  saveOnLeave(): void {
    if (!this.dirty || !this.writer || this.signed || this.busy) return;
    this.dirty = false;
    this.saveContent(this.content()).then(
      () => notify('Your unsaved changes were saved to the draft.', 'success'),
      (e: unknown) => notify(`Your unsaved changes could not be saved: ${message(e)}`, 'error'),
    );
  }

  /** Ctrl+Enter: signs the report (or the addendum of a signed one) after confirmation. */
  async primaryAction(): Promise<void> {
    if (this.signed) await this.addendumWithConfirmation();
    else await this.signWithConfirmation();
  }

  async signWithConfirmation(): Promise<void> {
    if (!this.writer || this.signed || this.busy) return;
    const c = this.content();
    if (!c.findings.trim() || !c.impression.trim()) {
      this.showError('Write the findings and the impression before signing.');
      (c.findings.trim() ? this.fields.get('impression') : this.fields.get('findings'))?.focus();
      return;
    }
    if (this.preliminary.length > 0 && !c.agreement) {
      this.showError("Record your verdict on the township doctor's preliminary impression (agree, minor or major discrepancy) before signing.");
      this.verdicts.get('agree')?.focus();
      return;
    }
    if (!(await this.save())) return;
    const critical = c.critical ? ' It flags a CRITICAL finding: the sending clinic will be notified and must acknowledge.' : '';
    const ok = await confirmDialog(
      'Sign this report?',
      `A signed report is final and is sent to the clinic; corrections are made with addenda.${critical}`,
      'Sign report',
    );
    if (!ok || !this.opts.isCurrent()) {
      replace(this.statusLine, 'Not signed. The draft is saved.');
      return;
    }
    const id = this.report?.id;
    if (id === undefined) return;
    this.busy = true;
    replace(this.statusLine, 'Signing…');
    try {
      const signed = await sign(id);
      if (!this.opts.isCurrent()) return;
      this.report = signed;
      this.dirty = false;
      this.render();
      this.opts.onSigned?.();
      replace(this.statusLine, `Signed at ${clockTime(signed.signed_at ?? Date.now() * 1000)}.`);
      notify('The report is signed and on its way to the clinic.', 'success');
    } catch (e) {
      replace(this.statusLine, '');
      this.showError(e);
    } finally {
      this.busy = false;
    }
  }

  async addendumWithConfirmation(): Promise<void> {
    const r = this.report;
    if (!this.writer || !r || !this.signed || this.busy || !this.addendumText) return;
    const text = this.addendumText.value.trim();
    if (!text) {
      this.showError('Write the addendum first.');
      this.addendumText.focus();
      return;
    }
    const ok = await confirmDialog('Sign this addendum?', 'The addendum is signed, added to the report and sent to the clinic.', 'Sign addendum');
    if (!ok || !this.opts.isCurrent()) return;
    this.busy = true;
    this.clearError();
    try {
      const added = await addAddendum(r.id, text);
      if (!this.opts.isCurrent()) return;
      this.report = { ...r, state: 'amended', addenda: [...r.addenda, added] };
      this.dirty = false;
      this.render();
      replace(this.statusLine, `Addendum signed at ${clockTime(added.signed_at)}.`);
      notify('The addendum is signed.', 'success');
    } catch (e) {
      this.showError(e);
    } finally {
      this.busy = false;
    }
  }

  /** Focuses the first section to write in. */
  focusFirst(): void {
    const findings = this.fields.get('findings');
    (findings ?? this.addendumText)?.focus();
  }
}
