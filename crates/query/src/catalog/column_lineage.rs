//! Column-level lineage: which columns of which tables each column of a table or view is
//! computed from, and `system.column_lineage`.
//!
//! [`sources`] reads it off a logical plan as written. DataFusion inlines a view the plan reads
//! under an alias of the view's name; that alias counts as the view, so lineage stops at the
//! view (whose own lineage says what is under it); a CTE or an alias named like a view of the
//! same schema is taken for the view. A scan's columns are
//! themselves; a projection's or an aggregate's output is what its expression references; a
//! join, a filter, a sort or an alias passes its inputs' columns through; a union merges its
//! inputs column by column. Only what flows into a value counts, not what filters or joins
//! (dbt and DataHub draw the same "direct" lineage).
//!
//! Statements that copy data (`CREATE TABLE AS SELECT`, `INSERT ... SELECT`, `MERGE`) record
//! their edges when they succeed, one small JSON object per distinct edge under
//! `_system/column_lineage/`; views and materialized views are planned again when the table
//! is read, so their lineage is always that of their current definition.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::utils::grouping_set_to_exprlist;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use strata_storage::{CatalogState, ColumnLineageEdge};

use crate::catalog::materialized_view;
use crate::catalog::planner::Planner;
use crate::catalog::views::parse_query;
use crate::error::Result;
use crate::warehouse::Warehouse;

/// A source column: the table (`db.schema.name`) and the column's name.
pub(crate) type SourceColumn = (String, String);

/// Plans deeper than this are not followed further (their columns get no sources): lineage
/// is best effort and must stay bounded on any plan.
const MAX_DEPTH: usize = 512;

/// Where a plan's unqualified names resolve, and which names are views.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// The database of unqualified names.
    pub(crate) database: &'a str,
    /// The schema of unqualified names.
    pub(crate) schema: &'a str,
    /// The views of the catalog, `db.schema.name`.
    pub(crate) views: &'a BTreeSet<String>,
}

/// Every view of the catalog, `db.schema.name`.
pub(crate) fn view_names(catalog: &CatalogState) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (db, d) in &catalog.databases {
        for (schema, s) in &d.schemas {
            out.extend(s.views.keys().map(|v| format!("{db}.{schema}.{v}")));
        }
    }
    out
}

/// For each output column of `plan`, the source columns its values come from.
pub(crate) fn sources(plan: &LogicalPlan, scope: Scope<'_>) -> Vec<BTreeSet<SourceColumn>> {
    walk(plan, scope, 0)
}

fn walk(plan: &LogicalPlan, scope: Scope<'_>, depth: usize) -> Vec<BTreeSet<SourceColumn>> {
    let Scope {
        database, schema, ..
    } = scope;
    let width = plan.schema().fields().len();
    if depth > MAX_DEPTH {
        return vec![BTreeSet::new(); width];
    }
    let inputs = || -> Vec<(&LogicalPlan, Vec<BTreeSet<SourceColumn>>)> {
        plan.inputs()
            .into_iter()
            .map(|p| (p, walk(p, scope, depth + 1)))
            .collect()
    };
    let of_exprs = |exprs: &[&Expr], input: &LogicalPlan| {
        let columns = walk(input, scope, depth + 1);
        let mut out: Vec<BTreeSet<SourceColumn>> = exprs
            .iter()
            .map(|e| expr_sources(e, input, &columns, scope, depth))
            .collect();
        out.resize(width, BTreeSet::new());
        out
    };
    let as_source = |table: String| -> Vec<BTreeSet<SourceColumn>> {
        plan.schema()
            .fields()
            .iter()
            .map(|f| BTreeSet::from([(table.clone(), f.name().clone())]))
            .collect()
    };
    match plan {
        LogicalPlan::SubqueryAlias(alias)
            if scope
                .views
                .contains(&alias.alias.clone().resolve(database, schema).to_string()) =>
        {
            as_source(alias.alias.clone().resolve(database, schema).to_string())
        }
        LogicalPlan::TableScan(scan) => as_source(
            scan.table_name
                .clone()
                .resolve(database, schema)
                .to_string(),
        ),
        LogicalPlan::Projection(p) => of_exprs(&p.expr.iter().collect::<Vec<_>>(), &p.input),
        LogicalPlan::Aggregate(a) => {
            let groups = grouping_set_to_exprlist(&a.group_expr).unwrap_or_default();
            let columns = walk(&a.input, scope, depth + 1);
            let sources = |e: &Expr| expr_sources(e, &a.input, &columns, scope, depth);
            let mut out: Vec<BTreeSet<SourceColumn>> = groups.iter().map(|e| sources(e)).collect();
            // GROUPING SETS, ROLLUP and CUBE add DataFusion's `__grouping_id` column after the
            // groups: it comes from no column.
            if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                out.push(BTreeSet::new());
            }
            out.extend(a.aggr_expr.iter().map(sources));
            out.resize(width, BTreeSet::new());
            out
        }
        LogicalPlan::Distinct(Distinct::On(on)) => {
            of_exprs(&on.select_expr.iter().collect::<Vec<_>>(), &on.input)
        }
        LogicalPlan::Window(w) => {
            let columns = walk(&w.input, scope, depth + 1);
            let mut out = columns.clone();
            out.extend(
                w.window_expr
                    .iter()
                    .map(|e| expr_sources(e, &w.input, &columns, scope, depth)),
            );
            out.resize(width, BTreeSet::new());
            out
        }
        LogicalPlan::Union(_) => {
            let mut out = vec![BTreeSet::new(); width];
            for (_, columns) in inputs() {
                for (slot, sources) in out.iter_mut().zip(columns) {
                    slot.extend(sources);
                }
            }
            out
        }
        _ => {
            let inputs = inputs();
            // One input of the same width (filter, sort, limit, alias, distinct): column i is
            // its column i, whatever qualifier the node gives it.
            if let [(input, columns)] = inputs.as_slice()
                && input.schema().fields().len() == width
            {
                return columns.clone();
            }
            // Otherwise (joins): each column is found by name in the input that has it.
            (0..width)
                .map(|i| {
                    let (qualifier, field) = plan.schema().qualified_field(i);
                    inputs
                        .iter()
                        .find_map(|(input, columns)| {
                            input
                                .schema()
                                .index_of_column_by_name(qualifier, field.name())
                                .and_then(|j| columns.get(j).cloned())
                        })
                        .unwrap_or_default()
                })
                .collect()
        }
    }
}

