//! The `system` schema: partitions, table versions, the query log, load history, the rows
//! loads rejected, materialized views, lineage, the scan cache, the names of secrets, data
//! tests ([`data_tests`]) and task runs ([`tasks`]); and the constraint views of `information_schema`.
//!
//! Every table here is computed when a statement names it, from the catalog, the table logs
//! and records under `_system/` in the warehouse, so they survive restarts and show the work
//! of every process sharing the warehouse. Query log, load-failure and load-error records are
//! one small JSON object each (a load's rejected rows are one object), grouped by day so
//! retention deletes whole days.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use strata_storage::{LoadErrors, LoadFailure, QueryLogEntry};

use crate::catalog::ingest_channels;
use crate::catalog::planner::Planner;
use crate::catalog::system_parts::{all_tables, mem_table, ts_field};
use crate::catalog::viewer::{User, Viewer};
use crate::catalog::{column_lineage, data_tests, lineage, materialized_view, tables, tasks};
use crate::error::Result;
use crate::warehouse::Warehouse;

/// The system tables.
pub(crate) const SYSTEM_TABLES: [&str; 20] = [
    "partitions",
    "indexes",
    "table_versions",
    "query_log",
    "load_history",
    "load_errors",
    "materialized_views",
    "lineage",
    "column_lineage",
    "scan_cache",
    "secrets",
    "data_tests",
    "data_test_results",
    "task_runs",
    "task_graph",
    "alert_history",
    "tables",
    "columns",
    "freshness",
    "ingest_channels",
];

/// The views of `information_schema` that describe constraints (DataFusion has the others).
pub(crate) const CONSTRAINT_VIEWS: [&str; 3] =
    ["table_constraints", "key_column_usage", "check_constraints"];

/// Builds `information_schema` view `name` (one of [`CONSTRAINT_VIEWS`]) from the constraints
/// in every table's metadata.
pub(crate) async fn constraint_view(
    warehouse: &Warehouse,
    name: &str,
) -> Result<Option<Arc<dyn TableProvider>>> {
    warehouse.refresh_catalog().await?;
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let (fields, width): (Vec<Field>, usize) = match name {
        "table_constraints" => (
            [
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
                "enforced",
            ]
            .map(text)
            .to_vec(),
            10,
        ),
        "key_column_usage" => (
            vec![
                text("constraint_catalog"),
                text("constraint_schema"),
                text("constraint_name"),
                text("table_catalog"),
                text("table_schema"),
                text("table_name"),
                text("column_name"),
                Field::new("ordinal_position", DataType::Int64, false),
                Field::new("position_in_unique_constraint", DataType::Int64, true),
                text("referenced_table_schema"),
                text("referenced_table_name"),
                text("referenced_column_name"),
            ],
            12,
        ),
        "check_constraints" => (
            [
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "check_clause",
            ]
            .map(text)
            .to_vec(),
            4,
        ),
        _ => return Ok(None),
    };
    let schema = Arc::new(Schema::new(fields));
    let mut rows: Vec<Vec<ScalarCell>> = Vec::new();
    for (db, schema_name, table, id) in all_tables(warehouse) {
        let log = warehouse.table_log(&id, &table);
        let snapshot = warehouse.snapshot(&log).await?;
        for c in &snapshot.metadata.constraints {
            let owner = || {
                vec![
                    ScalarCell::Text(Some(db.clone())),
                    ScalarCell::Text(Some(schema_name.clone())),
                    ScalarCell::Text(Some(c.name().to_string())),
                ]
            };
            match name {
                "table_constraints" => {
                    let mut row = owner();
                    row.extend(
                        [&db, &schema_name, &table].map(|s| ScalarCell::Text(Some(s.clone()))),
                    );
                    row.push(ScalarCell::Text(Some(c.kind().to_string())));
                    row.extend(["NO", "NO", "YES"].map(|s| ScalarCell::Text(Some(s.to_string()))));
                    rows.push(row);
                }
                "key_column_usage" => {
                    let referenced = match c {
                        strata_storage::Constraint::ForeignKey {
                            references,
                            referenced_columns,
                            ..
                        } => Some((references, referenced_columns)),
                        _ => None,
                    };
                    for (i, column) in c.columns().iter().enumerate() {
                        let mut row = owner();
                        row.extend(
                            [&db, &schema_name, &table, column]
                                .map(|s| ScalarCell::Text(Some(s.clone()))),
                        );
                        row.push(ScalarCell::Int(Some(i as i64 + 1)));
                        row.push(ScalarCell::Int(referenced.map(|_| i as i64 + 1)));
                        row.push(ScalarCell::Text(referenced.map(|(t, _)| t[1].clone())));
                        row.push(ScalarCell::Text(referenced.map(|(t, _)| t[2].clone())));
                        row.push(ScalarCell::Text(
                            referenced.map(|(_, cols)| cols[i].clone()),
                        ));
                        rows.push(row);
                    }
                }
                _ => {
                    if let strata_storage::Constraint::Check { expr, .. } = c {
                        let mut row = owner();
                        row.push(ScalarCell::Text(Some(expr.clone())));
                        rows.push(row);
                    }
                }
            }
        }
    }
    let columns: Vec<ArrayRef> = (0..width)
        .map(|i| match schema.field(i).data_type() {
            DataType::Int64 => {
                let mut b = Int64Builder::new();
                for r in &rows {
                    b.append_option(match &r[i] {
                        ScalarCell::Int(v) => *v,
                        ScalarCell::Text(_) => None,
                    });
                }
                Arc::new(b.finish()) as ArrayRef
            }
            _ => {
                let mut b = StringBuilder::new();
                for r in &rows {
                    b.append_option(match &r[i] {
                        ScalarCell::Text(v) => v.clone(),
                        ScalarCell::Int(_) => None,
                    });
                }
                Arc::new(b.finish()) as ArrayRef
            }
        })
        .collect();
    Ok(Some(mem_table(schema, columns)?))
}

