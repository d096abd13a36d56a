// The admin pages (`#/admin/<section>`), for administrators: the dashboard, clinics and AE
// titles, users and roles, routing rules, audit search. Anyone else gets a sentence saying
// so (and the server would answer 403 to every request of these pages anyway).

import './admin.css';

import { auditSection } from './admin-audit';
import { clinicsSection } from './admin-clinics';
import { rulesSection } from './admin-rules';
import { usersSection } from './admin-users';
import { dashboardSection } from './dashboard';
import { h, replace } from './dom';
import { type PageContext, errorBox } from './page';

export type AdminSection = 'dashboard' | 'clinics' | 'users' | 'rules' | 'audit';

export const ADMIN_SECTIONS: [AdminSection, string][] = [
  ['dashboard', 'Dashboard'],
  ['clinics', 'Clinics and AE titles'],
  ['users', 'Users and roles'],
  ['rules', 'Routing rules'],
  ['audit', 'Audit trail'],
];

export function isAdminSection(s: string | undefined): s is AdminSection {
  return ADMIN_SECTIONS.some(([k]) => k === s);
}

export async function adminPage(ctx: PageContext, section: AdminSection): Promise<void> {
  ctx.app.dataset.page = 'admin';
  if (ctx.me.role !== 'admin') {
    replace(
      ctx.app,
      h('h1', {}, 'Administration'),
      errorBox(
        `The admin pages are for administrators only. You are logged in as ${ctx.me.username} (${ctx.me.role}): ask an administrator if something needs changing.`,
      ),
    );
    return;
  }
  const tabs = h(
    'nav',
    { class: 'tabs', attrs: { 'aria-label': 'Administration' } },
    ...ADMIN_SECTIONS.map(([key, label]) =>
      h('a', { class: 'tab', attrs: { href: `#/admin/${key}`, 'aria-selected': String(key === section) }, data: { section: key } }, label),
    ),
  );
  const box = h('div', { id: 'admin-section', data: { section } });
  const title = ADMIN_SECTIONS.find(([k]) => k === section)?.[1] ?? '';
  replace(ctx.app, h('h1', {}, `Administration — ${title}`), tabs, box);
  switch (section) {
    case 'clinics':
      await clinicsSection(ctx, box);
      break;
    case 'users':
      await usersSection(ctx, box);
      break;
    case 'rules':
      await rulesSection(ctx, box);
      break;
    case 'audit':
      await auditSection(ctx, box);
      break;
    default:
      await dashboardSection(ctx, box);
  }
}
