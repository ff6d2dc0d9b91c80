//! Joins to a grouped subquery on its group keys alone, so that the join's dynamic filter
//! reaches below the `GROUP BY`.
//!
//! DataFusion decorrelates TPC-H Q2's `ps_supplycost = (SELECT min(ps_supplycost) … WHERE
//! p_partkey = ps_partkey)` into a join on two keys: `p_partkey = ps_partkey` and
//! `ps_supplycost = min(ps_supplycost)`. The hash join's dynamic filter covers both, and an
//! `AggregateExec` passes a filter down only when it names grouping columns alone
//! (apache/datafusion#18404), so the minimum is computed for all 2M parts instead of the few
//! thousand the outer query keeps.
//!
//! When the probe side is grouped by exactly some of the join's keys, those keys are unique
//! there, and joining on them alone with the other equalities as the join filter gives the
//! same rows: each build row meets at most one probe row per key, so the filter is evaluated
//! at most once per build row. The dynamic filter then names the group keys only and is
//! pushed through the aggregate to the scan (a semi-join reduction).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{JoinSide, NullEquality, Result};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::joins::utils::{ColumnIndex, JoinFilter};
use datafusion::physical_plan::projection::ProjectionExec;

use super::rows_passed_through;

/// The physical rule (see the module documentation).
#[derive(Debug)]
pub(crate) struct JoinOnGroupKeys;

impl PhysicalOptimizerRule for JoinOnGroupKeys {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            match on_group_keys(join)? {
                Some(rewritten) => Ok(Transformed::yes(rewritten)),
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "join_on_group_keys"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `join` on the probe side's group keys alone, the other equalities in its filter; `None`
/// when the probe side is not grouped by a strict subset of the join keys.
fn on_group_keys(join: &HashJoinExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if join.on().len() < 2
        || join.null_equality() != NullEquality::NullEqualsNothing
        || join.null_aware
    {
        return Ok(None);
    }
    let Some(unique) = unique_key(join.right()) else {
        return Ok(None);
    };
    let is_group_key = |expr: &Arc<dyn PhysicalExpr>| {
        expr.downcast_ref::<Column>()
            .is_some_and(|c| unique.contains(&c.index()))
    };
    let (kept, moved): (Vec<_>, Vec<_>) = join
        .on()
        .iter()
        .cloned()
        .partition(|(_, r)| is_group_key(r));
    let covered: HashSet<usize> = kept
        .iter()
        .filter_map(|(_, r)| r.downcast_ref::<Column>().map(Column::index))
        .collect();
    if moved.is_empty() || covered != unique {
        return Ok(None);
    }

    let (mut expression, mut column_indices) = match join.filter() {
        Some(filter) => (
            Some(Arc::clone(filter.expression())),
            filter.column_indices().to_vec(),
        ),
        None => (None, Vec::new()),
    };
    for (left, right) in moved {
        let left = into_filter(left, JoinSide::Left, &mut column_indices)?;
        let right = into_filter(right, JoinSide::Right, &mut column_indices)?;
        let equal: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(left, Operator::Eq, right));
        expression = Some(match expression {
            Some(rest) => Arc::new(BinaryExpr::new(rest, Operator::And, equal)),
            None => equal,
        });
    }
    let Some(expression) = expression else {
        return Ok(None);
    };
    let (left_schema, right_schema) = (join.left().schema(), join.right().schema());
    let fields: Vec<Field> = column_indices
        .iter()
        .map(|c| match c.side {
            JoinSide::Left => left_schema.field(c.index).clone(),
            _ => right_schema.field(c.index).clone(),
        })
        .collect();
    let filter = JoinFilter::new(expression, column_indices, Arc::new(Schema::new(fields)));
    let rewritten = join
        .builder()
        .with_on(kept)
        .with_filter(Some(filter))
        .build_exec()?;
    Ok(Some(rewritten))
}

/// `expr`, over the `side` input's columns, over the join filter's columns instead; the
/// columns it needs are added to `column_indices`.
fn into_filter(
    expr: Arc<dyn PhysicalExpr>,
    side: JoinSide,
    column_indices: &mut Vec<ColumnIndex>,
) -> Result<Arc<dyn PhysicalExpr>> {
    expr.transform_up(|e| {
        let Some(column) = e.downcast_ref::<Column>() else {
            return Ok(Transformed::no(e));
        };
        let position = match column_indices
            .iter()
            .position(|c| c.side == side && c.index == column.index())
        {
            Some(position) => position,
            None => {
                column_indices.push(ColumnIndex {
                    index: column.index(),
                    side,
                });
                column_indices.len() - 1
            }
        };
        Ok(Transformed::yes(
            Arc::new(Column::new(column.name(), position)) as Arc<dyn PhysicalExpr>,
        ))
    })
    .data()
}

/// Output columns of `plan` whose values no two rows share: the group keys of a final
/// aggregate without grouping sets, seen through the operators that keep or drop rows but
/// never repeat them.
fn unique_key(plan: &Arc<dyn ExecutionPlan>) -> Option<HashSet<usize>> {
    if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
        let group_by = aggregate.group_expr();
        let grouped = !matches!(aggregate.mode(), AggregateMode::Partial)
            && group_by.is_single()
            && !group_by.is_empty();
        return grouped.then(|| (0..group_by.expr().len()).collect());
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let below = unique_key(projection.input())?;
        return through_columns(&below, projection.expr().iter().map(|e| &e.expr));
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        let below = unique_key(filter.input())?;
        return match filter.projection() {
            None => Some(below),
            Some(projection) => {
                let kept: HashSet<usize> = projection
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| below.contains(i))
                    .map(|(out, _)| out)
                    .collect();
                (kept.len() == below.len()).then_some(kept)
            }
        };
    }
    rows_passed_through(plan).and_then(unique_key)
}

