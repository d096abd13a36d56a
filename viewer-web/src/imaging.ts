// Everything that shows images — Cornerstone3D, its DICOM image loader and tools, the
// stack panel and the reading view — in one chunk of its own, loaded when a page first
// needs it (or ahead, while the reader looks at the worklist): the worklist, portal and
// admin pages start without it.

export { readingPage } from './reading';
export { destroyViewer, stackPanel } from './stack-panel';
