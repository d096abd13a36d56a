// The reading workflow's HTTP API (reading-workstation-api: worklist.rs, reports.rs), typed
// as the server answers it. Times are Unix microseconds. Every call throws an ApiError
// whose message is a sentence for the user.

import { getJson, sendJson } from './api';

export type Priority = 'stat' | 'urgent' | 'routine';
export type WorklistView = 'mine' | 'pool' | 'overdue' | 'all';

/** One reading task (`GET /api/worklist`). */
export interface WorklistItem {
  task_id: number;
  kind: string;
  priority: string;
  /** open or claimed */
  state: string;
  rule: string | null;
  study_instance_uid: string;
  patient_id: string;
  /** As stored: component groups joined by `=` (`Liu^Yan=刘^䶮=`). */
  patient_name: string | null;
  /** YYYYMMDD */
  study_date: string | null;
  study_description: string | null;
  modalities: string[];
  clinic: string | null;
  assigned_to: string | null;
  claimed_by: string | null;
  lease_expires_at: number | null;
  ready_at: number;
  due_at: number;
  overdue: boolean;
}

export type Agreement = 'agree' | 'minor' | 'major';

/** An image marked to go with the report (at most 8; `frame` is 1-based). */
export interface KeyImage {
  series_instance_uid: string;
  sop_instance_uid: string;
  frame: number;
  caption?: string;
}

/** The sections and verdicts a radiologist writes (`ReportContent`). */
export interface ReportContent {
  clinical_information: string;
  technique: string;
  findings: string;
  impression: string;
  agreement: Agreement | null;
  agreement_comment: string | null;
  critical: boolean;
  /** Sent only when there are some (an archive without key images refuses the field). */
  key_images?: KeyImage[];
}

export interface Addendum {
  id: number;
  author: string;
  text: string;
  signed_at: number;
  signer_key_id: string;
  signature: string;
}

/** A report as stored: content flattened in. */
export interface Report extends ReportContent {
  id: number;
  task_id: number;
  study_instance_uid: string;
  patient_id: string;
  accession_number: string | null;
  clinic_id: number | null;
  template: string;
  author: string;
  /** draft, final or amended */
  state: string;
  signed_at: number | null;
  signer_key_id: string | null;
  signature: string | null;
  patient_name: string | null;
  issuer_of_patient_id: string | null;
  addenda: Addendum[];
}

export interface Preliminary {
  author: string;
  text: string;
  urgent: boolean;
  updated_at: number;
}

export interface StudyReports {
  preliminary: Preliminary[];
  reports: Report[];
}

/** `[section, prompt]` for clinical_information, technique, findings, impression. */
export interface Template {
  name: string;
  modality: string | null;
  body_part: string | null;
  prompts: [string, string][];
}

export interface PortalStudy {
  study_instance_uid: string;
  patient_id: string;
  patient_name: string | null;
  study_date: string | null;
  study_description: string | null;
  modalities: string[];
  received_at: number;
  /** received, in reading, reported, critical */
  state: string;
  report_id: number | null;
}

export interface CriticalNotice {
  report_id: number;
  study_instance_uid: string;
  clinic: string | null;
  signer: string;
  impression: string;
  notified_at: number;
  channel: string;
  ack_due_at: number;
  acknowledged_by: string | null;
  acknowledged_at: number | null;
  escalated_at: number | null;
}

/**
 * What the page that opens a task knows about it (there is no `GET` of one task): the
 * worklist row of an open task, or `done` for a task whose report is signed. The reading
 * view claims an open task before loading its study (a pool task's study is visible only
 * once claimed) and does not claim a done one.
 */
export const taskHints = new Map<number, WorklistItem | 'done'>();

export function worklist(view: WorklistView): Promise<WorklistItem[]> {
  return getJson<WorklistItem[]>(`/api/worklist?view=${view}&limit=1000`, 'the worklist');
}

/** Takes (or keeps: renews the lease of) a task. */
export async function claim(taskId: number): Promise<{ task_id: number; lease_expires_at: number }> {
  const r = await sendJson<{ task_id: number; lease_expires_at: number }>(
    'POST',
    `/api/worklist/tasks/${taskId}/claim`,
    undefined,
    'claiming the task',
  );
  if (!r) throw new Error('The claim was not answered.');
  return r;
}

export function studyReports(study: string): Promise<StudyReports> {
  return getJson<StudyReports>(`/api/studies/${study}/reports`, 'the reports of this study');
}

export function report(id: number): Promise<Report> {
  return getJson<Report>(`/api/reports/${id}`, 'the report');
}

export function templates(): Promise<Template[]> {
  return getJson<Template[]>('/api/report-templates', 'the report templates');
}

export async function saveDraft(taskId: number, content: ReportContent): Promise<Report> {
  const r = await sendJson<Report>('PUT', `/api/worklist/tasks/${taskId}/report`, content, 'saving the draft');
  if (!r) throw new Error('The draft was not answered.');
  return r;
}

export async function sign(reportId: number): Promise<Report> {
  const r = await sendJson<Report>('POST', `/api/reports/${reportId}/sign`, undefined, 'signing the report');
  if (!r) throw new Error('The signature was not answered.');
  return r;
}

export async function addAddendum(reportId: number, text: string): Promise<Addendum> {
  const r = await sendJson<Addendum>('POST', `/api/reports/${reportId}/addenda`, { text }, 'signing the addendum');
  if (!r) throw new Error('The addendum was not answered.');
  return r;
}

export async function savePreliminary(study: string, text: string, urgent: boolean): Promise<Preliminary> {
  const r = await sendJson<Preliminary>(
    'POST',
    `/api/studies/${study}/preliminary`,
    { text, urgent },
    'saving the preliminary impression',
  );
  if (!r) throw new Error('The preliminary impression was not answered.');
  return r;
}

export function portalStudies(): Promise<PortalStudy[]> {
  return getJson<PortalStudy[]>('/api/portal/studies?limit=200', "the clinic's studies");
}

export function criticalFindings(): Promise<CriticalNotice[]> {
  return getJson<CriticalNotice[]>('/api/critical-findings?open=true', 'the critical findings');
}

export async function acknowledgeCritical(reportId: number): Promise<CriticalNotice> {
  const r = await sendJson<CriticalNotice>(
    'POST',
    `/api/reports/${reportId}/critical/acknowledge`,
    undefined,
    'acknowledging the critical finding',
  );
  if (!r) throw new Error('The acknowledgement was not answered.');
  return r;
}

/** The PDF of a signed report (served by the archive; linked, not fetched here). */
export function reportPdfUrl(reportId: number): string {
  return `/api/reports/${reportId}/pdf`;
}
