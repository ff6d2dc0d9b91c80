//! `Session`: runs SQL scripts against a warehouse.
//!
//! Each statement is parsed by [`crate::parser`], then either executed here (catalog DDL,
//! partition maintenance, `COPY INTO`, `CREATE TABLE [AS]`, `SHOW`, `DESCRIBE`, `VACUUM`) or
//! planned and run by DataFusion (queries, `INSERT`, `EXPLAIN`, `SET`). Every statement is
//! recorded in `system.query_log` with its pruning figures.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::Utc;
use datafusion::common::ParamValues;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::fk_join::ForeignKeyJoinElimination;
use crate::star_join::StarJoinOrder;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, ObjectName, ObjectType, SchemaName, ShowStatementIn,
    ShowStatementOptions, Statement as SqlStatement, Use,
};
use strata_storage::{
    ColumnDef, DEFAULT_DATABASE, DEFAULT_SCHEMA, Error as StorageError, Interval, Partitioning,
    TableMetadata, Transaction,
};

use crate::catalog::StrataCatalogList;
use crate::error::{Error, Result};
use crate::parser::{self, IntervalSpec, ParsedStatement, PartitionClause, Statement, name_parts};
use crate::progress::Progress;
use crate::system::{QueryLogEntry, record_query};
use crate::table::{ScanFigures, WAREHOUSE_STORE_URL, scan_figures, write_batches};
use crate::types::{arrow_type, column_defs, sql_name};
use crate::warehouse::Warehouse;

/// The result of one statement: rows, or a one-row status.
#[derive(Debug, Clone)]
pub struct StatementResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl StatementResult {
    pub(crate) fn status(message: impl Into<String>) -> Self {
        Self::strings(&["status"], vec![vec![message.into()]])
    }

    pub(crate) fn strings(names: &[&str], rows: Vec<Vec<String>>) -> Self {
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = (0..names.len())
            .map(|i| {
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r[i].as_str()),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
            .expect("string batch matches its schema");
        Self {
            schema,
            batches: vec![batch],
        }
    }

    /// Rows in the result.
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// A SQL session: current database and schema, and a DataFusion context over the warehouse.
pub struct Session {
    warehouse: Warehouse,
    ctx: SessionContext,
    id: String,
    database: String,
    schema: String,
    progress: Progress,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("database", &self.database)
            .field("schema", &self.schema)
            .finish()
    }
}

/// Fails on the first of `settings` that is not a known setting with a valid value.
pub(crate) fn check_settings(settings: &[(String, String)]) -> Result<()> {
    let mut config =
        SessionConfig::new().with_option_extension(crate::mv::rewrite::StrataOptions::default());
    for (name, value) in settings {
        config
            .options_mut()
            .set(name, value)
            .map_err(|e| Error::Plan(format!("setting {name} = {value}: {e}")))?;
    }
    Ok(())
}

impl Session {
    pub(crate) fn new(warehouse: Warehouse) -> Self {
        let mut config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(DEFAULT_DATABASE, DEFAULT_SCHEMA)
            // `information_schema` comes from our catalog (DataFusion's views plus constraints).
            .with_information_schema(false);
        // Build one shared hash table from a dimension of up to a few million rows rather
        // than hash-repartitioning the fact table to both sides of a partitioned join.
        let optimizer = &mut config.options_mut().optimizer;
        optimizer.hash_join_single_partition_threshold = 64 * 1024 * 1024;
        optimizer.hash_join_single_partition_threshold_rows = 4 * 1024 * 1024;
        // A partial aggregation that keeps more than half of its input rows as groups (grouping
        // by order or customer keys) costs more in hash-table misses than it saves the final
        // one: pass its rows straight on. DataFusion's default gives up only above 80%.
        // (TPC-H SF1 Q18: 1.15 -> 0.95 s; Q3, Q13 5-10% faster.)
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_ratio_threshold = 0.5;
        if let Some(partitions) = warehouse.options().target_partitions {
            config = config.with_target_partitions(partitions.max(1));
        }
        let mut config = config
            .with_option_extension(crate::mv::rewrite::StrataOptions::default())
            .with_extension(warehouse.scan_cache());
        for (name, value) in &warehouse.options().settings {
            // Checked when the warehouse opened.
            let _ = config.options_mut().set(name, value);
        }
        let url = url::Url::parse(WAREHOUSE_STORE_URL).expect("static URL parses");
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(warehouse.runtime())
            .with_default_features()
            .with_analyzer_rules(crate::date_comparison::analyzer_rules())
            .with_catalog_list(Arc::new(StrataCatalogList::new(warehouse.clone())))
            .with_optimizer_rule(Arc::new(StarJoinOrder))
            .with_optimizer_rule(Arc::new(ForeignKeyJoinElimination))
            .with_optimizer_rule(Arc::new(crate::decimal_arithmetic::DecimalArithmetic))
            .with_physical_optimizer_rule(Arc::new(crate::runtime_filter::AwaitJoinFilters))
            .with_object_store(&url, warehouse.object_store())
            .build();
        let ctx = SessionContext::new_with_state(state);
        datafusion_functions_json::register_all(&mut *ctx.state_ref().write())
            .expect("JSON functions register");
        ctx.register_udtf(
            "date_dimension",
            Arc::new(crate::date_dimension::DateDimension),
        );
        Self {
            warehouse,
            ctx,
            id: uuid::Uuid::new_v4().to_string(),
            database: DEFAULT_DATABASE.to_string(),
            schema: DEFAULT_SCHEMA.to_string(),
            progress: Progress::default(),
        }
    }

