// The stack viewer: one series in a Cornerstone3D StackViewport, its images loaded by the
// DICOM image loader over WADO-RS (`wadors:` image ids → `…/instances/{sop}/frames/{n}`),
// from the instance metadata of `…/series/{series}/metadata`. Mouse wheel and arrow keys
// scroll, a left drag changes the window (width/centre).

import {
  Enums,
  RenderingEngine,
  eventTarget,
  init as coreInit,
  type Types,
} from '@cornerstonejs/core';
import { init as dicomImageLoaderInit, wadors } from '@cornerstonejs/dicom-image-loader';
import {
  Enums as ToolEnums,
  StackScrollTool,
  ToolGroupManager,
  WindowLevelTool,
  addTool,
  init as toolsInit,
} from '@cornerstonejs/tools';

import { getDicomJson } from './api';
import { type DicomJson, Tag, num, nums, text } from './dicom';

const RENDERING_ENGINE_ID = 'pacs-rendering-engine';
const VIEWPORT_ID = 'pacs-stack';
const TOOL_GROUP_ID = 'pacs-stack-tools';

let initialised: Promise<void> | undefined;

/**
 * Cornerstone, its DICOM image loader (decode web workers, wasm codecs) and the tools, once.
 * Before any metadata is registered: the loader's init empties its metadata manager.
 */
function initialise(): Promise<void> {
  initialised ??= (async () => {
    coreInit();
    dicomImageLoaderInit({
      // The codecs run in module web workers served from /assets; a reading workstation
      // has cores to spare, a small clinic PC may not.
      maxWebWorkers: Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency || 2) / 2))),
    });
    toolsInit();
    addTool(StackScrollTool);
    addTool(WindowLevelTool);
  })();
  return initialised;
}

/** SOP classes whose instances carry no image to show in a stack. */
function isImage(instance: DicomJson): boolean {
  return (num(instance, Tag.Rows) ?? 0) > 0 && (num(instance, Tag.Columns) ?? 0) > 0;
}

/** Position along the slice normal, when the geometry is there (for sorting a volume). */
function slicePosition(instance: DicomJson): number | undefined {
  const ipp = nums(instance, Tag.ImagePositionPatient);
  const iop = nums(instance, Tag.ImageOrientationPatient);
  if (ipp.length !== 3 || iop.length !== 6 || [...ipp, ...iop].some((v) => !Number.isFinite(v))) return undefined;
  const normal = [
    iop[1] * iop[5] - iop[2] * iop[4],
    iop[2] * iop[3] - iop[0] * iop[5],
    iop[0] * iop[4] - iop[1] * iop[3],
  ];
  return ipp[0] * normal[0] + ipp[1] * normal[1] + ipp[2] * normal[2];
}

/**
 * The `wadors:` image ids of a series, in reading order, each registered with the loader's
 * WADO-RS metadata manager (which the loader's metadata provider answers from).
 */
export async function loadSeriesImageIds(study: string, series: string): Promise<string[]> {
  await initialise();
  const base = `/dicom-web/studies/${study}/series/${series}`;
  const instances = (await getDicomJson(`${base}/metadata`, 'the images of this series')).filter(isImage);
  instances.sort((a, b) => {
    const pa = slicePosition(a);
    const pb = slicePosition(b);
    if (pa !== undefined && pb !== undefined && pa !== pb) return pa - pb;
    return (num(a, Tag.InstanceNumber) ?? 0) - (num(b, Tag.InstanceNumber) ?? 0);
  });
  const imageIds: string[] = [];
  for (const instance of instances) {
    const sop = text(instance, Tag.SOPInstanceUID);
    if (!/^[0-9.]{1,64}$/.test(sop)) continue;
    const frames = Math.max(1, Math.floor(num(instance, Tag.NumberOfFrames) ?? 1));
    const first = `wadors:${location.origin}${base}/instances/${sop}/frames/1`;
    wadors.metaDataManager.add(first, instance as unknown as Parameters<typeof wadors.metaDataManager.add>[1]);
    imageIds.push(first);
    for (let f = 2; f <= frames; f++) {
      // The manager answers later frames from the first frame's metadata.
      imageIds.push(`wadors:${location.origin}${base}/instances/${sop}/frames/${f}`);
    }
  }
  return imageIds;
}

export interface StackState {
  index: number;
  count: number;
  windowWidth?: number;
  windowCenter?: number;
}

/** A StackViewport in `element`, with scrolling and window/level on it. */
export class StackViewer {
  private engine: RenderingEngine | undefined;
  private viewport: Types.IStackViewport | undefined;
  private readonly listeners: Array<() => void> = [];

  constructor(
    private readonly element: HTMLDivElement,
    private readonly onChange: (state: StackState) => void,
    private readonly onError: (message: string) => void,
  ) {}

