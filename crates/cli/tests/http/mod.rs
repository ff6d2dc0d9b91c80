//! `strata serve --http-listen` with curl and pyarrow: statements in, results as JSON, CSV,
//! an Arrow stream and Parquet; Basic and bearer authentication; async statements polled and
//! cancelled; and the web console in Chromium, driven by Selenium.

use std::process::{Command, Stdio};

use super::{
    KillOnDrop, exits_at_once, manifest_dir, python_with_flight_clients, serve_announcing,
};

/// A server with the HTTP SQL API on an ephemeral port; returns it and the API's base URL.
fn serve_http(warehouse: &str, password: &str) -> (KillOnDrop, String) {
    let extra = ["--http-listen", "127.0.0.1:0"];
    let (server, rest) = serve_announcing(warehouse, password, &extra, "HTTP SQL API on ");
    (server, rest.trim_end_matches("/v1/statements").to_string())
}

/// curl with `args`; returns (HTTP status, body).
fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&body[split + 1..]).parse().unwrap();
    body.truncate(split);
    (status, body)
}

/// POSTs a statement as `user:password`, with extra curl `args`.
fn post(url: &str, auth: &str, body: serde_json::Value, args: &[&str]) -> (u16, Vec<u8>) {
    post_at(&format!("{url}/v1/statements"), auth, body, args)
}

/// [`post`] to `endpoint` (with its query string).
fn post_at(endpoint: &str, auth: &str, body: serde_json::Value, args: &[&str]) -> (u16, Vec<u8>) {
    let body = body.to_string();
    let mut all = vec![
        "-u",
        auth,
        "-H",
        "content-type: application/json",
        "-d",
        &body,
    ];
    all.extend_from_slice(args);
    all.push(endpoint);
    curl(&all)
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[test]
fn http_statements_answer_in_json_csv_arrow_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (_server, url) = serve_http(&w, "pw");
    let auth = "strata:pw";
    let (status, body) = post(
        &url,
        auth,
        serde_json::json!({"statement":
            "CREATE TABLE t (id BIGINT, name VARCHAR, amount DECIMAL(10,2), day DATE);
             INSERT INTO t VALUES (1, 'a', 1.50, DATE '2024-01-01'), (2, 'b', NULL, NULL)"}),
        &[],
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["data"][0]["count"], 2);

    let query = serde_json::json!({"statement": "SELECT id, name, amount, day FROM t ORDER BY id",
                                   "database": "main", "schema": "public"});
    let (status, body) = post(&url, auth, query.clone(), &[]);
    assert_eq!(status, 200);
    let found = json(&body);
    assert_eq!(found["rows"], 2);
    assert_eq!(found["meta"][0]["name"], "id");
    assert_eq!(found["data"][0]["name"], "a");
    assert_eq!(found["data"][0]["day"], "2024-01-01");
    assert!(
        found["data"][1].get("amount").is_none_or(|v| v.is_null()),
        "{found}"
    );

    let (status, body) = post(&url, auth, query.clone(), &["-H", "accept: text/csv"]);
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "id,name,amount,day\n1,a,1.50,2024-01-01\n2,b,,\n"
    );

    // pyarrow reads the Arrow stream and the Parquet file as they come.
    let python = python_with_flight_clients();
    for (format, reader) in [
        ("arrow", "pyarrow.ipc.open_stream(data).read_all()"),
        (
            "parquet",
            "pyarrow.parquet.read_table(pyarrow.BufferReader(data))",
        ),
    ] {
        let (status, body) = post_at(
            &format!("{url}/v1/statements?format={format}"),
            auth,
            query.clone(),
            &[],
        );
        assert_eq!(status, 200, "{format}");
        let script = format!(
            "import sys, pyarrow, pyarrow.ipc, pyarrow.parquet\n\
             data = sys.stdin.buffer.read()\n\
             t = {reader}\n\
             print(t.num_rows, t.schema.field('amount').type, t.column('name').to_pylist())"
        );
        let mut child = Command::new(&python)
            .args(["-c", &exits_at_once(&script)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &body).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "2 decimal128(10, 2) ['a', 'b']",
            "{format}"
        );
    }

    // Errors: a status by kind and a message that says what.
    let (status, body) = post(&url, auth, serde_json::json!({"statement": "SELEC 1"}), &[]);
    assert_eq!(status, 400);
    assert_eq!(json(&body)["error"]["code"], "invalid_argument");
    let (status, body) = post(
        &url,
        auth,
        serde_json::json!({"statement": "SELECT * FROM nope"}),
        &[],
    );
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _) = post(&url, "strata:wrong", query.clone(), &[]);
    assert_eq!(status, 401);
    let (status, _) = curl(&["-d", "{}", &format!("{url}/v1/statements")]);
    assert_eq!(status, 401);

    // A bearer token from /v1/login.
    let (status, body) = curl(&["-u", auth, "-X", "POST", &format!("{url}/v1/login")]);
    assert_eq!(status, 200);
    let token = json(&body)["token"].as_str().unwrap().to_string();
    let bearer = format!("authorization: Bearer {token}");
    let (status, body) = curl(&[
        "-H",
        &bearer,
        "-d",
        r#"{"statement": "SELECT DISTINCT protocol FROM system.query_log WHERE query_text LIKE 'SELECT id, name%'"}"#,
        &format!("{url}/v1/statements"),
    ]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        json(&body)["data"],
        serde_json::json!([{"protocol": "http"}])
    );
}

