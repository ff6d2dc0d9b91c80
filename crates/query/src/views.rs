//! Logical views: `CREATE [OR REPLACE] VIEW v [(a, b)] AS SELECT ...`, kept in the catalog.
//!
//! A view is its query text plus the database and schema its unqualified names resolve in.
//! Nothing is stored but the text: each statement that reads the view plans the query again
//! (so the view always sees its tables' newest data and columns), and DataFusion inlines the
//! plan, so filters and projections reach the tables underneath. The query is planned once
//! at `CREATE` to reject a view that could not run, and `OR REPLACE` refuses a definition that
//! would make a view read itself.

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::Utc;
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::sql::sqlparser::ast::{
    CreateTableOptions, CreateView, ObjectName, Query, Statement as SqlStatement, Visit, Visitor,
};
use strata_storage::{CatalogState, Error as StorageError, ViewEntry};

use crate::error::{Error, Result};
use crate::parser::{self, Statement, name_parts, split_time_travel};
use crate::session::{Session, StatementResult};
use crate::system::SYSTEM_SCHEMA;
use crate::warehouse::Warehouse;

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
    };
    let replace = view.or_replace;
    session
        .warehouse()
        .update_catalog(|c| {
            let s = c.schema_mut(&db, &schema)?;
            if s.tables.contains_key(&name) {
                return Err(StorageError::NameTaken {
                    name: qualified.clone(),
                    kind: "table",
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

/// The provider of view `database.schema.name`: its query planned now, in its own schema.
pub(crate) async fn provider(
    warehouse: &Warehouse,
    name: &str,
    entry: &ViewEntry,
) -> Result<Arc<dyn TableProvider>> {
    let mut session = warehouse.session();
    session.set_schema(&entry.database, &entry.schema)?;
    let plan = session.plan_raw(parse_query(&entry.query)?, None).await?;
    let plan = if entry.columns.is_empty() {
        plan
    } else {
        let renamed: Vec<Expr> = plan
            .schema()
            .columns()
            .into_iter()
            .zip(&entry.columns)
            .map(|(c, n)| Expr::Column(c).alias(n))
            .collect();
        LogicalPlanBuilder::from(plan).project(renamed)?.build()?
    };
    Ok(Arc::new(ViewTable::new(
        plan,
        Some(format!("CREATE VIEW {name} AS {}", entry.query)),
    )))
}

/// Parses stored query text back into a statement.
pub(crate) fn parse_query(text: &str) -> Result<SqlStatement> {
    let mut statements = parser::parse(text)?;
    match (statements.pop(), statements.is_empty()) {
        (Some(s), true) => match s.statement {
            Statement::Sql(q) if matches!(*q, SqlStatement::Query(_)) => Ok(*q),
            _ => Err(Error::Plan(format!("stored query is not a query: {text}"))),
        },
        _ => Err(Error::Plan(format!(
            "stored query is not one query: {text}"
        ))),
    }
}

/// The tables and views `node` (a query or a statement) names, as `db.schema.name`, resolved
/// in `database.schema` (common table expressions, system tables and unknown names left out).
pub(crate) fn upstream<N: Visit>(
    node: &N,
    database: &str,
    schema: &str,
    catalog: &CatalogState,
) -> Vec<String> {
    struct Relations {
        ctes: HashSet<String>,
        names: Vec<ObjectName>,
    }
    impl Visitor for Relations {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    self.ctes.insert(parser::normalize(&cte.alias.name));
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
            self.names.push(relation.clone());
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Relations {
        ctes: HashSet::new(),
        names: Vec::new(),
    };
    let _ = node.visit(&mut visitor);
    let mut out = BTreeSet::new();
    for name in &visitor.names {
        let parts = name_parts(name);
        let (d, s, t) = match parts.as_slice() {
            [t] if visitor.ctes.contains(t) => continue,
            [t] => (database.to_string(), schema.to_string(), t.clone()),
            [s, t] => (database.to_string(), s.clone(), t.clone()),
            [d, s, t] => (d.clone(), s.clone(), t.clone()),
            _ => continue,
        };
        let t = split_time_travel(&t).0.to_string();
        if s == SYSTEM_SCHEMA {
            continue;
        }
        let known = catalog.schema(&d, &s).is_ok_and(|entry| entry.contains(&t));
        if known {
            out.insert(format!("{d}.{s}.{t}"));
        }
    }
    out.into_iter().collect()
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
