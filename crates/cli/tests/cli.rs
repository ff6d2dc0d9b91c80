//! End-to-end tests of the `strata` binary: output formats, errors, several processes writing
//! one table, and a writer killed mid-statement.

use std::process::{Command, Output, Stdio};

fn strata(warehouse: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--warehouse")
        .arg(warehouse)
        .args(args)
        .output()
        .expect("strata runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `strata init PATH`: its output.
fn init(path: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["init", path])
        .output()
        .expect("strata runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

fn sql(warehouse: &str, sql: &str) -> String {
    let o = strata(warehouse, &["--format", "csv", "-c", sql]);
    assert!(
        o.status.success(),
        "{sql} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

#[test]
fn formats_files_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(
        &w,
        "CREATE TABLE t (a INT, b VARCHAR); INSERT INTO t VALUES (1, 'x'), (2, NULL)",
    );
    assert_eq!(sql(&w, "SELECT a, b FROM t ORDER BY a"), "a,b\n1,x\n2,\n");
    let json = strata(
        &w,
        &["--format", "json", "-c", "SELECT a FROM t ORDER BY a"],
    );
    assert_eq!(stdout(&json), "[{\"a\":1},{\"a\":2}]\n");
    let ndjson = strata(
        &w,
        &["--format", "ndjson", "-c", "SELECT a FROM t ORDER BY a"],
    );
    assert_eq!(stdout(&ndjson), "{\"a\":1}\n{\"a\":2}\n");
    let table = strata(&w, &["-c", "SELECT count(*) AS n FROM t"]);
    assert!(stdout(&table).contains("| n |"), "{}", stdout(&table));

    let script = dir.path().join("q.sql");
    std::fs::write(&script, "-- a script\nSELECT sum(a) AS s FROM t;\n").unwrap();
    let o = strata(&w, &["--format", "csv", "-f", script.to_str().unwrap()]);
    assert_eq!(stdout(&o), "s\n3\n");

    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--warehouse", &w, "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT max(a) AS m FROM t")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "m\n2\n");
}

#[test]
fn errors_go_to_stderr_with_a_failing_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(&w, "CREATE SCHEMA IF NOT EXISTS public");
    let o = strata(&w, &["-c", "SELECT * FROM missing"]);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn a_missing_table_is_reported_once_with_the_names_near_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(&w, "CREATE TABLE sales (id INT)");
    let o = strata(&w, &["-c", "SELECT * FROM sale"]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: table 'main.public.sale' not found; did you mean 'sales'?\n"
    );
}

/// Runs one `strata -c SCRIPT` process per script, all at once on `warehouse` with the
/// environment `env`, and checks that each succeeded.
fn write_concurrently(
    warehouse: &str,
    env: &[(&str, String)],
    scripts: impl Iterator<Item = String>,
) {
    let writers: Vec<_> = scripts
        .map(|script| {
            Command::new(env!("CARGO_BIN_EXE_strata"))
                .args(["--warehouse", warehouse, "-c", &script])
                .envs(env.iter().map(|(k, v)| (k, v.as_str())))
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in writers {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn concurrent_writers_in_several_processes_lose_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(&w, "CREATE TABLE t (writer INT, n INT)");
    let scripts = (0..4).map(|writer| {
        (0..5)
            .map(|n| format!("INSERT INTO t VALUES ({writer}, {n});"))
            .collect()
    });
    write_concurrently(&w, &[], scripts);
    assert_eq!(
        sql(
            &w,
            "SELECT count(*) AS rows, count(DISTINCT writer * 10 + n) AS distinct_rows FROM t"
        ),
        "rows,distinct_rows\n20,20\n"
    );
    assert_eq!(
        sql(
            &w,
            "SELECT max(version) AS v FROM system.table_versions WHERE table_name = 't'"
        ),
        "v\n20\n"
    );
}

#[test]
fn a_writer_killed_before_its_commit_leaves_the_table_at_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(&w, "CREATE TABLE t (a BIGINT); INSERT INTO t VALUES (1)");
    // Dies after uploading its data files, before writing the commit.
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--warehouse",
            &w,
            "-c",
            "INSERT INTO t SELECT * FROM generate_series(1, 1000)",
        ])
        .env("STRATA_FAILPOINT", "before_commit")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(sql(&w, "SELECT count(*) AS n FROM t"), "n\n1\n");
    // The orphan is there, and VACUUM removes it.
    let files = |w: &str| {
        walk(&std::path::Path::new(w).join("tables"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .count()
    };
    assert_eq!(files(&w), 2);
    sql(
        &w,
        "SET strata.vacuum_retention_check = false; VACUUM t RETAIN 0 HOURS",
    );
    assert_eq!(files(&w), 1);
    assert_eq!(sql(&w, "SELECT count(*) AS n FROM t"), "n\n1\n");

    // A real kill at an arbitrary moment: the table is at one of its commits.
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--warehouse",
            &w,
            "-c",
            "INSERT INTO t SELECT * FROM generate_series(1, 300000); INSERT INTO t SELECT * FROM generate_series(1, 300000)",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    child.kill().unwrap();
    child.wait().unwrap();
    let n = sql(&w, "SELECT count(*) AS n FROM t");
    assert!(
        ["n\n1\n", "n\n300001\n", "n\n600001\n"].contains(&n.as_str()),
        "table is between commits: {n}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn memory_limit_spills_sorts_and_refuses_what_cannot_fit() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let w = w.to_str().unwrap();
    // A 4M-row sort does not fit in 64 MiB: it spills and still answers.
    let plan = strata(
        w,
        &[
            "--memory-limit",
            "64MiB",
            "--format",
            "csv",
            "-c",
            "EXPLAIN ANALYZE SELECT value FROM generate_series(1, 4000000) ORDER BY value DESC",
        ],
    );
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let spills: u64 = regex::Regex::new(r"spill_count=(\d+)")
        .unwrap()
        .captures_iter(&stdout(&plan))
        .map(|c| c[1].parse::<u64>().unwrap())
        .sum();
    assert!(spills > 0, "the sort did not spill: {}", stdout(&plan));
    let sorted = strata(
        w,
        &[
            "--memory-limit",
            "64MiB",
            "--format",
            "csv",
            "-c",
            "SELECT sum(r * value) FROM (SELECT value, row_number() OVER (ORDER BY value DESC) AS r FROM generate_series(1, 4000000))",
        ],
    );
    assert!(
        sorted.status.success(),
        "{}",
        String::from_utf8_lossy(&sorted.stderr)
    );
    // sum over v of v * (n + 1 - v) for n = 4,000,000
    let n: u128 = 4_000_000;
    let expected = (n + 1) * n * (n + 1) / 2 - n * (n + 1) * (2 * n + 1) / 6;
    assert_eq!(
        stdout(&sorted).lines().nth(1).unwrap(),
        expected.to_string()
    );

    // A hash join build cannot spill: too little memory is a clear error, not a crash.
    let join = strata(
        w,
        &[
            "--memory-limit",
            "64KiB",
            "-c",
            "SELECT count(*) FROM generate_series(1, 300000) a JOIN generate_series(1, 300000) b ON a.value = b.value",
        ],
    );
    assert!(!join.status.success());
    let err = String::from_utf8_lossy(&join.stderr);
    assert!(err.contains("Resources exhausted"), "{err}");
}

/// `script` ending in `os._exit` once it has printed its answer. pyarrow 26 aborts at interpreter
/// exit now and then after reading Parquet ("terminate called without an active exception",
/// about 1 run in 15 here, with any Parquet file): a script that got its answer must not fail on
/// pyarrow's teardown. A script that raises never reaches the exit and fails as before.
fn exits_at_once(script: &str) -> String {
    format!("{script}\nimport os, sys\nsys.stdout.flush()\nsys.stderr.flush()\nos._exit(0)")
}

/// A Python with pyarrow, the ADBC Flight SQL driver, moto (a local S3), DuckDB,
/// prometheus_client (its text-format parser), psycopg, SQLAlchemy and Selenium: `$STRATA_TEST_VENV`,
/// or a venv under `~/.cache/strata-venv` created (once) with pip.
fn python_with_flight_clients() -> std::path::PathBuf {
    let venv = std::env::var_os("STRATA_TEST_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            std::path::Path::new(&home).join(".cache/strata-venv")
        });
    let python = venv.join("bin/python");
    let ready = |python: &std::path::Path| {
        Command::new(python)
            .args([
                "-c",
                "import pyarrow.flight, adbc_driver_flightsql.dbapi, moto.server, boto3, duckdb, \
                 prometheus_client.parser, psycopg, sqlalchemy, selenium",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(made.success(), "python3 -m venv {}", venv.display());
        let installed = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "pyarrow",
                "adbc-driver-flightsql",
                "adbc-driver-manager",
                "moto[server]",
                "duckdb",
                "prometheus-client",
                "psycopg[binary]",
                "sqlalchemy",
                "selenium",
            ])
            .status()
            .expect("pip runs");
        assert!(
            installed.success(),
            "pip install of the Flight SQL clients failed"
        );
    }
    assert!(
        ready(&python),
        "pyarrow, adbc_driver_flightsql and moto import"
    );
    python
}

/// `strata serve` on an ephemeral port; returns the process and its `grpc://` address.
fn serve(warehouse: &str, password: &str) -> (std::process::Child, String) {
    serve_with(warehouse, password, &[])
}

/// [`serve`] with more arguments (global options first, then `serve`'s).
fn serve_with(warehouse: &str, password: &str, extra: &[&str]) -> (std::process::Child, String) {
    let (child, address, _) = spawn_server(warehouse, password, extra, false);
    (child, address)
}

/// A server process, killed when dropped: a failing test must not leave it running (it holds
/// the test's output pipes open).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// [`serve_with`] with `--metrics-listen` on an ephemeral port; also returns the metrics URL
/// (`http://host:port`).
fn serve_monitored(
    warehouse: &str,
    password: &str,
    extra: &[&str],
) -> (KillOnDrop, String, String) {
    let (child, address, metrics) = spawn_server(warehouse, password, extra, true);
    (
        KillOnDrop(child),
        address,
        metrics.expect("serve announces its metrics URL"),
    )
}

/// Starts `strata serve` on ephemeral ports; returns the process, its `grpc://` address and,
/// with `metrics`, its `http://` metrics address.
fn spawn_server(
    warehouse: &str,
    password: &str,
    extra: &[&str],
    metrics: bool,
) -> (std::process::Child, String, Option<String>) {
    spawn_server_with_env(warehouse, password, extra, metrics, &[])
}

/// [`spawn_server`] with `env` added to the server's environment (e.g. `AWS_*`).
fn spawn_server_with_env(
    warehouse: &str,
    password: &str,
    extra: &[&str],
    metrics: bool,
    env: &[(&str, String)],
) -> (std::process::Child, String, Option<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .args(["serve", "--warehouse", warehouse, "--listen", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    if metrics {
        command.args(["--metrics-listen", "127.0.0.1:0"]);
    }
    let mut child = command
        .env("STRATA_PASSWORD", password)
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata serve starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut metrics_url = None;
    let address = loop {
        let line = lines
            .next()
            .expect("strata serve announces its address")
            .unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            let address = rest.split('/').next().unwrap();
            metrics_url = Some(format!("http://{address}"));
        }
        if let Some(rest) = line.split("grpc://").nth(1) {
            break format!("grpc://{}", rest.split_whitespace().next().unwrap());
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, address, metrics_url)
}

/// `strata serve` on ephemeral ports with `extra` arguments; returns the process and what
/// follows `announce` on the first stderr line that starts with it (a listener's address).
fn serve_announcing(
    warehouse: &str,
    password: &str,
    extra: &[&str],
    announce: &str,
) -> (KillOnDrop, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--warehouse", warehouse, "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("STRATA_PASSWORD", password)
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata serve starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let rest = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("strata serve announces {announce:?}"))
            .unwrap();
        if let Some(rest) = line.strip_prefix(announce) {
            break rest.to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (KillOnDrop(child), rest)
}

/// The samples of a Prometheus page, as `name{label=value,...}` → value, read by
/// prometheus_client's parser.
fn scrape(url: &str) -> std::collections::HashMap<String, f64> {
    let python = python_with_flight_clients();
    let run = Command::new(&python)
        .arg(manifest_dir().join("tests/clients/scrape_metrics.py"))
        .arg(url)
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// An alert under `strata serve`: every 2 s it checks for readings over 100; once one arrives
/// it posts to a local HTTP listener, which fails the first attempt (the post is retried) and
/// takes the second. `system.alert_history` keeps every check, fired or not, and neither it
/// nor SHOW ALERTS shows the webhook's secret path.
#[test]
fn serve_fires_an_alert_webhook_and_retries_it() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!(
        "http://{}/hooks/s3cret-token",
        listener.local_addr().unwrap()
    );
    let (sender, bodies) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            // Read the head, then the body its Content-Length announces.
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let body = loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break String::new();
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break format!("{}\n{body}", head.lines().next().unwrap_or_default());
                    }
                }
            };
            let status = if i == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            let _ = sender.send(body);
        }
    });
    let setup = format!(
        "CREATE TABLE readings (sensor VARCHAR, value DOUBLE);
         CREATE ALERT too_hot SCHEDULE = '2 SECONDS'
           IF (EXISTS (SELECT sensor, value FROM readings WHERE value > 100))
           THEN NOTIFY WEBHOOK '{hook}';
         ALTER ALERT too_hot RESUME;"
    );
    let o = strata(&w, &["-c", &setup]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (server, _, metrics) = serve_monitored(&w, "alert-test-pw", &[]);
    // Checks that find nothing are recorded, and post nothing.
    let mut seen = String::new();
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        seen = sql(&w, "SELECT status FROM system.alert_history");
        if seen.contains("NOT_FIRED") {
            break;
        }
    }
    assert!(seen.contains("NOT_FIRED"), "{seen}");
    assert!(bodies.try_recv().is_err());
    sql(
        &w,
        "INSERT INTO readings VALUES ('boiler', 130.5), ('fan', 20)",
    );
    let first = bodies
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the webhook is called");
    let second = bodies
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the failed post is retried");
    assert!(first.starts_with("POST /hooks/s3cret-token"), "{first}");
    assert!(
        second.contains("\"alert\":\"main.public.too_hot\""),
        "{second}"
    );
    assert!(second.contains("\"rows\":1"), "{second}");
    assert!(second.contains("\"sensor\":\"boiler\""), "{second}");
    let mut fired = String::new();
    for _ in 0..40 {
        fired = sql(
            &w,
            "SELECT status, rows, attempts, action FROM system.alert_history \
             WHERE status = 'FIRED' LIMIT 1",
        );
        if fired.lines().count() > 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(fired.contains("FIRED,1,2,"), "{fired}");
    let scraped = scrape(&format!("{metrics}/metrics"));
    assert!(
        scraped
            .get("strata_alert_checks_total{status=FIRED}")
            .is_some_and(|v| *v >= 1.0),
        "{scraped:?}"
    );
    drop(server);
    let shown = sql(&w, "SHOW ALERTS") + &sql(&w, "SELECT * FROM system.alert_history");
    assert!(!shown.contains("s3cret"), "{shown}");
}

/// `SUBSCRIBE TO` a continuous view pushes its rows, then each window's new value as
/// commits of another process land, without polling by the reader.
#[test]
fn subscribe_pushes_a_continuous_view_as_commits_land() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(
        &w,
        "CREATE TABLE clicks (ts TIMESTAMP, page VARCHAR);
         INSERT INTO clicks VALUES (TIMESTAMP '2026-01-01 10:00:05', '/a');
         CREATE MATERIALIZED VIEW per_minute WITH (refresh = 'continuous') AS
           SELECT date_bin(INTERVAL '1 minute', ts) AS minute, page, count(*) AS n
           FROM clicks GROUP BY 1, 2",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--warehouse",
            &w,
            "--format",
            "ndjson",
            "-c",
            "SUBSCRIBE TO per_minute",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let stdout = child.stdout.take().unwrap();
    let subscriber = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = || {
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("SUBSCRIBE sent a row within 30 s")
    };
    let first = next();
    assert!(
        first.contains("\"page\":\"/a\"") && first.contains("\"n\":1"),
        "{first}"
    );
    assert!(first.contains("\"version\":"), "{first}");
    sql(
        &w,
        "INSERT INTO clicks VALUES (TIMESTAMP '2026-01-01 10:00:30', '/a'),
                                  (TIMESTAMP '2026-01-01 10:01:00', '/b')",
    );
    let mut changed = vec![next(), next()];
    changed.sort();
    assert!(
        changed[0].contains("\"page\":\"/a\"") && changed[0].contains("\"n\":2"),
        "{changed:?}"
    );
    assert!(
        changed[1].contains("\"page\":\"/b\"") && changed[1].contains("\"n\":1"),
        "{changed:?}"
    );
    // Only what changed is sent: nothing more arrives until the next commit.
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(500))
            .is_err()
    );
    drop(subscriber);
    // Not a materialized view: a clear error.
    let o = strata(&w, &["-c", "SUBSCRIBE TO clicks"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a materialized view"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// In the interactive shell, `SUBSCRIBE TO` shows each change as a table as it arrives, and
/// Ctrl-C ends it.
#[test]
fn shell_shows_a_subscription_live_until_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(
        &w,
        "CREATE TABLE taps (ts TIMESTAMP, page VARCHAR);
         INSERT INTO taps VALUES (TIMESTAMP '2026-01-01 10:00:05', '/first');
         CREATE MATERIALIZED VIEW taps_per_minute WITH (refresh = 'continuous') AS
           SELECT date_bin(INTERVAL '1 minute', ts) AS minute, page, count(*) AS n
           FROM taps GROUP BY 1, 2",
    );
    let mut s = shell(dir.path());
    s.send_line("SUBSCRIBE TO taps_per_minute;").unwrap();
    s.exp_string("/first").expect("the view's rows first");
    sql(
        &w,
        "INSERT INTO taps VALUES (TIMESTAMP '2026-01-01 10:02:00', '/second')",
    );
    s.exp_string("/second").expect("the change, as it lands");
    s.send_control('c').unwrap();
    s.exp_string("cancelled")
        .expect("Ctrl-C ends the subscription");
    s.exp_string("strata> ").unwrap();
}

/// Runs `ingest_producer.py` on a channel: `batches` batches of `rows` rows, each batch its
/// own offset token. Returns the process, to wait for or kill.
fn spawn_producer(
    address: &str,
    password: &str,
    channel: &str,
    batches: u32,
    rows: u32,
) -> std::process::Child {
    Command::new(python_with_flight_clients())
        .arg(manifest_dir().join("tests/clients/ingest_producer.py"))
        .args([address, password, "main.public.events", channel])
        .args([batches.to_string(), rows.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs")
}

/// The producer's JSON report, after it ran to the end.
fn producer_report(child: std::process::Child) -> String {
    let out = child.wait_with_output().expect("producer ends");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Exactly-once ingest through pyarrow.flight: a producer killed at random moments (5 times
/// here, 50 with `STRATA_LONG_TESTS=1`) and restarted from its channel's committed offset
/// token leaves every row once; four producers on channels of their own run at once without
/// a conflict reaching them; group commit makes far fewer commits than appends.
#[test]
fn serve_ingest_channels_are_exactly_once_across_killed_producers() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(
        &w,
        "CREATE TABLE events (id BIGINT NOT NULL, channel VARCHAR, ts TIMESTAMP, value DOUBLE)",
    );
    let (server, address) = serve_with(&w, "ingest-pw", &[]);
    let _server = KillOnDrop(server);

    // One producer, to the end; running it again resumes after its last token: nothing to send.
    let report = producer_report(spawn_producer(&address, "ingest-pw", "a", 20, 500));
    assert!(report.contains("\"rows_acked\": 10000"), "{report}");
    let again = producer_report(spawn_producer(&address, "ingest-pw", "a", 20, 500));
    assert!(again.contains("\"resumed_from\": \"19\""), "{again}");
    assert!(again.contains("\"rows_sent\": 0"), "{again}");

    // Killed at random and restarted.
    let kills = if std::env::var_os("STRATA_LONG_TESTS").is_some() {
        50
    } else {
        5
    };
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for _ in 0..kills {
        let mut child = spawn_producer(&address, "ingest-pw", "k", 400, 100);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_millis(300 + (seed >> 33) % 900));
        let _ = child.kill();
        let _ = child.wait();
    }
    let last = producer_report(spawn_producer(&address, "ingest-pw", "k", 400, 100));
    let counts = sql(
        &w,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi \
         FROM events WHERE channel = 'k'",
    );
    assert_eq!(counts, "n,ids,lo,hi\n40000,40000,0,39999\n", "{last}");

    // Four producers at once, a channel each.
    let producers: Vec<_> = (0..4)
        .map(|i| spawn_producer(&address, "ingest-pw", &format!("c{i}"), 50, 200))
        .collect();
    for p in producers {
        let report = producer_report(p);
        assert!(report.contains("\"rows_acked\": 10000"), "{report}");
    }
    let channels = sql(
        &w,
        "SELECT channel, last_offset_token, rows, commits < 50 AS grouped \
         FROM system.ingest_channels WHERE channel LIKE 'c%' ORDER BY channel",
    );
    assert_eq!(
        channels,
        "channel,last_offset_token,rows,grouped\n\
         c0,49,10000,true\nc1,49,10000,true\nc2,49,10000,true\nc3,49,10000,true\n"
    );
    assert_eq!(
        sql(
            &w,
            "SELECT count(*) - count(DISTINCT channel || id) AS dup FROM events"
        ),
        "dup\n0\n"
    );
}

#[test]
fn real_flight_sql_clients_adbc_and_pyarrow() {
    let python = python_with_flight_clients();
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (mut server, address) = serve(&w, "client-test-pw");
    let script = manifest_dir().join("tests/clients/flight_sql_clients.py");
    let run = Command::new(&python)
        .arg(&script)
        .args([&address, "client-test-pw"])
        .output()
        .expect("python runs");
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout(&run).contains("all checks passed"));
    // What the clients wrote is in the warehouse: 5 rows by SQL, 3 through ingest channels.
    assert_eq!(sql(&w, "SELECT count(*) AS n FROM sales"), "n\n8\n");
    assert_eq!(
        sql(
            &w,
            "SELECT channel, last_offset_token, rows, owner FROM system.ingest_channels \
             ORDER BY channel"
        ),
        "channel,last_offset_token,rows,owner\nfile-feed,f1,2,strata\ntyped-feed,t1,1,strata\n"
    );
}

#[test]
fn serve_refreshes_scheduled_materialized_views() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(
        &w,
        "CREATE TABLE events (n INT);
         INSERT INTO events VALUES (1);
         CREATE MATERIALIZED VIEW total WITH (refresh = 'every 1 second') AS
           SELECT SUM(n) AS s FROM events;
         INSERT INTO events VALUES (2), (3);",
    );
    assert_eq!(sql(&w, "SELECT s FROM total"), "s\n1\n");
    let (mut server, _) = serve(&w, "mv-test-pw");
    let mut seen = String::new();
    for _ in 0..60 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        seen = sql(&w, "SELECT s FROM total");
        if seen == "s\n6\n" {
            break;
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(seen, "s\n6\n", "the server did not refresh the view");
}

#[test]
fn serve_compacts_small_files_and_applies_retention() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    sql(
        &w,
        "CREATE TABLE ev (at DATE, v INT) PARTITION BY RANGE (at) INTERVAL (1 MONTH);
         INSERT INTO ev VALUES ('2001-01-01', 0);
         INSERT INTO ev VALUES (CURRENT_DATE, 1);
         INSERT INTO ev VALUES (CURRENT_DATE, 2);
         INSERT INTO ev VALUES (CURRENT_DATE, 3);
         ALTER TABLE ev SET (partition_retention = '1 year');",
    );
    let (mut server, _) = serve_with(
        &w,
        "upkeep-test-pw",
        &[
            "--maintenance-interval-secs",
            "1",
            "--set",
            "strata.auto_compact_min_files=3",
        ],
    );
    let check = "SELECT count(*) AS partitions, sum(file_count) AS files, sum(row_count) AS rows \
                 FROM system.partitions WHERE table_name = 'ev'";
    let mut seen = String::new();
    for _ in 0..80 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        seen = sql(&w, check);
        if seen == "partitions,files,rows\n1,1,3\n" {
            break;
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        seen, "partitions,files,rows\n1,1,3\n",
        "the server did not do its upkeep"
    );
    let operations = sql(
        &w,
        "SELECT operation FROM system.table_versions WHERE table_name = 'ev' \
         AND operation IN ('APPLY RETENTION', 'OPTIMIZE') ORDER BY operation",
    );
    assert_eq!(operations, "operation\nAPPLY RETENTION\nOPTIMIZE\n");
}

/// The shipped `examples/daily_pipeline.sql` runs under `strata serve` on its schedule (made
/// every 2 s here): extract, transform, test and refresh in order. Then a landing file with a
/// row that breaks a data test arrives: the gate refuses the transform's MERGE, the task is
/// retried and fails again, the tasks after it are skipped, and `orders` keeps its rows.
#[test]
fn serve_runs_the_daily_pipeline_on_schedule_and_its_gate_refuses_a_bad_load() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let landing = dir.path().join("landing");
    std::fs::create_dir(&landing).unwrap();
    let header = "order_id,customer_id,status,amount,updated_at\n";
    std::fs::write(
        landing.join("orders_1.csv"),
        format!(
            "{header}1,10,placed,20.00,2026-01-01 10:00:00\n2,11,placed,5.50,2026-01-01 11:00:00\n\
             1,10,shipped,20.00,2026-01-01 12:00:00\n"
        ),
    )
    .unwrap();
    let pipeline =
        std::fs::read_to_string(manifest_dir().join("../../examples/daily_pipeline.sql"))
            .unwrap()
            .replace(
                "URL = 'landing/'",
                &format!("URL = '{}/'", landing.display()),
            )
            .replace("'USING CRON 0 2 * * * UTC'", "'2 SECONDS'")
            .replace("RETRY_DELAY = '1 minute'", "RETRY_DELAY = '1 second'");
    let file = dir.path().join("pipeline.sql");
    std::fs::write(&file, pipeline).unwrap();
    let o = strata(&w, &["-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (server, _, metrics) = serve_monitored(&w, "task-test-pw", &[]);
    let runs = "SELECT task, status FROM system.task_runs ORDER BY started_at, attempt";
    let wait_for = |done: &dyn Fn(&str) -> bool| -> String {
        let mut seen = String::new();
        for _ in 0..120 {
            std::thread::sleep(std::time::Duration::from_millis(250));
            seen = sql(&w, runs);
            if done(&seen) {
                break;
            }
        }
        seen
    };
    let seen = wait_for(&|s| s.contains("main.public.refresh,SUCCEEDED"));
    assert!(
        seen.starts_with(
            "task,status\nmain.public.extract,SUCCEEDED\nmain.public.transform,SUCCEEDED\n\
             main.public.test,SUCCEEDED\nmain.public.refresh,SUCCEEDED\n"
        ),
        "{seen}"
    );
    assert_eq!(
        sql(&w, "SELECT order_id, status FROM orders ORDER BY order_id"),
        "order_id,status\n1,shipped\n2,placed\n"
    );
    assert_eq!(
        sql(&w, "SELECT revenue, orders FROM daily_revenue"),
        "revenue,orders\n25.50,2\n"
    );
    let before = scrape(&format!("{metrics}/metrics"));
    let value =
        |m: &std::collections::HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    assert!(
        value(&before, "strata_task_runs_total{status=SUCCEEDED}") >= 4.0,
        "{before:?}"
    );
    assert!(
        value(&before, "strata_commits_total{}") >= 3.0,
        "{before:?}"
    );
    assert!(
        value(&before, "strata_rows_loaded_total{}") >= 3.0,
        "{before:?}"
    );
    assert!(
        value(
            &before,
            "strata_statement_duration_seconds_count{kind=MERGE}"
        ) >= 1.0,
        "{before:?}"
    );
    assert_eq!(
        value(&before, "strata_data_test_failures_total{severity=ERROR}"),
        0.0
    );
    // Health checks answer beside the metrics.
    let health = Command::new(python_with_flight_clients())
        .args([
            "-c",
            "import sys, urllib.request as u\n\
             for p in ('/healthz', '/readyz'):\n\
             \x20   print(u.urlopen(sys.argv[1] + p, timeout=30).status)",
        ])
        .arg(&metrics)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout), "200\n200\n");
    // A bad file: a row without a customer.
    std::fs::write(
        landing.join("orders_2.csv"),
        format!("{header}3,,placed,1.00,2026-01-02 10:00:00\n"),
    )
    .unwrap();
    let seen = wait_for(&|s| s.contains("main.public.refresh,SKIPPED"));
    // The counters moved: two failed attempts, two skips, data tests failing in the gate.
    let after = scrape(&format!("{metrics}/metrics"));
    assert!(
        value(&after, "strata_task_runs_total{status=FAILED}") >= 2.0,
        "{after:?}"
    );
    assert!(
        value(&after, "strata_task_runs_total{status=SKIPPED}") >= 2.0,
        "{after:?}"
    );
    assert!(
        value(&after, "strata_data_test_failures_total{severity=ERROR}") >= 1.0,
        "{after:?}"
    );
    assert!(
        value(&after, "strata_statements_total{kind=MERGE,status=FAILED}") >= 1.0,
        "{after:?}"
    );
    drop(server);
    let failed_run = &seen[seen.rfind("main.public.extract,SUCCEEDED").unwrap()..];
    assert!(
        failed_run.starts_with(
            "main.public.extract,SUCCEEDED\nmain.public.transform,FAILED\n\
             main.public.transform,FAILED\nmain.public.test,SKIPPED\nmain.public.refresh,SKIPPED\n"
        ),
        "{seen}"
    );
    let error = sql(
        &w,
        "SELECT error FROM system.task_runs WHERE status = 'FAILED' LIMIT 1",
    );
    assert!(
        error.contains("data test 'not_null_orders_customer_id' failed on 1 row"),
        "{error}"
    );
    assert_eq!(sql(&w, "SELECT count(*) AS n FROM orders"), "n\n2\n");
}

#[test]
fn serve_without_users_generates_a_password_and_stays_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--warehouse", &w, "serve", "--listen", "0.0.0.0:0"])
        .env_remove("STRATA_PASSWORD")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("only listens on a loopback address"), "{err}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--warehouse", &w, "serve", "--listen", "127.0.0.1:0"])
        .env_remove("STRATA_PASSWORD")
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("grpc://") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.contains("generated a password for user 'strata'"),
        "{seen}"
    );
    // A server always runs under a memory limit, three quarters of the machine's by default.
    let limit =
        regex::Regex::new(r"memory limit (\d+) MiB for queries, scan cache and metadata").unwrap();
    let mib: u64 = limit.captures(&seen).unwrap_or_else(|| panic!("{seen}"))[1]
        .parse()
        .unwrap();
    assert!(mib > 0, "{seen}");
}

