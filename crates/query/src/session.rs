//! `Session`: one user's DataFusion context over a warehouse, and how it plans SQL.
//!
//! The session layer builds the `SessionContext` (Strata's catalog providers, optimizer rules,
//! table functions, `SET strata.*` options, the warehouse's runtime and object store), keeps
//! the current database and schema, qualifies names, and plans statements as written. Running
//! statements is the statement layer's ([`crate::statement`]), which adds `Session::sql` and
//! friends on top; the catalog, which must plan stored SQL (views, materialized views' staleness)
//! without naming a session, reaches this layer through the [`Planner`] it implements here.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::common::utils::datafusion_strsim::levenshtein;
use datafusion::error::DataFusionError;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, Statement as SqlStatement};
use strata_storage::{DEFAULT_DATABASE, DEFAULT_SCHEMA, Snapshot, TableLog};

use crate::catalog::materialized_view::{Definition, read_only};
use crate::catalog::planner::Planner;
use crate::catalog::{StrataCatalogList, User, Viewer};
use crate::config::StrataOptions;
use crate::error::{Error, Result};
use crate::parser::name_parts;
use crate::progress::Progress;
use crate::rules;
use crate::table::WAREHOUSE_STORE_URL;
use crate::warehouse::Warehouse;

/// A SQL session: current database and schema, and a DataFusion context over the warehouse.
pub struct Session {
    warehouse: Warehouse,
    ctx: SessionContext,
    id: String,
    database: String,
    schema: String,
    progress: Progress,
    /// Who runs the statements: logged with each, and deciding what `system.query_log` shows.
    viewer: Viewer,
    /// The query log id of the last statement run to its end.
    last_query_id: Option<String>,
    /// What the running statement did on the cluster, for its query log record.
    cluster_job: Option<crate::cluster::JobFigures>,
    /// How this session's statements arrive, as the query log records it.
    protocol: &'static str,
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

/// Registers Strata's functions (its own, JSON's, the checked `sum`) on `ctx`.
fn register_functions(ctx: &SessionContext) {
    datafusion_functions_json::register_all(&mut *ctx.state_ref().write())
        .expect("JSON functions register");
    crate::functions::register(ctx);
    crate::rules::checked_sum::register(ctx);
}

/// A session state with Strata's functions and nothing of a warehouse: what the scheduler and
/// executors of a cluster resolve the functions a plan names with.
pub(crate) fn function_state(config: SessionConfig) -> SessionState {
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    register_functions(&ctx);
    let planned = rules::checked_integers::planned_functions()
        .into_iter()
        .chain(rules::decimal_arithmetic::planned_functions());
    for function in planned {
        ctx.register_udf(function.as_ref().clone());
    }
    ctx.state()
}

impl Session {
    /// A session on `warehouse`, in `main.public` (see [`Warehouse::session`]).
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
        // DataFusion 55 prunes a global aggregate's input by the running MIN/MAX of its plain
        // column arguments even when another aggregate (`MAX(a + 1)`, `MIN(-a)`) needs the
        // rows pruned: wrong answers (apache/datafusion#24816, fixed after 55). Exact MIN/MAX
        // come from file statistics anyway.
        optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        // Build sides are picked from Strata's statistics registry (`rules::join_statistics`).
        optimizer.use_statistics_registry = true;
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
            .with_option_extension(StrataOptions::default())
            .with_extension(warehouse.scan_cache());
        for (name, value) in &warehouse.options().settings {
            // Checked when the warehouse opened.
            let _ = config.options_mut().set(name, value);
        }
        let url = url::Url::parse(WAREHOUSE_STORE_URL).expect("static URL parses");
        // Embedded, the session is the warehouse's owner: the OS user, an admin.
        let viewer = Viewer::new(User {
            name: std::env::var("USER").unwrap_or_else(|_| "local".to_string()),
            admin: true,
        });
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(warehouse.runtime())
            .with_default_features()
            // DataFusion's analyzer rules with Strata's among them (see `rules::analyzer_rules`).
            .with_analyzer_rules(rules::analyzer_rules())
            .with_catalog_list(Arc::new(StrataCatalogList::new(
                warehouse.clone(),
                Arc::new(SessionPlanner),
                viewer.clone(),
            )))
            .with_object_store(&url, warehouse.object_store())
            .with_statistics_registry(rules::join_statistics::registry());
        // DataFusion's optimizer rules with Strata's among them (see `rules::logical_rules`).
        state = state.with_optimizer_rules(rules::logical_rules());
        // DataFusion's physical rules with Strata's among them (see `rules::physical_rules`).
        state = state.with_physical_optimizer_rules(rules::physical_rules());
        let state = state.build();
        let ctx = SessionContext::new_with_state(state);
        register_functions(&ctx);
        rules::register_table_functions(&ctx);
        ctx.register_udtf(
            "search",
            Arc::new(crate::catalog::tables::Search {
                warehouse: warehouse.clone(),
            }),
        );
        Self {
            warehouse,
            ctx,
            id: uuid::Uuid::new_v4().to_string(),
            database: DEFAULT_DATABASE.to_string(),
            schema: DEFAULT_SCHEMA.to_string(),
            progress: Progress::default(),
            viewer,
            last_query_id: None,
            cluster_job: None,
            protocol: "embedded",
        }
    }

