//! Strata's catalog as DataFusion catalog providers.
//!
//! Each Strata database is a DataFusion catalog, each schema a schema. Every database also shows
//! a read-only `system` schema (see [`system`]), and `information_schema` (DataFusion's
//! views plus the constraint views). A name resolves to a table ([`crate::table::StrataTable`]),
//! a materialized view ([`materialized_view`]), a view ([`views`]) or, with
//! `FOR SYSTEM_TIME AS OF`, the versions of an SCD Type 2 table valid then ([`scd`]).
//! Names come from the warehouse's cached catalog, refreshed before each statement; tables are
//! resolved (their snapshot read) when a statement is planned.

pub(crate) mod column_lineage;
pub(crate) mod data_tests;
pub(crate) mod ingest_channels;
pub(crate) mod lineage;
pub(crate) mod materialized_view;
pub(crate) mod planner;
pub(crate) mod scd;
pub(crate) mod system;
pub(crate) mod system_parts;
pub(crate) mod tables;
pub(crate) mod tasks;
pub(crate) mod viewer;
pub(crate) mod views;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::information_schema::{INFORMATION_SCHEMA, InformationSchemaProvider};
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::prelude::SessionContext;

use strata_storage::SYSTEM_SCHEMA;

use crate::parser::{AsOf, split_time_travel};
use crate::table::StrataTable;
use crate::table::external::{ExternalFormat, ExternalTable};
use crate::table::scd::ScdSpec;
use crate::warehouse::Warehouse;
use materialized_view::{Definition, MaterializedViewTable};
use planner::Planner;
use system::{CONSTRAINT_VIEWS, SYSTEM_TABLES, constraint_view, system_table};
pub(crate) use viewer::{User, Viewer};

/// Schemas a client protocol adds to every database of one session (the PostgreSQL server's
/// `pg_catalog`), registered through DataFusion's `CatalogProvider::register_schema`.
type ProtocolSchemas = Arc<std::sync::RwLock<HashMap<String, Arc<dyn SchemaProvider>>>>;

/// All databases of a warehouse.
#[derive(Debug)]
pub(crate) struct StrataCatalogList {
    warehouse: Warehouse,
    /// Plans views' stored queries.
    planner: Arc<dyn Planner>,
    viewer: Viewer,
    protocol_schemas: ProtocolSchemas,
}

impl StrataCatalogList {
    /// The databases of `warehouse` as `viewer` sees them, planning stored SQL with `planner`.
    pub(crate) fn new(warehouse: Warehouse, planner: Arc<dyn Planner>, viewer: Viewer) -> Self {
        Self {
            warehouse,
            planner,
            viewer,
            protocol_schemas: ProtocolSchemas::default(),
        }
    }
}

impl CatalogProviderList for StrataCatalogList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        // Databases are created with CREATE DATABASE, which commits to the catalog log.
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        self.warehouse.catalog().databases.keys().cloned().collect()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.warehouse
            .catalog()
            .databases
            .contains_key(name)
            .then(|| {
                Arc::new(StrataDatabase {
                    warehouse: self.warehouse.clone(),
                    planner: Arc::clone(&self.planner),
                    viewer: self.viewer.clone(),
                    database: name.to_string(),
                    protocol_schemas: Arc::clone(&self.protocol_schemas),
                }) as Arc<dyn CatalogProvider>
            })
    }
}

/// One database.
#[derive(Debug)]
struct StrataDatabase {
    warehouse: Warehouse,
    planner: Arc<dyn Planner>,
    viewer: Viewer,
    database: String,
    protocol_schemas: ProtocolSchemas,
}

