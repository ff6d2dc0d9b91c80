#!/usr/bin/env bash
# Partitioned load and pruning benchmark (issue 2).
#
# 1. Generates 6M rows shaped like SSB lineorder (17 columns, 84 months of order dates) as one
#    Parquet file, with DuckDB.
# 2. Loads them into a month-partitioned Strata table with COPY INTO, and has DuckDB write the
#    same rows as month-partitioned Parquet: rows/s for both.
# 3. Runs a one-month aggregate on the partitioned table and on an unpartitioned copy: median
#    time and bytes scanned, from system.query_log.
#
# usage: benches/partitioned_load/run.sh [WORK_DIR] [ROWS]
# needs: a release build (cargo build --release --bin strata) and python3 with duckdb.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-/tmp/strata-partitioned-load}"
rows="${2:-6000000}"
strata="${STRATA_BIN:-${CARGO_TARGET_DIR:-$here/../../target}/release/strata}"
python="${PYTHON:-python3}"
mkdir -p "$work"
rm -rf "$work/wh" "$work/duckdb_out"

"$python" "$here/peer.py" generate "$work/lineorder.parquet" "$rows"

columns="lo_orderkey BIGINT, lo_linenumber INT, lo_custkey INT, lo_partkey INT, lo_suppkey INT,
  lo_orderdate DATE, lo_orderpriority VARCHAR, lo_shippriority INT, lo_quantity INT,
  lo_extendedprice BIGINT, lo_ordtotalprice BIGINT, lo_discount INT, lo_revenue BIGINT,
  lo_supplycost BIGINT, lo_tax INT, lo_commitdate DATE, lo_shipmode VARCHAR"

start=$(date +%s.%N)
"$strata" -w "$work/wh" -c "CREATE TABLE lineorder ($columns) PARTITION BY RANGE (lo_orderdate) INTERVAL (1 MONTH);
  COPY INTO lineorder FROM '$work/lineorder.parquet' FILE_FORMAT = (TYPE = PARQUET)" > /dev/null
end=$(date +%s.%N)
strata_load=$(echo "$end - $start" | bc -l)

"$strata" -w "$work/wh" -c "CREATE TABLE lineorder_flat ($columns);
  COPY INTO lineorder_flat FROM '$work/lineorder.parquet' FILE_FORMAT = (TYPE = PARQUET)" > /dev/null

duck_load=$("$python" "$here/peer.py" partition "$work/lineorder.parquet" "$work/duckdb_out")

query="SELECT sum(lo_revenue) AS revenue, count(*) AS orders FROM %s WHERE lo_orderdate BETWEEN DATE '1997-12-01' AND DATE '1997-12-31'"
for table in lineorder lineorder_flat; do
  for _ in 1 2 3 4 5; do
    "$strata" -w "$work/wh" --format csv -c "$(printf "$query" "$table")" > /dev/null
  done
done

echo "rows: $rows"
printf "load: strata %.2fs (%.0f rows/s), duckdb partitioned parquet %.2fs (%.0f rows/s)\n" \
  "$strata_load" "$(echo "$rows / $strata_load" | bc -l)" "$duck_load" "$(echo "$rows / $duck_load" | bc -l)"
"$strata" -w "$work/wh" -c "SELECT regexp_replace(query_text, ' WHERE.*', '') AS query,
    median(duration_ms) AS median_ms, min(duration_ms) AS min_ms,
    max(partitions_scanned) AS partitions_scanned, max(partitions_total) AS partitions_total,
    max(files_scanned) AS files_scanned, max(bytes_scanned) AS bytes_scanned
  FROM system.query_log WHERE query_text LIKE 'SELECT sum(lo_revenue)%' GROUP BY 1 ORDER BY 1"
"$strata" -w "$work/wh" -c "SELECT table_name, count(*) AS partitions, sum(file_count) AS files, sum(row_count) AS rows, sum(size_bytes) AS bytes FROM system.partitions GROUP BY 1 ORDER BY 1"
