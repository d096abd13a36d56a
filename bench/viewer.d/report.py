#!/usr/bin/env python3
"""bench/viewer's results section for docs/benchmarks.md, from meta.tsv (one `key<TAB>value`
a line) and results.jsonl (one JSON object per run, from pacs.mjs, orthanc.mjs and curl).

    report.py --meta META.tsv --results RESULTS.jsonl
"""
import argparse
import json
import statistics

ap = argparse.ArgumentParser()
ap.add_argument("--meta", required=True)
ap.add_argument("--results", required=True)
args = ap.parse_args()

meta = {}
for line in open(args.meta, encoding="utf-8"):
    k, _, v = line.rstrip("\n").partition("\t")
    meta[k] = v
runs = [json.loads(l) for l in open(args.results, encoding="utf-8") if l.strip()]


def of(kind):
    return [r for r in runs if r.get("kind") == kind]


def vals(rs, *path):
    out = []
    for r in rs:
        v = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            out.append(float(v))
    return out


def ms(v):
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def summary(xs):
    if not xs:
        return "—"
    return f"median {ms(statistics.median(xs))}, worst {ms(max(xs))} ({len(xs)} runs)"


def verdict(xs, target_ms, n_expected):
    if not xs:
        return "not measured"
    if len(xs) < n_expected:
        return f"**broken**: {n_expected - len(xs)} runs failed"
    med, worst = statistics.median(xs), max(xs)
    if med <= target_ms and worst <= target_ms:
        return "met (every run)"
    if med <= target_ms:
        return f"met (median); worst **{ms(worst)}** over"
    return f"**missed**: median {ms(med)} vs {ms(target_ms)} ({med / target_ms:.1f}×)"


def per_run(xs):
    return ", ".join(ms(x) for x in xs) if xs else "—"


n = int(meta.get("runs", "0") or 0)
op, url, fa, wl, orth, wado = of("open"), of("url"), of("fetchall"), of("worklist"), of("orthanc"), of("wado")
ct_bytes = int(meta.get("ct_bytes", "0") or 0)
slices = meta.get("ct_slices", "?")
tasks = meta.get("tasks", "?")

print(f"### Viewer (browser), {meta.get('started', '?')}")
print()
extra = [meta.get("pacs_version", "pacs ?"), f"viewer-web/dist built {meta.get('dist_time', '?')}",
         meta.get("chromium", "Chromium ?"), f"playwright-core {meta.get('playwright', '?')}",
         f"Node.js {meta.get('node', '?')}"]
if orth:
    extra.append(f"{meta.get('orthanc_version', 'Orthanc ?')} with {meta.get('webviewer', 'its web viewer')}")
print(f"Command: `{meta.get('command', 'bench/viewer')}` (pacs binary built {meta.get('bin_time', '?')} "
      f"from the working tree at commit {meta.get('commit', '?')}; {'; '.join(extra)}).")
print()
print(f"Machine: {meta.get('machine', '?')}. Load average {meta.get('load_start', '?')} at the start, "
      f"{meta.get('load_end', '?')} at the end (the machine is shared). Servers and browser on 127.0.0.1"
      f"{' in a private network namespace' if meta.get('network') == 'netns' else ''}. "
      f"Headless Chromium, 1280×800 page, a fresh browser context per run (empty HTTP cache, "
      f"new page and Cornerstone cache). Data: a CT of {slices} slices 512×512, 16-bit, "
      f"explicit VR little endian, {ct_bytes / 1e6:.1f} MB.")
print()
print("| Measure | pacs | Orthanc web viewer | Target | Result |")
print("|---|---|---|---|---|")
o_first = vals(orth, "firstImageMs")
o_all = vals(orth, "allSlicesMs")
warm = [r for r in orth if r.get("run", 0) > 1]
print(f"| First image of the {slices}-slice CT, opened from the worklist (Enter on its row) | "
      f"{summary(vals(op, 'firstImageMs'))} | — (no worklist; see the next row) | ≤ 1 s | "
      f"{verdict(vals(op, 'firstImageMs'), 1000, n)} |")
