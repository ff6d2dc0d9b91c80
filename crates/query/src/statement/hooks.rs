//! What follows a statement that succeeded: its lineage edges (of tables and of columns, see
//! [`crate::catalog::column_lineage`]) are recorded, and `on_commit`
//! materialized views over the tables it changed are refreshed. Neither can fail the statement,
//! which has committed: failures are logged (and a failed refresh is recorded on its view).

use datafusion::common::TableReference;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Ident, MergeAction, MergeInsertKind, ObjectName, Query, SetExpr,
    Statement as SqlStatement, TableFactor, TableObject,
};
use strata_storage::{CatalogState, ColumnLineageEdge, LineageEdge};

use crate::catalog::column_lineage;
use crate::catalog::views::{parse_query, upstream};
use crate::error::Result;
use crate::parser::Statement;
use crate::session::Session;

/// Runs the hooks of `statement`, which `session` has just run successfully.
pub(crate) async fn after_success(session: &Session, statement: &Statement) {
    record_lineage(session, statement).await;
    record_column_lineage(session, statement).await;
    if changes_data(statement) {
        crate::mv::scheduler::refresh_on_commit(session.warehouse()).await;
    }
}

/// Records the edges of a statement that succeeded, if it copies rows between tables.
async fn record_lineage(session: &Session, statement: &Statement) {
    let edges = match edges_of(session, statement) {
        Ok(edges) => edges,
        Err(e) => {
            tracing::warn!(error = %e, "lineage not recorded");
            return;
        }
    };
    let records = session.warehouse().records();
    for edge in edges {
        if let Err(e) = records.put(&edge).await {
            tracing::warn!(error = %e, "lineage not recorded");
        }
    }
}

fn edges_of(session: &Session, statement: &Statement) -> Result<Vec<LineageEdge>> {
    let catalog = session.warehouse().catalog();
    let (db, schema) = session.current_schema();
    let upstream = |node: &dyn UpstreamOf| node.upstream(db, schema, &catalog);
    let (target, upstream, via): (&ObjectName, Vec<String>, &str) = match statement {
        Statement::Sql(s) => match s.as_ref() {
            SqlStatement::CreateTable(c) => match &c.query {
                Some(q) => (&c.name, upstream(q.as_ref()), "CREATE TABLE AS SELECT"),
                None => return Ok(Vec::new()),
            },
            SqlStatement::Insert(insert) => match (&insert.source, &insert.table) {
                (Some(q), TableObject::TableName(name))
                    if !matches!(q.body.as_ref(), SetExpr::Values(_)) =>
                {
                    (name, upstream(q.as_ref()), "INSERT ... SELECT")
                }
                _ => return Ok(Vec::new()),
            },
            SqlStatement::Merge(merge) => match &merge.table {
                TableFactor::Table { name, .. } => (name, upstream(s.as_ref()), "MERGE"),
                _ => return Ok(Vec::new()),
            },
            _ => return Ok(Vec::new()),
        },
        Statement::CreatePartitioned { create, .. } => match create.as_ref() {
            SqlStatement::CreateTable(c) => match &c.query {
                Some(q) => (&c.name, upstream(q.as_ref()), "CREATE TABLE AS SELECT"),
                None => return Ok(Vec::new()),
            },
            _ => return Ok(Vec::new()),
        },
        Statement::ApplyChanges(apply) => (
            &apply.target,
            upstream(apply.source.as_ref()),
            "APPLY CHANGES",
        ),
        _ => return Ok(Vec::new()),
    };
    let (d, s, t) = session.qualify_table(target)?;
    let downstream = format!("{d}.{s}.{t}");
    Ok(upstream
        .into_iter()
        .filter(|u| *u != downstream)
        .map(|upstream| LineageEdge {
            upstream,
            downstream: downstream.clone(),
            via: via.to_string(),
        })
        .collect())
}

/// Records the column edges of a statement that succeeded, if it copies rows between tables.
async fn record_column_lineage(session: &Session, statement: &Statement) {
    let edges = match column_edges_of(session, statement).await {
        Ok(edges) => edges,
        Err(e) => {
            tracing::warn!(error = %e, "column lineage not recorded");
            return;
        }
    };
    let records = session.warehouse().records();
    for edge in edges {
        if let Err(e) = records.put(&edge).await {
            tracing::warn!(error = %e, "column lineage not recorded");
            return;
        }
    }
}

