//! A Ballista cluster of processes on loopback: `strata cluster scheduler`, two
//! `strata cluster executor`s, and `strata --cluster` as the coordinator. Every SSB and TPC-H
//! query at SF 0.01 answers as DuckDB recorded (the bench's answer check), the query log
//! records the jobs, `EXPLAIN` shows the placement and the stages, a killed executor's tasks
//! run again on the other one, and `strata serve --cluster` answers Flight SQL clients from
//! the cluster; over a local directory and over S3 (moto).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{manifest_dir, spawn_server, stdout};

/// A process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `strata cluster <role> <args>`; returns it and the address it announced.
fn start(role: &str, args: &[&str]) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["cluster", role])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("strata cluster starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines
        .next()
        .expect("the process announces its address")
        .unwrap();
    let address = line.rsplit(' ').next().expect("an address").to_string();
    std::thread::spawn(move || lines.for_each(drop));
    (Process(child), address)
}

/// A scheduler and its executors (two task slots each).
struct Cluster {
    _scheduler: Process,
    executors: Vec<Process>,
    url: String,
}

fn cluster(executors: usize, work: &Path) -> Cluster {
    let (scheduler, address) = start("scheduler", &["--bind", "127.0.0.1:0"]);
    let executors = (0..executors)
        .map(|i| {
            let dir = work.join(format!("executor-{i}"));
            let dir = dir.display().to_string();
            start(
                "executor",
                &[
                    "--scheduler",
                    &address,
                    "--concurrent-tasks",
                    "2",
                    "--work-dir",
                    &dir,
                ],
            )
            .0
        })
        .collect();
    // Executors register with their first heartbeat.
    std::thread::sleep(std::time::Duration::from_secs(2));
    Cluster {
        _scheduler: scheduler,
        executors,
        url: format!("df://{address}"),
    }
}

/// `strata --warehouse w --cluster url <args>`, which must succeed; its stdout.
fn on_cluster(warehouse: &str, url: &str, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--warehouse", warehouse, "--cluster", url])
        .args(["--set", "strata.cluster_min_files=0"])
        .args(["--set", "strata.cluster_job_timeout=60 seconds"])
        .args(args)
        .output()
        .expect("strata runs");
    assert!(
        o.status.success(),
        "strata {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        stdout(&o)
    );
    stdout(&o)
}

/// `strata --warehouse w --format csv -c sql` without a cluster; its stdout.
fn in_one_process(warehouse: &str, sql: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--warehouse", warehouse, "--format", "csv", "-c", sql])
        .output()
        .expect("strata runs");
    stdout(&o)
}

