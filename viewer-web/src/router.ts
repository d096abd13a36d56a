// Routes live in the URL fragment, so that the archive serves one index.html at `/`:
//   #/                         the landing page of the role (worklist, portal or studies)
//   #/worklist[/mine|pool|overdue]
//   #/read/<task id>/<study uid>    the reading view of a task
//   #/portal[/study/<study uid>]    the clinic portal (a study's report opened)
//   #/studies, #/study/<uid>[/series/<uid>]
//   #/admin[/dashboard|clinics|users|rules|audit]   the admin pages (administrators)
// UIDs and ids from the fragment are checked before they go into a request path.

import { type AdminSection, isAdminSection } from './admin';
import type { Me } from './api';
import { isUid } from './dicom';
import type { WorklistView } from './reading-api';

export type Route =
  | { page: 'home' }
  | { page: 'worklist'; view: Exclude<WorklistView, 'all'> }
  | { page: 'read'; task: number; study: string }
  | { page: 'portal'; study?: string }
  | { page: 'studies' }
  | { page: 'study'; study: string; series?: string }
  | { page: 'admin'; section: AdminSection };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  switch (parts[0]) {
    case 'worklist': {
      const v = parts[1];
      return { page: 'worklist', view: v === 'pool' || v === 'overdue' ? v : 'mine' };
    }
    case 'read':
      if (parts[1] && /^[0-9]{1,15}$/.test(parts[1]) && parts[2] && isUid(parts[2])) {
        return { page: 'read', task: Number(parts[1]), study: parts[2] };
      }
      return { page: 'home' };
    case 'portal':
      if (parts[1] === 'study' && parts[2] && isUid(parts[2])) return { page: 'portal', study: parts[2] };
      return { page: 'portal' };
    case 'studies':
      return { page: 'studies' };
    case 'admin':
      return { page: 'admin', section: isAdminSection(parts[1]) ? parts[1] : 'dashboard' };
    case 'study':
      if (parts[1] && isUid(parts[1])) {
        if (parts[2] === 'series' && parts[3] && isUid(parts[3])) return { page: 'study', study: parts[1], series: parts[3] };
        return { page: 'study', study: parts[1] };
      }
      return { page: 'home' };
    default:
      return { page: 'home' };
  }
}

/** Radiologists read; clinic users follow their studies; others list studies. */
export function landing(me: Me): Route {
  switch (me.role) {
    case 'radiologist':
      return { page: 'worklist', view: 'mine' };
    case 'township-doctor':
    case 'clinician':
      return { page: 'portal' };
    case 'admin':
      return { page: 'admin', section: 'dashboard' };
    default:
      return { page: 'studies' };
  }
}

/** The pages of the top bar for a role: [href, label, page]. */
export function navLinks(me: Me): [string, string, string][] {
  const links: [string, string, string][] = [];
  if (me.role === 'radiologist') links.push(['#/worklist/mine', 'Worklist', 'worklist']);
  if (me.role === 'township-doctor' || me.role === 'clinician') links.push(['#/portal', 'Portal', 'portal']);
  links.push(['#/studies', 'Studies', 'studies']);
  if (me.role === 'admin') links.push(['#/admin/dashboard', 'Admin', 'admin']);
  return links;
}
