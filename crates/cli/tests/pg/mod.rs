//! `strata serve --pg-listen` with real PostgreSQL clients: psql from Debian's
//! postgresql-client, psycopg and SQLAlchemy from PyPI, and the PostgreSQL JDBC driver from
//! Debian's libpostgresql-jdbc-java.

use std::process::{Command, Stdio};

use super::{KillOnDrop, manifest_dir, python_with_flight_clients, serve_announcing};

/// A server with the PostgreSQL protocol on an ephemeral port; returns it and that port.
fn serve_pg(warehouse: &str, password: &str, extra: &[&str]) -> (KillOnDrop, u16) {
    let mut args = vec!["--pg-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let announce = "PostgreSQL wire protocol on ";
    let (server, rest) = serve_announcing(warehouse, password, &args, announce);
    // `127.0.0.1:PORT: psql "host=... port=PORT user=..."`
    let port = rest
        .split(':')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a port in {rest:?}"));
    (server, port)
}

/// psql with `args`, a password and `script` on stdin; returns (success, stdout, stderr).
fn psql(port: u16, password: &str, args: &[&str], script: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=strata dbname=main"
        ))
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGPASSWORD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs (Debian's postgresql-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A small star schema: customers with a primary key and a comment, sales referencing them.
const STAR: &str = "
CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, city VARCHAR);
COMMENT ON TABLE customers IS 'One row per customer';
CREATE TABLE sales (id BIGINT PRIMARY KEY, customer_id BIGINT REFERENCES customers(id),
                    amount DECIMAL(10,2), sold_on DATE);
COMMENT ON TABLE sales IS 'One row per sale';
INSERT INTO customers VALUES (1, 'Ada', 'London'), (2, 'Grace', 'Arlington');
INSERT INTO sales VALUES (1, 1, 10.50, DATE '2024-01-01'), (2, 1, 5.25, DATE '2024-01-02'),
                         (3, 2, 100.00, DATE '2024-01-03');
";

/// psql scripted as people use it: statements, `\copy` of a CSV (bad rows refused with the
/// line named, nothing loaded), `\copy ... to` a file and to stdout, `\d` (with numeric
/// precision), `\dt`, `\dn`, `SHOW`, `version()`, and the query log recording the protocol. A wrong
/// password is refused.
#[test]
fn psql_runs_a_script_with_copy_and_describe_commands() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (_server, port) = serve_pg(&w, "pw", &[]);
    let (ok, out, err) = psql(port, "pw", &["-A", "-t"], STAR);
    assert!(ok, "{out}\n{err}");

    let csv = dir.path().join("more.csv");
    std::fs::write(
        &csv,
        "id,customer_id,amount,sold_on\n4,2,7.00,2024-02-01\n5,1,,\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "6,1,1.00,2024-02-02\n7,99,2.00,2024-02-03\n").unwrap();
    let script = format!(
        "\\copy sales from '{}' csv header\n\
         SELECT count(*), sum(amount) FROM sales;\n\
         SELECT name, city FROM customers ORDER BY id;\n\
         SHOW search_path;\n\
         SELECT version();\n\
         SELECT current_schema();\n",
        csv.display()
    );
    let (ok, out, err) = psql(port, "pw", &["-A", "-t"], &script);
    assert!(ok, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "COPY 2", "{out}");
    assert_eq!(lines[1], "5|122.75", "{out}");
    assert_eq!(&lines[2..4], ["Ada|London", "Grace|Arlington"], "{out}");
    assert_eq!(lines[4], "public", "{out}");
    assert!(lines[5].starts_with("PostgreSQL 16"), "{out}");
    assert_eq!(lines[6], "public", "{out}");

    // A row whose customer does not exist: the load stops, names the constraint and the
    // line of STDIN, and loads nothing.
    let (ok, out, err) = psql(
        port,
        "pw",
        &["-A", "-t"],
        &format!("\\copy sales from '{}' csv\n", bad.display()),
    );
    assert!(!ok, "{out}");
    assert!(err.contains("STDIN") && err.contains("line 2"), "{err}");
    assert!(!err.contains("strata-pg-copy"), "{err}");
    let (_, out, _) = psql(port, "pw", &["-A", "-t"], "SELECT count(*) FROM sales");
    assert_eq!(out.trim(), "5");

    // \copy ... to: a query's rows as CSV with a header into a file, and a table's columns
    // in PostgreSQL's text format to psql's standard output.
    let extract = dir.path().join("extract.csv");
    let script = format!(
        "\\copy (SELECT s.id, c.name, s.amount, s.amount > 50 AS big FROM sales s \
         JOIN customers c ON s.customer_id = c.id WHERE s.id <= 5 ORDER BY s.id) to '{}' csv header\n\
         \\copy customers (id, city) to stdout\n",
        extract.display()
    );
    let (ok, out, err) = psql(port, "pw", &["-A", "-t"], &script);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(&extract).unwrap(),
        "id,name,amount,big\n1,Ada,10.50,f\n2,Ada,5.25,f\n3,Grace,100.00,t\n4,Grace,7.00,f\n5,Ada,,\n"
    );
    assert!(
        out.starts_with("COPY 5\n1\tLondon\n2\tArlington\n"),
        "{out}"
    );

    // psql's describe commands run its pg_catalog queries.
    let (ok, out, err) = psql(port, "pw", &[], "\\dt\n\\dn\n\\d sales\n");
    assert!(ok, "{out}\n{err}");
    for expected in [
        "customers",
        "sales",
        "public",
        "customer_id",
        "amount",
        "numeric(10,2)",
    ] {
        assert!(out.contains(expected), "{expected} missing from:\n{out}");
    }

    // A syntax error is an error with its SQLSTATE, and the connection goes on.
    let (ok, _, err) = psql(port, "pw", &["-v", "VERBOSITY=verbose"], "SELEC 1;\n");
    assert!(!ok && err.contains("42601"), "{err}");

    let (ok, _, err) = psql(port, "wrong", &[], "SELECT 1");
    assert!(!ok && err.contains("password"), "{err}");

    let (ok, out, err) = psql(
        port,
        "pw",
        &["-A", "-t"],
        "SELECT DISTINCT protocol FROM system.query_log WHERE query_text LIKE 'SELECT count(*)%'",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "postgres");
}

