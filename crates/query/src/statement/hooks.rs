//! What follows a statement that succeeded: its lineage edges are recorded, and `on_commit`
//! materialized views over the tables it changed are refreshed. Neither can fail the statement,
//! which has committed: failures are logged (and a failed refresh is recorded on its view).

use datafusion::sql::sqlparser::ast::{
    ObjectName, Query, SetExpr, Statement as SqlStatement, TableFactor, TableObject,
};
use strata_storage::{CatalogState, LineageEdge};

use crate::catalog::views::upstream;
use crate::error::Result;
use crate::parser::Statement;
use crate::session::Session;

/// Runs the hooks of `statement`, which `session` has just run successfully.
pub(crate) async fn after_success(session: &Session, statement: &Statement) {
    record_lineage(session, statement).await;
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
        | Statement::Refresh { .. }
        | Statement::CreateSecret { .. }
        | Statement::DropSecret { .. }
        | Statement::CreateFileFormat { .. }
        | Statement::DropFileFormat { .. }
        | Statement::CreateExternalTable(_)
        | Statement::ShowIndexes { .. }
        | Statement::DataTest(_) => false,
        // A task's own statements run their hooks as they finish.
        Statement::Task(_) | Statement::SetTags(_) => false,
    }
}
