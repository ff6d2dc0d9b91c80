#!/usr/bin/env bash
# SCD Type 2: APPLY CHANGES of 100k changes into a 1M-key dimension, beside the hand-written
# MERGE pattern on an ordinary table (benches/scd_bench_duckdb.py runs that pattern on DuckDB).
#   - initial load: 1M keys, one version each (APPLY CHANGES into an empty dimension),
#   - 100k changes: 80k tracked changes (a new version each), 10k untracked changes (in place),
#     10k new keys,
#   - the same 100k again: a no-op, nothing committed.
# Prints wall times, versions opened/changed, and the bytes rewritten against the table's.
#
# Usage: benches/scd_bench.sh [path/to/strata] [keys] [changes]   (a release build)
set -euo pipefail
strata=${1:-target/release/strata}
keys=${2:-1000000}
changes=${3:-100000}
wh=$(mktemp -d)
trap 'rm -rf "$wh"' EXIT
run() { "$strata" --warehouse "$wh" --format csv -c "$1"; }
size() { find "$wh/tables" \( -name '*.parquet' -o -name '*.dv' \) -newer "$1" -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
timed() {
  local label=$1 sql=$2 start end out
  touch "$wh/marker"
  sleep 1
  start=$(date +%s.%N)
  out=$(run "$sql" | tail -1)
  end=$(date +%s.%N)
  local total
  total=$(run "SELECT sum(size_bytes) AS b FROM system.partitions WHERE table_name = '$3'" | tail -1)
  printf '%-44s %7.2f s   inserted,updated,deleted %-20s wrote %6.1f MB, table now %6.1f MB\n' \
    "$label" "$(echo "$end - $start" | bc)" "$out" \
    "$(echo "$(size "$wh/marker") / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)"
}
tier="CASE u % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE 'team' END"
run "CREATE TABLE dim_users (user_id BIGINT, email VARCHAR, tier VARCHAR, city VARCHAR)
     WITH (scd = 2, natural_key = 'user_id', tracked = 'email, tier');
     CREATE TABLE hand_users (user_id BIGINT, email VARCHAR, tier VARCHAR, city VARCHAR,
       effective_date TIMESTAMP, end_date TIMESTAMP, is_current BOOLEAN);
     CREATE TABLE initial AS SELECT u AS user_id, 'u' || u || '@x.com' AS email, $tier AS tier,
       'city' || (u % 100) AS city, TIMESTAMP '2024-01-01 00:00:00' AS updated_at
       FROM (SELECT value AS u FROM generate_series(1, $keys));
     CREATE TABLE changes AS SELECT u AS user_id, 'u' || u || '@x.com' AS email,
       CASE WHEN v <= $changes * 8 / 10 THEN 'enterprise' ELSE $tier END AS tier,
       CASE WHEN v > $changes * 8 / 10 AND v <= $changes * 9 / 10 THEN 'moved' ELSE 'city' || (u % 100) END AS city,
       TIMESTAMP '2024-02-01 00:00:00' AS updated_at
       FROM (SELECT value AS v, CASE WHEN value <= $changes * 9 / 10 THEN value * ($keys / $changes - 1)
                                     ELSE $keys + value END AS u
             FROM generate_series(1, $changes))" > /dev/null

timed "APPLY CHANGES: initial load, $keys keys" \
  "APPLY CHANGES INTO dim_users FROM initial KEY (user_id) SEQUENCE BY updated_at" dim_users
timed "APPLY CHANGES: $changes changes" \
  "APPLY CHANGES INTO dim_users FROM changes KEY (user_id) SEQUENCE BY updated_at" dim_users
timed "APPLY CHANGES: the same changes again" \
  "APPLY CHANGES INTO dim_users FROM changes KEY (user_id) SEQUENCE BY updated_at" dim_users
run "SELECT count(*) AS versions, sum(CASE WHEN is_current THEN 1 ELSE 0 END) AS current FROM dim_users"

# The hand-written pattern on an ordinary table (tracked columns only; city is not compared).
run "INSERT INTO hand_users SELECT user_id, email, tier, city, updated_at,
       TIMESTAMP '9999-12-31 00:00:00', true FROM initial" > /dev/null
timed "hand-written MERGE: $changes changes" "
  MERGE INTO hand_users d
  USING (
    SELECT c.user_id AS merge_key, c.* FROM changes c
    UNION ALL
    SELECT NULL AS merge_key, c.* FROM changes c
    JOIN hand_users h ON c.user_id = h.user_id AND h.is_current
    WHERE (c.email IS DISTINCT FROM h.email) OR (c.tier IS DISTINCT FROM h.tier)
  ) s
  ON d.user_id = s.merge_key AND d.is_current
  WHEN MATCHED AND ((d.email IS DISTINCT FROM s.email) OR (d.tier IS DISTINCT FROM s.tier)) THEN
    UPDATE SET end_date = s.updated_at, is_current = false
  WHEN NOT MATCHED THEN
    INSERT (user_id, email, tier, city, effective_date, end_date, is_current)
    VALUES (s.user_id, s.email, s.tier, s.city, s.updated_at, TIMESTAMP '9999-12-31 00:00:00', true)" hand_users