/// A moto S3 server on a free loopback port, with buckets `warehouse` and `landing` (the load
/// files under `landing/in/`). Returns the process and the `AWS_*` settings that reach it.
fn local_s3() -> (std::process::Child, Vec<(&'static str, String)>) {
    let python = python_with_flight_clients();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(python.with_file_name("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            server.kill().unwrap();
            panic!("moto_server did not start on port {port}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let fixture = Command::new(&python)
        .args([
            manifest_dir()
                .join("tests/clients/s3_fixture.py")
                .as_os_str(),
            std::ffi::OsStr::new(&endpoint),
            manifest_dir().join("../../testdata/load").as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(
        fixture.status.success(),
        "{}",
        String::from_utf8_lossy(&fixture.stderr)
    );
    let settings = vec![
        ("AWS_ENDPOINT", endpoint),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    (server, settings)
}

#[test]
fn a_warehouse_on_s3_loads_from_s3_and_keeps_concurrent_commits() {
    let (mut s3, settings) = local_s3();
    let w = "s3://warehouse/wh";
    let run = |sql: &str| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--warehouse", w, "--format", "csv", "-c", sql])
            .envs(settings.iter().map(|(k, v)| (k, v.as_str())))
            .output()
            .unwrap()
    };
    let ok = |sql: &str| {
        let o = run(sql);
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    ok(
        "CREATE TABLE sales (id INT, sale_date DATE, region VARCHAR, amount DECIMAL(10,2)) \
        PARTITION BY RANGE (sale_date) INTERVAL (1 MONTH)",
    );
    let loaded = ok("COPY INTO sales FROM 's3://landing/in/sales_2024_*.csv' \
                     FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1)");
    assert!(
        loaded.contains("s3://landing/in/sales_2024_01.csv,LOADED,3")
            && loaded.contains("s3://landing/in/sales_2024_02.csv,LOADED,2"),
        "{loaded}"
    );
    // Loaded files are remembered; a bad file fails the whole load with its name and line.
    let again = ok(
        "COPY INTO sales FROM 's3://landing/in/' FILES = ('sales_2024_01.csv') \
                    FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1)",
    );
    assert!(again.contains("SKIPPED"), "{again}");
    let bad = run("COPY INTO sales FROM 's3://landing/in/' \
                   FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1) FORCE = TRUE");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("s3://landing/in/bad_type.csv: line 3"),
        "{err}"
    );
    let missing = run("COPY INTO sales FROM 's3://landing/nothing/*.csv'");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no files match"));

    // Writers in several processes commit through S3's conditional puts: none is lost.
    let scripts = (0..3).map(|writer| {
        (0..3)
            .map(|n| {
                let id = 100 + writer * 10 + n;
                format!("INSERT INTO sales VALUES ({id}, DATE '2024-03-01', 'W', {n});")
            })
            .collect()
    });
    write_concurrently(w, &settings, scripts);
    let counts =
        ok("SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(amount) AS total FROM sales");

    // A named secret carries the keys, endpoint and region: a process with no AWS_* settings
    // loads from the bucket, and no key reaches its output or the query log.
    let endpoint = &settings[0].1;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("wh");
    let run_local = |sql: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command.args([
            "--warehouse",
            local.to_str().unwrap(),
            "--format",
            "csv",
            "-c",
            sql,
        ]);
        for (key, _) in &settings {
            command.env_remove(key);
        }
        command.output().unwrap()
    };
    let created = run_local(&format!(
        "CREATE SECRET landing (TYPE = S3, KEY_ID = 'test', SECRET = 'test', \
         ENDPOINT = '{endpoint}', REGION = 'us-east-1'); \
         CREATE TABLE sales (id INT, sale_date DATE, region VARCHAR, amount DECIMAL(10,2)); \
         COPY INTO sales FROM 's3://landing/in/sales_2024_01.csv' \
         CREDENTIALS = (SECRET = landing) FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1); \
         SELECT count(*) AS n FROM sales"
    ));
    assert!(
        created.status.success() && stdout(&created).ends_with("n\n3\n"),
        "{}{}",
        stdout(&created),
        String::from_utf8_lossy(&created.stderr)
    );
    let shown = run_local(
        "SELECT secret_name, endpoint, has_key FROM system.secrets; \
         SELECT query_text FROM system.query_log ORDER BY started_at",
    );
    let shown = stdout(&shown);
    assert!(
        shown.contains(&format!("landing,{endpoint},true")),
        "{shown}"
    );
    assert!(
        shown.contains("KEY_ID = '***', SECRET = '***'") && !shown.contains("'test'"),
        "{shown}"
    );
    s3.kill().unwrap();
    s3.wait().unwrap();
    assert_eq!(counts, "n,ids,total\n14,14,554.75\n");
}

/// The interactive shell in a pseudo-terminal, as a user types into it.
fn shell(dir: &std::path::Path) -> rexpect::session::PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .arg("--warehouse")
        .arg(dir.join("wh"))
        .current_dir(dir)
        .env("STRATA_HISTORY", dir.join("history"))
        .env("TERM", "xterm");
    let mut session = rexpect::session::spawn_command(command, Some(30_000)).expect("spawn shell");
    session.exp_string("strata> ").expect("prompt");
    session
}

fn type_line(session: &mut rexpect::session::PtySession, line: &str, expect: &str) {
    session.send_line(line).expect("send");
    session
        .exp_string(expect)
        .unwrap_or_else(|e| panic!("after {line:?}, expected {expect:?}: {e}"));
    session.exp_string("strata> ").expect("prompt");
}

#[test]
fn shell_meta_commands_formats_and_history() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("more.sql"),
        "CREATE TABLE more_rows (k INT);\nINSERT INTO more_rows VALUES (7);\n",
    )
    .unwrap();
    let mut s = shell(dir.path());
    type_line(
        &mut s,
        "CREATE TABLE t (id INT, name VARCHAR);",
        "created table",
    );
    type_line(&mut s, "INSERT INTO t VALUES (1, 'a'), (2, NULL);", "2");
    // A statement spans lines until its `;`.
    s.send_line("SELECT id,").unwrap();
    type_line(&mut s, "  name FROM t ORDER BY id;", "| NULL |");
    type_line(&mut s, "SELECT * FROM t;", "2 rows");
    type_line(
        &mut s,
        "SELECT * FROM generate_series(1, 100000);",
        "showing 40 of 100,000 rows",
    );
    type_line(&mut s, "\\d", "| t          | table |");
    type_line(&mut s, ".schema t", "| name        | VARCHAR");
    type_line(&mut s, "\\dn", "| main     | public");
    type_line(
        &mut s,
        "\\d nope",
        "table 'main.public.nope' does not exist",
    );
    type_line(&mut s, "\\format csv", "format is csv");
    type_line(&mut s, "SELECT id FROM t ORDER BY id;", "id\r\n1\r\n2");
    type_line(&mut s, ".mode markdown", "format is markdown");
    type_line(&mut s, "SELECT id FROM t ORDER BY id;", "| ---: |");
    type_line(&mut s, "\\format yaml", "unknown format 'yaml'");
    type_line(&mut s, "\\format table", "format is table");
    type_line(&mut s, "\\x", "expanded display is on");
    type_line(&mut s, "SELECT * FROM t ORDER BY id;", "-[ RECORD 2 ]");
    type_line(&mut s, "\\x off", "expanded display is off");
    type_line(&mut s, "\\timing off", "timing is off");
    type_line(&mut s, "SELECT 1 AS one;", "1 row\r\n");
    type_line(&mut s, "\\o rows.parquet", "as Parquet");
    type_line(&mut s, "SELECT * FROM t;", "written to rows.parquet");
    type_line(&mut s, "\\o rows.csv", "results go to rows.csv");
    type_line(&mut s, "\\format csv", "format is csv");
    type_line(
        &mut s,
        "SELECT id FROM t ORDER BY id;",
        "written to rows.csv",
    );
    type_line(&mut s, "\\o", "results go to the terminal");
    type_line(&mut s, "\\format table", "format is table");
    type_line(
        &mut s,
        "\\i more.sql",
        "created table main.public.more_rows",
    );
    type_line(&mut s, "SELECT k FROM more_rows;", "7");
    type_line(&mut s, "SELEC 1;", "error");
    type_line(&mut s, "\\?", "expanded display");
    s.send_line("\\q").unwrap();
    s.exp_eof().expect("the shell ends");

    let parquet = std::fs::read(dir.path().join("rows.parquet")).unwrap();
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
    let csv = std::fs::read_to_string(dir.path().join("rows.csv")).unwrap();
    assert_eq!(csv, "id\n1\n2\n");
    let w = dir.path().join("wh").display().to_string();
    assert_eq!(sql(&w, "SELECT count(*) AS n FROM more_rows"), "n\n1\n");

    // History persists across shells.
    let history = std::fs::read_to_string(dir.path().join("history")).unwrap();
    assert!(
        history.contains("CREATE TABLE t (id INT, name VARCHAR);"),
        "{history}"
    );
    assert!(history.contains("name FROM t ORDER BY id;"), "{history}");
}

#[test]
fn shell_completes_names_and_ctrl_c_cancels_only_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = shell(dir.path());
    type_line(
        &mut s,
        "CREATE TABLE lineorder_x (lo_orderkey INT, lo_revenue BIGINT);",
        "created table",
    );
    type_line(&mut s, "INSERT INTO lineorder_x VALUES (1, 100);", "1");
    // Tab completes a column, a table and a keyword in place.
    s.send("sel\t lo_rev\t FROM lineorder\t").unwrap();
    s.send_line(";").unwrap();
    s.exp_string("| lo_revenue |")
        .expect("completed query runs");
    s.exp_string("strata> ").unwrap();

    // A long query, cancelled with Ctrl-C: the shell stays and answers the next statement.
    // After a second a progress line counts the rows scanned so far.
    s.send_line("SELECT sum(value) FROM generate_series(1, 100000000000);")
        .unwrap();
    s.exp_regex("[0-9,]+ rows scanned")
        .expect("a progress line while the query runs");
    s.send_control('c').unwrap();
    s.exp_string("cancelled").expect("the query is cancelled");
    s.exp_string("strata> ").unwrap();
    type_line(&mut s, "SELECT 6 * 7 AS answer;", "42");
    // A CPU-bound join keeps every worker busy: Ctrl-C still brings the prompt back at once,
    // and the join stops using the CPU.
    type_line(
        &mut s,
        "CREATE TABLE j AS SELECT value % 3 AS k FROM generate_series(1, 6000);",
        "created table",
    );
    let shell_pid = pid_of(&dir.path().join("wh").display().to_string());
    s.send_line("SELECT count(*) FROM j a JOIN j b ON a.k = b.k JOIN j c ON b.k = c.k;")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let second = std::time::Duration::from_secs(1);
    assert!(cpu_over(shell_pid, second) > 0.5, "the join is not running");
    let pressed = std::time::Instant::now();
    s.send_control('c').unwrap();
    s.exp_string("cancelled")
        .expect("the CPU-bound join is cancelled");
    s.exp_string("strata> ").unwrap();
    assert!(
        pressed.elapsed() < std::time::Duration::from_secs(3),
        "Ctrl-C took {:?} to bring the prompt back",
        pressed.elapsed()
    );
    std::thread::sleep(second);
    let used = cpu_over(shell_pid, 2 * second);
    assert!(
        used < 0.3,
        "the cancelled join went on: {used:.2} CPU seconds in 2 s"
    );
    // Ctrl-C at the prompt drops the line being typed, not the shell.
    s.send("SELECT 'half a statement").unwrap();
    s.send_control('c').unwrap();
    s.exp_string("strata> ").unwrap();
    type_line(&mut s, "SELECT 'still here' AS s;", "still here");
    s.send_control('d').unwrap();
    s.exp_eof().expect("Ctrl-D ends the shell");
}

/// The text the shell printed up to its next prompt.
fn until_prompt(session: &mut rexpect::session::PtySession) -> String {
    session.exp_string("strata> ").expect("prompt")
}

#[test]
fn shell_completes_in_context_describes_as_sql_resolves_and_prints_plans() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = shell(dir.path());
    for statement in [
        "CREATE TABLE customer (customer_id INT PRIMARY KEY, customer_name VARCHAR);",
        "CREATE TABLE orders (order_id BIGINT PRIMARY KEY, customer_id INT REFERENCES customer, \
         d DATE) PARTITION BY RANGE (d) INTERVAL (1 MONTH);",
        "CREATE MATERIALIZED VIEW order_count AS SELECT count(*) AS n FROM orders;",
        "CREATE VIEW names AS SELECT customer_name FROM customer;",
        "CREATE DATABASE analytics;",
        "CREATE SCHEMA analytics.production;",
        "CREATE TABLE analytics.production.orders (id INT, amount DOUBLE);",
    ] {
        type_line(&mut s, statement, "created");
    }
    type_line(&mut s, "INSERT INTO customer VALUES (1, 'Ada');", "1 row");
    type_line(
        &mut s,
        "COMMENT ON TABLE orders IS 'One row per order';",
        "comment on",
    );

    // \d: the current database's objects with their kinds; the other database stays out.
    s.send_line("\\d").unwrap();
    let tables = until_prompt(&mut s);
    for kind in ["| table ", "| materialized view ", "| view "] {
        assert!(tables.contains(kind), "{kind} missing:\n{tables}");
    }
    assert!(!tables.contains("analytics"), "{tables}");

    // \d NAME resolves NAME as SQL does: no merging of two databases' `orders`.
    s.send_line("\\d orders").unwrap();
    let orders = until_prompt(&mut s);
    for part in [
        "table main.public.orders",
        "| BIGINT ",
        "PRIMARY KEY",
        "REFERENCES main.public.customer (customer_id)",
        "partitioned by: RANGE (d) INTERVAL (1 MONTH)",
        "comment: One row per order",
    ] {
        assert!(orders.contains(part), "{part} missing:\n{orders}");
    }
    assert!(!orders.contains("amount"), "{orders}");
    type_line(
        &mut s,
        "\\d order_count",
        "materialized view main.public.order_count",
    );
    s.send_line("\\d analytics.production.orders").unwrap();
    let other = until_prompt(&mut s);
    assert!(
        other.contains("| DOUBLE ") && !other.contains("customer_id"),
        "{other}"
    );

    // Completion in context: after FROM a table (not the column prefix `customer`), after
    // SELECT a column of the statement's tables, after a dot the members.
    s.send("SELECT * FROM cust\t").unwrap();
    s.send_line(";").unwrap();
    s.exp_string("| customer_id | customer_name |")
        .expect("FROM cust<Tab> completed to the table");
    until_prompt(&mut s);
    s.send("SELECT customer_n\t FROM customer;").unwrap();
    s.send_line("").unwrap();
    s.exp_string("| Ada ")
        .expect("a column completed after SELECT");
    until_prompt(&mut s);
    s.send("SELECT count(*) FROM analytics.produ\t.ord\t")
        .unwrap();
    s.send_line(";").unwrap();
    s.exp_string("|        0 |")
        .expect("a schema and its table completed after dots");
    until_prompt(&mut s);

    // A statement over several lines gets the continuation prompt.
    s.send_line("SELECT customer_name").unwrap();
    s.exp_string("   ...> ").expect("continuation prompt");
    type_line(&mut s, "FROM customer;", "| Ada ");

    // EXPLAIN prints its plan as a tree of lines, in a table and in expanded display.
    s.send_line("EXPLAIN SELECT customer_name, count(*) FROM customer GROUP BY 1;")
        .unwrap();
    let plan = until_prompt(&mut s);
    assert!(
        regex::Regex::new(r"\| logical_plan +\| Projection: [^\n]*\n\| +\|   Aggregate: ")
            .unwrap()
            .is_match(&plan.replace('\r', "")),
        "{plan}"
    );
    type_line(&mut s, "\\x on", "expanded display is on");
    s.send_line("EXPLAIN SELECT customer_name, count(*) FROM customer GROUP BY 1;")
        .unwrap();
    let plan = until_prompt(&mut s);
    assert!(
        regex::Regex::new(r"plan +\| Projection: [^\n]*\n +\|   Aggregate: ")
            .unwrap()
            .is_match(&plan.replace('\r', "")),
        "{plan}"
    );
    s.send_line("\\q").unwrap();
    s.exp_eof().expect("the shell ends");
}

