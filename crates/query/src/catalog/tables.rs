//! `system.tables`, `system.columns` and `search(...)`: what a catalog browser shows, and
//! what people search, from the catalog and each table's metadata and log.
//!
//! - `system.tables`: one row per table, materialized view, view and external table, with its
//!   owner, comment, tags (a JSON object), rows, bytes, partitions, when it was created, last
//!   changed and last loaded, and its freshness: seconds since rows last arrived.
//! - `system.columns`: one row per column, with its comment and tags.
//! - `system.search('text')`: the tables, views and columns whose name, comment or tags hold
//!   the text (case-insensitive), best matches (names) first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::catalog::{Session as DfSession, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use strata_storage::{ColumnDef, sql_type_name};

use crate::catalog::materialized_view::Definition;
use crate::catalog::system_parts::{mem_table, ts_field};
use crate::error::Result;
use crate::table::{COMMENT_PROPERTY, FRESHNESS_SLA_PROPERTY, OWNER_PROPERTY};
use crate::warehouse::Warehouse;

/// One object of the catalog, as `system.tables` shows it.
struct Object {
    database: String,
    schema: String,
    name: String,
    kind: &'static str,
    owner: Option<String>,
    comment: Option<String>,
    tags: BTreeMap<String, String>,
    rows: Option<u64>,
    bytes: Option<u64>,
    partitions: Option<u64>,
    created_at: DateTime<Utc>,
    last_modified_at: Option<DateTime<Utc>>,
    last_loaded_at: Option<DateTime<Utc>>,
    columns: Vec<ColumnDef>,
    /// `freshness_sla` as written.
    freshness_sla: Option<String>,
}

/// Every table, materialized view, view and external table, with what is known of it.
/// Which tables' logs [`objects`] reads back to their last load (reading a log's history is the
/// costly part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum History {
    /// None: `last_loaded_at` stays empty.
    None,
    /// Only tables with a `freshness_sla`.
    WithSla,
    /// Every table.
    All,
}

async fn objects(warehouse: &Warehouse, history: History) -> Result<Vec<Object>> {
    let catalog = warehouse.refresh_catalog().await?;
    let mut out = Vec::new();
    for (db, d) in &catalog.databases {
        for (schema, s) in &d.schemas {
            for (name, t) in &s.tables {
                let qualified = format!("{db}.{schema}.{name}");
                let log = warehouse.table_log(&t.id, &qualified);
                let snapshot = warehouse.snapshot(&log).await?;
                let metadata = &snapshot.metadata;
                // The last commit that added rows: an INSERT, COPY, MERGE, refresh...
                let wanted = match history {
                    History::None => false,
                    History::WithSla => metadata.properties.contains_key(FRESHNESS_SLA_PROPERTY),
                    History::All => true,
                };
                let last_loaded_at = if wanted {
                    log.history()
                        .await?
                        .iter()
                        .rev()
                        // OPTIMIZE rewrites rows; it loads none.
                        .find(|c| !c.rewrite_only && c.rows_added() > 0)
                        .map(|c| c.committed_at)
                } else {
                    None
                };
                out.push(Object {
                    database: db.clone(),
                    schema: schema.clone(),
                    name: name.clone(),
                    kind: if Definition::of(metadata).is_some() {
                        "MATERIALIZED VIEW"
                    } else {
                        "TABLE"
                    },
                    owner: metadata.properties.get(OWNER_PROPERTY).cloned(),
                    comment: metadata.properties.get(COMMENT_PROPERTY).cloned(),
                    tags: metadata.tags.clone(),
                    rows: Some(snapshot.row_count()),
                    bytes: Some(snapshot.files.values().map(|f| f.size_bytes).sum()),
                    partitions: Some(
                        metadata
                            .partitioning
                            .as_ref()
                            .map_or(1, |p| p.partitions.len() as u64),
                    ),
                    created_at: t.created_at,
                    last_modified_at: Some(snapshot.committed_at),
                    last_loaded_at,
                    columns: metadata.columns.clone(),
                    freshness_sla: metadata.properties.get(FRESHNESS_SLA_PROPERTY).cloned(),
                });
            }
            for (name, v) in &s.views {
                out.push(Object {
                    database: db.clone(),
                    schema: schema.clone(),
                    name: name.clone(),
                    kind: "VIEW",
                    owner: (!v.owner.is_empty()).then(|| v.owner.clone()),
                    comment: v.comment.clone(),
                    tags: BTreeMap::new(),
                    rows: None,
                    bytes: None,
                    partitions: None,
                    created_at: v.created_at,
                    last_modified_at: Some(v.created_at),
                    last_loaded_at: None,
                    columns: Vec::new(),
                    freshness_sla: None,
                });
            }
            for (name, e) in &s.external_tables {
                out.push(Object {
                    database: db.clone(),
                    schema: schema.clone(),
                    name: name.clone(),
                    kind: "EXTERNAL TABLE",
                    owner: Some(e.created_by.clone()),
                    comment: None,
                    tags: BTreeMap::new(),
                    rows: None,
                    bytes: Some(e.files.iter().map(|f| f.size_bytes).sum()),
                    partitions: None,
                    created_at: e.created_at,
                    last_modified_at: Some(e.refreshed_at),
                    last_loaded_at: Some(e.refreshed_at),
                    columns: e.columns.clone(),
                    freshness_sla: None,
                });
            }
        }
    }
    Ok(out)
}

