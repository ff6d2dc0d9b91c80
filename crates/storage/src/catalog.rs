//! The warehouse catalog: databases → schemas → tables, durable and atomic like table commits.
//!
//! The catalog is small, so each version is a whole copy of it, `_catalog/<version>.json`,
//! written with `PutMode::Create`. A change is a function applied to the newest state; after a
//! lost race it is applied again to the state that won, so concurrent `CREATE TABLE`s in two
//! processes both land (and two `CREATE TABLE t` fail cleanly for the second).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{TableId, Version};
use crate::log::{MAX_COMMIT_ATTEMPTS, parse};
use crate::store::paths;

/// The database every warehouse starts with.
pub const DEFAULT_DATABASE: &str = "main";
/// The schema every database starts with.
pub const DEFAULT_SCHEMA: &str = "public";
/// The read-only schema of system tables that every database shows.
pub const SYSTEM_SCHEMA: &str = "system";

/// A table's entry in the catalog: where its log lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Where the table's log and files live.
    pub id: TableId,
    /// When the table entered the catalog.
    pub created_at: DateTime<Utc>,
}

/// A logical view: a stored query, planned again each time a statement reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewEntry {
    /// The query, as SQL text.
    pub query: String,
    /// The database and schema unqualified names in `query` resolve in.
    pub database: String,
    /// The schema of unqualified names (with `database`).
    pub schema: String,
    /// Names given to the query's columns (`CREATE VIEW v (a, b) AS ...`); empty keeps the
    /// query's own.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Tables and views `query` reads, `db.schema.name` (for lineage and cycle checks).
    pub upstream: Vec<String>,
    /// When the view was created.
    pub created_at: DateTime<Utc>,
    /// `COMMENT ON VIEW`, or `COMMENT = '...'` in its definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The user who created it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
}

/// File format options as written (`TYPE = CSV FIELD_DELIMITER = '|'`): names in upper case,
/// in order; a list option (`NULL_IF = ('', 'NA')`) has several values. They are checked when
/// the object that keeps them is created, and read by the statement that uses them.
pub type FormatOptions = Vec<(String, Vec<String>)>;

/// A named stage (`CREATE STAGE`): a location files are loaded from, with the secret that
/// reaches it and the file format of its files. It holds no keys itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageEntry {
    /// `s3://bucket/prefix/`, `file:///dir/` or a local directory.
    pub url: String,
    /// The secret whose keys, endpoint and region reach `url` (`CREDENTIALS = (SECRET = s)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `FILE_FORMAT = (...)`: the stage's default format options.
    #[serde(default)]
    pub file_format: FormatOptions,
    /// `COMMENT = '...'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A named file format (`CREATE FILE FORMAT`), used as `FILE_FORMAT = (FORMAT_NAME = f)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFormatEntry {
    /// The options, `TYPE` among them.
    pub options: FormatOptions,
    /// `COMMENT = '...'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A file of an external table, as its last listing saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalFile {
    /// The path under the table's location (`year=2024/part-0.parquet`).
    pub path: String,
    /// Its size.
    pub size_bytes: u64,
    /// Its modification time.
    pub modified: DateTime<Utc>,
}

/// An external table (`CREATE EXTERNAL TABLE`): files read in place, never written. The files
/// queries read are those of the last listing (at creation, then `ALTER EXTERNAL TABLE ...
/// REFRESH`), so a query sees a stable set of files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalTableEntry {
    /// Where the files are: `s3://bucket/prefix/`, `file:///dir/` or a local directory.
    pub location: String,
    /// The secret that reaches `location`, if it is on S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The file format options (`TYPE` among them).
    pub file_format: FormatOptions,
    /// The columns, partition columns (read from `key=value` folders) last.
    pub columns: Vec<crate::log::ColumnDef>,
    /// `PARTITION BY (...)`: the columns whose values are folder names.
    #[serde(default)]
    pub partition_columns: Vec<String>,
    /// The files of the last listing.
    pub files: Vec<ExternalFile>,
    /// When the files were last listed.
    pub refreshed_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A schema: its tables, views and external tables (one namespace), its stages and its file
