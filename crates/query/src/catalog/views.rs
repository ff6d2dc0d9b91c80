//! Logical views: `CREATE [OR REPLACE] VIEW v [(a, b)] AS SELECT ...`, kept in the catalog, and
//! how statements read them.
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

use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::sql::sqlparser::ast::{
    ObjectName, Query, Statement as SqlStatement, Visit, Visitor,
};
use strata_storage::{CatalogState, SYSTEM_SCHEMA, ViewEntry};

use crate::catalog::planner::Planner;
use crate::error::{Error, Result};
use crate::parser::{self, Statement, name_parts, split_time_travel};
use crate::warehouse::Warehouse;

/// The provider of view `database.schema.name`: its query planned now, in its own schema.
pub(crate) async fn provider(
    warehouse: &Warehouse,
    planner: &dyn Planner,
    name: &str,
    entry: &ViewEntry,
) -> Result<Arc<dyn TableProvider>> {
    let query = parse_query(&entry.query)?;
    let plan = planner
        .plan_stored(warehouse, &entry.database, &entry.schema, query)
        .await?;
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