/// What a BI tool shows beside a name: an object's comment and its columns' comments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comments {
    /// The table's, view's or materialized view's comment.
    pub object: Option<String>,
    /// Column name to comment, for the columns that have one.
    pub columns: HashMap<String, String>,
}

/// The comments of every object, by `[database, schema, name]`; objects without any have no
/// entry. `information_schema` and Flight's `GetTables` show them.
pub async fn comments(warehouse: &Warehouse) -> Result<HashMap<[String; 3], Comments>> {
    let mut out = HashMap::new();
    for o in objects(warehouse, History::None).await? {
        let columns: HashMap<String, String> = o
            .columns
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.comment.clone()?)))
            .collect();
        if o.comment.is_some() || !columns.is_empty() {
            out.insert(
                [o.database, o.schema, o.name],
                Comments {
                    object: o.comment,
                    columns,
                },
            );
        }
    }
    Ok(out)
}

/// Tags as a JSON object, `NULL` when there are none.
fn tags_json(tags: &BTreeMap<String, String>) -> Option<String> {
    (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default())
}

/// `system.tables`.
pub(crate) async fn tables(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let objects = objects(warehouse, History::All).await?;
    let now = Utc::now();
    let schema = Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("owner", DataType::Utf8, true),
        Field::new("comment", DataType::Utf8, true),
        Field::new("tags", DataType::Utf8, true),
        Field::new("row_count", DataType::UInt64, true),
        Field::new("bytes", DataType::UInt64, true),
        Field::new("partitions", DataType::UInt64, true),
        ts_field("created_at"),
        ts_field("last_modified_at"),
        ts_field("last_loaded_at"),
        Field::new("freshness", DataType::Int64, true),
    ]));
    let mut text: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    let mut counts: Vec<UInt64Builder> = (0..3).map(|_| UInt64Builder::new()).collect();
    let mut times: Vec<TimestampMicrosecondBuilder> = (0..3)
        .map(|_| TimestampMicrosecondBuilder::new().with_timezone("UTC"))
        .collect();
    let mut freshness = Int64Builder::new();
    for o in &objects {
        let tags = tags_json(&o.tags);
        let values = [
            Some(o.database.as_str()),
            Some(o.schema.as_str()),
            Some(o.name.as_str()),
            Some(o.kind),
            o.owner.as_deref(),
            o.comment.as_deref(),
            tags.as_deref(),
        ];
        for (b, v) in text.iter_mut().zip(values) {
            b.append_option(v);
        }
        for (b, v) in counts.iter_mut().zip([o.rows, o.bytes, o.partitions]) {
            b.append_option(v);
        }
        for (b, v) in
            times
                .iter_mut()
                .zip([Some(o.created_at), o.last_modified_at, o.last_loaded_at])
        {
            b.append_option(v.map(|t| t.timestamp_micros()));
        }
        freshness.append_option(o.last_loaded_at.map(|t| (now - t).num_seconds()));
    }
    let mut columns: Vec<ArrayRef> = text.iter_mut().map(|b| Arc::new(b.finish()) as _).collect();
    columns.extend(counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(times.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(freshness.finish()));
    mem_table(schema, columns)
}

