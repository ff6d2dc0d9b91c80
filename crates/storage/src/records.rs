//! System records: what the warehouse remembers about its own work, as small JSON objects.
//!
//! The query log, failed loads, rejected rows and lineage edges are not tables: each event is
//! one JSON object under `_system/<kind>/<bucket>/<id>.json`, written with one `put` and never
//! changed. So every process sharing a warehouse adds to them without coordination, they
//! survive restarts, and retention deletes whole buckets (days). A record that cannot be read
//! back (a foreign or damaged file) is skipped, never an error of the query that lists them.
//!
//! Each kind of record is a type implementing [`Record`]; [`SystemRecords`] writes, lists and
//! expires them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::paths;

/// A kind of system record.
pub trait Record: Serialize + DeserializeOwned {
    /// The folder of this kind under `_system/`.
    const KIND: &'static str;

    /// The folder of this record within its kind: a day (`yyyy-mm-dd`) for records that
    /// retention deletes by day.
    fn bucket(&self) -> String;

    /// The file name of this record: unique, or the same for records that are equal.
    fn id(&self) -> String;
}

/// How many records are read at once when listing.
const READ_CONCURRENCY: usize = 32;

/// The system records of one warehouse root.
#[derive(Debug, Clone)]
pub struct SystemRecords {
    store: Arc<dyn ObjectStore>,
}

impl SystemRecords {
    /// The records under the root of `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Writes one record (replacing a record of the same kind, bucket and id).
    pub async fn put<R: Record>(&self, record: &R) -> Result<()> {
        let path = paths::system_record(R::KIND, &record.bucket(), &record.id());
        let body = serde_json::to_vec(record).map_err(|e| {
            crate::Error::InvalidArgument(format!("{} record does not serialise: {e}", R::KIND))
        })?;
        self.store.put(&path, PutPayload::from(body)).await?;
        Ok(())
    }

