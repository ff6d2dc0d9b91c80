//! Materialized views: a query's result kept as a Strata table, refreshed incrementally.
//!
//! `CREATE MATERIALIZED VIEW mv [PARTITION BY RANGE (...)] [WITH (refresh = ...)] AS SELECT`
//! creates an ordinary table whose metadata properties hold the definition: the query, the
//! schema it was written in, the refresh mode, and the version of every source table the
//! stored rows reflect. Because a refresh writes the rows and those versions in one table
//! commit, the view is never half-refreshed, and staleness is a comparison of versions.
//!
//! For each `AVG(x)` in the select list the table also keeps hidden `SUM(x)` and `COUNT(x)`
//! columns (named [`HIDDEN_PREFIX`]...), so averages can be folded and rolled up exactly;
//! readers see the view through [`MaterializedViewTable`], which hides them and refuses
//! writes. How a refresh decides between folding, recomputing partitions and recomputing
//! everything is in [`refresh`].
//!
//! Refresh modes: `manual` (only `REFRESH MATERIALIZED VIEW`), `on_commit` (after each
//! statement that changes a source, in the same process), and `every <n> <unit>` (run by
//! [`run_scheduler`] inside `strata serve`, retried with backoff when it fails).

pub(crate) mod refresh;
pub mod rewrite;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::Statistics;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{
    CreateTableOptions, CreateView, DuplicateTreatment, Expr as SqlExpr, FunctionArguments, Ident,
    ObjectName, Query, SelectItem, SetExpr, SqlOption, Statement as SqlStatement,
};
use serde::{Deserialize, Serialize};
use strata_storage::{Error as StorageError, TableMetadata, Transaction};

use crate::error::{Error, Result};
use crate::parser::{self, PartitionClause};
use crate::progress::Progress;
use crate::session::{Session, StatementResult};
use crate::table::{StrataTable, write_batches};
use crate::types::column_defs;
use crate::warehouse::Warehouse;

pub(crate) use refresh::refresh;

/// Columns whose name starts with this are refresh state, hidden from readers.
pub const HIDDEN_PREFIX: &str = "__strata_";

const QUERY: &str = "mv.query";
const STORAGE_QUERY: &str = "mv.storage_query";
const DATABASE: &str = "mv.database";
const SCHEMA: &str = "mv.schema";
const REFRESH_MODE: &str = "mv.refresh";
const SOURCES: &str = "mv.sources";
const REFRESHED_AT: &str = "mv.refreshed_at";
const LAST_REFRESH: &str = "mv.last_refresh";
const FINGERPRINT: &str = "mv.fingerprint";

/// When a view refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMode {
    /// Only on `REFRESH MATERIALIZED VIEW`.
    Manual,
    /// After every statement that changes one of its sources.
    OnCommit,
    /// When this long has passed since the last refresh (`strata serve` runs these).
    Every(Duration),
}

impl RefreshMode {
    /// Parses `manual`, `on_commit` / `on commit`, or `every 5 minutes` (seconds, minutes,
    /// hours, days; singular or plural).
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || {
            Error::Plan(format!(
                "refresh = '{text}': expected 'manual', 'on_commit' or 'every <n> \
                 seconds|minutes|hours|days'"
            ))
        };
        match t.as_str() {
            "manual" => return Ok(Self::Manual),
            "on_commit" | "on commit" => return Ok(Self::OnCommit),
            _ => {}
        }
        let rest = t.strip_prefix("every").ok_or_else(bad)?;
        match parse_duration(rest) {
            Ok(d) if !d.is_zero() => Ok(Self::Every(d)),
            _ => Err(bad()),
        }
    }
}

/// Parses a duration such as `5 minutes`, `1 hour`, `30 seconds`, `2 days` (singular or plural,
/// `sec` and `min` too).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || {
        Error::Plan(format!(
            "'{text}' is not a duration such as '5 minutes' (seconds, minutes, hours, days)"
        ))
    };
    let mut words = text.split_whitespace();
    let n: u64 = words.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let unit = match words
        .next()
        .ok_or_else(bad)?
        .to_ascii_lowercase()
        .trim_end_matches('s')
    {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        _ => return Err(bad()),
    };
    if words.next().is_some() {
        return Err(bad());
    }
    n.checked_mul(unit)
        .map(Duration::from_secs)
        .ok_or_else(|| Error::Plan(format!("'{text}' is too long a duration")))
}