/// At SF 0.01; at SF 1 with `STRATA_LONG_TESTS=1`.
#[test]
fn every_ssb_and_tpch_query_answers_on_a_cluster_of_two_executors() {
    let sf = if std::env::var_os("STRATA_LONG_TESTS").is_some() {
        "1"
    } else {
        "0.01"
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(2, dir.path());
    let data = dir.path().join("data").display().to_string();
    let answers = manifest_dir().join("../../benches/answers");
    let answers = answers.display().to_string();
    for suite in ["ssb", "tpch"] {
        let warehouse = dir.path().join(suite).display().to_string();
        let results = dir.path().join("results").display().to_string();
        let out = on_cluster(
            &warehouse,
            &cluster.url,
            &[
                "bench",
                "run",
                "--suite",
                suite,
                "--sf",
                sf,
                "--hot",
                "0",
                "--data",
                &data,
                "--warehouse",
                &warehouse,
                "--answers",
                &answers,
                "--results",
                &results,
            ],
        );
        assert!(!out.contains("wrong"), "{out}");
        // Every query ran as a job of the cluster.
        let jobs = on_cluster(
            &warehouse,
            &cluster.url,
            &[
                "--format",
                "csv",
                "-c",
                "SELECT count(*) AS jobs, min(stages) AS min_stages, sum(tasks) > 0 AS tasks, \
                 sum(shuffle_bytes) > 0 AS shuffled \
                 FROM system.query_log WHERE cluster_job IS NOT NULL",
            ],
        );
        let expected = match suite {
            "ssb" => "jobs,min_stages,tasks,shuffled\n13,",
            // Q11, Q15 and Q22 compare with an uncorrelated scalar subquery: they run here.
            _ => "jobs,min_stages,tasks,shuffled\n19,",
        };
        assert!(jobs.starts_with(expected), "{suite}: {jobs}");
        assert!(jobs.trim_end().ends_with("true,true"), "{suite}: {jobs}");
    }
    drop(cluster);
}

#[test]
fn explain_says_where_a_query_runs_and_shows_its_stages() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(1, dir.path());
    let w = dir.path().join("wh").display().to_string();
    on_cluster(
        &w,
        &cluster.url,
        &[
            "-c",
            "CREATE TABLE f (k INT, v BIGINT) PARTITION BY RANGE (k) (PARTITION p0 VALUES LESS THAN (5), PARTITION p1 VALUES LESS THAN (10));
             INSERT INTO f SELECT CAST(value % 10 AS INT), value FROM generate_series(1, 1000);
             INSERT INTO f SELECT CAST(value % 10 AS INT), value FROM generate_series(1, 1000);",
        ],
    );
    let query = "EXPLAIN SELECT k, sum(v) FROM f GROUP BY k";
    let one_file_a_task = ["--set", "strata.cluster_task_bytes=1"];
    let distributed = on_cluster(
        &w,
        &cluster.url,
        &[&one_file_a_task[..], &["--format", "csv", "-c", query]].concat(),
    );
    assert!(
        distributed.contains("placement,\"cluster: 4 data files after pruning"),
        "{distributed}"
    );
    assert!(distributed.contains("stage 1"), "{distributed}");
    assert!(distributed.contains("ShuffleWriterExec"), "{distributed}");
    // Each file is a task: the scheduler does not regroup them to the coordinator's cores.
    assert!(
        distributed.contains("file_groups={4 groups"),
        "{distributed}"
    );
    // A scan that pruning leaves without files still runs (as one empty task).
    assert_eq!(
        on_cluster(
            &w,
            &cluster.url,
            &[
                "--format",
                "csv",
                "--set",
                "strata.cluster_task_bytes=1",
                "-c",
                "SELECT count(*) AS n FROM f WHERE k > 100"
            ]
        ),
        "n\n0\n"
    );
    // A coordinator that plans one partition (one core) gets one task per scan: the
    // operators above it expect a single partition.
    let ordered = "SELECT k, sum(v) AS s FROM f GROUP BY k ORDER BY k LIMIT 3";
    let here = in_one_process(&w, ordered);
    let one_partition = [
        "--set",
        "datafusion.execution.target_partitions=1",
        "--set",
        "strata.cluster_task_bytes=1",
        "--format",
        "csv",
        "-c",
        ordered,
    ];
    assert_eq!(on_cluster(&w, &cluster.url, &one_partition), here);
    // EXPLAIN ANALYZE of a write answers as without a cluster (writes run here).
    let delete = on_cluster(
        &w,
        &cluster.url,
        &[
            "--format",
            "csv",
            "-c",
            "EXPLAIN ANALYZE DELETE FROM f WHERE k = 100",
        ],
    );
    assert!(!delete.contains("job,"), "{delete}");
    // EXPLAIN ANALYZE runs the query there and shows each stage's work.
    let analyzed = on_cluster(
        &w,
        &cluster.url,
        &[
            "--format",
            "csv",
            "--set",
            "strata.cluster_task_bytes=1",
            "-c",
            "EXPLAIN ANALYZE SELECT k, sum(v) FROM f GROUP BY k",
        ],
    );
    assert!(analyzed.contains("job,"), "{analyzed}");
    assert!(analyzed.contains("10 rows"), "{analyzed}");
    assert!(analyzed.contains("4 tasks, compute"), "{analyzed}");
    assert!(analyzed.contains("bytes_scanned="), "{analyzed}");
    // Above the threshold of files the query stays here, and says why.
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--warehouse",
            &w,
            "--cluster",
            &cluster.url,
            "--format",
            "csv",
        ])
        .args([
            "-c",
            "EXPLAIN SELECT k, sum(v) FROM f WHERE k = 1 GROUP BY k",
        ])
        .output()
        .unwrap();
    let local = stdout(&o);
    assert!(
        local.contains(
            "placement,\"local: 2 data files after pruning, fewer than strata.cluster_min_files = 8"
        ),
        "{local}"
    );
    // A query that reads a system table runs here.
    let system = on_cluster(
        &w,
        &cluster.url,
        &[
            "--format",
            "csv",
            "-c",
            "EXPLAIN SELECT f.k FROM f JOIN system.tables t ON t.table_name = 'f'",
        ],
    );
    assert!(
        system.contains("placement,\"local: the plan reads"),
        "{system}"
    );
    // The rows are the same on the cluster and here.
    let sql = "SELECT k, sum(v) AS s, count(*) AS n FROM f GROUP BY k ORDER BY k";
    let here = in_one_process(&w, sql);
    assert_eq!(
        on_cluster(&w, &cluster.url, &["--format", "csv", "-c", sql]),
        here
    );
    drop(cluster);
}

