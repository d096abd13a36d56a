// The stack viewer: one series in a Cornerstone3D StackViewport, its images loaded by the
// DICOM image loader over WADO-RS (`wadors:` image ids → `…/instances/{sop}/frames/{n}`),
// from the instance metadata of `…/series/{series}/metadata`. Each viewer has its own
// rendering engine and tool group (a layout shows up to four): mouse wheel and arrow keys
// scroll, the left button runs the tool chosen (window/level by default, zoom, pan,
// length, angle, rectangle and ellipse ROI), the right button zooms, the middle one pans.

import {
  Enums,
  RenderingEngine,
  cache,
  eventTarget,
  getEnabledElement,
  imageLoadPoolManager,
  init as coreInit,
  type Types,
} from '@cornerstonejs/core';
import { init as dicomImageLoaderInit, wadors } from '@cornerstonejs/dicom-image-loader';
import {
  AngleTool,
  EllipticalROITool,
  Enums as ToolEnums,
  LengthTool,
  PanTool,
  RectangleROITool,
  StackScrollTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
  init as toolsInit,
  utilities as toolUtilities,
} from '@cornerstonejs/tools';

import { getDicomJson } from './api';
import { loadSeriesPixelData } from './series-loader';
import { installSvgStyleShim } from './csp-shim';
import { type DicomJson, Tag, num, nums, text } from './dicom';

/** The tools the left mouse button can run (Cornerstone tool names). */
export const LEFT_TOOLS = {
  window: WindowLevelTool.toolName,
  zoom: ZoomTool.toolName,
  pan: PanTool.toolName,
  length: LengthTool.toolName,
  angle: AngleTool.toolName,
  rectangle: RectangleROITool.toolName,
  ellipse: EllipticalROITool.toolName,
} as const;
export type LeftTool = keyof typeof LEFT_TOOLS;
/** The measurement tools (their annotations are the measurements). */
export const MEASUREMENT_TOOLS: string[] = [
  LengthTool.toolName,
  AngleTool.toolName,
  RectangleROITool.toolName,
  EllipticalROITool.toolName,
];

let viewers = 0;
/** How often the loading progress of a series is shown, at most (ms). */
const PROGRESS_MS = 250;
/** Frame requests the stack prefetch keeps in flight. */
const PREFETCH_REQUESTS = 4;
/**
 * One rendering engine for every viewport of the page's life: an engine holds a pool of
 * WebGL contexts, and a browser allows only a few (engines made per viewport ran out).
 */
let engine: RenderingEngine | undefined;

/** The viewers shown, to restore their rotation and flips after a resize refits them. */
const live = new Set<StackViewer>();

function sharedEngine(): RenderingEngine {
  engine ??= new RenderingEngine('pacs-rendering-engine');
  return engine;
}

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
      beforeSend: frameRequestHeaders,
    });
    toolsInit();
    // The stack prefetch (below) keeps this many frame requests in flight: the browser
    // opens six connections to a host, and a slice the reader scrolls to before it came
    // (an interaction request) must not queue behind the whole series.
    imageLoadPoolManager.setMaxSimultaneousRequests(Enums.RequestType.Prefetch, PREFETCH_REQUESTS);
    installSvgStyleShim();
    for (const tool of [StackScrollTool, WindowLevelTool, ZoomTool, PanTool, LengthTool, AngleTool, RectangleROITool, EllipticalROITool]) {
      addTool(tool);
    }
  })();
  return initialised;
}

/**
 * The `Accept` of a frame request: one frame as a single-part body, in the stored syntax
 * (`application/octet-stream` for native pixels, the bitstream's own type — `image/jls`,
 * `image/jp2`… — for compressed ones), the multipart answer only as a fallback. The
 * loader's default asks for multipart, whose parser then searches every frame's bytes for
 * the closing boundary in JavaScript: measured on the 500-slice CT, 1.2 s of the main
 * thread while the series loaded.
 */
export const FRAME_ACCEPT =
  'application/octet-stream; transfer-syntax=*, multipart/related; type="application/octet-stream"; transfer-syntax=*';