/// formats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaEntry {
    /// When the schema was created.
    pub created_at: DateTime<Utc>,
    /// Tables by name.
    pub tables: BTreeMap<String, TableEntry>,
    /// Views by name.
    #[serde(default)]
    pub views: BTreeMap<String, ViewEntry>,
    /// External tables by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_tables: BTreeMap<String, ExternalTableEntry>,
    /// Stages by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stages: BTreeMap<String, StageEntry>,
    /// File formats by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub file_formats: BTreeMap<String, FileFormatEntry>,
    /// Tasks by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, crate::task::TaskEntry>,
    /// Alerts by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alerts: BTreeMap<String, crate::task::AlertEntry>,
    /// `COMMENT ON SCHEMA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl SchemaEntry {
    /// An empty schema created now.
    pub fn new() -> Self {
        Self {
            created_at: Utc::now(),
            tables: BTreeMap::new(),
            views: BTreeMap::new(),
            external_tables: BTreeMap::new(),
            stages: BTreeMap::new(),
            file_formats: BTreeMap::new(),
            tasks: BTreeMap::new(),
            alerts: BTreeMap::new(),
            comment: None,
        }
    }

    /// True when a table, a view or an external table is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tables.contains_key(name)
            || self.views.contains_key(name)
            || self.external_tables.contains_key(name)
    }

    /// What `name` is in this schema ("table", "view", "external table"), if anything.
    pub fn kind_of(&self, name: &str) -> Option<&'static str> {
        if self.tables.contains_key(name) {
            Some("table")
        } else if self.views.contains_key(name) {
            Some("view")
        } else if self.external_tables.contains_key(name) {
            Some("external table")
        } else {
            None
        }
    }

    /// True when the schema holds no object.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
            && self.views.is_empty()
            && self.external_tables.is_empty()
            && self.stages.is_empty()
            && self.file_formats.is_empty()
            && self.tasks.is_empty()
    }
}

impl Default for SchemaEntry {
    fn default() -> Self {
        Self::new()
    }
}

/// A database and its schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseEntry {
    /// When the database was created.
    pub created_at: DateTime<Utc>,
    /// Schemas by name.
    pub schemas: BTreeMap<String, SchemaEntry>,
    /// `COMMENT ON DATABASE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One version of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogState {
    /// The catalog version this is.
    pub version: Version,
    /// Random id of the commit that wrote this version. Two writers making the same change
    /// (two `DROP TABLE t`) write equal states: after an "already exists" answer, the id tells
    /// one's own lost-response write from the other's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub txn_id: String,
    /// Databases by name.
    pub databases: BTreeMap<String, DatabaseEntry>,
}

impl CatalogState {
    fn initial() -> Self {
        let now = Utc::now();
        let mut schemas = BTreeMap::new();
        schemas.insert(DEFAULT_SCHEMA.to_string(), SchemaEntry::new());
        let mut databases = BTreeMap::new();
        databases.insert(
            DEFAULT_DATABASE.to_string(),
            DatabaseEntry {
                created_at: now,
                schemas,
                comment: None,
            },
        );
        Self {
            version: Version(0),
            txn_id: String::new(),
            databases,
        }
    }

    /// The database `name`.
    pub fn database(&self, name: &str) -> Result<&DatabaseEntry> {
        self.databases
            .get(name)
            .ok_or_else(|| Error::DatabaseNotFound {
                name: name.to_string(),
            })
    }

    /// Every task of every schema: `db.schema.task` and its entry.
    pub fn tasks(&self) -> Vec<(String, crate::task::TaskEntry)> {
        let mut out = Vec::new();
        for (db, d) in &self.databases {
            for (schema, s) in &d.schemas {
                for (name, task) in &s.tasks {
                    out.push((format!("{db}.{schema}.{name}"), task.clone()));
                }
            }
        }
        out
    }

    /// Every alert, as `db.schema.alert`.
    pub fn alerts(&self) -> Vec<(String, crate::task::AlertEntry)> {
        let mut out = Vec::new();
        for (db, d) in &self.databases {
            for (schema, s) in &d.schemas {
                for (name, alert) in &s.alerts {
                    out.push((format!("{db}.{schema}.{name}"), alert.clone()));
                }
            }
        }
        out
    }

    /// The schema `database.schema`.
    pub fn schema(&self, database: &str, schema: &str) -> Result<&SchemaEntry> {
        self.database(database)?
            .schemas
            .get(schema)
            .ok_or_else(|| Error::SchemaNotFound {
                database: database.to_string(),
                schema: schema.to_string(),
            })
    }

    /// The database `name`, mutable.
    pub fn database_mut(&mut self, name: &str) -> Result<&mut DatabaseEntry> {
        self.databases
            .get_mut(name)
            .ok_or_else(|| Error::DatabaseNotFound {
                name: name.to_string(),
            })
    }

    /// The schema `database.schema`, mutable.
    pub fn schema_mut(&mut self, database: &str, schema: &str) -> Result<&mut SchemaEntry> {
        self.databases
            .get_mut(database)
            .ok_or_else(|| Error::DatabaseNotFound {
                name: database.to_string(),
            })?
            .schemas
            .get_mut(schema)
            .ok_or_else(|| Error::SchemaNotFound {
                database: database.to_string(),
                schema: schema.to_string(),
            })
    }