/// The sources of `expr`, evaluated over `input` whose columns come from `columns`; scalar
/// subqueries add the sources of their own output.
fn expr_sources(
    expr: &Expr,
    input: &LogicalPlan,
    columns: &[BTreeSet<SourceColumn>],
    scope: Scope<'_>,
    depth: usize,
) -> BTreeSet<SourceColumn> {
    let mut out = BTreeSet::new();
    for column in expr.column_refs() {
        if let Ok(i) = input.schema().index_of_column(column)
            && let Some(sources) = columns.get(i)
        {
            out.extend(sources.iter().cloned());
        }
    }
    let _ = expr.apply(|e| {
        if let Expr::ScalarSubquery(subquery) = e {
            for sources in walk(&subquery.subquery, scope, depth + 1) {
                out.extend(sources);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// The edges from `plan`'s output columns, named `targets` in order, into `target_table`.
pub(crate) fn edges(
    plan: &LogicalPlan,
    scope: Scope<'_>,
    target_table: &str,
    targets: &[String],
    via: &str,
) -> Vec<ColumnLineageEdge> {
    let mut out = Vec::new();
    for (target, sources) in targets.iter().zip(sources(plan, scope)) {
        for (table, column) in sources {
            if table == target_table && column == *target {
                continue;
            }
            out.push(ColumnLineageEdge {
                target_table: target_table.to_string(),
                target_column: target.clone(),
                source_table: table,
                source_column: column,
                via: via.to_string(),
            });
        }
    }
    out
}

/// A view or materialized view, as its lineage needs it.
struct Defined {
    /// `db.schema.name`.
    target: String,
    /// Where the query's unqualified names resolve.
    database: String,
    schema: String,
    /// Names given to the query's columns; empty keeps the query's own.
    columns: Vec<String>,
    query: String,
    via: &'static str,
}

/// Every edge: recorded ones, and those of views and materialized views as defined now.
async fn all_edges(
    warehouse: &Warehouse,
    planner: &dyn Planner,
) -> Result<BTreeSet<ColumnLineageEdge>> {
    let catalog = warehouse.refresh_catalog().await?;
    let views = view_names(&catalog);
    let mut out: BTreeSet<ColumnLineageEdge> = warehouse
        .records()
        .read_all::<ColumnLineageEdge>()
        .await?
        .into_iter()
        .collect();
    let mut defined: Vec<Defined> = Vec::new();
    for (db, d) in &catalog.databases {
        for (schema, s) in &d.schemas {
            for (name, view) in &s.views {
                defined.push(Defined {
                    target: format!("{db}.{schema}.{name}"),
                    database: view.database.clone(),
                    schema: view.schema.clone(),
                    columns: view.columns.clone(),
                    query: view.query.clone(),
                    via: "VIEW",
                });
            }
        }
    }
    for (name, definition, _) in materialized_view::list(warehouse).await? {
        defined.push(Defined {
            target: name.join("."),
            database: definition.database.clone(),
            schema: definition.schema.clone(),
            columns: Vec::new(),
            query: definition.query.clone(),
            via: "MATERIALIZED VIEW",
        });
    }
    for Defined {
        target,
        database,
        schema,
        columns,
        query,
        via,
    } in defined
    {
        let Ok(statement @ SqlStatement::Query(_)) = parse_query(&query) else {
            continue;
        };
        // A definition that no longer plans (a table dropped under it) has no lineage now.
        let Ok(plan) = planner
            .plan_stored(warehouse, &database, &schema, statement)
            .await
        else {
            continue;
        };
        let names = if columns.is_empty() {
            plan.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        } else {
            columns
        };
        let scope = Scope {
            database: &database,
            schema: &schema,
            views: &views,
        };
        out.extend(edges(&plan, scope, &target, &names, via));
    }
    Ok(out)
}

/// `system.column_lineage`: one row per (target column, source column, via).
pub(crate) async fn system_table(
    warehouse: &Warehouse,
    planner: &dyn Planner,
) -> Result<Arc<dyn TableProvider>> {
    let edges: Vec<ColumnLineageEdge> = all_edges(warehouse, planner).await?.into_iter().collect();
    let schema = Arc::new(Schema::new(
        [
            "target_table",
            "target_column",
            "source_table",
            "source_column",
            "via",
        ]
        .map(|n| Field::new(n, DataType::Utf8, false))
        .to_vec(),
    ));
    let text = |f: fn(&ColumnLineageEdge) -> &str| {
        Arc::new(StringArray::from_iter_values(edges.iter().map(f))) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        text(|e| &e.target_table),
        text(|e| &e.target_column),
        text(|e| &e.source_table),
        text(|e| &e.source_column),
        text(|e| &e.via),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
