//! Join elimination through enforced foreign keys.
//!
//! BI tools and views join every dimension a model declares, whether the question needs it or
//! not: `SELECT sum(amount) FROM sales JOIN dim_customer c ON sales.customer_id = c.id`. When
//! `sales.customer_id REFERENCES dim_customer (id)` is declared, Strata has checked every row
//! on write, so each fact row with a non-NULL key matches exactly one dimension row (the key is
//! the dimension's primary or unique key). If the query uses no dimension column beyond the
//! join key, the inner join changes nothing but dropping rows whose key is NULL: this rule
//! replaces it with its fact side, filtered on `key IS NOT NULL`, and passes the fact's key
//! out under the dimension key's name. `EXPLAIN` shows the dimension gone.
//!
//! It applies only to plain inner equi-joins on exactly the foreign key's columns, to an
//! unfiltered dimension scan, and to current (not time-travel) versions of both tables.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, NullEquality, Result, TableReference};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Filter, Join, JoinType, LogicalPlan, Projection, TableScan};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use strata_storage::Constraint;

use crate::table::StrataTable;

/// The optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ForeignKeyJoinElimination;

impl OptimizerRule for ForeignKeyJoinElimination {
    fn name(&self) -> &str {
        "strata_foreign_key_join_elimination"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(join) = &plan else {
            return Ok(Transformed::no(plan));
        };
        if join.join_type != JoinType::Inner
            || join.filter.is_some()
            || join.null_equality != NullEquality::NullEqualsNothing
            || join.on.is_empty()
        {
            return Ok(Transformed::no(plan));
        }
        for dimension_on_right in [true, false] {
            if let Some(replacement) = eliminate(join, dimension_on_right)? {
                return Ok(Transformed::yes(replacement));
            }
        }
        Ok(Transformed::no(plan))
    }
}

/// The join without its dimension side, if that side can go.
fn eliminate(join: &Join, dimension_on_right: bool) -> Result<Option<LogicalPlan>> {
    let (fact, dimension) = if dimension_on_right {
        (&join.left, &join.right)
    } else {
        (&join.right, &join.left)
    };
    let Some((dimension_scan, dimension_table)) = bare_scan(dimension) else {
        return Ok(None);
    };
    // Pairs of (fact key column, dimension key column).
    let mut keys: Vec<(&Column, &Column)> = Vec::new();
    for (l, r) in &join.on {
        let (f, d) = if dimension_on_right { (l, r) } else { (r, l) };
        match (f, d) {
            (Expr::Column(f), Expr::Column(d)) => keys.push((f, d)),
            _ => return Ok(None),
        }
    }
    // The query may use no dimension column but the keys.
    let dimension_keys: Vec<&str> = keys.iter().map(|(_, d)| d.name.as_str()).collect();
    if dimension_scan
        .projected_schema
        .fields()
        .iter()
        .any(|f| !dimension_keys.contains(&f.name().as_str()))
    {
        return Ok(None);
    }
    // The fact keys: columns of one warehouse table with a foreign key on exactly them.
    let mut fact_table: Option<Scanned> = None;
    for (f, _) in &keys {
        let Some(t) = f.relation.as_ref().and_then(|q| scan_of(fact, q)) else {
            return Ok(None);
        };
        if fact_table.as_ref().is_some_and(|seen| seen.name != t.name) {
            return Ok(None);
        }
        fact_table = Some(t);
    }
    let Some(fact_table) = fact_table else {
        return Ok(None);
    };
    if fact_table.historical || dimension_table.historical {
        return Ok(None);
    }
    let dimension_name: Vec<&str> = dimension_table.name.split('.').collect();
    let enforced = fact_table.constraints.iter().any(|c| {
        let Constraint::ForeignKey {
            columns,
            references,
            referenced_columns,
            ..
        } = c
        else {
            return false;
        };
        references
            .iter()
            .map(String::as_str)
            .eq(dimension_name.iter().copied())
            && columns.len() == keys.len()
            && keys.iter().all(|(f, d)| {
                columns
                    .iter()
                    .zip(referenced_columns)
                    .any(|(fc, dc)| *fc == f.name && *dc == d.name)
            })
    });
    if !enforced {
        return Ok(None);
    }
    // Inner join semantics: rows whose key is NULL match nothing.
    let not_null = conjunction(
        keys.iter()
            .map(|(f, _)| Expr::Column((*f).clone()).is_not_null()),
    )
    .expect("at least one key");
    let filtered = LogicalPlan::Filter(Filter::try_new(not_null, Arc::clone(fact))?);
    // The join's columns, in its order: the dimension's keys are the fact's key values.
    let left_len = join.left.schema().fields().len();
    let mut exprs = Vec::with_capacity(join.schema.fields().len());
    for (i, (qualifier, field)) in join.schema.iter().enumerate() {
        let from_dimension = (i >= left_len) == dimension_on_right;
        if !from_dimension {
            exprs.push(Expr::Column(Column::new(qualifier.cloned(), field.name())));
            continue;
        }
        let Some((f, _)) = keys.iter().find(|(_, d)| d.name == *field.name()) else {
            return Ok(None);
        };
        exprs.push(Expr::Column((*f).clone()).alias_qualified(qualifier.cloned(), field.name()));
    }
    Ok(Some(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(filtered),
    )?)))
}

/// What the rule needs to know of a scanned warehouse table.
#[derive(Debug)]
struct Scanned {
    /// `database.schema.table`.
    name: String,
    historical: bool,
    constraints: Vec<Constraint>,
}

/// The warehouse table `scan` reads, if it is one.
fn scanned(scan: &TableScan) -> Option<Scanned> {
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<StrataTable>()?;
    Some(Scanned {
        name: table.name().to_string(),
        historical: table.is_historical(),
        constraints: table.snapshot().metadata.constraints.clone(),
    })
}

/// A warehouse table scanned without filters or limit (under an alias or a projection of
/// plain columns): a dimension that can be dropped whole.
fn bare_scan(plan: &LogicalPlan) -> Option<(&TableScan, Scanned)> {
    match plan {
        LogicalPlan::TableScan(scan) if scan.filters.is_empty() && scan.fetch.is_none() => {
            scanned(scan).map(|t| (scan, t))
        }
        LogicalPlan::SubqueryAlias(a) => bare_scan(&a.input),
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            bare_scan(&p.input)
        }
        _ => None,
    }
}

/// The warehouse table whose scan produces the columns qualified by `qualifier` in `plan`.
fn scan_of(plan: &LogicalPlan, qualifier: &TableReference) -> Option<Scanned> {
    let mut found = None;
    let _ = plan.apply(|node| {
        found = match node {
            LogicalPlan::TableScan(s) if s.table_name.resolved_eq(qualifier) => scanned(s),
            LogicalPlan::SubqueryAlias(a) if a.alias.resolved_eq(qualifier) => {
                bare_scan(&a.input).map(|(_, t)| t)
            }
            _ => None,
        };
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}