/// One table's freshness: how long since rows last arrived, against its SLA.
#[derive(Debug, Clone)]
pub(crate) struct Freshness {
    /// `db.schema.name`.
    pub(crate) table: String,
    pub(crate) kind: &'static str,
    /// The SLA as written (`'1 hour'`).
    pub(crate) sla: Option<String>,
    pub(crate) sla_seconds: Option<i64>,
    pub(crate) last_loaded_at: Option<DateTime<Utc>>,
    /// Seconds since rows last arrived (since the table was created, if they never did).
    pub(crate) lag_seconds: i64,
    /// The lag is over the SLA.
    pub(crate) breach: bool,
}

/// The freshness of every table and materialized view (`History::WithSla`: of those with an
/// SLA, as `/metrics` needs, without reading the others' logs).
pub(crate) async fn freshness(warehouse: &Warehouse, history: History) -> Result<Vec<Freshness>> {
    let now = Utc::now();
    let mut out = Vec::new();
    for o in objects(warehouse, history).await? {
        if o.kind != "TABLE" && o.kind != "MATERIALIZED VIEW" {
            continue;
        }
        let since = o.last_loaded_at.unwrap_or(o.created_at);
        let lag_seconds = (now - since).num_seconds().max(0);
        // Set through ALTER TABLE, which checked it; a damaged value counts as no SLA.
        let sla_seconds = o
            .freshness_sla
            .as_deref()
            .and_then(|s| crate::config::parse_duration(s).ok())
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        out.push(Freshness {
            table: format!("{}.{}.{}", o.database, o.schema, o.name),
            kind: o.kind,
            sla: o.freshness_sla,
            sla_seconds,
            last_loaded_at: o.last_loaded_at,
            lag_seconds,
            breach: sla_seconds.is_some_and(|sla| lag_seconds > sla),
        });
    }
    Ok(out)
}

/// `system.freshness`: each table's lag and whether it breaches its `freshness_sla`.
pub(crate) async fn freshness_table(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let rows = freshness(warehouse, History::All).await?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("freshness_sla", DataType::Utf8, true),
        Field::new("sla_seconds", DataType::Int64, true),
        ts_field("last_loaded_at"),
        Field::new("lag_seconds", DataType::Int64, false),
        Field::new("breach", DataType::Boolean, false),
    ]));
    let mut table = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut sla = StringBuilder::new();
    let mut sla_seconds = Int64Builder::new();
    let mut loaded = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut lag = Int64Builder::new();
    let mut breach = BooleanBuilder::new();
    for r in &rows {
        table.append_value(&r.table);
        kind.append_value(r.kind);
        sla.append_option(r.sla.as_deref());
        sla_seconds.append_option(r.sla_seconds);
        loaded.append_option(r.last_loaded_at.map(|t| t.timestamp_micros()));
        lag.append_value(r.lag_seconds);
        breach.append_value(r.breach);
    }
    mem_table(
        schema,
        vec![
            Arc::new(table.finish()),
            Arc::new(kind.finish()),
            Arc::new(sla.finish()),
            Arc::new(sla_seconds.finish()),
            Arc::new(loaded.finish()),
            Arc::new(lag.finish()),
            Arc::new(breach.finish()),
        ],
    )
}

/// `system.columns`.
pub(crate) async fn columns(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let objects = objects(warehouse, History::None).await?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("ordinal_position", DataType::UInt32, false),
        Field::new("data_type", DataType::Utf8, false),
        Field::new("is_nullable", DataType::Boolean, false),
        Field::new("comment", DataType::Utf8, true),
        Field::new("tags", DataType::Utf8, true),
    ]));
    let mut text: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::new()).collect();
    let mut position = UInt32Builder::new();
    let mut nullable = BooleanBuilder::new();
    let mut comment = StringBuilder::new();
    let mut tags = StringBuilder::new();
    for o in &objects {
        for (i, c) in o.columns.iter().enumerate() {
            let data_type = c
                .sql_type
                .clone()
                .unwrap_or_else(|| sql_type_name(&c.data_type));
            for (b, v) in text.iter_mut().zip([
                o.database.as_str(),
                o.schema.as_str(),
                o.name.as_str(),
                c.name.as_str(),
                data_type.as_str(),
            ]) {
                b.append_value(v);
            }
            position.append_value(u32::try_from(i + 1).unwrap_or(u32::MAX));
            nullable.append_value(c.nullable);
            comment.append_option(c.comment.as_deref());
            tags.append_option(tags_json(&c.tags));
        }
    }
    let mut text = text
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut columns: Vec<ArrayRef> = text.by_ref().take(4).collect();
    columns.push(Arc::new(position.finish()));
    columns.extend(text);
    columns.push(Arc::new(nullable.finish()));
    columns.push(Arc::new(comment.finish()));
    columns.push(Arc::new(tags.finish()));
    mem_table(schema, columns)
}

