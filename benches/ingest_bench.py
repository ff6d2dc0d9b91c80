"""Ingest-channel throughput of a running `strata serve`, and DuckDB's rate for the same batches.

Producers are pyarrow.flight clients, each on a channel of its own, streaming SSB lineorder-shaped
batches of --batch-rows rows for --seconds in one DoPut, every batch its own offset token
(app_metadata). Reported: rows acknowledged per second (an acknowledgment means committed and
durable), commits, and the table's files at the end. Then the peer: DuckDB inserting the same
batches one by one into its native format (`INSERT INTO lineorder SELECT * FROM batch`).

With --processes P, the channels are spread over P producer processes (threads of one process
share its GIL, which caps what one Python process can send).

With --continuous-view, a continuous materialized view counts lineorder's rows per order date
while the producers run, and a reader polls its total every 20 ms: for each acknowledgment, the
time until the view holds its rows is the commit-to-visible latency (p50, p99 reported).

    strata serve --warehouse /tmp/wh &        # STRATA_PASSWORD set
    python benches/ingest_bench.py --uri grpc://127.0.0.1:32010 --password "$STRATA_PASSWORD" \
        --seconds 60 --channels 1
"""

import argparse
import json
import multiprocessing
import tempfile
import threading
import time

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight

LINEORDER = """CREATE TABLE IF NOT EXISTS lineorder (
    lo_orderkey BIGINT, lo_linenumber INT, lo_custkey INT, lo_partkey INT, lo_suppkey INT,
    lo_orderdate INT, lo_orderpriority VARCHAR, lo_shippriority INT, lo_quantity INT,
    lo_extendedprice INT, lo_ordtotalprice INT, lo_discount INT, lo_revenue INT,
    lo_supplycost INT, lo_tax INT, lo_commitdate INT, lo_shipmode VARCHAR)"""


def lineorder_batch(rows):
    i = range(rows)
    ints = lambda f: pa.array([f(k) for k in i], pa.int32())  # noqa: E731
    return pa.RecordBatch.from_pydict(
        {
            "lo_orderkey": pa.array(i, pa.int64()),
            "lo_linenumber": ints(lambda k: k % 7 + 1),
            "lo_custkey": ints(lambda k: k % 30000 + 1),
            "lo_partkey": ints(lambda k: k % 200000 + 1),
            "lo_suppkey": ints(lambda k: k % 2000 + 1),
            "lo_orderdate": ints(lambda k: 19920101 + k % 28),
            "lo_orderpriority": pa.array(["1-URGENT", "2-HIGH", "3-MEDIUM"][k % 3] for k in i),
            "lo_shippriority": ints(lambda k: 0),
            "lo_quantity": ints(lambda k: k % 50 + 1),
            "lo_extendedprice": ints(lambda k: k % 100000 + 90000),
            "lo_ordtotalprice": ints(lambda k: k % 300000 + 100000),
            "lo_discount": ints(lambda k: k % 11),
            "lo_revenue": ints(lambda k: k % 100000 + 80000),
            "lo_supplycost": ints(lambda k: k % 1000 + 60000),
            "lo_tax": ints(lambda k: k % 9),
            "lo_commitdate": ints(lambda k: 19920201 + k % 28),
            "lo_shipmode": pa.array(["AIR", "MAIL", "RAIL", "SHIP", "TRUCK"][k % 5] for k in i),
        }
    )


VIEW = """CREATE MATERIALIZED VIEW IF NOT EXISTS lo_per_date WITH (refresh = 'continuous') AS
    SELECT lo_orderdate, count(*) AS n FROM lineorder GROUP BY lo_orderdate"""


def produce(args, channel, template, until, out, acks_at=None):
    client = flight.FlightClient(args.uri)
    options = flight.FlightCallOptions(
        headers=[client.authenticate_basic_token("strata", args.password)]
    )
    path = flight.FlightDescriptor.for_path("strata.ingest", "main.public.lineorder", channel, "")
    writer, reader = client.do_put(path, template.schema, options)
    acked = {"rows": 0, "acks": 0}

    def read_acks():
        while (buf := reader.read()) is not None:
            ack = json.loads(buf.to_pybytes())
            acked["rows"] += ack["rows"]
            acked["acks"] += 1
            if acks_at is not None:
                acks_at.append((time.monotonic(), ack["rows"]))

    thread = threading.Thread(target=read_acks, daemon=True)
    thread.start()
    base = template.column(0)
    columns = template.columns
    n = 0
    while time.monotonic() < until:
        columns[0] = pc.add(base, n * template.num_rows)
        batch = pa.RecordBatch.from_arrays(columns, schema=template.schema)
        writer.write_with_metadata(batch, pa.py_buffer(str(n).encode()))
        n += 1
    writer.done_writing()
    thread.join()
    writer.close()
    out[channel] = acked


