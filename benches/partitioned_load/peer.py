#!/usr/bin/env python3
"""DuckDB side of the partitioned load benchmark.

generate OUT.parquet ROWS   writes ROWS lineorder-shaped rows (deterministic), 84 months of dates
partition IN.parquet OUTDIR writes IN as month-partitioned Parquet; prints seconds taken
"""
import sys, time
import duckdb

con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")

if sys.argv[1] == "generate":
    out, rows = sys.argv[2], int(sys.argv[3])
    con.execute(f"""
      COPY (
        SELECT i // 4 + 1 AS lo_orderkey, CAST(i % 4 + 1 AS INTEGER) AS lo_linenumber,
          CAST(hash(i, 1) % 30000 + 1 AS INTEGER) AS lo_custkey,
          CAST(hash(i, 2) % 200000 + 1 AS INTEGER) AS lo_partkey,
          CAST(hash(i, 3) % 2000 + 1 AS INTEGER) AS lo_suppkey,
          CAST(DATE '1992-01-01' + CAST(hash(i // 4) % 2557 AS INTEGER) AS DATE) AS lo_orderdate,
          ['1-URGENT', '2-HIGH', '3-MEDIUM', '4-NOT SPECI', '5-LOW'][CAST(hash(i, 4) % 5 + 1 AS BIGINT)] AS lo_orderpriority,
          0 AS lo_shippriority,
          CAST(hash(i, 5) % 50 + 1 AS INTEGER) AS lo_quantity,
          CAST(hash(i, 6) % 10000000 AS BIGINT) AS lo_extendedprice,
          CAST(hash(i, 7) % 40000000 AS BIGINT) AS lo_ordtotalprice,
          CAST(hash(i, 8) % 11 AS INTEGER) AS lo_discount,
          CAST(hash(i, 9) % 10000000 AS BIGINT) AS lo_revenue,
          CAST(hash(i, 10) % 100000 AS BIGINT) AS lo_supplycost,
          CAST(hash(i, 11) % 9 AS INTEGER) AS lo_tax,
          CAST(DATE '1992-01-01' + CAST(hash(i // 4) % 2557 + 30 AS INTEGER) AS DATE) AS lo_commitdate,
          ['AIR', 'FOB', 'MAIL', 'RAIL', 'REG AIR', 'SHIP', 'TRUCK'][CAST(hash(i, 12) % 7 + 1 AS BIGINT)] AS lo_shipmode
        FROM range({rows}) t(i)
      ) TO '{out}' (FORMAT parquet, COMPRESSION snappy)""")
elif sys.argv[1] == "partition":
    src, out = sys.argv[2], sys.argv[3]
    t0 = time.time()
    con.execute(f"""COPY (SELECT *, year(lo_orderdate) AS y, month(lo_orderdate) AS m
                          FROM read_parquet('{src}'))
                    TO '{out}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (y, m))""")
    print(f"{time.time() - t0:.3f}")
