//! Strata's keys, comments and settings, as `pg_catalog` shows them to PostgreSQL clients.
//!
//! datafusion-pg-catalog builds `pg_class`, `pg_namespace` and `pg_attribute` from the session's
//! catalog, but its `pg_constraint`, `pg_index` and `pg_description` are PostgreSQL's own fixed
//! rows, and its `pg_settings` has one setting: SQLAlchemy's inspector, JDBC's
//! `getImportedKeys` and psql's `\d` would find no key and no comment. [`StrataPgCatalog`]
//! wraps its schema provider and adds Strata's own rows:
//!
//! - `pg_constraint`: one row per primary key (`p`), unique (`u`), foreign key (`f`) and check
//!   (`c`), with `conkey`/`confkey` as `int2[]` attribute numbers, and the definition
//!   `pg_get_constraintdef(oid)` prints.
//! - `pg_index` and `pg_class`: a primary key or unique constraint is backed by an index, as in
//!   PostgreSQL (relkind `i`, named like its constraint); a foreign key's `conindid` is the
//!   referenced key's index.
//! - `pg_description`: table comments (`objsubid` 0) and column comments (`objsubid` = the
//!   column's `attnum`), beside PostgreSQL's descriptions of its functions.
//! - `pg_settings`: the parameters `SHOW` answers (JDBC reads `max_index_keys` there).
//! - `pg_attribute`: `atttypmod` of decimal columns, so clients see `numeric(10,2)`.
//!
//! A PostgreSQL connection sees one database, as in PostgreSQL: [`DatabaseOnly`] lists the
//! schemas and tables of the connection's database alone, so `(schema, table)` names one
//! relation and its oid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int16Builder, Int32Array, ListBuilder, RecordBatch, StringArray,
    new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session as DfSession};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use strata_query::Constraint;
use strata_query::Warehouse;

/// `pg_class`'s oid in PostgreSQL: `pg_description.classoid` of a table or column comment
/// when `pg_catalog.pg_class` has no other.
const PG_CLASS_OID: i32 = 1259;
/// The btree access method: what a key's index is.
const BTREE_AM_OID: i32 = 403;
/// The first oid given to a constraint (its index takes the next): far above the oids
/// datafusion-pg-catalog counts up from 16384 for schemas and tables.
const FIRST_CONSTRAINT_OID: i32 = 1_000_000_000;

/// The schemas and tables of one database (the connection's), and every database's name.
#[derive(Debug, Clone)]
pub(crate) struct DatabaseOnly {
    list: Arc<dyn CatalogProviderList>,
    database: String,
}

impl DatabaseOnly {
    pub(crate) fn new(list: Arc<dyn CatalogProviderList>, database: &str) -> Self {
        Self {
            list,
            database: database.to_string(),
        }
    }
}

#[async_trait]
impl CatalogInfo for DatabaseOnly {
    async fn catalog_names(&self) -> DfResult<Vec<String>> {
        CatalogInfo::catalog_names(&self.list).await
    }

    async fn schema_names(&self, catalog: &str) -> DfResult<Option<Vec<String>>> {
        if catalog == self.database {
            CatalogInfo::schema_names(&self.list, catalog).await
        } else {
            Ok(Some(Vec::new()))
        }
    }

