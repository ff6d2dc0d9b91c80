//! `VACUUM`: deleting files no snapshot of interest references.
//!
//! Orphans come from statements that failed or were killed after uploading data files, from
//! files removed by later commits (`DROP PARTITION`, `UPDATE`, replaced tables) and from
//! dropped tables.
//!
//! A file that a commit removed is deleted only when that commit is older than the retention
//! (Delta's `deletionTimestamp`), never by the file's own age: time travel to any version
//! inside the retention still finds every file. A file no commit ever named (the upload of a
//! statement that failed, or of one still running) is deleted when it is older than the
//! retention, unless the statement that uploaded it is still running: its marker
//! (`_inflight/<id>`, see [`crate::writer::Uploads`]) is there. A writer also checks that its
//! files are still there before it commits ([`crate::TableLog::commit`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::catalog::CatalogState;
use crate::error::Result;
use crate::id::TableId;
use crate::log::{Action, TableLog};
use crate::store::paths;

/// What a vacuum removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VacuumReport {
    /// Data files deleted.
    pub files_deleted: u64,
    /// Their bytes.
    pub bytes_deleted: u64,
}

/// Deletes the data files of `table` that no version inside `retention` reads.
pub async fn vacuum_table(
    store: &Arc<dyn ObjectStore>,
    log: &TableLog,
    retention: Duration,
) -> Result<VacuumReport> {
    crate::faults::commit_barrier().await;
    let now = Utc::now();
    let cutoff = now - retention;
    // Order matters: data files, then markers, then the log. A file listed here was uploaded
    // by a statement whose marker was written before it, so that statement is either still
    // running (its marker is listed next) or has ended (its commit, if any, is in the log read
    // after). Either way the file is not taken from a commit.
    let files: Vec<ObjectMeta> = store
        .list(Some(&paths::table_data_dir(log.id())))
        .try_collect()
        .await?;
    let running = running_uploads(store, log, now).await?;
    // Replay the log: the files live now, those removed by a commit inside the retention
    // (versions a reader may still travel to read them), and every file ever named.
    let mut live: HashSet<String> = HashSet::new();
    let mut keep: HashSet<String> = HashSet::new();
    let mut named: HashSet<String> = HashSet::new();
    // The deletion vector each live data file has, by the data file's path.
    let mut vectors: HashMap<String, String> = HashMap::new();
    for commit in log.history().await? {
        for action in &commit.actions {
            match action {
                Action::Add(f) => {
                    named.insert(f.path.clone());
                    live.insert(f.path.clone());
                    if let Some(dv) = &f.deletion_vector {
                        named.insert(dv.path.clone());
                        live.insert(dv.path.clone());
                        vectors.insert(f.path.clone(), dv.path.clone());
                    }
                }
                Action::Remove { path, .. } => {
                    let vector = vectors.remove(path);
                    for gone in std::iter::once(path).chain(vector.as_ref()) {
                        live.remove(gone);
                        if commit.committed_at > cutoff {
                            keep.insert(gone.clone());
                        }
                    }
                }
                Action::Metadata(_)
                | Action::Load(_)
                | Action::Fence(_)
                | Action::Fenced(_)
                | Action::Channel(_) => {}
            }
        }
    }
    keep.extend(live);
    let uploaded_by_running = |meta: &ObjectMeta| {
        let name = meta.location.filename().unwrap_or_default();
        name.split_once('-')
            .is_some_and(|(uploads, _)| running.contains(uploads))
    };
    let candidates: Vec<(Path, u64)> = files
        .into_iter()
        .filter(|meta| {
            let path = meta.location.as_ref();
            !keep.contains(path)
                && (named.contains(path)
                    || (meta.last_modified < cutoff && !uploaded_by_running(meta)))
        })
        .map(|meta| (meta.location, meta.size))
        .collect();
    delete(store, candidates).await
}

/// A marker older than this is a killed statement's: its uploads are orphans like any other.
pub const INFLIGHT_EXPIRY: Duration = Duration::days(1);

/// The process that wrote an in-flight marker: `host` and `pid`, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Writer {
    host: String,
    pid: u32,
}