#[test]
fn demo_builds_a_star_schema_whose_example_queries_run() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("demo").display().to_string();
    let demo = || {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["demo", &location])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = demo();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Building the demo warehouse"));
    let printed = stdout(&o);
    let examples = &printed[printed.find("-- 1.").expect("examples are printed")..];
    assert_eq!(examples.matches("\n-- ").count(), 4, "five examples");

    // The examples run as printed.
    let file = dir.path().join("examples.sql");
    std::fs::write(&file, examples).unwrap();
    let o = strata(
        &location,
        &["--format", "csv", "-f", file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let results = stdout(&o);
    // Deterministic data: customer 15 moved in 2024 and keeps both versions.
    assert!(
        results.contains("15,15,Customer 15,Osaka,consumer,2023-01-01,2024-01-16,false\n")
            && results
                .contains("303,15,Customer 15,Denver,enterprise,2024-01-16,9999-12-31,true\n"),
        "{results}"
    );
    assert!(results.contains("p_2023_01,8482,1\n"), "{results}");
    assert_eq!(
        sql(
            &location,
            "SELECT count(*) AS n, count(DISTINCT partition_name) AS months FROM system.partitions WHERE table_name = 'sales'"
        ),
        "n,months\n24,24\n"
    );

    // The dashboard query reads the materialized view and agrees with the fact table.
    let dashboard = examples.split("-- ").nth(4).unwrap();
    let dashboard = &dashboard[dashboard.find("SELECT").unwrap()..];
    let plan = sql(&location, &format!("EXPLAIN {dashboard}"));
    assert!(plan.contains("monthly_revenue"), "{plan}");
    let from_view = sql(&location, dashboard);
    let from_facts = sql(
        &location,
        &format!("SET strata.mv_rewrite = false; {dashboard}"),
    );
    // (SET prints an empty result first.)
    assert!(
        from_facts.ends_with(&from_view),
        "{from_view} vs {from_facts}"
    );

    // A second `strata demo` opens the warehouse as it is.
    let o = demo();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists; opening it"));
    assert_eq!(
        sql(&location, "SELECT count(*) AS n FROM sales"),
        "n\n200000\n"
    );
}

#[test]
fn remote_runs_scripts_and_the_shell_on_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let (mut server, address) = serve(&w, "remote-pw");
    let remote = |password: &str, sql: &str| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--remote", &address, "--format", "csv", "-c", sql])
            .env("STRATA_PASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = remote(
        "remote-pw",
        "CREATE TABLE r (id INT, name VARCHAR); INSERT INTO r VALUES (1, 'a'), (2, NULL);
         SELECT * FROM r ORDER BY id",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).ends_with("id,name\n1,a\n2,\n"), "{}", stdout(&o));
    let o = remote("wrong", "SELECT 1");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&format!("signing in to {address} as strata")),
        "{e}"
    );
    // The server's message, not the gRPC wrapping around it.
    let o = remote("remote-pw", "SELECT * FROM no_such_table");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no_such_table") && !e.contains("Tonic"), "{e}");

    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .args(["--remote", &address])
        .current_dir(dir.path())
        .env("STRATA_PASSWORD", "remote-pw")
        .env("STRATA_HISTORY", dir.path().join("history"))
        .env("TERM", "xterm");
    let mut s = rexpect::session::spawn_command(command, Some(30_000)).expect("spawn shell");
    s.exp_string("(Flight SQL)")
        .expect("the banner names the server");
    s.exp_string("strata> ").expect("prompt");
    type_line(&mut s, "SELECT name FROM r WHERE id = 1;", "| a    |");
    type_line(&mut s, "\\d", "| r          | table |");
    type_line(
        &mut s,
        "CREATE TABLE remote_items (k INT);",
        "created table",
    );
    // Completion knows the server's names.
    s.send("SELECT count(*) AS n FROM remote_it\t").unwrap();
    s.send_line(";").unwrap();
    s.exp_string("| 0 |").expect("completed query runs");
    s.exp_string("strata> ").unwrap();
    // Ctrl-C cancels the query on the server; the shell stays.
    s.send_line("SELECT sum(value) AS total FROM generate_series(1, 100000000000);")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    s.send_control('c').unwrap();
    s.exp_string("cancelled").expect("the query is cancelled");
    s.exp_string("strata> ").unwrap();
    type_line(&mut s, "SELECT 6 * 7 AS answer;", "42");
    s.send_line("\\q").unwrap();
    s.exp_eof().expect("the shell ends");

    server.kill().unwrap();
    server.wait().unwrap();
    let log = sql(
        &w,
        "SELECT status FROM system.query_log WHERE query_text LIKE '%100000000000%'",
    );
    assert_eq!(log, "status\nCANCELLED\n");
}