impl std::fmt::Display for RefreshMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Manual => write!(f, "manual"),
            Self::OnCommit => write!(f, "on_commit"),
            Self::Every(d) => {
                let s = d.as_secs();
                let (n, unit) = if s % 86_400 == 0 {
                    (s / 86_400, "day")
                } else if s % 3_600 == 0 {
                    (s / 3_600, "hour")
                } else if s % 60 == 0 {
                    (s / 60, "minute")
                } else {
                    (s, "second")
                };
                write!(f, "every {n} {unit}{}", if n == 1 { "" } else { "s" })
            }
        }
    }
}

/// The version of a source table a view reflects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceVersion {
    pub id: String,
    pub version: u64,
}

/// What the last refresh attempt did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRefresh {
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
    /// `full` or `incremental`.
    pub kind: String,
    pub detail: String,
    pub error: Option<String>,
}

/// A materialized view's definition and refresh state, as kept in its table's properties.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The query as written.
    pub query: String,
    /// The query with the hidden state columns: what the table stores.
    pub storage_query: String,
    /// Where unqualified names in the query resolve.
    pub database: String,
    pub schema: String,
    pub refresh: RefreshMode,
    /// Source tables (`db.schema.table`) and the versions the rows reflect.
    pub sources: BTreeMap<String, SourceVersion>,
    /// The last successful refresh.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// [`refresh::fingerprint`] of the query the rows were computed with.
    pub fingerprint: Option<String>,
    pub last: Option<LastRefresh>,
}

impl Definition {
    /// The definition in a table's metadata, if the table is a materialized view.
    pub fn of(metadata: &TableMetadata) -> Option<Self> {
        let p = &metadata.properties;
        let get = |k: &str| p.get(k).cloned();
        Some(Self {
            query: get(QUERY)?,
            storage_query: get(STORAGE_QUERY)?,
            database: get(DATABASE)?,
            schema: get(SCHEMA)?,
            refresh: RefreshMode::parse(p.get(REFRESH_MODE)?).ok()?,
            sources: p
                .get(SOURCES)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
            refreshed_at: p
                .get(REFRESHED_AT)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc)),
            last: p
                .get(LAST_REFRESH)
                .and_then(|s| serde_json::from_str(s).ok()),
            fingerprint: p.get(FINGERPRINT).cloned(),
        })
    }

    /// Writes the definition into table properties.
    pub fn write_to(&self, properties: &mut BTreeMap<String, String>) {
        properties.insert(QUERY.into(), self.query.clone());
        properties.insert(STORAGE_QUERY.into(), self.storage_query.clone());
        properties.insert(DATABASE.into(), self.database.clone());
        properties.insert(SCHEMA.into(), self.schema.clone());
        properties.insert(REFRESH_MODE.into(), self.refresh.to_string());
        properties.insert(
            SOURCES.into(),
            serde_json::to_string(&self.sources).expect("sources serialise"),
        );
        match self.refreshed_at {
            Some(t) => properties.insert(REFRESHED_AT.into(), t.to_rfc3339()),
            None => properties.remove(REFRESHED_AT),
        };
        match &self.fingerprint {
            Some(f) => properties.insert(FINGERPRINT.into(), f.clone()),
            None => properties.remove(FINGERPRINT),
        };
        match &self.last {
            Some(l) => properties.insert(
                LAST_REFRESH.into(),
                serde_json::to_string(l).expect("refresh record serialises"),
            ),
            None => properties.remove(LAST_REFRESH),
        };
    }
}

