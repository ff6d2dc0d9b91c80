#!/usr/bin/env python3
"""Markdown tables of Strata next to the peer engines, from benches/results/*.json.

usage: compare.py [--results benches/results]
Reads `strata bench run` results (strata-<suite>-sf<SF>.json), peers.py results
(<engine>-<suite>-sf<SF>.json, copied in from $WHBENCH_RESULTS) and throughput files, and
prints the tables BENCHMARKS.md shows. Only files measured in the same session belong together.
"""
import argparse, glob, json, math, os

ENGINES = ["strata", "duckdb-native", "duckdb-parquet", "datafusion", "polars", "chdb"]


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def cold(q):
    return q.get("cold_s") or 0.0


def summary(run):
    hot = run["geomean_hot_s"]
    colds = geomean([cold(q) for q in run["queries"]])
    rss = run.get("host", {}).get("peak_rss_mib")
    text = f"{hot:.3f} / {colds:.3f}" if colds else f"{hot:.3f}"
    return text + (f" ({rss / 1024:.2f} GiB)" if rss else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = ap.parse_args()
    runs, thr = {}, {}
    for f in sorted(glob.glob(os.path.join(args.results, "*.json"))):
        d = json.load(open(f))
        if d.get("layout", "flat") != "flat":
            continue
        if "queries" in d:
            runs.setdefault((d["suite"], float(d["sf"])), {})[d["engine"]] = d
        elif "queries_per_hour" in d or "throughput" in d:
            t = d.get("throughput", d)
            thr.setdefault((d["suite"], float(d["sf"])), {})[d["engine"]] = t
    engines = [e for e in ENGINES if any(e in v for v in runs.values())]
    print("Geometric means of the median hot and the cold (first) run, seconds; peak RSS where")
    print("the run recorded it (`strata bench run`).\n")
    print("| suite | SF | " + " | ".join(f"{e} hot / cold" for e in engines) + " |")
    print("|---|---|" + "---|" * len(engines))
    for (suite, sf), by in sorted(runs.items()):
        cells = [summary(by[e]) if e in by else "—" for e in engines]
        print(f"| {suite} | {sf:g} | " + " | ".join(cells) + " |")
    for (suite, sf), by in sorted(runs.items()):
        if "strata" not in by or len(by) < 2:
            continue
        print(f"\n#### {suite.upper()} SF {sf:g}: seconds per query, median hot / cold\n")
        cols = [e for e in engines if e in by]
        ref = "duckdb-native" if "duckdb-native" in by else None
        ratio = [f"strata / {ref} hot, cold"] if ref else []
        print("| query | rows | " + " | ".join(cols + ratio) + " |")
        print("|---|---|" + "---|" * (len(cols) + len(ratio)))
        per = {e: {q["query"]: q for q in by[e]["queries"]} for e in cols}
        for q in by["strata"]["queries"]:
            name = q["query"]
            cells = [f"{per[e][name]['median_hot_s']:.3f} / {cold(per[e][name]):.3f}"
                     if name in per[e] else "—" for e in cols]
            if ref and name in per[ref]:
                r = per[ref][name]
                cells.append(f"{q['median_hot_s'] / r['median_hot_s']:.2f}x, {cold(q) / cold(r):.2f}x")
            print(f"| {name} | {q['rows']} | " + " | ".join(cells) + " |")
    if thr:
        print("\n| suite | SF | engine | streams | queries | seconds | queries/hour |")
        print("|---|---|---|---|---|---|---|")
        for (suite, sf), by in sorted(thr.items()):
            for e in ENGINES:
                if e in by:
                    t = by[e]
                    print(f"| {suite} | {sf:g} | {e} | {t['streams']} | {t['queries_completed']} | "
                          f"{t['elapsed_s']:.1f} | {t['queries_per_hour']:,.0f} |")


if __name__ == "__main__":
    main()