/// One value of a row being built for a view.
enum ScalarCell {
    Text(Option<String>),
    Int(Option<i64>),
}

/// Builds system table `name`, or `None` if there is no such table.
pub(crate) async fn system_table(
    warehouse: &Warehouse,
    planner: &dyn Planner,
    viewer: &Viewer,
    name: &str,
) -> Result<Option<Arc<dyn TableProvider>>> {
    warehouse.refresh_catalog().await?;
    Ok(Some(match name {
        "partitions" => partitions(warehouse).await?,
        "indexes" => indexes(warehouse).await?,
        "table_versions" => table_versions(warehouse).await?,
        "query_log" => query_log(warehouse, &viewer.user()).await?,
        "load_history" => load_history(warehouse).await?,
        "load_errors" => load_errors(warehouse).await?,
        "materialized_views" => materialized_view::system_table(warehouse, planner).await?,
        "lineage" => lineage::system_table(warehouse).await?,
        "column_lineage" => column_lineage::system_table(warehouse, planner).await?,
        "scan_cache" => scan_cache(warehouse)?,
        "secrets" => secrets(warehouse).await?,
        "data_tests" => data_tests::data_tests(warehouse).await?,
        "data_test_results" => data_tests::data_test_results(warehouse).await?,
        "task_runs" => tasks::task_runs(warehouse).await?,
        "task_graph" => tasks::task_graph(warehouse).await?,
        "alert_history" => tasks::alert_history(warehouse).await?,
        "tables" => tables::tables(warehouse).await?,
        "columns" => tables::columns(warehouse).await?,
        "freshness" => tables::freshness_table(warehouse).await?,
        "ingest_channels" => ingest_channels::ingest_channels(warehouse).await?,
        _ => return Ok(None),
    }))
}

/// The named secrets, without what they hold: name, type, endpoint, region, whether they carry
/// a key, who created them and when.
async fn secrets(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("secret_name", DataType::Utf8, false),
        Field::new("secret_type", DataType::Utf8, false),
        Field::new("endpoint", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("has_key", DataType::Boolean, false),
        Field::new("created_by", DataType::Utf8, false),
        ts_field("created_at"),
    ]));
    let secrets = strata_storage::Secrets::new(warehouse.object_store())
        .list()
        .await?;
    let text = |f: &dyn Fn(&strata_storage::Secret) -> Option<String>| {
        Arc::new(secrets.iter().map(f).collect::<arrow::array::StringArray>()) as ArrayRef
    };
    let columns = vec![
        text(&|s| Some(s.name.clone())),
        text(&|s| Some(s.kind.clone())),
        text(&|s| s.endpoint.clone()),
        text(&|s| s.region.clone()),
        Arc::new(
            secrets
                .iter()
                .map(|s| Some(s.key_id.is_some()))
                .collect::<arrow::array::BooleanArray>(),
        ) as ArrayRef,
        text(&|s| Some(s.created_by.clone())),
        Arc::new(
            arrow::array::TimestampMicrosecondArray::from(
                secrets
                    .iter()
                    .map(|s| s.created_at.timestamp_micros())
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ) as ArrayRef,
    ];
    mem_table(schema, columns)
}