    /// The table `database.schema.table`.
    pub fn table(&self, database: &str, schema: &str, table: &str) -> Result<&TableEntry> {
        self.schema(database, schema)?
            .tables
            .get(table)
            .ok_or_else(|| Error::TableNotFound {
                name: format!("{database}.{schema}.{table}"),
            })
    }

    /// The view `database.schema.view`, if there is one.
    pub fn view(&self, database: &str, schema: &str, view: &str) -> Option<&ViewEntry> {
        self.schema(database, schema).ok()?.views.get(view)
    }

    /// Ids of every table in the catalog.
    pub fn table_ids(&self) -> impl Iterator<Item = &TableId> {
        self.databases
            .values()
            .flat_map(|d| d.schemas.values())
            .flat_map(|s| s.tables.values())
            .map(|t| &t.id)
    }
}

/// The catalog log of a warehouse.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn ObjectStore>,
}

impl Catalog {
    /// The catalog stored in `store`. Nothing is read until asked.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    async fn read(&self, version: Version) -> Result<Option<CatalogState>> {
        let path = paths::catalog_commit(version);
        match self.store.get(&path).await {
            Ok(r) => {
                let state: CatalogState = parse(&path, &r.bytes().await?)?;
                // A damaged file naming another version would make `refresh` read it forever.
                if state.version != version {
                    return Err(Error::CorruptMetadata {
                        path: path.to_string(),
                        reason: format!("the file says it is version {}", state.version),
                    });
                }
                Ok(Some(state))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The newest catalog state; creates the initial one (database `main`, schema `public`) in
    /// an empty warehouse.
    pub async fn latest(&self) -> Result<CatalogState> {
        let newest = self
            .store
            .list(Some(&paths::catalog_dir()))
            .try_fold(None::<u64>, |best, meta| async move {
                let v = meta
                    .location
                    .filename()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse::<u64>().ok());
                Ok(best.max(v))
            })
            .await?;
        match newest {
            Some(v) => {
                self.refresh(self.read(Version(v)).await?.ok_or_else(|| {
                    Error::CorruptMetadata {
                        path: paths::catalog_commit(Version(v)).to_string(),
                        reason: "listed but not readable".to_string(),
                    }
                })?)
                .await
            }
            None => {
                let initial = CatalogState::initial();
                self.put(&initial).await?;
                // Whoever won version 0 defines it.
                self.refresh(self.read(Version(0)).await?.unwrap_or(initial))
                    .await
            }
        }
    }

    /// Reads the versions after `state`.
    pub async fn refresh(&self, mut state: CatalogState) -> Result<CatalogState> {
        while let Some(next) = self.read(Version(state.version.0 + 1)).await? {
            state = next;
        }
        Ok(state)
    }

    async fn put(&self, state: &CatalogState) -> Result<bool> {
        let body = serde_json::to_vec(state).expect("catalog state serialises");
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(
                &paths::catalog_commit(state.version),
                PutPayload::from(body),
                opts,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Ok(self.read(state.version).await?.as_ref() == Some(state))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Applies `change` to the newest state and commits it, re-applying after lost races.
    ///
    /// Concurrency: changes from any number of processes serialise; each sees the result of
    /// those before it, so a name conflict is reported as such, never lost.
    pub async fn update<F>(&self, mut change: F) -> Result<CatalogState>
    where
        F: FnMut(&mut CatalogState) -> Result<()>,
    {
        crate::faults::commit_barrier().await;
        let mut state = self.latest().await?;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let mut next = state.clone();
            change(&mut next)?;
            next.version = Version(state.version.0 + 1);
            next.txn_id = uuid::Uuid::new_v4().to_string();
            if self.put(&next).await? {
                return Ok(next);
            }
            state = self.refresh(state).await?;
        }
        Err(Error::TooManyConflicts {
            name: "catalog".to_string(),
            attempts: MAX_COMMIT_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_new_warehouse_has_main_public_and_changes_persist() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let catalog = Catalog::new(Arc::clone(&store));
        let s = catalog.latest().await.unwrap();
        assert!(s.schema("main", "public").is_ok());
        catalog
            .update(|s| {
                s.databases.insert(
                    "sales".into(),
                    DatabaseEntry {
                        created_at: Utc::now(),
                        schemas: BTreeMap::new(),
                        comment: None,
                    },
                );
                Ok(())
            })
            .await
            .unwrap();
        let reopened = Catalog::new(store).latest().await.unwrap();
        assert!(reopened.database("sales").is_ok());
        assert_eq!(reopened.version, Version(1));
    }
}
