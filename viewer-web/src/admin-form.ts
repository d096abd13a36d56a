// Form pieces shared by the admin pages: labelled fields, checkboxes, selects, and running
// an action with its button disabled and its outcome said in words.

import { ApiError } from './api';
import { h, message, replace } from './dom';
import { notify } from './messages';
import { type PageContext, errorBox } from './page';

let nextId = 0;

/** A label above its control (the label's `for` names the control). */
export function field(label: string, control: HTMLInputElement | HTMLSelectElement): HTMLElement {
  if (!control.id) control.id = `f${++nextId}`;
  return h('div', { class: 'field' }, h('label', { attrs: { for: control.id } }, label), control);
}

export function input(name: string, attrs: Record<string, string> = {}, value = ''): HTMLInputElement {
  const e = h('input', { attrs: { name, autocomplete: 'off', ...attrs } });
  e.value = value;
  return e;
}

export function checkbox(name: string, label: string, checked: boolean): { box: HTMLElement; input: HTMLInputElement } {
  const i = h('input', { attrs: { type: 'checkbox', name } });
  i.checked = checked;
  return { box: h('label', { class: 'check' }, i, ` ${label}`), input: i };
}

export function select(name: string, options: [string, string][], value = ''): HTMLSelectElement {
  const s = h('select', { attrs: { name } });
  for (const [v, label] of options) s.appendChild(h('option', { attrs: { value: v } }, label));
  s.value = value;
  return s;
}

/** The trimmed value, or null when empty. */
export function valueOrNull(i: HTMLInputElement | HTMLSelectElement): string | null {
  const v = i.value.trim();
  return v === '' ? null : v;
}

/**
 * Runs `fn` with `button` disabled. Success: `done` is said as a notice. Failure: the
 * reason goes into `status` (in words); a 401 returns to the login form.
 */
export async function act(
  ctx: PageContext,
  button: HTMLButtonElement,
  status: HTMLElement,
  fn: () => Promise<void>,
  done: string,
): Promise<boolean> {
  button.disabled = true;
  replace(status);
  try {
    await fn();
    if (ctx.isCurrent()) notify(done, 'success');
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      ctx.sessionEnded();
    } else if (ctx.isCurrent()) {
      replace(status, errorBox(message(e)));
    }
    return false;
  } finally {
    button.disabled = false;
  }
}

/** A line for what an action says when it fails. */
export function statusLine(): HTMLElement {
  return h('div', { class: 'form-status', attrs: { 'aria-live': 'polite' } });
}

/** ✓ or —, for a yes/no cell. */
export function yesNo(v: boolean): HTMLElement {
  return h('span', { class: v ? 'yes' : 'no', attrs: { 'aria-label': v ? 'yes' : 'no' } }, v ? '✓' : '—');
}