/// What the scan cache holds, per table: files, columns, rows and bytes, with the cache's
/// budget on every row.
fn scan_cache(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("columns", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("budget_bytes", DataType::UInt64, false),
    ]));
    let cache = warehouse.scan_cache();
    let contents = cache.contents();
    let mut names: Vec<StringBuilder> = (0..3).map(|_| StringBuilder::new()).collect();
    let mut nums: Vec<UInt64Builder> = (0..5).map(|_| UInt64Builder::new()).collect();
    for (db, schema_name, table, id) in all_tables(warehouse) {
        let prefix = format!("tables/{}/", id.0);
        let files: Vec<_> = contents
            .iter()
            .filter(|(path, ..)| path.starts_with(&prefix))
            .collect();
        if files.is_empty() {
            continue;
        }
        names[0].append_value(&db);
        names[1].append_value(&schema_name);
        names[2].append_value(&table);
        nums[0].append_value(files.len() as u64);
        nums[1].append_value(files.iter().map(|f| f.2).max().unwrap_or(0) as u64);
        nums[2].append_value(files.iter().map(|f| f.1 as u64).sum());
        nums[3].append_value(files.iter().map(|f| f.3 as u64).sum());
        nums[4].append_value(cache.budget() as u64);
    }
    let columns = names
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .chain(nums.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef))
        .collect();
    mem_table(schema, columns)
}

async fn partitions(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("partition_name", DataType::Utf8, false),
        Field::new("lower_bound", DataType::Utf8, true),
        Field::new("upper_bound", DataType::Utf8, true),
        Field::new("row_count", DataType::UInt64, false),
        Field::new("file_count", DataType::UInt64, false),
        Field::new("size_bytes", DataType::UInt64, false),
        // Rows deletion vectors mark in the partition's files: OPTIMIZE folds them away.
        Field::new("deleted_row_count", DataType::UInt64, false),
        ts_field("expires_at"),
    ]));
    let mut cols: Vec<StringBuilder> = (0..6).map(|_| StringBuilder::new()).collect();
    let mut nums: Vec<UInt64Builder> = (0..4).map(|_| UInt64Builder::new()).collect();
    let mut expires = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for (db, schema_name, table, id) in all_tables(warehouse) {
        let log = warehouse.table_log(&id, &table);
        let snapshot = warehouse.snapshot(&log).await?;
        let retention = snapshot
            .metadata
            .properties
            .get(strata_storage::Retention::PROPERTY)
            .and_then(|text| strata_storage::Retention::parse(text).ok());
        // Name, lower and upper bound as text, and when it expires (microseconds).
        type Row = (String, Option<String>, Option<String>, Option<i64>);
        let parts: Vec<Row> = match &snapshot.metadata.partitioning {
            Some(l) => l
                .partitions
                .iter()
                .map(|p| {
                    let expires = retention
                        .and_then(|r| r.expires_at(l, p.upper))
                        .map(|t| t.timestamp_micros());
                    (
                        p.name.clone(),
                        p.lower.map(|k| l.key_type.format(k)),
                        p.upper.map(|k| l.key_type.format(k)),
                        expires,
                    )
                })
                .collect(),
            None => vec![(String::new(), None, None, None)],
        };
        for (name, lower, upper, expires_at) in parts {
            expires.append_option(expires_at);
            let files: Vec<_> = snapshot.files_in(&name).collect();
            cols[0].append_value(&db);
            cols[1].append_value(&schema_name);
            cols[2].append_value(&table);
            cols[3].append_value(if name.is_empty() { "default" } else { &name });
            cols[4].append_option(lower.or_else(|| {
                snapshot
                    .metadata
                    .partitioning
                    .as_ref()
                    .map(|_| "MINVALUE".to_string())
            }));
            cols[5].append_option(upper.or_else(|| {
                snapshot
                    .metadata
                    .partitioning
                    .as_ref()
                    .map(|_| "MAXVALUE".to_string())
            }));
            nums[0].append_value(files.iter().map(|f| f.live_rows()).sum());
            nums[1].append_value(files.len() as u64);
            nums[2].append_value(files.iter().map(|f| f.size_bytes).sum());
            nums[3].append_value(files.iter().map(|f| f.deleted_rows()).sum());
        }
    }
    let mut columns: Vec<ArrayRef> = cols
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    columns.extend(nums.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(expires.finish()));
    mem_table(schema, columns)
}