    /// The `system.query_log` id of the last statement this session ran or started streaming.
    pub fn last_query_id(&self) -> Option<&str> {
        self.last_query_id.as_deref()
    }

    /// Notes what the running statement did on the cluster (see [`crate::cluster::run`]).
    pub(crate) fn set_cluster_job(&mut self, job: crate::cluster::JobFigures) {
        self.cluster_job = Some(job);
    }

    /// What the statement that just ended did on the cluster, if it ran there.
    pub(crate) fn take_cluster_job(&mut self) -> Option<crate::cluster::JobFigures> {
        self.cluster_job.take()
    }

    pub(crate) fn set_last_query_id(&mut self, id: String) {
        self.last_query_id = Some(id);
    }

    /// Runs this session's statements as `name`: they are logged under it, and
    /// `system.query_log` shows only that user's statements unless `admin`. A server calls
    /// this when a client signs in.
    pub fn set_user(&self, name: &str, admin: bool) {
        self.viewer.set(User {
            name: name.to_string(),
            admin,
        });
    }

    /// Records this session's statements as arriving by `protocol` (`flight`, `postgres`,
    /// `http`; `embedded` until a server says otherwise): the query log's `protocol` column.
    pub fn set_protocol(&mut self, protocol: &'static str) {
        self.protocol = protocol;
    }

    /// How this session's statements arrive.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// The user this session's statements run as.
    pub fn user_name(&self) -> String {
        self.viewer.user().name
    }