/// The process whose command line holds `needle` (a test's own temporary path).
fn pid_of(needle: &str) -> u32 {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && pid != std::process::id() {
            return pid;
        }
    }
    panic!("no process runs with {needle}");
}

/// CPU seconds a process has used so far (user and system), from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// CPU seconds `pid` uses over `window`.
fn cpu_over(pid: u32, window: std::time::Duration) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(window);
    cpu_seconds(pid) - before
}

#[test]
fn a_cancelled_or_abandoned_remote_query_stops_running_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    // Three-way self join on a key with three values: 3 x 2,000^3 rows to count.
    sql(
        &w,
        "CREATE TABLE j AS SELECT value % 3 AS k FROM generate_series(1, 6000)",
    );
    let join = "SELECT count(*) FROM j a JOIN j b ON a.k = b.k JOIN j c ON b.k = c.k";
    let (mut server, address) = serve(&w, "cancel-pw");
    let pid = server.id();
    let second = std::time::Duration::from_secs(1);
    let busy_then_idle = |what: &str, stop: &mut dyn FnMut()| {
        assert!(
            cpu_over(pid, second) > 0.5,
            "{what}: the server is not busy with the join"
        );
        stop();
        // Within a second of the stop, the server is idle again.
        std::thread::sleep(second);
        let used = cpu_over(pid, 2 * second);
        assert!(
            used < 0.3,
            "{what}: the server used {used:.2} CPU seconds in the 2 s after the query stopped"
        );
    };

    // Ctrl-C in a remote shell.
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .args(["--remote", &address])
        .env("STRATA_PASSWORD", "cancel-pw")
        .env("STRATA_HISTORY", dir.path().join("history"))
        .env("TERM", "xterm");
    let mut s = rexpect::session::spawn_command(command, Some(30_000)).expect("spawn shell");
    s.exp_string("strata> ").expect("prompt");
    s.send_line(&format!("{join};")).unwrap();
    std::thread::sleep(second);
    busy_then_idle("Ctrl-C", &mut || {
        s.send_control('c').unwrap();
        s.exp_string("cancelled").expect("the query is cancelled");
    });
    s.exp_string("strata> ").unwrap();
    type_line(&mut s, "SELECT 6 * 7 AS answer;", "42");
    s.send_line("\\q").unwrap();
    s.exp_eof().expect("the shell ends");

    // A client that goes away mid-query.
    let mut client = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--remote", &address, "-c", join])
        .env("STRATA_PASSWORD", "cancel-pw")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(second);
    busy_then_idle("a killed client", &mut || {
        client.kill().unwrap();
        client.wait().unwrap();
    });

    server.kill().unwrap();
    server.wait().unwrap();
    let log = sql(
        &w,
        "SELECT status FROM system.query_log WHERE query_text LIKE 'SELECT count(*) FROM j a%' \
         ORDER BY started_at",
    );
    assert!(log.starts_with("status\nCANCELLED\n"), "{log}");
}