/// A join's filter from a small dimension, evaluated on the coordinator, prunes the fact
/// table's files before the job leaves (in one process the fact scan waits for the join's
/// filter; on a cluster the join runs in another stage). The answers stay those of one process.
#[test]
fn a_small_dimensions_keys_prune_the_fact_files_before_the_job_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(1, dir.path());
    let w = dir.path().join("wh").display().to_string();
    on_cluster(
        &w,
        &cluster.url,
        &[
            "-c",
            "CREATE TABLE f (k INT, v BIGINT) PARTITION BY RANGE (k) (PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN (20), PARTITION p2 VALUES LESS THAN (30), PARTITION p3 VALUES LESS THAN (40));
             INSERT INTO f SELECT CAST(value % 40 AS INT), value FROM generate_series(1, 4000);
             INSERT INTO f SELECT CAST(value % 40 AS INT), value FROM generate_series(1, 4000);
             CREATE TABLE d (k INT PRIMARY KEY, year INT);
             INSERT INTO d SELECT CAST(value AS INT), CAST(value / 10 AS INT) + 1990 FROM generate_series(0, 39);",
        ],
    );
    let query = |year: i32| {
        format!(
            "SELECT d.year, sum(f.v) AS s, count(*) AS n FROM f JOIN d ON f.k = d.k \
             WHERE d.year = {year} GROUP BY d.year"
        )
    };
    let csv = ["--format", "csv"];
    // EXPLAIN names the join filter; EXPLAIN ANALYZE evaluates it and the job reads the
    // one partition its keys fall in.
    let explained = on_cluster(
        &w,
        &cluster.url,
        &[&csv[..], &["-c", &format!("EXPLAIN {}", query(1991))]].concat(),
    );
    assert!(
        explained.contains("join filter,main.public.f.k by the join keys of main.public.d"),
        "{explained}"
    );
    let analyzed = on_cluster(
        &w,
        &cluster.url,
        &[
            &csv[..],
            &["-c", &format!("EXPLAIN ANALYZE {}", query(1991))],
        ]
        .concat(),
    );
    assert!(
        analyzed.contains(
            "join filter,\"main.public.f.k: 10 rows of main.public.d evaluated on the coordinator, keys [10, 19]\""
        ),
        "{analyzed}"
    );
    assert!(
        analyzed.contains("table=main.public.f@v2, partitions=1/4, files=2/8"),
        "{analyzed}"
    );
    // Turned off, the job reads every file.
    let off = on_cluster(
        &w,
        &cluster.url,
        &[
            &csv[..],
            &["--set", "strata.cluster_join_filter_rows=0"],
            &["-c", &format!("EXPLAIN ANALYZE {}", query(1991))],
        ]
        .concat(),
    );
    assert!(!off.contains("join filter"), "{off}");
    assert!(off.contains("partitions=4/4, files=8/8"), "{off}");
    // The answers are those of one process: a year in the table, one with no rows in the
    // dimension (the filter keeps no file), the filter off, a build side over the limit, and
    // NOT IN, whose NULL keys the bounds must not drop.
    let not_in = "SELECT count(*) AS n FROM d WHERE k NOT IN (SELECT k FROM f WHERE v > 3990)";
    let not_in_null = "SELECT count(*) AS n FROM d WHERE k NOT IN \
                       (SELECT CASE WHEN v = 3999 THEN NULL ELSE k END FROM f WHERE v > 3990)";
    for (sql, settings) in [
        (query(1991), &[][..]),
        (query(1993), &[][..]),
        (query(2099), &[][..]),
        (
            query(1992),
            &["--set", "strata.cluster_join_filter_rows=0"][..],
        ),
        (
            query(1992),
            &["--set", "strata.cluster_join_filter_rows=5"][..],
        ),
        (not_in.to_string(), &[][..]),
        (not_in_null.to_string(), &[][..]),
    ] {
        let here = in_one_process(&w, &sql);
        let there = on_cluster(
            &w,
            &cluster.url,
            &[&csv[..], settings, &["-c", &sql]].concat(),
        );
        assert_eq!(there, here, "{sql}");
    }
    // The query log records what the job read: the pruned files.
    let logged = on_cluster(
        &w,
        &cluster.url,
        &[
            &csv[..],
            &[
                "-c",
                &format!(
                    "{}; SELECT files_scanned FROM system.query_log WHERE cluster_job IS NOT NULL \
                     ORDER BY started_at DESC LIMIT 1",
                    query(1991)
                ),
            ],
        ]
        .concat(),
    );
    assert!(logged.ends_with("files_scanned\n3\n"), "{logged}");
    drop(cluster);
}

