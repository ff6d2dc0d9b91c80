"""Real Flight SQL clients against a running `strata serve`: the ADBC Flight SQL driver
through its DB-API, and pyarrow.flight speaking the protocol by hand.

Usage: python flight_sql_clients.py grpc://127.0.0.1:PORT PASSWORD
Exits non-zero (with a traceback) on the first failed check.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight

URI, PASSWORD = sys.argv[1], sys.argv[2]


def connect(user="strata", password=PASSWORD):
    return flightsql.connect(URI, db_kwargs={"username": user, "password": password})


def expect_error(fragment, action):
    try:
        action()
    except Exception as e:  # the driver's DB-API error classes
        assert fragment in str(e), f"expected '{fragment}' in: {e}"
        return
    raise AssertionError(f"expected an error containing '{fragment}'")


def wrong_password():
    with connect(password="not the password") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchall()


expect_error("invalid username or password", wrong_password)

with connect() as conn:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE sales (id BIGINT, region VARCHAR, amount DOUBLE)")
        cur.execute(
            "INSERT INTO sales VALUES (1, 'EU', 10.5), (2, 'US', 20.0), (3, 'EU', 1.5)"
        )
        cur.execute(
            "SELECT region, sum(amount) AS total FROM sales GROUP BY region ORDER BY region"
        )
        table = cur.fetch_arrow_table()
        assert table.schema.field("region").type == pa.string(), table.schema
        assert table.to_pydict() == {"region": ["EU", "US"], "total": [12.0, 20.0]}, table

        # Prepared statements with bound parameters.
        cur.execute("SELECT id FROM sales WHERE region = ? ORDER BY id", parameters=("EU",))
        assert cur.fetch_arrow_table().column("id").to_pylist() == [1, 3]
        cur.executemany(
            "INSERT INTO sales VALUES (?, ?, ?)", [(4, "APAC", 2.0), (5, "APAC", 3.0)]
        )
        cur.execute("SELECT count(*) AS n FROM sales")
        assert cur.fetchone()[0] == 5

        # Bulk ingest: create, then append.
        data = pa.table(
            {
                "k": pa.array(range(1000), pa.int64()),
                "v": pa.array([f"v{i}" for i in range(1000)]),
            }
        )
        assert cur.adbc_ingest("ingested", data, mode="create") == 1000
        assert cur.adbc_ingest("ingested", data.slice(0, 10), mode="append") == 10
        cur.execute("SELECT count(*) AS n, count(DISTINCT v) AS d FROM ingested")
        assert cur.fetchone() == (1010, 1000)

        def missing():
            cur.execute("SELECT * FROM missing_table")
            cur.fetchall()

        expect_error("missing_table", missing)
        # The connection still works after an error.
        cur.execute("SELECT 42 AS answer")
        assert cur.fetchone() == (42,)

    # Object browser metadata.
    objects = conn.adbc_get_objects(catalog_filter="main").read_all().to_pylist()
    tables = {
        t["table_name"]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"]
        if schema["db_schema_name"] == "public"
        for t in schema["db_schema_tables"]
    }
    assert {"sales", "ingested"} <= tables, tables
    schema = conn.adbc_get_table_schema("sales", catalog_filter="main", db_schema_filter="public")
    assert schema.names == ["id", "region", "amount"], schema
    assert schema.field("region").type == pa.string(), schema
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Strata", info

# pyarrow.flight: Basic auth for a token, then Flight SQL commands encoded by hand.


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def command(name, body):
    type_url = f"type.googleapis.com/arrow.flight.protocol.sql.{name}".encode()
    return field(1, type_url) + field(2, body)


client = flight.FlightClient(URI)
header = client.authenticate_basic_token("strata", PASSWORD)
options = flight.FlightCallOptions(headers=[header])
actions = {a.type for a in client.list_actions(options)}
assert "CancelFlightInfo" in actions and "CreatePreparedStatement" in actions, actions

query = command(
    "CommandStatementQuery", field(1, b"SELECT id, region FROM sales WHERE id <= 2 ORDER BY id")
)
info = client.get_flight_info(flight.FlightDescriptor.for_command(query), options)
result = client.do_get(info.endpoints[0].ticket, options).read_all()
assert result.schema == info.schema, (result.schema, info.schema)
assert result.to_pydict() == {"id": [1, 2], "region": ["EU", "US"]}, result

# An ingest channel with plain pyarrow.flight: one DoPut whose rows end at the path's offset
# token. Sending it again (a retry after a lost acknowledgment) is acknowledged as a duplicate
# and writes nothing; the typed command (strata.CommandIngestChannel) does the same.
assert "strata.channel_status" in actions, actions
readings = pa.table({"id": [6, 7], "region": ["EU", "US"], "amount": [1.0, 2.0]})
for attempt in range(2):
    path = flight.FlightDescriptor.for_path("strata.ingest", "main.public.sales", "file-feed", "f1")
    writer, reader = client.do_put(path, readings.schema, options)
    writer.write_table(readings)
    writer.done_writing()
    ack = json.loads(reader.read().to_pybytes())
    writer.close()
    assert ack["offset_token"] == "f1" and ack["duplicate"] == (attempt == 1), ack
    assert ack["rows"] == (2 if attempt == 0 else 0), ack
typed = field(1, b"main.public.sales") + field(2, b"typed-feed") + field(3, b"t1")
typed = field(1, b"type.googleapis.com/strata.CommandIngestChannel") + field(2, typed)
writer, reader = client.do_put(flight.FlightDescriptor.for_command(typed), readings.schema, options)
writer.write_table(readings.slice(0, 1))
writer.done_writing()
assert json.loads(reader.read().to_pybytes())["rows"] == 1
writer.close()
status = flight.Action(
    "strata.channel_status", json.dumps({"table": "sales", "channel": "file-feed"}).encode()
)
(reply,) = list(client.do_action(status, options))
state = json.loads(reply.body.to_pybytes())
assert state == {
    "table": "main.public.sales",
    "channel": "file-feed",
    "offset_token": "f1",
    "rows": 2,
    "commits": 1,
}, state
try:
    bad = flight.FlightDescriptor.for_path("strata.ingest", "main.public.nope", "c", "1")
    writer, _ = client.do_put(bad, readings.schema, options)
    writer.write_table(readings)
    writer.close()
except Exception as e:  # NOT_FOUND arrives as pyarrow's ArrowKeyError
    assert "nope" in str(e), e
else:
    raise AssertionError("an append to a missing table was accepted")

# SUBSCRIBE as a long-lived DoGet: the view's rows, then each change as commits land.
with connect() as conn, conn.cursor() as cur:
    cur.execute("CREATE TABLE taps (ts TIMESTAMP, page VARCHAR)")
    cur.execute("INSERT INTO taps VALUES (TIMESTAMP '2026-01-01 10:00:05', '/a')")
    cur.execute(
        "CREATE MATERIALIZED VIEW taps_per_minute WITH (refresh = 'continuous') AS "
        "SELECT date_bin(INTERVAL '1 minute', ts) AS minute, page, count(*) AS n FROM taps GROUP BY 1, 2"
    )
subscribe = command("CommandStatementQuery", field(1, b"SUBSCRIBE TO taps_per_minute"))
info = client.get_flight_info(flight.FlightDescriptor.for_command(subscribe), options)
assert info.schema.names == ["version", "committed_at", "minute", "page", "n"], info.schema
stream = client.do_get(info.endpoints[0].ticket, options)
first = stream.read_chunk().data.to_pydict()
assert first["page"] == ["/a"] and first["n"] == [1], first
with connect() as conn, conn.cursor() as cur:
    cur.execute("INSERT INTO taps VALUES (TIMESTAMP '2026-01-01 10:00:50', '/a')")
change = stream.read_chunk().data.to_pydict()
assert change["page"] == ["/a"] and change["n"] == [2], change
assert change["version"][0] > first["version"][0], (first, change)
stream.cancel()

unauthenticated = flight.FlightClient(URI)
try:
    unauthenticated.get_flight_info(flight.FlightDescriptor.for_command(query))
    raise AssertionError("a call without credentials was accepted")
except flight.FlightUnauthenticatedError:
    pass

print("flight sql clients: all checks passed")
