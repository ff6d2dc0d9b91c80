//! Strata's extensions of DataFusion's planner: optimizer and analyzer rules, and table
//! functions. Each is a DataFusion extension point; the session installs them all
//! (see [`crate::session`]).
//!
//! - [`star_join`]: orders a star join's dimensions by how selective their filters are;
//! - [`fk_join`]: drops joins to a dimension that a foreign key proves lose and add no rows;
//! - [`decimal_arithmetic`]: DECIMAL `+ - *` without per-row overflow checks when the
//!   operands' bounds prove none can overflow;
//! - [`date_comparison`]: compares DATE with TIMESTAMP as dates, as warehouses do;
//! - [`checked_integers`]: integer `+ - *` fail on overflow instead of wrapping;
//! - [`await_join_filters`]: makes scans below a hash join wait for its dynamic filter;
//! - [`yield_after_joins`]: joins yield to the runtime, so a cancelled query stops;
//! - [`date_dimension`]: the `date_dimension(start, end)` table function.

pub(crate) mod await_join_filters;
pub(crate) mod checked_integers;
pub(crate) mod date_comparison;
pub(crate) mod date_dimension;
pub(crate) mod decimal_arithmetic;
pub(crate) mod fk_join;
pub(crate) mod star_join;
pub(crate) mod yield_after_joins;

use std::sync::Arc;

use datafusion::optimizer::{AnalyzerRule, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::prelude::SessionContext;

/// DataFusion's analyzer rules with Strata's among them.
pub(crate) fn analyzer_rules() -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    date_comparison::analyzer_rules()
}

/// Strata's logical optimizer rules, run after DataFusion's.
pub(crate) fn logical_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    vec![
        Arc::new(star_join::StarJoinOrder),
        Arc::new(fk_join::ForeignKeyJoinElimination),
        Arc::new(decimal_arithmetic::DecimalArithmetic),
    ]
}

/// Strata's physical optimizer rules, run after DataFusion's.
pub(crate) fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    vec![
        Arc::new(await_join_filters::AwaitJoinFilters),
        Arc::new(yield_after_joins::YieldAfterJoins),
    ]
}

/// Registers Strata's table functions on a context.
pub(crate) fn register_table_functions(ctx: &SessionContext) {
    ctx.register_udtf("date_dimension", Arc::new(date_dimension::DateDimension));
}
