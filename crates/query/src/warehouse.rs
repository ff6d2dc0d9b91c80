//! `Warehouse`: one open warehouse root shared by all sessions of a process.
//!
//! It owns the object store, a cached copy of the catalog and of table snapshots (refreshed by
//! reading only the commits that are new), and the write options. Sessions borrow it; the
//! DataFusion catalog providers read names from the cached catalog, which each statement
//! refreshes before it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use object_store::ObjectStore;
use strata_storage::{
    Catalog, CatalogState, Snapshot, TableId, TableLog, WarehouseStore, WriteOptions,
};

use crate::error::Result;
use crate::parser::{AsOf, split_time_travel};
use crate::session::Session;
use crate::table::StrataTable;

/// Settings of an open warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseOptions {
    /// How data files are written.
    pub write: WriteOptions,
    /// Days of `system.query_log` kept; older days are deleted when the warehouse opens.
    pub query_log_retention_days: u32,
}

impl Default for WarehouseOptions {
    fn default() -> Self {
        Self {
            write: WriteOptions::default(),
            query_log_retention_days: 30,
        }
    }
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
}

impl Warehouse {
    /// Opens (or creates) the warehouse at `location`: a path, `file://...` or `memory://`.
    pub async fn open(location: &str) -> Result<Self> {
        Self::open_with(location, WarehouseOptions::default()).await
    }

    /// Opens the warehouse with explicit options.
    pub async fn open_with(location: &str, options: WarehouseOptions) -> Result<Self> {
        let store = WarehouseStore::open(location)?;
        let catalog = Catalog::new(store.object_store());
        let state = catalog.latest().await?;
        let warehouse = Self {
            inner: Arc::new(Inner {
                store,
                catalog,
                catalog_state: RwLock::new(state),
                snapshots: Mutex::new(HashMap::new()),
                options,
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

    /// Options of this warehouse.
    pub fn options(&self) -> &WarehouseOptions {
        &self.inner.options
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

    /// Reads catalog versions committed since the last refresh (by any process).
    pub(crate) async fn refresh_catalog(&self) -> Result<CatalogState> {
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
            Some(AsOf::Timestamp(micros)) => {
                let time = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(|| {
                    crate::Error::Plan(format!("time travel: timestamp {micros} out of range"))
                })?;
                log.at_time(time).await?
            }
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
