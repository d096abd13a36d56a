// What every page gets from main.ts: where to draw, who is logged in, whether it is still
// the page shown, and how to clean up (timers, live subscriptions, key handlers) when the
// user leaves it.

import type { Me } from './api';
import { ApiError } from './api';
import { h, message, replace } from './dom';

export interface PageContext {
  app: HTMLElement;
  me: Me;
  /** False once the user went to another page (drop late answers). */
  isCurrent: () => boolean;
  /** A 401: back to the login form. */
  sessionEnded: () => void;
  /** Runs `fn` when the user leaves the page. */
  onLeave: (fn: () => void) => void;
}

/** An error box: what went wrong, in words. */
export function errorBox(text: string): HTMLElement {
  return h('p', { class: 'error', attrs: { role: 'alert' } }, text);
}

/** Shows what went wrong in `where`, or the login form when the session has ended. */
export function failed(ctx: PageContext, where: HTMLElement, e: unknown): void {
  if (!ctx.isCurrent()) return;
  if (e instanceof ApiError && e.status === 401) {
    ctx.sessionEnded();
    return;
  }
  replace(where, errorBox(message(e)));
}

/** True when keys typed go into a text field (shortcuts must not steal them). */
export function typingIn(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (target instanceof HTMLInputElement) {
    return !['checkbox', 'radio', 'button', 'submit'].includes(target.type);
  }
  return false;
}
