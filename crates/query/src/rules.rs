//! Strata's extensions of DataFusion's planner: optimizer and analyzer rules, and table
//! functions. Each is a DataFusion extension point; the session installs them all
//! (see [`crate::session`]).
//!
//! - [`correlated_subquery`]: plans the correlated subqueries DataFusion cannot (a non-equality
//!   correlation, EXISTS / IN as a value) as joins;
//! - [`star_join`]: orders a star join's dimensions by how selective their filters are;
//! - [`fk_join`]: drops joins to a dimension that a foreign key proves lose and add no rows;
//! - [`decimal_arithmetic`]: DECIMAL `+ - *` without per-row overflow checks when the
//!   operands' bounds prove none can overflow;
//! - [`date_comparison`]: compares DATE with TIMESTAMP as dates, as warehouses do;
//! - [`checked_integers`]: integer `+ - *` fail on overflow instead of wrapping;
//! - [`checked_sum`]: `SUM` over integers fails on overflow (a function, registered as `sum`);
//! - [`sampled_selectivity`]: filters DataFusion cannot estimate use the selectivity their
//!   scan sampled, so joins build on the smaller side;
//! - [`not_in_without_nulls`]: `NOT IN` over keys the scans count no NULL in is a plain anti
//!   join, which `join_selection` may swap;
//! - [`join_statistics`]: joins on several keys are estimated by their composite key, and a
//!   join's output is compared by rows when `join_selection` picks build sides;
//! - [`group_key_join`]: joins to a grouped subquery on its group keys alone, so the join's
//!   dynamic filter reaches below the `GROUP BY`;
//! - [`await_join_filters`]: makes scans below a hash join wait for its dynamic filter;
//! - [`yield_after_joins`]: joins yield to the runtime, so a cancelled query stops;
//! - [`date_dimension`]: the `date_dimension(start, end)` table function.

pub(crate) mod await_join_filters;
pub(crate) mod checked_integers;
pub(crate) mod checked_sum;
pub(crate) mod correlated_subquery;
pub(crate) mod date_comparison;
pub(crate) mod date_dimension;
pub(crate) mod decimal_arithmetic;
pub(crate) mod fk_join;
pub(crate) mod group_key_join;
pub(crate) mod join_statistics;
pub(crate) mod not_in_without_nulls;
pub(crate) mod sampled_selectivity;
pub(crate) mod star_join;
pub(crate) mod yield_after_joins;

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{ColumnarValue, Expr, LogicalPlan};
use datafusion::optimizer::{AnalyzerRule, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::prelude::SessionContext;

/// Rewrites the expressions of one plan node bottom-up with `rewrite`, which sees the schema of
/// the node's inputs (its own for a leaf), keeping each expression's output name so the nodes
/// above still find it; the node's schema is recomputed when anything changed.
pub(crate) fn rewrite_node_expressions(
    node: LogicalPlan,
    rewrite: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    let mut schema = DFSchema::empty();
    for input in node.inputs() {
        schema.merge(input.schema());
    }
    if node.inputs().is_empty() {
        schema.merge(node.schema());
    }
    let names = NamePreserver::new(&node);
    let node = node.map_expressions(|e| {
        let name = names.save(&e);
        e.transform_up(|e| rewrite(e, &schema))
            .map(|t| t.update_data(|e| name.restore(e)))
    })?;
    if node.transformed {
        node.map_data(|p| p.recompute_schema())
    } else {
        Ok(node)
    }
}

/// The input of `plan` when it passes its input's rows on as they are, in the same columns
/// (repartitions, coalescing, cooperative yields, sorts): what holds for those rows holds for
/// its output.
pub(crate) fn rows_passed_through(
    plan: &Arc<dyn ExecutionPlan>,
) -> Option<&Arc<dyn ExecutionPlan>> {
    let passes = plan.is::<RepartitionExec>()
        || plan.is::<CoalescePartitionsExec>()
        || plan.is::<CooperativeExec>()
        || plan.is::<SortExec>();
    match plan.children()[..] {
        [input] if passes => Some(input),
        _ => None,
    }
}

/// A binary function's result: a scalar when both arguments were scalars (constant folding
/// expects one), else the column.
pub(crate) fn binary_result(result: ArrayRef, both_scalars: bool) -> Result<ColumnarValue> {
    if both_scalars {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &result, 0,
        )?))
    } else {
        Ok(ColumnarValue::Array(result))
    }
}

/// DataFusion's analyzer rules with Strata's among them.
pub(crate) fn analyzer_rules() -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    date_comparison::analyzer_rules()
}

/// DataFusion's logical optimizer rules with Strata's among them: the correlated-subquery rule
/// right after DataFusion's own subquery rules (before filter pushdown moves a subquery's
/// filter below the alias its outer references name), the others after all of DataFusion's.
pub(crate) fn logical_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = datafusion::optimizer::Optimizer::new().rules;
    let after_subqueries = rules
        .iter()
        .position(|r| r.name() == "decorrelate_lateral_join")
        .map_or(rules.len(), |i| i + 1);
    rules.insert(
        after_subqueries,
        Arc::new(correlated_subquery::CorrelatedSubqueries),
    );
    rules.extend([
        Arc::new(star_join::StarJoinOrder) as Arc<dyn OptimizerRule + Send + Sync>,
        Arc::new(fk_join::ForeignKeyJoinElimination),
        Arc::new(decimal_arithmetic::DecimalArithmetic),
    ]);
    rules
}

/// DataFusion's physical optimizer rules with Strata's among them: the plain `NOT IN` joins and
/// the sampled selectivities before `join_selection` picks build sides, the group-key joins right after it
/// (before the distribution of the joins' inputs is planned from their keys), the others
/// after all of DataFusion's.
pub(crate) fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
    let join_selection = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .unwrap_or(0);
    rules.insert(
        join_selection + 1,
        Arc::new(group_key_join::JoinOnGroupKeys),
    );
    rules.insert(
        join_selection,
        Arc::new(sampled_selectivity::SampledSelectivity),
    );
    rules.insert(
        join_selection,
        Arc::new(not_in_without_nulls::NotInWithoutNulls),
    );
    rules.extend([
        Arc::new(await_join_filters::AwaitJoinFilters)
            as Arc<dyn PhysicalOptimizerRule + Send + Sync>,
        Arc::new(yield_after_joins::YieldAfterJoins),
    ]);
    rules
}

/// Registers Strata's table functions on a context.
pub(crate) fn register_table_functions(ctx: &SessionContext) {
    ctx.register_udtf("date_dimension", Arc::new(date_dimension::DateDimension));
}
