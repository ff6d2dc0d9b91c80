#!/usr/bin/env bash
# Table layout (issue 29): small files and compaction, and point lookups by an index.
#
#   1. 10,000 single-row INSERTs into a table partitioned by month (12 months), then OPTIMIZE:
#      files before and after, the time of each, and the same answers before and after.
#   2. Point lookups on SSB lineorder (a copy of an SSB warehouse made by `strata bench load`):
#      by lo_orderkey (the order the rows were generated in) and by lo_custkey (spread over
#      every file), before and after CREATE INDEX on the column. Median of 5 hot runs, and the
#      bytes the Parquet reader fetched (EXPLAIN ANALYZE's bytes_scanned) against the table's.
#
# Usage: benches/layout_bench.sh path/to/strata [ssb-warehouse] [inserts|lookups|all]
# (a release build)
# The DuckDB side: benches/layout_bench_duckdb.py (needs peers.py load-native --suite ssb).
set -euo pipefail
strata=${1:-target/release/strata}
ssb=${2:-$HOME/.cache/strata-bench/strata/ssb-sf10}
parts=${3:-all}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

if [ "$parts" != lookups ]; then
echo "== 10,000 single-row inserts, then OPTIMIZE"
wh="$work/small"
"$strata" --warehouse "$wh" -c "CREATE TABLE events (id BIGINT, at DATE, kind VARCHAR, v DECIMAL(10, 1))
  PARTITION BY RANGE (at) INTERVAL (1 MONTH)" > /dev/null
# v is DECIMAL: a sum of doubles changes in its last digits with the order rows are added in.
python3 - "$work/inserts.sql" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(10000):
        f.write(f"INSERT INTO events VALUES ({i}, DATE '2024-01-01' + {(i * 37) % 365}, "
                f"'k{i % 7}', {i % 1000 / 10});\n")
EOF
start=$(now)
"$strata" --warehouse "$wh" -f "$work/inserts.sql" > /dev/null
printf 'inserts: %.1f s\n' "$(since "$start")"
answers="SELECT date_trunc('month', at) AS m, count(*) AS n, sum(v) AS s, min(id) AS lo, max(id) AS hi,
  count(DISTINCT kind) AS kinds FROM events GROUP BY 1 ORDER BY 1"
files="SELECT sum(file_count) AS files, max(file_count) AS most_in_a_partition, count(*) AS partitions
  FROM system.partitions WHERE table_name = 'events'"
before=$("$strata" --warehouse "$wh" --format csv -c "$answers")
"$strata" --warehouse "$wh" --format csv -c "$files"
start=$(now)
"$strata" --warehouse "$wh" -c "OPTIMIZE events"
printf 'OPTIMIZE: %.2f s\n' "$(since "$start")"
"$strata" --warehouse "$wh" --format csv -c "$files"
after=$("$strata" --warehouse "$wh" --format csv -c "$answers")
[ "$before" = "$after" ] && echo "answers: the same before and after" || { echo "ANSWERS DIFFER"; exit 1; }
start=$(now)
"$strata" --warehouse "$wh" --format csv -c "$answers" > /dev/null
printf 'query over the compacted table: %.2f s\n' "$(since "$start")"
fi
[ "$parts" = inserts ] && exit 0

echo "== Point lookups on lineorder"
wh="$work/ssb"
cp -r "$ssb" "$wh"
total=$("$strata" --warehouse "$wh" --format csv -c \
  "SELECT sum(size_bytes) AS b FROM system.partitions WHERE table_name = 'lineorder'" | tail -1)
lookup() {  # label, sql[, settings]: median of 5 hot runs in one process, bytes fetched
  local label=$1 sql=$2 settings=${3:-}
  python3 - "$strata" "$wh" "$sql" "$total" "$label" "$settings" <<'EOF'
import re, statistics, subprocess, sys
strata, wh, sql, total, label, settings = sys.argv[1:]
run = lambda text: subprocess.run([strata, "--warehouse", wh, "--format", "csv", "-c", text],
                                  capture_output=True, text=True, check=True).stdout
run(settings + ";\n".join([sql] * 6))
# The query log's durations of those six runs; the first one is cold.
key = sql.replace("'", "''")
log = run(f"SELECT duration_ms FROM system.query_log WHERE query_text = '{key}' "
          "ORDER BY started_at DESC LIMIT 6").split()[1:]
times = [int(ms) / 1000 for ms in log][:5]
plan = run(settings + "EXPLAIN ANALYZE " + sql)
# The Parquet reader's bytes_scanned (DataSourceExec), not the scan's file-level figure.
unit = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
scanned = sum(float(n) * unit[u] for line in plan.splitlines() if "DataSourceExec" in line
              for n, u in re.findall(r"bytes_scanned=([0-9.]+) ?([KMGT]?)", line))
index = re.search(r"index=([\w ]+)", plan)
print(f"{label:<44} median {statistics.median(times):.3f} s of {len(times)}   "
      f"read {scanned / 1e6:8.1f} MB of {int(total) / 1e6:.0f} MB ({100 * scanned / int(total):.2f}%)   "
      f"index: {index.group(1) if index else '-'}")
EOF
}
by_order="SELECT * FROM lineorder WHERE lo_orderkey = 31415937"
by_customer="SELECT count(*), sum(lo_revenue) FROM lineorder WHERE lo_custkey = 123457"
nocache="SET strata.scan_cache = false; "
lookup "lo_orderkey = k, no index, scan cache" "$by_order"
lookup "lo_orderkey = k, no index, no scan cache" "$by_order" "$nocache"
lookup "lo_custkey = k, no index, scan cache" "$by_customer"
lookup "lo_custkey = k, no index, no scan cache" "$by_customer" "$nocache"
start=$(now)
"$strata" --warehouse "$wh" -c "CREATE INDEX lo_custkey_idx ON lineorder (lo_custkey)"
printf 'CREATE INDEX on lo_custkey: %.1f s\n' "$(since "$start")"
lookup "lo_custkey = k, B-tree index" "$by_customer"
lookup "lo_orderkey = k, files sorted by lo_custkey" "$by_order"
"$strata" --warehouse "$wh" -c "CREATE INDEX lo_orderkey_hash ON lineorder USING HASH (lo_orderkey)" > /dev/null
lookup "lo_orderkey = k, hash index (bloom filters)" "$by_order"
