//! `AwaitJoinFilters`: scans below a hash join wait for the join's dynamic filter before they
//! read, so that the filter prunes files and rows from the start (see
//! [`crate::table::runtime_filter`] for how the filters are applied).

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::HashJoinExec;

use crate::config::StrataOptions;
use crate::table::scan::StrataScanExec;

/// Physical optimizer rule, run after DataFusion's: every Strata scan holding the dynamic filter
/// of a hash join waits for that filter to be complete before it reads (see the module doc).
/// Top-k and aggregate filters are never awaited: they tighten as the scan's own rows arrive.
#[derive(Debug, Default)]
pub(crate) struct AwaitJoinFilters;

impl PhysicalOptimizerRule for AwaitJoinFilters {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let decode_late = config
            .extensions
            .get::<StrataOptions>()
            .is_none_or(|o| o.late_materialization);
        let mut join_filters = HashSet::new();
        plan.apply(|node| {
            if (node.as_ref() as &dyn Any).is::<HashJoinExec>() {
                join_filters.extend(
                    node.dynamic_expressions_produced()
                        .iter()
                        .filter_map(|filter| filter.expression_id()),
                );
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if join_filters.is_empty() {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let awaiting = (node.as_ref() as &dyn Any)
                .downcast_ref::<StrataScanExec>()
                .and_then(|scan| scan.awaiting(&join_filters, decode_late));
            Ok(match awaiting {
                Some(scan) => Transformed::yes(Arc::new(scan) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "await_join_filters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
