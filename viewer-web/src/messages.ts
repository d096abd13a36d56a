// The message area under the top bar: notifications (live events, "draft saved") and
// errors, in words, for the user to see — not only in the console. Errors stay until
// dismissed; notices go after a while.

import { h } from './dom';

let area: HTMLElement | undefined;

function messages(): HTMLElement {
  if (area && document.body.contains(area)) return area;
  const found = document.getElementById('messages');
  if (found) {
    area = found;
    return found;
  }
  area = h('div', { id: 'messages', attrs: { 'aria-live': 'polite' } });
  document.body.insertBefore(area, document.getElementById('app'));
  return area;
}

export type Kind = 'info' | 'success' | 'error' | 'critical';

/** Shows `text`; notices disappear after `ms` (errors and critical ones stay). */
export function notify(text: string, kind: Kind = 'info', ms = 8000): void {
  const close = h('button', { class: 'close', attrs: { type: 'button', 'aria-label': 'Dismiss' } }, '×');
  const note = h(
    'div',
    { class: `note note-${kind}`, attrs: { role: kind === 'error' || kind === 'critical' ? 'alert' : 'status' } },
    h('span', {}, text),
    close,
  );
  close.addEventListener('click', () => note.remove());
  const box = messages();
  box.appendChild(note);
  // At most five at a time: the oldest goes first.
  while (box.children.length > 5) box.firstElementChild?.remove();
  if (kind === 'info' || kind === 'success') window.setTimeout(() => note.remove(), ms);
}

/** Removes every message (on logout). */
export function clearMessages(): void {
  const box = messages();
  while (box.firstChild) box.removeChild(box.firstChild);
}

/** Removes the notices (not the errors) of the page being left. */
export function clearNotices(): void {
  for (const n of Array.from(messages().querySelectorAll('.note-info, .note-success'))) n.remove();
}