  async show(imageIds: string[]): Promise<void> {
    await initialise();
    this.destroy();
    this.engine = new RenderingEngine(RENDERING_ENGINE_ID);
    this.engine.enableElement({
      viewportId: VIEWPORT_ID,
      type: Enums.ViewportType.STACK,
      element: this.element,
    });
    const viewport = this.engine.getViewport(VIEWPORT_ID) as Types.IStackViewport;
    this.viewport = viewport;

    const group = ToolGroupManager.createToolGroup(TOOL_GROUP_ID);
    if (!group) throw new Error('cannot create the viewer tools');
    group.addTool(StackScrollTool.toolName);
    group.addTool(WindowLevelTool.toolName);
    group.addViewport(VIEWPORT_ID, RENDERING_ENGINE_ID);
    group.setToolActive(WindowLevelTool.toolName, {
      bindings: [{ mouseButton: ToolEnums.MouseBindings.Primary }],
    });
    group.setToolActive(StackScrollTool.toolName, {
      bindings: [{ mouseButton: ToolEnums.MouseBindings.Wheel }],
    });

    const update = () => this.onChange(this.state());
    const failed = (evt: Event) => {
      const detail = (evt as CustomEvent<{ error?: unknown; imageId?: string }>).detail;
      this.onError(describeLoadError(detail?.error));
    };
    this.listen(this.element, Enums.Events.STACK_NEW_IMAGE, update);
    this.listen(this.element, Enums.Events.VOI_MODIFIED, update);
    this.listen(this.element, Enums.Events.IMAGE_RENDERED, update);
    this.listen(eventTarget, Enums.Events.IMAGE_LOAD_ERROR, failed);
    const keys = (evt: Event) => {
      const key = (evt as KeyboardEvent).key;
      const step = key === 'ArrowDown' || key === 'PageDown' ? 1 : key === 'ArrowUp' || key === 'PageUp' ? -1 : 0;
      if (step !== 0) {
        evt.preventDefault();
        this.scroll(step);
      }
    };
    this.listen(this.element, 'keydown', keys);
    // The canvas follows the element's size (window resized, side panels opened).
    const resized = new ResizeObserver(() => this.engine?.resize(true, true));
    resized.observe(this.element);
    this.listeners.push(() => resized.disconnect());

    try {
      await viewport.setStack(imageIds, 0);
    } catch (e) {
      throw new Error(describeLoadError(e));
    }
    viewport.render();
    update();
  }

  scroll(delta: number): void {
    const v = this.viewport;
    if (!v) return;
    const count = v.getImageIds().length;
    const next = Math.min(count - 1, Math.max(0, v.getCurrentImageIdIndex() + delta));
    if (next !== v.getCurrentImageIdIndex()) {
      v.setImageIdIndex(next).catch((e: unknown) => this.onError(describeLoadError(e)));
    }
  }

  /** Back to the window the images declare, unzoomed. */
  reset(): void {
    const v = this.viewport;
    if (!v) return;
    v.resetProperties();
    v.resetCamera();
    v.render();
    this.onChange(this.state());
  }

  state(): StackState {
    const v = this.viewport;
    if (!v) return { index: 0, count: 0 };
    const voi = v.getProperties().voiRange;
    const s: StackState = { index: v.getCurrentImageIdIndex(), count: v.getImageIds().length };
    if (voi && Number.isFinite(voi.lower) && Number.isFinite(voi.upper)) {
      s.windowWidth = voi.upper - voi.lower;
      s.windowCenter = (voi.upper + voi.lower) / 2;
    }
    return s;
  }

  destroy(): void {
    for (const off of this.listeners.splice(0)) off();
    if (ToolGroupManager.getToolGroup(TOOL_GROUP_ID)) ToolGroupManager.destroyToolGroup(TOOL_GROUP_ID);
    this.engine?.destroy();
    this.engine = undefined;
    this.viewport = undefined;
  }

  private listen(target: EventTarget, type: string, fn: (e: Event) => void): void {
    target.addEventListener(type, fn);
    this.listeners.push(() => target.removeEventListener(type, fn));
  }
}

/** What went wrong loading or decoding an image, in words. */
function describeLoadError(error: unknown): string {
  if (error && typeof error === 'object') {
    const e = error as { status?: number; message?: string; xhr?: XMLHttpRequest; request?: XMLHttpRequest };
    const status = e.status ?? e.xhr?.status ?? e.request?.status;
    if (status === 401) return 'Your session has ended: log in again to see the images.';
    if (status === 403 || status === 404) return 'The image is not available to you, or no longer exists.';
    if (status === 406) return 'The archive cannot send this image in a form the viewer decodes.';
    if (typeof status === 'number' && status >= 500) return `The archive failed to send an image (HTTP ${status}).`;
    if (typeof status === 'number' && status > 0) return `An image failed to load (HTTP ${status}).`;
    if (e.message) return `An image could not be shown: ${e.message}`;
  }
  if (typeof error === 'string' && error) return `An image could not be shown: ${error}`;
  return 'An image could not be loaded or decoded.';
}