/// psycopg with parameters, in text and binary: every type of the issue round-trips, DML
/// reports its row counts, a server-side cursor reads a portal two rows at a time, an error
/// carries its SQLSTATE, and COPY through the driver loads or refuses as a whole.
#[test]
fn psycopg_binds_typed_parameters_in_text_and_binary() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (_server, port) = serve_pg(&w, "pw", &[]);
    let found = run_client(port, "parameters");
    assert_eq!(found["inserted"], 3);
    for format in ["text", "binary"] {
        let rows = &found[format];
        assert_eq!(
            rows[0],
            serde_json::json!([
                "1",
                "10.50",
                "2024-01-02",
                "2024-01-02 03:04:05",
                "True",
                "ann",
                "1.5",
                "{'a': 1}"
            ]),
            "{format}: {found}"
        );
        assert_eq!(rows[1][5], "bob's", "{format}");
        assert_eq!(rows[2][1], serde_json::Value::Null, "{format}");
        // int8, numeric, date, timestamp, bool, text, float8, json
        assert_eq!(
            found[format.to_string() + "_types"],
            serde_json::json!([20, 1700, 1082, 1114, 16, 25, 701, 114]),
            "{format}"
        );
    }
    assert_eq!(found["by_date"], 1);
    assert_eq!(found["updated"], 1);
    assert_eq!(found["deleted"], 1);
    assert_eq!(found["portal"], serde_json::json!([1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(found["missing"][0], "42P01", "{found}");
    assert!(found["version"].as_str().unwrap().starts_with("PostgreSQL"));
    assert_eq!(found["schema"], "public");
    assert_eq!(found["copied"], 2, "{found}");
    assert_eq!(found["copy_error"][0], "22023", "{found}");
    assert!(
        found["copy_error"][1].as_str().unwrap().contains("STDIN"),
        "{found}"
    );
    assert_eq!(found["after_copy"], 2, "{found}");
}

/// A cancel request (its own connection, the backend key) stops a long query; the
/// connection then runs the next statement.
#[test]
fn a_cancel_request_stops_the_running_query() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (_server, port) = serve_pg(&w, "pw", &[]);
    let found = run_client(port, "cancel");
    assert!(
        found["cancelled"]
            .as_str()
            .is_some_and(|m| m.contains("canceling statement")),
        "{found}"
    );
    assert!(found["seconds"].as_f64().unwrap() < 30.0, "{found}");
    assert_eq!(found["after"], 42);
}

/// SQLAlchemy's PostgreSQL dialect inspects the star schema (tables, columns with their types,
/// the primary key, the foreign key, the table's comment) and runs a join, and the JDBC driver
/// lists tables, columns and imported keys and runs prepared queries, switching to a named
/// server-side statement after five executions.
#[test]
fn sqlalchemy_inspects_a_star_schema_and_jdbc_reads_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (_server, port) = serve_pg(&w, "pw", &[]);
    let (ok, out, err) = psql(port, "pw", &[], STAR);
    assert!(ok, "{out}\n{err}");
    let found = run_client(port, "sqlalchemy");
    assert_eq!(found["tables"], serde_json::json!(["customers", "sales"]));
    let columns: Vec<(&str, &str)> = found["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap(), c[1].as_str().unwrap()))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "BIGINT"),
            ("customer_id", "BIGINT"),
            ("amount", "NUMERIC(10, 2)"),
            ("sold_on", "DATE")
        ],
        "{found}"
    );
    assert!(
        found["joined"].as_str().unwrap().contains("Grace"),
        "{found}"
    );
    // Keys and comments, from pg_constraint, pg_index and pg_description.
    assert_eq!(found["pk"]["name"], "sales_pkey", "{found}");
    assert_eq!(
        found["pk"]["constrained_columns"],
        serde_json::json!(["id"]),
        "{found}"
    );
    assert_eq!(
        found["fks"],
        serde_json::json!([[
            "sales_customer_id_fkey",
            ["customer_id"],
            "customers",
            ["id"]
        ]]),
        "{found}"
    );
    assert_eq!(found["comment"], "One row per sale", "{found}");

    // The PostgreSQL JDBC driver, as DBeaver uses it.
    let jdbc = "/usr/share/java/postgresql.jar";
    let run = Command::new("java")
        .args(["-cp", jdbc])
        .arg(manifest_dir().join("tests/clients/PgJdbc.java"))
        .args(["127.0.0.1", &port.to_string(), "pw"])
        .output()
        .expect("java runs (Debian's openjdk and libpostgresql-jdbc-java)");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for line in [
        "product PostgreSQL 16",
        "table customers",
        "table sales",
        "column amount numeric",
        "imported customer_id -> customers.id sales_customer_id_fkey 1",
        "row Ada 15.75",
        "row Grace 100.00",
        "counts 2 1 0 2 1 0",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "{line} missing from:\n{out}"
        );
    }
}

