"""PostgreSQL drivers against `strata serve --pg-listen`: psycopg with typed parameters in
text and binary, server-side cursors (portals with row limits), cancel, COPY, and SQLAlchemy's
PostgreSQL dialect inspecting a star schema's keys and comments.

Usage: pg_clients.py HOST PORT PASSWORD CASE; prints one JSON object.
"""

import datetime
import decimal
import json
import sys
import threading
import time

import psycopg

host, port, password, case = sys.argv[1:5]
dsn = f"host={host} port={port} user=strata password={password} dbname=main"
out = {}


def parameters():
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE typed (id BIGINT NOT NULL, amount DECIMAL(12,2), day DATE, "
            "at TIMESTAMP, ok BOOLEAN, name VARCHAR, score DOUBLE, doc JSON)"
        )
        rows = [
            (1, decimal.Decimal("10.50"), datetime.date(2024, 1, 2),
             datetime.datetime(2024, 1, 2, 3, 4, 5), True, "ann", 1.5, '{"a": 1}'),
            (2, decimal.Decimal("-3.25"), datetime.date(2023, 12, 31),
             datetime.datetime(2023, 12, 31, 23, 59, 59), False, "bob's", -0.25, '[1, 2]'),
            (3, None, None, None, None, None, None, None),
        ]
        cur.executemany("INSERT INTO typed VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
        out["inserted"] = cur.rowcount
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            cur.execute(
                "SELECT id, amount, day, at, ok, name, score, doc FROM typed "
                "WHERE id >= %s AND name IS DISTINCT FROM %s ORDER BY id",
                (1, "nobody"),
            )
            got = cur.fetchall()
            key = "binary" if binary else "text"
            out[key] = [[str(v) if v is not None else None for v in r] for r in got]
            out[key + "_types"] = [d.type_code for d in cur.description]
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM typed WHERE day = %s", (datetime.date(2024, 1, 2),))
        out["by_date"] = cur.fetchone()[0]
        cur.execute("UPDATE typed SET score = %s WHERE id = %s", (9.0, 2))
        out["updated"] = cur.rowcount
        cur.execute("DELETE FROM typed WHERE id = %s", (3,))
        out["deleted"] = cur.rowcount
        # A server-side cursor: a portal fetched 2 rows at a time.
        with conn.transaction():
            named = conn.cursor(name="big")
            named.itersize = 2
            named.execute("SELECT * FROM generate_series(1, 7) AS t(n)")
            out["portal"] = [r[0] for r in named]
        try:
            cur.execute("SELECT * FROM missing_table")
        except psycopg.Error as e:
            out["missing"] = [e.sqlstate, str(e).splitlines()[0]]
        cur.execute("SELECT version(), current_schema()")
        out["version"], out["schema"] = cur.fetchone()
        # COPY FROM STDIN through the driver: the same load, constraints and rejects as
        # COPY INTO; a bad row names STDIN and its line.
        with cur.copy("COPY typed FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write("10,1.00,2024-02-01,2024-02-01 00:00:00,true,copied,0.5,{}\n")
            copy.write("11,2.00,2024-02-02,,false,copied,,\n")
        out["copied"] = cur.rowcount
        try:
            with cur.copy("COPY typed FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write("12,1.00,2024-02-01,,true,x,0.5,\n")
                copy.write("not-a-number,1.00,2024-02-01,,true,x,0.5,\n")
        except psycopg.Error as e:
            out["copy_error"] = [e.sqlstate, str(e).splitlines()[0]]
        cur.execute("SELECT count(*) FROM typed WHERE name IN ('copied', 'x')")
        out["after_copy"] = cur.fetchone()[0]
    return out


def cancel():
    with psycopg.connect(dsn, autocommit=True) as conn:
        def later():
            time.sleep(1.5)
            conn.cancel()
        threading.Thread(target=later).start()
        started = time.time()
        try:
            conn.execute(
                "SELECT count(*) FROM generate_series(1, 3000000000) a"
            ).fetchall()
            out["cancelled"] = None
        except psycopg.errors.QueryCanceled as e:
            out["cancelled"] = str(e).splitlines()[0]
        out["seconds"] = time.time() - started
        out["after"] = conn.execute("SELECT 41 + 1").fetchone()[0]
    return out


def max_connections():
    """The server runs with --pg-max-connections 2."""
    first = psycopg.connect(dsn, autocommit=True)
    second = psycopg.connect(dsn, autocommit=True)
    try:
        psycopg.connect(dsn, autocommit=True).close()
        out["third"] = "connected"
    except psycopg.OperationalError as e:
        out["third"] = str(e)
    out["second_works"] = second.execute("SELECT 1").fetchone()[0]
    # A cancel request still gets through with every connection taken.
    timer = threading.Timer(1.5, first.cancel)
    timer.start()
    try:
        first.execute("SELECT count(*) FROM generate_series(1, 3000000000) AS a")
        out["cancel_at_limit"] = "finished"
    except psycopg.errors.QueryCanceled as e:
        out["cancel_at_limit"] = e.sqlstate
    timer.join()
    second.close()
    # The closed connection's place is free again (its task ends a moment after the close).
    for _ in range(50):
        try:
            with psycopg.connect(dsn, autocommit=True) as again:
                out["after_close"] = again.execute("SELECT 2").fetchone()[0]
            break
        except psycopg.OperationalError:
            time.sleep(0.1)
    first.close()
    return out


def sqlalchemy_inspection():
    import sqlalchemy
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://strata:{password}@{host}:{port}/main"
    )
    inspector = sqlalchemy.inspect(engine)
    out["tables"] = sorted(inspector.get_table_names(schema="public"))
    out["columns"] = [
        [c["name"], str(c["type"]), c["nullable"], c.get("comment")]
        for c in inspector.get_columns("sales", schema="public")
    ]
    out["pk"] = inspector.get_pk_constraint("sales", schema="public")
    out["fks"] = [
        [fk["name"], fk["constrained_columns"], fk["referred_table"], fk["referred_columns"]]
        for fk in inspector.get_foreign_keys("sales", schema="public")
    ]
    out["comment"] = inspector.get_table_comment("sales", schema="public")["text"]
    with engine.connect() as conn:
        out["joined"] = conn.execute(sqlalchemy.text(
            "SELECT c.name, sum(s.amount) FROM sales s JOIN customers c ON s.customer_id = c.id "
            "GROUP BY c.name ORDER BY c.name"
        )).fetchall().__repr__()
    return out


print(json.dumps({"parameters": parameters, "cancel": cancel, "max_connections": max_connections,
                  "sqlalchemy": sqlalchemy_inspection}[case](), default=str))
