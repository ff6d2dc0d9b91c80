//! Foreign keys across concurrent writers: a statement that removes a parent key and one that
//! inserts a child row referencing it run at once, in two processes that meet at the commit
//! barrier. Whatever the order, at most one of them commits, and no child row is ever left
//! without its parent.

use std::path::Path;
use std::process::{Command, Stdio};

/// Statements that remove parent key 5 of `dim`.
const PARENT: [(&str, &str); 5] = [
    ("DELETE", "DELETE FROM dim WHERE k = 5"),
    ("UPDATE key", "UPDATE dim SET k = 50 WHERE k = 5"),
    (
        "MERGE delete",
        "MERGE INTO dim USING (SELECT 5 AS k) s ON dim.k = s.k WHEN MATCHED THEN DELETE",
    ),
    ("INSERT OVERWRITE", "INSERT OVERWRITE dim VALUES (7, 'g')"),
    ("TRUNCATE", "TRUNCATE TABLE dim"),
];

/// Statements that add a row of `fact` referencing key 5.
const CHILD: [(&str, &str); 3] = [
    ("INSERT", "INSERT INTO fact VALUES (5, 1)"),
    (
        "COPY INTO",
        "COPY INTO fact FROM '{dir}/fact.csv' FILE_FORMAT = (TYPE = CSV)",
    ),
    (
        "MERGE insert",
        "MERGE INTO fact USING (SELECT 5 AS k, 1 AS v) s ON fact.k = s.k \
         WHEN NOT MATCHED THEN INSERT VALUES (s.k, s.v)",
    ),
];

const SETUP: &str = "
    CREATE TABLE dim (k INT PRIMARY KEY, name VARCHAR);
    CREATE TABLE fact (k INT REFERENCES dim (k), v INT);
    INSERT INTO dim VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e'), (6, 'f');
";

fn strata(warehouse: &Path, sql: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--warehouse",
            warehouse.to_str().unwrap(),
            "--format",
            "csv",
            "-c",
            sql,
        ])
        .output()
        .unwrap()
}

#[test]
fn a_child_insert_and_a_parent_delete_never_both_commit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("fact.csv"), "5,1\n").unwrap();
    let mut table = vec![
        "| parent statement | child statement | outcome |".to_string(),
        "|---|---|---|".to_string(),
    ];
    for (parent_name, parent) in PARENT {
        for (child_name, child) in CHILD {
            let child = child.replace("{dir}", &root.display().to_string());
            let warehouse = root.join(format!("wh-{parent_name}-{child_name}").replace(' ', "_"));
            let setup = strata(&warehouse, SETUP);
            assert!(
                setup.status.success(),
                "{}",
                String::from_utf8_lossy(&setup.stderr)
            );
            let barrier = warehouse.with_extension("barrier");
            std::fs::create_dir_all(&barrier).unwrap();
            let spawn = |sql: &str| {
                Command::new(env!("CARGO_BIN_EXE_strata"))
                    .args(["--warehouse", warehouse.to_str().unwrap(), "-c", sql])
                    .env("STRATA_COMMIT_BARRIER", format!("{}:2", barrier.display()))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            };
            let runs = [spawn(parent), spawn(&child)];
            let mut succeeded = Vec::new();
            for (run, sql) in runs.into_iter().zip([parent, child.as_str()]) {
                let o = run.wait_with_output().unwrap();
                let stderr = String::from_utf8_lossy(&o.stderr);
                assert!(
                    !stderr.contains("panicked") && matches!(o.status.code(), Some(0 | 1)),
                    "{sql}: {:?} {stderr}",
                    o.status
                );
                if !o.status.success() {
                    assert!(stderr.contains("FOREIGN KEY"), "{sql}: {stderr}");
                }
                succeeded.push(o.status.success());
            }
            let orphans = strata(
                &warehouse,
                "SELECT count(*) AS orphans FROM fact WHERE k NOT IN (SELECT k FROM dim)",
            );
            let orphans = String::from_utf8_lossy(&orphans.stdout).into_owned();
            assert_eq!(
                orphans, "orphans\n0\n",
                "{parent} + {child}: a child row lost its parent"
            );
            let outcome = match (succeeded[0], succeeded[1]) {
                (true, false) => "parent commits, child fails on its foreign key",
                (false, true) => "child commits, parent fails on the reference",
                (true, true) => panic!("{parent} + {child}: both committed"),
                (false, false) => panic!("{parent} + {child}: both failed"),
            };
            table.push(format!("| {parent_name} | {child_name} | {outcome} |"));
        }
    }
    println!("{}", table.join("\n"));
}
