//! The whole benchmark harness at SF 0.01: generate, load through SQL, run every SSB and
//! TPC-H query with answer checks against DuckDB's recorded answers, and run concurrent
//! streams. Keeps the harness from rotting; real runs are by hand (BENCHMARKS.md).

use std::path::{Path, PathBuf};

use strata_bench::{Action, BenchArgs, Suite};

const SF: f64 = 0.01;

fn args(action: Action, suite: Suite, data: &Path, answers: PathBuf, results: &Path) -> BenchArgs {
    BenchArgs {
        action,
        suite,
        sf: SF,
        data: Some(data.to_path_buf()),
        warehouse: None,
        force: false,
        hot: 1,
        queries: None,
        memory_limit: None,
        scan_cache: None,
        streams: 2,
        sql: None,
        flight: None,
        flight_user: "strata".to_string(),
        settings: Vec::new(),
        cluster: None,
        answers,
        results: results.to_path_buf(),
    }
}

fn answers_dir() -> PathBuf {
    manifest_dir().join("answers")
}

/// This package's directory. Read when the test runs (cargo sets it then), so that a test
/// binary built by another clone sharing the target directory still finds this clone's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}

/// Runs on a thread with the main thread's 8 MiB of stack, as `strata` does: DataFusion's
/// SQL planner takes more than a test thread's 2 MiB for TPC-H Q22 in a debug build.
#[test]
fn every_query_of_both_suites_answers_correctly_at_sf_0_01() {
    std::thread::Builder::new()
        .stack_size(8 * 1024 * 1024)
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(both_suites())
        })
        .expect("thread")
        .join()
        .expect("the suites ran");
}

async fn both_suites() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    for suite in [Suite::Ssb, Suite::Tpch] {
        strata_bench::run(args(
            Action::Run,
            suite,
            dir.path(),
            answers_dir(),
            &results,
        ))
        .await
        .unwrap_or_else(|e| panic!("{} run failed: {e:#}", suite.name()));
        let doc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(results.join(format!("strata-{}-sf0.01.json", suite.name())))
                .unwrap(),
        )
        .unwrap();
        let queries = doc["queries"].as_array().unwrap();
        assert_eq!(queries.len(), suite.queries().len());
        for q in queries {
            assert_eq!(q["check"], "ok", "{q}");
        }
        // The fact tables were loaded into month partitions.
        assert!(
            doc["load"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["rows"] == 60175)
        );
    }
    // The same answers when the scans filter decoded batches instead of filtering while
    // decoding; the setting is recorded with the results.
    let mut eager = args(
        Action::Run,
        Suite::Tpch,
        dir.path(),
        answers_dir(),
        &results,
    );
    eager.settings = vec![(
        "strata.late_materialization".to_string(),
        "false".to_string(),
    )];
    strata_bench::run(eager)
        .await
        .unwrap_or_else(|e| panic!("tpch run without late materialization failed: {e:#}"));
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(results.join("strata-tpch-sf0.01.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc["arguments"]["settings"][0],
        "strata.late_materialization=false"
    );
    for q in doc["queries"].as_array().unwrap() {
        assert_eq!(q["check"], "ok", "{q}");
    }

    let manifest = strata_bench::datagen::read_manifest(&dir.path().join("ssb/sf0.01")).unwrap();
    let lineorder = manifest
        .tables
        .iter()
        .find(|t| t.name == "lineorder")
        .unwrap();
    assert_eq!(lineorder.rows, 60175);

    strata_bench::run(args(
        Action::Throughput,
        Suite::Ssb,
        dir.path(),
        answers_dir(),
        &results,
    ))
    .await
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(results.join("throughput-strata-ssb-sf0.01.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["throughput"]["queries_completed"], 26);

    // The same streams through a Flight SQL server on the same warehouse.
    let location = dir.path().join("strata/ssb-sf0.01").display().to_string();
    let served = strata_query::Warehouse::open(&location).await.unwrap();
    let users = strata_server::ServerConfig::load(None, Some("bench-pw"))
        .unwrap()
        .users;
    let auth = strata_server::Authenticator::new(users, std::time::Duration::from_secs(600));
    let listener = strata_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let uri = format!("grpc://{}", listener.local_addr().unwrap());
    tokio::spawn(strata_server::serve(
        served,
        listener,
        strata_server::ServeOptions::new(std::sync::Arc::new(auth)),
        std::future::pending(),
    ));
    let target = strata_bench::client::FlightTarget {
        uri,
        user: "strata".to_string(),
        password: "bench-pw".to_string(),
    };
    let queries = Suite::Ssb.select_queries(None).unwrap();
    let t = strata_bench::runner::throughput(
        &location,
        &Default::default(),
        &queries,
        2,
        Some(&target),
    )
    .await
    .unwrap();
    assert_eq!(t.queries_completed, 26);

    // `stream`: every row of the fact table through the embedded streaming API.
    let warehouse = strata_query::Warehouse::open(&location).await.unwrap();
    let rows = strata_bench::runner::stream(&warehouse, "SELECT * FROM lineorder", 1)
        .await
        .unwrap();
    assert_eq!(rows, 60175);

    // A wrong answer fails the run and names the query.
    let tampered = dir.path().join("tampered");
    std::fs::create_dir_all(&tampered).unwrap();
    let mut answers: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(answers_dir().join("ssb-sf0.01.json")).unwrap(),
    )
    .unwrap();
    answers["queries"]["q2.1"]["rows"] = 141.into();
    std::fs::write(tampered.join("ssb-sf0.01.json"), answers.to_string()).unwrap();
    let mut wrong = args(Action::Run, Suite::Ssb, dir.path(), tampered, &results);
    wrong.queries = Some("q1.1,q2.1".to_string());
    let err = strata_bench::run(wrong).await.unwrap_err().to_string();
    assert!(err.contains("q2.1: 140 rows, expected 141"), "{err}");

    // With the materialized views of benches/mv: 11 of the 13 queries read a view, and every
    // answer is still the reference answer.
    let mut session = warehouse.session();
    session
        .sql(include_str!("../mv/ssb_views.sql"))
        .await
        .unwrap();
    session
        .sql("SET datafusion.explain.logical_plan_only = true")
        .await
        .unwrap();
    let mut rewritten = Vec::new();
    for q in Suite::Ssb.queries() {
        let plan = session.sql(&format!("EXPLAIN {}", q.sql)).await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&plan[0].batches)
            .unwrap()
            .to_string();
        if text.contains("mv_ssb_flight") {
            rewritten.push(q.name);
        }
    }
    assert_eq!(
        rewritten,
        [
            "q1.1", "q1.2", "q1.3", "q2.1", "q2.2", "q2.3", "q3.1", "q3.2", "q3.3", "q4.1", "q4.2"
        ]
    );
    strata_bench::run(args(
        Action::Run,
        Suite::Ssb,
        dir.path(),
        answers_dir(),
        &results,
    ))
    .await
    .unwrap_or_else(|e| panic!("SSB with materialized views: {e:#}"));
}
