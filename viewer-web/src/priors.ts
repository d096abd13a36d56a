// The patient's other studies (priors) in the reading view, from any clinic of the region:
// `GET /api/studies/{uid}` answers the study with the patient's other studies the caller
// may see — for a radiologist, every study of the patients assigned to them. Opening one
// puts it in the second viewport of a 1×2 layout (the series of the same modality as the
// one being read, else its first image series), at the image that corresponds to the one
// shown on the left, so that synchronised scrolling keeps them side by side.

import { ApiError, getDicomJson, getJson } from './api';
import { type DicomJson, Tag, num, text } from './dicom';
import { h, message, replace } from './dom';
import { dicomDate } from './format';
import type { StackPanel } from './stack-panel';
import { SliceSync } from './sync';

/** A study as `GET /api/studies/{uid}` lists it (pacs_store::access::StudySummary). */
export interface StudySummary {
  study_instance_uid: string;
  patient_id: string;
  issuer_of_patient_id: string | null;
  study_date: string | null;
  study_description: string | null;
  modalities_in_study: string[];
  clinic_name: string | null;
  number_of_series: number;
  number_of_instances: number;
  state: string;
}

interface StudyDetail {
  study: StudySummary;
  priors: StudySummary[];
}

const NON_IMAGE = new Set(['SR', 'DOC', 'KO', 'PR', 'SEG', 'RTSTRUCT']);

export class Priors {
  readonly element: HTMLElement;
  private readonly list: HTMLElement;
  private priors: StudySummary[] = [];

  constructor(
    private readonly panel: StackPanel,
    private readonly sessionEnded: () => void,
    private readonly isCurrent: () => boolean,
  ) {
    this.list = h('ul', { id: 'priors', class: 'side-list', data: { state: 'loading' } }, h('li', { class: 'sub' }, 'Looking for priors…'));
    this.element = h('section', { class: 'side-section', attrs: { 'aria-label': 'Priors' } }, h('h3', {}, 'Priors'), this.list);
  }

  async load(study: string): Promise<void> {
    let detail: StudyDetail;
    try {
      detail = await getJson<StudyDetail>(`/api/studies/${study}`, "the patient's other studies");
    } catch (e) {
      if (!this.isCurrent()) return;
      if (e instanceof ApiError && e.status === 401) return this.sessionEnded();
      this.list.dataset.state = 'error';
      replace(this.list, h('li', { class: 'error', attrs: { role: 'alert' } }, message(e)));
      return;
    }
    if (!this.isCurrent()) return;
    this.priors = detail.priors;
    this.list.dataset.state = 'ready';
    this.list.dataset.count = String(this.priors.length);
    if (this.priors.length === 0) {
      replace(this.list, h('li', { class: 'sub' }, 'No other studies of this patient.'));
      return;
    }
    replace(
      this.list,
      ...this.priors.map((p) => {
        const open = h(
          'button',
          { class: 'link', attrs: { type: 'button', title: 'Open beside the current study (1×2)' } },
          h('span', {}, [dicomDate(p.study_date), p.modalities_in_study.join('/')].filter(Boolean).join(' ')),
          h('span', { class: 'sub' }, [p.study_description, p.clinic_name].filter(Boolean).join(' · ')),
        );
        open.addEventListener('click', () => void this.open(p.study_instance_uid));
        return h('li', { data: { study: p.study_instance_uid } }, open);
      }),
    );
  }

  /** Opens a prior in the second viewport of a 1×2 layout. */
  async open(priorUid: string): Promise<void> {
    const prior = this.priors.find((p) => p.study_instance_uid === priorUid);
    if (!prior) return;
    for (const li of this.list.querySelectorAll('li')) {
      if ((li as HTMLElement).dataset.study === priorUid) li.setAttribute('aria-current', 'true');
      else li.removeAttribute('aria-current');
    }
    let series: DicomJson[];
    try {
      series = await getDicomJson(`/dicom-web/studies/${priorUid}/series`, 'the series of the prior study');
    } catch (e) {
      if (!this.isCurrent()) return;
      if (e instanceof ApiError && e.status === 401) return this.sessionEnded();
      this.showError(message(e));
      return;
    }
    if (!this.isCurrent()) return;
    const images = series
      .filter((s) => !NON_IMAGE.has(text(s, Tag.Modality)))
      .sort((a, b) => (num(a, Tag.SeriesNumber) ?? 0) - (num(b, Tag.SeriesNumber) ?? 0));
    const left = this.panel.cells()[0];
    const reading = this.panel.series.find((s) => text(s, Tag.SeriesInstanceUID) === left.series);
    const modality = reading ? text(reading, Tag.Modality) : '';
    const pick = images.find((s) => text(s, Tag.Modality) === modality) ?? images[0];
    if (!pick) {
      this.showError('The prior study has no images to show.');
      return;
    }
    if (this.panel.layout() === '1x1') this.panel.setLayout('1x2', false);
    const caption = [
      'Prior',
      dicomDate(prior.study_date),
      text(pick, Tag.Modality),
      text(pick, Tag.SeriesDescription) || prior.study_description,
    ]
      .filter(Boolean)
      .join(' ');
    await this.panel.show(1, priorUid, text(pick, Tag.SeriesInstanceUID), {
      prior: true,
      caption,
      initialIndex: (imgs) => SliceSync.initialIndex(left, imgs),
    });
  }

  private showError(t: string): void {
    const old = this.element.querySelector('.error');
    old?.remove();
    this.element.appendChild(h('p', { class: 'error', attrs: { role: 'alert' } }, t));
  }
}
