//! `CREATE MATERIALIZED VIEW`: the view's table, its definition, and its first refresh.

use std::collections::BTreeMap;

use std::time::Duration;

use chrono::Utc;
use datafusion::sql::sqlparser::ast::{
    CreateTableOptions, CreateView, DuplicateTreatment, Expr as SqlExpr, FunctionArguments, Ident,
    ObjectName, Query, SelectItem, SetExpr, SqlOption, Statement as SqlStatement,
};
use strata_storage::{Error as StorageError, TableMetadata, Transaction};

use crate::catalog::materialized_view::{
    Definition, LastRefresh, RefreshMode, avg_count_column, avg_sum_column, fingerprint,
};
use crate::config::parse_duration;
use crate::error::{Error, Result};
use crate::mv::refresh::{self};
use crate::parser::{self, PartitionClause};
use crate::result::{StatementResult, count_of};
use crate::session::Session;
use crate::table::layout::partition_layout;
use crate::table::write_batches;
use crate::types::column_defs;

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
    let (refresh, watermark) = refresh_options(&view.options)?;
    let storage_query = with_state_columns(&view.query);
    let (current_db, current_schema) = {
        let (d, s) = session.current_schema();
        (d.to_string(), s.to_string())
    };
    let plan = session
        .plan_raw(SqlStatement::Query(Box::new(storage_query.clone())), None)
        .await?;
    if watermark.is_some() && !refresh::has_window(&plan) {
        return Err(Error::Plan(format!(
            "materialized view {qualified}: a watermark needs a window among the group keys: \
             date_bin, time_bucket or date_trunc of a TIMESTAMP column of a table it reads"
        )));
    }
    if refresh == RefreshMode::Continuous && !refresh::folds(&plan) {
        return Err(Error::Plan(format!(
            "materialized view {qualified}: a continuous view folds new rows in, so its query \
             must be one GROUP BY of SUM, COUNT, MIN, MAX or AVG over selections and joins (or \
             no aggregate at all)"
        )));
    }
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
        .map(|p| partition_layout(&qualified, p, &columns))
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
        watermark,
        late_rows: 0,
        late_rows_left_out: 0,
    };
    let mut metadata = TableMetadata {
        columns,
        partitioning,
        properties: BTreeMap::new(),
        constraints: Vec::new(),
        last_field_id: 0,
        name_mapping: Default::default(),
        indexes: Vec::new(),
        cluster_by: Vec::new(),
        tests: Vec::new(),
        tags: Default::default(),
    };
    definition.write_to(&mut metadata.properties);
    let warehouse = session.warehouse().clone();
    let options = session.write_options();
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
                let fingerprint = fingerprint(&plan);
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
                write_batches(&warehouse, options, &qualified, log, &snapshot, stream, txn).await
            },
        )
        .await?;
    Ok(StatementResult::status(format!(
        "created materialized view {qualified} with {}",
        count_of(rows as u64, "row")
    )))
}

/// `refresh = '...'` from `WITH (...)`; `manual` when absent.
/// `WITH (refresh = '...'[, watermark = '2 minutes'])`: when the view refreshes, and a
/// continuous view's watermark.
fn refresh_options(options: &CreateTableOptions) -> Result<(RefreshMode, Option<Duration>)> {
    let options: &[SqlOption] = match options {
        CreateTableOptions::None => return Ok((RefreshMode::Manual, None)),
        CreateTableOptions::With(o) => o,
        other => {
            return Err(Error::Unsupported(format!(
                "materialized view options {other}; Strata takes WITH (refresh = '...')"
            )));
        }
    };
    let mut mode = RefreshMode::Manual;
    let mut watermark = None;
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(Error::Unsupported(format!(
                "materialized view option {option}"
            )));
        };
        let text = match value {
            SqlExpr::Value(v) => match &v.value {
                datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            other => other.to_string(),
        };
        match key.value.to_ascii_lowercase().as_str() {
            "refresh" => mode = RefreshMode::parse(&text)?,
            "watermark" => watermark = Some(parse_duration(&text)?),
            _ => {
                return Err(Error::Unsupported(format!(
                    "materialized view option '{}' (Strata knows refresh and watermark)",
                    key.value
                )));
            }
        }
    }
    if watermark.is_some() && mode != RefreshMode::Continuous {
        return Err(Error::Plan(
            "watermark = '...' is an option of continuous views: add refresh = 'continuous'"
                .to_string(),
        ));
    }
    Ok((mode, watermark))
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