/// The query whose output a statement writes, the columns it writes them to (empty: the
/// query's own names, as `CREATE TABLE AS` names them) and the statement's kind.
async fn column_edges_of(
    session: &Session,
    statement: &Statement,
) -> Result<Vec<ColumnLineageEdge>> {
    let (target, query, mut targets, via): (&ObjectName, String, Vec<String>, &str) =
        match statement {
            Statement::Sql(s) => match s.as_ref() {
                create @ SqlStatement::CreateTable(_) => match ctas_of(create) {
                    Some(found) => found,
                    None => return Ok(Vec::new()),
                },
                SqlStatement::Insert(insert) => match (&insert.source, &insert.table) {
                    (Some(q), TableObject::TableName(name))
                        if !matches!(q.body.as_ref(), SetExpr::Values(_)) =>
                    {
                        let names = insert
                            .columns
                            .iter()
                            .filter_map(|c| c.0.last().and_then(|p| p.as_ident()))
                            .map(ident)
                            .collect();
                        (name, q.to_string(), names, "INSERT ... SELECT")
                    }
                    _ => return Ok(Vec::new()),
                },
                SqlStatement::Merge(merge) => {
                    let TableFactor::Table { name, .. } = &merge.table else {
                        return Ok(Vec::new());
                    };
                    let mut names = Vec::new();
                    let mut values = Vec::new();
                    for clause in &merge.clauses {
                        match &clause.action {
                            MergeAction::Update(update) => {
                                for a in &update.assignments {
                                    if let AssignmentTarget::ColumnName(column) = &a.target
                                        && let Some(last) =
                                            column.0.last().and_then(|p| p.as_ident())
                                    {
                                        names.push(ident(last));
                                        values.push(a.value.to_string());
                                    }
                                }
                            }
                            MergeAction::Insert(insert) => {
                                let MergeInsertKind::Values(rows) = &insert.kind else {
                                    continue;
                                };
                                let Some(row) = rows.rows.first() else {
                                    continue;
                                };
                                let columns: Vec<String> = if insert.columns.is_empty() {
                                    table_columns(session, name).await?
                                } else {
                                    insert
                                        .columns
                                        .iter()
                                        .filter_map(|c| c.0.last().and_then(|p| p.as_ident()))
                                        .map(ident)
                                        .collect()
                                };
                                for (column, value) in columns.into_iter().zip(&row.content) {
                                    names.push(column);
                                    values.push(value.to_string());
                                }
                            }
                            MergeAction::Delete { .. } => {}
                        }
                    }
                    if values.is_empty() {
                        return Ok(Vec::new());
                    }
                    // The values, computed over the target joined to the source as MERGE
                    // names them, are what MERGE writes.
                    let query = format!(
                        "SELECT {} FROM {} CROSS JOIN {}",
                        values.join(", "),
                        merge.table,
                        merge.source
                    );
                    (name, query, names, "MERGE")
                }
                _ => return Ok(Vec::new()),
            },
            Statement::CreatePartitioned { create, .. } => match ctas_of(create) {
                Some(found) => found,
                None => return Ok(Vec::new()),
            },
            _ => return Ok(Vec::new()),
        };
    let (d, s, t) = session.qualify_table(target)?;
    let statement = parse_query(&query)?;
    let plan = session.plan_raw(statement, None).await?;
    if targets.is_empty() {
        targets = match via {
            "INSERT ... SELECT" => table_columns(session, target).await?,
            _ => plan
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        };
    }
    let (database, schema) = session.current_schema();
    let views = column_lineage::view_names(&session.warehouse().catalog());
    let scope = column_lineage::Scope {
        database,
        schema,
        views: &views,
    };
    Ok(column_lineage::edges(
        &plan,
        scope,
        &format!("{d}.{s}.{t}"),
        &targets,
        via,
    ))
}

/// The target, query, named columns and kind of a `CREATE TABLE ... AS SELECT`.
fn ctas_of(create: &SqlStatement) -> Option<(&ObjectName, String, Vec<String>, &'static str)> {
    match create {
        SqlStatement::CreateTable(c) => c.query.as_ref().map(|q| {
            let names = c.columns.iter().map(|c| ident(&c.name)).collect();
            (&c.name, q.to_string(), names, "CREATE TABLE AS SELECT")
        }),
        _ => None,
    }
}

/// A column name as SQL means it: unquoted names fold to lower case.
fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The columns of table `name`, in order.
async fn table_columns(session: &Session, name: &ObjectName) -> Result<Vec<String>> {
    let (d, s, t) = session.qualify_table(name)?;
    let provider = session
        .context()
        .table_provider(TableReference::full(d, s, t))
        .await?;
    Ok(provider
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

/// Queries and statements whose relations can be listed (sqlparser's `Visit` is generic, so
/// not object-safe).
trait UpstreamOf {
    fn upstream(&self, database: &str, schema: &str, catalog: &CatalogState) -> Vec<String>;
}

impl UpstreamOf for Query {
    fn upstream(&self, database: &str, schema: &str, catalog: &CatalogState) -> Vec<String> {
        upstream(self, database, schema, catalog)
    }
}

impl UpstreamOf for SqlStatement {
    fn upstream(&self, database: &str, schema: &str, catalog: &CatalogState) -> Vec<String> {
        upstream(self, database, schema, catalog)
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
        Statement::DropPartitions { .. }
        | Statement::ApplyChanges(_)
        | Statement::ApplyRetention { .. } => true,
        Statement::CreatePartitioned { .. }
        | Statement::AddPartitions { .. }
        | Statement::Vacuum { .. }
        | Statement::OptimizeTiered { .. }
        | Statement::Refresh { .. }
        | Statement::Subscribe { .. }
        | Statement::CreateSecret { .. }
        | Statement::DropSecret { .. }
        | Statement::CreateFileFormat { .. }
        | Statement::DropFileFormat { .. }
        | Statement::CreateExternalTable(_)
        | Statement::ShowIndexes { .. }
        | Statement::DataTest(_) => false,
        // A task's own statements run their hooks as they finish.
        Statement::Task(_) | Statement::Alert(_) | Statement::SetTags(_) => false,
    }
}
