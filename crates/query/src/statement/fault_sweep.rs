//! The fault-injection sweep: a statement runs on a store that fails its k-th call, for every
//! k over the calls the statement makes, in three modes (one failed call; a crash from that
//! call on, as a power loss; a call made whose answer is lost). After each fault the warehouse is reopened on the surviving store, as a restarted
//! process would, and must be at a commit boundary: the table reads, it holds the rows of
//! before or of after the statement, all of after if the statement was acknowledged, and
//! VACUUM leaves exactly the files the table references.
//!
//! `STRATA_FAULT_SWEEP_LONG=1` adds a statement that writes many files and a checkpoint every
//! commit of a longer script.

use std::sync::Arc;

use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_storage::{Fault, FaultyStore, WarehouseStore};

use crate::config::WarehouseOptions;
use crate::{Session, Warehouse};

/// What a sweep of one statement found.
#[derive(Debug, Default)]
struct Sweep {
    faults: usize,
    acknowledged: usize,
    failed: usize,
    /// Faults after which the statement reported failure although its commit landed.
    misreported: Vec<String>,
}

async fn open(store: Arc<dyn ObjectStore>) -> Warehouse {
    let options = WarehouseOptions {
        scan_cache_bytes: 0,
        ..Default::default()
    };
    Warehouse::open_store(WarehouseStore::from_store(store, "memory://sweep"), options)
        .await
        .unwrap()
}

/// A fingerprint of the table's rows: how many, and the sum of `v`.
async fn rows(session: &mut Session) -> crate::Result<u64> {
    let result = session
        .sql("SELECT count(*) * 1000000 + coalesce(sum(v), 0) AS n FROM t")
        .await?;
    let column = result[0].batches[0].column(0);
    Ok(
        arrow::compute::cast(column, &arrow::datatypes::DataType::UInt64)?
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .unwrap()
            .value(0),
    )
}

/// Parquet files under the warehouse, and the files the table's snapshot references.
async fn files(store: &Arc<dyn ObjectStore>, session: &mut Session) -> (usize, u64) {
    let stored = store
        .list(None)
        .filter(|m| {
            let parquet = m
                .as_ref()
                .is_ok_and(|m| m.location.as_ref().ends_with(".parquet"));
            async move { parquet }
        })
        .count()
        .await;
    let result = session
        .sql("SELECT CAST(coalesce(sum(file_count), 0) AS BIGINT) FROM system.partitions")
        .await
        .unwrap();
    let live = result[0].batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0) as u64;
    (stored, live)
}

/// Rewrites every in-flight marker as written by a process that has ended (a pid that cannot
/// exist on this host), as after a restart.
async fn end_process(store: &Arc<dyn ObjectStore>) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let markers: Vec<_> = store
        .list(None)
        .filter_map(|m| async move {
            m.ok()
                .filter(|m| m.location.as_ref().contains("/_inflight/"))
        })
        .collect()
        .await;
    for marker in markers {
        let body = format!("{}\n{}", host.trim(), u32::MAX);
        store.put(&marker.location, body.into()).await.unwrap();
    }
}

/// A fresh store after `setup`, and a session reading it through a fault injector (with the
/// table's snapshot read once, so that later runs' calls line up), with the table's rows.
async fn set_up(setup: &str) -> (Arc<dyn ObjectStore>, Arc<FaultyStore>, Session, u64) {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    open(Arc::clone(&inner))
        .await
        .session()
        .sql(setup)
        .await
        .unwrap();
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&inner)));
    let mut session = open(Arc::clone(&faulty) as Arc<dyn ObjectStore>)
        .await
        .session();
    let rows = rows(&mut session).await.unwrap();
    (inner, faulty, session, rows)
}

