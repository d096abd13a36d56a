#!/usr/bin/env python3
"""The results section of bench/worklist (Markdown, on standard output).

    report.py --meta F [--route F]... --fill F --served NAME:REP:WORKLIST:LIVE...

--meta: the run's notes (key TAB value); --route: bench_worklist route results (SQLite,
PostgreSQL, several instances per study); --fill: bench_worklist fill; --served: each
repetition's bench_worklist_client results (worklist and live), NAME "measured" for the
binary measured and "compared" for the one compared with it. Percentiles are nearest-rank
within a run; repetitions are summarised by their median and range.
"""
import argparse
import json
import math

ROUTE_TARGET_MS = 5.0
QUERY_TARGET_MS = 20.0
LIVE_TARGET_MS = 100.0


def pct(values, q):
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)] if v else float("nan")


def f(x):
    if x != x:  # NaN
        return "—"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}" if abs(x) < 100 else f"{x:.0f}"


def verdict(value, target):
    if value <= target:
        return "met"
    return f"**missed**: {f(value)} vs {f(target)} ms ({(value / target - 1) * 100:.0f}% over)"


def routing(r):
    """Per-study figures of a bench_worklist route result."""
    calls = r["routing"]
    total = sum(c["seconds"] for c in calls)
    creating = [c for c in calls if c["created"] > 0]
    per_study = [c["seconds"] * 1000 / c["created"] for c in creating]
    created = sum(c["created"] for c in creating)
    return {
        "all_in_ms": total * 1000 / max(1, r["studies"]),
        "routing_mean_ms": sum(c["seconds"] for c in creating) * 1000 / max(1, created),
        "routing_p50_ms": pct(per_study, 0.5),
        "routing_p99_ms": pct(per_study, 0.99),
        "routing_max_ms": max(per_study) if per_study else float("nan"),
        "calls": len(calls),
        "creating_calls": len(creating),
        "created": created,
        "events": sum(c["events"] for c in calls),
        "total_s": total,
    }


