// The viewport layouts of the reading view: 1×1, 1×2 (side by side) and 2×2. The grid
// itself is CSS (`.grid[data-layout=…]` in style.css); this is the list and the keys.

export type Layout = '1x1' | '1x2' | '2x2';

export const LAYOUTS: Layout[] = ['1x1', '1x2', '2x2'];

/** [layout, label, key (with Shift, by key code)] */
export const LAYOUT_KEYS: [Layout, string, string][] = [
  ['1x1', '1×1', 'Digit1'],
  ['1x2', '1×2', 'Digit2'],
  ['2x2', '2×2', 'Digit3'],
];

export function cellCount(layout: Layout): number {
  return layout === '1x1' ? 1 : layout === '1x2' ? 2 : 4;
}
