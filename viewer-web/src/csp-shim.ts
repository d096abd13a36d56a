// Cornerstone's measurement text boxes (tools' drawTextBox) set their style with
// `setAttribute('style', …)`, which the archive's Content-Security-Policy (no
// 'unsafe-inline' styles) blocks and reports as a violation. The same declarations set
// through the CSSOM (`element.style`) are allowed, so SVG text elements take their
// `style` attribute that way. Nothing else is changed.

let installed = false;

export function installSvgStyleShim(): void {
  if (installed) return;
  installed = true;
  const original = Element.prototype.setAttribute;
  Object.defineProperty(SVGTextElement.prototype, 'setAttribute', {
    configurable: true,
    writable: true,
    value: function setAttribute(this: SVGTextElement, name: string, value: string): void {
      if (name.toLowerCase() === 'style') {
        this.style.cssText = value;
        return;
      }
      original.call(this, name, value);
    },
  });
}