/// Every index: its table, kind, columns, and what it does to the table's files.
async fn indexes(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("index_name", DataType::Utf8, false),
        Field::new("index_type", DataType::Utf8, false),
        Field::new("columns", DataType::Utf8, false),
        Field::new("include_columns", DataType::Utf8, true),
        Field::new("effect", DataType::Utf8, false),
        // `ready`, or how many files a background build (CREATE INDEX CONCURRENTLY) has left.
        Field::new("status", DataType::Utf8, false),
    ]));
    let mut cols: Vec<StringBuilder> = (0..9).map(|_| StringBuilder::new()).collect();
    for (db, schema_name, table, id) in all_tables(warehouse) {
        let log = warehouse.table_log(&id, &table);
        let snapshot = warehouse.snapshot(&log).await?;
        let metadata = &snapshot.metadata;
        for index in &metadata.indexes {
            let left = index
                .pending
                .iter()
                .filter(|p| snapshot.files.contains_key(p.as_str()))
                .count();
            cols[0].append_value(&db);
            cols[1].append_value(&schema_name);
            cols[2].append_value(&table);
            cols[3].append_value(&index.name);
            cols[4].append_value(index.kind.sql_name());
            cols[5].append_value(index.columns.join(", "));
            cols[6].append_option((!index.include.is_empty()).then(|| index.include.join(", ")));
            cols[7].append_value(index_effect(metadata, index));
            cols[8].append_value(if left == 0 {
                "ready".to_string()
            } else {
                format!("building: {left} files to rewrite")
            });
        }
    }
    let columns = cols
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    mem_table(schema, columns)
}

/// What `index` does to the files of a table with `metadata`, in words.
pub(crate) fn index_effect(
    metadata: &strata_storage::TableMetadata,
    index: &strata_storage::Index,
) -> String {
    let mut effects = Vec::new();
    if index.kind == strata_storage::IndexKind::BTree {
        if metadata.sort_key().starts_with(&index.columns) && metadata.cluster_by.is_empty() {
            effects.push(format!(
                "files sorted by ({})",
                metadata.sort_key().join(", ")
            ));
        } else if !metadata.cluster_by.is_empty() {
            effects.push(format!(
                "files clustered by ({}) instead",
                metadata.cluster_by.join(", ")
            ));
        } else {
            effects.push(format!(
                "files sorted by ({}) instead",
                metadata.sort_key().join(", ")
            ));
        }
    }
    let blooms = metadata.bloom_filter_columns();
    let bloomed: Vec<&str> = index
        .columns
        .iter()
        .map(String::as_str)
        .filter(|c| blooms.contains(c))
        .collect();
    if !bloomed.is_empty() {
        effects.push(format!("bloom filters on ({})", bloomed.join(", ")));
    }
    if !index.include.is_empty() {
        effects.push(format!(
            "covers ({}) with statistics",
            index.include.join(", ")
        ));
    }
    effects.join("; ")
}

