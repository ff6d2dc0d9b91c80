//! The kill loop: a `strata` process runs COPY INTO, MERGE and REFRESH MATERIALIZED VIEW
//! while it is killed with SIGKILL at a random moment, again and again. After every kill the
//! warehouse must be at a commit boundary: every table reads, the invariants the statements
//! keep hold, no committed version is missing, and at the end VACUUM leaves exactly the files
//! the tables reference.
//!
//! CI runs 30 rounds; `STRATA_KILL_LOOP=201` (or more) runs the long variant.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use strata_query::{Session, Warehouse};

async fn number(session: &mut Session, sql: &str) -> i64 {
    let result = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let column = arrow::compute::cast(
        result[0].batches[0].column(0),
        &arrow::datatypes::DataType::Int64,
    )
    .unwrap();
    column
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

fn parquet_files(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += parquet_files(&p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
    }
    n
}

/// A small deterministic generator for the kill moments (no dependency, reproducible by seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn killed_at_random_moments_the_warehouse_stays_at_commit_boundaries() {
    let kills: usize = std::env::var("STRATA_KILL_LOOP")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(30);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("wh");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        Warehouse::open(warehouse.to_str().unwrap())
            .await
            .unwrap()
            .session()
            .sql(
                "CREATE TABLE t (k BIGINT, v BIGINT) PARTITION BY RANGE (k) INTERVAL (1000);
                 CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n, sum(v) AS s FROM t;",
            )
            .await
            .unwrap();
    });
    let mut versions_before = 0;
    let mut killed_mid_statement = 0;
    let mut run_ms = 1;
    for i in 0..kills {
        // 100 new keys per load, so a committed load keeps count(*) a multiple of 100.
        let csv = dir.path().join(format!("batch{i}.csv"));
        let rows: String = (0..100)
            .map(|j| format!("{},{}\n", i * 100 + j, j))
            .collect();
        std::fs::write(&csv, rows).unwrap();
        let script = format!(
            "COPY INTO t FROM '{}' FILE_FORMAT = (TYPE = CSV);
             MERGE INTO t USING (SELECT k, v + 1 AS v FROM t WHERE k % 7 = {}) s ON t.k = s.k
               WHEN MATCHED THEN UPDATE SET v = s.v;
             REFRESH MATERIALIZED VIEW mv;",
            csv.display(),
            i % 7
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--warehouse", warehouse.to_str().unwrap(), "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first run is not killed: it measures how long a run takes, and the kills
        // after it fall anywhere inside that time.
        if i == 0 {
            let started = std::time::Instant::now();
            child.wait().unwrap();
            run_ms = (started.elapsed().as_millis() as u64).max(1);
        } else {
            std::thread::sleep(Duration::from_millis(random.next(run_ms)));
        }
        if child.try_wait().unwrap().is_none() {
            killed_mid_statement += 1;
        }
        let _ = child.kill(); // SIGKILL; the first run has ended already
        child.wait().unwrap();
        runtime.block_on(async {
            let w = Warehouse::open(warehouse.to_str().unwrap()).await.unwrap();
            let mut s = w.session();
            let n = number(&mut s, "SELECT count(*) FROM t").await;
            assert_eq!(n % 100, 0, "kill {i}: {n} rows is between commits");
            let distinct = number(&mut s, "SELECT count(DISTINCT k) FROM t").await;
            assert_eq!(n, distinct, "kill {i}: a key was written twice");
            let mv_rows = number(&mut s, "SELECT coalesce(max(n), 0) FROM mv").await;
            assert!(
                mv_rows <= n && mv_rows % 100 == 0,
                "kill {i}: mv has {mv_rows}"
            );
            let versions = number(
                &mut s,
                "SELECT count(*) FROM system.table_versions WHERE table_name = 't'",
            )
            .await;
            assert!(
                versions >= versions_before,
                "kill {i}: a committed version vanished"
            );
            versions_before = versions;
        });
    }
    // Everything left over by the kills goes; every referenced file stays.
    runtime.block_on(async {
        let w = Warehouse::open(warehouse.to_str().unwrap()).await.unwrap();
        let mut s = w.session();
        let before = number(&mut s, "SELECT count(*) FROM t").await;
        s.sql("SET strata.vacuum_retention_check = false; VACUUM RETAIN 0 HOURS")
            .await
            .unwrap();
        assert_eq!(number(&mut s, "SELECT count(*) FROM t").await, before);
        let live = number(&mut s, "SELECT sum(file_count) FROM system.partitions").await;
        assert_eq!(
            parquet_files(&warehouse) as i64,
            live,
            "VACUUM left orphans"
        );
    });
    println!(
        "{} kills ({killed_mid_statement} mid-script), seed {seed}, a run takes {run_ms} ms: 0 \
         lost commits",
        kills - 1
    );
}