/// Runs `statement` after `setup` once per fault.
async fn sweep(setup: &str, statement: &str) -> Sweep {
    // A clean run: the calls the statement makes, and the rows before and after it.
    let (_, faulty, mut session, before) = set_up(setup).await;
    faulty.arm(None);
    session.sql(statement).await.unwrap();
    let calls = faulty.calls();
    let after = rows(&mut session).await.unwrap();
    assert_ne!(before, after, "{statement} must change the table");

    let mut sweep = Sweep::default();
    for k in 0..calls {
        for fault in [Fault::FailCall(k), Fault::CrashAt(k), Fault::LoseAnswer(k)] {
            let (inner, faulty, mut session, start) = set_up(setup).await;
            assert_eq!(start, before);
            faulty.arm(Some(fault));
            let outcome = session.sql(statement).await;
            faulty.arm(None);
            drop(session);
            sweep.faults += 1;
            // Restart on what the store kept, as a new process: the one that wrote the
            // in-flight markers left is gone.
            end_process(&inner).await;
            let mut session = open(Arc::clone(&inner)).await.session();
            let n = rows(&mut session)
                .await
                .unwrap_or_else(|e| panic!("{fault:?}: the table does not read: {e}"));
            match outcome {
                Ok(_) => {
                    sweep.acknowledged += 1;
                    assert_eq!(n, after, "{fault:?}: an acknowledged commit was lost");
                }
                Err(e) => {
                    sweep.failed += 1;
                    assert!(
                        n == before || n == after,
                        "{fault:?}: {n} rows is between commits"
                    );
                    if n == after {
                        sweep.misreported.push(format!("{fault:?}: {e}"));
                    }
                }
            }
            session
                .sql("SET strata.vacuum_retention_check = false; VACUUM RETAIN 0 HOURS")
                .await
                .unwrap_or_else(|e| panic!("{fault:?}: VACUUM failed: {e}"));
            assert_eq!(
                rows(&mut session).await.unwrap(),
                n,
                "{fault:?}: VACUUM lost rows"
            );
            let (stored, live) = files(&inner, &mut session).await;
            assert_eq!(stored as u64, live, "{fault:?}: VACUUM left orphans");
        }
    }
    sweep
}

const SETUP: &str = "
    CREATE TABLE t (p INT, k INT, v INT) PARTITION BY RANGE (p) (
        PARTITION a VALUES LESS THAN (10), PARTITION b VALUES LESS THAN (20));
    INSERT INTO t VALUES (1, 1, 0), (11, 11, 0);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_leaves_the_table_at_a_commit_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "2,2,0\n12,12,0\n3,3,0\n").unwrap();
    let mut statements = vec![
        ("commit (INSERT)", SETUP.to_string(), "INSERT INTO t VALUES (2, 2, 0)".to_string()),
        (
            "COPY INTO",
            SETUP.to_string(),
            format!("COPY INTO t FROM '{}' FILE_FORMAT = (TYPE = CSV)", csv.display()),
        ),
        (
            "MERGE",
            SETUP.to_string(),
            "MERGE INTO t USING (SELECT 1 AS p, 1 AS k UNION ALL SELECT 5, 5 UNION ALL SELECT 6, 6) s \
             ON t.p = s.p AND t.k = s.k \
             WHEN MATCHED THEN DELETE \
             WHEN NOT MATCHED THEN INSERT (p, k, v) VALUES (s.p, s.k, 1)"
                .to_string(),
        ),
    ];
    // A table at version 49: the statement's commit (50) writes a checkpoint.
    let mut checkpoint_setup = "CREATE TABLE t (p INT, k INT, v INT);".to_string();
    for i in 0..49 {
        checkpoint_setup.push_str(&format!("INSERT INTO t VALUES ({i}, {i}, 0);"));
    }
    statements.push((
        "checkpoint",
        checkpoint_setup,
        "INSERT INTO t VALUES (100, 100, 0)".to_string(),
    ));
    if std::env::var("STRATA_FAULT_SWEEP_LONG").is_ok() {
        statements.push((
            "UPDATE of every partition",
            SETUP.to_string(),
            "UPDATE t SET v = v + 1".to_string(),
        ));
    }
    let mut report = Vec::new();
    for (name, setup, statement) in &statements {
        let s = sweep(setup, statement).await;
        report.push(format!(
            "{name}: {} faults, {} acknowledged, {} failed cleanly, 0 lost, {} reported failed \
             although committed {:?}",
            s.faults,
            s.acknowledged,
            s.failed,
            s.misreported.len(),
            s.misreported
        ));
    }
    println!("{}", report.join("\n"));
}
