#!/usr/bin/env bash
# Materialized views on the Star Schema Benchmark:
#  1. the 13 queries on a copy of the loaded SSB warehouse, without views (answers checked);
#  2. the views of ssb_views.sql created (timed), the 13 queries again (answers checked, so a
#     wrong rewrite fails the run), and which queries EXPLAIN shows reading a view;
#  3. one day of lineorder appended, then each view refreshed incrementally and fully (timed).
# usage: benches/mv/mv_bench.sh <strata binary> [scale factor]   (after `strata bench load`)
set -euo pipefail
strata=$(realpath "${1:?usage: mv_bench.sh <strata binary> [sf]}")
sf=${2:-1}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source_wh=${WHBENCH_DATA:-$HOME/.cache/strata-bench}/strata/ssb-sf$sf
[ -d "$source_wh" ] || { echo "no SSB SF$sf warehouse at $source_wh: run '$strata bench load --suite ssb --sf $sf'" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wh=$work/ssb
cp -r "$source_wh" "$wh"
now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
run() { "$strata" -w "$wh" --format csv -c "$1"; }

echo "== without views"
"$strata" bench run --suite ssb --sf "$sf" --warehouse "$wh" --results "$work/before" --hot 5
t0=$(now); "$strata" -w "$wh" -f "$here/ssb_views.sql" >/dev/null; t1=$(now)
echo "== views created in $(elapsed "$t0" "$t1") s"
run "SELECT view_name, rows FROM system.materialized_views ORDER BY view_name"
echo "== with views"
"$strata" bench run --suite ssb --sf "$sf" --warehouse "$wh" --results "$work/after" --hot 5
echo "== rewritten queries"
for q in "$repo"/benches/queries/ssb/*.sql; do
  plan=$(run "SET datafusion.explain.logical_plan_only = true; EXPLAIN $(cat "$q")")
  view=$(grep -o 'mv_ssb_flight[0-9]' <<<"$plan" | head -1 || true)
  echo "$(basename "$q" .sql): ${view:-base tables}"
done
last=$(run "SELECT max(lo_orderdate) AS d FROM lineorder" | tail -1)
echo "== append one day of lineorder (copy of $last as new order keys)"
run "INSERT INTO lineorder SELECT lo_orderkey + 100000000, lo_linenumber, lo_custkey, lo_partkey, lo_suppkey, lo_orderdate, lo_orderpriority, lo_shippriority, lo_quantity, lo_extendedprice, lo_ordtotalprice, lo_discount, lo_revenue, lo_supplycost, lo_tax, lo_commitdate, lo_shipmode FROM lineorder WHERE lo_orderdate = $last" 
for v in mv_ssb_flight1 mv_ssb_flight2 mv_ssb_flight3 mv_ssb_flight4; do
  t0=$(now); out=$(run "REFRESH MATERIALIZED VIEW $v" | tail -1); t1=$(now)
  t2=$(now); run "REFRESH MATERIALIZED VIEW $v FULL" >/dev/null; t3=$(now)
  echo "$v: incremental $(elapsed "$t0" "$t1") s, full $(elapsed "$t2" "$t3") s  ($out)"
done