    async fn table_names(&self, catalog: &str, schema: &str) -> DfResult<Option<Vec<String>>> {
        CatalogInfo::table_names(&self.list, catalog, schema).await
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> DfResult<Option<SchemaRef>> {
        CatalogInfo::table_schema(&self.list, catalog, schema, table).await
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> DfResult<Option<TableType>> {
        CatalogInfo::table_type(&self.list, catalog, schema, table).await
    }
}

/// The constraint oids a connection has handed out, and what each one's definition is:
/// shared by the catalog tables and `pg_get_constraintdef`.
#[derive(Debug, Default)]
pub(crate) struct ConstraintOids {
    by_key: HashMap<[String; 3], i32>,
    definitions: HashMap<i32, String>,
}

impl ConstraintOids {
    /// The oid of constraint `name` of table `schema.table` (its index's is the next one).
    fn oid(&mut self, schema: &str, table: &str, name: &str) -> i32 {
        let next = i32::try_from(self.by_key.len())
            .ok()
            .and_then(|n| n.checked_mul(2))
            .and_then(|n| n.checked_add(FIRST_CONSTRAINT_OID))
            .unwrap_or(i32::MAX - 1);
        *self
            .by_key
            .entry([schema.to_string(), table.to_string(), name.to_string()])
            .or_insert(next)
    }
}

/// `pg_catalog` with Strata's constraints, comments and settings in `pg_constraint`,
/// `pg_index`, `pg_class`, `pg_description` and `pg_settings`; every other table is
/// datafusion-pg-catalog's.
#[derive(Debug)]
pub(crate) struct StrataPgCatalog {
    inner: Arc<dyn SchemaProvider>,
    tables: DatabaseOnly,
    warehouse: Warehouse,
    oids: Arc<Mutex<ConstraintOids>>,
    settings: Arc<Vec<(String, String)>>,
}

impl StrataPgCatalog {
    /// `inner` is datafusion-pg-catalog's `pg_catalog` over `tables`; `settings` are the
    /// `(name, setting)` rows of `pg_settings`.
    pub(crate) fn new(
        inner: Arc<dyn SchemaProvider>,
        tables: DatabaseOnly,
        warehouse: Warehouse,
        oids: Arc<Mutex<ConstraintOids>>,
        settings: Vec<(String, String)>,
    ) -> Self {
        Self {
            inner,
            tables,
            warehouse,
            oids,
            settings: Arc::new(settings),
        }
    }
}

#[async_trait]
impl SchemaProvider for StrataPgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let kind = match name.to_ascii_lowercase().as_str() {
            "pg_constraint" => Kind::Constraint,
            "pg_index" => Kind::Index,
            "pg_class" => Kind::Class,
            "pg_description" => Kind::Description,
            "pg_settings" => Kind::Settings,
            "pg_attribute" => Kind::Attribute,
            _ => return self.inner.table(name).await,
        };
        let Some(inner_table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let schema = match kind {
            // PostgreSQL's `int2[]` and `int2vector`, which the fixed rows keep as text.
            Kind::Constraint | Kind::Index => with_key_lists(&inner_table.schema()),
            Kind::Class | Kind::Description | Kind::Settings | Kind::Attribute => {
                inner_table.schema()
            }
        };
        Ok(Some(Arc::new(KeysTable {
            kind,
            schema,
            inner_table,
            inner: Arc::clone(&self.inner),
            tables: self.tables.clone(),
            warehouse: self.warehouse.clone(),
            oids: Arc::clone(&self.oids),
            settings: Arc::clone(&self.settings),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// Which catalog table a [`KeysTable`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Constraint,
    Index,
    Class,
    Description,
    Settings,
    Attribute,
}

/// One of the four catalog tables Strata's metadata adds rows to, built when scanned.
#[derive(Debug)]
struct KeysTable {
    kind: Kind,
    schema: SchemaRef,
    inner_table: Arc<dyn TableProvider>,
    inner: Arc<dyn SchemaProvider>,
    tables: DatabaseOnly,
    warehouse: Warehouse,
    oids: Arc<Mutex<ConstraintOids>>,
    settings: Arc<Vec<(String, String)>>,
}

/// A relation of the connection's database as `pg_class` numbers it.
#[derive(Debug, Clone)]
struct Relation {
    oid: i32,
    namespace: i32,
    /// Its columns in `attnum` order (from 1).
    schema: SchemaRef,
}

/// One row of `pg_constraint` (and of `pg_index`/`pg_class` for a key).
struct ConstraintRow {
    oid: i32,
    name: String,
    kind: &'static str,
    relation: Relation,
    keys: Vec<i16>,
    referenced: Option<(Relation, Vec<i16>)>,
    /// A key's own index, or the referenced key's index for a foreign key.
    index: i32,
    definition: String,
}

#[async_trait]
impl TableProvider for KeysTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batches = match self.kind {
            Kind::Settings => vec![self.settings_batch()?],
            Kind::Constraint => {
                let (_, relations) = self.relations(state).await?;
                vec![self.constraint_batch(&self.constraints(&relations).await?)?]
            }
            Kind::Index => {
                let (_, relations) = self.relations(state).await?;
                vec![self.index_batch(&self.constraints(&relations).await?)?]
            }
            Kind::Class => {
                let (mut batches, relations) = self.relations(state).await?;
                batches.push(self.index_relations(&self.constraints(&relations).await?)?);
                batches
            }
            Kind::Attribute => {
                let (_, relations) = self.relations(state).await?;
                let by_oid: HashMap<i32, &Relation> =
                    relations.values().map(|r| (r.oid, r)).collect();
                scan_all(self.inner_table.as_ref(), state)
                    .await?
                    .into_iter()
                    .map(|batch| with_type_modifiers(batch, &by_oid))
                    .collect::<DfResult<Vec<_>>>()?
            }
            Kind::Description => {
                let (_, relations) = self.relations(state).await?;
                let mut batches = scan_all(self.inner_table.as_ref(), state).await?;
                batches.push(self.comment_batch(&relations).await?);
                batches
            }
        };
        let exec: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(
            &[batches],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}

impl KeysTable {
    /// datafusion-pg-catalog's `pg_class` rows, and from them the relations of the
    /// connection's database by `(schema, table)` with their oids.
    async fn relations(
        &self,
        state: &dyn DfSession,
    ) -> DfResult<(Vec<RecordBatch>, HashMap<(String, String), Relation>)> {
        let class = scan_all(self.inner_table("pg_class").await?.as_ref(), state).await?;
        let namespace = self.inner_table("pg_namespace").await?;
        let mut namespaces: HashMap<i32, String> = HashMap::new();
        for batch in scan_all(namespace.as_ref(), state).await? {
            let oids = int32_column(&batch, "oid")?;
            let names = string_column(&batch, "nspname")?;
            for i in 0..batch.num_rows() {
                namespaces.insert(oids.value(i), names.value(i).to_string());
            }
        }
        let mut out = HashMap::new();
        for batch in &class {
            let oids = int32_column(batch, "oid")?;
            let names = string_column(batch, "relname")?;
            let spaces = int32_column(batch, "relnamespace")?;
            for i in 0..batch.num_rows() {
                let Some(schema) = namespaces.get(&spaces.value(i)) else {
                    continue;
                };
                let table = names.value(i);
                let Some(fields) = self
                    .tables
                    .table_schema(&self.tables.database, schema, table)
                    .await
                    .ok()
                    .flatten()
                else {
                    continue;
                };
                out.insert(
                    (schema.clone(), table.to_string()),
                    Relation {
                        oid: oids.value(i),
                        namespace: spaces.value(i),
                        schema: fields,
                    },
                );
            }
        }
        Ok((class, out))
    }

    async fn inner_table(&self, name: &str) -> DfResult<Arc<dyn TableProvider>> {
        self.inner
            .table(name)
            .await?
            .ok_or_else(|| DataFusionError::Plan(format!("pg_catalog.{name} is missing")))
    }

    /// The constraints of the connection's database whose tables `relations` holds.
    async fn constraints(
        &self,
        relations: &HashMap<(String, String), Relation>,
    ) -> DfResult<Vec<ConstraintRow>> {
        let declared = self
            .warehouse
            .constraints()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut oids = self.oids.lock().map_err(|_| poisoned())?;
        // Each key's index, to point foreign keys at: (schema, table, sorted columns).
        let mut key_indexes: HashMap<(String, String, Vec<String>), i32> = HashMap::new();
        for ([db, schema, table], constraints) in &declared {
            if *db != self.tables.database {
                continue;
            }
            for c in constraints {
                if let Constraint::PrimaryKey { name, columns }
                | Constraint::Unique { name, columns } = c
                {
                    let mut sorted = columns.clone();
                    sorted.sort();
                    let index = oids.oid(schema, table, name).saturating_add(1);
                    key_indexes.insert((schema.clone(), table.clone(), sorted), index);
                }
            }
        }
        let mut rows = Vec::new();
        for ([db, schema, table], constraints) in &declared {
            if *db != self.tables.database {
                continue;
            }
            let Some(relation) = relations.get(&(schema.clone(), table.clone())) else {
                continue;
            };
            for c in constraints {
                let oid = oids.oid(schema, table, c.name());
                let keys = attnums(relation, c.columns());
                let (kind, referenced, index, definition) = match c {
                    Constraint::PrimaryKey { columns, .. } => (
                        "p",
                        None,
                        oid.saturating_add(1),
                        format!("PRIMARY KEY ({})", idents(columns)),
                    ),
                    Constraint::Unique { columns, .. } => (
                        "u",
                        None,
                        oid.saturating_add(1),
                        format!("UNIQUE ({})", idents(columns)),
                    ),
                    Constraint::Check { expr, .. } => ("c", None, 0, format!("CHECK ({expr})")),
                    Constraint::ForeignKey {
                        columns,
                        references: [_, ref_schema, ref_table],
                        referenced_columns,
                        ..
                    } => {
                        let target = relations
                            .get(&(ref_schema.clone(), ref_table.clone()))
                            .cloned();
                        let mut sorted = referenced_columns.clone();
                        sorted.sort();
                        let index = key_indexes
                            .get(&(ref_schema.clone(), ref_table.clone(), sorted))
                            .copied()
                            .unwrap_or(0);
                        let qualified = if ref_schema == schema {
                            ident(ref_table)
                        } else {
                            format!("{}.{}", ident(ref_schema), ident(ref_table))
                        };
                        let definition = format!(
                            "FOREIGN KEY ({}) REFERENCES {qualified}({})",
                            idents(columns),
                            idents(referenced_columns)
                        );
                        let referenced = target.map(|t| {
                            let keys = attnums(&t, referenced_columns);
                            (t, keys)
                        });
                        ("f", referenced, index, definition)
                    }
                };
                oids.definitions.insert(oid, definition.clone());
                rows.push(ConstraintRow {
                    oid,
                    name: c.name().to_string(),
                    kind,
                    relation: relation.clone(),
                    keys,
                    referenced,
                    index,
                    definition,
                });
            }
        }
        Ok(rows)
    }

    fn constraint_batch(&self, rows: &[ConstraintRow]) -> DfResult<RecordBatch> {
        let texts = |f: &dyn Fn(&ConstraintRow) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let ints = |f: &dyn Fn(&ConstraintRow) -> i32| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<Int32Array>())
        };
        let no_action = |r: &ConstraintRow| Some(if r.kind == "f" { "a" } else { " " }.into());
        let values: Vec<(&str, ArrayRef)> = vec![
            ("oid", ints(&|r| r.oid)),
            ("conname", texts(&|r| Some(r.name.clone()))),
            ("connamespace", ints(&|r| r.relation.namespace)),
            ("contype", texts(&|r| Some(r.kind.to_string()))),
            ("convalidated", booleans(rows.len(), true)),
            ("conrelid", ints(&|r| r.relation.oid)),
            ("conindid", ints(&|r| r.index)),
            (
                "confrelid",
                ints(&|r| r.referenced.as_ref().map_or(0, |(t, _)| t.oid)),
            ),
            ("confupdtype", texts(&no_action)),
            ("confdeltype", texts(&no_action)),
            (
                "confmatchtype",
                texts(&|r| Some(if r.kind == "f" { "s" } else { " " }.into())),
            ),
            ("conislocal", booleans(rows.len(), true)),
            ("conkey", key_list(rows.iter().map(|r| Some(&r.keys[..])))),
            (
                "confkey",
                key_list(
                    rows.iter()
                        .map(|r| r.referenced.as_ref().map(|(_, k)| &k[..])),
                ),
            ),
            (
                "conbin",
                texts(&|r| (r.kind == "c").then(|| r.definition.clone())),
            ),
        ];
        batch_of(&self.schema, rows.len(), values)
    }

    fn index_batch(&self, rows: &[ConstraintRow]) -> DfResult<RecordBatch> {
        let keys: Vec<&ConstraintRow> = rows.iter().filter(|r| is_key(r)).collect();
        let n = keys.len();
        let count = |r: &&ConstraintRow| i16::try_from(r.keys.len()).unwrap_or(i16::MAX);
        let values: Vec<(&str, ArrayRef)> = vec![
            (
                "indexrelid",
                Arc::new(keys.iter().map(|r| r.index).collect::<Int32Array>()),
            ),
            (
                "indrelid",
                Arc::new(keys.iter().map(|r| r.relation.oid).collect::<Int32Array>()),
            ),
            (
                "indnatts",
                Arc::new(keys.iter().map(count).collect::<arrow::array::Int16Array>()),
            ),
            (
                "indnkeyatts",
                Arc::new(keys.iter().map(count).collect::<arrow::array::Int16Array>()),
            ),
            ("indisunique", booleans(n, true)),
            (
                "indisprimary",
                Arc::new(
                    keys.iter()
                        .map(|r| Some(r.kind == "p"))
                        .collect::<BooleanArray>(),
                ),
            ),
            ("indimmediate", booleans(n, true)),
            ("indisvalid", booleans(n, true)),
            ("indisready", booleans(n, true)),
            ("indislive", booleans(n, true)),
            ("indkey", key_list(keys.iter().map(|r| Some(&r.keys[..])))),
        ];
        batch_of(&self.schema, n, values)
    }

    /// `pg_settings`: one row per parameter.
    fn settings_batch(&self) -> DfResult<RecordBatch> {
        let (names, values): (Vec<&str>, Vec<&str>) = self
            .settings
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .unzip();
        let n = names.len();
        batch_of(
            &self.schema,
            n,
            vec![
                ("name", Arc::new(StringArray::from(names)) as ArrayRef),
                ("setting", Arc::new(StringArray::from(values))),
                ("source", Arc::new(StringArray::from(vec!["default"; n]))),
            ],
        )
    }

    /// The `pg_class` rows of the keys' indexes.
    fn index_relations(&self, rows: &[ConstraintRow]) -> DfResult<RecordBatch> {
        let keys: Vec<&ConstraintRow> = rows.iter().filter(|r| is_key(r)).collect();
        let n = keys.len();
        let values: Vec<(&str, ArrayRef)> = vec![
            (
                "oid",
                Arc::new(keys.iter().map(|r| r.index).collect::<Int32Array>()),
            ),
            (
                "relname",
                Arc::new(
                    keys.iter()
                        .map(|r| Some(r.name.clone()))
                        .collect::<StringArray>(),
                ),
            ),
            (
                "relnamespace",
                Arc::new(
                    keys.iter()
                        .map(|r| r.relation.namespace)
                        .collect::<Int32Array>(),
                ),
            ),
            ("relam", Arc::new(Int32Array::from(vec![BTREE_AM_OID; n]))),
            (
                "relkind",
                Arc::new(StringArray::from(vec![Some("i"); n])) as ArrayRef,
            ),
            (
                "relpersistence",
                Arc::new(StringArray::from(vec![Some("p"); n])) as ArrayRef,
            ),
            (
                "relreplident",
                Arc::new(StringArray::from(vec![Some("n"); n])) as ArrayRef,
            ),
            (
                "relnatts",
                Arc::new(
                    keys.iter()
                        .map(|r| i16::try_from(r.keys.len()).unwrap_or(i16::MAX))
                        .collect::<arrow::array::Int16Array>(),
                ),
            ),
            ("relispopulated", booleans(n, true)),
        ];
        batch_of(&self.schema, n, values)
    }

    /// `pg_description` rows of the comments on the database's tables and their columns.
    async fn comment_batch(
        &self,
        relations: &HashMap<(String, String), Relation>,
    ) -> DfResult<RecordBatch> {
        let comments = strata_query::comments(&self.warehouse)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let (mut objoid, mut subid, mut text) = (Vec::new(), Vec::new(), Vec::new());
        for ([db, schema, table], c) in &comments {
            if *db != self.tables.database {
                continue;
            }
            let Some(relation) = relations.get(&(schema.clone(), table.clone())) else {
                continue;
            };
            if let Some(comment) = &c.object {
                objoid.push(relation.oid);
                subid.push(0);
                text.push(comment.clone());
            }
            for (column, comment) in &c.columns {
                if let Ok(position) = relation.schema.index_of(column) {
                    objoid.push(relation.oid);
                    subid.push(i32::try_from(position).unwrap_or(i32::MAX - 1) + 1);
                    text.push(comment.clone());
                }
            }
        }
        let n = objoid.len();
        // What `'pg_catalog.pg_class'::regclass` finds, which clients compare `classoid` with.
        let class_oid = relations
            .get(&("pg_catalog".to_string(), "pg_class".to_string()))
            .map_or(PG_CLASS_OID, |r| r.oid);
        let values: Vec<(&str, ArrayRef)> = vec![
            ("objoid", Arc::new(Int32Array::from(objoid))),
            ("classoid", Arc::new(Int32Array::from(vec![class_oid; n]))),
            ("objsubid", Arc::new(Int32Array::from(subid))),
            ("description", Arc::new(StringArray::from(text))),
        ];
        batch_of(&self.schema, n, values)
    }
}

/// `pg_attribute` rows with `atttypmod` set where PostgreSQL sets it: a decimal's precision
/// and scale (`numeric(10,2)` in `format_type`, JDBC's `COLUMN_SIZE`/`DECIMAL_DIGITS`).
fn with_type_modifiers(
    batch: RecordBatch,
    relations: &HashMap<i32, &Relation>,
) -> DfResult<RecordBatch> {
    let (Some(position), Ok(relids), Some(attnums)) = (
        batch.schema().index_of("atttypmod").ok(),
        int32_column(&batch, "attrelid"),
        batch
            .column_by_name("attnum")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int16Array>()),
    ) else {
        return Ok(batch);
    };
    let current = int32_column(&batch, "atttypmod")?;
    let typmods: Int32Array = (0..batch.num_rows())
        .map(|i| {
            let column = usize::try_from(attnums.value(i))
                .ok()
                .and_then(|n| n.checked_sub(1));
            let data_type = relations
                .get(&relids.value(i))
                .zip(column)
                .and_then(|(r, c)| r.schema.fields().get(c))
                .map(|f| f.data_type());
            Some(match data_type {
                Some(DataType::Decimal128(p, s) | DataType::Decimal256(p, s)) if *s >= 0 => {
                    // PostgreSQL's numeric typmod: ((precision << 16) | scale) + VARHDRSZ.
                    ((i32::from(*p) << 16) | i32::from(*s)) + 4
                }
                _ => current.value(i),
            })
        })
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[position] = Arc::new(typmods);
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Whether a constraint is backed by an index (a primary key or unique constraint).
fn is_key(row: &ConstraintRow) -> bool {
    row.kind == "p" || row.kind == "u"
}

/// The `attnum`s of `columns` in `relation` (0 for a column it no longer has).
fn attnums(relation: &Relation, columns: &[String]) -> Vec<i16> {
    columns
        .iter()
        .map(|c| {
            relation
                .schema
                .index_of(c)
                .ok()
                .and_then(|p| i16::try_from(p + 1).ok())
                .unwrap_or(0)
        })
        .collect()
}

/// A name as PostgreSQL prints it: bare when lower-case letters, digits and `_`, else quoted.
fn ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn idents(names: &[String]) -> String {
    names
        .iter()
        .map(|n| ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `schema` with `conkey`, `confkey` and `indkey` as lists of `int2`.
fn with_key_lists(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "conkey" | "confkey" | "indkey" => Field::new(f.name(), key_list_type(), true),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn key_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true)))
}

fn key_list<'a>(keys: impl Iterator<Item = Option<&'a [i16]>>) -> ArrayRef {
    let mut builder = ListBuilder::new(Int16Builder::new());
    for k in keys {
        match k {
            Some(k) => {
                builder.values().append_slice(k);
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Arc::new(builder.finish())
}

fn booleans(n: usize, value: bool) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![value; n]))
}

/// A batch of `n` rows of `schema`: the given columns, and every other one at its type's zero
/// (`0`, `false`, `''`) when it cannot be NULL, NULL when it can.
fn batch_of(schema: &SchemaRef, n: usize, values: Vec<(&str, ArrayRef)>) -> DfResult<RecordBatch> {
    let mut given: HashMap<&str, ArrayRef> = values.into_iter().collect();
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            if let Some(array) = given.remove(field.name().as_str()) {
                return if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    Ok(arrow::compute::cast(&array, field.data_type())?)
                };
            }
            if field.is_nullable() {
                return Ok(new_null_array(field.data_type(), n));
            }
            let zero = match field.data_type() {
                DataType::Utf8 => ScalarValue::Utf8(Some(String::new())),
                DataType::Boolean => ScalarValue::Boolean(Some(false)),
                other => ScalarValue::new_zero(other)?,
            };
            zero.to_array_of_size(n)
        })
        .collect::<DfResult<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