    /// Whether this session's user has the admin role.
    pub fn is_admin(&self) -> bool {
        self.viewer.user().admin
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

    /// The session's id, as the query log shows it.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The logical plan of a statement as written, with parameters bound. This is what
    /// refreshing a view must compute; statements plan through `statement`'s plan step, which
    /// also reads fresh materialized views in place of aggregates they hold.
    pub(crate) async fn plan_raw(
        &self,
        statement: SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<LogicalPlan> {
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await
            .map_err(|e| self.with_suggestions(e))?;
        Ok(match params {
            Some(p) => plan.with_param_values(p.clone())?,
            None => plan,
        })
    }

    /// DataFusion's "table 'x' not found" as [`Error::TableNotFound`], with the names of the
    /// same schema (or of the current one) that are close to it; any other error as it is.
    fn with_suggestions(&self, e: DataFusionError) -> Error {
        let missing = match e.find_root() {
            DataFusionError::Plan(message) => message
                .strip_prefix("table '")
                .and_then(|m| m.strip_suffix("' not found"))
                .map(str::to_string),
            _ => None,
        };
        let Some(name) = missing else {
            return e.into();
        };
        let parts: Vec<&str> = name.splitn(3, '.').collect();
        let (database, schema, table) = match parts.as_slice() {
            [d, s, t] => (*d, *s, *t),
            _ => (self.database.as_str(), self.schema.as_str(), name.as_str()),
        };
        let catalog = self.warehouse.catalog();
        let candidates: Vec<String> = catalog
            .schema(database, schema)
            .map(|s| s.tables.keys().chain(s.views.keys()).cloned().collect())
            .unwrap_or_default();
        let shown = |t: &str| {
            if (database, schema) == (self.database.as_str(), self.schema.as_str()) {
                t.to_string()
            } else {
                format!("{database}.{schema}.{t}")
            }
        };
        Error::TableNotFound {
            suggestions: near_names(table, &candidates)
                .into_iter()
                .map(|t| shown(&t))
                .collect(),
            name,
        }
    }

    /// Like [`Self::open_table`], for statements that change rows: refuses materialized views,
    /// whose rows only a refresh writes.
    pub(crate) async fn open_table_for_write(
        &self,
        name: &ObjectName,
    ) -> Result<(TableLog, Snapshot, String)> {
        let (log, snapshot, qualified) = self.open_table(name).await?;
        if Definition::of(&snapshot.metadata).is_some() {
            return Err(Error::Plan(read_only(&qualified)));
        }
        Ok((log, snapshot, qualified))
    }

    /// `db.schema` (or `schema` in the current database).
    pub(crate) fn qualify_schema(&self, name: &ObjectName) -> Result<(String, String)> {
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
    ) -> Result<(TableLog, Snapshot, String)> {
        let (db, schema, table) = self.qualify_table(name)?;
        let catalog = self.warehouse.catalog();
        let entry = catalog.table(&db, &schema, &table)?;
        let qualified = format!("{db}.{schema}.{table}");
        let log = self.warehouse.table_log(&entry.id, &qualified);
        let snapshot = self.warehouse.snapshot(&log).await?;
        Ok((log, snapshot, qualified))
    }

    /// Strata's settings in this session (`SET strata.<name> = ...`).
    pub fn strata_options(&self) -> StrataOptions {
        self.ctx
            .state()
            .config_options()
            .extensions
            .get::<StrataOptions>()
            .cloned()
            .unwrap_or_default()
    }

    /// How this session's statements write data files: the warehouse's options under this
    /// session's caps (`strata.max_partitions_per_statement`).
    pub(crate) fn write_options(&self) -> strata_storage::WriteOptions {
        self.warehouse().write_options(&self.strata_options())
    }

    /// Makes `database.schema` the current schema (unqualified names resolve there); fails if
    /// it does not exist.
    pub fn set_schema(&mut self, database: &str, schema: &str) -> Result<()> {
        self.warehouse.catalog().schema(database, schema)?;
        {
            let state = self.ctx.state_ref();
            let mut state = state.write();
            let options = state.config_mut().options_mut();
            options.catalog.default_catalog = database.to_string();
            options.catalog.default_schema = schema.to_string();
        }
        self.database = database.to_string();
        self.schema = schema.to_string();
        Ok(())
    }
}

/// The names among `candidates` within a few edits of `name` (case aside), closest first, at
/// most three: what DuckDB offers as "did you mean".
fn near_names(name: &str, candidates: &[String]) -> Vec<String> {
    let wanted = name.to_lowercase();
    let allowed = (wanted.chars().count() / 3).clamp(1, 3);
    let mut near: Vec<(usize, &String)> = candidates
        .iter()
        .map(|c| (levenshtein(&wanted, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= allowed)
        .collect();
    near.sort();
    near.into_iter().take(3).map(|(_, c)| c.clone()).collect()
}

impl Warehouse {
    /// A new SQL session on this warehouse (database `main`, schema `public`).
    ///
    /// Defined here rather than in [`crate::warehouse`]: the warehouse is state below the
    /// session layer and does not name sessions.
    pub fn session(&self) -> Session {
        Session::new(self.clone())
    }
}

/// Plans stored SQL for the catalog with a fresh session (so the current schema and settings of
/// the statement being planned do not leak into a view's definition).
#[derive(Debug)]
pub(crate) struct SessionPlanner;

#[async_trait]
impl Planner for SessionPlanner {
    async fn plan_stored(
        &self,
        warehouse: &Warehouse,
        database: &str,
        schema: &str,
        query: SqlStatement,
    ) -> Result<LogicalPlan> {
        let mut session = warehouse.session();
        session.set_schema(database, schema)?;
        session.plan_raw(query, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::near_names;

    #[test]
    fn near_names_are_a_few_edits_away_closest_first() {
        let names: Vec<String> = ["sales", "sale_items", "customers", "orders"]
            .map(String::from)
            .to_vec();
        assert_eq!(near_names("sale", &names), ["sales"]);
        assert_eq!(near_names("Custmers", &names), ["customers"]);
        assert!(near_names("inventory", &names).is_empty());
        assert!(near_names("x", &[]).is_empty());
    }
}
