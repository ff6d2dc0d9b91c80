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
//! The selectivity estimate uses the table's column min/max for ranges on numeric columns
//! (`d_year BETWEEN 1992 AND 1997` keeps about 5/6 of the years) and the predicate's shape
//! otherwise (an equality keeps less than a range, a range less than nothing); it only has
//! to rank dimensions.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Join, JoinConstraint, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
    TableScan,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct StarJoinOrder;

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
    let ranges = ColumnRanges::of(plan);
    let mut fraction = 1.0;
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Filter(filter) => {
                fraction *= predicate_selectivity(&filter.predicate, &ranges);
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

/// Numeric min/max of the scanned table's columns, from its provider's statistics.
struct ColumnRanges(HashMap<String, (f64, f64)>);

impl ColumnRanges {
    fn of(plan: &LogicalPlan) -> Self {
        let mut ranges = HashMap::new();
        if let Some(scan) = table_scan(plan)
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(stats) = provider.statistics()
        {
            let schema = provider.schema();
            for (field, column) in schema.fields().iter().zip(&stats.column_statistics) {
                let (Some(min), Some(max)) = (
                    column.min_value.get_value().and_then(number),
                    column.max_value.get_value().and_then(number),
                ) else {
                    continue;
                };
                ranges.insert(field.name().clone(), (min, max));
            }
        }
        Self(ranges)
    }

    /// The fraction of `[min, max]` of `column` that `[low, high]` covers.
    fn covered(&self, column: &str, low: Option<f64>, high: Option<f64>) -> Option<f64> {
        let (min, max) = *self.0.get(column)?;
        if max <= min {
            return None;
        }
        let low = low.unwrap_or(min).max(min);
        let high = high.unwrap_or(max).min(max);
        Some(((high - low) / (max - min)).clamp(0.0, 1.0))
    }
}

fn number(value: &ScalarValue) -> Option<f64> {
    match value.cast_to(&DataType::Float64).ok()? {
        ScalarValue::Float64(v) => v,
        _ => None,
    }
}

fn table_scan(plan: &LogicalPlan) -> Option<&TableScan> {
    match plan {
        LogicalPlan::TableScan(scan) => Some(scan),
        LogicalPlan::Filter(f) => table_scan(&f.input),
        LogicalPlan::Projection(p) => table_scan(&p.input),
        LogicalPlan::SubqueryAlias(a) => table_scan(&a.input),
        _ => None,
    }
}

/// `column op literal` (or `literal op column`, flipped) as (column name, op, number).
fn column_bound(expr: &Expr) -> Option<(&str, Operator, f64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => Some((c.name.as_str(), *op, number(v)?)),
        (Expr::Literal(v, _), Expr::Column(c)) => Some((c.name.as_str(), op.swap()?, number(v)?)),
        _ => None,
    }
}

fn predicate_selectivity(predicate: &Expr, ranges: &ColumnRanges) -> f64 {
    // Range bounds on one column combine into one range (BETWEEN arrives as two bounds).
    let mut bounds: HashMap<&str, (Option<f64>, Option<f64>)> = HashMap::new();
    let mut fraction = 1.0;
    for conjunct in split_conjunction(predicate) {
        match column_bound(conjunct) {
            Some((column, Operator::Gt | Operator::GtEq, v)) => {
                bounds.entry(column).or_default().0 = Some(v);
            }
            Some((column, Operator::Lt | Operator::LtEq, v)) => {
                bounds.entry(column).or_default().1 = Some(v);
            }
            _ => fraction *= conjunct_selectivity(conjunct, ranges),
        }
    }
    for (column, (low, high)) in bounds {
        fraction *= ranges
            .covered(column, low, high)
            .unwrap_or(match (low, high) {
                (Some(_), Some(_)) => 0.25,
                _ => 0.33,
            });
    }
    fraction
}

fn conjunct_selectivity(expr: &Expr, ranges: &ColumnRanges) -> f64 {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Eq => 0.1,
            Operator::NotEq => 0.9,
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => 0.33,
            Operator::Or => {
                (conjunct_selectivity(left, ranges) + conjunct_selectivity(right, ranges)).min(1.0)
            }
            Operator::And => predicate_selectivity(expr, ranges),
            _ => 0.5,
        },
        Expr::Between(b) if !b.negated => {
            match (b.expr.as_ref(), b.low.as_ref(), b.high.as_ref()) {
                (Expr::Column(c), Expr::Literal(low, _), Expr::Literal(high, _)) => ranges
                    .covered(&c.name, number(low), number(high))
                    .unwrap_or(0.25),
                _ => 0.25,
            }
        }
        Expr::InList(list) if !list.negated => (0.1 * list.list.len() as f64).min(0.5),
        Expr::Like(like) if !like.negated => 0.25,
        Expr::Not(_) => 0.9,
        _ => 0.5,
    }
}

/// The row count of the table under a dimension plan, when its provider knows it.
fn rows(plan: &LogicalPlan) -> usize {
    table_scan(plan)
        .and_then(|scan| source_as_provider(&scan.source).ok())
        .and_then(|p| p.statistics())
        .and_then(|s| s.num_rows.get_value().copied())
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn ranges() -> ColumnRanges {
        ColumnRanges(HashMap::from([("d_year".to_string(), (1992.0, 1998.0))]))
    }

    #[test]
    fn ranges_use_column_bounds_and_combine() {
        let between = col("d_year")
            .gt_eq(lit(1992))
            .and(col("d_year").lt_eq(lit(1997)));
        let s = predicate_selectivity(&between, &ranges());
        assert!((s - 5.0 / 6.0).abs() < 1e-9, "{s}");
        let flipped = lit(1997).gt_eq(col("d_year"));
        assert!((predicate_selectivity(&flipped, &ranges()) - 5.0 / 6.0).abs() < 1e-9);
        // Without statistics a two-sided range is a guess, still less selective than `=`.
        let unknown = col("x").gt(lit(1)).and(col("x").lt(lit(9)));
        assert_eq!(predicate_selectivity(&unknown, &ranges()), 0.25);
    }

    #[test]
    fn equalities_rank_before_ranges_and_disjunctions_add_up() {
        let eq = col("c_region").eq(lit("ASIA"));
        let either = col("c_city")
            .eq(lit("UNITED KI1"))
            .or(col("c_city").eq(lit("UNITED KI5")));
        assert_eq!(predicate_selectivity(&eq, &ranges()), 0.1);
        assert!((predicate_selectivity(&either, &ranges()) - 0.2).abs() < 1e-9);
        let year = col("d_year").eq(lit(1997));
        assert!(predicate_selectivity(&year, &ranges()) < 0.25);
    }
}