/// `CREATE [OR REPLACE] MATERIALIZED VIEW [IF NOT EXISTS] mv [PARTITION BY RANGE (...)]
/// [WITH (refresh = '...')] AS query`: creates the view's table and fills it.
pub(crate) async fn create(
    session: &mut Session,
    view: &CreateView,
    partitioning: Option<&PartitionClause>,
) -> Result<StatementResult> {
    let (db, schema, name) = session.qualify_table(&view.name)?;
    let qualified = format!("{db}.{schema}.{name}");
    let catalog = session.warehouse().catalog();
    let entry = catalog.schema(&db, &schema)?;
    if entry.views.contains_key(&name) {
        return Err(StorageError::NameTaken {
            name: qualified,
            kind: "view",
        }
        .into());
    }
    if entry.tables.contains_key(&name) {
        let existing = session.open_table(&view.name).await?.1;
        if view.if_not_exists {
            let kind = if Definition::of(&existing.metadata).is_some() {
                "materialized view"
            } else {
                "table"
            };
            return Ok(StatementResult::status(format!(
                "{kind} {qualified} already exists"
            )));
        }
        if !view.or_replace || Definition::of(&existing.metadata).is_none() {
            return Err(StorageError::NameTaken {
                name: qualified,
                kind: if Definition::of(&existing.metadata).is_some() {
                    "materialized view"
                } else {
                    "table"
                },
            }
            .into());
        }
    }
    if !view.columns.is_empty() {
        return Err(Error::Unsupported(format!(
            "column names after materialized view {qualified}; name them with AS in the query"
        )));
    }
    let refresh = refresh_option(&view.options)?;
    let storage_query = with_state_columns(&view.query);
    let (current_db, current_schema) = {
        let (d, s) = session.current_schema();
        (d.to_string(), s.to_string())
    };
    let plan = session
        .plan_raw(SqlStatement::Query(Box::new(storage_query.clone())), None)
        .await?;
    let columns = column_defs(plan.schema().as_arrow().fields());
    let mut seen = std::collections::HashSet::new();
    for c in &columns {
        if !seen.insert(c.name.clone()) {
            return Err(Error::Plan(format!(
                "materialized view {qualified}: two columns are called '{}'; name them with AS",
                c.name
            )));
        }
    }
    let partitioning = partitioning
        .map(|p| crate::session::partition_layout(&qualified, p, &columns))
        .transpose()?;
    let definition = Definition {
        query: view.query.to_string(),
        storage_query: storage_query.to_string(),
        database: current_db,
        schema: current_schema,
        refresh,
        sources: BTreeMap::new(),
        refreshed_at: None,
        fingerprint: None,
        last: None,
    };
    let mut metadata = TableMetadata {
        columns,
        partitioning,
        properties: BTreeMap::new(),
        constraints: Vec::new(),
    };
    definition.write_to(&mut metadata.properties);
    let warehouse = session.warehouse().clone();
    let rows = warehouse
        .clone()
        .create_table(
            &db,
            &schema,
            &name,
            metadata,
            view.or_replace,
            async |log, snapshot| {
                let clock = std::time::Instant::now();
                let sources = refresh::source_versions(&plan)?;
                let fingerprint = refresh::fingerprint(&plan);
                let df = session.context().execute_logical_plan(plan).await?;
                let stream = df.execute_stream().await?;
                let mut metadata = snapshot.metadata.clone();
                let mut definition = definition.clone();
                definition.sources = sources;
                definition.fingerprint = Some(fingerprint);
                definition.refreshed_at = Some(Utc::now());
                definition.last = Some(LastRefresh {
                    at: Utc::now(),
                    duration_ms: clock.elapsed().as_millis() as u64,
                    kind: "full".into(),
                    detail: "created".into(),
                    error: None,
                });
                definition.write_to(&mut metadata.properties);
                let mut txn = Transaction::new("CREATE MATERIALIZED VIEW");
                txn.replace_metadata = Some(metadata);
                write_batches(&warehouse, &qualified, log, &snapshot, stream, txn).await
            },
        )
        .await?;
    Ok(StatementResult::status(format!(
        "created materialized view {qualified} with {rows} rows"
    )))
}