#[test]
fn a_query_outlives_an_executor_killed_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster(2, dir.path());
    let w = dir.path().join("wh").display().to_string();
    on_cluster(&w, &cluster.url, &["-c", SELF_JOIN_TABLE]);
    let started = std::time::Instant::now();
    let running = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--warehouse",
            &w,
            "--cluster",
            &cluster.url,
            "--format",
            "csv",
        ])
        .args(["--set", "strata.cluster_min_files=0"])
        .args(["--set", "strata.cluster_job_timeout=90 seconds"])
        .args(["-c", SELF_JOIN])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    // SIGKILL: no goodbye to the scheduler; its heartbeats stop.
    drop(cluster.executors.remove(0));
    answered_or_failed_in_time(running.wait_with_output().unwrap(), started);
}

/// 8 files of 50,000 rows; [`SELF_JOIN`] on a key of 250 values makes 1,600 rows per key meet
/// 1,600: 640 million joined rows, seconds of work for two executors.
const SELF_JOIN_TABLE: &str = "CREATE TABLE t (k INT, v BIGINT) PARTITION BY RANGE (v) (
    PARTITION p0 VALUES LESS THAN (50001), PARTITION p1 VALUES LESS THAN (100001),
    PARTITION p2 VALUES LESS THAN (150001), PARTITION p3 VALUES LESS THAN (200001));
    INSERT INTO t SELECT CAST(value % 250 AS INT), value FROM generate_series(1, 200000);
    INSERT INTO t SELECT CAST(value % 250 AS INT), value FROM generate_series(1, 200000);";
const SELF_JOIN: &str = "SELECT count(*) AS n FROM t a JOIN t b ON a.k = b.k";