print(f"| First image, the viewer opened by its URL (from navigation start, page load included) | "
      f"{summary(vals(url, 'firstImageMs'))} | {summary(o_first)}; cold image cache (run 1) "
      f"{ms(o_first[0]) if o_first else '—'} | ≤ 1 s | pacs {verdict(vals(url, 'firstImageMs'), 1000, n)}"
      f"{'; Orthanc ' + verdict(o_first, 1000, n) if orth else ''} |")
if vals(op, 'allLoadedMs'):
    print(f"| Whole series scrollable: every slice loaded into the viewer (decoded, cached: any slice "
          f"scrolled to shows at once), from Enter on the worklist row | "
          f"{summary(vals(op, 'allLoadedMs'))} | — | ≤ 5 s | {verdict(vals(op, 'allLoadedMs'), 5000, n)} |")
    print(f"| … opened by its URL | {summary(vals(url, 'allLoadedMs'))} | — (see the paging row) | ≤ 5 s | "
          f"{verdict(vals(url, 'allLoadedMs'), 5000, n)} |")
print(f"| Every slice displayed once (paged through with ArrowDown{', after the load above' if vals(op, 'allLoadedMs') else ''}), "
      f"from Enter on the worklist row | "
      f"{summary(vals(op, 'allSlicesMs'))} | — | — | for information |")
print(f"| … opened by its URL | {summary(vals(url, 'allSlicesMs'))} | {summary(o_all)} | — | for information |")
print(f"| One slice step (keydown/wheel → that slice rendered), median of the steps of each run | "
      f"{summary(vals(op, 'stepMedianMs') + vals(url, 'stepMedianMs'))} | {summary(vals(orth, 'stepMedianMs'))} | — | for information |")
print(f"| Worklist of {tasks} tasks rendered: page loaded at `/#/worklist/mine`, navigation start → "
      f"{tasks} rows in the DOM | {summary(vals(wl, 'load', 'rowsInDom'))} | — | ≤ 300 ms | "
      f"{verdict(vals(wl, 'load', 'rowsInDom'), 300, n)} |")
print(f"| … → the next frame painted after that | {summary(vals(wl, 'load', 'painted'))} | — | ≤ 300 ms | "
      f"{verdict(vals(wl, 'load', 'painted'), 300, n)} |")
print(f"| Worklist of {tasks} tasks, from the study list by the top bar's link (app loaded) → rows in the DOM | "
      f"{summary(vals(wl, 'spa', 'rowsInDom'))} | — | ≤ 300 ms | {verdict(vals(wl, 'spa', 'rowsInDom'), 300, n)} |")
api_bytes = vals(wl, "load", "apiBytes")
print(f"| … its `GET /api/worklist?view=mine&limit=1000` (Resource Timing, request start → response end"
      f"{f', {api_bytes[0] / 1e3:.0f} kB' if api_bytes else ''}) | "
      f"page load: {summary(vals(wl, 'load', 'apiMs'))}; by the link: {summary(vals(wl, 'spa', 'apiMs'))} | — | — | for information |")
print()
print("Per run (in order):")
print()
print(f"- pacs, from the worklist: first image {per_run(vals(op, 'firstImageMs'))}; whole series loaded "
      f"{per_run(vals(op, 'allLoadedMs')) if vals(op, 'allLoadedMs') else '—'}; every slice "
      f"{per_run(vals(op, 'allSlicesMs'))}; slice step median {per_run(vals(op, 'stepMedianMs'))}, "
      f"p90 {per_run(vals(op, 'stepP90Ms'))}")
if vals(op, "stepRequestMs"):
    print(f"- pacs slice step, medians per run: keydown → the frame's request {per_run(vals(op, 'stepToRequestMs'))}; "
          f"the request (sent → last byte) {per_run(vals(op, 'stepRequestMs'))}; last byte → rendered "
          f"(decode in the loader's worker, hand-off, draw) {per_run(vals(op, 'stepToRenderMs'))}")
