// Users and roles (`#/admin/users`): list, create (role, clinic, subspecialties,
// password), disable / enable (disabling ends their sessions), reset a password.

import { type Clinic, type NewUser, type User, clinics, createUser, resetPassword, setDisabled, users } from './admin-api';
import { act, field, input, select, statusLine } from './admin-form';
import { h, replace } from './dom';
import { dateTime } from './format';
import { type PageContext, errorBox, failed } from './page';

const ROLES: [string, string][] = [
  ['radiologist', 'radiologist'],
  ['township-doctor', 'township doctor'],
  ['clinician', 'clinician'],
  ['admin', 'administrator'],
  ['service', 'service account'],
];

const MIN_PASSWORD = 12;

function userRow(ctx: PageContext, u: User, me: string, reload: () => Promise<void>): HTMLTableRowElement {
  const toggle = h('button', { class: u.disabled ? 'enable' : 'disable', attrs: { type: 'button' } }, u.disabled ? 'Enable' : 'Disable');
  if (u.username === me && !u.disabled) {
    toggle.disabled = true;
    toggle.title = 'You cannot disable your own account.';
  }
  const reset = h('button', { class: 'reset', attrs: { type: 'button' } }, 'Reset password');
  const status = statusLine();
  const row = h(
    'tr',
    { data: { user: u.username, disabled: String(u.disabled) } },
    h('td', { class: 'mono' }, u.username),
    h('td', {}, ROLES.find(([r]) => r === u.role)?.[1] ?? u.role),
    h('td', {}, u.clinic_name ?? ''),
    h('td', {}, u.subspecialties.join(', ')),
    h('td', { class: 'state' }, h('span', { class: u.disabled ? 'badge state-disabled' : 'badge state-enabled' }, u.disabled ? 'disabled' : 'enabled')),
    h('td', { class: 'nowrap' }, dateTime(u.created_at)),
    h('td', { class: 'actions' }, toggle, ' ', reset, status),
  );
  toggle.addEventListener('click', () => {
    const disabling = !u.disabled;
    void act(
      ctx,
      toggle,
      status,
      () => setDisabled(u.username, disabling),
      disabling ? `${u.username} is disabled; their sessions ended.` : `${u.username} is enabled.`,
    ).then((ok) => (ok ? reload() : undefined));
  });
  reset.addEventListener('click', () => {
    const pw = input('password', { type: 'password', autocomplete: 'new-password' });
    const save = h('button', { class: 'primary', attrs: { type: 'submit' } }, 'Set password');
    const cancel = h('button', { attrs: { type: 'button' } }, 'Cancel');
    const st = statusLine();
    const form = h(
      'form',
      { class: 'inline-form' },
      h('strong', { class: 'mono' }, u.username),
      field(`New password (at least ${MIN_PASSWORD} characters)`, pw),
      save,
      cancel,
      st,
    );
    const editing = h('tr', { class: 'editing', data: { user: u.username } }, h('td', { attrs: { colspan: '7' } }, form));
    cancel.addEventListener('click', () => editing.replaceWith(row));
    form.addEventListener('submit', (evt) => {
      evt.preventDefault();
      if (pw.value.length < MIN_PASSWORD) {
        replace(st, errorBox(`The password must have at least ${MIN_PASSWORD} characters.`));
        return;
      }
      void act(ctx, save, st, () => resetPassword(u.username, pw.value), `New password set for ${u.username}; their sessions ended.`).then(
        (ok) => {
          pw.value = '';
          if (ok) editing.replaceWith(row);
        },
      );
    });
    row.replaceWith(editing);
    pw.focus();
  });
  return row;
}

function newUserForm(ctx: PageContext, all: Clinic[], reload: () => Promise<void>): HTMLElement {
  const username = input('username', { required: '', maxlength: '64', id: 'new-username' });
  const role = select('role', ROLES, 'radiologist');
  role.id = 'new-role';
  const clinic = select('clinic', [['', '(none)'], ...all.map((c): [string, string] => [c.name, c.name])]);
  clinic.id = 'new-user-clinic';
  const subs = input('subspecialties', { placeholder: 'neuro, chest', id: 'new-subspecialties' });
  const pw = input('password', { type: 'password', autocomplete: 'new-password', id: 'new-password' });
  const create = h('button', { class: 'primary', attrs: { type: 'submit' } }, 'Create user');
  const status = statusLine();
  const form = h(
    'form',
    { id: 'new-user', class: 'inline-form' },
    field('Username', username),
    field('Role', role),
    field('Clinic', clinic),
    field('Subspecialties', subs),
    field(`Password (${MIN_PASSWORD}+ characters)`, pw),
    create,
    status,
  );
  form.addEventListener('submit', (evt) => {
    evt.preventDefault();
    const u: NewUser = { username: username.value.trim(), role: role.value };
    if (clinic.value) u.clinic = clinic.value;
    const s = subs.value
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    if (s.length) u.subspecialties = s;
    if (pw.value) u.password = pw.value;
    if (!u.username) {
      replace(status, errorBox('Give the user a name.'));
      return;
    }
    if (!u.password && u.role !== 'service') {
      replace(status, errorBox(`Only a service account may have no password: give one of at least ${MIN_PASSWORD} characters.`));
      return;
    }
    void act(ctx, create, status, () => createUser(u), `User ${u.username} created.`).then(async (ok) => {
      pw.value = '';
      if (!ok) return;
      username.value = '';
      subs.value = '';
      await reload();
    });
  });
  return form;
}

export async function usersSection(ctx: PageContext, box: HTMLElement): Promise<void> {
  const formBox = h('div', {});
  const list = h('div', { id: 'users', class: 'status' }, 'Loading the users…');
  replace(box, formBox, list);
  const reload = async () => {
    let all: User[];
    try {
      all = await users();
    } catch (e) {
      failed(ctx, list, e);
      return;
    }
    if (!ctx.isCurrent()) return;
    list.className = '';
    const head = ['Username', 'Role', 'Clinic', 'Subspecialties', 'State', 'Created', ''].map((t) => h('th', {}, t));
    replace(
      list,
      h(
        'table',
        { id: 'users-table', class: 'compact', data: { count: String(all.length) } },
        h('thead', {}, h('tr', {}, ...head)),
        h('tbody', {}, ...all.map((u) => userRow(ctx, u, ctx.me.username, reload))),
      ),
    );
  };
  try {
    const all = await clinics();
    if (!ctx.isCurrent()) return;
    replace(formBox, newUserForm(ctx, all, reload));
  } catch (e) {
    failed(ctx, formBox, e);
  }
  await reload();
}
