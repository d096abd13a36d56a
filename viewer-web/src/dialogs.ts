// Modal dialogs on the native <dialog> element (focus kept inside, Escape closes): the
// confirmation before signing, and the keyboard help. Built from elements and text nodes.

import { h } from './dom';

/**
 * Asks `question` with `ok` / Cancel; resolves true only when the user confirms. The
 * confirming button has the focus, so Enter confirms and Escape cancels.
 */
export function confirmDialog(title: string, question: string, ok: string): Promise<boolean> {
  return new Promise((resolve) => {
    const yes = h('button', { id: 'confirm-ok', class: 'primary', attrs: { type: 'button' } }, ok);
    const no = h('button', { id: 'confirm-cancel', attrs: { type: 'button' } }, 'Cancel');
    const dialog = h(
      'dialog',
      { id: 'confirm-dialog', attrs: { 'aria-labelledby': 'confirm-title' } },
      h('h2', { id: 'confirm-title' }, title),
      h('p', {}, question),
      h('div', { class: 'actions' }, no, yes),
    );
    let answered = false;
    const done = (v: boolean) => {
      if (answered) return;
      answered = true;
      dialog.close();
      dialog.remove();
      resolve(v);
    };
    yes.addEventListener('click', () => done(true));
    no.addEventListener('click', () => done(false));
    dialog.addEventListener('close', () => done(false));
    document.body.appendChild(dialog);
    dialog.showModal();
    yes.focus();
  });
}

/** The keyboard help: a dialog listing `[keys, what]`, toggled by `?`. */
export function helpDialog(shortcuts: [string, string][]): { toggle(): void; close(): void; isOpen(): boolean } {
  let dialog: HTMLDialogElement | undefined;
  const close = () => {
    dialog?.close();
  };
  const open = () => {
    const closeButton = h('button', { attrs: { type: 'button' } }, 'Close');
    const rows = shortcuts.map(([keys, what]) =>
      h('tr', {}, h('td', {}, ...keys.split(' + ').flatMap((k, i) => [i > 0 ? ' + ' : '', h('kbd', {}, k)])), h('td', {}, what)),
    );
    const d = h(
      'dialog',
      { id: 'help', attrs: { 'aria-labelledby': 'help-title' } },
      h('h2', { id: 'help-title' }, 'Keyboard shortcuts'),
      h('table', {}, h('tbody', {}, ...rows)),
      h('div', { class: 'actions' }, closeButton),
    );
    closeButton.addEventListener('click', () => d.close());
    d.addEventListener('close', () => {
      d.remove();
      if (dialog === d) dialog = undefined;
    });
    document.body.appendChild(d);
    d.showModal();
    closeButton.focus();
    dialog = d;
  };
  return {
    toggle: () => (dialog ? close() : open()),
    close,
    isOpen: () => dialog !== undefined,
  };
}
