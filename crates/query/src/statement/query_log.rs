//! `system.query_log`: one record per statement, with its pruning figures, written when the
//! statement ends (a streamed query's when its stream ends or is dropped).

use chrono::{DateTime, Utc};
use strata_storage::QueryLogEntry;

use crate::redact::redact;
use crate::table::ScanFigures;
use crate::warehouse::Warehouse;

/// What the query log keeps of one statement.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    /// From [`new_query_id`], made when the statement started.
    pub(crate) query_id: String,
    pub(crate) session_id: &'a str,
    pub(crate) user_name: String,
    /// How the statement arrived (see [`crate::Session::set_protocol`]).
    pub(crate) protocol: &'a str,
    pub(crate) text: &'a str,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) elapsed: std::time::Duration,
    /// `SUCCESS`, `FAILED` or `CANCELLED`.
    pub(crate) status: &'a str,
    /// The error of a failed statement.
    pub(crate) error: Option<String>,
    pub(crate) rows: u64,
    pub(crate) figures: ScanFigures,
    /// Times the statement ran again after losing a commit race.
    pub(crate) retries: u32,
    /// What the statement did on the cluster, when it ran there.
    pub(crate) job: Option<crate::cluster::JobFigures>,
}

impl Entry<'_> {
    /// The stored record; the statement counts in the metrics as it is made.
    pub(crate) fn record(self) -> QueryLogEntry {
        let figures = self.figures;
        let scanned = crate::telemetry::Scanned {
            rows: figures.rows_scanned,
            rows_total: figures.rows_total,
            bytes: figures.bytes_scanned,
            bytes_total: figures.bytes_total,
            partitions: figures.partitions_scanned as u64,
            partitions_total: figures.partitions_total as u64,
        };
        crate::telemetry::statement_finished(self.text, self.status, self.elapsed, scanned);
        tracing::info!(
            kind = crate::telemetry::statement_kind(self.text),
            status = self.status,
            elapsed_ms = u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
            rows = self.rows,
            bytes_scanned = figures.bytes_scanned,
            "statement finished"
        );
        QueryLogEntry {
            query_id: self.query_id,
            session_id: self.session_id.to_string(),
            user_name: self.user_name,
            query_text: redact(self.text),
            started_at: self.started_at,
            duration_ms: u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
            status: self.status.to_string(),
            error: self.error.as_deref().map(redact),
            rows_returned: self.rows,
            partitions_total: figures.partitions_total as u64,
            partitions_scanned: figures.partitions_scanned as u64,
            files_scanned: figures.files_scanned as u64,
            bytes_scanned: figures.bytes_scanned,
            retries: self.retries,
            stages: self.job.as_ref().map_or(0, |j| j.stages),
            tasks: self.job.as_ref().map_or(0, |j| j.tasks),
            shuffle_bytes: self.job.as_ref().map_or(0, |j| j.shuffle_bytes),
            cluster_job: self.job.map(|j| j.job_id),
            protocol: self.protocol.to_string(),
        }
    }
}

/// A new statement's query id.
pub(crate) fn new_query_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The span a statement runs in: every line logged while it runs carries its query id (with
/// `--log-format json`, in the line's `spans`).
pub(crate) fn span(query_id: &str, session_id: &str) -> tracing::Span {
    tracing::info_span!("statement", query_id = %query_id, session_id = %session_id)
}

/// Records one statement and returns its query id. Failure to record is logged, never fatal.
pub(crate) async fn record(warehouse: &Warehouse, entry: Entry<'_>) -> String {
    let record = entry.record();
    write(warehouse, &record).await;
    record.query_id
}

/// Writes a query-log record. Failure to record is logged, never fatal.
pub(crate) async fn write(warehouse: &Warehouse, entry: &QueryLogEntry) {
    if let Err(e) = warehouse.records().put(entry).await {
        tracing::warn!(error = %e, "query log entry not written");
    }
}