impl Writer {
    pub(crate) fn this_process() -> Self {
        Self {
            host: host_name(),
            pid: std::process::id(),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        Some(Self {
            host: lines.next()?.to_string(),
            pid: lines.next()?.parse().ok()?,
        })
    }

    /// False only when the process surely ended: it ran on this host and is gone.
    fn may_be_running(&self) -> bool {
        self.host != host_name() || std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.host, self.pid)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The ids of the statements uploading to the table now. Markers of ended processes, and
/// markers older than [`INFLIGHT_EXPIRY`], are removed.
async fn running_uploads(
    store: &Arc<dyn ObjectStore>,
    log: &TableLog,
    now: chrono::DateTime<Utc>,
) -> Result<HashSet<String>> {
    let markers: Vec<ObjectMeta> = store
        .list(Some(&paths::inflight_dir(log.id())))
        .try_collect()
        .await?;
    let mut running = HashSet::new();
    let mut ended = Vec::new();
    for marker in markers {
        let writer = match store.get(&marker.location).await {
            Ok(body) => Writer::parse(&String::from_utf8_lossy(&body.bytes().await?)),
            // Finished meanwhile.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let alive = writer.is_none_or(|w| w.may_be_running());
        if alive && marker.last_modified > now - INFLIGHT_EXPIRY {
            if let Some(id) = marker.location.filename() {
                running.insert(id.to_string());
            }
        } else {
            ended.push((marker.location, 0));
        }
    }
    delete(store, ended).await?;
    Ok(running)
}

/// Deletes the directories of tables no longer in the catalog, older than `retention`.
pub async fn vacuum_dropped_tables(
    store: &Arc<dyn ObjectStore>,
    catalog: &CatalogState,
    retention: Duration,
) -> Result<VacuumReport> {
    let known: HashSet<&TableId> = catalog.table_ids().collect();
    let listing = store
        .list_with_delimiter(Some(&Path::from("tables")))
        .await?;
    let cutoff = Utc::now() - retention;
    let mut report = VacuumReport::default();
    for dir in listing.common_prefixes {
        let Some(id) = dir.filename().map(|s| TableId(s.to_string())) else {
            continue;
        };
        if known.contains(&id) {
            continue;
        }
        let objects: Vec<_> = store.list(Some(&dir)).try_collect().await?;
        if objects.iter().any(|m| m.last_modified > cutoff) {
            continue;
        }
        let r = delete(
            store,
            objects.into_iter().map(|m| (m.location, m.size)).collect(),
        )
        .await?;
        report.files_deleted += r.files_deleted;
        report.bytes_deleted += r.bytes_deleted;
    }
    Ok(report)
}

/// Deletes every file of table `id` at once: for a table that was being created and never
/// entered the catalog.
pub async fn delete_table_files(
    store: &Arc<dyn ObjectStore>,
    id: &TableId,
) -> Result<VacuumReport> {
    let objects: Vec<_> = store
        .list(Some(&crate::store::paths::table_dir(id)))
        .try_collect()
        .await?;
    delete(
        store,
        objects.into_iter().map(|m| (m.location, m.size)).collect(),
    )
    .await
}

async fn delete(store: &Arc<dyn ObjectStore>, files: Vec<(Path, u64)>) -> Result<VacuumReport> {
    let report = VacuumReport {
        files_deleted: files.len() as u64,
        bytes_deleted: files.iter().map(|(_, s)| s).sum(),
    };
    let locations = futures::stream::iter(files.into_iter().map(|(p, _)| Ok(p))).boxed();
    store
        .delete_stream(locations)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration as StdDuration, SystemTime};

    use arrow::datatypes::DataType;
    use object_store::local::LocalFileSystem;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;
    use crate::log::{ColumnDef, DataFile, TableMetadata, Transaction};

    fn metadata() -> TableMetadata {
        TableMetadata {
            columns: vec![ColumnDef {
                name: "x".into(),
                data_type: DataType::Int64,
                nullable: true,
                sql_type: None,
                field_id: 0,
                default: None,
                initial_default: None,
                comment: None,
                tags: Default::default(),
            }],
            partitioning: None,
            properties: BTreeMap::new(),
            constraints: Vec::new(),
            last_field_id: 0,
            name_mapping: Default::default(),
            indexes: Vec::new(),
            cluster_by: Vec::new(),
            tests: Vec::new(),
            tags: Default::default(),
        }
    }

    /// A data file written long ago and removed by a commit a moment ago stays: a reader may
    /// travel to the version before that commit. Retention counts from the removing commit.
    #[tokio::test]
    async fn retention_counts_from_the_commit_that_removed_a_file_not_from_its_age() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let id = TableId::random();
        let log = TableLog::new(Arc::clone(&store), id.clone(), "t");
        let v0 = log.create(metadata(), "CREATE TABLE").await.unwrap();
        let path = format!("{}/old.parquet", paths::table_data_dir(&id));
        store
            .put(&Path::from(path.as_str()), PutPayload::from_static(b"rows"))
            .await
            .unwrap();
        let ten_days_ago = SystemTime::now() - StdDuration::from_secs(10 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(&path))
            .unwrap()
            .set_modified(ten_days_ago)
            .unwrap();
        let file = DataFile {
            path: path.clone(),
            partition: String::new(),
            rows: 1,
            size_bytes: 4,
            stats: BTreeMap::new(),
            field_ids: Default::default(),
            deletion_vector: None,
        };
        let v1 = log
            .commit(
                &v0,
                &Transaction {
                    add: vec![file.clone()],
                    ..Transaction::new("INSERT")
                },
            )
            .await
            .unwrap();
        log.commit(
            &v1,
            &Transaction {
                remove: vec![file],
                ..Transaction::new("DELETE")
            },
        )
        .await
        .unwrap();
        let kept = vacuum_table(&store, &log, Duration::days(7)).await.unwrap();
        assert_eq!(kept.files_deleted, 0);
        assert!(store.head(&Path::from(path.as_str())).await.is_ok());
        // Once the removing commit is older than the retention, the file goes.
        let gone = vacuum_table(&store, &log, Duration::zero()).await.unwrap();
        assert_eq!(gone.files_deleted, 1);
    }

    /// A writer whose upload VACUUM deleted before its commit fails, and commits nothing.
    #[tokio::test]
    async fn a_commit_naming_a_vacuumed_file_fails_and_commits_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let id = TableId::random();
        let log = TableLog::new(Arc::clone(&store), id.clone(), "t");
        let v0 = log.create(metadata(), "CREATE TABLE").await.unwrap();
        let path = format!("{}/upload.parquet", paths::table_data_dir(&id));
        store
            .put(&Path::from(path.as_str()), PutPayload::from_static(b"rows"))
            .await
            .unwrap();
        let report = vacuum_table(&store, &log, Duration::zero()).await.unwrap();
        assert_eq!(
            report.files_deleted, 1,
            "an orphan older than the retention"
        );
        let txn = Transaction {
            add: vec![DataFile {
                path,
                partition: String::new(),
                rows: 1,
                size_bytes: 4,
                stats: BTreeMap::new(),
                field_ids: Default::default(),
                deletion_vector: None,
            }],
            ..Transaction::new("INSERT")
        };
        let err = log.commit(&v0, &txn).await.unwrap_err();
        assert!(
            err.to_string().contains("was deleted before its commit"),
            "{err}"
        );
        assert_eq!(log.latest().await.unwrap().version, v0.version);
    }