async fn scan_all(table: &dyn TableProvider, state: &dyn DfSession) -> DfResult<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

fn int32_column<'a>(batch: &'a RecordBatch, name: &str) -> DfResult<&'a Int32Array> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog column {name} is not int4")))
}

fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> DfResult<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog column {name} is not text")))
}

fn poisoned() -> DataFusionError {
    DataFusionError::Internal("the constraint oid table's lock is poisoned".into())
}

/// `pg_get_constraintdef(oid [, pretty])`: the definition of a constraint the connection's
/// `pg_constraint` listed (`PRIMARY KEY (id)`, `FOREIGN KEY (c) REFERENCES t(id)`), NULL for
/// any other oid.
pub(crate) fn constraintdef_udf(oids: Arc<Mutex<ConstraintOids>>) -> ScalarUDF {
    ScalarUDF::new_from_impl(ConstraintDef {
        oids,
        signature: Signature::new(
            TypeSignature::OneOf(vec![
                TypeSignature::Exact(vec![DataType::Int32]),
                TypeSignature::Exact(vec![DataType::Int32, DataType::Boolean]),
            ]),
            Volatility::Stable,
        ),
    })
}

#[derive(Debug)]
struct ConstraintDef {
    oids: Arc<Mutex<ConstraintOids>>,
    signature: Signature,
}