at_first = vals(op, "framesRequestedAtFirstImage")
fetched = vals(op, "framesFetched")
if at_first:
    print(f"- pacs frames requested by the first image: {', '.join(str(int(x)) for x in at_first)}; "
          f"frames fetched by the end of the scroll: {', '.join(str(int(x)) for x in fetched)} (the prefetch fetches each slice once)")
print(f"- pacs, by URL: first image {per_run(vals(url, 'firstImageMs'))}; every slice {per_run(vals(url, 'allSlicesMs'))}")
if orth:
    ob = vals(orth, "imageBytes")
    print(f"- Orthanc web viewer: first image {per_run(o_first)}; every slice {per_run(o_all)}; slice step median "
          f"{per_run(vals(orth, 'stepMedianMs'))}, p90 {per_run(vals(orth, 'stepP90Ms'))}; "
          f"{int(vals(orth, 'imagesFetched')[0]) if orth else 0} images of {ob[0] / 1e6 if ob else 0:.1f} MB per run "
          f"(JPEG quality 95, 8 bits); its image request (synchronous, sent → last byte) median "
          f"{per_run(vals(orth, 'requestMedianMs'))}")
print(f"- worklist, page load: rows {per_run(vals(wl, 'load', 'rowsInDom'))}, painted {per_run(vals(wl, 'load', 'painted'))}, "
      f"API {per_run(vals(wl, 'load', 'apiMs'))} (first byte after {per_run(vals(wl, 'load', 'apiTtfbMs'))}); "
      f"by the link: rows {per_run(vals(wl, 'spa', 'rowsInDom'))}, API {per_run(vals(wl, 'spa', 'apiMs'))}")
errs = sorted({e for r in runs for e in r.get("errors", [])})
if errs:
    print(f"- page errors and failed requests: {len(errs)} distinct, first: `{errs[0][:200]}`")
print()
lim = []
if wado:
    w = [(r["bytes"], r["seconds"]) for r in wado]
    lim.append(f"WADO-RS retrieve of the whole series by curl (each instance as stored, "
               f"{w[0][0] / 1e6:.1f} MB): {', '.join(f'{s:.2f} s ({b / s / 1e6:.0f} MB/s)' for b, s in w)}")
if fa:
    each = ", ".join("%s (%.0f MB/s)" % (ms(r["ms"]), r["bytes"] / r["ms"] / 1e3) for r in fa)
    lim.append(f"all {int(fa[0]['frames'])} frames ({fa[0]['bytes'] / 1e6:.1f} MB of pixel data) fetched by the page, "
               f"6 at a time, not decoded or drawn: {each}")
fs = vals(fa, "ms")
steps = vals(op, "stepMedianMs") + vals(url, "stepMedianMs")
if fs and steps:
    req, rend = vals(op, "stepRequestMs"), vals(op, "stepToRenderMs")
    tail = ""
    if req and rend:
        tail = (f", of which the frame's request takes {statistics.median(req):.1f} ms and its decode, hand-off "
                f"and draw (WebGL in SwiftShader, software) {statistics.median(rend):.1f} ms")
    lim.append(f"so moving the pixels costs ~{statistics.median(fs) / int(fa[0]['frames']):.1f} ms a slice in the "
               f"browser (6 at a time), while a slice step costs {statistics.median(steps):.1f} ms (median){tail}; "
               f"paging through {slices} slices one after the other cannot beat {slices} × a step")
print("Limits in the same run: " + "; ".join(lim) + "." if lim else "")
print()
if meta.get("pacs_rss_mb") or meta.get("orthanc_rss_mb"):
    print(f"Peak RSS: pacs {meta.get('pacs_rss_mb', '—')} MB, Orthanc {meta.get('orthanc_rss_mb', '—')} MB. "
          f"The CT's task: {meta.get('ct_task', '?')}.")
if meta.get("pacs_log"):
    print()
    print(f"pacs log: {meta['pacs_log']}")
