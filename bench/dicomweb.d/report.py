#!/usr/bin/env python3
"""The results section of bench/dicomweb (Markdown, on standard output), from the run's
notes (meta.tsv: key TAB value) and the client's timings (results.jsonl).

    report.py --meta F --results F --shared-queries F --big-queries F [--limits WHEN=F]...

Percentiles are nearest-rank over every run pooled (p99 of 250 runs is the 248th
fastest); ratios are per repetition (Orthanc's p50 / pacs's p50, or MB/s over MB/s) and
shown as their median with the range.
"""
import argparse
import json
import math
import statistics
import sys


def pct(values, q):
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def med(values):
    return statistics.median(values)


def f1(x):
    return f"{x:.1f}"


def ms(x):
    return f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms"


def ratio_text(rs):
    m = med(rs)
    if len(rs) > 1:
        return f"{m:.1f}× ({min(rs):.1f}–{max(rs):.1f})"
    return f"{m:.1f}×"


def short_by(value, target, more_is_better=True):
    if more_is_better:
        return f"{(1 - value / target) * 100:.0f}% short"
    return f"{(value / target - 1) * 100:.0f}% over"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--shared-queries", required=True)
    ap.add_argument("--big-queries", required=True)
    ap.add_argument("--limits", action="append", default=[])
    a = ap.parse_args()

    meta = {}
    for line in open(a.meta, encoding="utf-8"):
        k, _, v = line.rstrip("\n").partition("\t")
        meta[k] = v
    recs = [json.loads(line) for line in open(a.results, encoding="utf-8")]
    limits = {}
    for spec in a.limits:
        when, _, path = spec.partition("=")
        for line in open(path):
            r = json.loads(line)
            limits.setdefault(r["kind"], []).append((when, r["bytes"] / r["seconds"] / 1e6))
    reps = int(meta["repeat"])

    def of(kind, **kw):
        return [r for r in recs if r["kind"] == kind and all(r.get(k) == v for k, v in kw.items())]

    out = []
    p = out.append
    p(f"### DICOMweb, {meta['started']}")
    p("")
    p(f"Command: `{meta['command']}` (pacs binary built {meta['bin_time']} from the working tree at "
      f"commit {meta['commit']}; {meta['pacs_version']}; {meta['orthanc_version']} with the DICOMweb "
      f"plugin {meta['plugin']}; dcmtk storescu {meta['dcmtk']}; {meta['curl']}; Python {meta['python']}).")
    p("")
    p(f"Machine: {meta['machine']}. Load average {meta['load_start']} at the start, "
      f"{meta['load_end']} at the end (the machine is shared; others were compiling). Servers and "
      f"clients on 127.0.0.1{' in a private network namespace' if meta['network'] == 'netns' else ''}. "
      f"Orthanc `StorageAccessOnFind`: {meta['orthanc_find']}"
      f"{' (its default)' if meta['orthanc_find'] == 'Always' else ''}.")
    p("")

    # --- QIDO over the filled index ---------------------------------------------------
    big_q = json.load(open(a.big_queries, encoding="utf-8"))
    big_rows, big_verdicts = [], []
    for q in big_q:
        cells, worst = [], None
        for scope in ("reader", "admin"):
            rr = of("qido", set=f"big-{scope}", label=q["label"])
            t = [x for r in rr for x in r["ms"]]
            p50, p90, p99 = med(t), pct(t, 0.9), pct(t, 0.99)
            cells.append(f"{f1(p50)} / {f1(p90)} / {f1(p99)}")
            bad = []
            if p50 > 10:
                bad.append(f"p50 {f1(p50)} ms vs 10 ms ({short_by(p50, 10, False)})")
            if p99 > 50:
                bad.append(f"p99 {f1(p99)} ms vs 50 ms ({short_by(p99, 50, False)})")
            if bad:
                worst = (worst or []) + [f"{scope_name(scope)}: " + ", ".join(bad)]
        verdict = "met" if not worst else "**missed**: " + "; ".join(worst)
        big_verdicts.append((q, verdict))
        big_rows.append(f"| {q['label']}: `PatientName={q['value']}` | {q['pacs']:,} | "
                        f"{min(q['pacs'], 100)} | {cells[0]} | {cells[1]} | p50 ≤ 10, p99 ≤ 50 | {verdict} |")

    # --- QIDO on the shared set -------------------------------------------------------
    shared_q = json.load(open(a.shared_queries, encoding="utf-8"))
    shared_rows, shared_summary = [], []
    for q in shared_q:
        pt = [x for r in of("qido", set="shared", server="pacs", label=q["label"]) for x in r["ms"]]
        cell_p = f"{f1(med(pt))} / {f1(pct(pt, 0.9))} / {f1(pct(pt, 0.99))}"
        if q["orthanc"] is None:
            shared_rows.append(f"| {q['label']}: `PatientName={q['value']}` | {q['pacs']:,} | {cell_p} | "
                               f"not askable (see the method) | — | ≥ 10× | — |")
            continue
        ot = [x for r in of("qido", set="shared", server="orthanc", label=q["label"]) for x in r["ms"]]
        cell_o = f"{f1(med(ot))} / {f1(pct(ot, 0.9))} / {f1(pct(ot, 0.99))}"
        rs = []
        for rep in range(1, reps + 1):
            a_ = [x for r in of("qido", set="shared", server="pacs", label=q["label"], rep=rep) for x in r["ms"]]
            b_ = [x for r in of("qido", set="shared", server="orthanc", label=q["label"], rep=rep) for x in r["ms"]]
            rs.append(med(b_) / med(a_))
        m = med(rs)
        verdict = "met" if m >= 10 else f"**missed**: {m:.1f}× vs 10× ({short_by(m, 10)})"
        if m >= 10 and min(rs) < 10:
            verdict += f" on the median; {sum(1 for x in rs if x < 10)} of {len(rs)} repetitions below"
        shared_rows.append(f"| {q['label']}: `PatientName={q['value']}` | {q['orthanc']:,} | {cell_p} | "
                           f"{cell_o} | {ratio_text(rs)} | ≥ 10× | {verdict} |")
        shared_summary.append((q, med(pt), med(ot), rs, verdict))

    # --- WADO-RS retrieve -------------------------------------------------------------
    def wado_mbs(server, rep=None):
        rr = of("wado", server=server) if rep is None else of("wado", server=server, rep=rep)
        return [r["bytes"] / r["seconds"] / 1e6 for r in rr]
    w_p, w_o = wado_mbs("pacs"), wado_mbs("orthanc")
    w_rs = [med(wado_mbs("pacs", rep)) / med(wado_mbs("orthanc", rep)) for rep in range(1, reps + 1)]
    w_m = med(w_rs)
    w_verdict = "met" if w_m >= 5 else f"**missed**: {w_m:.1f}× vs 5× ({short_by(w_m, 5)})"
    w_bytes = of("wado", server="pacs")[0]["bytes"]
    w_bytes_o = of("wado", server="orthanc")[0]["bytes"]
    w_secs_p = [r["seconds"] for r in of("wado", server="pacs")]
    w_secs_o = [r["seconds"] for r in of("wado", server="orthanc")]

    # --- metadata, rendered -----------------------------------------------------------
    def lat(kind, server, rep=None):
        rr = of(kind, server=server) if rep is None else of(kind, server=server, rep=rep)
        return [x for r in rr for x in r["ms"]]

    def first(server):
        return next(r["first_ms"] for r in of("metadata-cold", server=server))

    def lat_ratios(kind):
        return [med(lat(kind, "orthanc", rep)) / med(lat(kind, "pacs", rep)) for rep in range(1, reps + 1)]
    m_p, m_o = lat("metadata", "pacs"), lat("metadata", "orthanc")
    m_cold_p, m_cold_o = first("pacs"), first("orthanc")
    m_rs = lat_ratios("metadata")
    m_p50 = med(m_p)
    m_verdict = ("met" if m_p50 <= 100 else f"**missed**: {ms(m_p50)} vs 100 ms ({short_by(m_p50, 100, False)})")
    m_verdict += " (warm p50)"
    m_verdict += "; cold " + ("met" if m_cold_p <= 100 else f"**missed**: {ms(m_cold_p)} ({short_by(m_cold_p, 100, False)})")
    if pct(m_p, 0.99) > 100:
        m_verdict += f"; warm p99 {ms(pct(m_p, 0.99))}"
    r_p, r_o = lat("rendered", "pacs"), lat("rendered", "orthanc")
    r_rs = lat_ratios("rendered")
    r_p50 = med(r_p)
    r_verdict = "met" if r_p50 <= 15 else f"**missed**: {ms(r_p50)} vs 15 ms ({short_by(r_p50, 15, False)})"

    # --- The table --------------------------------------------------------------------
    nb, ni = int(meta["big_studies"]), int(meta["big_instances"])
    p("| Measure | pacs | Orthanc | pacs vs Orthanc | Target | Result |")
    p("|---|---|---|---|---|---|")
    for q, verdict in big_verdicts:
        t = [x for r in of("qido", set="big-reader", label=q["label"]) for x in r["ms"]]
        p(f"| QIDO `PatientName={q['value']}` ({q['label']}) over {nb:,} studies / {ni:,} instances, "
          f"clinic token | p50 {ms(med(t))}, p99 {ms(pct(t, 0.99))} | — | — | p50 ≤ 10 ms, p99 ≤ 50 ms | {verdict} |")
    for q, pm, om, rs, verdict in shared_summary:
        p(f"| QIDO `PatientName={q['value']}` ({q['label']}) over the {int(meta['qido_studies']):,}-study "
          f"set both hold | p50 {ms(pm)} | p50 {ms(om)} | {ratio_text(rs)} faster | ≥ 10× faster | {verdict} |")
    p(f"| WADO-RS retrieve, {meta['ct_slices']}-slice 512×512 CT series ({int(meta['ct_bytes']) / 1e6:.0f} MB) "
      f"| {f1(med(w_p))} MB/s | {f1(med(w_o))} MB/s | {ratio_text(w_rs)} | ≥ 5× Orthanc | {w_verdict} |")
    p(f"| WADO-RS metadata, {meta['meta_instances']}-instance study | warm p50 {ms(m_p50)}, p99 "
      f"{ms(pct(m_p, 0.99))}; cold {ms(m_cold_p)} | warm p50 {ms(med(m_o))}, p99 {ms(pct(m_o, 0.99))}; "
      f"cold {ms(m_cold_o)} | {ratio_text(m_rs)} faster (warm p50) | ≤ 100 ms | {m_verdict} |")
    p(f"| Rendered 512×512 CT frame as JPEG | p50 {ms(r_p50)}, p99 {ms(pct(r_p, 0.99))} | p50 {ms(med(r_o))}, "
      f"p99 {ms(pct(r_o, 0.99))} | {ratio_text(r_rs)} faster (p50) | p50 ≤ 15 ms | {r_verdict} |")
    p("")

    p(f"QIDO over the filled pacs index ({nb:,} studies, {ni:,} instances; {meta['big_runs']} runs of each "
      f"query per token, round robin, after 5 warm-ups; `limit=100`). Milliseconds, p50 / p90 / p99:")
    p("")
    p("| Query | Matches | Returned | Clinic token (service account) | Administrator token | Target | Result |")
    p("|---|---|---|---|---|---|---|")
    out.extend(big_rows)
    p("")
    p(f"QIDO over the set both servers hold ({int(meta['qido_studies']):,} single-instance studies, plus the "
      f"CT series and the metadata study; {reps} × {meta['qido_runs']} runs of each query per server, round "
      f"robin; `limit=100`). Milliseconds, p50 / p90 / p99; the ratio is Orthanc's p50 over pacs's, per repetition:")
    p("")
    p("| Query | Matches | pacs | Orthanc | pacs faster by | Target | Result |")
    p("|---|---|---|---|---|---|---|")
    out.extend(shared_rows)
    p("")

    p(f"Metadata: \"cold\" is the first request for the study, made right after it was loaded; pacs's metadata "
      f"cache was built {meta['meta_cold_built']}. \"Warm\" is {reps} × {meta['meta_runs']} requests after it. "
      f"Answers: pacs {of('metadata', server='pacs')[0]['bytes']:,} bytes, Orthanc "
      f"{of('metadata', server='orthanc')[0]['bytes']:,} bytes (Orthanc's JSON is indented).")
    p("")
    p("Per repetition:")
    p("")
    py = {srv: [r["bytes"] / r["seconds"] / 1e6 for r in of("wado-python", server=srv)] for srv in ("pacs", "orthanc")}
    p(f"- WADO-RS retrieve ({w_bytes:,} bytes from pacs, {w_bytes_o:,} from Orthanc; {meta['wado_runs']} by curl "
      f"per repetition): pacs {', '.join(f'{x:.3f}' for x in w_secs_p)} s; Orthanc "
      f"{', '.join(f'{x:.3f}' for x in w_secs_o)} s; ratio of the medians {', '.join(f'{x:.2f}' for x in w_rs)}. "
      f"The checked retrieve read by the Python client first in each repetition: pacs "
      f"{', '.join(f'{x:.0f}' for x in py['pacs'])} MB/s, Orthanc {', '.join(f'{x:.0f}' for x in py['orthanc'])} MB/s")
    for kind, name in (("metadata", "metadata (warm)"), ("rendered", "rendered")):
        p(f"- {name} p50: pacs {', '.join(ms(med(lat(kind, 'pacs', rep))) for rep in range(1, reps + 1))}; "
          f"Orthanc {', '.join(ms(med(lat(kind, 'orthanc', rep))) for rep in range(1, reps + 1))}")
    for q, pm, om, rs, verdict in shared_summary:
        p(f"- QIDO `{q['value']}` p50: pacs "
          f"{', '.join(ms(med([x for r in of('qido', set='shared', server='pacs', label=q['label'], rep=rep) for x in r['ms']])) for rep in range(1, reps + 1))}; Orthanc "
          f"{', '.join(ms(med([x for r in of('qido', set='shared', server='orthanc', label=q['label'], rep=rep) for x in r['ms']])) for rep in range(1, reps + 1))}")
    p("")

    lim = []
    for key, name in (("dd.write", "dd 512 MiB write + fdatasync"), ("dd.read", "O_DIRECT read (disk)"),
                      ("dd.cached", "cached read (page cache)")):
        lim.append(f"{name} {meta[key + '.before']}, {meta[key + '.after']} MB/s")
    for kind, name in (("loopback", "raw TCP over loopback (1 GiB, one stream, Python sockets)"),
                       ("ceiling-curl", "curl reading a chunked multipart body of the series' size from a "
                                        "trivial in-memory server (the WADO-RS ceiling)"),
                       ("ceiling-python", "the same read by the Python client")):
        v = limits.get(kind, [])
        lim.append(f"{name} {', '.join(f'{x:.0f}' for _, x in v)} MB/s")
    p("Physical limits in the same run (before and after the servers' runs): " + "; ".join(lim) + ".")
    p("")
    loads = []
    for s, n, label in (("ct", int(meta["ct_slices"]), "CT series"), ("meta", int(meta["meta_instances"]), "metadata study"),
                        ("qido", int(meta["qido_studies"]), "QIDO set")):
        ps, os_ = float(meta[f"load.pacs.{s}"]), float(meta[f"load.orthanc.{s}"])
        loads.append(f"{label} ({n} instances) pacs {ps:.1f} s, Orthanc {os_:.1f} s")
    p("Loading over C-STORE (4 associations; for the record, not a target here): " + "; ".join(loads) +
      f". Filling the pacs index directly: {meta['fill_seconds']} s. Peak RSS after the DICOMweb runs: "
      f"pacs {meta['pacs_rss_mb']} MB, Orthanc {meta['orthanc_rss_mb']} MB.")
    p("")
    logs = [f"{k.split('.', 1)[1]}: {v}" for k, v in meta.items() if k.startswith("pacs_log.")]
    p("pacs logs: " + ("no WARN or ERROR lines." if not logs else "; ".join(logs)))
    print("\n".join(out))


def scope_name(scope):
    return {"reader": "clinic token", "admin": "administrator token"}[scope]


if __name__ == "__main__":
    sys.exit(main())
