//! Compares DATE with TIMESTAMP in the timestamp's own unit.
//!
//! DataFusion compares a `Date32` with a `Timestamp(µs)` by casting both to nanoseconds, and a
//! nanosecond timestamp ends in 2262. The end date every data warehouse uses for an open
//! version, 9999-12-31, then fails the query ("converted value exceeds the representable i64
//! range"), e.g. `f.order_date < d.end_date` against an SCD Type 2 dimension. This analyzer
//! rule runs before DataFusion's type coercion and casts the DATE side of such a comparison to
//! the timestamp's type, which holds every date.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::{Between, BinaryExpr};
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct DateTimestampComparison;

impl AnalyzerRule for DateTimestampComparison {
    fn name(&self) -> &str {
        "strata_date_timestamp_comparison"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            if !matches!(plan, LogicalPlan::Filter(_) | LogicalPlan::Join(_)) {
                return Ok(Transformed::no(plan));
            }
            let mut schema = DFSchema::empty();
            for input in plan.inputs() {
                schema.merge(input.schema());
            }
            plan.map_expressions(|e| e.transform_up(|e| Ok(rewrite(e, &schema))))
        })
        .map(|t| t.data)
    }
}

/// The timestamp type to compare `a` and `b` in, when one is a DATE and the other a TIMESTAMP
/// coarser than nanoseconds.
fn common(a: &DataType, b: &DataType) -> Option<DataType> {
    match (a, b) {
        (DataType::Date32 | DataType::Date64, DataType::Timestamp(unit, tz))
        | (DataType::Timestamp(unit, tz), DataType::Date32 | DataType::Date64)
            if *unit != TimeUnit::Nanosecond =>
        {
            Some(DataType::Timestamp(*unit, tz.clone()))
        }
        _ => None,
    }
}

fn cast_dates(e: Box<Expr>, to: &DataType, schema: &DFSchema) -> Box<Expr> {
    match e.get_type(schema) {
        Ok(DataType::Date32 | DataType::Date64) => Box::new(Expr::Cast(Cast::new(e, to.clone()))),
        _ => e,
    }
}

fn rewrite(e: Expr, schema: &DFSchema) -> Transformed<Expr> {
    let types = |a: &Expr, b: &Expr| -> Option<DataType> {
        common(&a.get_type(schema).ok()?, &b.get_type(schema).ok()?)
    };
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ) =>
        {
            match types(&left, &right) {
                Some(to) => Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                    left: cast_dates(left, &to, schema),
                    op,
                    right: cast_dates(right, &to, schema),
                })),
                None => Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op, right })),
            }
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let to = types(&expr, &low).or_else(|| types(&expr, &high));
            match to {
                Some(to) => Transformed::yes(Expr::Between(Between {
                    expr: cast_dates(expr, &to, schema),
                    negated,
                    low: cast_dates(low, &to, schema),
                    high: cast_dates(high, &to, schema),
                })),
                None => Transformed::no(Expr::Between(Between {
                    expr,
                    negated,
                    low,
                    high,
                })),
            }
        }
        other => Transformed::no(other),
    }
}

/// The analyzer rules of a session: DataFusion's, with this one before type coercion and
/// [`CheckedIntegers`](super::checked_integers::CheckedIntegers) right after it.
pub(crate) fn analyzer_rules() -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    let mut rules = datafusion::optimizer::Analyzer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "type_coercion")
        .unwrap_or(0);
    rules.insert(at, Arc::new(DateTimestampComparison));
    // Right after type coercion, so both sides of an operator have their final types.
    rules.insert(at + 2, Arc::new(super::checked_integers::CheckedIntegers));
    rules
}
