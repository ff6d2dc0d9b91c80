//! Materialized views: a query's result kept as a Strata table, refreshed incrementally.
//!
//! `CREATE MATERIALIZED VIEW mv [PARTITION BY RANGE (...)] [WITH (refresh = ...)] AS SELECT`
//! creates an ordinary table whose metadata properties hold the definition: the query, the
//! schema it was written in, the refresh mode, and the version of every source table the
//! stored rows reflect. Because a refresh writes the rows and those versions in one table
//! commit, the view is never half-refreshed, and staleness is a comparison of versions.
//!
//! For each `AVG(x)` in the select list the table also keeps hidden `SUM(x)` and `COUNT(x)`
//! columns, so averages can be folded and rolled up exactly; readers see the view through the
//! catalog's `MaterializedViewTable`, which hides them and refuses writes
//! ([`crate::catalog::materialized_view`] holds the definition and staleness).
//!
//! - [`create`]: `CREATE MATERIALIZED VIEW` and its first fill;
//! - [`refresh`]: how a refresh decides between folding new rows, recomputing partitions and
//!   recomputing everything, and `REFRESH MATERIALIZED VIEW`;
//! - [`scheduler`]: `on_commit` refreshes and the `every <n> <unit>` loop of `strata serve`;
//! - [`rewrite`]: answering queries from fresh views.

pub(crate) mod create;
pub(crate) mod refresh;
pub(crate) mod rewrite;
pub(crate) mod scheduler;

pub use scheduler::{RefreshLimits, run_scheduler};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::run_scheduler;
    use crate::catalog::materialized_view::RefreshMode;
    use crate::{Session, Warehouse};

    async fn value(session: &mut Session, sql: &str) -> String {
        let results = session.sql(sql).await.unwrap();
        let batch = &results.last().unwrap().batches[0];
        arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap()
    }

    #[test]
    fn refresh_modes_parse_and_print() {
        for (text, printed) in [
            ("manual", "manual"),
            ("ON COMMIT", "on_commit"),
            ("Continuous", "continuous"),
            ("every 5 minutes", "every 5 minutes"),
            ("every 1 hour", "every 1 hour"),
            ("every 90 seconds", "every 90 seconds"),
            ("every 2 days", "every 2 days"),
        ] {
            let mode = RefreshMode::parse(text).unwrap();
            assert_eq!(mode.to_string(), printed);
            assert_eq!(RefreshMode::parse(printed).unwrap(), mode);
        }
        for bad in [
            "every",
            "every 0 minutes",
            "every 5 fortnights",
            "every five minutes",
            "soon",
        ] {
            assert!(RefreshMode::parse(bad).is_err(), "{bad}");
        }
    }

    /// The scheduler refreshes a view whose interval has passed, and retries a failing one
    /// with backoff instead of at every tick.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scheduler_refreshes_due_views_and_backs_off_failures() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE t (x INT);
                 CREATE TABLE gone (x INT);
                 INSERT INTO t VALUES (1);
                 CREATE MATERIALIZED VIEW total WITH (refresh = 'every 1 second') AS
                   SELECT SUM(x) AS s FROM t;
                 CREATE MATERIALIZED VIEW broken WITH (refresh = 'every 1 second') AS
                   SELECT COUNT(*) AS n FROM gone;
                 INSERT INTO t VALUES (2), (3);
                 DROP TABLE gone;",
            )
            .await
            .unwrap();
        assert_eq!(value(&mut session, "SELECT s FROM total").await, "1");
        let scheduler = tokio::spawn(run_scheduler(
            warehouse.clone(),
            Duration::from_millis(50),
            Default::default(),
        ));
        let mut refreshed = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if value(&mut session, "SELECT s FROM total").await == "6" {
                refreshed = true;
                break;
            }
        }
        assert!(refreshed, "the scheduler did not refresh the due view");
        // Two more seconds: at a 50 ms tick, only the backoff keeps the failing view to one
        // attempt (the next one is due 5 s after the first).
        tokio::time::sleep(Duration::from_secs(2)).await;
        scheduler.abort();
        let failures = value(
            &mut session,
            "SELECT count(*) FROM system.table_versions
             WHERE table_name = 'broken' AND operation LIKE '%failed%'",
        )
        .await;
        assert_eq!(failures, "1");
        let error = value(
            &mut session,
            "SELECT last_error FROM system.materialized_views WHERE view_name = 'broken'",
        )
        .await;
        assert!(error.contains("gone"), "{error}");
    }

    /// Scheduled refreshes keep a server's limits: none runs while every query slot is taken,
    /// and one past the timeout stops, commits nothing, and is recorded as failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scheduled_refreshes_wait_for_a_slot_and_keep_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE t (x INT);
                 INSERT INTO t VALUES (1);
                 CREATE MATERIALIZED VIEW total WITH (refresh = 'every 1 second') AS
                   SELECT SUM(x) AS s FROM t;
                 INSERT INTO t VALUES (2), (3);",
            )
            .await
            .unwrap();
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let busy = std::sync::Arc::clone(&slots).acquire_owned().await.unwrap();
        let scheduler = tokio::spawn(run_scheduler(
            warehouse.clone(),
            Duration::from_millis(50),
            super::RefreshLimits {
                slots: Some(std::sync::Arc::clone(&slots)),
                timeout: Some(Duration::ZERO),
            },
        ));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(value(&mut session, "SELECT s FROM total").await, "1");
        // A slot frees up: the refresh runs, but past its (zero) timeout, so it fails.
        drop(busy);
        let mut failed = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let error = value(
                &mut session,
                "SELECT coalesce(last_error, '') FROM system.materialized_views
                 WHERE view_name = 'total'",
            )
            .await;
            if error.contains("timeout") {
                failed = true;
                break;
            }
        }
        scheduler.abort();
        assert!(failed, "the refresh did not time out");
        assert_eq!(value(&mut session, "SELECT s FROM total").await, "1");
    }
}