/// A query during which an executor was killed either answered right or failed with the
/// cluster's error, within its 90 s timeout.
fn answered_or_failed_in_time(outcome: std::process::Output, started: std::time::Instant) {
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(100),
        "the query ended after {took:?}"
    );
    if outcome.status.success() {
        // 250 keys, 1,600 rows each: 250 x 1,600 x 1,600 pairs.
        assert_eq!(stdout(&outcome), "n\n640000000\n");
    } else {
        let error = String::from_utf8_lossy(&outcome.stderr);
        assert!(error.contains("cluster job"), "{error}");
    }
    eprintln!(
        "executor killed mid-query: {} after {took:?}",
        if outcome.status.success() {
            "answered"
        } else {
            "failed"
        }
    );
}

#[test]
fn serve_answers_flight_sql_clients_from_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(1, dir.path());
    let w = dir.path().join("wh").display().to_string();
    on_cluster(
        &w,
        &cluster.url,
        &[
            "-c",
            "CREATE TABLE f (k INT, v BIGINT);
             INSERT INTO f SELECT CAST(value % 10 AS INT), value FROM generate_series(1, 1000);
             INSERT INTO f SELECT CAST(value % 10 AS INT), value FROM generate_series(1001, 2000);",
        ],
    );
    let (server, address, _) = spawn_server(
        &w,
        "pw",
        &[
            "--cluster",
            &cluster.url,
            "--set",
            "strata.cluster_min_files=0",
        ],
        false,
    );
    let _server = Process(server);
    // The shell's --remote backend is a Flight SQL client.
    let remote = |sql: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--remote", &address, "--format", "csv", "-c", sql])
            .env("STRATA_PASSWORD", "pw")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stdout(&o)
    };
    assert_eq!(
        remote("SELECT k, sum(v) AS s FROM f WHERE k < 2 GROUP BY k ORDER BY k"),
        "k,s\n0,201000\n1,199200\n"
    );
    let log = remote(
        "SELECT stages > 1 AS staged, tasks > 1 AS tasked FROM system.query_log \
         WHERE cluster_job IS NOT NULL AND query_text LIKE 'SELECT k, sum(v)%'",
    );
    assert_eq!(log, "staged,tasked\ntrue,true\n");
}

