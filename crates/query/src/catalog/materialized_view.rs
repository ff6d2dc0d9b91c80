//! Materialized views as the catalog knows them: a Strata table whose metadata properties hold
//! the view's definition and refresh state ([`Definition`]), read through
//! [`MaterializedViewTable`], which hides the refresh state columns and refuses writes.
//!
//! Creating and refreshing views is the `mv` layer's; here is what readers, `system`
//! tables and the staleness check need, none of which runs a refresh.

use std::collections::BTreeMap;
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
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use serde::{Deserialize, Serialize};
use strata_storage::TableMetadata;

use crate::error::{Error, Result};
use crate::table::StrataTable;
use crate::warehouse::Warehouse;

use strata_storage::records::stable_digest;

use crate::catalog::planner::Planner;
use crate::catalog::views::parse_query;
use crate::config::parse_duration;

/// Columns whose name starts with this are refresh state, hidden from readers.
pub(crate) const HIDDEN_PREFIX: &str = "__strata_";

const QUERY: &str = "mv.query";
const STORAGE_QUERY: &str = "mv.storage_query";
const DATABASE: &str = "mv.database";
const SCHEMA: &str = "mv.schema";
const REFRESH_MODE: &str = "mv.refresh";
const SOURCES: &str = "mv.sources";
const REFRESHED_AT: &str = "mv.refreshed_at";
const LAST_REFRESH: &str = "mv.last_refresh";
const FINGERPRINT: &str = "mv.fingerprint";
const WATERMARK: &str = "mv.watermark";
const LATE_ROWS: &str = "mv.late_rows";
const LATE_ROWS_LEFT_OUT: &str = "mv.late_rows_left_out";

/// When a view refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshMode {
    /// Only on `REFRESH MATERIALIZED VIEW`.
    Manual,
    /// After every statement that changes one of its sources.
    OnCommit,
    /// When this long has passed since the last refresh (`strata serve` runs these).
    Every(Duration),
    /// After every commit to a source, folding in only the new rows: a continuous aggregate
    /// (see `watermark` in [`Definition`]).
    Continuous,
}

impl RefreshMode {
    /// Parses `manual`, `on_commit` / `on commit`, `continuous`, or `every 5 minutes`
    /// (seconds, minutes, hours, days; singular or plural).
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || {
            Error::Plan(format!(
                "refresh = '{text}': expected 'manual', 'on_commit', 'continuous' or 'every <n> \
                 seconds|minutes|hours|days'"
            ))
        };
        match t.as_str() {
            "manual" => return Ok(Self::Manual),
            "on_commit" | "on commit" => return Ok(Self::OnCommit),
            "continuous" => return Ok(Self::Continuous),
            _ => {}
        }
        let rest = t.strip_prefix("every").ok_or_else(bad)?;
        match parse_duration(rest) {
            Ok(d) if !d.is_zero() => Ok(Self::Every(d)),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for RefreshMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Manual => write!(f, "manual"),
            Self::OnCommit => write!(f, "on_commit"),
            Self::Continuous => write!(f, "continuous"),
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
pub(crate) struct SourceVersion {
    pub id: String,
    pub version: u64,
}

/// What the last refresh attempt did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastRefresh {
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
    /// `full` or `incremental`.
    pub kind: String,
    pub detail: String,
    pub error: Option<String>,
}

/// A materialized view's definition and refresh state, as kept in its table's properties.
#[derive(Debug, Clone)]
pub(crate) struct Definition {
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
    /// A continuous view's watermark: a new row whose window starts more than this before
    /// the newest window stored is late, and is left out of the fold (counted in
    /// `late_rows`; a full refresh counts it in).
    pub watermark: Option<Duration>,
    /// Rows left out of folds as late, over the view's life.
    pub late_rows: u64,
    /// Late rows the stored rows still leave out (a full recomputation counts them in): while
    /// any are, the view does not stand in for its sources in query rewrites.
    pub late_rows_left_out: u64,
}

impl Definition {
    /// The definition in a table's metadata, if the table is a materialized view.
    pub(crate) fn of(metadata: &TableMetadata) -> Option<Self> {
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
            watermark: p.get(WATERMARK).and_then(|w| parse_duration(w).ok()),
            late_rows: p.get(LATE_ROWS).and_then(|n| n.parse().ok()).unwrap_or(0),
            late_rows_left_out: p
                .get(LATE_ROWS_LEFT_OUT)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
    }

