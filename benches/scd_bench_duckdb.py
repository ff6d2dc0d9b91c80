#!/usr/bin/env python3
"""The hand-written SCD Type 2 MERGE of benches/scd_bench.sh on DuckDB's native format,
2 threads, for comparison: 100k changes into a 1M-key dimension.

Usage: python benches/scd_bench_duckdb.py [keys] [changes]   (pip install duckdb)
"""
import os, sys, tempfile, time, duckdb

keys = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
changes = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
con = duckdb.connect(os.path.join(tempfile.mkdtemp(), "d.duckdb"))
con.execute("SET threads = 2")
tier = "CASE u % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE 'team' END"
con.execute(f"""CREATE TABLE hand_users AS SELECT u AS user_id, 'u' || u || '@x.com' AS email,
  {tier} AS tier, 'city' || (u % 100) AS city, TIMESTAMP '2024-01-01 00:00:00' AS effective_date,
  TIMESTAMP '9999-12-31 00:00:00' AS end_date, true AS is_current
  FROM (SELECT range AS u FROM range(1, {keys} + 1))""")
con.execute(f"""CREATE TABLE changes AS SELECT u AS user_id, 'u' || u || '@x.com' AS email,
  CASE WHEN v <= {changes} * 8 // 10 THEN 'enterprise' ELSE {tier} END AS tier,
  CASE WHEN v > {changes} * 8 // 10 AND v <= {changes} * 9 // 10 THEN 'moved' ELSE 'city' || (u % 100) END AS city,
  TIMESTAMP '2024-02-01 00:00:00' AS updated_at
  FROM (SELECT range AS v, CASE WHEN range <= {changes} * 9 // 10 THEN range * ({keys} // {changes} - 1)
                                ELSE {keys} + range END AS u FROM range(1, {changes} + 1))""")
con.execute("CHECKPOINT")
t = time.time()
con.execute("""
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
    VALUES (s.user_id, s.email, s.tier, s.city, s.updated_at, TIMESTAMP '9999-12-31 00:00:00', true)""")
con.execute("CHECKPOINT")
print(f"hand-written MERGE: {changes} changes      {time.time() - t:6.2f} s")
print(con.execute("SELECT count(*), sum(CASE WHEN is_current THEN 1 ELSE 0 END) FROM hand_users").fetchone())
