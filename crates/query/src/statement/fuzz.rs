//! Fuzz target for Strata's own SQL: partition DDL, interval partitions, COPY INTO options,
//! APPLY CHANGES, time travel and VACUUM, with values at the extremes of their types and
//! mutated text. Every statement is parsed and run against one warehouse; each must succeed
//! or fail with an error, never a panic (which [`crate::Session::execute`] would turn into an
//! internal error "a bug, please report it": that fails the target).
//!
//! `PROPTEST_CASES` sets the budget (CI: 256 statements).

use std::sync::{Mutex, OnceLock};

use proptest::prelude::*;

use crate::{Session, Warehouse};

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("'9999-12-31'".to_string()),
        Just("'0001-01-01'".to_string()),
        Just("'262142-12-31'".to_string()),
        Just("'2024-02-30'".to_string()),
        Just("'1677-09-21 00:12:43'".to_string()),
        Just("'2262-04-11 23:47:16'".to_string()),
        Just("MAXVALUE".to_string()),
        Just("NULL".to_string()),
        "-?[0-9]{1,25}",
        "'[0-9]{4}-[0-9]{2}-[0-9]{2}'",
        "'\\PC{0,6}'",
    ]
}

fn interval() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,20}".prop_map(|n| format!("INTERVAL ({n})")),
        (
            "-?[0-9]{1,12}",
            prop::sample::select(vec!["DAY", "WEEK", "MONTH", "QUARTER", "YEAR", "HOUR"])
        )
            .prop_map(|(n, u)| format!("INTERVAL ({n} {u})")),
    ]
}

fn statement() -> impl Strategy<Value = String> {
    let table = prop::sample::select(vec!["ti", "td", "tt", "tx"]);
    prop_oneof![
        (value(), value(), table.clone()).prop_map(|(a, b, t)| format!(
            "ALTER TABLE {t} ADD PARTITION (PARTITION p{} VALUES LESS THAN ({a}), \
             PARTITION q{} VALUES LESS THAN ({b}))",
            a.len(),
            b.len()
        )),
        ("[a-z_0-9]{1,6}", table.clone())
            .prop_map(|(p, t)| format!("ALTER TABLE {t} DROP PARTITION {p}")),
        (prop::collection::vec(value(), 1..4), table.clone()).prop_map(|(vs, t)| format!(
            "INSERT INTO {t} VALUES {}",
            vs.iter()
                .map(|v| format!("({v}, 1)"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (
            prop::sample::select(vec!["BIGINT", "DATE", "TIMESTAMP", "INT"]),
            interval()
        )
            .prop_map(|(ty, i)| format!(
                "CREATE OR REPLACE TABLE tx (k {ty}, v INT) PARTITION BY RANGE (k) {i}"
            )),
        (
            prop::sample::select(vec!["CSV", "JSON", "PARQUET", "XML", ""]),
            "[0-9]{1,20}",
            "'\\PC{0,3}'",
            prop::sample::select(vec!["CONTINUE", "ABORT_STATEMENT", "SKIP_FILE", "x"]),
            "-?[0-9.]{1,6}",
        )
            .prop_map(|(ty, skip, delimiter, on_error, ratio)| format!(
                "COPY INTO ti FROM '/nonexistent/{skip}.csv' FILE_FORMAT = (TYPE = {ty} \
                 SKIP_HEADER = {skip} FIELD_DELIMITER = {delimiter}) ON_ERROR = {on_error} \
                 MAX_ERROR_RATIO = {ratio}"
            )),
        (value(), "[a-z]{1,4}").prop_map(|(v, c)| format!(
            "APPLY CHANGES INTO dim FROM changes KEY ({c}) SEQUENCE BY seq \
             APPLY AS DELETE WHEN val = {v}"
        )),
        (value(), table.clone())
            .prop_map(|(v, t)| format!("SELECT * FROM {t} AT (VERSION => {v})")),
        (value(), table.clone())
            .prop_map(|(v, t)| format!("SELECT * FROM {t} AT (TIMESTAMP => {v})")),
        (value(), table.clone())
            .prop_map(|(v, t)| format!("SELECT * FROM {t} FOR SYSTEM_TIME AS OF {v}")),
        ("-?[0-9.e]{1,8}", table).prop_map(|(n, t)| format!("VACUUM {t} RETAIN {n} HOURS")),
    ]
}

/// `sql` with one token dropped, duplicated or swapped for another, as a typo would.
fn mutated() -> impl Strategy<Value = String> {
    (statement(), any::<prop::sample::Index>(), 0u8..4).prop_map(|(sql, at, how)| {
        let mut tokens: Vec<&str> = sql.split(' ').collect();
        let i = at.index(tokens.len());
        match how {
            0 => {
                tokens.remove(i);
            }
            1 => tokens.insert(i, tokens[i]),
            2 => tokens[i] = "(",
            _ => {}
        }
        tokens.join(" ")
    })
}

struct Target {
    runtime: tokio::runtime::Runtime,
    session: Mutex<Session>,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let session = runtime.block_on(async {
            let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
            let mut session = warehouse.session();
            session
                .sql(
                    "CREATE TABLE ti (k BIGINT, v INT) PARTITION BY RANGE (k) INTERVAL (10);
                     CREATE TABLE td (k DATE, v INT) PARTITION BY RANGE (k) INTERVAL (1 MONTH);
                     CREATE TABLE tt (k TIMESTAMP, v INT) PARTITION BY RANGE (k) INTERVAL (1 DAY);
                     CREATE TABLE dim (id INT, val VARCHAR)
                       WITH (scd = 2, natural_key = 'id', tracked = 'val');
                     CREATE TABLE changes (id INT, val VARCHAR, seq TIMESTAMP);
                     INSERT INTO changes VALUES (1, 'a', '2024-01-01 00:00:00');
                     SET strata.max_partitions_per_statement = 50;",
                )
                .await
                .unwrap();
            session
        });
        Target {
            runtime,
            session: Mutex::new(session),
            _dir: dir,
        }
    })
}

fn run(sql: &str) -> Result<(), TestCaseError> {
    let target = target();
    let mut session = target.session.lock().unwrap_or_else(|e| e.into_inner());
    if std::env::var("STRATA_FUZZ_TRACE").is_ok() {
        eprintln!("run: {sql}");
    }
    let started = std::time::Instant::now();
    let outcome = target.runtime.block_on(session.sql(sql));
    let elapsed = started.elapsed();
    prop_assert!(elapsed.as_secs() < 10, "{sql}: took {elapsed:?}");
    if elapsed.as_millis() > 500 {
        eprintln!("slow: {elapsed:?} {sql}");
    }
    if let Err(e) = outcome {
        prop_assert!(
            !e.to_string().contains("a bug, please report it"),
            "{sql}: {e}"
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn strata_sql_extensions_answer_any_statement(sql in statement()) {
        run(&sql)?;
    }

    #[test]
    fn strata_sql_extensions_answer_mutated_statements(sql in mutated()) {
        run(&sql)?;
    }
}