/// The README's `openssl` recipe for a private CA and a server certificate it signs.
fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Strata test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "cert.pem",
    ]);
}

#[test]
fn remote_over_tls_trusts_the_ca_given_as_tls_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certificates(d);
    let mut server = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--warehouse", "wh", "--listen", "127.0.0.1:0"])
        .args(["--tls-cert", "cert.pem", "--tls-key", "key.pem"])
        .current_dir(d)
        .env("STRATA_PASSWORD", "tls-pw")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let port = loop {
        let line = lines.next().expect("the server announces itself").unwrap();
        if let Some(rest) = line.split("grpc+tls://127.0.0.1:").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let remote = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--remote", &format!("grpc+tls://localhost:{port}")])
            .args(extra)
            .args(["--format", "csv", "-c", "SELECT 42 AS answer"])
            .current_dir(d)
            .env("STRATA_PASSWORD", "tls-pw")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let trusted = remote(&["--tls-ca", "ca.pem"]);
    let untrusted = remote(&[]);
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert_eq!(stdout(&trusted), "answer\n42\n");
    // Without the CA the certificate is not trusted, and the error says what to do.
    assert!(!untrusted.status.success());
    let e = String::from_utf8_lossy(&untrusted.stderr);
    assert!(e.contains("--tls-ca"), "{e}");
}

