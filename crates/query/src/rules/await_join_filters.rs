//! `AwaitJoinFilters`: scans below a hash join wait for the join's dynamic filter before they
//! read, so that the filter prunes files and rows from the start (see
//! [`crate::table::runtime_filter`] for how the filters are applied). Each such join also
//! collects its build keys into a bloom filter that the scans test before the join's filter
//! (see [`crate::table::join_keys`]).

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::joins::HashJoinExec;

use crate::config::StrataOptions;
use crate::table::StrataScanExec;
use crate::table::join_keys::{CollectJoinKeysExec, JoinKeySets};

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
        let defaults = StrataOptions::default();
        let options = config
            .extensions
            .get::<StrataOptions>()
            .unwrap_or(&defaults);
        let decode_late = options.late_materialization;
        let bloom_min_keys =
            (decode_late && options.join_bloom_filters).then_some(options.join_bloom_min_keys);
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
        let (plan, key_sets) = match bloom_min_keys {
            Some(min_keys) => collecting_build_keys(plan, &join_filters, min_keys)?,
            None => (plan, JoinKeySets::default()),
        };
        let key_sets = Arc::new(key_sets);
        plan.transform_up(|node| {
            let awaiting = (node.as_ref() as &dyn Any)
                .downcast_ref::<StrataScanExec>()
                .and_then(|scan| scan.awaiting(&join_filters, &key_sets, decode_late));
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

/// `plan` with the build input of each hash join whose filter (in `join_filters`) a Strata
/// scan holds collecting the join's keys (a filter once it has `min_keys` of them), and the
/// key sets they fill, by filter id.
fn collecting_build_keys(
    plan: Arc<dyn ExecutionPlan>,
    join_filters: &HashSet<u64>,
    min_keys: usize,
) -> DfResult<(Arc<dyn ExecutionPlan>, JoinKeySets)> {
    let mut held = HashSet::new();
    plan.apply(|node| {
        if let Some(scan) = (node.as_ref() as &dyn Any).downcast_ref::<StrataScanExec>() {
            held.extend(scan.held_join_filters(join_filters));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut key_sets = JoinKeySets::new();
    let plan = plan
        .transform_up(|node| {
            let Some(join) = (node.as_ref() as &dyn Any).downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            let ids: Vec<u64> = node
                .dynamic_expressions_produced()
                .iter()
                .filter_map(|filter| filter.expression_id())
                .filter(|id| held.contains(id))
                .collect();
            let [id] = ids[..] else {
                return Ok(Transformed::no(node));
            };
            if let Some(collect) = join.left().downcast_ref::<CollectJoinKeysExec>() {
                // Optimized before.
                key_sets.insert(id, Arc::clone(collect.set()));
                return Ok(Transformed::no(node));
            }
            let keys = join
                .on()
                .iter()
                .map(|(build, _)| Arc::clone(build))
                .collect();
            let Some(collect) = CollectJoinKeysExec::new(Arc::clone(join.left()), keys, min_keys)
            else {
                return Ok(Transformed::no(node));
            };
            key_sets.insert(id, Arc::clone(collect.set()));
            let probe = Arc::clone(join.right());
            let join = replace_children_if_necessary(node, vec![Arc::new(collect), probe])?;
            Ok(Transformed::yes(join))
        })?
        .data;
    Ok((plan, key_sets))
}
