// Building the page. Every text, above all every value from the server (patient names,
// descriptions, error reasons), goes in as a text node: nothing here parses HTML, so a
// name like `<img src=x onerror=…>` is shown as those characters. Event handlers are
// attached with addEventListener (the Content-Security-Policy forbids inline ones).

type Child = Node | string | null | undefined | false;

export interface Props {
  id?: string;
  class?: string;
  /** Other attributes (never `on…` handlers, never `style`). */
  attrs?: Record<string, string>;
  /** Data attributes (`dataset`), for styling and for tests to read the state. */
  data?: Record<string, string>;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.id) e.id = props.id;
  if (props.class) e.className = props.class;
  for (const [k, v] of Object.entries(props.attrs ?? {})) {
    if (/^on/i.test(k) || k.toLowerCase() === 'style') throw new Error(`attribute ${k} not allowed`);
    e.setAttribute(k, v);
  }
  for (const [k, v] of Object.entries(props.data ?? {})) e.dataset[k] = v;
  append(e, ...children);
  return e;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  }
}

/** Replaces the children of `parent`. */
export function replace(parent: Element | DocumentFragment, ...children: Child[]): void {
  // One replaceChildren (strings become text nodes) rather than a removal and an insertion
  // per child: a thousand worklist rows go in as one change of the document.
  parent.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
}

/** The message of anything thrown, for showing to a person. */
export function message(e: unknown): string {
  if (e instanceof Error && e.message) return e.message;
  return 'Something went wrong: ' + String(e);
}