mod cluster;

#[path = "reliability/conflict_matrix.rs"]
mod conflict_matrix;

#[path = "reliability/foreign_keys.rs"]
mod foreign_keys;

#[path = "reliability/kill_loop.rs"]
mod kill_loop;

/// The peak memory (VmHWM, in KiB) of a running process, read until it exits.
fn peak_memory_kib(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            peak = peak.max(kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    peak
}

#[test]
fn a_large_result_streams_out_of_strata_c_without_being_held() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows.csv");
    let wh = dir.path().join("wh");
    assert!(init(wh.to_str().unwrap()).contains("created warehouse"));
    // 2,000,000 rows of 200 bytes: about 400 MB if the result were collected first.
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--warehouse")
        .arg(dir.path().join("wh"))
        .args([
            "--format",
            "csv",
            "-c",
            "SELECT value, repeat('x', 200) AS pad FROM generate_series(1, 2000000); SELECT 1 AS done",
        ])
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let peak = peak_memory_kib(&mut child);
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 2_000_001 + 2);
    assert!(text.ends_with("done\n1\n"));
    assert!(
        peak < 250 * 1024,
        "strata -c held {peak} KiB while printing a 400 MB result"
    );
}

#[test]
fn every_one_shot_statement_reaches_the_query_log() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    let w = w.to_str().unwrap();
    let o = strata(w, &["-c", "CREATE TABLE t (x INT)"]);
    assert!(o.status.success());
    // Queries stream (their entry is written when the stream ends); writes are awaited.
    for i in 0..49 {
        let sql = if i % 2 == 0 {
            format!("SELECT {i} AS n")
        } else {
            format!("INSERT INTO t VALUES ({i})")
        };
        let o = strata(w, &["--format", "csv", "-c", &sql]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{sql}: {stderr}");
        assert!(
            !stderr.contains("query log entry not written") && !stderr.contains('\u{1b}'),
            "{sql}: {stderr}"
        );
    }
    let logged = sql(
        w,
        "SELECT count(*) AS n FROM system.query_log WHERE query_text NOT LIKE '%system.query_log%'",
    );
    assert_eq!(logged, "n\n50\n");
}

