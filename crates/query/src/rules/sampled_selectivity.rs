//! Gives a `FilterExec` over a Strata scan the selectivity the scan sampled, so that join
//! planning sees how many rows the filter really keeps (see [`crate::table::selectivity`]).
//!
//! DataFusion estimates a filter it cannot analyse with intervals (`LIKE`, functions) at its
//! default selectivity, 20%. This rule runs before DataFusion's `join_selection`, which
//! picks each hash join's build side from those estimates, and sets the filter's default
//! selectivity to the sampled fraction (in whole percent, at least 1%: DataFusion's unit).

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::intervals::utils::check_support;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;

use crate::table::scan::StrataScanExec;

/// The optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct SampledSelectivity;

impl PhysicalOptimizerRule for SampledSelectivity {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            let sampled = filter
                .input()
                .downcast_ref::<StrataScanExec>()
                .and_then(StrataScanExec::sampled_selectivity);
            let Some(selectivity) = sampled else {
                return Ok(Transformed::no(node));
            };
            if check_support(filter.predicate(), &filter.input().schema()) {
                // DataFusion estimates this one from the columns' statistics.
                return Ok(Transformed::no(node));
            }
            let percent = (selectivity * 100.0).round().clamp(1.0, 100.0) as u8;
            let filter = filter.clone().with_default_selectivity(percent)?;
            Ok(Transformed::yes(Arc::new(filter) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "strata_sampled_selectivity"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use arrow::util::pretty::pretty_format_batches;

    use crate::Warehouse;

    /// `big` has 200,000 rows, 1% of whose names contain 'green'; `mid` has 20,000. At
    /// DataFusion's default 20%, the filtered `big` (40,000) looks larger than `mid`, which
    /// becomes the hash table; sampled at 1%, the 2,000 green rows are.
    const SETUP: &str = "CREATE TABLE big (k BIGINT, name VARCHAR);
        INSERT INTO big SELECT value, CASE WHEN value % 100 = 0 THEN 'green ' ELSE 'blue ' END \
            || CAST(value AS VARCHAR) FROM generate_series(1, 200000);
        CREATE TABLE mid (k BIGINT, v BIGINT);
        INSERT INTO mid SELECT value * 10, value FROM generate_series(1, 20000)";

    const QUERY: &str = "SELECT count(*), sum(v) FROM mid JOIN big ON mid.k = big.k \
        WHERE big.name LIKE '%green%'";

    /// The text of `EXPLAIN sql`.
    async fn explain(session: &mut crate::Session, sql: &str) -> String {
        let explained = session
            .sql(&format!("EXPLAIN {sql}"))
            .await
            .expect("explain");
        pretty_format_batches(&explained[0].batches)
            .expect("format")
            .to_string()
    }

    /// The table on the build (left) side of the plan's only hash join, and the plan.
    async fn build_side(session: &mut crate::Session) -> (String, String) {
        let plan = explain(session, QUERY).await;
        let join = plan
            .lines()
            .position(|l| l.contains("HashJoinExec"))
            .unwrap_or_else(|| panic!("no hash join in {plan}"));
        let first_scan = plan
            .lines()
            .skip(join)
            .find(|l| l.contains("StrataScanExec"))
            .unwrap_or_else(|| panic!("no scan below the join in {plan}"));
        let table = if first_scan.contains("table=main.public.big,") {
            "big"
        } else {
            "mid"
        };
        (table.to_string(), plan)
    }

    #[tokio::test]
    async fn a_join_builds_on_the_side_a_sampled_filter_keeps_small() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session.sql(SETUP).await.expect("setup");

        let (table, plan) = build_side(&mut session).await;
        assert_eq!(table, "big", "{plan}");
        assert!(plan.contains("sampled_selectivity=0.010"), "{plan}");

        session
            .sql("SET strata.sample_filter_selectivity = false")
            .await
            .expect("set");
        let (table, plan) = build_side(&mut session).await;
        assert_eq!(table, "mid", "{plan}");
        assert!(!plan.contains("sampled_selectivity"), "{plan}");

        // Either plan gives the same answer.
        let answer = |results: Vec<crate::StatementResult>| {
            pretty_format_batches(&results[0].batches)
                .expect("format")
                .to_string()
        };
        let unsampled = answer(session.sql(QUERY).await.expect("query"));
        session
            .sql("SET strata.sample_filter_selectivity = true")
            .await
            .expect("set");
        let sampled = answer(session.sql(QUERY).await.expect("query"));
        assert_eq!(sampled, unsampled);
        assert!(sampled.contains("| 2000 "), "{sampled}");
    }

    /// Filters DataFusion estimates from min/max, and small tables, are not sampled.
    #[tokio::test]
    async fn only_filters_datafusion_cannot_estimate_are_sampled() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session.sql(SETUP).await.expect("setup");
        for (sql, sampled) in [
            ("SELECT count(*) FROM big WHERE k < 1000", false),
            (
                "SELECT count(*) FROM big WHERE k < 1000 AND name LIKE 'g%'",
                true,
            ),
            (
                "SELECT count(*) FROM mid WHERE CAST(v AS VARCHAR) LIKE '1%'",
                false,
            ),
            (
                "SELECT count(*) FROM big WHERE upper(name) = 'GREEN 100'",
                true,
            ),
        ] {
            let plan = explain(&mut session, sql).await;
            assert_eq!(
                plan.contains("sampled_selectivity="),
                sampled,
                "{sql}: {plan}"
            );
        }
    }

    /// The sample spreads over the table's files, and counts what pruning removed: with one
    /// file of status 'F' and one of 'O', half the rows are 'F', whether pruning keeps both
    /// files (a function of the column) or only the 'F' file (a prefix LIKE).
    #[tokio::test]
    async fn the_sample_spans_files_and_counts_the_pruned_ones() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE st (k BIGINT, s VARCHAR);
                 INSERT INTO st SELECT value, 'F' FROM generate_series(1, 100000);
                 INSERT INTO st SELECT value, 'O' FROM generate_series(1, 100000)",
            )
            .await
            .expect("setup");
        for sql in [
            "SELECT count(*) FROM st WHERE upper(s) = 'F'",
            "SELECT count(*) FROM st WHERE s LIKE 'F%'",
        ] {
            let plan = explain(&mut session, sql).await;
            assert!(plan.contains("sampled_selectivity=0.500"), "{sql}: {plan}");
        }
    }
}
