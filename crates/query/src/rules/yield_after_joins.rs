//! `YieldAfterJoins`: joins give the runtime back a turn every so many batches, so a
//! cancelled query stops.
//!
//! A query is stopped (Ctrl-C, a Flight cancel, a dropped client, the query timeout) by
//! dropping its stream, which aborts the tasks running its partitions. An aborted tokio task
//! stops only when it next yields, and DataFusion's operators yield when their input does:
//! its scans spend tokio's cooperative budget per batch. A join that multiplies rows returns
//! thousands of batches per probe batch without polling its input, so an aggregate above it
//! never yields, and a cancelled `SELECT count(*)` of an exploding join ran to its end. Each
//! join's output is wrapped in DataFusion's [`CooperativeExec`], which spends a unit of the
//! budget per batch: a task yields at least every 128 join batches.

use std::any::Any;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};

/// Physical optimizer rule, run last: every join's output spends cooperative budget.
#[derive(Debug, Default)]
pub(crate) struct YieldAfterJoins;

fn is_join(plan: &dyn ExecutionPlan) -> bool {
    let any = plan as &dyn Any;
    any.is::<HashJoinExec>()
        || any.is::<NestedLoopJoinExec>()
        || any.is::<CrossJoinExec>()
        || any.is::<SortMergeJoinExec>()
        || any.is::<SymmetricHashJoinExec>()
}

impl PhysicalOptimizerRule for YieldAfterJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if is_join(node.as_ref()) {
                Ok(Transformed::yes(Arc::new(CooperativeExec::new(node)) as _))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "yield_after_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_join_of_a_plan_is_wrapped_once() {
        let ctx = datafusion::prelude::SessionContext::new();
        let plan = ctx
            .sql(
                "SELECT count(*) FROM generate_series(1, 10) a JOIN generate_series(1, 10) b \
                 ON a.value = b.value JOIN generate_series(1, 10) c ON b.value < c.value",
            )
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let plan = YieldAfterJoins
            .optimize(plan, &ConfigOptions::default())
            .unwrap();
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let joins = lines.iter().filter(|l| l.contains("JoinExec")).count();
        assert_eq!(joins, 2, "{text}");
        for (i, line) in lines.iter().enumerate() {
            if line.contains("JoinExec") {
                assert!(lines[i - 1].starts_with("CooperativeExec"), "{text}");
            }
        }
    }
}
