//! The engine's Prometheus metrics, recorded through the `metrics` facade.
//!
//! Every counter, histogram and gauge Strata exports is named here, once, with its help text
//! ([`describe`]). The layers that see an event record it with the functions below: the
//! statement layer when a statement ends, the warehouse when a commit lands or loses a race,
//! loads, task runs and data tests when they finish. Embedded, nothing records them and each
//! call is a no-op; `strata serve --metrics-listen` installs the Prometheus recorder.
//!
//! Labels are bounded sets (statement kinds, statuses, severities) or the names of catalog
//! objects, never user values.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

/// What a statement's scans read and what pruning spared them (the table layer's figures,
/// restated here so that this leaf module depends on nothing).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scanned {
    pub(crate) rows: u64,
    pub(crate) rows_total: u64,
    pub(crate) bytes: u64,
    pub(crate) bytes_total: u64,
    pub(crate) partitions: u64,
    pub(crate) partitions_total: u64,
}

/// Statements run, by `kind` (the first keyword) and `status`.
pub const STATEMENTS: &str = "strata_statements_total";
/// Statement latency in seconds, by `kind`.
pub const STATEMENT_SECONDS: &str = "strata_statement_duration_seconds";
/// Rows in the files statements' scans read, after pruning.
pub const ROWS_SCANNED: &str = "strata_rows_scanned_total";
/// Rows pruning spared statements' scans.
pub const ROWS_PRUNED: &str = "strata_rows_pruned_total";
/// Bytes of the files statements' scans read, after pruning.
pub const BYTES_SCANNED: &str = "strata_bytes_scanned_total";
/// Bytes pruning spared statements' scans.
pub const BYTES_PRUNED: &str = "strata_bytes_pruned_total";
/// Partitions pruning spared statements' scans.
pub const PARTITIONS_PRUNED: &str = "strata_partitions_pruned_total";
/// Table commits that landed.
pub const COMMITS: &str = "strata_commits_total";
/// Table commits that lost a race with a concurrent one.
pub const COMMIT_CONFLICTS: &str = "strata_commit_conflicts_total";
/// Rows `COPY INTO` and ingest loaded.
pub const ROWS_LOADED: &str = "strata_rows_loaded_total";
/// Rows loads rejected.
pub const LOAD_ERRORS: &str = "strata_load_errors_total";
/// Task runs, by `status`.
pub const TASK_RUNS: &str = "strata_task_runs_total";
/// Data tests that failed, by `severity`.
pub const DATA_TEST_FAILURES: &str = "strata_data_test_failures_total";
/// Alert checks, by `status`.
pub const ALERT_CHECKS: &str = "strata_alert_checks_total";
/// Statements running now.
pub const QUERIES_ACTIVE: &str = "strata_queries_active";
/// Client sessions open now.
pub const SESSIONS_ACTIVE: &str = "strata_sessions_active";
/// Seconds a materialized view is behind its tables, by `view`.
pub const MV_STALENESS: &str = "strata_materialized_view_staleness_seconds";
/// Seconds since rows last arrived in a table with a freshness SLA, by `table`.
pub const FRESHNESS_LAG: &str = "strata_table_freshness_lag_seconds";
/// Tables past their freshness SLA.
pub const FRESHNESS_BREACHES: &str = "strata_freshness_breaches";
/// Bytes the query memory pool has reserved.
pub const MEMORY_RESERVED: &str = "strata_memory_pool_reserved_bytes";
/// Bytes the scan cache holds.
pub const SCAN_CACHE_BYTES: &str = "strata_scan_cache_bytes";

/// Statement latency buckets, in seconds: from a point lookup to a long load.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Gives every metric its help text and unit (call once, after installing a recorder).
pub fn describe() {
    describe_counter!(STATEMENTS, "Statements run, by kind and status.");
    describe_histogram!(
        STATEMENT_SECONDS,
        Unit::Seconds,
        "Statement latency, by kind."
    );
    describe_counter!(ROWS_SCANNED, "Rows in the files scans read, after pruning.");
    describe_counter!(ROWS_PRUNED, "Rows pruning spared scans.");
    describe_counter!(BYTES_SCANNED, Unit::Bytes, "Bytes of the files scans read.");
    describe_counter!(BYTES_PRUNED, Unit::Bytes, "Bytes pruning spared scans.");
    describe_counter!(PARTITIONS_PRUNED, "Partitions pruning spared scans.");
    describe_counter!(COMMITS, "Table commits that landed.");
    describe_counter!(COMMIT_CONFLICTS, "Table commits that lost a race.");
    describe_counter!(ROWS_LOADED, "Rows COPY INTO and ingest loaded.");
    describe_counter!(LOAD_ERRORS, "Rows loads rejected.");
    describe_counter!(TASK_RUNS, "Task runs, by status.");
    describe_counter!(DATA_TEST_FAILURES, "Data tests that failed, by severity.");
    describe_counter!(ALERT_CHECKS, "Alert checks, by status.");
    describe_gauge!(QUERIES_ACTIVE, "Statements running now.");
    describe_gauge!(SESSIONS_ACTIVE, "Client sessions open now.");
    describe_gauge!(
        MV_STALENESS,
        Unit::Seconds,
        "How far a materialized view is behind."
    );
    describe_gauge!(
        FRESHNESS_LAG,
        Unit::Seconds,
        "Seconds since rows last arrived."
    );
    describe_gauge!(FRESHNESS_BREACHES, "Tables past their freshness SLA.");
    describe_gauge!(
        MEMORY_RESERVED,
        Unit::Bytes,
        "Bytes the query memory pool reserved."
    );
    describe_gauge!(SCAN_CACHE_BYTES, Unit::Bytes, "Bytes the scan cache holds.");
}

