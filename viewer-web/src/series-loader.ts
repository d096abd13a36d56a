// A whole series' frames in one request: WADO-RS Series Pixel Data
// (`…/series/{uid}/pixeldata`, PS3.18 10.4.1.1.5), received whole and handed to
// Cornerstone's loader frame by frame, so that every slice is in the cache without one HTTP
// request each. A browser spends a few milliseconds of CPU on every request (measured in
// headless Chromium on 2 cores: 500 single-frame requests 6 at a time 3.1 s, the same bytes
// in one response 0.5 s), which is what loading a 500-slice CT was made of.
//
// How the frames reach the loader: the WADO-RS loader asks the metadata providers for a
// `compressedFrameData` entry before going to the network (its "compressed frame
// registry"); the provider below answers with the bytes this module received, which the
// loader then decodes in its web worker as if it had fetched them. A slice the reader
// jumps to before the series arrived is fetched on its own by the loader, as before.
//
// The parts are cut by their `Content-Length` (which the archive sends with every part):
// no search of 500 × 512 KiB for the boundary in JavaScript.

import { cache, Enums, imageLoader, metaData } from '@cornerstonejs/core';

const ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
/** Frames handed to the loader and not decoded yet, at most (the rest wait their turn). */
const IN_FLIGHT = 8;
/** Longest part header read (the archive's are about 300 bytes). */
const MAX_HEAD = 8192;

interface Received {
  pixelData: Uint8Array;
  transferSyntaxUid: string;
}

/** Frames received and not yet taken by the loader, by image id. */
const received = new Map<string, Received>();
let providing = false;

function provide(): void {
  if (providing) return;
  providing = true;
  // Above the loader's own providers: an image id of ours is answered from here first.
  metaData.addProvider(
    (type: string, imageId: string) => (type === 'compressedFrameData' ? received.get(imageId) : undefined),
    100_000,
  );
}

/** The series URL the image ids share (`…/dicom-web/studies/S/series/SE`), if they do. */
function seriesUrlOf(imageIds: string[]): string | undefined {
  const m = /^wadors:(.+\/dicom-web\/studies\/[0-9.]+\/series\/[0-9.]+)\/instances\/[0-9.]+\/frames\/\d+$/.exec(imageIds[0] ?? '');
  if (!m) return undefined;
  const prefix = `wadors:${m[1]}/instances/`;
  return imageIds.every((id) => id.startsWith(prefix)) ? m[1] : undefined;
}

const latin1 = new TextDecoder('latin1');

/**
 * Loads every frame of the series of `imageIds` (not in the cache yet) with one request.
 * Resolves when each received frame is in Cornerstone's cache; rejects when the archive
 * does not offer the series' pixel data, or the answer cannot be read (the caller then lets
 * the loader fetch the frames one by one).
 */
export async function loadSeriesPixelData(imageIds: string[], signal: AbortSignal): Promise<void> {
  const series = seriesUrlOf(imageIds);
  if (!series) throw new Error('the images are not one series of this archive');
  const wanted = new Set(imageIds.filter((id) => !cache.isLoaded(id)));
  if (wanted.size === 0) return;
  provide();
  const res = await fetch(`${series}/pixeldata`, { headers: { Accept: ACCEPT }, credentials: 'same-origin' });
  if (!res.ok || !res.body) throw new Error(`series pixel data: HTTP ${res.status}`);
  const boundary = /boundary="?([^";]+)"?/.exec(res.headers.get('Content-Type') ?? '')?.[1];
  if (!boundary) throw new Error('series pixel data: no multipart boundary');
  // The whole answer first, then the frames to the loader. Streamed, with the loader
  // decoding while the rest arrives, Chromium now and then reported the request as
  // cancelled (net::ERR_ABORTED after the last byte had been read); whole, never. Holding a
  // series in memory once more for a moment is the price (the cache keeps it decoded).
  const body = new Uint8Array(await res.arrayBuffer());
  const pending = new Set<Promise<unknown>>();
  let at = 0;
  const expect = (text: string) => {
    if (latin1.decode(body.subarray(at, at + text.length)) !== text) {
      throw new Error('series pixel data: a part does not start with the boundary');
    }
    at += text.length;
  };
  try {
    const delimiter = `--${boundary}`;
    for (;;) {
      // `--boundary\r\n` before a part, `--boundary--` at the end.
      if (latin1.decode(body.subarray(at, at + delimiter.length + 2)) === `${delimiter}--`) break;
      expect(`${delimiter}\r\n`);
      const end = latin1.decode(body.subarray(at, at + MAX_HEAD)).indexOf('\r\n\r\n');
      if (end < 0) throw new Error('series pixel data: a part header is too long');
      const head = latin1.decode(body.subarray(at, at + end));
      at += end + 4;
      const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'im').exec(head)?.[1]?.trim();
      const length = Number(field('Content-Length'));
      const location = field('Content-Location');
      const syntax = /transfer-syntax=([0-9.]+)/.exec(field('Content-Type') ?? '')?.[1];
      if (!Number.isSafeInteger(length) || length < 0 || at + length > body.length || !location || !syntax) {
        throw new Error('series pixel data: a part without its length, location or transfer syntax');
      }
      // A buffer of its own: the decoder views pixel data as 16-bit (an even offset) and
      // posts the whole buffer to its worker.
      const pixelData = body.slice(at, at + length);
      at += length;
      expect('\r\n');
      const imageId = `wadors:${location.startsWith('/') ? window.location.origin : ''}${location}`;
      if (!wanted.has(imageId) || cache.isLoaded(imageId)) continue;
      if (signal.aborted) throw new Error('series pixel data: stopped');
      received.set(imageId, { pixelData, transferSyntaxUid: syntax });
      const loading = imageLoader
        .loadAndCacheImage(imageId, { priority: 0, requestType: Enums.RequestType.Prefetch })
        .catch(() => undefined)
        .finally(() => {
          received.delete(imageId);
          pending.delete(loading);
        });
      pending.add(loading);
      while (pending.size >= IN_FLIGHT) await Promise.race(pending);
    }
    await Promise.all(pending);
  } finally {
    for (const id of wanted) received.delete(id);
  }
}
