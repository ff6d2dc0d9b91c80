#!/usr/bin/env bash
# DML on a 10M-row table range-partitioned by month (120 partitions):
#   - MERGE of 1% of the rows spread over every month,
#   - MERGE of a third of one month's rows,
#   - UPDATE and DELETE of one day.
# Prints each statement's wall time, and the rows and bytes it wrote (data files and deletion
# vectors) against the table's. `STRATA_DML_REWRITE_SHARE=0` runs them copy-on-write.
#
# Usage: benches/dml_bench.sh [path/to/strata] [rows]   (a release build: cargo build --release)
set -euo pipefail
strata=${1:-target/release/strata}
rows=${2:-10000000}
wh=$(mktemp -d)
trap 'rm -rf "$wh"' EXIT
share=${STRATA_DML_REWRITE_SHARE:-0.5}
run() { "$strata" --warehouse "$wh" --format csv --set "strata.dml_rewrite_share=$share" -c "$1"; }
timed() {
  local label=$1 sql=$2 start end
  touch "$wh/marker"
  sleep 1
  start=$(date +%s.%N)
  run "$sql" > /dev/null
  end=$(date +%s.%N)
  local written
  written=$(find "$wh/tables" \( -name '*.parquet' -o -name '*.dv' \) -newer "$wh/marker" -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  local total
  total=$(run "SELECT sum(size_bytes) AS b FROM system.partitions WHERE table_name = 'facts'" | tail -1)
  local change
  change=$(run "SELECT rows_added, rows_removed FROM system.table_versions WHERE table_name = 'facts' ORDER BY version DESC LIMIT 1" | tail -1)
  printf '%-34s %7.2f s   rows added,removed %-18s bytes written %6.1f MB of %6.1f MB (%4.1f%%)\n' \
    "$label" "$(echo "$end - $start" | bc)" "$change" \
    "$(echo "$written / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)" \
    "$(echo "100 * $written / $total" | bc -l)"
}

touch "$wh/marker"
run "CREATE TABLE facts (id BIGINT, d DATE, customer INT, amount DOUBLE, note VARCHAR)
     PARTITION BY RANGE (d) INTERVAL (1 MONTH)" > /dev/null
start=$(date +%s.%N)
run "INSERT INTO facts SELECT value, DATE '2015-01-01' + CAST(value % 3650 AS INT),
       CAST(value % 100000 AS INT), (value % 1000) / 10.0, 'n' || (value % 97)
     FROM generate_series(1, $rows)" > /dev/null
end=$(date +%s.%N)
printf 'loaded %d rows in %.2f s\n' "$rows" "$(echo "$end - $start" | bc)"
run "CREATE TABLE spread AS SELECT id, amount + 1 AS amount FROM facts WHERE id % 100 = 0" > /dev/null
run "CREATE TABLE one_month AS SELECT id, amount + 1 AS amount FROM facts
     WHERE d >= DATE '2020-03-01' AND d < DATE '2020-04-01' AND id % 3 = 0
     LIMIT $((rows / 100))" > /dev/null

timed "MERGE 100k rows (1%), all months" \
  "MERGE INTO facts t USING spread s ON t.id = s.id WHEN MATCHED THEN UPDATE SET amount = s.amount"
timed "MERGE 27k rows, one month" \
  "MERGE INTO facts t USING one_month s ON t.id = s.id AND t.d >= DATE '2020-03-01' AND t.d < DATE '2020-04-01'
   WHEN MATCHED THEN UPDATE SET amount = s.amount"
timed "UPDATE one day" "UPDATE facts SET amount = 0 WHERE d = DATE '2021-06-15'"
timed "DELETE one day" "DELETE FROM facts WHERE d = DATE '2021-06-16'"