function frameRequestHeaders(_xhr: XMLHttpRequest, _imageId: string, headers: Record<string, string>): Record<string, string> {
  return headers.Accept?.startsWith('multipart/related') ? { Accept: FRAME_ACCEPT } : {};
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

/** The images of a series in reading order, with what scrolling in sync needs. */
export interface SeriesImages {
  imageIds: string[];
  /** Position of each image along the slice normal (mm), when the geometry is there. */
  positions: (number | undefined)[];
  /** The slice normal of the series (from its first image), when known. */
  normal?: [number, number, number];
  frameOfReference: string;
  /** Frames per second the images declare (multi-frame: Frame Time, Cine Rate). */
  framesPerSecond?: number;
  modality: string;
}

function normalOf(instance: DicomJson): [number, number, number] | undefined {
  const iop = nums(instance, Tag.ImageOrientationPatient);
  if (iop.length !== 6 || iop.some((v) => !Number.isFinite(v))) return undefined;
  return [iop[1] * iop[5] - iop[2] * iop[4], iop[2] * iop[3] - iop[0] * iop[5], iop[0] * iop[4] - iop[1] * iop[3]];
}

function declaredFps(instance: DicomJson): number | undefined {
  const rate = num(instance, Tag.RecommendedDisplayFrameRate) ?? num(instance, Tag.CineRate);
  if (rate && rate > 0 && rate <= 120) return rate;
  const frameTime = num(instance, Tag.FrameTime);
  if (frameTime && frameTime > 0) return Math.min(120, Math.max(1, 1000 / frameTime));
  return undefined;
}

/**
 * The `wadors:` image ids of a series, in reading order, each registered with the loader's
 * WADO-RS metadata manager (which the loader's metadata provider answers from).
 */
export async function loadSeries(study: string, series: string): Promise<SeriesImages> {
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
  const positions: (number | undefined)[] = [];
  for (const instance of instances) {
    const sop = text(instance, Tag.SOPInstanceUID);
    if (!/^[0-9.]{1,64}$/.test(sop)) continue;
    const frames = Math.max(1, Math.floor(num(instance, Tag.NumberOfFrames) ?? 1));
    const first = `wadors:${location.origin}${base}/instances/${sop}/frames/1`;
    wadors.metaDataManager.add(first, instance as unknown as Parameters<typeof wadors.metaDataManager.add>[1]);
    const position = frames === 1 ? slicePosition(instance) : undefined;
    imageIds.push(first);
    positions.push(position);
    for (let f = 2; f <= frames; f++) {
      // The manager answers later frames from the first frame's metadata.
      imageIds.push(`wadors:${location.origin}${base}/instances/${sop}/frames/${f}`);
      positions.push(undefined);
    }
  }
  const head = instances[0];
  const result: SeriesImages = {
    imageIds,
    positions,
    frameOfReference: head ? text(head, Tag.FrameOfReferenceUID) : '',
    modality: head ? text(head, Tag.Modality) : '',
  };
  const normal = head && normalOf(head);
  if (normal) result.normal = normal;
  const fps = head && declaredFps(head);
  if (fps) result.framesPerSecond = fps;
  return result;
}

/** The image ids only (the study page's stack). */
export async function loadSeriesImageIds(study: string, series: string): Promise<string[]> {
  return (await loadSeries(study, series)).imageIds;
}

/** What an image id points at: series, SOP instance and frame (1-based). */
export function imageRef(imageId: string): { series: string; sop: string; frame: number } | undefined {
  const m = /\/series\/([0-9.]+)\/instances\/([0-9.]+)\/frames\/([0-9]+)$/.exec(imageId);
  if (!m) return undefined;
  return { series: m[1], sop: m[2], frame: Number(m[3]) };
}

export interface StackState {
  index: number;
  count: number;
  windowWidth?: number;
  windowCenter?: number;
  invert?: boolean;
  zoom?: number;
  rotation?: number;
  flipHorizontal?: boolean;
  flipVertical?: boolean;
  /** Images of the stack loaded (decoded, in Cornerstone's cache): scrolling to them is instant. */
  loaded?: number;
}

/** A StackViewport in `element` (on the shared rendering engine), with its own tool group. */
export class StackViewer {
  private engine: RenderingEngine | undefined;
  private viewport: Types.IStackViewport | undefined;
  private readonly listeners: Array<() => void> = [];
  private readonly n = ++viewers;
  private readonly viewportId = `pacs-stack-${this.n}`;
  private readonly toolGroupId = `pacs-tools-${this.n}`;
  /** The rotation (degrees) and flips the user chose. */
  private turned = 0;
  private flippedH = false;
  private flippedV = false;
  /** The stack's images in the cache (see `StackState.loaded`). */
  private loaded = new Set<string>();
  /** The first image of the stack being shown, until it is drawn (or failed). */
  private settling: Promise<unknown> | undefined;
  /** Set by `retire`: nothing more is shown. */
  private retired = false;

  constructor(
    private readonly element: HTMLDivElement,
    private readonly onChange: (state: StackState) => void,
    private readonly onError: (message: string) => void,
    private leftTool: LeftTool = 'window',
  ) {}

  async show(imageIds: string[], initialIndex = 0): Promise<void> {
    await initialise();
    // Retired while the libraries started: the viewport's element is the next viewer's.
    if (this.retired) return;
    // One stack per viewer (the panel makes a new viewer for each series, see `retire`).
    this.destroy();
    this.engine = sharedEngine();
    this.engine.enableElement({
      viewportId: this.viewportId,
      type: Enums.ViewportType.STACK,
      element: this.element,
    });
    const viewport = this.engine.getViewport(this.viewportId) as Types.IStackViewport;
    this.viewport = viewport;

    const group = ToolGroupManager.createToolGroup(this.toolGroupId);
    if (!group) throw new Error('cannot create the viewer tools');
    for (const name of [StackScrollTool.toolName, ...Object.values(LEFT_TOOLS)]) group.addTool(name);
    group.addViewport(this.viewportId, this.engine.id);
    this.bindTools();

    const update = () => this.onChange(this.state());
    const failed = (evt: Event) => {
      const detail = (evt as CustomEvent<{ error?: unknown; imageId?: string }>).detail;
      if (detail?.imageId && !this.viewport?.getImageIds().includes(detail.imageId)) return;
      this.onError(describeLoadError(detail?.error));
    };
    this.listen(this.element, Enums.Events.STACK_NEW_IMAGE, update);
    this.listen(this.element, Enums.Events.VOI_MODIFIED, update);
    this.listen(this.element, Enums.Events.IMAGE_RENDERED, update);
    this.listen(this.element, Enums.Events.CAMERA_MODIFIED, update);
    this.listen(eventTarget, Enums.Events.IMAGE_LOAD_ERROR, failed);
    // How much of the stack is loaded: those already cached (another viewer, an earlier
    // look) and each one the loader brings.
    const stack = new Set(imageIds);
    this.loaded = new Set(imageIds.filter((id) => cache.isLoaded(id)));
    // The progress is shown at most every PROGRESS_MS while the series loads (and at once
    // when it is complete): every change of the page is a new frame for the compositor,
    // and one per slice cost more than loading the slices on a machine without a GPU.
    let progress: ReturnType<typeof setTimeout> | undefined;
    this.listeners.push(() => clearTimeout(progress));
    this.listen(eventTarget, Enums.Events.IMAGE_LOADED, (evt: Event) => {
      const id = (evt as CustomEvent<{ image?: { imageId?: string } }>).detail?.image?.imageId;
      if (!id || !stack.has(id) || this.loaded.has(id)) return;
      this.loaded.add(id);
      if (this.loaded.size === stack.size) {
        clearTimeout(progress);
        progress = undefined;
        update();
      } else {
        progress ??= setTimeout(() => {
          progress = undefined;
          update();
        }, PROGRESS_MS);
      }
    });
    const keys = (evt: Event) => {
      const key = (evt as KeyboardEvent).key;
      const step = key === 'ArrowDown' || key === 'PageDown' ? 1 : key === 'ArrowUp' || key === 'PageUp' ? -1 : 0;
      if (step !== 0) {
        evt.preventDefault();
        this.scroll(step);
      }
    };
    this.listen(this.element, 'keydown', keys);
    // The right button zooms: no context menu over the image.
    this.listen(this.element, 'contextmenu', (evt) => evt.preventDefault());
    // The canvas follows the element's size (window resized, layout changed), and the
    // image is fitted to it again: kept as it was, a narrower viewport would crop it. The
    // engine resizes every viewport whose element changed (resetting rotation and flips,
    // which each viewer then puts back).
    const resized = new ResizeObserver(() => {
      if (!this.engine) return;
      this.engine.resize(true, false);
      for (const v of live) v.restorePresentation();
    });
    resized.observe(this.element);
    this.listeners.push(() => resized.disconnect());

    try {
      this.settling = viewport.setStack(imageIds, Math.min(Math.max(0, initialIndex), imageIds.length - 1));
      await this.settling;
    } catch (e) {
      if (this.viewport !== viewport) return;
      throw new Error(describeLoadError(e));
    }
    // Another series was asked for meanwhile: this viewport is gone from the engine.
    if (this.viewport !== viewport) return;
    viewport.render();
    live.add(this);
    update();
    // The rest of the series loads in the background, so that the whole stack scrolls
    // without waiting: in one request (the series' pixel data), or, where that is not
    // offered, frame by frame by the stack prefetch (nearest slices first, and again around
    // each slice scrolled to).
    if (imageIds.length > 1) this.prefetch(imageIds);
  }

  private prefetch(imageIds: string[]): void {
    const element = this.element;
    const stop = new AbortController();
    this.listeners.push(() => stop.abort());
    loadSeriesPixelData(imageIds, stop.signal).catch(() => {
      if (!stop.signal.aborted && getEnabledElement(element)) toolUtilities.stackPrefetch.enable(element);
    });
  }


  /** Puts back the rotation and flips chosen (a refit after a resize resets them). */
  restorePresentation(): void {
    const v = this.viewport;
    if (!v) return;
    const p = v.getViewPresentation();
    if ((p.rotation ?? 0) === this.turned && !!p.flipHorizontal === this.flippedH && !!p.flipVertical === this.flippedV) return;
    v.setViewPresentation({ rotation: this.turned, flipHorizontal: this.flippedH, flipVertical: this.flippedV });
    v.render();
  }

  /** The left button's tool (right zooms, middle pans, the wheel scrolls, always). */
  setLeftTool(tool: LeftTool): void {
    this.leftTool = tool;
    this.bindTools();
  }

  private bindTools(): void {
    const group = ToolGroupManager.getToolGroup(this.toolGroupId);
    if (!group) return;
    const { Primary, Secondary, Auxiliary, Wheel } = ToolEnums.MouseBindings;
    const left = LEFT_TOOLS[this.leftTool];
    for (const name of Object.values(LEFT_TOOLS)) {
      // Measurements stay visible and editable when another tool is chosen.
      if (name !== left) group.setToolPassive(name, { removeAllBindings: true });
    }
    const bindings: Record<string, { mouseButton: number }[]> = {
      [ZoomTool.toolName]: [{ mouseButton: Secondary }],
      [PanTool.toolName]: [{ mouseButton: Auxiliary }],
    };
    (bindings[left] ??= []).push({ mouseButton: Primary });
    for (const [name, b] of Object.entries(bindings)) group.setToolActive(name, { bindings: b });
    group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: Wheel }] });
  }

  scroll(delta: number, wrap = false): Promise<void> {
    const v = this.viewport;
    if (!v) return Promise.resolve();
    const count = v.getImageIds().length;
    let next = v.getCurrentImageIdIndex() + delta;
    if (wrap) next = ((next % count) + count) % count;
    return this.jumpTo(Math.min(count - 1, Math.max(0, next)));
  }

  /** Shows image `index` (0-based). */
  jumpTo(index: number): Promise<void> {
    const v = this.viewport;
    if (!v || index === v.getCurrentImageIdIndex() || index < 0 || index >= v.getImageIds().length) {
      return Promise.resolve();
    }
    return v.setImageIdIndex(index).then(
      () => undefined,
      (e: unknown) => this.onError(describeLoadError(e)),
    );
  }

  /** Draws again (annotations changed). */
  render(): void {
    this.viewport?.render();
  }

  imageIds(): string[] {
    return this.viewport?.getImageIds() ?? [];
  }

  currentImageId(): string | undefined {
    return this.viewport?.getCurrentImageId();
  }

  /** A window (width and centre, in the images' units: HU for CT). */
  setWindow(width: number, center: number): void {
    const v = this.viewport;
    if (!v) return;
    v.setProperties({ voiRange: { lower: center - width / 2, upper: center + width / 2 } });
    v.render();
    this.onChange(this.state());
  }

  /** Black on white and back. */
  toggleInvert(): void {
    const v = this.viewport;
    if (!v) return;
    v.setProperties({ invert: !v.getProperties().invert });
    v.render();
    this.onChange(this.state());
  }

  /** Zooms in (factor > 1) or out, about the centre. */
  zoomBy(factor: number): void {
    const v = this.viewport;
    if (!v) return;
    v.setZoom(Math.min(20, Math.max(0.1, v.getZoom() * factor)));
    v.render();
    this.onChange(this.state());
  }

  /** Turns the image by 90° clockwise (or counter-clockwise). */
  rotate90(clockwise = true): void {
    const v = this.viewport;
    if (!v) return;
    const now = v.getViewPresentation().rotation ?? 0;
    v.setViewPresentation({ rotation: (((now + (clockwise ? 90 : -90)) % 360) + 360) % 360 });
    this.remember();
    v.render();
    this.onChange(this.state());
  }

  /** Mirrors the image left-right (or top-bottom). */
  flip(horizontal: boolean): void {
    const v = this.viewport;
    if (!v) return;
    const p = v.getViewPresentation();
    v.setViewPresentation(horizontal ? { flipHorizontal: !p.flipHorizontal } : { flipVertical: !p.flipVertical });
    this.remember();
    v.render();
    this.onChange(this.state());
  }

  /** Back to the window the images declare, unzoomed, unturned, unmirrored. */
  reset(): void {
    const v = this.viewport;
    if (!v) return;
    v.resetProperties();
    v.setViewPresentation({ rotation: 0, flipHorizontal: false, flipVertical: false });
    v.resetCamera();
    this.remember();
    v.render();
    this.onChange(this.state());
  }

  private remember(): void {
    const p = this.viewport?.getViewPresentation();
    this.turned = p?.rotation ?? 0;
    this.flippedH = !!p?.flipHorizontal;
    this.flippedV = !!p?.flipVertical;
  }

  state(): StackState {
    const v = this.viewport;
    if (!v) return { index: 0, count: 0 };
    const props = v.getProperties();
    const voi = props.voiRange;
    const p = v.getViewPresentation();
    const s: StackState = {
      index: v.getCurrentImageIdIndex(),
      count: v.getImageIds().length,
      invert: props.invert ?? false,
      zoom: v.getZoom(),
      rotation: p.rotation ?? 0,
      flipHorizontal: p.flipHorizontal ?? false,
      flipVertical: p.flipVertical ?? false,
      loaded: this.loaded.size,
    };
    if (voi && Number.isFinite(voi.lower) && Number.isFinite(voi.upper)) {
      s.windowWidth = voi.upper - voi.lower;
      s.windowCenter = (voi.upper + voi.lower) / 2;
    }
    return s;
  }

  /**
   * Destroys this viewer once its first image is drawn (or failed). Cornerstone still asks
   * a viewport disabled under a pending load for its camera ("No renderer found for the
   * viewport" in the console): seen when another series was chosen at once, on a loaded
   * machine.
   */
  async retire(): Promise<void> {
    this.retired = true;
    await this.settling?.catch(() => undefined);
    this.destroy();
  }

  destroy(): void {
    live.delete(this);
    // Its state is kept by viewport: only while the element is still enabled.
    if (getEnabledElement(this.element)) toolUtilities.stackPrefetch.disable(this.element);
    for (const off of this.listeners.splice(0)) off();
    if (ToolGroupManager.getToolGroup(this.toolGroupId)) ToolGroupManager.destroyToolGroup(this.toolGroupId);
    if (this.engine?.getViewport(this.viewportId)) this.engine.disableElement(this.viewportId);
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