impl StrataDatabase {
    fn protocol_schemas(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<dyn SchemaProvider>>> {
        self.protocol_schemas
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl CatalogProvider for StrataDatabase {
    fn schema_names(&self) -> Vec<String> {
        let catalog = self.warehouse.catalog();
        let mut names: Vec<String> = catalog
            .database(&self.database)
            .map(|d| d.schemas.keys().cloned().collect())
            .unwrap_or_default();
        names.push(SYSTEM_SCHEMA.to_string());
        names.extend(self.protocol_schemas().keys().cloned());
        names
    }

    /// Adds a schema a client protocol serves (`pg_catalog`) to this session's view of every
    /// database; it lives in the session, never in the warehouse's catalog. Databases' own
    /// schemas, `system` and `information_schema` cannot be shadowed.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        let taken = name == SYSTEM_SCHEMA
            || name == INFORMATION_SCHEMA
            || self
                .warehouse
                .catalog()
                .schema(&self.database, name)
                .is_ok();
        if taken {
            return Err(DataFusionError::Plan(format!(
                "schema {name} exists in database {}",
                self.database
            )));
        }
        Ok(self
            .protocol_schemas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), schema))
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(schema) = self.protocol_schemas().get(name) {
            return Some(Arc::clone(schema));
        }
        if name == INFORMATION_SCHEMA {
            return Some(Arc::new(InformationSchema {
                inner: InformationSchemaProvider::new(Arc::new(StrataCatalogList::new(
                    self.warehouse.clone(),
                    Arc::clone(&self.planner),
                    self.viewer.clone(),
                ))),
                warehouse: self.warehouse.clone(),
            }));
        }
        let exists = name == SYSTEM_SCHEMA
            || self
                .warehouse
                .catalog()
                .schema(&self.database, name)
                .is_ok();
        exists.then(|| {
            Arc::new(StrataSchema {
                warehouse: self.warehouse.clone(),
                planner: Arc::clone(&self.planner),
                viewer: self.viewer.clone(),
                database: self.database.clone(),
                schema: name.to_string(),
            }) as Arc<dyn SchemaProvider>
        })
    }
}

/// `information_schema`: DataFusion's views (`tables`, `columns`, `views`, `df_settings`, ...)
/// plus the constraint views it lacks (see [`system::CONSTRAINT_VIEWS`]), and a `comment`
/// column on `tables` and `columns` (Snowflake's name) so BI tools show comments. Sessions turn
/// DataFusion's own off so that this one answers.
#[derive(Debug)]
struct InformationSchema {
    inner: InformationSchemaProvider,
    warehouse: Warehouse,
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(CONSTRAINT_VIEWS.iter().map(|s| s.to_string()));
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if CONSTRAINT_VIEWS.contains(&name) {
            return constraint_view(&self.warehouse, name)
                .await
                .map_err(DataFusionError::from);
        }
        let inner = self.inner.table(name).await?;
        match inner {
            Some(inner) if name == "tables" || name == "columns" => {
                with_comments(&self.warehouse, inner, name == "columns")
                    .await
                    .map(Some)
                    .map_err(DataFusionError::from)
            }
            other => Ok(other),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        CONSTRAINT_VIEWS.contains(&name) || self.inner.table_exist(name)
    }
}