/// The output positions of the `below` key columns among `exprs`, when each is projected as a
/// plain column.
fn through_columns<'a>(
    below: &HashSet<usize>,
    exprs: impl Iterator<Item = &'a Arc<dyn PhysicalExpr>>,
) -> Option<HashSet<usize>> {
    let mut found = HashSet::new();
    let mut seen = HashSet::new();
    for (out, expr) in exprs.enumerate() {
        if let Some(column) = expr.downcast_ref::<Column>()
            && below.contains(&column.index())
            && seen.insert(column.index())
        {
            found.insert(out);
        }
    }
    (seen.len() == below.len()).then_some(found)
}

#[cfg(test)]
mod tests {
    use arrow::util::pretty::pretty_format_batches;

    use crate::Warehouse;

    /// The plan's line for the hash join whose probe side aggregates, and the whole plan.
    async fn top_join(sql: &str) -> (String, String) {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE offers (p BIGINT, s BIGINT, cost BIGINT);
                INSERT INTO offers SELECT value % 1000, value, value % 97 \
                    FROM generate_series(1, 20000)",
            )
            .await
            .expect("setup");
        let explained = session
            .sql(&format!("EXPLAIN {sql}"))
            .await
            .expect("explain");
        let plan = pretty_format_batches(&explained[0].batches)
            .expect("format")
            .to_string();
        let join = plan
            .lines()
            .skip_while(|l| !l.contains("physical_plan"))
            .find(|l| l.contains("HashJoinExec"))
            .unwrap_or_else(|| panic!("no hash join in {plan}"))
            .to_string();
        (join, plan)
    }

    #[tokio::test]
    async fn a_correlated_minimum_joins_on_its_group_key_alone() {
        let (join, plan) = top_join(
            "SELECT p, s FROM offers o WHERE s < 100 AND cost = \
                (SELECT min(cost) FROM offers x WHERE x.p = o.p)",
        )
        .await;
        assert!(join.contains("on=[(p@"), "{plan}");
        assert!(!join.contains("), ("), "one key pair only: {plan}");
        assert!(
            join.contains("filter=cost@") && join.contains("= min("),
            "{plan}"
        );
    }

    #[tokio::test]
    async fn keys_that_are_not_all_the_group_keys_stay() {
        // Grouped by p and s, joined on p and cost: p alone is not unique there.
        let (join, plan) = top_join(
            "SELECT o.p FROM offers o JOIN \
                (SELECT p, s, min(cost) AS c FROM offers GROUP BY p, s) m \
                ON o.p = m.p AND o.cost = m.c WHERE o.s < 100",
        )
        .await;
        assert!(join.contains("), ("), "both key pairs stay: {plan}");
        assert!(!join.contains("filter="), "{plan}");
    }
}
