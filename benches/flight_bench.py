"""Flight SQL client benchmark against a running `strata serve`.

1. Streaming: rows/s and MB/s (Arrow buffer bytes) of one large result fetched by the ADBC
   Flight SQL driver and by pyarrow.flight (cold run, then --hot runs; median of the hot runs).
2. Short queries: queries/s of --short-sql at each of --clients concurrent clients (threads,
   one ADBC connection each) for --seconds.

Compare with `strata bench stream --sql ...` (the same result through the embedded API).

    python benches/flight_bench.py --uri grpc://127.0.0.1:32010 --password "$STRATA_PASSWORD" \
        --sql "SELECT * FROM lineorder LIMIT 10000000" --short-sql "SELECT count(*) FROM date"
"""

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def statement_query(sql):
    """A CommandStatementQuery packed in a protobuf Any."""
    url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, url) + field(2, field(1, sql.encode()))


def read_endpoint(client, endpoint, options):
    rows = nbytes = 0
    for chunk in client.do_get(endpoint.ticket, options):
        rows += chunk.data.num_rows
        nbytes += chunk.data.nbytes
    return rows, nbytes


def report(name, runs):
    for i, (rows, nbytes, seconds) in enumerate(runs):
        label = "cold" if i == 0 else f"hot{i}"
        print(
            f"{name:8} {label:5} {rows:>11} rows {nbytes / 1e6:>9.1f} MB {seconds:>7.3} s "
            f"{rows / seconds:>13,.0f} rows/s {nbytes / 1e6 / seconds:>8.1f} MB/s"
        )
    hot = runs[1:] or runs
    rate = statistics.median(r / s for r, _, s in hot)
    mbps = statistics.median(b / 1e6 / s for _, b, s in hot)
    print(f"{name:8} median hot: {rate:,.0f} rows/s, {mbps:.1f} MB/s")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--uri", default="grpc://127.0.0.1:32010")
    p.add_argument("--user", default="strata")
    p.add_argument("--password", required=True)
    p.add_argument("--sql", required=True, help="the large result to stream")
    p.add_argument("--hot", type=int, default=3)
    p.add_argument("--short-sql", default="SELECT 1")
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args()

    def connect():
        return flightsql.connect(a.uri, db_kwargs={"username": a.user, "password": a.password})

    runs = []
    with connect() as conn, conn.cursor() as cur:
        for _ in range(a.hot + 1):
            start = time.perf_counter()
            cur.execute(a.sql)
            table = cur.fetch_arrow_table()
            runs.append((table.num_rows, table.nbytes, time.perf_counter() - start))
            del table
    report("adbc", runs)

    client = flight.FlightClient(a.uri)
    options = flight.FlightCallOptions(
        headers=[client.authenticate_basic_token(a.user, a.password)]
    )
    runs = []
    for _ in range(a.hot + 1):
        start = time.perf_counter()
        info = client.get_flight_info(
            flight.FlightDescriptor.for_command(statement_query(a.sql)), options
        )
        # Every endpoint holds part of the result: read them all, side by side.
        with ThreadPoolExecutor(max_workers=max(1, len(info.endpoints))) as pool:
            parts = list(pool.map(lambda e: read_endpoint(client, e, options), info.endpoints))
        rows, nbytes = sum(p[0] for p in parts), sum(p[1] for p in parts)
        runs.append((rows, nbytes, time.perf_counter() - start))
    report("pyarrow", runs)

    for clients in [int(c) for c in a.clients.split(",")]:
        done = [0] * clients
        barrier = threading.Barrier(clients + 1)

        def work(i):
            with connect() as conn, conn.cursor() as cur:
                barrier.wait()
                stop = time.perf_counter() + a.seconds
                while time.perf_counter() < stop:
                    cur.execute(a.short_sql)
                    cur.fetchall()
                    done[i] += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        barrier.wait()
        begun = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - begun
        print(f"short query, {clients:>2} clients: {sum(done) / elapsed:8.1f} queries/s")


if __name__ == "__main__":
    main()
