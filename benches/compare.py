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
    print("| suite | SF | " + " | ".join(engines) + " |")
    print("|---|---|" + "---|" * len(engines))
    for (suite, sf), by in sorted(runs.items()):
        cells = [f"{by[e]['geomean_hot_s']:.3f}" if e in by else "—" for e in engines]
        print(f"| {suite} | {sf:g} | " + " | ".join(cells) + " |")
    for (suite, sf), by in sorted(runs.items()):
        if "strata" not in by or len(by) < 2:
            continue
        print(f"\n#### {suite.upper()} SF {sf:g}: median hot seconds per query\n")
        cols = [e for e in engines if e in by]
        print("| query | rows | " + " | ".join(cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        per = {e: {q["query"]: q for q in by[e]["queries"]} for e in cols}
        for q in by["strata"]["queries"]:
            cells = [f"{per[e][q['query']]['median_hot_s']:.3f}" if q["query"] in per[e] else "—" for e in cols]
            print(f"| {q['query']} | {q['rows']} | " + " | ".join(cells) + " |")
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