/// DataFusion's `information_schema.tables` (or `.columns`, when `columns`) with a `comment`
/// column appended: the object's (or column's) comment.
async fn with_comments(
    warehouse: &Warehouse,
    inner: Arc<dyn TableProvider>,
    columns: bool,
) -> crate::error::Result<Arc<dyn TableProvider>> {
    use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};

    let comments = tables::comments(warehouse).await?;
    let batches = SessionContext::new()
        .read_table(Arc::clone(&inner))?
        .collect()
        .await?;
    let mut fields: Vec<Arc<Field>> = inner.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("comment", DataType::Utf8, true)));
    let schema = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let text = |name: &str| -> crate::error::Result<ArrayRef> {
            let column = batch.column_by_name(name).ok_or_else(|| {
                crate::error::Error::Plan(format!("information_schema has no {name}"))
            })?;
            Ok(arrow::compute::cast(column, &DataType::Utf8)?)
        };
        let keys = [
            text("table_catalog")?,
            text("table_schema")?,
            text("table_name")?,
        ];
        let column_names = if columns {
            Some(text("column_name")?)
        } else {
            None
        };
        let mut comment = StringBuilder::new();
        for row in 0..batch.num_rows() {
            let key = keys.clone().map(|k| {
                let k = k.as_string::<i32>();
                if k.is_null(row) {
                    String::new()
                } else {
                    k.value(row).to_string()
                }
            });
            let found = comments.get(&key).and_then(|c| match &column_names {
                Some(names) => c.columns.get(names.as_string::<i32>().value(row)).cloned(),
                None => c.object.clone(),
            });
            comment.append_option(found);
        }
        let mut arrays = batch.columns().to_vec();
        arrays.push(Arc::new(comment.finish()));
        out.push(RecordBatch::try_new(Arc::clone(&schema), arrays)?);
    }
    Ok(Arc::new(datafusion::datasource::MemTable::try_new(
        schema,
        vec![out],
    )?))
}

/// One schema (or the `system` schema).
#[derive(Debug)]
struct StrataSchema {
    warehouse: Warehouse,
    planner: Arc<dyn Planner>,
    viewer: Viewer,
    database: String,
    schema: String,
}

#[async_trait]
impl SchemaProvider for StrataSchema {
    fn table_names(&self) -> Vec<String> {
        if self.schema == SYSTEM_SCHEMA {
            return SYSTEM_TABLES.iter().map(|s| s.to_string()).collect();
        }
        self.warehouse
            .catalog()
            .schema(&self.database, &self.schema)
            .map(|s| {
                s.tables
                    .keys()
                    .chain(s.views.keys())
                    .chain(s.external_tables.keys())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.schema == SYSTEM_SCHEMA {
            return system_table(&self.warehouse, self.planner.as_ref(), &self.viewer, name)
                .await
                .map_err(DataFusionError::from);
        }
        if let Some(view) = self
            .warehouse
            .catalog()
            .view(&self.database, &self.schema, name)
        {
            let qualified = format!("{}.{}.{name}", self.database, self.schema);
            return views::provider(&self.warehouse, self.planner.as_ref(), &qualified, view)
                .await
                .map(Some)
                .map_err(DataFusionError::from);
        }
        let external = self
            .warehouse
            .catalog()
            .schema(&self.database, &self.schema)
            .ok()
            .and_then(|s| s.external_tables.get(name).cloned());
        if let Some(entry) = external {
            let qualified = format!("{}.{}.{name}", self.database, self.schema);
            return external_table(&self.warehouse, qualified, entry)
                .await
                .map(Some)
                .map_err(DataFusionError::from);
        }
        let table = StrataTable::open(&self.warehouse, &self.database, &self.schema, name)
            .await
            .map_err(DataFusionError::from)?;
        let Some(table) = table else {
            return Ok(None);
        };
        if let (_, Some(AsOf::ValidAt(micros))) = split_time_travel(name)
            && ScdSpec::of(&table.snapshot().metadata).is_some()
        {
            return scd::valid_at(table, micros)
                .map(Some)
                .map_err(DataFusionError::from);
        }
        if Definition::of(&table.snapshot().metadata).is_some() {
            return Ok(Some(Arc::new(MaterializedViewTable::new(table))));
        }
        Ok(Some(Arc::new(table) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|t| t == name)
    }
}

/// The external table `name` as DataFusion reads it.
async fn external_table(
    warehouse: &Warehouse,
    name: String,
    entry: strata_storage::ExternalTableEntry,
) -> crate::error::Result<Arc<dyn TableProvider>> {
    let settings = match &entry.secret {
        Some(secret) => warehouse.secret_settings(secret).await?,
        None => Vec::new(),
    };
    let format = ExternalFormat::from_options(&entry.file_format)?;
    Ok(Arc::new(ExternalTable::new(
        name, entry, &settings, format,
    )?))
}
