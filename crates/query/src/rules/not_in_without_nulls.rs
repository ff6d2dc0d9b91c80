//! Plans `NOT IN (subquery)` as a plain anti join when neither side can hold a NULL key, so
//! `join_selection` may hash the smaller side.
//!
//! `x NOT IN (SELECT y …)` is false or unknown for every `x` once one `y` is NULL, and unknown
//! for a NULL `x`. DataFusion plans it as a null-aware anti join, unless both columns are
//! declared `NOT NULL`. A null-aware join is never swapped: it hashes the outer rows (TPC-H
//! Q16: 1.19M part-supplier rows) to probe them with the subquery's (56 suppliers), and emits
//! the unmatched outer rows at the end, in one batch.
//!
//! A scan of a Strata table knows the exact null counts of its snapshot's files, and reads some
//! of those files. When the key reaches both sides as a column from such a scan, through
//! operators that never make a NULL (projections, filters, inner, semi and anti joins), and the
//! scans count no NULL in it, `NOT IN` means `NOT EXISTS`. This rule runs before
//! `join_selection`, and leaves it the choice the planner makes for `NOT EXISTS`: a partitioned
//! or a collected hash table, on either side. A count that is only an estimate (after a
//! `DELETE`) keeps the null-aware join.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{JoinType, Result};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::projection::ProjectionRef;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs, StatisticsContext};

use super::rows_passed_through;
use crate::table::scan::StrataScanExec;

/// The physical rule (see the module documentation).
#[derive(Debug)]
pub(crate) struct NotInWithoutNulls;

impl PhysicalOptimizerRule for NotInWithoutNulls {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The mode DataFusion's planner gives a hash join that need not collect its build side.
        let free_mode =
            config.optimizer.repartition_joins && config.execution.target_partitions > 1;
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if !join.null_aware || !keys_never_null(join)? {
                return Ok(Transformed::no(node));
            }
            // A null-aware join is planned to collect its left side; a plain one may partition.
            let mut plain = join.builder().with_null_aware(false);
            if free_mode {
                plain = plain.with_partition_mode(PartitionMode::Auto);
            }
            let plain = plain.build()?;
            Ok(Transformed::yes(Arc::new(plain) as Arc<dyn ExecutionPlan>))
        })
        .data()
    }

    fn name(&self) -> &str {
        "strata_not_in_without_nulls"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether every key of `join`, on both sides, is a column that holds no NULL.
fn keys_never_null(join: &HashJoinExec) -> Result<bool> {
    for (left, right) in join.on() {
        let (Some(left), Some(right)) = (
            left.downcast_ref::<Column>(),
            right.downcast_ref::<Column>(),
        ) else {
            return Ok(false);
        };
        if !never_null(join.left(), left.index())? || !never_null(join.right(), right.index())? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether output column `index` of `plan` holds no NULL: declared `NOT NULL`, or read from a
/// Strata scan whose files count no NULL in it through operators that never make one.
fn never_null(plan: &Arc<dyn ExecutionPlan>, index: usize) -> Result<bool> {
    let schema = plan.schema();
    let Some(field) = schema.fields().get(index) else {
        return Ok(false);
    };
    if !field.is_nullable() {
        return Ok(true);
    }
    if plan.is::<StrataScanExec>() {
        let stats = StatisticsContext::new().compute(plan.as_ref(), &StatisticsArgs::new())?;
        let nulls = stats.column_statistics.get(index).map(|c| c.null_count);
        return Ok(nulls == Some(Precision::Exact(0)));
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        return match projection
            .expr()
            .get(index)
            .and_then(|e| e.expr.downcast_ref::<Column>())
        {
            Some(column) => never_null(projection.input(), column.index()),
            None => Ok(false),
        };
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        return match before_projection(filter.projection().as_ref(), index) {
            Some(below) => never_null(filter.input(), below),
            None => Ok(false),
        };
    }
    if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        let Some(joined) = before_projection(join.projection.as_ref(), index) else {
            return Ok(false);
        };
        let left_width = join.left().schema().fields().len();
        // Only joins that add no NULL rows: inner joins, and semi or anti joins (one side's
        // columns, as they were).
        return match join.join_type() {
            JoinType::Inner if joined < left_width => never_null(join.left(), joined),
            JoinType::Inner => never_null(join.right(), joined - left_width),
            JoinType::LeftSemi | JoinType::LeftAnti => never_null(join.left(), joined),
            JoinType::RightSemi | JoinType::RightAnti => never_null(join.right(), joined),
            _ => Ok(false),
        };
    }
    match rows_passed_through(plan) {
        Some(input) => never_null(input, index),
        None => Ok(false),
    }
}

/// The column an operator's output column `index` is, before its `projection` of its columns.
fn before_projection(projection: Option<&ProjectionRef>, index: usize) -> Option<usize> {
    projection.map_or(Some(index), |projection| projection.get(index).copied())
}

#[cfg(test)]
mod tests {
    use arrow::util::pretty::pretty_format_batches;

    use crate::Warehouse;

    /// The rows of `sql`, and its plan's anti join line.
    async fn run(setup: &str, sql: &str) -> (String, String) {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session.sql(setup).await.expect("setup");
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
            .find(|l| l.contains("Anti"))
            .unwrap_or_else(|| panic!("no anti join in {plan}"))
            .to_string();
        let rows = session.sql(sql).await.expect("query");
        let rows = pretty_format_batches(&rows[0].batches)
            .expect("format")
            .to_string();
        (join, rows)
    }

    const TABLES: &str = "CREATE TABLE offers (s BIGINT, cost BIGINT);
        INSERT INTO offers SELECT value % 100, value FROM generate_series(1, 5000);
        CREATE TABLE banned (s BIGINT);
        INSERT INTO banned VALUES (3), (5)";

    #[tokio::test]
    async fn not_in_over_columns_without_nulls_is_a_plain_anti_join() {
        let (join, rows) = run(
            TABLES,
            "SELECT count(*) AS n FROM offers WHERE s NOT IN (SELECT s FROM banned)",
        )
        .await;
        assert!(!join.contains("null_aware"), "{join}");
        assert!(rows.contains("| 4900 |"), "{rows}");
    }

    #[tokio::test]
    async fn a_null_in_the_subquery_keeps_the_null_aware_join() {
        let setup = format!("{TABLES}; INSERT INTO banned VALUES (NULL)");
        let (join, rows) = run(
            &setup,
            "SELECT count(*) AS n FROM offers WHERE s NOT IN (SELECT s FROM banned)",
        )
        .await;
        assert!(join.contains("null_aware"), "{join}");
        assert!(rows.contains("| 0 |"), "{rows}");
    }

    #[tokio::test]
    async fn a_null_among_the_outer_rows_keeps_the_null_aware_join() {
        let setup = format!("{TABLES}; INSERT INTO offers VALUES (NULL, 1)");
        let (join, rows) = run(
            &setup,
            "SELECT count(*) AS n FROM offers WHERE s NOT IN (SELECT s FROM banned)",
        )
        .await;
        assert!(join.contains("null_aware"), "{join}");
        assert!(rows.contains("| 4900 |"), "{rows}");
    }

    #[tokio::test]
    async fn a_null_made_by_an_outer_join_keeps_the_null_aware_join() {
        let (join, rows) = run(
            TABLES,
            "SELECT count(*) AS n FROM offers WHERE s NOT IN \
                (SELECT b.s FROM offers o LEFT JOIN banned b ON o.s = b.s)",
        )
        .await;
        assert!(join.contains("null_aware"), "{join}");
        assert!(rows.contains("| 0 |"), "{rows}");
    }
}
