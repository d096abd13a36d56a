// The admin API (`/api/admin/…`, administrators only), typed as the admin pages use it.
// Requests that change state carry the session's CSRF token (api.ts).

import { ApiError, getJson, sendJson } from './api';

export interface AeRegistration {
  ae_title: string;
  clinic_id: number;
  clinic_name: string;
  host: string | null;
  tls_only: boolean;
  require_client_cert: boolean;
  port: number | null;
  receives_reports: boolean;
}

export interface Clinic {
  id: number;
  name: string;
  ae_titles: AeRegistration[];
}

/** What an AE title may do: the body of `PUT /ae-titles/{ae}` (and of a new one). */
export interface AeOptions {
  host: string | null;
  tls_only: boolean;
  require_client_cert: boolean;
  port: number | null;
  receives_reports: boolean;
}

export interface User {
  id: number;
  username: string;
  role: string;
  clinic_id: number | null;
  clinic_name: string | null;
  subspecialties: string[];
  disabled: boolean;
  has_password: boolean;
  created_at: number;
}

export interface NewUser {
  username: string;
  role: string;
  clinic?: string;
  subspecialties?: string[];
  password?: string;
}

export interface RoutingRule {
  id: number;
  position: number;
  name: string;
  modality: string | null;
  body_part: string | null;
  description_contains: string | null;
  clinic: string | null;
  priority: string | null;
  subspecialty: string | null;
  set_priority: string | null;
  enabled: boolean;
}

export interface AuditEntry {
  id: number;
  time: string;
  occurred_at: number;
  event_id: number;
  event: string;
  event_type: number | null;
  event_type_meaning: string | null;
  action: string;
  outcome: number;
  outcome_meaning: string;
  outcome_description: string | null;
  user: string;
  user_role: string | null;
  source_ip: string | null;
  patient_id: string | null;
  study_instance_uid: string | null;
  detail: string | null;
}

export interface AuditQuery {
  user?: string;
  event?: string;
  study?: string;
  since?: string;
  until?: string;
  before?: number;
  limit: number;
}

export interface ClinicDays {
  clinic_id: number | null;
  clinic: string | null;
  counts: number[];
  total: number;
}

export interface Turnaround {
  priority: string;
  count: number;
  p50_seconds: number | null;
  p90_seconds: number | null;
  p95_seconds: number | null;
  max_seconds: number | null;
}

export interface Backlog {
  priority: string;
  open: number;
  claimed: number;
  overdue: number;
}

export interface Discrepancies {
  clinic: string;
  reviewed: number;
  agree: number;
  minor: number;
  major: number;
}

export interface Dashboard {
  days: number;
  from: number;
  until: number;
  day_labels: string[];
  studies: ClinicDays[];
  turnaround: Turnaround[];
  backlog: Backlog[];
  overdue: number;
  discrepancies: Discrepancies[];
}

const enc = encodeURIComponent;

export const clinics = (): Promise<Clinic[]> => getJson<Clinic[]>('/api/admin/clinics', 'the clinics');

export async function createClinic(name: string): Promise<Clinic> {
  const c = await sendJson<Clinic>('POST', '/api/admin/clinics', { name }, `creating the clinic “${name}”`);
  if (!c) throw new ApiError(500, 'The server did not answer with the new clinic.');
  return c;
}

export async function addAe(clinic: string, aeTitle: string, options: AeOptions): Promise<void> {
  await sendJson('POST', `/api/admin/clinics/${enc(clinic)}/ae-titles`, { ae_title: aeTitle, ...options }, `registering the AE title ${aeTitle}`);
}

export async function updateAe(aeTitle: string, options: AeOptions): Promise<void> {
  await sendJson('PUT', `/api/admin/ae-titles/${enc(aeTitle)}`, options, `changing the AE title ${aeTitle}`);
}

export async function removeAe(aeTitle: string): Promise<void> {
  await sendJson('DELETE', `/api/admin/ae-titles/${enc(aeTitle)}`, undefined, `removing the AE title ${aeTitle}`);
}

export const users = (): Promise<User[]> => getJson<User[]>('/api/admin/users', 'the users');

export async function createUser(u: NewUser): Promise<void> {
  await sendJson('POST', '/api/admin/users', u, `creating the user ${u.username}`);
}

export async function setDisabled(username: string, disabled: boolean): Promise<void> {
  await sendJson(
    'POST',
    `/api/admin/users/${enc(username)}/${disabled ? 'disable' : 'enable'}`,
    undefined,
    `${disabled ? 'disabling' : 'enabling'} ${username}`,
  );
}

export async function resetPassword(username: string, password: string): Promise<void> {
  await sendJson('PUT', `/api/admin/users/${enc(username)}/password`, { password }, `setting the password of ${username}`);
}

export const routingRules = (): Promise<RoutingRule[]> => getJson<RoutingRule[]>('/api/admin/routing-rules', 'the routing rules');

export async function createRule(rule: RoutingRule): Promise<void> {
  await sendJson('POST', '/api/admin/routing-rules', rule, `creating the rule ${rule.name}`);
}

export async function updateRule(rule: RoutingRule): Promise<void> {
  await sendJson('PUT', `/api/admin/routing-rules/${rule.id}`, rule, `saving the rule ${rule.name}`);
}

export async function deleteRule(rule: RoutingRule): Promise<void> {
  await sendJson('DELETE', `/api/admin/routing-rules/${rule.id}`, undefined, `deleting the rule ${rule.name}`);
}

export function auditSearch(q: AuditQuery): Promise<AuditEntry[]> {
  const p = new URLSearchParams();
  if (q.user) p.set('user', q.user);
  if (q.event) p.set('event', q.event);
  if (q.study) p.set('study', q.study);
  if (q.since) p.set('since', q.since);
  if (q.until) p.set('until', q.until);
  if (q.before !== undefined) p.set('before', String(q.before));
  p.set('limit', String(q.limit));
  return getJson<AuditEntry[]>(`/api/admin/audit?${p.toString()}`, 'the audit trail');
}

export const dashboard = (days: number): Promise<Dashboard> =>
  getJson<Dashboard>(`/api/admin/dashboard?days=${days}`, 'the dashboard');