#[test]
fn a_query_on_a_mistyped_warehouse_path_says_so_instead_of_creating_one() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("warehuose");
    let typo = typo.to_str().unwrap();
    let o = strata(typo, &["-c", "SELECT count(*) FROM orders"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains(&format!("no warehouse at {typo}")),
        "{err}"
    );
    assert!(!std::path::Path::new(typo).exists(), "nothing is created");
    // `strata init` creates one; so does a statement that creates something.
    assert!(init(typo).contains("created warehouse"));
    assert!(init(typo).contains("is a warehouse already"));
    assert_eq!(sql(typo, "SELECT 1"), "1\n1\n");
    let other = dir.path().join("other");
    let other = other.to_str().unwrap();
    assert!(sql(other, "CREATE TABLE t (x INT); SELECT count(*) AS n FROM t").ends_with("n\n0\n"));
    // A memory warehouse is always new: queries run on it.
    assert_eq!(sql("memory://", "SELECT 1 AS one"), "one\n1\n");
}

#[path = "docs/readme.rs"]
mod readme;

/// The lake in and out on S3: a stage reached through a secret, `LIST`, a load through the
/// stage, an unload partitioned by region, and an external table over the unloaded files; the
/// files are read back by pyarrow from the same bucket, and the secret's key is nowhere in the
/// warehouse but its secrets folder.
#[test]
fn stages_unloads_and_external_tables_on_s3() {
    let (mut s3, settings) = local_s3();
    let endpoint = settings
        .iter()
        .find(|(k, _)| *k == "AWS_ENDPOINT")
        .map(|(_, v)| v.clone())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    // No AWS_* environment: the secret alone reaches the bucket.
    let run = |sql: &str| strata(&w, &["--format", "csv", "-c", sql]);
    let ok = |sql: &str| {
        let o = run(sql);
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    ok(&format!(
        "CREATE SECRET lake (TYPE = S3, KEY_ID = 'AKIALAKETEST', SECRET = 'lake-secret-never-logged', \
         ENDPOINT = '{endpoint}', REGION = 'us-east-1')"
    ));
    ok(
        "CREATE STAGE landing URL = 's3://landing/in/' CREDENTIALS = (SECRET = lake) \
        FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1)",
    );
    let listed = ok("LIST @landing PATTERN = '.*sales_2024_0[12][.]csv'");
    assert!(
        listed.starts_with("name,size,last_modified\n")
            && listed.contains("s3://landing/in/sales_2024_01.csv,")
            && listed.contains("s3://landing/in/sales_2024_02.csv,")
            && listed.lines().count() == 3,
        "{listed}"
    );
    ok("CREATE TABLE sales (id INT, sale_date DATE, region VARCHAR, amount DECIMAL(10,2))");
    let loaded = ok("COPY INTO sales FROM @landing PATTERN = '.*sales_2024_0[12][.]csv'");
    assert!(
        loaded.contains("s3://landing/in/sales_2024_01.csv,LOADED,3")
            && loaded.contains("s3://landing/in/sales_2024_02.csv,LOADED,2"),
        "{loaded}"
    );
    ok("CREATE STAGE lake_out URL = 's3://landing/out/' CREDENTIALS = (SECRET = lake)");
    let unloaded = ok(
        "COPY INTO @lake_out/sales/ FROM (SELECT id, amount, region FROM sales) \
                       PARTITION BY (region)",
    );
    assert!(
        unloaded.contains("s3://landing/out/sales/region=EMEA/data_")
            && unloaded.lines().count() == 5,
        "{unloaded}"
    );
    ok(
        "CREATE EXTERNAL TABLE lake_sales PARTITION BY (region) LOCATION = @lake_out/sales/ \
        FILE_FORMAT = (TYPE = PARQUET)",
    );
    let by_region = "SELECT region, count(*) AS n, sum(amount) AS total FROM {} GROUP BY region \
                     ORDER BY region";
    assert_eq!(
        ok(&by_region.replace("{}", "lake_sales")),
        ok(&by_region.replace("{}", "sales"))
    );
    // pyarrow reads the unloaded files, partitions included, from the bucket.
    let python = python_with_flight_clients();
    let read = Command::new(&python)
        .args([
            "-c",
            &exits_at_once(
                "import sys, pyarrow.fs as fs, pyarrow.dataset as ds\n\
                 s3 = fs.S3FileSystem(endpoint_override=sys.argv[1], scheme='http', \
                 access_key='x', secret_key='y', region='us-east-1')\n\
                 t = ds.dataset('landing/out/sales', filesystem=s3, format='parquet', \
                 partitioning='hive').to_table()\n\
                 print(t.num_rows, sorted(set(t.column('region').to_pylist())))",
            ),
            &endpoint,
        ])
        .output()
        .unwrap();
    s3.kill().unwrap();
    s3.wait().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "5 ['AMER', 'AMER, North', 'APAC', 'EMEA']",
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    // The key is kept in the secrets folder only: not in the catalog, logs or load history.
    let mut leaked = Vec::new();
    let mut todo = vec![std::path::PathBuf::from(&w)];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "_secrets") {
                continue;
            }
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if String::from_utf8_lossy(&std::fs::read(&path).unwrap())
            .contains("lake-secret-never-logged")
        {
            leaked.push(path);
        }
    }
    assert!(leaked.is_empty(), "{leaked:?}");
}

