//! The conflict matrix: every pair of writing statements, run at once in two `strata`
//! processes, on the same partition and on different ones. Each pair must end as if the two
//! had run one after the other, in some order (WriteSerializable), with every failure a clean
//! error: no panic, no lost update, no duplicate, no table left unreadable.
//!
//! The processes meet at a commit barrier (`STRATA_COMMIT_BARRIER`), so both have read their
//! snapshot and uploaded their files before either commits: every pair really races. The two
//! serial orders are run in this process on copies of the same starting warehouse, and the
//! state after the race (the rows of the table, of a materialized view over it and of an SCD
//! dimension) must equal one of them. The outcome of every pair is printed as a Markdown table
//! (`cargo test -p strata-cli conflict_matrix -- --nocapture`); RELIABILITY.md publishes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use strata_query::Warehouse;

/// The statements, by name. `{p}` is a digit prefix choosing the partition (`''`: partition
/// `a`, keys below 10; `'1'`: partition `b`, keys 10 to 19), `{part}` the partition's name and
/// `{dir}` the directory of the load files.
const STATEMENTS: [(&str, &str); 17] = [
    ("INSERT", "INSERT INTO t VALUES ({p}5, 100, 1)"),
    (
        "INSERT SELECT",
        "INSERT INTO t SELECT p, k + 1000, v FROM t WHERE p < 20",
    ),
    (
        "COPY INTO",
        "COPY INTO t FROM '{dir}/rows{p}.csv' FILE_FORMAT = (TYPE = CSV)",
    ),
    ("UPDATE", "UPDATE t SET v = v + 1 WHERE p = {p}1"),
    ("DELETE", "DELETE FROM t WHERE p = {p}2"),
    (
        "MERGE",
        "MERGE INTO t USING (SELECT {p}3 AS p, 300 AS k, 1 AS v) s ON t.p = s.p AND t.k = s.k \
         WHEN MATCHED THEN UPDATE SET v = t.v + 1 \
         WHEN NOT MATCHED THEN INSERT (p, k, v) VALUES (s.p, s.k, s.v)",
    ),
    (
        "INSERT OVERWRITE",
        "INSERT OVERWRITE t VALUES ({p}4, 400, 1)",
    ),
    ("TRUNCATE", "TRUNCATE TABLE t"),
    (
        "ADD PARTITION",
        "ALTER TABLE t ADD PARTITION (PARTITION c{p} VALUES LESS THAN ({p}30))",
    ),
    ("DROP PARTITION", "ALTER TABLE t DROP PARTITION {part}"),
    ("DROP TABLE", "DROP TABLE t"),
    (
        "CREATE OR REPLACE",
        "CREATE OR REPLACE TABLE t (p INT, k INT, v INT)",
    ),
    (
        "APPLY CHANGES",
        "APPLY CHANGES INTO dim FROM changes KEY (id) SEQUENCE BY seq",
    ),
    ("REFRESH", "REFRESH MATERIALIZED VIEW mv"),
    (
        "VACUUM",
        "SET strata.vacuum_retention_check = false; VACUUM t RETAIN 0 HOURS",
    ),
    // Rewrites of every file that change no row: `ZORDER BY` makes OPTIMIZE rewrite even
    // the single file of a partition, so it always commits.
    ("OPTIMIZE", "OPTIMIZE t ZORDER BY (k, v)"),
    ("CREATE INDEX", "CREATE INDEX ik ON t (k)"),
];

/// Statements whose effect depends on the partition they name: paired on different
/// partitions too.
const PARTITIONED: [&str; 7] = [
    "INSERT",
    "COPY INTO",
    "UPDATE",
    "DELETE",
    "MERGE",
    "ADD PARTITION",
    "DROP PARTITION",
];

const SETUP: &str = "
    CREATE TABLE t (p INT, k INT, v INT) PARTITION BY RANGE (p) (
        PARTITION a VALUES LESS THAN (10), PARTITION b VALUES LESS THAN (20));
    INSERT INTO t VALUES (1, 1, 0), (2, 2, 0), (11, 11, 0), (12, 12, 0);
    CREATE MATERIALIZED VIEW mv AS SELECT p, count(*) AS c, sum(v) AS s FROM t GROUP BY p;
    CREATE TABLE dim (id INT, val VARCHAR) WITH (scd = 2, natural_key = 'id', tracked = 'val');
    CREATE TABLE changes (id INT, val VARCHAR, seq TIMESTAMP);
    INSERT INTO changes VALUES (1, 'x', '2024-01-01 00:00:00'), (2, 'y', '2024-01-01 00:00:00');";

/// What a pair left behind, compared between the race and the serial orders.
#[derive(Debug, Clone, PartialEq)]
struct State {
    /// Which of the two statements succeeded.
    succeeded: (bool, bool),
    /// The rows of `t`, `mv` and `dim` (or the error reading them).
    tables: Vec<String>,
}

fn statement(name: &str, partition: &str, dir: &Path) -> String {
    let sql = STATEMENTS.iter().find(|(n, _)| *n == name).unwrap().1;
    let (p, part) = if partition == "a" {
        ("", "a")
    } else {
        ("1", "b")
    };
    sql.replace("{p}", p)
        .replace("{part}", part)
        .replace("{dir}", &dir.display().to_string())
}

/// Copies a directory tree (test data into a test's own directory).
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn dump(warehouse: &Path) -> Vec<String> {
    let w = Warehouse::open(warehouse.to_str().unwrap()).await.unwrap();
    let mut session = w.session();
    let mut out = Vec::new();
    for sql in [
        "SELECT p, k, v FROM t ORDER BY p, k, v",
        "SELECT p, c, s FROM mv ORDER BY p",
        "SELECT id, val, is_current FROM dim ORDER BY id, val",
    ] {
        out.push(match session.sql(sql).await {
            Ok(r) => arrow::util::pretty::pretty_format_batches(&r[0].batches)
                .unwrap()
                .to_string(),
            Err(e) => format!("error: {:?}", e.kind()),
        });
    }
    out
}

