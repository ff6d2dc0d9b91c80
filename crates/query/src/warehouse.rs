//! `Warehouse`: one open warehouse root shared by all sessions of a process.
//!
//! It owns the object store, a cached copy of the catalog and of table snapshots (refreshed by
//! reading only the commits that are new), the write options, and the DataFusion runtime whose
//! memory pool every session's queries share (so a memory limit holds for the process, and
//! sorts, joins and aggregations spill to disk before they exceed it). Sessions borrow it; the
//! DataFusion catalog providers read names from the cached catalog, which each statement
//! refreshes before it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use object_store::ObjectStore;
use strata_storage::records::{self, QueryLogEntry, SystemRecords};
use strata_storage::{
    Catalog, CatalogState, DataFile, DeletionVector, DeletionVectorCache, Snapshot, TableId,
    TableLog, TableMetadata, WarehouseStore, WriteOptions,
};

use crate::config::WarehouseOptions;
use crate::error::Result;
use crate::memory::{Budget, Reclaim, WarehousePool};
use crate::scan_cache::ScanCache;

/// An open warehouse; cheap to clone.
#[derive(Debug, Clone)]
pub struct Warehouse {
    inner: Arc<Inner>,
    /// A table read at a snapshot that is not (yet) its newest: see [`Warehouse::with_snapshot`].
    overlay: Option<Arc<(TableId, Snapshot)>>,
}

/// How many sampled filter selectivities a warehouse remembers (64 KB).
const SAMPLED_SELECTIVITIES: usize = 4096;

/// The table option that makes every write to a table run its data tests first.
pub(crate) const TEST_ON_LOAD: &str = "test_on_load";

/// A check a write must pass before it commits: the data-test gate of tables with
/// `test_on_load = true`. The warehouse calls it from [`Warehouse::commit`], so every write
/// path (INSERT, COPY INTO, MERGE, APPLY CHANGES, ingest) passes it; the statement layer,
/// which can run SQL, implements it and installs it with [`Warehouse::install_write_check`].
#[async_trait::async_trait]
pub(crate) trait WriteCheck: Send + Sync + std::fmt::Debug {
    /// Checks `txn` as it would commit on `base` of table `name`. Returns what else the check
    /// read (the whole table, when a test looked past the rows the write adds), which the
    /// commit adds to what the write read, or an error that stops the commit.
    async fn check(
        &self,
        warehouse: &Warehouse,
        name: &str,
        log: &TableLog,
        base: &Snapshot,
        txn: &strata_storage::Transaction,
    ) -> Result<strata_storage::Reads>;
}

#[derive(Debug)]
struct Inner {
    store: WarehouseStore,
    catalog: Catalog,
    catalog_state: RwLock<CatalogState>,
    snapshots: Mutex<HashMap<TableId, Snapshot>>,
    /// Tables being created: written before the catalog names them.
    creating: Mutex<std::collections::HashSet<TableId>>,
    options: WarehouseOptions,
    runtime: Arc<RuntimeEnv>,
    scan_cache: Arc<ScanCache>,
    deletion_vectors: DeletionVectorCache,
    /// Sampled selectivities of scan filters, by data files and filter (files never change).
    sampled_selectivities: Mutex<HashMap<u64, f64>>,
    write_check: std::sync::OnceLock<Arc<dyn WriteCheck>>,
}

impl Warehouse {
    /// Opens (or creates) the warehouse at `location`: a path, `file://...` or `memory://`.
    pub async fn open(location: &str) -> Result<Self> {
        Self::open_with(location, WarehouseOptions::default()).await
    }

    /// Opens the warehouse with explicit options.
    pub async fn open_with(location: &str, options: WarehouseOptions) -> Result<Self> {
        Self::open_store(WarehouseStore::open(location)?, options).await
    }