def med(values):
    v = sorted(values)
    n = len(v)
    if n == 0:
        return float("nan")
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def spread(values):
    """Median, and the range when there are several values."""
    if len(values) > 1:
        return f"{f(med(values))} ({f(min(values))}–{f(max(values))})"
    return f(med(values))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta", required=True)
    ap.add_argument("--route", action="append", default=[])
    ap.add_argument("--fill", required=True)
    ap.add_argument("--served", action="append", default=[],
                    help="NAME:REPETITION:WORKLIST_JSON:LIVE_JSON")
    a = ap.parse_args()

    meta = {}
    for line in open(a.meta, encoding="utf-8"):
        k, _, v = line.rstrip("\n").partition("\t")
        meta[k] = v
    routes = [json.load(open(p)) for p in a.route]
    fill = json.load(open(a.fill))
    served = {}
    for spec in a.served:
        name, rep, wl_path, live_path = spec.split(":", 3)
        served.setdefault(name, []).append(
            (int(rep), json.load(open(wl_path)), json.load(open(live_path))))
    for runs in served.values():
        runs.sort(key=lambda r: r[0])
    measured = served["measured"]
    compared = served.get("compared", [])
    reps = len(measured)

    def query(runs, label, stat):
        return [next(q for q in wl["queries"] if q["label"] == label)["ms"][stat]
                for _, wl, _ in runs]

    def live(runs, key, stat):
        return [lv[key][stat] for _, _, lv in runs]

    out = []
    p = out.append
    p(f"### Worklist, {meta['started']}")
    p("")
    binary = meta['pacs_binary'] + (f", {meta['pacs_note']}" if meta.get('pacs_note') else "")
    p(f"Command: `{meta['command']}` (pacs binary `{binary}` built {meta['bin_time']}; "
      f"{meta['pacs_version']}; the bench tools from the working tree at commit {meta['commit']}).")
    if compared:
        other = meta['compare_binary'] + (f", {meta['compare_note']}" if meta.get('compare_note') else "")
        p("")
        p(f"Compared in the same run, on the same data, the server that goes first alternating: "
          f"`{other}` built {meta['compare_bin_time']}.")
    p("")
    p(f"Machine: {meta['machine']}. Load average {meta['load_start']} at the start, "
      f"{meta['load_end']} at the end (the machine is shared: others compile on it). One "
      f"synchronous 4 KiB write (`dd oflag=dsync`, the floor under a committed transaction): "
      f"{meta['fsync_ms.before']} ms before, {meta['fsync_ms.after']} ms after.")
    p("")
    rep_note = (f"median of {reps} repetitions (range)" if reps > 1 else "one repetition")
    p(f"Served measures: {rep_note}, each on a freshly started server.")
    p("")
    p("| Measure | Measured | Target | Result |")
    p("|---|---|---|---|")
    single = [r for r in routes if r.get("instances_per_study", 1) == 1]
    for r in single:
        s = routing(r)
        worst = max(s["all_in_ms"], s["routing_p99_ms"])
        p(f"| Routing and task creation ({r['backend']}, {r['studies']:,} studies ready, "
          f"{r['radiologists']} radiologists, default rules) | {f(s['all_in_ms'])} ms per study "
          f"all in (the keeper's whole time / studies); routing calls {f(s['routing_mean_ms'])} ms "
          f"per study mean, p99 of calls {f(s['routing_p99_ms'])} ms | ≤ {f(ROUTE_TARGET_MS)} ms "
          f"per study | {verdict(worst, ROUTE_TARGET_MS)} |")
    any_wl = measured[0][1]
    for label in ("mine", "pool"):
        q = next(q for q in any_wl["queries"] if q["label"] == label)
        p50s = query(measured, label, "p50")
        p(f"| Radiologist's worklist `view={label}` ({fill['open_tasks']:,} open tasks, "
          f"{q['items']} returned) | p50 {spread(p50s)} ms, p99 "
          f"{spread(query(measured, label, 'p99'))} ms | p50 ≤ {f(QUERY_TARGET_MS)} ms "
          f"| {verdict(med(p50s), QUERY_TARGET_MS)} |")
    lv0 = measured[0][2]
    p99s = live(measured, "latency_from_request_ms", "p99")
    p(f"| Live event to {lv0['clients']:,} websocket clients ({lv0['deliveries']:,} deliveries "
      f"of {lv0['events']} events per repetition) | p99 {spread(p99s)} ms from the triggering "
      f"request (p50 {spread(live(measured, 'latency_from_request_ms', 'p50'))}) "
      f"| p99 ≤ {f(LIVE_TARGET_MS)} ms | {verdict(med(p99s), LIVE_TARGET_MS)} |")
    p("")

    if compared:
        p("This binary against the compared one (medians over the repetitions; the ratio is the "
          "compared binary's over this one's, per repetition, median and range):")
        p("")
        p("| Measure | This binary | Compared | Ratio |")
        p("|---|---|---|---|")
        rows = [
            ("worklist `view=mine` p50", query(measured, "mine", "p50"), query(compared, "mine", "p50")),
            ("worklist `view=pool` p50", query(measured, "pool", "p50"), query(compared, "pool", "p50")),
            ("live event p50 (from the request)", live(measured, "latency_from_request_ms", "p50"),
             live(compared, "latency_from_request_ms", "p50")),
            ("live event p99 (from the request)", live(measured, "latency_from_request_ms", "p99"),
             live(compared, "latency_from_request_ms", "p99")),
            ("live event, until the last client had it, p99",
             live(measured, "last_delivery_per_event_ms", "p99"),
             live(compared, "last_delivery_per_event_ms", "p99")),
            ("the triggering requests, p99", live(measured, "trigger_http_ms", "p99"),
             live(compared, "trigger_http_ms", "p99")),
        ]
        for label, mine, theirs in rows:
            ratios = [t / m for m, t in zip(mine, theirs) if m > 0]
            rtext = (f"{med(ratios):.1f}× ({min(ratios):.1f}–{max(ratios):.1f})" if len(ratios) > 1
                     else f"{med(ratios):.1f}×" if ratios else "—")
            p(f"| {label} | {spread(mine)} ms | {spread(theirs)} ms | {rtext} |")
        p("")
        p("Per repetition (live p99 from the request / worklist `view=mine` p50, ms): " + "; ".join(
            f"{r}: this {f(lv['latency_from_request_ms']['p99'])} / "
            f"{f(next(q for q in wl['queries'] if q['label'] == 'mine')['ms']['p50'])}, compared "
            f"{f(clv['latency_from_request_ms']['p99'])} / "
            f"{f(next(q for q in cwl['queries'] if q['label'] == 'mine')['ms']['p50'])}"
            for (r, wl, lv), (_, cwl, clv) in zip(measured, compared)) + ".")
        p("")

    # Routing details.
    p("Routing (`pacs-store/examples/bench_worklist.rs route`): a fresh index, 8 clinics, 20 "
      "radiologists (4 neuro, 4 chest, 3 breast, 3 msk, 6 general; credentials per "
      "subspecialty; 15 on shift), the default rules; the studies (CT/MR/DX/CR/MG/US mix, "
      "3% STAT, 12% HIGH) inserted through the index writer and marked ready, then "
      "`route_ready_studies` called until the outbox is consumed, "
      f"{routes[0]['batch'] if routes else '—'} routing events (`study_ready`, `study_updated`) "
      "per call, each call one transaction that reads the rules and the radiologists' loads "
      "once; the other outbox events (`instance_stored`, the `task_created` events routing "
      "writes) are skipped in SQL. \"All in\" "
      "is the keeper's whole time over the studies; \"routing calls\" are the calls that "
      "created tasks, per task.")
    p("")
    p("| Run | Routing events | Keeper time | All in, per study | Routing calls, per study: mean / p50 / p99 / max |")
    p("|---|---|---|---|---|")
    for r in routes:
        s = routing(r)
        n = r.get("instances_per_study", 1)
        label = f"{r['backend']}, {r['studies']:,} studies × {n} instance{'s' if n > 1 else ''}"
        p(f"| {label} | {s['events']:,} | {s['total_s']:.1f} s | {f(s['all_in_ms'])} ms | "
          f"{f(s['routing_mean_ms'])} / {f(s['routing_p50_ms'])} / {f(s['routing_p99_ms'])} / "
          f"{f(s['routing_max_ms'])} ms |")
    p("")

    # Worklist details (this binary).
    per_rad = fill["tasks_per_radiologist"]
    p(f"Worklist queries over HTTP (`examples/bench_worklist_client.rs worklist`): `pacs serve` "
      f"on an index of {fill['studies']:,} studies made ready and routed through the same path "
      f"({fill['pool_tasks']:,} of them at a time when nobody was on shift: in the pool), "
      f"{fill['open_tasks']:,} open tasks; {len(per_rad)} radiologists hold "
      f"{min(per_rad.values())}–{max(per_rad.values())} each. Each user logged in "
      f"(`POST /api/login`) and asks over a kept-alive connection with the session cookie; "
      f"{any_wl['runs']} runs of each query per repetition, round robin, after "
      f"{any_wl['warmup']} warm-ups each; the default page (200). Every answer is audited "
      f"before it is sent, as always. Milliseconds, this binary ({rep_note}):")
    p("")
    p("| Query | User | Returned | Bytes | p50 | p90 | p99 | max |")
    p("|---|---|---|---|---|---|---|---|")
    for q in any_wl["queries"]:
        stats = {k: spread(query(measured, q["label"], k)) for k in ("p50", "p90", "p99", "max")}
        p(f"| `{q['path']}` | {q['user']} | {q['items']} | {q['bytes']:,} | "
          f"{stats['p50']} | {stats['p90']} | {stats['p99']} | {stats['max']} |")
    p("")

    # Live details (this binary).
    roles = ", ".join(f"{n} {r}" for r, n in lv0["clients_by_role"].items())
    checks = {k: sum(lv[k] for _, _, lv in measured + compared)
              for k in ("missing", "unexpected", "duplicates")}
    p(f"Live feed (`examples/bench_worklist_client.rs live`), on the same server: "
      f"{lv0['clients']:,} websocket clients ({roles}; {lv0['users']} users, one API token "
      f"per client), connected in {spread([lv['connect_seconds'] for _, _, lv in measured])} s. "
      f"{lv0['events']} events per repetition: {lv0['routed_tasks']} routed tasks claimed and "
      f"released by their radiologist, {lv0['pool_tasks']} pool tasks (seen by every "
      f"radiologist) claimed and released, one request every {lv0['interval_ms']:.0f} ms. Each "
      f"client's deliveries are checked against the audience rules (all runs, both binaries): "
      f"{checks['missing']} missing, {checks['unexpected']} unexpected, {checks['duplicates']} "
      f"duplicates. Milliseconds, this binary ({rep_note}):")
    p("")
    p("| Latency | n (each) | p50 | p90 | p99 | p99.9 | max |")
    p("|---|---|---|---|---|---|---|")
    rows = [
        ("from the triggering request sent", "latency_from_request_ms"),
        ("from its answer received (negative: the event came first)", "latency_from_answer_ms"),
        ("from the event's `created_at` (server clock, same machine)", "latency_from_created_ms"),
        ("until the last client had it, per event (from the request)", "last_delivery_per_event_ms"),
        ("the triggering requests themselves (claim, release)", "trigger_http_ms"),
    ]
    for label, key in rows:
        stats = {k: spread(live(measured, key, k)) for k in ("p50", "p90", "p99", "p999", "max")}
        p(f"| {label} | {lv0[key]['n']:,} | {stats['p50']} | {stats['p90']} | {stats['p99']} | "
          f"{stats['p999']} | {stats['max']} |")
    for role in lv0["latency_by_role_ms"]:
        vals = lambda k: [lv["latency_by_role_ms"][role][k] for _, _, lv in measured]
        p(f"| from the request, {role} clients | {lv0['latency_by_role_ms'][role]['n']:,} | "
          f"{spread(vals('p50'))} | {spread(vals('p90'))} | {spread(vals('p99'))} | "
          f"{spread(vals('p999'))} | {spread(vals('max'))} |")
    p("")
    rss = {k.split(".", 1)[1]: float(v) for k, v in meta.items() if k.startswith("rss_mb.")}
    mine_rss = [v for k, v in rss.items() if k.startswith("measured-")]
    extra = f"Peak RSS of pacs after a repetition: {spread(mine_rss)} MB"
    other_rss = [v for k, v in rss.items() if k.startswith("compared-")]
    if other_rss:
        extra += f" (compared binary {spread(other_rss)} MB)"
    extra += "."
    if "pacs_log" in meta:
        extra += f" pacs logs: {meta['pacs_log']}"
    else:
        extra += " No WARN or ERROR line in the pacs logs."
    p(extra)
    print("\n".join(out))


if __name__ == "__main__":
    main()