async fn table_versions(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        ts_field("committed_at"),
        Field::new("operation", DataType::Utf8, false),
        Field::new("rows_added", DataType::UInt64, false),
        Field::new("rows_removed", DataType::UInt64, false),
        Field::new("schema_change", DataType::Utf8, true),
    ]));
    let mut s: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::new()).collect();
    let mut version = UInt64Builder::new();
    let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut added = UInt64Builder::new();
    let mut removed = UInt64Builder::new();
    for (db, schema_name, table, id) in all_tables(warehouse) {
        let log = warehouse.table_log(&id, &table);
        let mut before: Option<strata_storage::TableMetadata> = None;
        for c in log.history().await? {
            let metadata = c.actions.iter().rev().find_map(|a| match a {
                strata_storage::Action::Metadata(m) => Some(m.clone()),
                _ => None,
            });
            let change = match (&before, &metadata) {
                (Some(b), Some(m)) => schema_change(b, m),
                _ => None,
            };
            s[4].append_option(change);
            if metadata.is_some() {
                before = metadata;
            }
            s[0].append_value(&db);
            s[1].append_value(&schema_name);
            s[2].append_value(&table);
            version.append_value(c.version.0);
            at.append_value(c.committed_at.timestamp_micros());
            s[3].append_value(&c.operation);
            added.append_value(c.rows_added());
            removed.append_value(c.rows_removed());
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(s[0].finish()),
        Arc::new(s[1].finish()),
        Arc::new(s[2].finish()),
        Arc::new(version.finish()),
        Arc::new(at.finish()),
        Arc::new(s[3].finish()),
        Arc::new(added.finish()),
        Arc::new(removed.finish()),
        Arc::new(s[4].finish()),
    ];
    mem_table(schema, columns)
}

/// What a commit changed in a table's columns, matched by field id: "added c BIGINT, renamed
/// a to b, dropped d, x INT to BIGINT, y NOT NULL"; `None` when the columns are the same.
fn schema_change(
    before: &strata_storage::TableMetadata,
    after: &strata_storage::TableMetadata,
) -> Option<String> {
    let type_of = |c: &strata_storage::ColumnDef| {
        c.sql_type
            .clone()
            .unwrap_or_else(|| strata_storage::sql_type_name(&c.data_type))
    };
    let mut changes = Vec::new();
    for c in &after.columns {
        match before.columns.iter().find(|b| b.field_id == c.field_id) {
            None => changes.push(format!("added {} {}", c.name, type_of(c))),
            Some(b) => {
                if b.name != c.name {
                    changes.push(format!("renamed {} to {}", b.name, c.name));
                }
                if type_of(b) != type_of(c) {
                    changes.push(format!("{} {} to {}", c.name, type_of(b), type_of(c)));
                }
                if b.nullable != c.nullable {
                    let now = if c.nullable { "NULL" } else { "NOT NULL" };
                    changes.push(format!("{} {now}", c.name));
                }
            }
        }
    }
    for b in &before.columns {
        if !after.columns.iter().any(|c| c.field_id == b.field_id) {
            changes.push(format!("dropped {}", b.name));
        }
    }
    (!changes.is_empty()).then(|| changes.join(", "))
}

/// The statements `viewer` may see: their own, or everyone's for an admin.
async fn query_log(warehouse: &Warehouse, viewer: &User) -> Result<Arc<dyn TableProvider>> {
    let mut entries: Vec<QueryLogEntry> = warehouse.records().read_all().await?;
    entries.retain(|e| viewer.admin || e.user_name == viewer.name);
    entries.sort_by_key(|e| e.started_at);
    let schema = Arc::new(Schema::new(vec![
        Field::new("query_id", DataType::Utf8, false),
        Field::new("session_id", DataType::Utf8, false),
        Field::new("user_name", DataType::Utf8, false),
        Field::new("query_text", DataType::Utf8, false),
        ts_field("started_at"),
        Field::new("duration_ms", DataType::UInt64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("rows_returned", DataType::UInt64, false),
        Field::new("partitions_total", DataType::UInt64, false),
        Field::new("partitions_scanned", DataType::UInt64, false),
        Field::new("files_scanned", DataType::UInt64, false),
        Field::new("bytes_scanned", DataType::UInt64, false),
        Field::new("retries", DataType::UInt64, false),
        Field::new("cluster_job", DataType::Utf8, true),
        Field::new("stages", DataType::UInt64, false),
        Field::new("tasks", DataType::UInt64, false),
        Field::new("shuffle_bytes", DataType::UInt64, false),
        Field::new("protocol", DataType::Utf8, false),
    ]));
    let strings = |f: &dyn Fn(&QueryLogEntry) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for e in &entries {
            b.append_option(f(e));
        }
        Arc::new(b.finish())
    };
    let numbers = |f: &dyn Fn(&QueryLogEntry) -> u64| -> ArrayRef {
        Arc::new(arrow::array::UInt64Array::from_iter_values(
            entries.iter().map(f),
        ))
    };
    let mut started = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for e in &entries {
        started.append_value(e.started_at.timestamp_micros());
    }
    let columns: Vec<ArrayRef> = vec![
        strings(&|e| Some(e.query_id.clone())),
        strings(&|e| Some(e.session_id.clone())),
        strings(&|e| Some(e.user_name.clone())),
        strings(&|e| Some(e.query_text.clone())),
        Arc::new(started.finish()),
        numbers(&|e| e.duration_ms),
        strings(&|e| Some(e.status.clone())),
        strings(&|e| e.error.clone()),
        numbers(&|e| e.rows_returned),
        numbers(&|e| e.partitions_total),
        numbers(&|e| e.partitions_scanned),
        numbers(&|e| e.files_scanned),
        numbers(&|e| e.bytes_scanned),
        numbers(&|e| u64::from(e.retries)),
        strings(&|e| e.cluster_job.clone()),
        numbers(&|e| e.stages),
        numbers(&|e| e.tasks),
        numbers(&|e| e.shuffle_bytes),
        strings(&|e| {
            Some(match e.protocol.as_str() {
                "" => "embedded".to_string(),
                p => p.to_string(),
            })
        }),
    ];
    mem_table(schema, columns)
}

