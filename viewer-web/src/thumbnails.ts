// Series thumbnails: WADO-RS `…/series/{series}/thumbnail` (a JPEG the archive renders),
// fetched with the session cookie and shown through `blob:` URLs — the page's CSP allows
// images from `'self'` and `blob:` only, and an <img src> of the API would work too, but a
// fetch lets a failure be said in words and the URLs be released when the page is left.

import { ApiError } from './api';

export class Thumbnails {
  private readonly urls: string[] = [];
  private closed = false;

  /** A `blob:` URL of the series' thumbnail (at most `size` pixels a side). */
  async series(study: string, series: string, size = 128): Promise<string> {
    const path = `/dicom-web/studies/${study}/series/${series}/thumbnail?viewport=${size},${size}`;
    let res: Response;
    try {
      res = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'image/jpeg' } });
    } catch {
      throw new ApiError(0, 'The archive cannot be reached for the thumbnail.');
    }
    if (!res.ok) {
      const why =
        res.status === 401
          ? 'your session has ended'
          : res.status === 404
            ? 'the series has no image to show'
            : res.status === 406 || res.status === 422
              ? 'the archive cannot render this series'
              : `HTTP ${res.status}`;
      throw new ApiError(res.status, `No thumbnail: ${why}.`);
    }
    const blob = await res.blob();
    if (this.closed) throw new ApiError(0, 'The page was left.');
    const url = URL.createObjectURL(blob);
    this.urls.push(url);
    return url;
  }

  /** Releases every URL made (the page is left). */
  release(): void {
    this.closed = true;
    for (const u of this.urls.splice(0)) URL.revokeObjectURL(u);
  }
}
