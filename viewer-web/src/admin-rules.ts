// The worklist's routing rules (`#/admin/rules`), in the order they are tried: list,
// create, edit, enable / disable, delete.

import { type Clinic, type RoutingRule, clinics, createRule, deleteRule, routingRules, updateRule } from './admin-api';
import { act, checkbox, field, input, select, statusLine, valueOrNull } from './admin-form';
import { confirmDialog } from './dialogs';
import { h, replace } from './dom';
import { priorityText } from './format';
import { type PageContext, errorBox, failed } from './page';

const PRIORITIES: [string, string][] = [
  ['stat', 'STAT'],
  ['urgent', 'urgent'],
  ['routine', 'routine'],
];

/** The editable fields of a rule, and how to read them back (or why not). */
function ruleForm(all: Clinic[], r: Partial<RoutingRule>, submitLabel: string) {
  const position = input('position', { type: 'number', min: '0', step: '1', required: '', size: '5' }, r.position === undefined ? '' : String(r.position));
  const name = input('name', { required: '', maxlength: '64' }, r.name ?? '');
  const modality = input('modality', { placeholder: 'any', size: '4', maxlength: '16' }, r.modality ?? '');
  const bodyPart = input('body_part', { placeholder: 'any', size: '8', maxlength: '64' }, r.body_part ?? '');
  const words = input('description_contains', { placeholder: 'any', maxlength: '200' }, r.description_contains ?? '');
  const clinic = select('clinic', [['', 'any clinic'], ...all.map((c): [string, string] => [c.name, c.name])], r.clinic ?? '');
  const priority = select('priority', [['', 'any priority'], ...PRIORITIES], r.priority ?? '');
  const sub = input('subspecialty', { placeholder: 'any radiologist', size: '10', maxlength: '64' }, r.subspecialty ?? '');
  const setPriority = select('set_priority', [['', 'the study’s own'], ...PRIORITIES], r.set_priority ?? '');
  const enabled = checkbox('enabled', 'enabled', r.enabled ?? true);
  const save = h('button', { class: 'primary', attrs: { type: 'submit' } }, submitLabel);
  const status = statusLine();
  const form = h(
    'form',
    { class: 'inline-form rule-form' },
    field('Position', position),
    field('Name', name),
    field('Modality', modality),
    field('Body part', bodyPart),
    field('Description contains', words),
    field('Clinic', clinic),
    field('Priority', priority),
    field('Subspecialty', sub),
    field('Sets priority', setPriority),
    enabled.box,
    save,
  );
  const read = (): RoutingRule | string => {
    const pos = position.value.trim();
    if (!/^[0-9]{1,9}$/.test(pos)) return 'The position must be a whole number (rules are tried from the lowest).';
    if (!name.value.trim()) return 'Give the rule a name.';
    return {
      id: r.id ?? 0,
      position: Number(pos),
      name: name.value.trim(),
      modality: valueOrNull(modality)?.toUpperCase() ?? null,
      body_part: valueOrNull(bodyPart)?.toUpperCase() ?? null,
      description_contains: valueOrNull(words),
      clinic: valueOrNull(clinic),
      priority: valueOrNull(priority),
      subspecialty: valueOrNull(sub),
      set_priority: valueOrNull(setPriority),
      enabled: enabled.input.checked,
    };
  };
  return { form, save, status, read, first: position };
}