/// `refresh = '...'` from `WITH (...)`; `manual` when absent.
fn refresh_option(options: &CreateTableOptions) -> Result<RefreshMode> {
    let options: &[SqlOption] = match options {
        CreateTableOptions::None => return Ok(RefreshMode::Manual),
        CreateTableOptions::With(o) => o,
        other => {
            return Err(Error::Unsupported(format!(
                "materialized view options {other}; Strata takes WITH (refresh = '...')"
            )));
        }
    };
    let mut mode = RefreshMode::Manual;
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(Error::Unsupported(format!(
                "materialized view option {option}"
            )));
        };
        if !key.value.eq_ignore_ascii_case("refresh") {
            return Err(Error::Unsupported(format!(
                "materialized view option '{}' (Strata knows refresh)",
                key.value
            )));
        }
        let text = match value {
            SqlExpr::Value(v) => match &v.value {
                datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            other => other.to_string(),
        };
        mode = RefreshMode::parse(&text)?;
    }
    Ok(mode)
}

/// The query a view's table stores: `query` plus, for each select item that is a plain
/// `AVG(x)`, hidden `SUM(x)` and `COUNT(x)` columns, so that refreshes can fold new rows into
/// the average and queries can roll it up.
pub(crate) fn with_state_columns(query: &Query) -> Query {
    let mut out = query.clone();
    let SetExpr::Select(select) = out.body.as_mut() else {
        return out;
    };
    if select.distinct.is_some() {
        return out;
    }
    let mut extra = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        let SqlExpr::Function(f) = expr else { continue };
        let is_avg = parser::name_parts(&f.name) == ["avg"]
            && f.filter.is_none()
            && f.over.is_none()
            && f.within_group.is_empty()
            && matches!(&f.args, FunctionArguments::List(l)
                if l.args.len() == 1
                    && !matches!(l.duplicate_treatment, Some(DuplicateTreatment::Distinct)));
        if !is_avg {
            continue;
        }
        for (function, column) in [("sum", avg_sum_column(i)), ("count", avg_count_column(i))] {
            let mut state = f.clone();
            state.name = ObjectName::from(vec![Ident::new(function)]);
            extra.push(SelectItem::ExprWithAlias {
                expr: SqlExpr::Function(state),
                alias: Ident::with_quote('"', column),
            });
        }
    }
    select.projection.extend(extra);
    out
}

/// The hidden column holding `SUM(x)` for the `AVG(x)` at output position `i`.
pub(crate) fn avg_sum_column(i: usize) -> String {
    format!("{HIDDEN_PREFIX}avg_sum_{i}")
}

/// The hidden column holding `COUNT(x)` for the `AVG(x)` at output position `i`.
pub(crate) fn avg_count_column(i: usize) -> String {
    format!("{HIDDEN_PREFIX}avg_count_{i}")
}

/// `REFRESH MATERIALIZED VIEW mv [FULL]`.
pub(crate) async fn refresh_statement(
    session: &Session,
    view: &ObjectName,
    full: bool,
) -> Result<StatementResult> {
    let (db, schema, name) = session.qualify_table(view)?;
    let outcome = refresh(
        session.warehouse(),
        &[db.clone(), schema.clone(), name.clone()],
        full,
        &session.progress(),
    )
    .await?;
    Ok(StatementResult::strings(
        &[
            "materialized_view",
            "refresh_kind",
            "rows",
            "rows_written",
            "detail",
        ],
        vec![vec![
            format!("{db}.{schema}.{name}"),
            outcome.kind.as_str().to_string(),
            outcome.rows.to_string(),
            outcome.rows_written.to_string(),
            outcome.detail,
        ]],
    ))
}

