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

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use object_store::ObjectStore;
use strata_storage::{
    Catalog, CatalogState, Snapshot, TableId, TableLog, TableMetadata, WarehouseStore, WriteOptions,
};

use crate::error::Result;
use crate::parser::{AsOf, split_time_travel};
use crate::scan_cache::ScanCache;
use crate::session::Session;
use crate::table::StrataTable;

/// Settings of an open warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseOptions {
    /// How data files are written.
    pub write: WriteOptions,
    /// Days of `system.query_log` kept; older days are deleted when the warehouse opens.
    pub query_log_retention_days: u32,
    /// Memory all running queries may hold together, in bytes; `None` for no limit. Operators
    /// that can spill (sort, hash aggregate, sort-merge join) spill to the OS temp directory
    /// when their fair share is used up.
    pub memory_limit: Option<usize>,
    /// How many partitions (and so threads) a query runs on; `None` for one per CPU core.
    pub target_partitions: Option<usize>,
    /// Settings every session starts with, as if it ran `SET name = value` first
    /// (e.g. `datafusion.execution.batch_size`, `strata.late_materialization`).
    pub settings: Vec<(String, String)>,
    /// Memory for decoded columns of hot data files, in bytes, shared by all sessions and
    /// outside `memory_limit` (see [`crate::scan_cache`]); 0 turns the cache off.
    pub scan_cache_bytes: usize,
}

/// The default budget of the scan cache: a quarter of the machine's memory (as Postgres
/// advises for its buffer cache), or 1 GiB where the memory cannot be read.
pub fn default_scan_cache_bytes() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
    total.map_or(1 << 30, |bytes| bytes / 4)
}

impl Default for WarehouseOptions {
    fn default() -> Self {
        Self {
            write: WriteOptions::default(),
            query_log_retention_days: 30,
            memory_limit: None,
            target_partitions: None,
            settings: Vec::new(),
            scan_cache_bytes: default_scan_cache_bytes(),
        }
    }
}

/// Parses a byte size such as `2GiB`, `512 MiB`, `1.5GB` or `1048576` (binary and decimal
/// units are both read as powers of 1024, as memory limits usually mean).
pub fn parse_byte_size(text: &str) -> std::result::Result<usize, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 2GiB or 512MiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit '{other}' in '{text}'")),
    };
    Ok((number * scale) as usize)
}

/// An open warehouse; cheap to clone.
#[derive(Debug, Clone)]
pub struct Warehouse {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: WarehouseStore,
    catalog: Catalog,
    catalog_state: RwLock<CatalogState>,
    snapshots: Mutex<HashMap<TableId, Snapshot>>,
    options: WarehouseOptions,
    runtime: Arc<RuntimeEnv>,
    scan_cache: Arc<ScanCache>,
}

impl Warehouse {
    /// Opens (or creates) the warehouse at `location`: a path, `file://...` or `memory://`.
    pub async fn open(location: &str) -> Result<Self> {
        Self::open_with(location, WarehouseOptions::default()).await
    }

    /// Opens the warehouse with explicit options.
    pub async fn open_with(location: &str, options: WarehouseOptions) -> Result<Self> {
        crate::session::check_settings(&options.settings)?;
        let store = WarehouseStore::open(location)?;
        let catalog = Catalog::new(store.object_store());
        let state = catalog.latest().await?;
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = options.memory_limit {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        let runtime = runtime.build_arc()?;
        let warehouse = Self {
            inner: Arc::new(Inner {
                store,
                catalog,
                catalog_state: RwLock::new(state),
                snapshots: Mutex::new(HashMap::new()),
                scan_cache: Arc::new(ScanCache::new(options.scan_cache_bytes)),
                options,
                runtime,
            }),
        };
        crate::system::expire_query_log(&warehouse).await;
        Ok(warehouse)
    }

    /// A new SQL session on this warehouse (database `main`, schema `public`).
    pub fn session(&self) -> Session {
        Session::new(self.clone())
    }

    /// The warehouse location as a URL.
    pub fn location(&self) -> &str {
        self.inner.store.location()
    }

    /// The store under the warehouse root.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.inner.store.object_store()
    }

    /// The cache of decoded columns the warehouse's scans share.
    pub fn scan_cache(&self) -> Arc<ScanCache> {
        Arc::clone(&self.inner.scan_cache)
    }

    /// Options of this warehouse.
    pub fn options(&self) -> &WarehouseOptions {
        &self.inner.options
    }

    /// The DataFusion runtime (memory pool, spill files, object stores) sessions share.
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        Arc::clone(&self.inner.runtime)
    }

    pub(crate) fn write_options(&self) -> WriteOptions {
        self.inner.options.write.clone()
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
        let state = self.inner.catalog.update(change).await?;
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
        let made = async {
            let snapshot = log.create(metadata, "CREATE TABLE").await?;
            let (out, snapshot) = fill(&log, snapshot).await?;
            self.remember(&id, &snapshot);
            self.register_table(database, schema, name, id.clone(), replace)
                .await?;
            Ok(out)
        }
        .await;
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
            if entry.views.contains_key(&t) {
                return Err(strata_storage::Error::NameTaken {
                    name: format!("{d}.{s}.{t}"),
                    kind: "view",
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

    /// The log of table `id`.
    pub(crate) fn table_log(&self, id: &TableId, name: &str) -> TableLog {
        TableLog::new(self.object_store(), id.clone(), name)
    }

    /// The newest snapshot of a table, reading only commits newer than the cached one.
    pub(crate) async fn snapshot(&self, log: &TableLog) -> Result<Snapshot> {
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

    /// The provider for `database.schema.name`, where `name` may carry a time-travel suffix.
    pub(crate) async fn table(
        &self,
        database: &str,
        schema: &str,
        name: &str,
    ) -> Result<Option<StrataTable>> {
        let (base, as_of) = split_time_travel(name);
        let catalog = self.catalog();
        let Ok(entry) = catalog.table(database, schema, base) else {
            return Ok(None);
        };
        let qualified = format!("{database}.{schema}.{base}");
        let log = self.table_log(&entry.id, &qualified);
        let snapshot = match as_of {
            None => self.snapshot(&log).await?,
            Some(AsOf::Version(v)) => log.at_version(strata_storage::Version(v)).await?,
            // An SCD Type 2 table answers from its current snapshot (the catalog filters the
            // versions valid then); any other table travels in time.
            Some(AsOf::ValidAt(micros)) => {
                let current = self.snapshot(&log).await?;
                if crate::scd::ScdSpec::of(&current.metadata).is_some() {
                    current
                } else {
                    log.at_time(micros_to_time(micros)?).await?
                }
            }
            Some(AsOf::Timestamp(micros)) => log.at_time(micros_to_time(micros)?).await?,
        };
        Ok(Some(StrataTable::new(
            self.clone(),
            qualified,
            log,
            snapshot,
            as_of.is_some(),
        )))
    }
}

fn micros_to_time(micros: i64) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| crate::Error::Plan(format!("time travel: timestamp {micros} out of range")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::error::DataFusionError;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::{Warehouse, parse_byte_size};
    use crate::IngestMode;

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