/// Over S3 (a moto server): one executor reaches the bucket with the `AWS_*` environment, the
/// other only with a named secret, and every SSB and TPC-H query answers as DuckDB recorded.
#[test]
fn every_query_answers_on_a_cluster_over_s3_with_an_executor_on_a_named_secret() {
    let (s3, settings) = super::local_s3();
    let _s3 = Process(s3);
    let dir = tempfile::tempdir().unwrap();
    let endpoint = &settings
        .iter()
        .find(|(k, _)| *k == "AWS_ENDPOINT")
        .unwrap()
        .1;
    // The form CREATE SECRET stores under a warehouse's _secrets/.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("moto.json"),
        format!(
            r#"{{"name":"moto","kind":"S3","key_id":"test","secret":"test","session_token":null,
                "endpoint":"{endpoint}","region":"us-east-1","created_by":"admin",
                "created_at":"2026-12-06T00:00:00Z"}}"#
        ),
    )
    .unwrap();
    let secrets = secrets.display().to_string();
    let aws = |command: &mut Command, with_env: bool| {
        for (key, value) in &settings {
            if with_env {
                command.env(key, value);
            } else {
                command.env_remove(key);
            }
        }
    };
    let executor = |scheduler: &str, name: &str, secret: bool| {
        let work = dir.path().join(name).display().to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command.args([
            "cluster",
            "executor",
            "--scheduler",
            scheduler,
            "--concurrent-tasks",
            "2",
            "--work-dir",
            &work,
        ]);
        if secret {
            command.args(["--secret", "moto", "--secrets-dir", &secrets]);
        }
        aws(&mut command, !secret);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.next().is_some(), "the executor announces itself");
        std::thread::spawn(move || lines.for_each(drop));
        Process(child)
    };
    let coordinator = |warehouse: &str, url: &str, args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .args(["--warehouse", warehouse, "--cluster", url])
            .args(["--set", "strata.cluster_min_files=0"])
            .args(["--set", "strata.cluster_job_timeout=60 seconds"])
            .args(args);
        aws(&mut command, true);
        let o = command.output().unwrap();
        assert!(
            o.status.success(),
            "strata {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };

    let (_scheduler, address) = start("scheduler", &["--bind", "127.0.0.1:0"]);
    let with_env = executor(&address, "executor-env", false);
    let _with_secret = executor(&address, "executor-secret", true);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let url = format!("df://{address}");
    let data = dir.path().join("data").display().to_string();
    let answers = manifest_dir().join("../../benches/answers");
    let results = dir.path().join("results").display().to_string();
    for (suite, expected) in [("ssb", "jobs\n13\n"), ("tpch", "jobs\n19\n")] {
        let warehouse = format!("s3://warehouse/{suite}");
        let out = coordinator(
            &warehouse,
            &url,
            &[
                "bench",
                "run",
                "--suite",
                suite,
                "--sf",
                "0.01",
                "--hot",
                "0",
                "--data",
                &data,
                "--warehouse",
                &warehouse,
                "--answers",
                &answers.display().to_string(),
                "--results",
                &results,
            ],
        );
        assert!(!out.contains("wrong"), "{out}");
        let jobs = coordinator(
            &warehouse,
            &url,
            &[
                "--format",
                "csv",
                "-c",
                "SELECT count(*) AS jobs FROM system.query_log WHERE cluster_job IS NOT NULL",
            ],
        );
        // TPC-H's Q11, Q15 and Q22 run here (a scalar subquery).
        assert_eq!(jobs, expected, "{suite}");
    }

    // A cluster of the secret's executor alone reads the bucket too.
    let (_alone, alone) = start("scheduler", &["--bind", "127.0.0.1:0"]);
    let _only = executor(&alone, "executor-alone", true);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let sql = "SELECT d_year, sum(lo_revenue) AS revenue FROM lineorder \
               JOIN dwdate ON lo_orderdate = d_datekey GROUP BY d_year ORDER BY d_year";
    let on_secret = coordinator(
        "s3://warehouse/ssb",
        &format!("df://{alone}"),
        &["--format", "csv", "-c", sql],
    );
    let mut here = Command::new(env!("CARGO_BIN_EXE_strata"));
    here.args([
        "--warehouse",
        "s3://warehouse/ssb",
        "--format",
        "csv",
        "-c",
        sql,
    ]);
    aws(&mut here, true);
    assert_eq!(on_secret, stdout(&here.output().unwrap()));
    assert!(on_secret.lines().count() > 5, "{on_secret}");

    // A secret the executor does not have stops it at once, naming the secret.
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["cluster", "executor", "--scheduler", &alone])
        .args(["--secret", "nope", "--secrets-dir", &secrets])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let error = String::from_utf8_lossy(&o.stderr);
    assert!(error.contains("secret 'nope'"), "{error}");
    assert!(!error.contains("test"), "{error}");

    // Flight SQL clients through `strata serve --cluster` over the bucket.
    let (server, flight, _) = super::spawn_server_with_env(
        "s3://warehouse/ssb",
        "pw",
        &["--cluster", &url, "--set", "strata.cluster_min_files=0"],
        false,
        &settings,
    );
    let _server = Process(server);
    let remote = |sql: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--remote", &flight, "--format", "csv", "-c", sql])
            .env("STRATA_PASSWORD", "pw")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stdout(&o)
    };
    assert_eq!(remote(sql), on_secret);
    assert_eq!(
        remote(
            "SELECT count(*) AS jobs FROM system.query_log \
             WHERE cluster_job IS NOT NULL AND query_text LIKE 'SELECT d_year%'"
        ),
        // The coordinator's run above, and the server's.
        "jobs\n2\n"
    );

    // An executor killed while a query runs over the bucket: its tasks run again on the
    // other one, or the query fails in time with a clear error.
    coordinator("s3://warehouse/kill", &url, &["-c", SELF_JOIN_TABLE]);
    let started = std::time::Instant::now();
    let mut query = Command::new(env!("CARGO_BIN_EXE_strata"));
    query
        .args(["--warehouse", "s3://warehouse/kill", "--cluster", &url])
        .args(["--format", "csv"])
        .args(["--set", "strata.cluster_min_files=0"])
        .args(["--set", "strata.cluster_job_timeout=90 seconds"])
        .args(["-c", SELF_JOIN])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    aws(&mut query, true);
    let running = query.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    drop(with_env);
    answered_or_failed_in_time(running.wait_with_output().unwrap(), started);
}

