#!/usr/bin/env python3
"""DuckDB's side of benches/layout_bench.sh: the same point lookups on its native SSB database
(../shared/bench/peers.py load-native --suite ssb --sf 10), 2 threads, median of 5 hot runs."""
import os
import statistics
import sys
import time

import duckdb

db = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/strata-bench/duckdb/ssb-sf10.duckdb")
con = duckdb.connect(db, read_only=True)
con.execute("SET threads = 2")
for label, sql in [
    ("lo_orderkey = k", "SELECT * FROM lineorder WHERE lo_orderkey = 31415937"),
    ("lo_custkey = k", "SELECT count(*), sum(lo_revenue) FROM lineorder WHERE lo_custkey = 123457"),
]:
    times = []
    for _ in range(6):
        start = time.perf_counter()
        con.sql(sql).to_arrow_table()
        times.append(time.perf_counter() - start)
    print(f"duckdb native {label:<20} median {statistics.median(times[1:]):.3f} s of 5 (first {times[0]:.3f} s)")
