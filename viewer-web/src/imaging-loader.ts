// Loads the imaging chunk (src/imaging.ts) once, on first use; the pages without images
// never wait for it.

import { message } from './dom';

type Imaging = typeof import('./imaging');

let loaded: Imaging | undefined;
let loading: Promise<Imaging> | undefined;

/** The imaging chunk, loaded on the first call. */
export function imaging(): Promise<Imaging> {
  loading ??= import('./imaging').then(
    (m) => (loaded = m),
    (e: unknown) => {
      // A failed load (network, a new deployment's chunk names) is tried again next time.
      loading = undefined;
      throw new Error(`The image viewer could not be loaded: ${message(e)}. Reload the page to try again.`);
    },
  );
  return loading;
}

/** Loads the imaging chunk when the browser is idle, ahead of the first study opened. */
export function preloadImaging(): void {
  if (loaded || loading) return;
  const start = () => void imaging().catch(() => undefined);
  // Every browser the workstation supports has requestIdleCallback (Chromium, Firefox,
  // Safari 18); the timeout bounds the wait on a busy page.
  window.requestIdleCallback(start, { timeout: 2000 });
}

/** Closes the image viewer, if one was ever opened. */
export function destroyViewer(): void {
  loaded?.destroyViewer();
}