    /// A deletion vector lives as long as the version of its data file that names it: a newer
    /// vector retires it (kept for time travel within the retention), and the removal of its
    /// data file retires both.
    #[tokio::test]
    async fn deletion_vectors_are_kept_while_a_version_names_them() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let id = TableId::random();
        let log = TableLog::new(Arc::clone(&store), id.clone(), "t");
        let v0 = log.create(metadata(), "CREATE TABLE").await.unwrap();
        let path = format!("{}/f.parquet", paths::table_data_dir(&id));
        store
            .put(&Path::from(path.as_str()), PutPayload::from_static(b"rows"))
            .await
            .unwrap();
        let file = DataFile {
            path: path.clone(),
            partition: String::new(),
            rows: 10,
            size_bytes: 4,
            stats: BTreeMap::new(),
            field_ids: Default::default(),
            deletion_vector: None,
        };
        let mut snapshot = log
            .commit(
                &v0,
                &Transaction {
                    add: vec![file.clone()],
                    ..Transaction::new("INSERT")
                },
            )
            .await
            .unwrap();
        let mut vectors = Vec::new();
        for rows in [vec![1u32], vec![1, 2]] {
            let dv_path = Path::from(format!(
                "{}/f-{}.dv",
                paths::table_data_dir(&id),
                rows.len()
            ));
            let dv =
                crate::DeletionVector::write(&store, dv_path.clone(), rows.into_iter().collect())
                    .await
                    .unwrap();
            let current = snapshot.files[&path].clone();
            let marked = DataFile {
                deletion_vector: Some(dv),
                ..current.clone()
            };
            snapshot = log
                .commit(
                    &snapshot,
                    &Transaction {
                        remove: vec![current],
                        add: vec![marked],
                        ..Transaction::new("DELETE")
                    },
                )
                .await
                .unwrap();
            vectors.push(dv_path);
        }
        assert_eq!(snapshot.files[&path].live_rows(), 8);
        let kept = vacuum_table(&store, &log, Duration::days(7)).await.unwrap();
        assert_eq!(
            kept.files_deleted, 0,
            "the first vector is still in retention"
        );
        let retired = vacuum_table(&store, &log, Duration::zero()).await.unwrap();
        assert_eq!(retired.files_deleted, 1);
        assert!(
            store.head(&vectors[0]).await.is_err(),
            "the retired vector went"
        );
        assert!(store.head(&vectors[1]).await.is_ok(), "the live one stays");
        assert!(store.head(&Path::from(path.as_str())).await.is_ok());
        log.commit(
            &snapshot,
            &Transaction {
                remove: vec![snapshot.files[&path].clone()],
                ..Transaction::new("DELETE")
            },
        )
        .await
        .unwrap();
        let gone = vacuum_table(&store, &log, Duration::zero()).await.unwrap();
        assert_eq!(gone.files_deleted, 2, "the data file and its vector");
    }
}