/// Files unloaded to a local directory read in DuckDB and pyarrow as they were written:
/// Parquet with Hive folders (NULL as Hive's default partition), CSV with a header, gzipped
/// JSON, and a single named file.
#[test]
fn unloaded_files_read_in_duckdb_and_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh").display().to_string();
    let out = dir.path().join("out").display().to_string();
    sql(
        &w,
        &format!(
            "CREATE TABLE orders (day DATE, region VARCHAR, amount DOUBLE);
             INSERT INTO orders VALUES ('2024-01-01', 'eu', 1.5), ('2024-01-01', 'us', 2.5),
                 ('2024-01-02', 'eu', 3.0), ('2024-01-03', NULL, 4.0);
             COPY INTO '{out}/hive/' FROM orders PARTITION BY (region);
             COPY INTO '{out}/csv/' FROM orders FILE_FORMAT = (TYPE = CSV) HEADER = TRUE;
             COPY INTO '{out}/json/' FROM orders FILE_FORMAT = (TYPE = JSON COMPRESSION = GZIP)
                 MAX_FILE_SIZE = 64;
             COPY INTO '{out}/one.parquet' FROM orders SINGLE = TRUE;"
        ),
    );
    let python = python_with_flight_clients();
    let read = Command::new(&python)
        .current_dir(&out)
        .args([
            "-c",
            &exits_at_once(
                "import duckdb, pyarrow.dataset as ds, pyarrow.parquet as pq\n\
                 q = lambda s: duckdb.sql(s).fetchall()\n\
                 print(q(\"select count(*), count(region), sum(amount) from \
                 read_parquet('hive/*/*.parquet', hive_partitioning=true)\"))\n\
                 print(q(\"select count(*), sum(amount) from read_csv('csv/*.csv', header=true)\"))\n\
                 print(q(\"select count(*), sum(amount) from read_json('json/*.json.gz')\"))\n\
                 print(pq.read_table('one.parquet').num_rows)\n\
                 print(ds.dataset('hive', format='parquet', partitioning='hive').to_table().num_rows)",
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read.stdout),
        "[(4, 3, 11.0)]\n[(4, 11.0)]\n[(4, 11.0)]\n4\n4\n",
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    // MAX_FILE_SIZE: the JSON rows went to several files.
    let json_files = std::fs::read_dir(dir.path().join("out/json"))
        .unwrap()
        .count();
    assert!(json_files > 1, "{json_files}");
}

/// This package's directory. Read when the test runs (cargo sets it then), so that a test
/// binary built by another clone sharing the target directory still finds this clone's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}

#[path = "pg/mod.rs"]
mod pg;

#[path = "http/mod.rs"]
mod http;
