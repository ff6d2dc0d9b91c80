#!/usr/bin/env python3
"""Record reference answers for `strata bench run` with DuckDB on the generated Parquet files.

usage: record_answers.py --suite ssb|tpch --sf 0.01 [--data ~/.cache/strata-bench]
Writes benches/answers/<suite>-sf<SF>.json: per query the row count and the fingerprint of
../shared/bench/peers.py (per column the sum of numeric values, or a hash of the sorted text).
Answers for SF 1 and SF 10 come from the peer baseline (duckdb-parquet results) instead.
Needs: pip install duckdb pyarrow
"""
import argparse, glob, hashlib, json, math, os

import duckdb

HERE = os.path.dirname(os.path.abspath(__file__))
TABLES = {"ssb": ["lineorder", "customer", "supplier", "part", "dwdate"],
          "tpch": ["lineitem", "orders", "customer", "supplier", "part", "partsupp", "nation", "region"]}


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fingerprint(table):
    """Identical to peers.py's fingerprint()."""
    cols = [c.to_pylist() for c in table.columns]
    fp = []
    for col in cols:
        vals = [v for v in col if v is not None]
        nums = [_num(v) for v in vals] if vals and not isinstance(vals[0], str) else None
        if nums is not None and all(x is not None for x in nums):
            fp.append({"sum": math.fsum(nums), "nulls": len(col) - len(vals)})
        else:
            h = hashlib.sha1("\x1f".join(sorted(str(v).rstrip() for v in vals)).encode()).hexdigest()[:12]
            fp.append({"hash": h, "nulls": len(col) - len(vals)})
    return {"rows": table.num_rows, "fingerprint": fp}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", required=True, choices=list(TABLES))
    ap.add_argument("--sf", required=True)
    ap.add_argument("--data", default=os.environ.get("WHBENCH_DATA", os.path.expanduser("~/.cache/strata-bench")))
    args = ap.parse_args()
    data = os.path.join(args.data, args.suite, f"sf{args.sf}")
    con = duckdb.connect()
    for t in TABLES[args.suite]:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{os.path.join(data, t + '.parquet')}')")
    answers = {}
    for q in sorted(glob.glob(os.path.join(HERE, "queries", args.suite, "q*.sql"))):
        name = os.path.basename(q)[:-4]
        answers[name] = fingerprint(con.sql(open(q).read()).to_arrow_table())
    out = os.path.join(HERE, "answers", f"{args.suite}-sf{args.sf}.json")
    with open(out, "w") as f:
        json.dump({"source": f"DuckDB {duckdb.__version__} on the Parquet files of `strata bench gen` "
                             f"(benches/record_answers.py)", "queries": answers}, f, indent=1)
    print(f"wrote {out}: {len(answers)} queries")


if __name__ == "__main__":
    main()