    /// Writes the definition into table properties.
    pub(crate) fn write_to(&self, properties: &mut BTreeMap<String, String>) {
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
        match self.watermark {
            Some(w) => properties.insert(WATERMARK.into(), format!("{} ms", w.as_millis())),
            None => properties.remove(WATERMARK),
        };
        properties.insert(LATE_ROWS.into(), self.late_rows.to_string());
        properties.insert(
            LATE_ROWS_LEFT_OUT.into(),
            self.late_rows_left_out.to_string(),
        );
    }
}

/// The hidden column holding `SUM(x)` for the `AVG(x)` at output position `i`.
pub(crate) fn avg_sum_column(i: usize) -> String {
    format!("{HIDDEN_PREFIX}avg_sum_{i}")
}

/// The hidden column holding `COUNT(x)` for the `AVG(x)` at output position `i`.
pub(crate) fn avg_count_column(i: usize) -> String {
    format!("{HIDDEN_PREFIX}avg_count_{i}")
}

/// A digest of a view's query as planned, views inlined: when a view it reads is redefined,
/// the digest changes and the stored rows no longer follow from the sources' versions alone.
pub(crate) fn fingerprint(plan: &LogicalPlan) -> String {
    format!("{:016x}", stable_digest(&plan.display_indent().to_string()))
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

/// Why the query of `def` no longer plans against its sources (a column dropped or renamed,
/// a table dropped or renamed), if it does not.
pub(crate) async fn invalid_reason(
    warehouse: &Warehouse,
    planner: &dyn Planner,
    def: &Definition,
) -> Option<String> {
    let query = match parse_query(&def.query) {
        Ok(q) => q,
        Err(e) => return Some(e.to_string()),
    };
    match planner
        .plan_stored(warehouse, &def.database, &def.schema, query)
        .await
    {
        Ok(_) => None,
        Err(e) => Some(plan_problem(&e)),
    }
}

/// A planning error in one line: "column 'v' no longer exists (columns: s.k, s.value)" for
/// DataFusion's "No field named v. Valid fields are ...".
pub(crate) fn plan_problem(e: &Error) -> String {
    let text = e.to_string();
    let text = text.strip_prefix("Schema error: ").unwrap_or(&text);
    if let Some(rest) = text.strip_prefix("No field named ") {
        let (field, valid) = rest.split_once('.').unwrap_or((rest, ""));
        let valid = valid
            .trim()
            .strip_prefix("Valid fields are ")
            .map(|v| v.trim_end_matches('.').to_string());
        return match valid {
            Some(v) => format!("column {field} no longer exists (columns: {v})"),
            None => format!("column {field} no longer exists"),
        };
    }
    text.replace('\n', " ")
}

/// True when a source of `def` has changed its data since the version the view reflects
/// (commits that only add partitions or record loads do not count), or a logical view its
/// query reads has been redefined (or a table dropped) since.
pub(crate) async fn is_stale(
    warehouse: &Warehouse,
    planner: &dyn Planner,
    def: &Definition,
) -> Result<bool> {
    let planned = match parse_query(&def.storage_query) {
        Ok(q) => planner
            .plan_stored(warehouse, &def.database, &def.schema, q)
            .await
            .ok(),
        Err(_) => None,
    };
    match planned {
        Some(plan) if def.fingerprint.as_deref() == Some(fingerprint(&plan).as_str()) => {
            sources_changed(warehouse, def).await
        }
        _ => Ok(true),
    }
}

/// True when a source of `def` has changed its data since the version the view reflects
/// (commits that only add partitions or record loads do not count), or is gone.
pub(crate) async fn sources_changed(warehouse: &Warehouse, def: &Definition) -> Result<bool> {
    Ok(changed_since(warehouse, def).await?.is_some())
}

/// When the view's sources first changed after the versions it reflects: the time of the
/// first data-changing commit of any source, or of its last refresh if a source is gone or
/// replaced; `None` while nothing changed.
async fn changed_since(warehouse: &Warehouse, def: &Definition) -> Result<Option<DateTime<Utc>>> {
    let catalog = warehouse.catalog();
    let gone = Some(def.refreshed_at.unwrap_or_else(Utc::now));
    let mut first: Option<DateTime<Utc>> = None;
    for (name, reflected) in &def.sources {
        let parts: Vec<&str> = name.splitn(3, '.').collect();
        let [d, s, t] = parts.as_slice() else {
            return Ok(gone);
        };
        let Ok(entry) = catalog.table(d, s, t) else {
            return Ok(gone);
        };
        if entry.id.0 != reflected.id {
            return Ok(gone);
        }
        let log = warehouse.table_log(&entry.id, name);
        let current = warehouse.snapshot(&log).await?;
        for v in reflected.version + 1..=current.version.0 {
            let Some(commit) = log.read_commit(strata_storage::Version(v)).await? else {
                return Ok(gone);
            };
            let changes_data = !commit.rewrite_only
                && commit.actions.iter().any(|a| {
                    matches!(
                        a,
                        strata_storage::Action::Add(_) | strata_storage::Action::Remove { .. }
                    )
                });
            if changes_data {
                first = Some(first.map_or(commit.committed_at, |f| f.min(commit.committed_at)));
                break;
            }
        }
    }
    Ok(first)
}

/// Seconds the view is behind its sources: `None` when fresh; else since the first change it
/// does not reflect (or since its last refresh, when its query changed).
pub(crate) async fn staleness_seconds(
    warehouse: &Warehouse,
    planner: &dyn Planner,
    def: &Definition,
) -> Result<Option<f64>> {
    if !is_stale(warehouse, planner, def).await? {
        return Ok(None);
    }
    let since = changed_since(warehouse, def)
        .await?
        .or(def.refreshed_at)
        .unwrap_or_else(Utc::now);
    Ok(Some(
        (Utc::now() - since).num_milliseconds().max(0) as f64 / 1000.0,
    ))
}

/// `system.materialized_views`.
pub(crate) async fn system_table(
    warehouse: &Warehouse,
    planner: &dyn Planner,
) -> Result<Arc<dyn TableProvider>> {
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
        Field::new("invalid_reason", DataType::Utf8, true),
        Field::new("staleness_seconds", DataType::Float64, false),
        Field::new("watermark", DataType::Utf8, true),
        Field::new("late_rows", DataType::Int64, false),
    ]));
    struct Row {
        name: [String; 3],
        def: Definition,
        rows: u64,
        stale: bool,
        invalid: Option<String>,
        staleness: Option<f64>,
    }
    let mut rows = Vec::new();
    for (name, def, count) in list(warehouse).await? {
        let staleness = staleness_seconds(warehouse, planner, &def).await?;
        let invalid = invalid_reason(warehouse, planner, &def).await;
        rows.push(Row {
            name,
            def,
            rows: count,
            stale: staleness.is_some(),
            invalid,
            staleness,
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
        text(&|r| r.invalid.clone()),
        Arc::new(
            rows.iter()
                .map(|r| r.staleness.unwrap_or(0.0))
                .collect::<arrow::array::Float64Array>(),
        ),
        text(&|r| {
            r.def
                .watermark
                .map(|w| format!("{} seconds", w.as_secs_f64()))
        }),
        Arc::new(
            rows.iter()
                .map(|r| r.def.late_rows as i64)
                .collect::<Int64Array>(),
        ),
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
pub(crate) struct MaterializedViewTable {
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
