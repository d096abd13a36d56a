// Clinics and their AE titles (`#/admin/clinics`): list, create a clinic, register an AE
// title with its rules (host binding, port, TLS only, client certificate, report
// receiver), change or remove one.

import { type AeOptions, type AeRegistration, type Clinic, addAe, clinics, createClinic, removeAe, updateAe } from './admin-api';
import { act, checkbox, field, input, statusLine, yesNo } from './admin-form';
import { confirmDialog } from './dialogs';
import { h, replace } from './dom';
import { type PageContext, errorBox, failed } from './page';

/** The inputs of an AE title's options, and how to read them back (or why not). */
function aeFields(initial: Partial<AeRegistration> = {}) {
  const host = input('host', { placeholder: 'any host', inputmode: 'decimal', size: '15' }, initial.host ?? '');
  const port = input('port', { placeholder: 'none', inputmode: 'numeric', size: '6' }, initial.port ? String(initial.port) : '');
  const tls = checkbox('tls_only', 'TLS only', initial.tls_only ?? false);
  const cert = checkbox('require_client_cert', 'client certificate', initial.require_client_cert ?? false);
  const reports = checkbox('receives_reports', 'receives reports', initial.receives_reports ?? false);
  const read = (): AeOptions | string => {
    const p = port.value.trim();
    let portNumber: number | null = null;
    if (p !== '') {
      if (!/^[0-9]{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) return 'The port must be a number from 1 to 65535.';
      portNumber = Number(p);
    }
    const hostValue = host.value.trim() || null;
    if (reports.input.checked && (!hostValue || portNumber === null)) {
      return 'An AE title that receives reports needs a host and a port to send them to.';
    }
    return {
      host: hostValue,
      port: portNumber,
      tls_only: tls.input.checked || cert.input.checked,
      require_client_cert: cert.input.checked,
      receives_reports: reports.input.checked,
    };
  };
  return { host, port, tls, cert, reports, read };
}

function aeRow(ctx: PageContext, ae: AeRegistration, reload: () => Promise<void>): HTMLTableRowElement {
  const edit = h('button', { class: 'edit', attrs: { type: 'button' } }, 'Edit');
  const remove = h('button', { class: 'remove', attrs: { type: 'button' } }, 'Remove');
  const status = statusLine();
  const row = h(
    'tr',
    { data: { ae: ae.ae_title } },
    h('td', { class: 'mono' }, ae.ae_title),
    h('td', {}, ae.host ?? 'any'),
    h('td', {}, ae.port === null ? '—' : String(ae.port)),
    h('td', {}, yesNo(ae.tls_only)),
    h('td', {}, yesNo(ae.require_client_cert)),
    h('td', { class: 'receives' }, yesNo(ae.receives_reports)),
    h('td', { class: 'actions' }, edit, ' ', remove, status),
  );
  remove.addEventListener('click', () => {
    void confirmDialog('Remove this AE title?', `${ae.ae_title} of ${ae.clinic_name} will no longer be able to connect. What it sent stays in the archive.`, 'Remove').then(
      async (yes) => {
        if (!yes) return;
        if (await act(ctx, remove, status, () => removeAe(ae.ae_title), `AE title ${ae.ae_title} removed.`)) await reload();
      },
    );
  });
  edit.addEventListener('click', () => {
    const f = aeFields(ae);
    const save = h('button', { class: 'primary', attrs: { type: 'submit' } }, 'Save');
    const cancel = h('button', { attrs: { type: 'button' } }, 'Cancel');
    const st = statusLine();
    const form = h(
      'form',
      { class: 'inline-form ae-edit' },
      h('strong', { class: 'mono' }, ae.ae_title),
      field('Host (IP address)', f.host),
      field('Port', f.port),
      f.tls.box,
      f.cert.box,
      f.reports.box,
      save,
      cancel,
      st,
    );
    const editing = h('tr', { class: 'editing', data: { ae: ae.ae_title } }, h('td', { attrs: { colspan: '7' } }, form));
    cancel.addEventListener('click', () => editing.replaceWith(row));
    form.addEventListener('submit', (evt) => {
      evt.preventDefault();
      const options = f.read();
      if (typeof options === 'string') {
        replace(st, errorBox(options));
        return;
      }
      void act(ctx, save, st, () => updateAe(ae.ae_title, options), `AE title ${ae.ae_title} changed.`).then((ok) => (ok ? reload() : undefined));
    });
    row.replaceWith(editing);
    f.host.focus();
  });
  return row;
}

function clinicCard(ctx: PageContext, c: Clinic, reload: () => Promise<void>): HTMLElement {
  const head = ['AE title', 'Host', 'Port', 'TLS only', 'Client certificate', 'Receives reports', ''].map((t) => h('th', {}, t));
  const table =
    c.ae_titles.length > 0
      ? h(
          'table',
          { class: 'compact ae-table' },
          h('thead', {}, h('tr', {}, ...head)),
          h('tbody', {}, ...c.ae_titles.map((ae) => aeRow(ctx, ae, reload))),
        )
      : h('p', { class: 'status' }, 'No AE title yet: this clinic cannot send.');
  const aeTitle = input('ae_title', { placeholder: 'e.g. CT_CLINIC_A', maxlength: '16', size: '16', required: '' });
  const f = aeFields();
  const add = h('button', { attrs: { type: 'submit' } }, 'Add AE title');
  const status = statusLine();
  const form = h(
    'form',
    { class: 'inline-form add-ae' },
    field('New AE title', aeTitle),
    field('Host (IP address)', f.host),
    field('Port', f.port),
    f.tls.box,
    f.cert.box,
    f.reports.box,
    add,
    status,
  );
  form.addEventListener('submit', (evt) => {
    evt.preventDefault();
    const ae = aeTitle.value.trim();
    const options = f.read();
    if (typeof options === 'string') {
      replace(status, errorBox(options));
      return;
    }
    void act(ctx, add, status, () => addAe(c.name, ae, options), `AE title ${ae} registered for ${c.name}.`).then((ok) =>
      ok ? reload() : undefined,
    );
  });
  const receiver = c.ae_titles.find((a) => a.receives_reports);
  const more = h('details', { class: 'add-ae-box' }, h('summary', {}, 'Add an AE title'), form);
  if (c.ae_titles.length === 0) more.open = true;
  return h(
    'section',
    { class: 'clinic-card', data: { clinic: c.name } },
    h(
      'div',
      { class: 'clinic-head' },
      h('h2', {}, c.name),
      h('span', { class: 'hint' }, receiver ? `Reports go to ${receiver.ae_title} (${receiver.host}:${receiver.port})` : 'No report receiver'),
    ),
    table,
    more,
  );
}

export async function clinicsSection(ctx: PageContext, box: HTMLElement): Promise<void> {
  const name = input('name', { placeholder: 'Township Clinic …', maxlength: '200', required: '', id: 'new-clinic-name' });
  const create = h('button', { class: 'primary', attrs: { type: 'submit' } }, 'Create clinic');
  const status = statusLine();
  const form = h('form', { id: 'new-clinic', class: 'inline-form' }, field('New clinic', name), create, status);
  const list = h('div', { id: 'clinics', class: 'status' }, 'Loading the clinics…');
  replace(box, form, list);

  const reload = async () => {
    let all: Clinic[];
    try {
      all = await clinics();
    } catch (e) {
      failed(ctx, list, e);
      return;
    }
    if (!ctx.isCurrent()) return;
    list.className = '';
    list.dataset.count = String(all.length);
    if (all.length === 0) replace(list, h('p', { class: 'status' }, 'No clinic is registered yet.'));
    else replace(list, ...all.map((c) => clinicCard(ctx, c, reload)));
  };
  form.addEventListener('submit', (evt) => {
    evt.preventDefault();
    const n = name.value.trim();
    if (!n) return;
    void act(ctx, create, status, async () => void (await createClinic(n)), `Clinic “${n}” created.`).then(async (ok) => {
      if (!ok) return;
      name.value = '';
      await reload();
    });
  });
  await reload();
}