async fn load_history(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        ts_field("loaded_at"),
    ]));
    let mut s: Vec<StringBuilder> = (0..6).map(|_| StringBuilder::new()).collect();
    let mut rows = Int64Builder::new();
    let mut bytes = UInt64Builder::new();
    let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for (db, schema_name, table, id) in all_tables(warehouse) {
        let log = warehouse.table_log(&id, &table);
        let snapshot = warehouse.snapshot(&log).await?;
        for l in snapshot.loaded.values() {
            s[0].append_value(&db);
            s[1].append_value(&schema_name);
            s[2].append_value(&table);
            s[3].append_value(&l.file);
            rows.append_value(l.rows as i64);
            bytes.append_value(l.size_bytes);
            if l.rows_rejected > 0 {
                s[4].append_value("PARTIALLY_LOADED");
                s[5].append_value(format!(
                    "{} rows rejected (see system.load_errors)",
                    l.rows_rejected
                ));
            } else {
                s[4].append_value("LOADED");
                s[5].append_null();
            }
            at.append_value(l.loaded_at.timestamp_micros());
        }
    }
    for f in warehouse.records().read_all::<LoadFailure>().await? {
        s[0].append_value(&f.database);
        s[1].append_value(&f.schema);
        s[2].append_value(&f.table);
        s[3].append_value(&f.file);
        rows.append_null();
        bytes.append_value(f.size_bytes);
        s[4].append_value(&f.status);
        s[5].append_value(&f.error);
        at.append_value(f.at.timestamp_micros());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(s[0].finish()),
        Arc::new(s[1].finish()),
        Arc::new(s[2].finish()),
        Arc::new(s[3].finish()),
        Arc::new(rows.finish()),
        Arc::new(bytes.finish()),
        Arc::new(s[4].finish()),
        Arc::new(s[5].finish()),
        Arc::new(at.finish()),
    ];
    mem_table(schema, columns)
}

async fn load_errors(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let mut loads: Vec<LoadErrors> = warehouse.records().read_all().await?;
    loads.sort_by_key(|l| l.at);
    let schema = Arc::new(Schema::new(vec![
        Field::new("load_id", DataType::Utf8, false),
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::Int64, true),
        Field::new("column_name", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, false),
        Field::new("load_status", DataType::Utf8, false),
        ts_field("loaded_at"),
    ]));
    let mut s: Vec<StringBuilder> = (0..9).map(|_| StringBuilder::new()).collect();
    let mut line = Int64Builder::new();
    let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for load in &loads {
        for r in &load.rows {
            s[0].append_value(&load.load_id);
            s[1].append_value(&load.database);
            s[2].append_value(&load.schema);
            s[3].append_value(&load.table);
            s[4].append_value(&r.file);
            line.append_option(r.line.map(|l| l as i64));
            s[5].append_option(r.column.as_deref());
            s[6].append_option(r.value.as_deref());
            s[7].append_value(&r.error);
            s[8].append_value(&load.load_status);
            at.append_value(load.at.timestamp_micros());
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, b) in s.iter_mut().enumerate() {
        if i == 5 {
            columns.push(Arc::new(line.finish()));
        }
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(at.finish()));
    mem_table(schema, columns)
}