/// Every materialized view of the warehouse with its definition.
pub(crate) async fn list(warehouse: &Warehouse) -> Result<Vec<([String; 3], Definition, u64)>> {
    let catalog = warehouse.refresh_catalog().await?;
    let mut out = Vec::new();
    for (db, d) in &catalog.databases {
        for (schema, s) in &d.schemas {
            for (table, t) in &s.tables {
                let log = warehouse.table_log(&t.id, table);
                let snapshot = warehouse.snapshot(&log).await?;
                if let Some(def) = Definition::of(&snapshot.metadata) {
                    out.push((
                        [db.clone(), schema.clone(), table.clone()],
                        def,
                        snapshot.row_count(),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// True when a source of `def` has changed its data since the version the view reflects
/// (commits that only add partitions or record loads do not count), or a logical view its
/// query reads has been redefined (or a table dropped) since.
pub(crate) async fn is_stale(warehouse: &Warehouse, def: &Definition) -> Result<bool> {
    let mut planner = warehouse.session();
    planner.set_schema(&def.database, &def.schema)?;
    let planned = match crate::views::parse_query(&def.storage_query) {
        Ok(q) => planner.plan_raw(q, None).await.ok(),
        Err(_) => None,
    };
    match planned {
        Some(plan) if def.fingerprint.as_deref() == Some(refresh::fingerprint(&plan).as_str()) => {
            sources_changed(warehouse, def).await
        }
        _ => Ok(true),
    }
}

/// True when a source of `def` has changed its data since the version the view reflects
/// (commits that only add partitions or record loads do not count), or is gone.
pub(crate) async fn sources_changed(warehouse: &Warehouse, def: &Definition) -> Result<bool> {
    let catalog = warehouse.catalog();
    for (name, reflected) in &def.sources {
        let parts: Vec<&str> = name.splitn(3, '.').collect();
        let [d, s, t] = parts.as_slice() else {
            return Ok(true);
        };
        let Ok(entry) = catalog.table(d, s, t) else {
            return Ok(true);
        };
        if entry.id.0 != reflected.id {
            return Ok(true);
        }
        let log = warehouse.table_log(&entry.id, name);
        let current = warehouse.snapshot(&log).await?;
        for v in reflected.version + 1..=current.version.0 {
            let Some(commit) = log.read_commit(strata_storage::Version(v)).await? else {
                return Ok(true);
            };
            let changes_data = commit.actions.iter().any(|a| {
                matches!(
                    a,
                    strata_storage::Action::Add(_) | strata_storage::Action::Remove { .. }
                )
            });
            if changes_data {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Refreshes every `on_commit` view that reads a table changed since it last refreshed. A
/// failing refresh is recorded on the view (see `system.materialized_views`) and logged; the
/// statement that changed the source has committed and stays so.
pub(crate) async fn refresh_on_commit(warehouse: &Warehouse) {
    let views = match list(warehouse).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "could not list materialized views");
            return;
        }
    };
    // A view over another view is stale only once that one refreshed: pass again until a
    // pass refreshes nothing (each view at most once, so failures cannot loop).
    let mut done = std::collections::HashSet::new();
    loop {
        let mut refreshed = false;
        for (name, def, _) in &views {
            if def.refresh != RefreshMode::OnCommit || done.contains(name) {
                continue;
            }
            let Ok(Some(current)) = warehouse.table(&name[0], &name[1], &name[2]).await else {
                continue;
            };
            let Some(def) = Definition::of(&current.snapshot().metadata) else {
                continue;
            };
            if !matches!(is_stale(warehouse, &def).await, Ok(true)) {
                continue;
            }
            done.insert(name.clone());
            refreshed = true;
            if let Err(e) = refresh(warehouse, name, false, &Progress::default()).await {
                tracing::warn!(view = %name.join("."), error = %e, "on-commit refresh failed");
            }
        }
        if !refreshed {
            break;
        }
    }
}

/// Refreshes `every <interval>` views when their interval has passed since their last
/// successful refresh, checking every `tick`, until the task is dropped. A failed refresh is
/// recorded on the view and retried after 5 s, 10 s, 20 s, ... (at most an hour apart), whatever
/// the view's interval.
pub async fn run_scheduler(warehouse: Warehouse, tick: Duration) {
    // View → (failures in a row, earliest next attempt).
    let mut failures: HashMap<[String; 3], (u32, std::time::Instant)> = HashMap::new();
    // View → when it was last found up to date (nothing is committed for that).
    let mut checked: HashMap<[String; 3], std::time::Instant> = HashMap::new();
    loop {
        tokio::time::sleep(tick).await;
        let Ok(views) = list(&warehouse).await else {
            continue;
        };
        for (name, def, _) in views {
            let RefreshMode::Every(interval) = def.refresh else {
                continue;
            };
            let due = def
                .refreshed_at
                .is_none_or(|t| (Utc::now() - t).to_std().unwrap_or_default() >= interval)
                && checked.get(&name).is_none_or(|t| t.elapsed() >= interval);
            let backing_off = failures
                .get(&name)
                .is_some_and(|(_, next)| std::time::Instant::now() < *next);
            if !due || backing_off {
                continue;
            }
            match refresh(&warehouse, &name, false, &Progress::default()).await {
                Ok(outcome) => {
                    failures.remove(&name);
                    if outcome.kind == refresh::Kind::UpToDate {
                        checked.insert(name, std::time::Instant::now());
                    }
                }
                Err(e) => {
                    let n = failures.get(&name).map_or(1, |f| f.0 + 1);
                    let backoff = (Duration::from_secs(5)
                        * 2u32.saturating_pow(n - 1).min(1 << 10))
                    .min(Duration::from_secs(3_600));
                    tracing::warn!(view = %name.join("."), error = %e, failures = n,
                        retry_in_s = backoff.as_secs(), "scheduled refresh failed");
                    failures.insert(name, (n, std::time::Instant::now() + backoff));
                }
            }
        }
    }
}

/// `system.materialized_views`.
pub(crate) async fn system_table(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let ts = || {
        Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("view_name", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
        Field::new("refresh_mode", DataType::Utf8, false),
        ts().with_name("last_refresh_at"),
        Field::new("last_refresh_duration_ms", DataType::Int64, true),
        Field::new("last_refresh_kind", DataType::Utf8, true),
        Field::new("last_refresh_detail", DataType::Utf8, true),
        Field::new("last_error", DataType::Utf8, true),
        ts().with_name("refreshed_at"),
        Field::new("rows", DataType::Int64, false),
        Field::new("sources", DataType::Utf8, false),
        Field::new("is_stale", DataType::Boolean, false),
    ]));
    struct Row {
        name: [String; 3],
        def: Definition,
        rows: u64,
        stale: bool,
    }
    let mut rows = Vec::new();
    for (name, def, count) in list(warehouse).await? {
        let stale = is_stale(warehouse, &def).await?;
        rows.push(Row {
            name,
            def,
            rows: count,
            stale,
        });
    }
    let text = |f: &dyn Fn(&Row) -> Option<String>| {
        Arc::new(rows.iter().map(f).collect::<StringArray>()) as ArrayRef
    };
    let time = |f: &dyn Fn(&Definition) -> Option<DateTime<Utc>>| {
        Arc::new(
            rows.iter()
                .map(|r| f(&r.def).map(|t| t.timestamp_micros()))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|r| Some(r.name[0].clone())),
        text(&|r| Some(r.name[1].clone())),
        text(&|r| Some(r.name[2].clone())),
        text(&|r| Some(r.def.query.clone())),
        text(&|r| Some(r.def.refresh.to_string())),
        time(&|d| d.last.as_ref().map(|l| l.at)),
        Arc::new(
            rows.iter()
                .map(|r| r.def.last.as_ref().map(|l| l.duration_ms as i64))
                .collect::<Int64Array>(),
        ),
        text(&|r| r.def.last.as_ref().map(|l| l.kind.clone())),
        text(&|r| r.def.last.as_ref().map(|l| l.detail.clone())),
        text(&|r| r.def.last.as_ref().and_then(|l| l.error.clone())),
        time(&|d| d.refreshed_at),
        Arc::new(rows.iter().map(|r| r.rows as i64).collect::<Int64Array>()),
        text(&|r| {
            Some(
                r.def
                    .sources
                    .iter()
                    .map(|(n, v)| format!("{n}@{}", v.version))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        }),
        Arc::new(rows.iter().map(|r| Some(r.stale)).collect::<BooleanArray>()),
    ];
    let batch = arrow::array::RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(datafusion::datasource::MemTable::try_new(
        schema,
        vec![vec![batch]],
    )?))
}

/// A materialized view as readers see it: its table without the hidden state columns, and
/// read-only.
#[derive(Debug)]
pub struct MaterializedViewTable {
    storage: StrataTable,
    /// Positions of the visible columns in the table.
    visible: Vec<usize>,
    schema: SchemaRef,
}

impl MaterializedViewTable {
    pub(crate) fn new(storage: StrataTable) -> Self {
        let full = storage.table_schema();
        let visible: Vec<usize> = full
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.name().starts_with(HIDDEN_PREFIX))
            .map(|(i, _)| i)
            .collect();
        let schema = Arc::new(full.project(&visible).expect("visible columns exist"));
        Self {
            storage,
            visible,
            schema,
        }
    }

    /// The view's table, hidden columns included.
    pub(crate) fn storage(&self) -> &StrataTable {
        &self.storage
    }
}

#[async_trait]
impl TableProvider for MaterializedViewTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.storage.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.storage
            .statistics()
            .map(|s| s.project(Some(&self.visible)))
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mapped: Vec<usize> = match projection {
            Some(p) => p.iter().map(|i| self.visible[*i]).collect(),
            None => self.visible.clone(),
        };
        self.storage
            .scan(state, Some(&mapped), filters, limit)
            .await
    }

    async fn insert_into(
        &self,
        _state: &dyn CatalogSession,
        _input: Arc<dyn ExecutionPlan>,
        _op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(read_only(self.storage.name())))
    }
}

/// The error for writing into a materialized view.
pub(crate) fn read_only(name: &str) -> String {
    format!(
        "materialized view {name} is read-only; REFRESH MATERIALIZED VIEW {name} recomputes it \
         from its sources"
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{RefreshMode, run_scheduler};
    use crate::{Session, Warehouse};

    async fn value(session: &mut Session, sql: &str) -> String {
        let results = session.sql(sql).await.unwrap();
        let batch = &results.last().unwrap().batches[0];
        arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap()
    }

    #[test]
    fn refresh_modes_parse_and_print() {
        for (text, printed) in [
            ("manual", "manual"),
            ("ON COMMIT", "on_commit"),
            ("every 5 minutes", "every 5 minutes"),
            ("every 1 hour", "every 1 hour"),
            ("every 90 seconds", "every 90 seconds"),
            ("every 2 days", "every 2 days"),
        ] {
            let mode = RefreshMode::parse(text).unwrap();
            assert_eq!(mode.to_string(), printed);
            assert_eq!(RefreshMode::parse(printed).unwrap(), mode);
        }
        for bad in [
            "every",
            "every 0 minutes",
            "every 5 fortnights",
            "every five minutes",
            "soon",
        ] {
            assert!(RefreshMode::parse(bad).is_err(), "{bad}");
        }
    }

    /// The scheduler refreshes a view whose interval has passed, and retries a failing one
    /// with backoff instead of at every tick.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scheduler_refreshes_due_views_and_backs_off_failures() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE t (x INT);
                 CREATE TABLE gone (x INT);
                 INSERT INTO t VALUES (1);
                 CREATE MATERIALIZED VIEW total WITH (refresh = 'every 1 second') AS
                   SELECT SUM(x) AS s FROM t;
                 CREATE MATERIALIZED VIEW broken WITH (refresh = 'every 1 second') AS
                   SELECT COUNT(*) AS n FROM gone;
                 INSERT INTO t VALUES (2), (3);
                 DROP TABLE gone;",
            )
            .await
            .unwrap();
        assert_eq!(value(&mut session, "SELECT s FROM total").await, "1");
        let scheduler = tokio::spawn(run_scheduler(warehouse.clone(), Duration::from_millis(50)));
        let mut refreshed = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if value(&mut session, "SELECT s FROM total").await == "6" {
                refreshed = true;
                break;
            }
        }
        assert!(refreshed, "the scheduler did not refresh the due view");
        // Two more seconds: at a 50 ms tick, only the backoff keeps the failing view to one
        // attempt (the next one is due 5 s after the first).
        tokio::time::sleep(Duration::from_secs(2)).await;
        scheduler.abort();
        let failures = value(
            &mut session,
            "SELECT count(*) FROM system.table_versions
             WHERE table_name = 'broken' AND operation LIKE '%failed%'",
        )
        .await;
        assert_eq!(failures, "1");
        let error = value(
            &mut session,
            "SELECT last_error FROM system.materialized_views WHERE view_name = 'broken'",
        )
        .await;
        assert!(error.contains("gone"), "{error}");
    }
}