/// The `kind` label of a statement: its first keyword, from a fixed list (`OTHER` else).
pub(crate) fn statement_kind(text: &str) -> &'static str {
    const KINDS: [&str; 27] = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "CREATE", "ALTER", "DROP",
        "TRUNCATE", "SHOW", "DESCRIBE", "EXPLAIN", "REFRESH", "APPLY", "RUN", "EXECUTE", "VACUUM",
        "OPTIMIZE", "COMMENT", "USE", "SET", "VALUES", "LIST", "GRANT", "REVOKE", "ANALYZE",
    ];
    let word: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .take(16)
        .collect::<String>()
        .to_ascii_uppercase();
    if word == "WITH" || word == "FROM" {
        return "SELECT";
    }
    KINDS.into_iter().find(|k| *k == word).unwrap_or("OTHER")
}

/// Records a statement that ended.
pub(crate) fn statement_finished(text: &str, status: &str, elapsed: Duration, figures: Scanned) {
    let kind = statement_kind(text);
    let status = match status {
        "SUCCESS" => "SUCCESS",
        "FAILED" => "FAILED",
        "CANCELLED" => "CANCELLED",
        _ => "OTHER",
    };
    counter!(STATEMENTS, "kind" => kind, "status" => status).increment(1);
    histogram!(STATEMENT_SECONDS, "kind" => kind).record(elapsed.as_secs_f64());
    counter!(ROWS_SCANNED).increment(figures.rows);
    counter!(ROWS_PRUNED).increment(figures.rows_total.saturating_sub(figures.rows));
    counter!(BYTES_SCANNED).increment(figures.bytes);
    counter!(BYTES_PRUNED).increment(figures.bytes_total.saturating_sub(figures.bytes));
    counter!(PARTITIONS_PRUNED)
        .increment(figures.partitions_total.saturating_sub(figures.partitions));
}

/// Records a table commit: landed, or lost a race.
pub(crate) fn commit(landed: bool) {
    if landed {
        counter!(COMMITS).increment(1);
    } else {
        counter!(COMMIT_CONFLICTS).increment(1);
    }
}

/// Records a load's rows: loaded and rejected.
pub(crate) fn loaded(rows: u64, rejected: u64) {
    counter!(ROWS_LOADED).increment(rows);
    counter!(LOAD_ERRORS).increment(rejected);
}

/// Records a task run that ended with `status`.
pub(crate) fn task_run(status: &str) {
    let status = match status {
        "SUCCEEDED" => "SUCCEEDED",
        "FAILED" => "FAILED",
        "SKIPPED" => "SKIPPED",
        "CANCELLED" => "CANCELLED",
        _ => "OTHER",
    };
    counter!(TASK_RUNS, "status" => status).increment(1);
}

/// Records a data test that failed.
pub(crate) fn data_test_failed(severity_error: bool) {
    let severity = if severity_error { "ERROR" } else { "WARN" };
    counter!(DATA_TEST_FAILURES, "severity" => severity).increment(1);
}

/// Records an alert check that ended with `status`.
pub(crate) fn alert_checked(status: &str) {
    let status = match status {
        "FIRED" => "FIRED",
        "NOT_FIRED" => "NOT_FIRED",
        "CONDITION_FAILED" => "CONDITION_FAILED",
        "ACTION_FAILED" => "ACTION_FAILED",
        _ => "OTHER",
    };
    counter!(ALERT_CHECKS, "status" => status).increment(1);
}

/// Counts a running statement in [`QUERIES_ACTIVE`] until dropped (the recorder adds and
/// subtracts atomically, so statements ending together cannot leave a stale count).
#[derive(Debug)]
pub(crate) struct QueryGuard(());

impl QueryGuard {
    pub(crate) fn start() -> Self {
        gauge!(QUERIES_ACTIVE).increment(1.0);
        Self(())
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        gauge!(QUERIES_ACTIVE).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::statement_kind;

    #[test]
    fn statement_kinds_are_a_bounded_set() {
        assert_eq!(statement_kind("  select 1"), "SELECT");
        assert_eq!(
            statement_kind("WITH x AS (SELECT 1) SELECT * FROM x"),
            "SELECT"
        );
        assert_eq!(statement_kind("copy into t from @s"), "COPY");
        assert_eq!(statement_kind("'; DROP TABLE x"), "OTHER");
        assert_eq!(statement_kind(&"A".repeat(10_000)), "OTHER");
        assert_eq!(statement_kind(""), "OTHER");
    }
}