/// One search result: an object or a column, and what of it matched.
struct Hit {
    /// 0 for a name, 1 for a comment, 2 for a tag: names come first.
    rank: u8,
    at: [String; 3],
    column: Option<String>,
    kind: String,
    matched_on: &'static str,
    matched: String,
}

/// The rows of `system.search(text)`: objects and columns whose name, comment or tags hold
/// `text`, case-insensitive; names first, then comments, then tags.
async fn search_rows(warehouse: &Warehouse, text: &str) -> Result<RecordBatch> {
    let needle = text.to_lowercase();
    let holds = |s: &str| s.to_lowercase().contains(&needle);
    // What of a thing matched, best first.
    let first_match = |name: &str, comment: Option<&str>, tags: &BTreeMap<String, String>| {
        if holds(name) {
            return Some((0, "name", name.to_string()));
        }
        if let Some(c) = comment.filter(|c| holds(c)) {
            return Some((1, "comment", c.to_string()));
        }
        tags.iter()
            .find(|(k, v)| holds(k) || holds(v))
            .map(|(k, v)| (2, "tag", format!("{k} = {v}")))
    };
    let mut hits = Vec::new();
    for o in objects(warehouse, History::None).await? {
        let at = [o.database.clone(), o.schema.clone(), o.name.clone()];
        if let Some((rank, matched_on, matched)) =
            first_match(&o.name, o.comment.as_deref(), &o.tags)
        {
            hits.push(Hit {
                rank,
                at: at.clone(),
                column: None,
                kind: o.kind.to_string(),
                matched_on,
                matched,
            });
        }
        for c in &o.columns {
            if let Some((rank, matched_on, matched)) =
                first_match(&c.name, c.comment.as_deref(), &c.tags)
            {
                hits.push(Hit {
                    rank,
                    at: at.clone(),
                    column: Some(c.name.clone()),
                    kind: "COLUMN".to_string(),
                    matched_on,
                    matched,
                });
            }
        }
    }
    hits.sort_by(|a, b| (a.rank, &a.at, &a.column).cmp(&(b.rank, &b.at, &b.column)));
    let mut b: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    for hit in &hits {
        b[0].append_value(&hit.at[0]);
        b[1].append_value(&hit.at[1]);
        b[2].append_value(&hit.at[2]);
        b[3].append_option(hit.column.as_deref());
        b[4].append_value(&hit.kind);
        b[5].append_value(hit.matched_on);
        b[6].append_value(&hit.matched);
    }
    Ok(RecordBatch::try_new(
        search_schema(),
        b.iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect(),
    )?)
}

fn search_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, true),
        Field::new("kind", DataType::Utf8, false),
        Field::new("matched_on", DataType::Utf8, false),
        Field::new("matched", DataType::Utf8, false),
    ]))
}

/// The table function `search('text')` (written `system.search('text')`).
#[derive(Debug)]
pub(crate) struct Search {
    pub(crate) warehouse: Warehouse,
}

impl TableFunctionImpl for Search {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let text = match args {
            [Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _)] => {
                s.clone()
            }
            _ => {
                return Err(DataFusionError::Plan(
                    "system.search('text'): one string, searched for in names, comments and \
                     tags"
                        .to_string(),
                ));
            }
        };
        Ok(Arc::new(SearchTable {
            warehouse: self.warehouse.clone(),
            text,
        }))
    }
}

/// The result of one search, computed when it is scanned.
#[derive(Debug)]
struct SearchTable {
    warehouse: Warehouse,
    text: String,
}

#[async_trait]
impl TableProvider for SearchTable {
    fn schema(&self) -> SchemaRef {
        search_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = search_rows(&self.warehouse, &self.text)
            .await
            .map_err(DataFusionError::from)?;
        let table = MemTable::try_new(search_schema(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}