#[test]
fn async_http_statements_are_polled_and_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (_server, url) = serve_http(&w, "pw");
    let auth = "strata:pw";
    let long = serde_json::json!({"async": true, "statement":
        "SELECT count(*) FROM generate_series(1, 3000000000) AS a"});
    let (status, body) = post(&url, auth, long, &[]);
    assert_eq!(status, 202);
    let handle = json(&body);
    let href = format!("{url}{}", handle["href"].as_str().unwrap());
    let (status, _) = curl(&["-u", auth, &href]);
    assert_eq!(status, 202);
    let (status, body) = curl(&["-u", auth, "-X", "DELETE", &href]);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["status"], "cancelled");
    let (status, body) = curl(&["-u", auth, &href]);
    assert_eq!(status, 409);
    assert_eq!(json(&body)["error"]["code"], "cancelled");

    let short = serde_json::json!({"async": true, "statement": "SELECT 40 + 2 AS answer"});
    let (status, body) = post(&url, auth, short, &[]);
    assert_eq!(status, 202);
    let href = format!("{url}{}", json(&body)["href"].as_str().unwrap());
    let started = std::time::Instant::now();
    loop {
        let (status, body) = curl(&["-u", auth, &href]);
        if status == 200 {
            assert_eq!(json(&body)["data"], serde_json::json!([{"answer": 42}]));
            break;
        }
        assert_eq!(status, 202);
        assert!(
            started.elapsed().as_secs() < 30,
            "the statement never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (status, _) = curl(&["-u", auth, &format!("{url}/v1/statements/no-such-id")]);
    assert_eq!(status, 404);
}

/// The web console in Debian's Chromium through Selenium: sign-in (a wrong password refused on
/// the page), table-name completion, a query's rows and bar chart, paging with a line chart,
/// an error, the query history, a table's columns, keys, partitions and lineage, and a
/// materialized view's staleness. Screenshots are kept in `target/artifacts/console/`.
#[test]
fn web_console_runs_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (_server, url) = serve_http(&w, "pw");
    for statement in [
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, city VARCHAR)",
        "COMMENT ON TABLE customers IS 'One row per customer'",
        "CREATE TABLE sales (id BIGINT PRIMARY KEY, customer_id BIGINT REFERENCES customers(id), \
         amount DECIMAL(10,2), sold_on DATE) PARTITION BY RANGE (sold_on) INTERVAL (1 MONTH)",
        "INSERT INTO customers VALUES (1, 'Ada', 'London'), (2, 'Grace', 'Arlington'), \
         (3, 'Edsger', 'Austin'), (4, 'Barbara', 'London')",
        "INSERT INTO sales VALUES (1, 1, 10.50, DATE '2024-01-05'), \
         (2, 2, 5.25, DATE '2024-02-01'), (3, 3, 100.00, DATE '2024-02-03')",
        "CREATE MATERIALIZED VIEW sales_by_city AS SELECT c.city, sum(s.amount) AS total \
         FROM sales s JOIN customers c ON s.customer_id = c.id GROUP BY c.city",
    ] {
        let (status, body) = post(
            &url,
            "strata:pw",
            serde_json::json!({"statement": statement}),
            &[],
        );
        assert_eq!(
            status,
            200,
            "{statement}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let shots = std::path::Path::new(env!("CARGO_BIN_EXE_strata"))
        .ancestors()
        .nth(2)
        .unwrap()
        .join("artifacts/console");
    let run = Command::new(python_with_flight_clients())
        .arg(manifest_dir().join("tests/clients/console_browser.py"))
        .args([url.as_str(), "pw"])
        .arg(&shots)
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let found = json(&run.stdout);
    println!("{found:#}");
    assert!(
        found["wrong_password"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{found}"
    );
    assert!(
        found["completions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("customers")),
        "{found}"
    );
    assert_eq!(
        found["editor"],
        "SELECT city, count(*) AS n FROM customers GROUP BY city ORDER BY city"
    );
    assert_eq!(found["header"], serde_json::json!(["city", "n"]));
    assert_eq!(
        found["rows"],
        serde_json::json!([["Arlington", "1"], ["Austin", "1"], ["London", "2"]])
    );
    assert_eq!(found["chart_kind"], "bar");
    assert_eq!(found["chart_bars"], 3);
    assert_eq!(found["page"], "Page 1 of 3");
    assert_eq!(found["page_after_next"], "Page 2 of 3");
    assert_eq!(found["first_on_page_2"], "51");
    assert_eq!(found["line_chart"], "line");
    assert!(
        found["error"].as_str().unwrap().contains("no_such_table"),
        "{found}"
    );
    for column in [
        "duration_ms",
        "partitions_scanned",
        "bytes_scanned",
        "query_text",
    ] {
        assert!(
            found["history_header"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h == column),
            "{column}: {found}"
        );
    }
    assert_eq!(found["history_has_query"], true);
    assert_eq!(
        found["tree"],
        serde_json::json!(["customers", "sales", "sales_by_city (materialized view)"])
    );
    assert_eq!(
        found["columns"],
        serde_json::json!(["id", "customer_id", "amount", "sold_on"])
    );
    let constraints = found["constraints"].to_string();
    assert!(
        constraints.contains("PRIMARY KEY") && constraints.contains("FOREIGN KEY"),
        "{found}"
    );
    let partitions = found["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2, "{found}");
    assert!(
        found["summary"].as_str().unwrap().contains("3 rows"),
        "{found}"
    );
    assert!(
        found["lineage_nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "public.sales_by_city"),
        "{found}"
    );
    assert!(
        found["views"].to_string().contains("sales_by_city"),
        "{found}"
    );
    assert!(
        found["views_header"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "is_stale"),
        "{found}"
    );
    assert!(
        found["view_lineage_nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "public.customers"),
        "{found}"
    );
    assert_eq!(found["console_errors"], serde_json::json!([]), "{found}");
    assert!(shots.join("console-query.png").exists());
}