impl PartialEq for ConstraintDef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.oids, &other.oids)
    }
}

impl Eq for ConstraintDef {}

impl std::hash::Hash for ConstraintDef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_get_constraintdef".hash(state);
    }
}

impl ScalarUDFImpl for ConstraintDef {
    fn name(&self) -> &str {
        "pg_get_constraintdef"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let oids = self.oids.lock().map_err(|_| poisoned())?;
        let Some(first) = args.args.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let array = first.to_array(args.number_rows)?;
        let array = arrow::compute::cast(&array, &DataType::Int32)?;
        let ids = array
            .as_any()
            .downcast_ref::<Int32Array>()
            .ok_or_else(|| DataFusionError::Internal("oid is not int4".into()))?;
        let out: StringArray = ids
            .iter()
            .map(|oid| oid.and_then(|o| oids.definitions.get(&o).cloned()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_as_postgresql_prints_them() {
        assert_eq!(ident("lo_custkey"), "lo_custkey");
        assert_eq!(ident("Order Date"), "\"Order Date\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident("1st"), "\"1st\"");
    }

    #[test]
    fn a_batch_fills_what_it_is_not_given() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("oid", DataType::Int32, false),
            Field::new("flag", DataType::Boolean, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("maybe", DataType::Utf8, true),
        ]));
        let batch = batch_of(
            &schema,
            2,
            vec![("oid", Arc::new(Int32Array::from(vec![7, 8])) as ArrayRef)],
        )
        .unwrap();
        assert_eq!(int32_column(&batch, "oid").unwrap().values(), &[7, 8]);
        assert_eq!(string_column(&batch, "name").unwrap().value(1), "");
        assert_eq!(batch.column(3).null_count(), 2);
    }

    #[test]
    fn constraint_oids_are_stable_and_leave_room_for_their_index() {
        let mut oids = ConstraintOids::default();
        let a = oids.oid("public", "t", "t_pkey");
        let b = oids.oid("public", "u", "u_pkey");
        assert_eq!(a, FIRST_CONSTRAINT_OID);
        assert_eq!(b, FIRST_CONSTRAINT_OID + 2);
        assert_eq!(oids.oid("public", "t", "t_pkey"), a);
    }
}