    /// The warehouse of this session.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// The DataFusion context (for embedding: register UDFs, inspect plans).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Live figures of the statement this session runs (for progress bars); the handle stays
    /// valid across statements.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Current database and schema.
    pub fn current_schema(&self) -> (&str, &str) {
        (&self.database, &self.schema)
    }

    /// Runs a script; returns one result per statement. Stops at the first failing statement,
    /// which leaves the warehouse as it was before that statement.
    pub async fn sql(&mut self, sql: &str) -> Result<Vec<StatementResult>> {
        let statements = parser::parse(sql)?;
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            results.push(self.execute(&statement).await?);
        }
        Ok(results)
    }

    /// Runs one parsed statement and records it in the query log.
    pub async fn execute(&mut self, statement: &ParsedStatement) -> Result<StatementResult> {
        self.execute_with(statement, None).await
    }

    /// Runs one parsed statement with values for its placeholders (`$1`, `?`), and records it
    /// in the query log. Parameters apply to statements DataFusion plans (queries, `INSERT`,
    /// `EXPLAIN`).
    pub async fn execute_with(
        &mut self,
        statement: &ParsedStatement,
        params: Option<&ParamValues>,
    ) -> Result<StatementResult> {
        let started_at = Utc::now();
        let clock = Instant::now();
        self.progress.reset();
        let outcome = self.run(&statement.statement, params).await;
        if outcome.is_ok() {
            crate::lineage::record_statement(self, &statement.statement).await;
            if changes_data(&statement.statement) {
                crate::mv::refresh_on_commit(&self.warehouse).await;
            }
        }
        let (status, error, rows, figures) = match &outcome {
            Ok((r, f)) => ("SUCCESS", None, r.row_count() as u64, *f),
            Err(e) => ("FAILED", Some(e.to_string()), 0, ScanFigures::default()),
        };
        let entry = QueryLogEntry::new(
            &self.id,
            &statement.text,
            started_at,
            clock.elapsed(),
            status,
            error,
            rows,
            figures,
        );
        record_query(&self.warehouse, &entry).await;
        outcome.map(|(r, _)| r)
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    async fn run(
        &mut self,
        statement: &Statement,
        params: Option<&ParamValues>,
    ) -> Result<(StatementResult, ScanFigures)> {
        self.warehouse.refresh_catalog().await?;
        let none = ScanFigures::default();
        let result = match statement {
            Statement::Sql(s) => return self.run_sql(s, params).await,
            Statement::CreatePartitioned {
                create,
                partitioning,
            } => match create.as_ref() {
                SqlStatement::CreateTable(c) => self.create_table(c, Some(partitioning)).await?,
                SqlStatement::CreateView(v) if v.materialized => {
                    crate::mv::create(self, v, Some(partitioning)).await?
                }
                _ => return Err(Error::Plan("expected CREATE TABLE".to_string())),
            },
            Statement::AddPartitions { table, partitions } => {
                let (log, snapshot, name) = self.open_table(table).await?;
                let mut layout = snapshot
                    .metadata
                    .partitioning
                    .clone()
                    .ok_or_else(|| Error::Plan(format!("table '{name}' is not partitioned")))?;
                layout.add(&name, partitions)?;
                let mut txn = Transaction::new("ADD PARTITION");
                txn.add_partitions = layout
                    .partitions
                    .iter()
                    .filter(|p| partitions.iter().any(|(n, _)| *n == p.name))
                    .cloned()
                    .collect();
                let s = log.commit(&snapshot, &txn).await?;
                self.warehouse.remember(log.id(), &s);
                StatementResult::status(format!(
                    "added {} partition(s) to {name}",
                    partitions.len()
                ))
            }
            Statement::DropPartitions {
                table,
                names,
                if_exists,
            } => {
                let (log, snapshot, name) = self.open_table_for_write(table).await?;
                let layout = snapshot
                    .metadata
                    .partitioning
                    .as_ref()
                    .ok_or_else(|| Error::Plan(format!("table '{name}' is not partitioned")))?;
                let mut txn = Transaction::new("DROP PARTITION");
                for n in names {
                    if layout.partition(n).is_none() {
                        if *if_exists {
                            continue;
                        }
                        return Err(StorageError::PartitionNotFound {
                            table: name.clone(),
                            partition: n.clone(),
                        }
                        .into());
                    }
                    txn.drop_partitions.push(n.clone());
                    txn.remove.extend(snapshot.files_in(n).cloned());
                }
                let rows: u64 = txn.remove.iter().map(|f| f.rows).sum();
                self.commit_removal(&name, &log, &snapshot, &txn).await?;
                StatementResult::status(format!(
                    "dropped {} partition(s) of {name} ({rows} rows)",
                    txn.drop_partitions.len()
                ))
            }
            Statement::Vacuum {
                table,
                retain_hours,
            } => self.vacuum(table.as_ref(), *retain_hours).await?,
            Statement::ApplyChanges(apply) => crate::scd::apply_changes(self, apply).await?,
            Statement::Refresh { view, full } => {
                crate::mv::refresh_statement(self, view, *full).await?
            }
        };
        Ok((result, none))
    }

    async fn run_sql(
        &mut self,
        s: &SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<(StatementResult, ScanFigures)> {
        let none = ScanFigures::default();
        let result = match s {
            SqlStatement::CreateDatabase {
                db_name,
                if_not_exists,
                ..
            } => {
                let name = single(db_name, "database")?;
                let exists = self.warehouse.catalog().databases.contains_key(&name);
                if exists && *if_not_exists {
                    StatementResult::status(format!("database {name} already exists"))
                } else {
                    let n = name.clone();
                    self.warehouse
                        .update_catalog(move |c| {
                            if c.databases.contains_key(&n) {
                                return Err(StorageError::DatabaseExists { name: n.clone() });
                            }
                            let now = Utc::now();
                            let mut schemas = std::collections::BTreeMap::new();
                            schemas.insert(
                                DEFAULT_SCHEMA.to_string(),
                                strata_storage::SchemaEntry::new(),
                            );
                            c.databases.insert(
                                n.clone(),
                                strata_storage::catalog::DatabaseEntry {
                                    created_at: now,
                                    schemas,
                                },
                            );
                            Ok(())
                        })
                        .await?;
                    StatementResult::status(format!("created database {name}"))
                }
            }
            SqlStatement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => {
                let name = match schema_name {
                    SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _) => n,
                    SchemaName::UnnamedAuthorization(_) => {
                        return Err(Error::Unsupported("CREATE SCHEMA AUTHORIZATION".into()));
                    }
                };
                let (db, schema) = self.qualify_schema(name)?;
                let exists = self.warehouse.catalog().schema(&db, &schema).is_ok();
                if exists && *if_not_exists {
                    StatementResult::status(format!("schema {db}.{schema} already exists"))
                } else {
                    let (d, s) = (db.clone(), schema.clone());
                    self.warehouse
                        .update_catalog(move |c| {
                            let database = c.databases.get_mut(&d).ok_or_else(|| {
                                StorageError::DatabaseNotFound { name: d.clone() }
                            })?;
                            if database.schemas.contains_key(&s) {
                                return Err(StorageError::SchemaExists {
                                    database: d.clone(),
                                    schema: s.clone(),
                                });
                            }
                            database
                                .schemas
                                .insert(s.clone(), strata_storage::SchemaEntry::new());
                            Ok(())
                        })
                        .await?;
                    StatementResult::status(format!("created schema {db}.{schema}"))
                }
            }
            SqlStatement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop(*object_type, names, *if_exists, *cascade).await?,
            SqlStatement::Use(u) => self.use_(u)?,
            SqlStatement::ShowDatabases { .. } => {
                let rows = self
                    .warehouse
                    .catalog()
                    .databases
                    .keys()
                    .map(|d| vec![d.clone()])
                    .collect();
                StatementResult::strings(&["database_name"], rows)
            }
            SqlStatement::ShowSchemas { show_options, .. } => {
                let db = match parent(show_options) {
                    Some(n) => single(n, "database")?,
                    None => self.database.clone(),
                };
                let catalog = self.warehouse.catalog();
                let rows = catalog
                    .database(&db)?
                    .schemas
                    .keys()
                    .map(|s| vec![db.clone(), s.clone()])
                    .collect();
                StatementResult::strings(&["database_name", "schema_name"], rows)
            }
            SqlStatement::ShowTables { show_options, .. } => {
                let (db, schema) = match parent(show_options) {
                    Some(n) => self.qualify_schema(n)?,
                    None => (self.database.clone(), self.schema.clone()),
                };
                let catalog = self.warehouse.catalog();
                let rows = catalog
                    .schema(&db, &schema)?
                    .tables
                    .keys()
                    .map(|t| vec![db.clone(), schema.clone(), t.clone()])
                    .collect();
                StatementResult::strings(&["database_name", "schema_name", "table_name"], rows)
            }
            SqlStatement::ExplainTable { table_name, .. } => self.describe(table_name).await?,
            SqlStatement::CreateTable(c) => self.create_table(c, None).await?,
            SqlStatement::CreateView(v) if v.materialized => {
                crate::mv::create(self, v, None).await?
            }
            SqlStatement::CreateView(v) => crate::views::create(self, v).await?,
            SqlStatement::CopyIntoSnowflake { .. } => crate::copy::copy_into(self, s).await?,
            SqlStatement::Truncate(t) => {
                let mut total = 0;
                for target in &t.table_names {
                    let (log, snapshot, name) = self.open_table_for_write(&target.name).await?;
                    let mut txn = Transaction::new("TRUNCATE");
                    txn.remove = snapshot.files.values().cloned().collect();
                    self.commit_removal(&name, &log, &snapshot, &txn).await?;
                    total += snapshot.row_count();
                }
                StatementResult::status(format!("truncated {total} rows"))
            }
            SqlStatement::Set(_) => {
                // DataFusion stores `SET strata.x = ...` as text; check it here, where a bad
                // value can be refused, rather than in the next query.
                let before = self.strata_options();
                let result = self.run_datafusion(s.clone(), params).await?;
                if let Err(e) = crate::mv::parse_duration(&self.strata_options().max_staleness) {
                    let state = self.ctx.state_ref();
                    state
                        .write()
                        .config_mut()
                        .options_mut()
                        .extensions
                        .insert(before);
                    return Err(e);
                }
                return Ok(result);
            }
            SqlStatement::Update(update) if update.from.is_some() => {
                let merge = crate::dml::update_from_as_merge(update)?;
                let (merged, _) = self.run_datafusion(merge, params).await?;
                crate::dml::updated_rows(&merged)
            }
            other => return self.run_datafusion(other.clone(), params).await,
        };
        Ok((result, none))
    }

    /// Commits `txn`, which removes files of table `name` (TRUNCATE, DROP PARTITION), unless
    /// other tables reference keys in them.
    pub(crate) async fn commit_removal(
        &self,
        name: &str,
        log: &strata_storage::TableLog,
        snapshot: &strata_storage::Snapshot,
        txn: &Transaction,
    ) -> Result<()> {
        crate::constraints::refuse_orphans(&self.warehouse, name, log, snapshot, &txn.remove)
            .await?;
        let committed = log.commit(snapshot, txn).await?;
        self.warehouse.remember(log.id(), &committed);
        Ok(())
    }

    /// Plans and runs a statement with DataFusion.
    async fn run_datafusion(
        &mut self,
        statement: SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<(StatementResult, ScanFigures)> {
        let plan = self.plan(statement, params).await?;
        if let Some(result) = crate::dml::run(self, &plan).await? {
            return Ok((result, ScanFigures::default()));
        }
        let df = self.ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let physical: Arc<dyn ExecutionPlan> = df.create_physical_plan().await?;
        self.progress.watch(&physical);
        let batches = collect(Arc::clone(&physical), self.ctx.task_ctx()).await?;
        let figures = scan_figures(&physical);
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        Ok((StatementResult { schema, batches }, figures))
    }

    /// The logical plan of a statement DataFusion runs, with parameters bound.
    /// Aggregates that a fresh materialized view holds are read from the view
    /// (see [`crate::mv::rewrite`]).
    pub(crate) async fn plan(
        &self,
        statement: SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<LogicalPlan> {
        let plan = self.plan_raw(statement, params).await?;
        crate::mv::rewrite::rewrite(self, plan).await
    }

    /// The logical plan of a statement as written, without reading materialized views in
    /// place of its aggregates (what refreshing a view must compute).
    pub(crate) async fn plan_raw(
        &self,
        statement: SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<LogicalPlan> {
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await?;
        Ok(match params {
            Some(p) => plan.with_param_values(p.clone())?,
            None => plan,
        })
    }

    /// Like [`Self::open_table`], for statements that change rows: refuses materialized views,
    /// whose rows only a refresh writes.
    pub(crate) async fn open_table_for_write(
        &self,
        name: &ObjectName,
    ) -> Result<(strata_storage::TableLog, strata_storage::Snapshot, String)> {
        let (log, snapshot, qualified) = self.open_table(name).await?;
        if crate::mv::Definition::of(&snapshot.metadata).is_some() {
            return Err(Error::Plan(crate::mv::read_only(&qualified)));
        }
        Ok((log, snapshot, qualified))
    }

    /// `db.schema` (or `schema` in the current database).
    fn qualify_schema(&self, name: &ObjectName) -> Result<(String, String)> {
        let parts = name_parts(name);
        match parts.as_slice() {
            [s] => Ok((self.database.clone(), s.clone())),
            [d, s] => Ok((d.clone(), s.clone())),
            _ => Err(Error::Plan(format!("invalid schema name {name}"))),
        }
    }

    /// `db.schema.table` with the current database and schema filled in.
    pub(crate) fn qualify_table(&self, name: &ObjectName) -> Result<(String, String, String)> {
        let parts = name_parts(name);
        match parts.as_slice() {
            [t] => Ok((self.database.clone(), self.schema.clone(), t.clone())),
            [s, t] => Ok((self.database.clone(), s.clone(), t.clone())),
            [d, s, t] => Ok((d.clone(), s.clone(), t.clone())),
            _ => Err(Error::Plan(format!("invalid table name {name}"))),
        }
    }

    /// The log and newest snapshot of an existing table.
    pub(crate) async fn open_table(
        &self,
        name: &ObjectName,
    ) -> Result<(strata_storage::TableLog, strata_storage::Snapshot, String)> {
        let (db, schema, table) = self.qualify_table(name)?;
        let catalog = self.warehouse.catalog();
        let entry = catalog.table(&db, &schema, &table)?;
        let qualified = format!("{db}.{schema}.{table}");
        let log = self.warehouse.table_log(&entry.id, &qualified);
        let snapshot = self.warehouse.snapshot(&log).await?;
        Ok((log, snapshot, qualified))
    }

    /// Strata's settings in this session (`SET strata.<name> = ...`).
    pub fn strata_options(&self) -> crate::mv::rewrite::StrataOptions {
        self.ctx
            .state()
            .config_options()
            .extensions
            .get::<crate::mv::rewrite::StrataOptions>()
            .cloned()
            .unwrap_or_default()
    }

    /// Makes `database.schema` the current schema (unqualified names resolve there).
    pub(crate) fn set_schema(&mut self, database: &str, schema: &str) -> Result<()> {
        let name = ObjectName::from(vec![
            datafusion::sql::sqlparser::ast::Ident::with_quote('"', database),
            datafusion::sql::sqlparser::ast::Ident::with_quote('"', schema),
        ]);
        self.use_(&Use::Schema(name)).map(|_| ())
    }

    fn use_(&mut self, u: &Use) -> Result<StatementResult> {
        let catalog = self.warehouse.catalog();
        let (db, schema) = match u {
            Use::Database(n) | Use::Catalog(n) => {
                (single(n, "database")?, DEFAULT_SCHEMA.to_string())
            }
            Use::Schema(n) => self.qualify_schema(n)?,
            Use::Object(n) => {
                let parts = name_parts(n);
                match parts.as_slice() {
                    [one] if catalog.databases.contains_key(one) => {
                        (one.clone(), DEFAULT_SCHEMA.to_string())
                    }
                    [one] => (self.database.clone(), one.clone()),
                    _ => self.qualify_schema(n)?,
                }
            }
            other => return Err(Error::Unsupported(format!("{other}"))),
        };
        catalog.schema(&db, &schema)?;
        {
            let state = self.ctx.state_ref();
            let mut state = state.write();
            let options = state.config_mut().options_mut();
            options.catalog.default_catalog = db.clone();
            options.catalog.default_schema = schema.clone();
        }
        self.database = db;
        self.schema = schema;
        Ok(StatementResult::status(format!(
            "using {}.{}",
            self.database, self.schema
        )))
    }

    /// `DROP DATABASE | SCHEMA | TABLE a, b, ...`: all names in one catalog commit, so a failing
    /// name leaves every object in place.
    async fn drop(
        &mut self,
        object_type: ObjectType,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
    ) -> Result<StatementResult> {
        // (database, schema, table); unused parts are empty.
        let targets: Vec<(String, String, String)> = names
            .iter()
            .map(|name| match object_type {
                ObjectType::Database => {
                    Ok((single(name, "database")?, String::new(), String::new()))
                }
                ObjectType::Schema => {
                    let (d, s) = self.qualify_schema(name)?;
                    Ok((d, s, String::new()))
                }
                ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => {
                    self.qualify_table(name)
                }
                other => Err(Error::Unsupported(format!("DROP {other}"))),
            })
            .collect::<Result<_>>()?;
        // Which targets are materialized views (tables whose metadata holds a definition).
        let mut materialized = std::collections::HashSet::new();
        if matches!(
            object_type,
            ObjectType::Table | ObjectType::View | ObjectType::MaterializedView
        ) {
            let catalog = self.warehouse.catalog();
            for (d, s, t) in &targets {
                if let Ok(entry) = catalog.table(d, s, t) {
                    let log = self.warehouse.table_log(&entry.id, t);
                    let snapshot = self.warehouse.snapshot(&log).await?;
                    if crate::mv::Definition::of(&snapshot.metadata).is_some() {
                        materialized.insert((d.clone(), s.clone(), t.clone()));
                    }
                }
            }
        }
        if object_type == ObjectType::Table {
            for (d, s, t) in &targets {
                let name = [d.clone(), s.clone(), t.clone()];
                crate::constraints::refuse_drop(&self.warehouse, &name).await?;
            }
        }
        let mut dropped = Vec::new();
        self.warehouse
            .update_catalog(|c| {
                dropped.clear();
                for (d, s, t) in &targets {
                    let exists = match object_type {
                        ObjectType::Database => c.database(d).is_ok(),
                        ObjectType::Schema => c.schema(d, s).is_ok(),
                        _ => c.schema(d, s).is_ok_and(|e| e.contains(t)),
                    };
                    if !exists && if_exists {
                        continue;
                    }
                    match object_type {
                        ObjectType::Database => {
                            let has_tables = c.database(d)?.schemas.values().any(|s| !s.is_empty());
                            if has_tables && !cascade {
                                return Err(StorageError::NotEmpty {
                                    what: "database",
                                    name: d.clone(),
                                });
                            }
                            c.databases.remove(d);
                            dropped.push(format!("database {d}"));
                        }
                        ObjectType::Schema => {
                            if !c.schema(d, s)?.is_empty() && !cascade {
                                return Err(StorageError::NotEmpty {
                                    what: "schema",
                                    name: format!("{d}.{s}"),
                                });
                            }
                            c.database_mut(d)?.schemas.remove(s);
                            dropped.push(format!("schema {d}.{s}"));
                        }
                        _ => {
                            let name = format!("{d}.{s}.{t}");
                            let is = if c.view(d, s, t).is_some() {
                                ObjectType::View
                            } else if c.table(d, s, t).is_err() {
                                return Err(match object_type {
                                    ObjectType::View => StorageError::ViewNotFound { name },
                                    _ => StorageError::TableNotFound { name },
                                });
                            } else if materialized.contains(&(d.clone(), s.clone(), t.clone())) {
                                ObjectType::MaterializedView
                            } else {
                                ObjectType::Table
                            };
                            if is != object_type {
                                let (is, hint) = match is {
                                    ObjectType::View => ("view", "DROP VIEW"),
                                    ObjectType::MaterializedView => {
                                        ("materialized view", "DROP MATERIALIZED VIEW")
                                    }
                                    _ => ("table", "DROP TABLE"),
                                };
                                return Err(StorageError::WrongKind { name, is, hint });
                            }
                            let schema = c.schema_mut(d, s)?;
                            if is == ObjectType::View {
                                schema.views.remove(t);
                            } else {
                                schema.tables.remove(t);
                            }
                            dropped.push(format!("{} {name}", is.to_string().to_lowercase()));
                        }
                    }
                }
                Ok(())
            })
            .await?;
        // A session whose database or schema was dropped falls back to main.public.
        if self
            .warehouse
            .catalog()
            .schema(&self.database, &self.schema)
            .is_err()
        {
            let main = ObjectName::from(vec![datafusion::sql::sqlparser::ast::Ident::new(
                DEFAULT_DATABASE,
            )]);
            self.use_(&Use::Database(main))?;
        }
        Ok(StatementResult::status(if dropped.is_empty() {
            "nothing to drop".to_string()
        } else {
            format!("dropped {}", dropped.join(", "))
        }))
    }

    async fn describe(&self, name: &ObjectName) -> Result<StatementResult> {
        let (_, snapshot, _) = match self.open_table(name).await {
            Ok(table) => table,
            // Not a stored table: a view or a system table has columns too.
            Err(not_a_table) => return self.describe_relation(name, not_a_table).await,
        };
        let key = snapshot
            .metadata
            .partitioning
            .as_ref()
            .map(|p| p.column.clone());
        let rows = snapshot
            .metadata
            .columns
            .iter()
            .filter(|c| !c.name.starts_with(crate::mv::HIDDEN_PREFIX))
            .map(|c| {
                vec![
                    c.name.clone(),
                    sql_name(&c.data_type, c.sql_type.as_deref()),
                    if c.nullable { "YES" } else { "NO" }.to_string(),
                    if key.as_deref() == Some(c.name.as_str()) {
                        "RANGE PARTITION KEY".to_string()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        Ok(describe_result(rows))
    }

    /// `DESCRIBE` of a view or system table, from the schema DataFusion plans it with.
    async fn describe_relation(
        &self,
        name: &ObjectName,
        not_a_table: Error,
    ) -> Result<StatementResult> {
        let (db, schema, table) = self.qualify_table(name)?;
        let reference = datafusion::common::TableReference::full(db, schema, table);
        let Ok(provider) = self.ctx.table_provider(reference).await else {
            return Err(not_a_table);
        };
        let rows = provider
            .schema()
            .fields()
            .iter()
            .map(|f| {
                vec![
                    f.name().clone(),
                    sql_name(f.data_type(), None),
                    if f.is_nullable() { "YES" } else { "NO" }.to_string(),
                    String::new(),
                ]
            })
            .collect();
        Ok(describe_result(rows))
    }

    async fn create_table(
        &mut self,
        create: &CreateTable,
        partitioning: Option<&PartitionClause>,
    ) -> Result<StatementResult> {
        let (db, schema, table) = self.qualify_table(&create.name)?;
        let qualified = format!("{db}.{schema}.{table}");
        let catalog = self.warehouse.catalog();
        catalog.schema(&db, &schema)?;
        let exists = catalog.table(&db, &schema, &table).is_ok();
        if exists && create.if_not_exists {
            return Ok(StatementResult::status(format!(
                "table {qualified} already exists"
            )));
        }
        if exists && !create.or_replace {
            return Err(StorageError::TableExists { name: qualified }.into());
        }
        // Columns: declared, or from the query.
        let mut columns: Vec<ColumnDef> = create
            .columns
            .iter()
            .map(|c| {
                let name = parser::normalize(&c.name);
                let (data_type, sql_type) = arrow_type(&c.data_type, &name)?;
                let not_null = c.options.iter().any(|o| {
                    matches!(
                        o.option,
                        ColumnOption::NotNull | ColumnOption::PrimaryKey(_)
                    )
                });
                Ok(ColumnDef {
                    name,
                    data_type,
                    nullable: !not_null,
                    sql_type,
                })
            })
            .collect::<Result<_>>()?;
        let source = match &create.query {
            Some(q) => {
                let plan = self
                    .ctx
                    .state()
                    .statement_to_plan(DfStatement::Statement(Box::new(SqlStatement::Query(
                        q.clone(),
                    ))))
                    .await?;
                let df = self.ctx.execute_logical_plan(plan).await?;
                if columns.is_empty() {
                    columns = column_defs(df.schema().as_arrow().fields());
                } else if columns.len() != df.schema().fields().len() {
                    return Err(Error::Plan(format!(
                        "CREATE TABLE {qualified} declares {} columns but its query returns {}",
                        columns.len(),
                        df.schema().fields().len()
                    )));
                }
                Some(df)
            }
            None => None,
        };
        if columns.is_empty() {
            return Err(Error::Plan(format!("table {qualified} needs columns")));
        }
        let mut names = std::collections::HashSet::new();
        for c in &columns {
            if !names.insert(c.name.clone()) {
                return Err(Error::Plan(format!(
                    "column '{}' appears twice in {qualified}",
                    c.name
                )));
            }
        }
        let (current_db, current_schema) = (self.database.clone(), self.schema.clone());
        let mut constraints = crate::constraints::declared(
            create,
            &[db.clone(), schema.clone(), table.clone()],
            &mut columns,
            |name| crate::constraints::qualify(name, &current_db, &current_schema),
            &self.warehouse,
        )
        .await?;
        let properties = crate::scd::declare(create, &table, &mut columns, &mut constraints)?;
        let partitioning = partitioning
            .map(|p| partition_layout(&qualified, p, &columns))
            .transpose()?;
        let metadata = TableMetadata {
            columns,
            partitioning,
            properties,
            constraints,
        };
        let warehouse = &self.warehouse;
        let rows = warehouse
            .create_table(
                &db,
                &schema,
                &table,
                metadata,
                create.or_replace,
                async |log, snapshot| match source {
                    Some(df) => {
                        let stream = self.progress.execute(df).await?;
                        write_batches(
                            warehouse,
                            &qualified,
                            log,
                            &snapshot,
                            stream,
                            Transaction::new("CREATE TABLE AS SELECT"),
                        )
                        .await
                    }
                    None => Ok((0, snapshot)),
                },
            )
            .await?;
        Ok(if create.query.is_some() {
            StatementResult::status(format!("created table {qualified} with {rows} rows"))
        } else {
            StatementResult::status(format!("created table {qualified}"))
        })
    }

    async fn vacuum(
        &self,
        table: Option<&ObjectName>,
        retain_hours: Option<f64>,
    ) -> Result<StatementResult> {
        let hours = retain_hours.unwrap_or(7.0 * 24.0);
        // Beyond ~100 years nothing could be old enough: keep everything.
        let retention = chrono::Duration::milliseconds(
            (hours.clamp(0.0, 24.0 * 365.0 * 100.0) * 3_600_000.0) as i64,
        );
        let store = self.warehouse.object_store();
        let mut report = strata_storage::vacuum::VacuumReport::default();
        let logs: Vec<strata_storage::TableLog> = match table {
            Some(name) => vec![self.open_table(name).await?.0],
            None => {
                let catalog = self.warehouse.catalog();
                let r = strata_storage::vacuum::vacuum_dropped_tables(&store, &catalog, retention)
                    .await?;
                report.files_deleted += r.files_deleted;
                report.bytes_deleted += r.bytes_deleted;
                catalog
                    .table_ids()
                    .map(|id| self.warehouse.table_log(id, &id.0))
                    .collect()
            }
        };
        for log in logs {
            let r = strata_storage::vacuum::vacuum_table(&store, &log, retention).await?;
            report.files_deleted += r.files_deleted;
            report.bytes_deleted += r.bytes_deleted;
        }
        Ok(StatementResult::strings(
            &["files_deleted", "bytes_deleted"],
            vec![vec![
                report.files_deleted.to_string(),
                report.bytes_deleted.to_string(),
            ]],
        ))
    }
}

/// True for statements that may change table rows (after which `on_commit` materialized
/// views refresh).
fn changes_data(statement: &Statement) -> bool {
    match statement {
        Statement::Sql(s) => {
            matches!(
                s.as_ref(),
                SqlStatement::Insert(_)
                    | SqlStatement::Update(_)
                    | SqlStatement::Delete(_)
                    | SqlStatement::Merge(_)
                    | SqlStatement::Truncate(_)
                    | SqlStatement::CopyIntoSnowflake { .. }
                    | SqlStatement::Drop { .. }
            ) || matches!(s.as_ref(), SqlStatement::CreateTable(c) if c.or_replace)
        }
        Statement::DropPartitions { .. } | Statement::ApplyChanges(_) => true,
        Statement::CreatePartitioned { .. }
        | Statement::AddPartitions { .. }
        | Statement::Vacuum { .. }
        | Statement::Refresh { .. } => false,
    }
}

/// A table of strings for other modules.
fn single(name: &ObjectName, what: &str) -> Result<String> {
    let parts = name_parts(name);
    match parts.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Plan(format!("invalid {what} name {name}"))),
    }
}

fn parent(options: &ShowStatementOptions) -> Option<&ObjectName> {
    options
        .show_in
        .as_ref()
        .and_then(|ShowStatementIn { parent_name, .. }| parent_name.as_ref())
}

pub(crate) fn partition_layout(
    table: &str,
    clause: &PartitionClause,
    columns: &[ColumnDef],
) -> Result<Partitioning> {
    let column = columns
        .iter()
        .find(|c| c.name == clause.column)
        .ok_or_else(|| {
            Error::Plan(format!(
                "PARTITION BY RANGE ({}): table {table} has no such column",
                clause.column
            ))
        })?;
    let key = strata_storage::KeyType::for_data_type(&column.data_type);
    let interval = clause
        .interval
        .map(|i| match (i, key) {
            (IntervalSpec::Months(n), _) => Ok(Interval::Months(n)),
            (IntervalSpec::Days(n), Some(strata_storage::KeyType::Date)) => Ok(Interval::Width(n)),
            (IntervalSpec::Days(n), Some(strata_storage::KeyType::Timestamp(u))) => {
                Ok(Interval::Width(n * 86_400 * ticks_per_second(u)))
            }
            (IntervalSpec::Hours(n), Some(strata_storage::KeyType::Timestamp(u))) => {
                Ok(Interval::Width(n * 3_600 * ticks_per_second(u)))
            }
            (IntervalSpec::Number(n), Some(strata_storage::KeyType::Integer)) => {
                Ok(Interval::Width(n))
            }
            (spec, _) => Err(Error::Plan(format!(
                "INTERVAL {spec:?} does not fit column '{}' of type {}",
                column.name,
                sql_name(&column.data_type, None)
            ))),
        })
        .transpose()?;
    Ok(Partitioning::new(
        table,
        &column.name,
        &column.data_type,
        &clause.partitions,
        interval,
    )?)
}

fn ticks_per_second(unit: arrow::datatypes::TimeUnit) -> i64 {
    match unit {
        arrow::datatypes::TimeUnit::Second => 1,
        arrow::datatypes::TimeUnit::Millisecond => 1_000,
        arrow::datatypes::TimeUnit::Microsecond => 1_000_000,
        arrow::datatypes::TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// The result of `DESCRIBE`: a row per column.
fn describe_result(rows: Vec<Vec<String>>) -> StatementResult {
    StatementResult::strings(&["column_name", "data_type", "is_nullable", "key"], rows)
}
