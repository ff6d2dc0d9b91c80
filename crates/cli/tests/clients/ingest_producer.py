"""A producer on an exactly-once ingest channel of `strata serve`, with plain pyarrow.flight.

It reopens its channel (DoAction strata.channel_status), resumes after the last committed
offset token, and streams batches in one DoPut whose descriptor path is
["strata.ingest", table, channel, ""]: batch i carries its token i in app_metadata, and a
thread reads the acknowledgments as commits make them durable.

Usage: python ingest_producer.py URI PASSWORD TABLE CHANNEL BATCHES ROWS_PER_BATCH [SHAPE]
SHAPE is `events` (id, channel, ts, value: rows of batch i have ids i*ROWS.. of the channel)
or `lineorder` (SSB lineorder's 17 columns). Prints one JSON line: what was sent and
acknowledged, and the rate.
"""

import json
import sys
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight

URI, PASSWORD, TABLE, CHANNEL = sys.argv[1:5]
BATCHES, ROWS = int(sys.argv[5]), int(sys.argv[6])
SHAPE = sys.argv[7] if len(sys.argv) > 7 else "events"

client = flight.FlightClient(URI)
options = flight.FlightCallOptions(headers=[client.authenticate_basic_token("strata", PASSWORD)])


def channel_status():
    body = json.dumps({"table": TABLE, "channel": CHANNEL}).encode()
    (reply,) = list(client.do_action(flight.Action("strata.channel_status", body), options))
    return json.loads(reply.body.to_pybytes())


def template():
    ids = pa.array(range(ROWS), pa.int64())
    if SHAPE == "events":
        return {
            "id": ids,
            "channel": pa.array([CHANNEL] * ROWS),
            "ts": pa.array([1_700_000_000_000_000 + i for i in range(ROWS)], pa.timestamp("us")),
            "value": pa.array([float(i % 97) for i in range(ROWS)]),
        }
    return {
        "lo_orderkey": ids,
        "lo_linenumber": pa.array([i % 7 + 1 for i in range(ROWS)], pa.int32()),
        "lo_custkey": pa.array([i % 30000 + 1 for i in range(ROWS)], pa.int32()),
        "lo_partkey": pa.array([i % 200000 + 1 for i in range(ROWS)], pa.int32()),
        "lo_suppkey": pa.array([i % 2000 + 1 for i in range(ROWS)], pa.int32()),
        "lo_orderdate": pa.array([19920101 + i % 28 for i in range(ROWS)], pa.int32()),
        "lo_orderpriority": pa.array(["1-URGENT", "2-HIGH", "3-MEDIUM"][i % 3] for i in range(ROWS)),
        "lo_shippriority": pa.array([0] * ROWS, pa.int32()),
        "lo_quantity": pa.array([i % 50 + 1 for i in range(ROWS)], pa.int32()),
        "lo_extendedprice": pa.array([i % 100000 + 90000 for i in range(ROWS)], pa.int32()),
        "lo_ordtotalprice": pa.array([i % 300000 + 100000 for i in range(ROWS)], pa.int32()),
        "lo_discount": pa.array([i % 11 for i in range(ROWS)], pa.int32()),
        "lo_revenue": pa.array([i % 100000 + 80000 for i in range(ROWS)], pa.int32()),
        "lo_supplycost": pa.array([i % 1000 + 60000 for i in range(ROWS)], pa.int32()),
        "lo_tax": pa.array([i % 9 for i in range(ROWS)], pa.int32()),
        "lo_commitdate": pa.array([19920201 + i % 28 for i in range(ROWS)], pa.int32()),
        "lo_shipmode": pa.array(["AIR", "MAIL", "RAIL", "SHIP", "TRUCK"][i % 5] for i in range(ROWS)),
    }


def main():
    status = channel_status()
    token = status["offset_token"]
    first = int(token) + 1 if token is not None else 0
    columns = template()
    key = "id" if SHAPE == "events" else "lo_orderkey"
    schema = pa.RecordBatch.from_pydict(columns).schema
    descriptor = flight.FlightDescriptor.for_path("strata.ingest", TABLE, CHANNEL, "")
    acked = {"last": None, "rows": 0, "duplicates": 0, "acks": 0}

    start = time.monotonic()
    writer, reader = client.do_put(descriptor, schema, options)

    def read_acks():
        while True:
            buf = reader.read()
            if buf is None:
                return
            ack = json.loads(buf.to_pybytes())
            acked["last"] = ack["offset_token"]
            acked["rows"] += ack["rows"]
            acked["duplicates"] += ack["duplicate"]
            acked["acks"] += 1

    acks = threading.Thread(target=read_acks, daemon=True)
    acks.start()
    base = pa.array(range(ROWS), pa.int64())
    for i in range(first, BATCHES):
        columns[key] = pc.add(base, i * ROWS)
        batch = pa.RecordBatch.from_pydict(columns, schema=schema)
        writer.write_with_metadata(batch, pa.py_buffer(str(i).encode()))
    writer.done_writing()
    acks.join()
    writer.close()
    elapsed = time.monotonic() - start
    sent = (BATCHES - first) * ROWS
    print(
        json.dumps(
            {
                "resumed_from": token,
                "rows_sent": sent,
                "acks": acked["acks"],
                "rows_acked": acked["rows"],
                "last_acked": acked["last"],
                "seconds": round(elapsed, 3),
                "rows_per_second": round(sent / elapsed) if elapsed > 0 else None,
            }
        ),
        flush=True,
    )


main()