/// An executor whose scheduler is down says so once, not twice a second (Ballista retries and
/// warns on every attempt; Strata lets one warning of each kind through per 30 s).
#[test]
fn an_executor_without_its_scheduler_warns_once() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = free.local_addr().unwrap().to_string();
    drop(free);
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "cluster",
            "executor",
            "--scheduler",
            &nobody,
            "--work-dir",
            &work,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    // Ballista retries every 500 ms: six attempts or more.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = child.kill();
    let _ = child.wait();
    let lines = reader.join().unwrap();
    let warnings = lines
        .iter()
        .filter(|l| l.contains("Failed to connect to scheduler"))
        .count();
    assert_eq!(warnings, 1, "{lines:#?}");
}

/// The scheduler holds no data: killed, it fails the query it was running with a clear error,
/// the warehouse answers every committed row without it, and once it is back the executors
/// join it again and the cluster answers as before.
#[test]
fn a_scheduler_restart_loses_no_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let (scheduler, address) = start("scheduler", &["--bind", "127.0.0.1:0"]);
    let _executor = start(
        "executor",
        &["--scheduler", &address, "--concurrent-tasks", "2"],
    )
    .0;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let url = format!("df://{address}");
    let w = dir.path().join("wh").display().to_string();
    on_cluster(&w, &url, &["-c", SELF_JOIN_TABLE]);
    let count = "SELECT count(*) AS n, sum(v) AS s FROM t";
    let expected = "n,s\n400000,40000200000\n";
    assert_eq!(
        on_cluster(&w, &url, &["--format", "csv", "-c", count]),
        expected
    );
    // Killed while a long query runs: the query fails with an error naming the job.
    let running = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--warehouse", &w, "--cluster", &url, "--format", "csv"])
        .args(["--set", "strata.cluster_min_files=0"])
        .args(["-c", SELF_JOIN])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    drop(scheduler);
    let outcome = running.wait_with_output().unwrap();
    assert!(!outcome.status.success(), "{}", stdout(&outcome));
    let error = String::from_utf8_lossy(&outcome.stderr);
    assert!(error.contains("cluster job"), "{error}");
    // Without a scheduler, the committed rows are all there (read here).
    let here = in_one_process(&w, count);
    assert_eq!(here, expected);
    // A write goes on without the cluster too: commits are the coordinator's.
    on_cluster(&w, &url, &["-c", "INSERT INTO t VALUES (1, 200000)"]);
    // The same address again: the executor's heartbeats find the new scheduler.
    let _scheduler = start("scheduler", &["--bind", &address]).0;
    let mut answer = String::new();
    for _ in 0..30 {
        let o = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--warehouse", &w, "--cluster", &url, "--format", "csv"])
            .args(["--set", "strata.cluster_min_files=0"])
            .args(["--set", "strata.cluster_job_timeout=20 seconds"])
            .args(["-c", count])
            .output()
            .unwrap();
        if o.status.success() {
            answer = stdout(&o);
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert_eq!(answer, "n,s\n400001,40000400000\n");
}
