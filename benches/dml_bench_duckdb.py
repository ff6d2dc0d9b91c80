#!/usr/bin/env python3
"""The statements of benches/dml_bench.sh on DuckDB's native format, 2 threads, for comparison.

Usage: python benches/dml_bench_duckdb.py [rows]   (pip install duckdb)
"""
import sys, time, duckdb, tempfile, os
rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
path = os.path.join(tempfile.mkdtemp(), "d.duckdb")
con = duckdb.connect(path)
con.execute("SET threads = 2")
t = time.time()
con.execute(f"""CREATE TABLE facts AS SELECT range AS id, DATE '2015-01-01' + CAST(range % 3650 AS INT) AS d,
  CAST(range % 100000 AS INT) AS customer, (range % 1000) / 10.0 AS amount, 'n' || (range % 97) AS note
  FROM range(1, {rows} + 1)""")
con.execute("CHECKPOINT")
print(f"loaded {rows} rows in {time.time() - t:.2f} s")
con.execute("CREATE TABLE spread AS SELECT id, amount + 1 AS amount FROM facts WHERE id % 100 = 0")
con.execute(f"""CREATE TABLE one_month AS SELECT id, amount + 1 AS amount FROM facts
  WHERE d >= DATE '2020-03-01' AND d < DATE '2020-04-01' AND id % 3 = 0 LIMIT {rows // 100}""")
con.execute("CHECKPOINT")
for label, sql in [
    ("MERGE 1% spread", "MERGE INTO facts t USING spread s ON t.id = s.id WHEN MATCHED THEN UPDATE SET amount = s.amount"),
    ("MERGE within one month", "MERGE INTO facts t USING one_month s ON t.id = s.id AND t.d >= DATE '2020-03-01' AND t.d < DATE '2020-04-01' WHEN MATCHED THEN UPDATE SET amount = s.amount"),
    ("UPDATE one day", "UPDATE facts SET amount = 0 WHERE d = DATE '2021-06-15'"),
    ("DELETE one day", "DELETE FROM facts WHERE d = DATE '2021-06-16'"),
]:
    t = time.time()
    con.execute(sql)
    con.execute("CHECKPOINT")
    print(f"{label:28s} {time.time() - t:6.2f} s")
