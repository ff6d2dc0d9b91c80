#!/usr/bin/env bash
# Overhead of data-test gates (`test_on_load = true`) on a 1M-row COPY INTO of SSB lineorder
# (the first 1M rows of SF 10), with the tests a star schema usually carries: the key unique,
# a foreign key not null and present in customer, a code in its accepted values, rows > 0.
# Prints each run's wall time without tests, then with the five tests gating the load, then
# each test's own time from system.data_test_results.
#
# Usage: benches/gate_bench.sh [path/to/strata] [ssb_dir]   (a release build, and SSB SF 10
# as `strata bench` generates it: ~/.cache/strata-bench/ssb/sf10)
set -euo pipefail
strata=${1:-target/release/strata}
ssb=${2:-$HOME/.cache/strata-bench/ssb/sf10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wh=$work/wh
run() { "$strata" --warehouse "$wh" -c "$1" >/dev/null; }
run "CREATE EXTERNAL TABLE lo_src STORED AS PARQUET LOCATION '$ssb/lineorder.parquet';
     CREATE EXTERNAL TABLE cust_src STORED AS PARQUET LOCATION '$ssb/customer.parquet';
     CREATE TABLE customer AS SELECT * FROM cust_src;
     CREATE TABLE lineorder AS SELECT * FROM lo_src LIMIT 0;
     COPY INTO '$work/lo1m/' FROM (SELECT * FROM lo_src LIMIT 1000000) FILE_FORMAT = (TYPE = PARQUET)"
load() {
  for i in 1 2 3 4; do
    run "ALTER TABLE lineorder SET (test_on_load = false); TRUNCATE lineorder;
         ALTER TABLE lineorder SET (test_on_load = $2)"
    start=$(date +%s.%N)
    run "COPY INTO lineorder FROM '$work/lo1m/' FILE_FORMAT = (TYPE = PARQUET) FORCE = TRUE"
    end=$(date +%s.%N)
    awk -v l="$1" -v i="$i" -v s="$start" -v e="$end" 'BEGIN { printf "%s, run %d: %.2f s\n", l, i, e - s }'
  done
}
load "no tests" false
run "ALTER TABLE lineorder ADD TEST unique(lo_orderkey, lo_linenumber);
     ALTER TABLE lineorder ADD TEST not_null(lo_custkey);
     ALTER TABLE lineorder ADD TEST relationships(lo_custkey, customer(c_custkey));
     ALTER TABLE lineorder ADD TEST accepted_values(lo_shipmode, ('AIR', 'FOB', 'MAIL', 'RAIL', 'REG AIR', 'SHIP', 'TRUCK'));
     ALTER TABLE lineorder ADD TEST row_count(> 0)"
load "5 tests, gated" true
"$strata" --warehouse "$wh" -c "SELECT test_name, status, failing_rows, elapsed_ms
  FROM system.data_test_results ORDER BY started_at DESC LIMIT 5"