function conditions(r: RoutingRule): string {
  const parts = [
    r.modality && `modality ${r.modality}`,
    r.body_part && `body part ${r.body_part}`,
    r.description_contains && `description has “${r.description_contains}”`,
    r.clinic && `from ${r.clinic}`,
    r.priority && `priority ${priorityText(r.priority)}`,
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'any study';
}

function ruleRow(ctx: PageContext, all: Clinic[], r: RoutingRule, reload: () => Promise<void>): HTMLTableRowElement {
  const edit = h('button', { class: 'edit', attrs: { type: 'button' } }, 'Edit');
  const toggle = h('button', { class: 'toggle', attrs: { type: 'button' } }, r.enabled ? 'Disable' : 'Enable');
  const del = h('button', { class: 'delete', attrs: { type: 'button' } }, 'Delete');
  const status = statusLine();
  const row = h(
    'tr',
    { class: r.enabled ? '' : 'off', data: { rule: String(r.id), name: r.name, enabled: String(r.enabled) } },
    h('td', { class: 'num' }, String(r.position)),
    h('td', { class: 'mono' }, r.name),
    h('td', {}, conditions(r)),
    h('td', {}, r.subspecialty ?? 'any radiologist'),
    h('td', { class: 'set-priority' }, r.set_priority ? priorityText(r.set_priority) : '—'),
    h('td', {}, h('span', { class: r.enabled ? 'badge state-enabled' : 'badge state-disabled' }, r.enabled ? 'enabled' : 'disabled')),
    h('td', { class: 'actions' }, edit, ' ', toggle, ' ', del, status),
  );
  toggle.addEventListener('click', () => {
    void act(ctx, toggle, status, () => updateRule({ ...r, enabled: !r.enabled }), `Rule ${r.name} ${r.enabled ? 'disabled' : 'enabled'}.`).then((ok) =>
      ok ? reload() : undefined,
    );
  });
  del.addEventListener('click', () => {
    void confirmDialog('Delete this rule?', `The rule ${r.name} will no longer route studies. Tasks it routed stay where they are.`, 'Delete').then(async (yes) => {
      if (yes && (await act(ctx, del, status, () => deleteRule(r), `Rule ${r.name} deleted.`))) await reload();
    });
  });
  edit.addEventListener('click', () => {
    const f = ruleForm(all, r, 'Save');
    const cancel = h('button', { attrs: { type: 'button' } }, 'Cancel');
    f.form.append(cancel, f.status);
    const editing = h('tr', { class: 'editing', data: { rule: String(r.id) } }, h('td', { attrs: { colspan: '7' } }, f.form));
    cancel.addEventListener('click', () => editing.replaceWith(row));
    f.form.addEventListener('submit', (evt) => {
      evt.preventDefault();
      const rule = f.read();
      if (typeof rule === 'string') {
        replace(f.status, errorBox(rule));
        return;
      }
      void act(ctx, f.save, f.status, () => updateRule(rule), `Rule ${rule.name} saved.`).then((ok) => (ok ? reload() : undefined));
    });
    row.replaceWith(editing);
    f.first.focus();
  });
  return row;
}

export async function rulesSection(ctx: PageContext, box: HTMLElement): Promise<void> {
  const list = h('div', { id: 'rules', class: 'status' }, 'Loading the routing rules…');
  const create = h('div', { id: 'new-rule' });
  replace(
    box,
    h('p', { class: 'hint' }, 'Rules are tried from the lowest position; the first whose conditions all hold decides who may read the study. A rule whose radiologists are all unavailable gives way to the next.'),
    list,
    h('h2', {}, 'New rule'),
    create,
  );
  let all: Clinic[] = [];
  try {
    all = await clinics();
  } catch (e) {
    failed(ctx, list, e);
    return;
  }
  const reload = async () => {
    let rules: RoutingRule[];
    try {
      rules = await routingRules();
    } catch (e) {
      failed(ctx, list, e);
      return;
    }
    if (!ctx.isCurrent()) return;
    list.className = '';
    const head = ['Position', 'Name', 'Conditions', 'Who reads', 'Sets priority', 'State', ''].map((t) => h('th', {}, t));
    replace(
      list,
      h(
        'table',
        { id: 'rules-table', class: 'compact', data: { count: String(rules.length) } },
        h('thead', {}, h('tr', {}, ...head)),
        h('tbody', {}, ...rules.map((r) => ruleRow(ctx, all, r, reload))),
      ),
    );
  };
  const f = ruleForm(all, {}, 'Create rule');
  f.form.append(f.status);
  f.form.addEventListener('submit', (evt) => {
    evt.preventDefault();
    const rule = f.read();
    if (typeof rule === 'string') {
      replace(f.status, errorBox(rule));
      return;
    }
    void act(ctx, f.save, f.status, () => createRule(rule), `Rule ${rule.name} created.`).then((ok) => (ok ? reload() : undefined));
  });
  replace(create, f.form);
  await reload();
}
