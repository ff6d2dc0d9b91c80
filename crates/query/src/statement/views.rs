//! `CREATE [OR REPLACE] VIEW`: a view's query checked (planned once, and refused if it would
//! read itself) and kept in the catalog as text (see [`crate::catalog::views`]).

use std::collections::HashSet;

use chrono::Utc;
use datafusion::sql::sqlparser::ast::{CreateTableOptions, CreateView, Statement as SqlStatement};
use strata_storage::{CatalogState, Error as StorageError, ViewEntry};

use crate::error::{Error, Result};
use crate::parser::{self};
use crate::result::StatementResult;
use crate::session::Session;

use crate::catalog::views::upstream;

/// `CREATE [OR REPLACE] VIEW [IF NOT EXISTS] v [(columns)] AS query`.
pub(crate) async fn create(session: &mut Session, view: &CreateView) -> Result<StatementResult> {
    if !matches!(view.options, CreateTableOptions::None) {
        return Err(Error::Unsupported(format!(
            "view options {}; only materialized views take WITH (...)",
            view.options
        )));
    }
    let (db, schema, name) = session.qualify_table(&view.name)?;
    let qualified = format!("{db}.{schema}.{name}");
    let catalog = session.warehouse().catalog();
    let entry = catalog.schema(&db, &schema)?;
    if entry.tables.contains_key(&name) {
        return Err(StorageError::NameTaken {
            name: qualified,
            kind: "table",
        }
        .into());
    }
    if entry.views.contains_key(&name) && view.if_not_exists {
        return Ok(StatementResult::status(format!(
            "view {qualified} already exists"
        )));
    }
    // Plan the query now: a view that cannot run is refused.
    let plan = session
        .plan_raw(SqlStatement::Query(view.query.clone()), None)
        .await?;
    let columns: Vec<String> = view
        .columns
        .iter()
        .map(|c| parser::normalize(&c.name))
        .collect();
    if !columns.is_empty() && columns.len() != plan.schema().fields().len() {
        return Err(Error::Plan(format!(
            "view {qualified} names {} columns but its query returns {}",
            columns.len(),
            plan.schema().fields().len()
        )));
    }
    // Unqualified names resolve where the view is created, as when it was checked above.
    let (current_db, current_schema) = {
        let (d, s) = session.current_schema();
        (d.to_string(), s.to_string())
    };
    let upstream = upstream(&view.query, &current_db, &current_schema, &catalog);
    if reads_itself(&catalog, &upstream, &qualified) {
        return Err(Error::Plan(format!(
            "view {qualified} would read itself: its query depends on {qualified}"
        )));
    }
    let entry = ViewEntry {
        query: view.query.to_string(),
        database: current_db,
        schema: current_schema,
        columns,
        upstream,
        created_at: Utc::now(),
        comment: view.comment.clone(),
        owner: session.user_name(),
    };
    let replace = view.or_replace;
    session
        .warehouse()
        .update_catalog(|c| {
            let s = c.schema_mut(&db, &schema)?;
            if let Some(kind @ ("table" | "external table")) = s.kind_of(&name) {
                return Err(StorageError::NameTaken {
                    name: qualified.clone(),
                    kind,
                });
            }
            if s.views.contains_key(&name) && !replace {
                return Err(StorageError::NameTaken {
                    name: qualified.clone(),
                    kind: "view",
                });
            }
            s.views.insert(name.clone(), entry.clone());
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(format!("created view {qualified}")))
}

/// True when following views from `upstream` leads back to `name`.
fn reads_itself(catalog: &CatalogState, upstream: &[String], name: &str) -> bool {
    let mut seen = HashSet::new();
    let mut todo: Vec<String> = upstream.to_vec();
    while let Some(next) = todo.pop() {
        if next == name {
            return true;
        }
        if !seen.insert(next.clone()) {
            continue;
        }
        let parts: Vec<&str> = next.splitn(3, '.').collect();
        if let [d, s, t] = parts.as_slice()
            && let Some(view) = catalog.view(d, s, t)
        {
            todo.extend(view.upstream.iter().cloned());
        }
    }
    false
}