    /// Opens the warehouse on an already opened store (an embedding application's own
    /// `ObjectStore`, or a test's fault-injecting one).
    pub async fn open_store(store: WarehouseStore, options: WarehouseOptions) -> Result<Self> {
        crate::config::check_settings(&options.settings)?;
        let catalog = Catalog::new(store.object_store());
        let state = catalog.latest().await?;
        let budget = Budget::split(options.memory_limit, options.scan_cache_bytes);
        let pool: Arc<dyn MemoryPool> = Arc::new(WarehousePool::new(budget.pool));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::clone(&pool))
            .with_cache_manager(
                CacheManagerConfig::default().with_metadata_cache_limit(budget.file_metadata),
            )
            .build_arc()?;
        let scan_cache = Arc::new(ScanCache::new(budget.scan_cache));
        if budget.pool.is_some() {
            let reclaimer: Arc<dyn Reclaim> = Arc::clone(&scan_cache) as Arc<dyn Reclaim>;
            if let Some(reservation) =
                WarehousePool::register_reclaimer(&pool, Arc::downgrade(&reclaimer))
            {
                scan_cache.reserve_in(reservation);
            }
        }
        let warehouse = Self {
            inner: Arc::new(Inner {
                store,
                catalog,
                catalog_state: RwLock::new(state),
                snapshots: Mutex::new(HashMap::new()),
                creating: Mutex::new(Default::default()),
                scan_cache,
                deletion_vectors: DeletionVectorCache::new(budget.deletion_vectors),
                sampled_selectivities: Mutex::default(),
                options,
                runtime,
                write_check: std::sync::OnceLock::new(),
            }),
            overlay: None,
        };
        warehouse.expire_query_log().await;
        Ok(warehouse)
    }

    /// Whether `location` holds a warehouse already; nothing is created.
    pub async fn exists(location: &str) -> Result<bool> {
        Ok(strata_storage::WarehouseStore::exists(location).await?)
    }

    /// The warehouse location as a URL.
    pub fn location(&self) -> &str {
        self.inner.store.location()
    }

    /// The warehouse root's directory, when it is on local disk.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.inner.store.local_root()
    }

    /// Refuses a location outside the warehouse that overlaps it (`what` says what it would
    /// be used for): an unload there could overwrite or delete the warehouse's files, an
    /// external table or a stage there would read its secrets.
    pub(crate) async fn refuse_overlap(
        &self,
        location: &strata_storage::Location,
        what: &str,
    ) -> Result<()> {
        let target = location.url_of(&location.prefix);
        let overlaps = match self.local_root() {
            Some(root) if location.store_url == "file://" => {
                let root = root.to_path_buf();
                let target = std::path::PathBuf::from(&target);
                tokio::task::spawn_blocking(move || {
                    let (root, target) = (resolved(&root), resolved(&target));
                    target.starts_with(&root) || root.starts_with(&target)
                })
                .await
                .unwrap_or(true)
            }
            Some(_) => false,
            None => {
                let url = |u: &str| {
                    u.replacen("s3a://", "s3://", 1)
                        .trim_end_matches('/')
                        .to_string()
                };
                let (root, target) = (url(self.location()), url(&target));
                let (root, target) = (root.as_str(), target.as_str());
                let inside = |outer: &str, inner: &str| {
                    inner == outer || inner.starts_with(&format!("{outer}/"))
                };
                inside(root, target) || inside(target, root)
            }
        };
        if overlaps {
            return Err(crate::error::Error::PermissionDenied(format!(
                "{what} may not use '{target}': it overlaps the warehouse ({})",
                self.location()
            )));
        }
        Ok(())
    }

    /// The S3 settings (object_store's names) of the secret `name`: its keys, endpoint and
    /// region. Never shown or logged.
    pub(crate) async fn secret_settings(&self, name: &str) -> Result<Vec<(String, String)>> {
        let secret = strata_storage::Secrets::new(self.object_store())
            .get(name)
            .await?;
        Ok(secret.s3_settings())
    }

    /// The store under the warehouse root.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.inner.store.object_store()
    }

    /// The cache of decoded columns the warehouse's scans share.
    pub fn scan_cache(&self) -> Arc<ScanCache> {
        Arc::clone(&self.inner.scan_cache)
    }

    /// The selectivity sampled for `key` (a hash of data files and a filter), if remembered.
    pub(crate) fn sampled_selectivity(&self, key: u64) -> Option<f64> {
        let memo = self.inner.sampled_selectivities.lock();
        memo.unwrap_or_else(|e| e.into_inner()).get(&key).copied()
    }

    /// Remembers the selectivity sampled for `key`, forgetting all others once
    /// [`SAMPLED_SELECTIVITIES`] are held.
    pub(crate) fn remember_sampled_selectivity(&self, key: u64, selectivity: f64) {
        let mut memo = self
            .inner
            .sampled_selectivities
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if memo.len() >= SAMPLED_SELECTIVITIES {
            memo.clear();
        }
        memo.insert(key, selectivity);
    }

    /// The rows of `file` its deletion vector marks deleted, `None` when it has none.
    pub(crate) async fn deleted_rows(
        &self,
        file: &DataFile,
    ) -> Result<Option<Arc<roaring::RoaringBitmap>>> {
        match &file.deletion_vector {
            Some(vector) => Ok(Some(self.vector_rows(vector, &file.path, file.rows).await?)),
            None => Ok(None),
        }
    }

    /// The rows `vector` marks deleted in the data file `path` of `rows` rows.
    pub(crate) async fn vector_rows(
        &self,
        vector: &DeletionVector,
        path: &str,
        rows: u64,
    ) -> Result<Arc<roaring::RoaringBitmap>> {
        Ok(self
            .inner
            .deletion_vectors
            .deleted_rows(&self.object_store(), vector, path, rows)
            .await?)
    }

    /// Options of this warehouse.
    pub fn options(&self) -> &WarehouseOptions {
        &self.inner.options
    }

    /// The DataFusion runtime (memory pool, spill files, object stores) sessions share.
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        Arc::clone(&self.inner.runtime)
    }

    /// How data files are written: the warehouse's options under a session's caps
    /// (`strata.max_partitions_per_statement`).
    pub(crate) fn write_options(&self, session: &crate::config::StrataOptions) -> WriteOptions {
        WriteOptions {
            max_new_partitions: session.max_partitions_per_statement,
            ..self.inner.options.write.clone()
        }
    }

    /// The catalog as of the last refresh.
    pub(crate) fn catalog(&self) -> CatalogState {
        self.inner
            .catalog_state
            .read()
            .expect("catalog lock is never poisoned")
            .clone()
    }

    /// Reads catalog versions committed since the last refresh (by any process). Statements
    /// do this themselves; call it before listing names through the DataFusion catalog.
    pub async fn refresh_catalog(&self) -> Result<CatalogState> {
        let fresh = self.inner.catalog.refresh(self.catalog()).await?;
        *self
            .inner
            .catalog_state
            .write()
            .expect("catalog lock is never poisoned") = fresh.clone();
        Ok(fresh)
    }

    /// Applies a catalog change atomically (see [`Catalog::update`]).
    pub(crate) async fn update_catalog<F>(&self, change: F) -> Result<CatalogState>
    where
        F: FnMut(&mut CatalogState) -> strata_storage::Result<()>,
    {
        let ticket = crate::commit_gate::begin_commit()?;
        let state = match self.inner.catalog.update(change).await {
            Ok(state) => state,
            Err(e) => {
                if wrote_nothing(&e) {
                    ticket.wrote_nothing();
                }
                return Err(e.into());
            }
        };
        *self
            .inner
            .catalog_state
            .write()
            .expect("catalog lock is never poisoned") = state.clone();
        Ok(state)
    }

    /// The declared constraints of every table: (`[database, schema, table]`, constraints), for
    /// tables that have any.
    pub async fn constraints(&self) -> Result<Vec<([String; 3], Vec<strata_storage::Constraint>)>> {
        let catalog = self.refresh_catalog().await?;
        let mut out = Vec::new();
        for (db, d) in &catalog.databases {
            for (schema, s) in &d.schemas {
                for (table, t) in &s.tables {
                    let log = self.table_log(&t.id, table);
                    let snapshot = self.snapshot(&log).await?;
                    if !snapshot.metadata.constraints.is_empty() {
                        out.push((
                            [db.clone(), schema.clone(), table.clone()],
                            snapshot.metadata.constraints.clone(),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Creates table `database.schema.name`: writes its log, and through `fill` its data, under a
    /// fresh id, then enters it in the catalog (`replace` swaps out a table of that name). If
    /// anything fails, what was written is deleted: no half-made table is left behind. Returns
    /// what `fill` returns.
    pub(crate) async fn create_table<T>(
        &self,
        database: &str,
        schema: &str,
        name: &str,
        metadata: TableMetadata,
        replace: bool,
        fill: impl AsyncFnOnce(&TableLog, Snapshot) -> Result<(T, Snapshot)>,
    ) -> Result<T> {
        let id = TableId::random();
        let log = self.table_log(&id, &format!("{database}.{schema}.{name}"));
        self.creating().insert(id.clone());
        let made = async {
            let snapshot = log.create(metadata, "CREATE TABLE").await?;
            let (out, snapshot) = fill(&log, snapshot).await?;
            self.remember(&id, &snapshot);
            self.register_table(database, schema, name, id.clone(), replace)
                .await?;
            Ok(out)
        }
        .await;
        self.creating().remove(&id);
        if made.is_err() {
            // Delete only if the catalog surely does not hold the table: a catalog commit whose
            // answer was lost may have landed. Otherwise VACUUM collects the files later.
            let registered = match self.refresh_catalog().await {
                Ok(catalog) => catalog.table_ids().any(|t| t == &id),
                Err(_) => true,
            };
            if !registered {
                let store = self.object_store();
                if let Err(e) = strata_storage::vacuum::delete_table_files(&store, &id).await {
                    tracing::warn!(table = %id.0, error = %e, "could not delete a failed table's files");
                }
            }
        }
        made
    }

    /// Enters the table whose log is `id` in the catalog as `database.schema.name`, in one
    /// catalog commit; `replace` swaps out a table of that name, otherwise one fails the call.
    pub(crate) async fn register_table(
        &self,
        database: &str,
        schema: &str,
        name: &str,
        id: TableId,
        replace: bool,
    ) -> Result<()> {
        let (d, s, t) = (database.to_string(), schema.to_string(), name.to_string());
        self.update_catalog(move |c| {
            let entry = c.schema_mut(&d, &s)?;
            if let Some(kind @ ("view" | "external table")) = entry.kind_of(&t) {
                return Err(strata_storage::Error::NameTaken {
                    name: format!("{d}.{s}.{t}"),
                    kind,
                });
            }
            let tables = &mut entry.tables;
            if tables.contains_key(&t) && !replace {
                return Err(strata_storage::Error::TableExists {
                    name: format!("{d}.{s}.{t}"),
                });
            }
            tables.insert(
                t.clone(),
                strata_storage::TableEntry {
                    id: id.clone(),
                    created_at: chrono::Utc::now(),
                },
            );
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The system records (query log, load history, lineage) of this warehouse.
    pub(crate) fn records(&self) -> SystemRecords {
        SystemRecords::new(self.object_store())
    }

    /// Deletes query-log days older than the retention period; failure is logged, not fatal.
    async fn expire_query_log(&self) {
        let days = i64::from(self.inner.options.query_log_retention_days);
        let oldest_kept = records::day(&(chrono::Utc::now() - chrono::Duration::days(days)));
        if let Err(e) = self.records().expire::<QueryLogEntry>(&oldest_kept).await {
            tracing::warn!(error = %e, "expiring the query log failed");
        }
        // Data test results are kept as long as the statements that ran them.
        let expired = self
            .records()
            .expire::<strata_storage::DataTestResult>(&oldest_kept)
            .await;
        if let Err(e) = expired {
            tracing::warn!(error = %e, "expiring data test results failed");
        }
        // So are task runs, the leases of their slots and alert checks.
        let records = self.records();
        let expired = [
            records
                .expire::<strata_storage::TaskRun>(&oldest_kept)
                .await,
            records
                .expire::<strata_storage::TaskLease>(&oldest_kept)
                .await,
            records
                .expire::<strata_storage::AlertRun>(&oldest_kept)
                .await,
        ];
        for e in expired.into_iter().filter_map(|r| r.err()) {
            tracing::warn!(error = %e, "expiring task and alert records failed");
        }
    }

    /// The log of table `id`.
    pub(crate) fn table_log(&self, id: &TableId, name: &str) -> TableLog {
        TableLog::new(self.object_store(), id.clone(), name)
    }

    /// This warehouse with table `id` read at `snapshot` instead of its newest version, by
    /// every session opened on the returned handle: how a write check's queries see the rows
    /// a write is about to commit.
    pub(crate) fn with_snapshot(&self, id: &TableId, snapshot: Snapshot) -> Warehouse {
        Warehouse {
            inner: Arc::clone(&self.inner),
            overlay: Some(Arc::new((id.clone(), snapshot))),
        }
    }

    /// Installs the check writes pass before they commit (once per warehouse; later calls
    /// keep the first).
    pub(crate) fn install_write_check(&self, check: impl FnOnce() -> Arc<dyn WriteCheck>) {
        self.inner.write_check.get_or_init(check);
    }

    /// The newest snapshot of a table, reading only commits newer than the cached one.
    pub(crate) async fn snapshot(&self, log: &TableLog) -> Result<Snapshot> {
        if let Some((id, snapshot)) = self.overlay.as_deref()
            && id == log.id()
        {
            return Ok(snapshot.clone());
        }
        let cached = self
            .inner
            .snapshots
            .lock()
            .expect("snapshot cache lock is never poisoned")
            .get(log.id())
            .cloned();
        let snapshot = match cached {
            Some(s) => log.refresh(s).await?,
            None => log.latest().await?,
        };
        self.remember(log.id(), &snapshot);
        Ok(snapshot)
    }

    fn creating(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<TableId>> {
        self.inner
            .creating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Commits `txn` to table `name` on top of `base` and caches the new snapshot. Fails if
    /// the catalog no longer names the table afterwards (a concurrent `DROP TABLE` or
    /// `CREATE OR REPLACE` won): the commit landed in a log no table points to, so the
    /// statement must not report success. The error is a conflict, so the statement runs
    /// again, against what the name is now.
    pub(crate) async fn commit(
        &self,
        name: &str,
        log: &TableLog,
        base: &Snapshot,
        txn: &strata_storage::Transaction,
    ) -> Result<Snapshot> {
        let checked;
        let txn = match self.inner.write_check.get() {
            Some(check) if needs_check(&base.metadata, txn) => {
                let reads = check.check(self, name, log, base, txn).await?;
                let mut with_reads = txn.clone();
                with_reads.reads = std::mem::take(&mut with_reads.reads).union(reads);
                checked = with_reads;
                &checked
            }
            _ => txn,
        };
        let ticket = crate::commit_gate::begin_commit()?;
        let snapshot = match log.commit(base, txn).await {
            Ok(snapshot) => {
                crate::telemetry::commit(true);
                snapshot
            }
            Err(e) => {
                if matches!(e, strata_storage::Error::CommitConflict { .. }) {
                    crate::telemetry::commit(false);
                }
                if wrote_nothing(&e) {
                    ticket.wrote_nothing();
                }
                return Err(e.into());
            }
        };
        self.remember(log.id(), &snapshot);
        if self.creating().contains(log.id()) {
            return Ok(snapshot);
        }
        // The commit has landed: a failure to read the catalog now must not report it failed.
        let catalog = match self.refresh_catalog().await {
            Ok(catalog) => catalog,
            Err(e) => {
                tracing::warn!(table = %name, error = %e, "committed; could not check the catalog");
                return Ok(snapshot);
            }
        };
        if catalog.table_ids().any(|id| id == log.id()) {
            return Ok(snapshot);
        }
        Err(strata_storage::Error::CommitConflict {
            table: name.to_string(),
            version: snapshot.version,
            reason: "a concurrent statement dropped or replaced the table, so what this \
                     statement wrote is in no table"
                .to_string(),
        }
        .into())
    }

    /// Caches a snapshot this process just committed or read.
    pub(crate) fn remember(&self, id: &TableId, snapshot: &Snapshot) {
        let mut cache = self
            .inner
            .snapshots
            .lock()
            .expect("snapshot cache lock is never poisoned");
        let newer = cache.get(id).is_none_or(|s| s.version < snapshot.version);
        if newer {
            cache.insert(id.clone(), snapshot.clone());
        }
    }
}

/// Whether a failed commit surely wrote nothing: it lost a race, or refused the change before
/// writing. A failed put may have landed (its answer lost), so a storage fault is not this.
/// Whether a write to a table with `metadata` must pass the write check: it changes rows
/// (compaction only moves them), and the table has tests and `test_on_load = true`.
fn needs_check(metadata: &TableMetadata, txn: &strata_storage::Transaction) -> bool {
    txn.changes_rows()
        && !txn.rewrite_only
        && !metadata.tests.is_empty()
        && metadata
            .properties
            .get(TEST_ON_LOAD)
            .is_some_and(|v| v == "true")
}

fn wrote_nothing(e: &strata_storage::Error) -> bool {
    !matches!(
        e,
        strata_storage::Error::ObjectStore { .. }
            | strata_storage::Error::Io { .. }
            | strata_storage::Error::Panicked { .. }
    )
}

/// `path` with its links resolved, as far as it exists (the rest appended as written).
fn resolved(path: &std::path::Path) -> std::path::PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.into_iter().rev().fold(real, |p, part| p.join(part));
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::error::DataFusionError;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::Warehouse;
    use crate::IngestMode;
    use crate::config::parse_byte_size;

    /// Files under the warehouse's `tables/` directory.
    fn table_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![root.join("tables")];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn a_failed_create_leaves_no_table_and_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();

        // CREATE TABLE AS SELECT failing half-way through its query.
        let e = session
            .sql("CREATE TABLE t AS SELECT 10 / (value - 50000) AS x FROM generate_series(1, 100000)")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Divide by zero"), "{e}");

        // Ingest whose upload breaks off after a first batch.
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let good = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..1000))],
        )
        .unwrap();
        let upload = futures::stream::iter(vec![
            Ok(good),
            Err(DataFusionError::Execution("client went away".into())),
        ]);
        let data = Box::pin(RecordBatchStreamAdapter::new(schema, upload));
        let name = [
            "main".to_string(),
            "public".to_string(),
            "events".to_string(),
        ];
        let e = session
            .ingest(&name, IngestMode::Create, data)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("client went away"), "{e}");

        assert!(
            table_files(dir.path()).is_empty(),
            "{:?}",
            table_files(dir.path())
        );
        let e = session.sql("SELECT * FROM events").await.unwrap_err();
        assert!(e.to_string().contains("events"), "{e}");
        let e = session.sql("SELECT * FROM t").await.unwrap_err();
        assert!(e.to_string().contains("t"), "{e}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_byte_size("512 MB"), Ok(512 << 20));
        assert_eq!(parse_byte_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert!(parse_byte_size("lots").is_err());
        assert!(
            parse_byte_size("3 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
    }
}
