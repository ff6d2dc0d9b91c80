//! The cancel sweep: a statement is cancelled after its k-th poll, for every k until it
//! finishes on its own, as a query timeout, a Flight cancel or Ctrl-C would stop it.
//!
//! The canceller asks the statement's [`CommitGate`] first. If the gate says no commit has
//! started, the statement is dropped there and then, and the table must be exactly as before;
//! otherwise it is left to finish, must succeed, and the table must show its change. So a
//! statement reported as cancelled never committed, and one whose commit had started is
//! reported as committed.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use crate::commit_gate::CommitGate;
use crate::{Session, Warehouse};

/// What a sweep of one statement found.
#[derive(Debug, Default)]
struct Sweep {
    /// Polls after which the statement was cancelled before any commit.
    cancelled: usize,
    /// Polls after which the cancel came too late and the statement finished.
    finished_anyway: usize,
}

/// The text of a statement's i-th run.
type StatementText = Box<dyn Fn(usize) -> String>;

/// How a statement of the sweep ended.
enum Ended {
    Cancelled,
    CommittedAnyway,
    OnItsOwn,
}

/// The table's rows as a number: how many, and the sum of `v`.
async fn fingerprint(session: &mut Session) -> u64 {
    let result = session
        .sql("SELECT count(*) * 1000000 + coalesce(sum(v), 0) AS n FROM t")
        .await
        .unwrap();
    let column = result[0].batches[0].column(0);
    arrow::compute::cast(column, &arrow::datatypes::DataType::UInt64)
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .unwrap()
        .value(0)
}

/// Runs `future` for at most `polls` polls: its output, or `None` if it had not finished.
async fn poll_at_most<F: Future>(future: std::pin::Pin<&mut F>, polls: usize) -> Option<F::Output> {
    let mut future = future;
    let mut count = 0;
    std::future::poll_fn(|cx| {
        count += 1;
        match future.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if count >= polls => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Sweeps the cancel point of statement `sql(i)` (the i-th run) over every poll.
async fn sweep(session: &mut Session, sql: impl Fn(usize) -> String) -> Sweep {
    let mut found = Sweep::default();
    for polls in 1.. {
        let text = sql(polls);
        let before = fingerprint(session).await;
        let gate = CommitGate::new();
        let ended = {
            let mut run = pin!(gate.run(session.sql(&text)));
            match poll_at_most(run.as_mut(), polls).await {
                Some(result) => {
                    result.unwrap_or_else(|e| panic!("{text}: {e}"));
                    Ended::OnItsOwn
                }
                None if gate.cancel() => Ended::Cancelled,
                None => {
                    // The commit had started: the statement finishes and reports success.
                    run.await
                        .unwrap_or_else(|e| panic!("{text} after a late cancel: {e}"));
                    Ended::CommittedAnyway
                }
            }
        };
        let after = fingerprint(session).await;
        match ended {
            Ended::Cancelled => {
                assert_eq!(
                    after, before,
                    "{text}: cancelled after {polls} polls, yet committed"
                );
                found.cancelled += 1;
            }
            Ended::CommittedAnyway => {
                assert_ne!(
                    after, before,
                    "{text}: reported committed, yet changed nothing"
                );
                found.finished_anyway += 1;
            }
            Ended::OnItsOwn => {
                assert_ne!(after, before, "{text} changed nothing");
                // It finished within `polls`: every earlier point has been swept.
                break;
            }
        }
        assert!(polls < 100_000, "{text} never finished");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_statement_never_committed_and_a_late_cancel_reports_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().join("wh").to_str().unwrap())
        .await
        .unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "k,v\n1,10\n2,20\n").unwrap();
    let mut session = warehouse.session();
    session
        .sql(
            "CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT) PARTITION BY RANGE (k) INTERVAL (1000); \
             INSERT INTO t VALUES (0, 1)",
        )
        .await
        .unwrap();
    let statements: Vec<(&str, StatementText)> = vec![
        (
            "INSERT",
            Box::new(|i| format!("INSERT INTO t VALUES ({}, 1)", 10_000 + i)),
        ),
        (
            "UPDATE",
            Box::new(|_| "UPDATE t SET v = v + 1 WHERE k = 0".to_string()),
        ),
        (
            "MERGE",
            Box::new(|i| {
                format!(
                    "MERGE INTO t USING (SELECT {} AS k, 5 AS v) s ON t.k = s.k \
                     WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.k, s.v)",
                    20_000 + i
                )
            }),
        ),
        (
            "COPY INTO",
            Box::new(move |i| {
                // New keys each time: the file is written again under a new name.
                let file = csv.with_file_name(format!("rows_{i}.csv"));
                let k = 30_000 + 2 * i;
                std::fs::write(&file, format!("k,v\n{k},1\n{},1\n", k + 1)).unwrap();
                format!(
                    "COPY INTO t FROM '{}' FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1)",
                    file.display()
                )
            }),
        ),
    ];
    for (name, sql) in statements {
        let found = sweep(&mut session, sql).await;
        eprintln!("cancel sweep {name}: {found:?}");
        assert!(
            found.cancelled > 0,
            "{name}: no cancel point before the commit"
        );
    }
}
