"""One large result fetched over each of `strata serve`'s wire protocols, in rows/s.

- PostgreSQL, binary format: libpq (psycopg's) receives the rows in chunks of 10,000 with
  `result_format=1`, without turning values into Python objects, so the figure is the
  protocol's and the server's, not Python's.
- HTTP, Arrow IPC stream: `POST /v1/statements?format=arrow`, read by pyarrow as it arrives.
- Arrow Flight SQL: the ADBC driver's `fetch_arrow_table`.

The first run of each is cold; the median of the --hot runs after it is reported.

    strata serve --listen 127.0.0.1:32010 --pg-listen 127.0.0.1:5432 --http-listen 127.0.0.1:8080
    python benches/wire_bench.py --password "$STRATA_PASSWORD" --rows 10000000
"""

import argparse
import base64
import statistics
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.ipc
from psycopg import pq

TABLE = "wire_bench"


def setup(args):
    """A table of `rows` rows and 10 columns: integers, decimals, floats, dates, timestamps,
    booleans and text, as a BI extract would read."""
    sql = (
        f"CREATE TABLE {TABLE} AS SELECT value AS id, value % 1000 AS k, "
        "CAST(CAST(value % 100000 AS DECIMAL(12,2)) / 100 AS DECIMAL(12,2)) AS amount, "
        "CAST(value AS DOUBLE) * 0.5 AS ratio, "
        "CAST(DATE '2020-01-01' + CAST(value % 1500 AS INT) AS DATE) AS day, "
        "to_timestamp_seconds(1577836800 + value % 100000) AS at, "
        "value % 2 = 0 AS even, 'customer-' || CAST(value % 5000 AS VARCHAR) AS name, "
        "value * 3 AS qty, CAST(value % 97 AS INT) AS bucket "
        f"FROM generate_series(1, {args.rows})"
    )
    with flightsql.connect(args.flight, db_kwargs={"username": args.user,
                                                    "password": args.password}) as conn:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute(sql)
        cur.fetchall()


def pg_binary(args, sql):
    conn = pq.PGconn.connect(
        f"host={args.pg_host} port={args.pg_port} user={args.user} password={args.password} "
        "dbname=main".encode()
    )
    if conn.status != pq.ConnStatus.OK:
        raise SystemExit(conn.get_error_message().decode())
    try:
        conn.send_query_params(sql.encode(), None, result_format=pq.Format.BINARY)
        conn.set_chunked_rows_mode(10000)
        rows = 0
        while (result := conn.get_result()) is not None:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                raise SystemExit(result.get_error_message().decode())
            rows += result.ntuples
        return rows
    finally:
        conn.finish()


def http_arrow(args, sql):
    request = urllib.request.Request(
        args.http.rstrip("/") + "/v1/statements?format=arrow",
        data=f'{{"statement": "{sql}"}}'.encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(
                f"{args.user}:{args.password}".encode()).decode(),
        },
    )
    with urllib.request.urlopen(request) as response:
        reader = pyarrow.ipc.open_stream(response)
        return sum(batch.num_rows for batch in reader)


def flight(args, sql):
    with flightsql.connect(args.flight, db_kwargs={"username": args.user,
                                                    "password": args.password}) as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetch_arrow_table().num_rows


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flight", default="grpc://127.0.0.1:32010")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", default="5432")
    p.add_argument("--http", default="http://127.0.0.1:8080")
    p.add_argument("--user", default="strata")
    p.add_argument("--password", required=True)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--hot", type=int, default=3)
    p.add_argument("--no-setup", action="store_true", help="the table exists already")
    args = p.parse_args()
    if not args.no_setup:
        setup(args)
    sql = f"SELECT * FROM {TABLE}"
    print(f"{args.rows:,} rows x 10 columns; median of {args.hot} hot runs after a cold one")
    for name, fetch in [("PostgreSQL (binary)", pg_binary), ("HTTP (Arrow stream)", http_arrow),
                        ("Flight SQL (ADBC)", flight)]:
        times = []
        for _ in range(args.hot + 1):
            start = time.perf_counter()
            got = fetch(args, sql)
            times.append(time.perf_counter() - start)
            if got != args.rows:
                raise SystemExit(f"{name}: {got} rows, expected {args.rows}")
        median = statistics.median(times[1:])
        print(f"{name:22} cold {times[0]:7.2f} s   hot {median:7.2f} s   "
              f"{args.rows / median:14,.0f} rows/s")


if __name__ == "__main__":
    main()