    /// Writes `record` only if no record of the same kind, bucket and id exists (put-if-absent,
    /// as commits are written): true when this call wrote it, false when another writer had.
    pub async fn claim<R: Record>(&self, record: &R) -> Result<bool> {
        let path = paths::system_record(R::KIND, &record.bucket(), &record.id());
        let body = serde_json::to_vec(record).map_err(|e| {
            crate::Error::InvalidArgument(format!("{} record does not serialise: {e}", R::KIND))
        })?;
        let options = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every readable record of kind `R`, in no particular order.
    pub async fn read_all<R: Record>(&self) -> Result<Vec<R>> {
        let paths: Vec<Path> = self
            .store
            .list(Some(&paths::system_dir(R::KIND)))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        let records = futures::stream::iter(paths)
            .map(|p| {
                let store = Arc::clone(&self.store);
                async move {
                    let bytes = store.get(&p).await?.bytes().await?;
                    Ok::<_, object_store::Error>(serde_json::from_slice::<R>(&bytes).ok())
                }
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_filter_map(|r| async move { Ok(r) })
            .try_collect()
            .await?;
        Ok(records)
    }

    /// Deletes the buckets of kind `R` that sort before `oldest_kept` (a day, for day buckets).
    /// A bucket that cannot be deleted does not stop the others; the first failure is returned.
    pub async fn expire<R: Record>(&self, oldest_kept: &str) -> Result<()> {
        let listing = self
            .store
            .list_with_delimiter(Some(&paths::system_dir(R::KIND)))
            .await?;
        let mut first_failure = None;
        for dir in listing.common_prefixes {
            if dir.filename().is_some_and(|d| d < oldest_kept) {
                let files = self.store.list(Some(&dir)).map_ok(|m| m.location).boxed();
                let deleted: object_store::Result<Vec<Path>> =
                    self.store.delete_stream(files).try_collect().await;
                if let Err(e) = deleted {
                    first_failure.get_or_insert(e);
                }
            }
        }
        match first_failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// The day bucket of a time: `yyyy-mm-dd` in UTC.
pub fn day(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// FNV-1a of `text`: a digest that stays the same across processes and releases (so an equal
/// record lands in the same file, and a stored plan fingerprint can be compared later).
pub fn stable_digest(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One executed statement, as kept in `system.query_log`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryLogEntry {
    /// A fresh id per statement.
    pub query_id: String,
    /// The session (or Flight connection) that ran it.
    pub session_id: String,
    /// The user it ran as.
    #[serde(default)]
    pub user_name: String,
    /// The statement's text, with secrets as the statement carried them removed by the caller.
    pub query_text: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it ran.
    pub duration_ms: u64,
    /// `SUCCESS` or `FAILED`.
    pub status: String,
    /// The error of a failed statement.
    pub error: Option<String>,
    /// Rows it returned (or the status row).
    pub rows_returned: u64,
    /// Partitions of the tables it scanned.
    pub partitions_total: u64,
    /// Partitions left after pruning.
    pub partitions_scanned: u64,
    /// Data files it read.
    pub files_scanned: u64,
    /// Bytes of the data files it read.
    pub bytes_scanned: u64,
    /// Times it ran again after losing a commit race to a concurrent writer.
    #[serde(default)]
    pub retries: u32,
    /// The Ballista job of a query that ran on a cluster.
    #[serde(default)]
    pub cluster_job: Option<String>,
    /// Stages of that job.
    #[serde(default)]
    pub stages: u64,
    /// Tasks of that job, over all its stages.
    #[serde(default)]
    pub tasks: u64,
    /// Bytes the job's stages passed each other through shuffles.
    #[serde(default)]
    pub shuffle_bytes: u64,
    /// How the statement arrived: `embedded`, `flight`, `postgres` or `http`.
    #[serde(default)]
    pub protocol: String,
}

impl Record for QueryLogEntry {
    const KIND: &'static str = "query_log";

    fn bucket(&self) -> String {
        day(&self.started_at)
    }

    fn id(&self) -> String {
        format!("{}-{}", self.started_at.timestamp_micros(), self.query_id)
    }
}

/// A file a load did not load, as kept in `system.load_history` (successes live in the table
/// logs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadFailure {
    /// The id of the record.
    #[serde(default = "new_id")]
    pub id: String,
    /// The target table's database.
    pub database: String,
    /// The target table's schema.
    pub schema: String,
    /// The target table.
    pub table: String,
    /// The source file.
    pub file: String,
    /// Its size.
    pub size_bytes: u64,
    /// `LOAD_FAILED`, or `LOAD_SKIPPED` for a file left out by `ON_ERROR = SKIP_FILE`.
    #[serde(default = "load_failed")]
    pub status: String,
    /// Why.
    pub error: String,
    /// When.
    pub at: DateTime<Utc>,
}

fn load_failed() -> String {
    "LOAD_FAILED".to_string()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Record for LoadFailure {
    const KIND: &'static str = "load_failures";

    fn bucket(&self) -> String {
        day(&self.at)
    }

    fn id(&self) -> String {
        self.id.clone()
    }
}

/// The rows one `COPY INTO` left out (`ON_ERROR = CONTINUE | SKIP_FILE`), as kept in
/// `system.load_errors`: one record per load, however many rows it rejected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadErrors {
    /// The load's id.
    pub load_id: String,
    /// The target table's database.
    pub database: String,
    /// The target table's schema.
    pub schema: String,
    /// The target table.
    pub table: String,
    /// `COMMITTED` (the good rows were loaded), `NOTHING_LOADED` (every file was left out) or
    /// `ABORTED` (`MAX_ERROR_RATIO` exceeded).
    pub load_status: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The rejected rows.
    pub rows: Vec<RejectedRow>,
}

impl Record for LoadErrors {
    const KIND: &'static str = "load_errors";

    fn bucket(&self) -> String {
        day(&self.at)
    }

    fn id(&self) -> String {
        self.load_id.clone()
    }
}

/// One rejected record of a load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejectedRow {
    /// The source file.
    pub file: String,
    /// Its line (CSV, JSON) or row (Parquet), from 1.
    pub line: Option<u64>,
    /// The column at fault.
    pub column: Option<String>,
    /// The offending value as text.
    pub value: Option<String>,
    /// Why it was rejected.
    pub error: String,
}

/// A lineage edge: rows of `upstream` went into `downstream` through `via` (a statement kind).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LineageEdge {
    /// `db.schema.table` read.
    pub upstream: String,
    /// `db.schema.table` written.
    pub downstream: String,
    /// The statement kind (`INSERT ... SELECT`, `MERGE`, `VIEW`, ...).
    pub via: String,
}

impl Record for LineageEdge {
    const KIND: &'static str = "lineage";

    fn bucket(&self) -> String {
        "edges".to_string()
    }

    /// Equal edges share a file, so repeating a load adds nothing.
    fn id(&self) -> String {
        let key = format!("{}\n{}\n{}", self.upstream, self.downstream, self.via);
        format!("{:016x}", stable_digest(&key))
    }
}

/// A column lineage edge: values of `source_column` in `source_table` went into
/// `target_column` of `target_table` through `via` (a statement kind), computed or copied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ColumnLineageEdge {
    /// `db.schema.table` written.
    pub target_table: String,
    /// The column written.
    pub target_column: String,
    /// `db.schema.table` read.
    pub source_table: String,
    /// The column read.
    pub source_column: String,
    /// The statement kind (`INSERT ... SELECT`, `MERGE`, `VIEW`, ...).
    pub via: String,
}

impl Record for ColumnLineageEdge {
    const KIND: &'static str = "column_lineage";

    fn bucket(&self) -> String {
        "edges".to_string()
    }

    /// Equal edges share a file, so repeating a load adds nothing.
    fn id(&self) -> String {
        let key = format!(
            "{}\n{}\n{}\n{}\n{}",
            self.target_table, self.target_column, self.source_table, self.source_column, self.via
        );
        format!("{:016x}", stable_digest(&key))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;

    fn entry(query_id: &str, started_at: DateTime<Utc>) -> QueryLogEntry {
        QueryLogEntry {
            query_id: query_id.to_string(),
            session_id: "s".to_string(),
            user_name: "u".to_string(),
            query_text: "SELECT 1".to_string(),
            started_at,
            duration_ms: 1,
            status: "SUCCESS".to_string(),
            error: None,
            rows_returned: 1,
            partitions_total: 0,
            partitions_scanned: 0,
            files_scanned: 0,
            bytes_scanned: 0,
            retries: 0,
            cluster_job: None,
            stages: 0,
            tasks: 0,
            shuffle_bytes: 0,
            protocol: "embedded".to_string(),
        }
    }

    #[tokio::test]
    async fn records_round_trip_and_expire_by_day() {
        let records = SystemRecords::new(Arc::new(InMemory::new()));
        let old = Utc::now() - chrono::Duration::days(40);
        records.put(&entry("old", old)).await.unwrap();
        records.put(&entry("new", Utc::now())).await.unwrap();
        let mut ids: Vec<String> = records
            .read_all::<QueryLogEntry>()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.query_id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["new", "old"]);

        let cutoff = day(&(Utc::now() - chrono::Duration::days(30)));
        records.expire::<QueryLogEntry>(&cutoff).await.unwrap();
        let left = records.read_all::<QueryLogEntry>().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].query_id, "new");
    }

    #[tokio::test]
    async fn equal_lineage_edges_share_one_record() {
        let records = SystemRecords::new(Arc::new(InMemory::new()));
        let edge = LineageEdge {
            upstream: "main.public.a".into(),
            downstream: "main.public.b".into(),
            via: "MERGE".into(),
        };
        records.put(&edge).await.unwrap();
        records.put(&edge.clone()).await.unwrap();
        assert_eq!(records.read_all::<LineageEdge>().await.unwrap(), [edge]);
    }
}