def produce_in_process(args, channels, until, results):
    """Runs producers for `channels` as threads of this process; puts their acknowledgments."""
    template = lineorder_batch(args.batch_rows)
    out = {}
    threads = [
        threading.Thread(target=produce, args=(args, c, template, until, out)) for c in channels
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(out)


def watch_view(args, until, seen):
    """Polls the view's total until `until`: (time, total) pairs."""
    with flightsql.connect(
        args.uri, db_kwargs={"username": "strata", "password": args.password}
    ) as conn, conn.cursor() as cur:
        while time.monotonic() < until + 5:
            cur.execute("SELECT coalesce(sum(n), 0) FROM lo_per_date")
            seen.append((time.monotonic(), cur.fetchone()[0]))
            time.sleep(0.02)


def latencies(base, acks_at, seen):
    """For each acknowledgment, seconds until the view's total reached the rows acked so far."""
    out, total, i = [], base, 0
    for at, rows in sorted(acks_at):
        total += rows
        while i < len(seen) and (seen[i][1] < total or seen[i][0] < at):
            i += 1
        if i == len(seen):
            break
        out.append(seen[i][0] - at)
    return sorted(out)


def strata_run(args, template):
    with flightsql.connect(
        args.uri, db_kwargs={"username": "strata", "password": args.password}
    ) as conn, conn.cursor() as cur:
        cur.execute(LINEORDER)
        if args.continuous_view:
            cur.execute(VIEW)
        cur.execute("SELECT count(*) FROM lineorder")
        base = cur.fetchone()[0]
    # Channels of their own per run: a channel of an earlier run has committed these tokens.
    run = time.strftime("%Y%m%d%H%M%S")
    until = time.monotonic() + args.seconds
    out = {}
    acks_at = [] if args.continuous_view else None
    seen = []
    start = time.monotonic()
    channels = [f"bench-{run}-{c}" for c in range(args.channels)]
    if args.processes > 1:
        # Producers in processes of their own: threads of one process share its GIL.
        results = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(
                target=produce_in_process,
                args=(args, channels[p :: args.processes], until, results),
            )
            for p in range(args.processes)
        ]
        for w in workers:
            w.start()
        for _ in workers:
            out.update(results.get())
        for w in workers:
            w.join()
    else:
        threads = [
            threading.Thread(target=produce, args=(args, c, template, until, out, acks_at))
            for c in channels
        ]
        if args.continuous_view:
            threads.append(threading.Thread(target=watch_view, args=(args, until, seen)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - start
    if args.continuous_view:
        lat = latencies(base, acks_at, seen)
        if lat:
            p50 = lat[len(lat) // 2]
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(
                f"commit to visible in the continuous view: p50 {p50 * 1000:.0f} ms, "
                f"p99 {p99 * 1000:.0f} ms over {len(lat)} acknowledgments"
            )
    rows = sum(o["rows"] for o in out.values())
    with flightsql.connect(
        args.uri, db_kwargs={"username": "strata", "password": args.password}
    ) as conn, conn.cursor() as cur:
        cur.execute("SELECT sum(commits) FROM system.ingest_channels")
        commits = cur.fetchone()[0]
        cur.execute(
            "SELECT partition_name, file_count FROM system.partitions WHERE table_name = 'lineorder'"
        )
        files = cur.fetchall()
    print(
        f"strata: {args.channels} channel(s), {args.batch_rows}-row batches, {elapsed:.1f} s: "
        f"{rows:,} rows acknowledged, {rows / elapsed:,.0f} rows/s; "
        f"{commits} commits in all; files per partition now {files}"
    )
    return rows / elapsed


def duckdb_run(args, template):
    import duckdb

    with tempfile.TemporaryDirectory() as d:
        con = duckdb.connect(f"{d}/peer.duckdb")
        con.execute(LINEORDER.replace("IF NOT EXISTS ", ""))
        until = time.monotonic() + args.seconds
        base = template.column(0)
        columns = template.columns
        n = 0
        start = time.monotonic()
        while time.monotonic() < until:
            columns[0] = pc.add(base, n * template.num_rows)
            batch = pa.RecordBatch.from_arrays(columns, schema=template.schema)  # noqa: F841
            con.execute("INSERT INTO lineorder SELECT * FROM batch")
            n += 1
        con.execute("CHECKPOINT")
        elapsed = time.monotonic() - start
        rows = n * template.num_rows
        print(
            f"duckdb: one connection, {args.batch_rows}-row batches, {elapsed:.1f} s: "
            f"{rows:,} rows, {rows / elapsed:,.0f} rows/s"
        )
        return rows / elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", default="grpc://127.0.0.1:32010")
    parser.add_argument("--password", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="producer processes the channels are spread over (not with --continuous-view)",
    )
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--continuous-view", action="store_true")
    args = parser.parse_args()
    if args.processes > 1 and args.continuous_view:
        parser.error("--continuous-view measures from one process: leave --processes at 1")
    template = lineorder_batch(args.batch_rows)
    ours = strata_run(args, template)
    if not args.no_peer:
        peer = duckdb_run(args, template)
        print(f"ratio strata / duckdb: {ours / peer:.2f}")


main()
