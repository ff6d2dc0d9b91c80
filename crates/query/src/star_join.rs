//! Star-join ordering: probe the fact table against its most selective dimensions first.
//!
//! SQL written as `FROM lineorder, dwdate, part, supplier WHERE ...` plans as a left-deep
//! chain of inner joins in FROM order. DataFusion keeps that order (it only swaps build and
//! probe sides), so a dimension without a filter (`dwdate` above) is joined first and every
//! fact row flows through every join. This rule recognises a *star*: a chain of inner
//! equi-joins whose left keys all come from the chain's first input (the fact) and whose
//! right inputs are separate dimensions, and reorders the dimensions by the fraction of their
//! rows their filters are expected to keep, most selective first (ties: smaller dimension
//! first). A projection on top keeps the original column order, so nothing above changes.
//!
//! The selectivity guess is from the shape of each dimension's predicates (equality keeps
//! less than a range, a range less than nothing); it only has to rank dimensions.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Join, JoinConstraint, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub struct StarJoinOrder;

/// One dimension of a star: its plan and the join keys `(fact expr, dimension expr)`.
struct Dimension {
    plan: Arc<LogicalPlan>,
    on: Vec<(Expr, Expr)>,
    null_equality: datafusion::common::NullEquality,
    selectivity: f64,
    rows: usize,
}

impl OptimizerRule for StarJoinOrder {
    fn name(&self) -> &str {
        "strata_star_join_order"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(top) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let Some((fact, mut dimensions)) = star(top) else {
            return Ok(Transformed::no(plan));
        };
        if dimensions.len() < 2 {
            return Ok(Transformed::no(plan));
        }
        let ranked = |d: &Dimension| (d.selectivity, d.rows);
        let sorted = dimensions.windows(2).all(|w| {
            ranked(&w[0])
                .partial_cmp(&ranked(&w[1]))
                .is_some_and(|o| o.is_le())
        });
        if sorted {
            return Ok(Transformed::no(plan));
        }
        dimensions.sort_by(|a, b| {
            ranked(a)
                .partial_cmp(&ranked(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut joined = Arc::new(fact);
        for d in dimensions {
            joined = Arc::new(LogicalPlan::Join(Join::try_new(
                joined,
                d.plan,
                d.on,
                None,
                JoinType::Inner,
                JoinConstraint::On,
                d.null_equality,
                false,
            )?));
        }
        // Restore the original column order (and so the original schema).
        let columns: Vec<Expr> = plan
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        let reordered = LogicalPlanBuilder::from(joined).project(columns)?.build()?;
        Ok(Transformed::yes(reordered))
    }
}

/// Splits a left-deep chain of plain inner equi-joins into its fact and its dimensions. The
/// fact is one of the two inputs of the innermost join (FROM order puts it anywhere) and
/// every join key on the chain's side must reference only the fact.
fn star(top: &Join) -> Option<(LogicalPlan, Vec<Dimension>)> {
    let mut joins = Vec::new();
    let mut join = top;
    loop {
        if join.join_type != JoinType::Inner
            || join.filter.is_some()
            || join.null_aware
            || join.on.is_empty()
        {
            return None;
        }
        joins.push(join);
        match column_projections_skipped(&join.left) {
            LogicalPlan::Join(inner) => join = inner,
            _ => break,
        }
    }
    joins.reverse();
    // Column-only projections between the joins (from projection pushdown) are dropped: the
    // projection on top of the rebuilt chain keeps only the columns the plan had, and
    // projection pushdown prunes the chain again in its next pass.
    let innermost = joins[0];
    let left = column_projections_skipped(&innermost.left);
    let right = column_projections_skipped(&innermost.right);
    let references_only = |expr: &Expr, schema: &DFSchema| {
        let columns = expr.column_refs();
        !columns.is_empty() && columns.iter().all(|c| schema.has_column(c))
    };
    let is_star_around = |fact: &LogicalPlan| {
        joins[1..].iter().all(|j| {
            j.on.iter().all(|(l, r)| {
                references_only(l, fact.schema()) && references_only(r, j.right.schema())
            })
        })
    };
    let dimension = |plan: &Arc<LogicalPlan>, on: Vec<(Expr, Expr)>, null_equality| Dimension {
        plan: Arc::clone(plan),
        on,
        null_equality,
        selectivity: selectivity(plan),
        rows: rows(plan),
    };
    let (fact, first) = if is_star_around(left) {
        (
            left,
            dimension(
                &innermost.right,
                innermost.on.clone(),
                innermost.null_equality,
            ),
        )
    } else if is_star_around(right) {
        let swapped = innermost
            .on
            .iter()
            .map(|(l, r)| (r.clone(), l.clone()))
            .collect();
        (
            right,
            dimension(&innermost.left, swapped, innermost.null_equality),
        )
    } else {
        return None;
    };
    let mut dimensions = vec![first];
    for j in &joins[1..] {
        dimensions.push(dimension(&j.right, j.on.clone(), j.null_equality));
    }
    Some((fact.clone(), dimensions))
}

/// `plan` under any projections that only select columns.
fn column_projections_skipped(plan: &LogicalPlan) -> &LogicalPlan {
    match plan {
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            column_projections_skipped(&p.input)
        }
        _ => plan,
    }
}

/// The fraction of a dimension's rows its filters are expected to keep.
fn selectivity(plan: &LogicalPlan) -> f64 {
    let mut fraction = 1.0;
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Filter(filter) => {
                fraction *= predicate_selectivity(&filter.predicate);
                node = &filter.input;
            }
            LogicalPlan::Projection(p) => node = &p.input,
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            // Filters pushed into a Strata scan are inexact, so a Filter above the scan
            // re-applies them and they were counted there.
            _ => return fraction,
        }
    }
}

fn predicate_selectivity(predicate: &Expr) -> f64 {
    split_conjunction(predicate)
        .into_iter()
        .map(conjunct_selectivity)
        .product()
}

fn conjunct_selectivity(expr: &Expr) -> f64 {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Eq => 0.1,
            Operator::NotEq => 0.9,
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => 0.33,
            Operator::Or => (conjunct_selectivity(left) + conjunct_selectivity(right)).min(1.0),
            Operator::And => conjunct_selectivity(left) * conjunct_selectivity(right),
            _ => 0.5,
        },
        Expr::Between(b) if !b.negated => 0.25,
        Expr::InList(list) if !list.negated => (0.1 * list.list.len() as f64).min(0.5),
        Expr::Like(like) if !like.negated => 0.25,
        Expr::Not(_) => 0.9,
        _ => 0.5,
    }
}

/// The row count of the table under a dimension plan, when its provider knows it.
fn rows(plan: &LogicalPlan) -> usize {
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Filter(f) => node = &f.input,
            LogicalPlan::Projection(p) => node = &p.input,
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::TableScan(scan) => {
                return source_as_provider(&scan.source)
                    .ok()
                    .and_then(|p| p.statistics())
                    .and_then(|s| s.num_rows.get_value().copied())
                    .unwrap_or(usize::MAX);
            }
            _ => return usize::MAX,
        }
    }
}