/// The TLS certificate of `--tls-cert` serves PostgreSQL too: `sslmode=require` connects.
/// Users sign in with the SCRAM verifier `strata hash-password` prints; a user with only an
/// argon2 hash is refused like a wrong password (the server warns about it at startup).
#[test]
fn sslmode_require_and_scram_users_from_strata_toml() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut hashing = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    hashing
        .stdin
        .take()
        .unwrap()
        .write_all(b"bobs secret\n")
        .unwrap();
    let lines = String::from_utf8(hashing.wait_with_output().unwrap().stdout).unwrap();
    assert!(
        lines.contains("scram_sha_256 = \"SCRAM-SHA-256$4096:"),
        "{lines}"
    );
    let hash = strata_server::auth::hash_password("alices").unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n\n\
             [[users]]\nname = \"bob\"\n{lines}"
        ),
    )
    .unwrap();
    let (_server, port) = serve_pg(
        &w,
        "pw",
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let run = |user: &str, password: &str, sslmode: &str| {
        Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} user={user} dbname=main sslmode={sslmode}"
            ))
            .args(["-X", "-A", "-t", "-c", "SELECT 1 + 1"])
            .env("PGPASSWORD", password)
            .output()
            .unwrap()
    };
    for (user, password, sslmode, works) in [
        ("strata", "pw", "require", true),
        ("bob", "bobs secret", "require", true),
        ("bob", "bobs secret", "disable", true),
        ("bob", "guess", "require", false),
        ("alice", "alices", "require", false),
        ("nobody", "pw", "require", false),
    ] {
        let out = run(user, password, sslmode);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), works, "{user} {sslmode}: {err}");
        if works {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
        } else {
            // The same words for a wrong password, a user without a verifier and no user.
            assert!(
                err.contains("password authentication failed"),
                "{user}: {err}"
            );
        }
    }
}

/// Runs a case of `clients/pg_clients.py` and returns its JSON.
fn run_client(port: u16, case: &str) -> serde_json::Value {
    let python = python_with_flight_clients();
    let run = Command::new(&python)
        .arg(manifest_dir().join("tests/clients/pg_clients.py"))
        .args(["127.0.0.1", &port.to_string(), "pw", case])
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "{case}: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

/// `--pg-max-connections 2`: a third connection is refused with PostgreSQL's own message while
/// two are open (over plain TCP after declining SSL, as libpq asks first), a cancel request
/// still gets through, and a connection is accepted once one of the two closes.
#[test]
fn connections_past_the_limit_are_refused_as_postgresql_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (_server, port) = serve_pg(&w, "pw", &["--pg-max-connections", "2"]);
    let found = run_client(port, "max_connections");
    assert!(
        found["third"]
            .as_str()
            .unwrap()
            .contains("sorry, too many clients already"),
        "{found}"
    );
    assert_eq!(found["second_works"], 1, "{found}");
    assert_eq!(found["cancel_at_limit"], "57014", "{found}");
    assert_eq!(found["after_close"], 2, "{found}");
}