/// Runs `first` then `second` on a copy of `template`.
async fn serial(template: &Path, scratch: &Path, first: &str, second: Option<&str>) -> State {
    let _ = std::fs::remove_dir_all(scratch);
    copy_dir(template, scratch);
    let w = Warehouse::open(scratch.to_str().unwrap()).await.unwrap();
    let mut session = w.session();
    let a = session.sql(first).await.is_ok();
    let b = match second {
        Some(sql) => session.sql(sql).await.is_ok(),
        None => false,
    };
    State {
        succeeded: (a, b),
        tables: dump(scratch).await,
    }
}

/// Runs both statements at once in two processes; returns the state and the retries.
async fn race(template: &Path, scratch: &Path, a: &str, b: &str) -> (State, u64) {
    let _ = std::fs::remove_dir_all(scratch);
    copy_dir(template, scratch);
    let barrier = scratch.with_extension("barrier");
    let _ = std::fs::remove_dir_all(&barrier);
    std::fs::create_dir_all(&barrier).unwrap();
    let spawn = |sql: &str| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--warehouse", scratch.to_str().unwrap(), "-c", sql])
            .env("STRATA_COMMIT_BARRIER", format!("{}:2", barrier.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn(a), spawn(b)];
    let mut succeeded = Vec::new();
    for (child, sql) in children.into_iter().zip([a, b]) {
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !stderr.contains("panicked") && matches!(o.status.code(), Some(0 | 1)),
            "{sql}: {:?} {stderr}",
            o.status
        );
        succeeded.push(o.status.success());
    }
    let w = Warehouse::open(scratch.to_str().unwrap()).await.unwrap();
    let retries = w
        .session()
        .sql("SELECT CAST(coalesce(sum(retries), 0) AS BIGINT) AS r FROM system.query_log")
        .await
        .ok()
        .and_then(|r| {
            r[0].batches.first().map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap()
                    .value(0) as u64
            })
        })
        .unwrap_or(0);
    let state = State {
        succeeded: (succeeded[0], succeeded[1]),
        tables: dump(scratch).await,
    };
    (state, retries)
}

fn outcome(state: &State, retries: u64, order: &str) -> String {
    let retried = if retries > 0 {
        format!(", {retries} retried")
    } else {
        String::new()
    };
    match state.succeeded {
        (true, true) => format!("both commit ({order}{retried})"),
        (true, false) => format!("2nd fails ({order}{retried})"),
        (false, true) => format!("1st fails ({order}{retried})"),
        (false, false) => format!("both fail{retried}"),
    }
}

#[test]
fn every_pair_of_writes_ends_as_one_serial_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("rows.csv"), "6,200,1\n").unwrap();
    std::fs::write(root.join("rows1.csv"), "16,200,1\n").unwrap();
    let template = root.join("template");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        Warehouse::open(template.to_str().unwrap())
            .await
            .unwrap()
            .session()
            .sql(SETUP)
            .await
            .unwrap();
    });
    let names: Vec<&str> = STATEMENTS.iter().map(|(n, _)| *n).collect();
    let mut pairs = Vec::new();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i..] {
            pairs.push((*a, *b, "a"));
            if PARTITIONED.contains(a) && PARTITIONED.contains(b) {
                pairs.push((*a, *b, "b"));
            }
        }
    }
    let mut table = vec![
        "| 1st statement | 2nd statement | partitions | outcome |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    let mut failures = Vec::new();
    for (a, b, b_partition) in pairs {
        let sql_a = statement(a, "a", root);
        let sql_b = statement(b, b_partition, root);
        let scratch = root.join("scratch");
        let (raced, retries) = runtime.block_on(race(&template, &scratch, &sql_a, &sql_b));
        let ab = runtime.block_on(serial(&template, &scratch, &sql_a, Some(&sql_b)));
        let ba = runtime.block_on(serial(&template, &scratch, &sql_b, Some(&sql_a)));
        let ba = State {
            succeeded: (ba.succeeded.1, ba.succeeded.0),
            ..ba
        };
        let order = if raced == ab {
            Some("as 1st, 2nd")
        } else if raced == ba {
            Some("as 2nd, 1st")
        } else {
            // One failed where no serial order fails it: then the state is the other's alone.
            let alone = match raced.succeeded {
                (true, false) => Some(runtime.block_on(serial(&template, &scratch, &sql_a, None))),
                (false, true) => {
                    let s = runtime.block_on(serial(&template, &scratch, &sql_b, None));
                    Some(State {
                        succeeded: (false, true),
                        ..s
                    })
                }
                _ => None,
            };
            alone
                .filter(|s| s.tables == raced.tables)
                .map(|_| "as the one that committed")
        };
        let partitions = if b_partition == "a" {
            "same"
        } else {
            "different"
        };
        match order {
            Some(order) => table.push(format!(
                "| {a} | {b} | {partitions} | {} |",
                outcome(&raced, retries, order)
            )),
            None => failures.push(format!(
                "{a} + {b} ({partitions} partitions): no serial order explains\n{raced:#?}\n\
                 1st, 2nd gives\n{ab:#?}\n2nd, 1st gives\n{ba:#?}"
            )),
        }
    }
    println!("{}", table.join("\n"));
    let _ = std::fs::remove_dir_all(PathBuf::from(root).join("scratch"));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
