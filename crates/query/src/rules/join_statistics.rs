//! The statistics DataFusion's `join_selection` picks each hash join's build side from:
//! DataFusion's statistics registry with Strata's estimates for multi-key joins.
//!
//! DataFusion estimates an equi-join on several keys by its most selective key alone (Spark's
//! conservative rule). TPC-H Q9 joins lineitem to partsupp on `(partkey, suppkey)`: by
//! `partkey` alone, 3M lineitem rows meet 8M partsupp rows in 12M, when the composite key is
//! partsupp's primary key and the answer is 3M. The join above it then hashes all 15M orders
//! rather than those 3M rows.
//!
//! Here a side's distinct composite keys are the product of its keys' distinct values (the
//! column's distinct count or its min/max range), at most its rows, and the join keeps
//! `left × right / max(left keys, right keys)` rows.
//!
//! A join's output has no measured size in bytes, only a row estimate: DataFusion leaves its
//! bytes unknown, but a projection above it multiplied the estimate by the column widths
//! again, and `join_selection` compares bytes before rows. Strata keeps such bytes unknown, so a
//! join's output is compared with a table by rows, as a hash table costs per row (its
//! entries, hashes and chains are a few dozen bytes a row besides the data).
//!
//! Projections, filters, joins and the operators that pass rows through derive their
//! statistics from their inputs' enhanced statistics, so an estimate made low in the plan
//! reaches the joins above it (DataFusion's aggregate, limit and union providers take only the
//! row count from them).
//!
//! Known consequence: a join's output, its bytes unknown, is collected into one hash table by
//! its estimated rows (Strata's 4M-row threshold) rather than by DataFusion's 64 MB.

use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::common::{JoinType, Result, Statistics};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::operator_statistics::{
    AggregateStatisticsProvider, DefaultStatisticsProvider, ExtendedStatistics,
    FilterStatisticsProvider, LimitStatisticsProvider, PassthroughStatisticsProvider,
    ProjectionStatisticsProvider, StatisticsProvider, StatisticsRegistry, StatisticsResult,
    UnionStatisticsProvider,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ChildStats, StatisticsArgs};

/// The registry a Strata session plans with: Strata's join and projection providers,
/// DataFusion's others except its join provider (which, without distinct counts, estimates a
/// join as the Cartesian product), then Strata's fallback from enhanced inputs.
pub(crate) fn registry() -> StatisticsRegistry {
    StatisticsRegistry::with_providers(vec![
        Arc::new(CompositeKeyJoins),
        Arc::new(ProjectionKeepsUnknownBytes),
        Arc::new(FilterStatisticsProvider),
        Arc::new(PassthroughStatisticsProvider),
        Arc::new(AggregateStatisticsProvider),
        Arc::new(LimitStatisticsProvider),
        Arc::new(UnionStatisticsProvider),
        Arc::new(FromInputs),
        Arc::new(DefaultStatisticsProvider),
    ])
}

/// Hash joins on several keys, estimated by their composite keys (see the module
/// documentation); joins on one key are DataFusion's estimate from enhanced inputs
/// ([`FromInputs`]).
#[derive(Debug)]
struct CompositeKeyJoins;

impl StatisticsProvider for CompositeKeyJoins {
    fn compute_statistics(
        &self,
        plan: &dyn ExecutionPlan,
        child_stats: &[ExtendedStatistics],
    ) -> Result<StatisticsResult> {
        let Some(join) = plan
            .downcast_ref::<HashJoinExec>()
            .filter(|join| join.on().len() > 1)
        else {
            return Ok(StatisticsResult::Delegate);
        };
        let [left, right] = child_stats else {
            return Ok(StatisticsResult::Delegate);
        };
        let inputs = [Arc::clone(left.base_arc()), Arc::clone(right.base_arc())];
        let mut stats =
            Arc::unwrap_or_clone(join.statistics_from_inputs(&inputs, &StatisticsArgs::new())?);
        let (left_keys, right_keys): (Vec<_>, Vec<_>) = join.on().iter().cloned().unzip();
        let estimate = composite_key_join_rows(
            join.join_type(),
            (left.base(), &left_keys),
            (right.base(), &right_keys),
        );
        if let Some(rows) = estimate {
            // DataFusion's estimate is never below the composite one, except when it knows
            // better (no overlap of the keys' ranges, an empty input): keep the smaller.
            let rows = stats.num_rows.get_value().map_or(rows, |&df| rows.min(df));
            if !stats.num_rows.is_exact().unwrap_or(false) {
                stats.num_rows = Precision::Inexact(rows);
            }
            stats.total_byte_size = Precision::Absent;
        }
        Ok(StatisticsResult::Computed(ExtendedStatistics::new(stats)))
    }
}

/// The rows an equi-join of `join_type` on the composite keys keeps; `None` for semi, anti
/// and mark joins (DataFusion's estimate stands) or when a side's rows are unknown.
fn composite_key_join_rows(
    join_type: &JoinType,
    (left, left_keys): (&Statistics, &[PhysicalExprRef]),
    (right, right_keys): (&Statistics, &[PhysicalExprRef]),
) -> Option<usize> {
    let left_rows = *left.num_rows.get_value()?;
    let right_rows = *right.num_rows.get_value()?;
    let keys = distinct_keys(left, left_keys, left_rows)
        .max(distinct_keys(right, right_keys, right_rows))
        .max(1);
    let inner = (left_rows as u128 * right_rows as u128 / keys as u128)
        .try_into()
        .unwrap_or(usize::MAX);
    Some(match join_type {
        JoinType::Inner => inner,
        JoinType::Left => inner.max(left_rows),
        JoinType::Right => inner.max(right_rows),
        JoinType::Full => inner
            .max(left_rows)
            .saturating_add(inner.max(right_rows))
            .saturating_sub(inner),
        _ => return None,
    })
}

/// How many distinct composite values `keys` take over `rows` rows: the product of each
/// key's distinct values, at most `rows`. A key with nothing known about it may be unique.
fn distinct_keys(stats: &Statistics, keys: &[PhysicalExprRef], rows: usize) -> usize {
    let mut product: u128 = 1;
    for key in keys {
        let column = key
            .downcast_ref::<Column>()
            .and_then(|c| stats.column_statistics.get(c.index()));
        let distinct = column.and_then(|c| {
            c.distinct_count.get_value().copied().or_else(|| {
                let (min, max) = (c.min_value.get_value()?, c.max_value.get_value()?);
                let range = Interval::try_new(min.clone(), max.clone()).ok()?;
                range.cardinality().and_then(|n| usize::try_from(n).ok())
            })
        });
        product = product.saturating_mul(distinct.unwrap_or(rows) as u128);
        if product >= rows as u128 {
            return rows;
        }
    }
    // Below `rows`, so it fits.
    product as usize
}

/// DataFusion's projection statistics, but a projection of rows whose bytes are unknown (a
/// join's output) keeps them unknown rather than multiplying a row estimate by its widths.
#[derive(Debug)]
struct ProjectionKeepsUnknownBytes;

impl StatisticsProvider for ProjectionKeepsUnknownBytes {
    fn compute_statistics(
        &self,
        plan: &dyn ExecutionPlan,
        child_stats: &[ExtendedStatistics],
    ) -> Result<StatisticsResult> {
        let input_bytes_unknown = plan.downcast_ref::<ProjectionExec>().is_some()
            && child_stats
                .first()
                .is_some_and(|s| s.base().total_byte_size.get_value().is_none());
        match ProjectionStatisticsProvider.compute_statistics(plan, child_stats)? {
            StatisticsResult::Computed(stats) if input_bytes_unknown => {
                let mut stats = stats.base().clone();
                stats.total_byte_size = Precision::Absent;
                Ok(StatisticsResult::Computed(ExtendedStatistics::new(stats)))
            }
            result => Ok(result),
        }
    }
}

/// Any operator that derives its overall statistics from its inputs' overall statistics,
/// given the enhanced ones (DataFusion's default provider would recompute them from the
/// plain statistics below).
#[derive(Debug)]
struct FromInputs;

impl StatisticsProvider for FromInputs {
    fn compute_statistics(
        &self,
        plan: &dyn ExecutionPlan,
        child_stats: &[ExtendedStatistics],
    ) -> Result<StatisticsResult> {
        let children = plan.children();
        let requests = plan.child_stats_requests(None);
        if children.is_empty()
            || requests.len() != children.len()
            || child_stats.len() != children.len()
        {
            return Ok(StatisticsResult::Delegate);
        }
        let mut inputs = Vec::with_capacity(children.len());
        for ((request, child), stats) in requests.iter().zip(&children).zip(child_stats) {
            inputs.push(match request {
                ChildStats::At(None) => Arc::clone(stats.base_arc()),
                ChildStats::Skip => Arc::new(Statistics::new_unknown(&child.schema())),
                ChildStats::At(Some(_)) => return Ok(StatisticsResult::Delegate),
            });
        }
        let stats = plan.statistics_from_inputs(&inputs, &StatisticsArgs::new())?;
        Ok(StatisticsResult::Computed(ExtendedStatistics::new_arc(
            stats,
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::common::stats::Precision;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::physical_plan::joins::HashJoinExec;

    use crate::Warehouse;

    /// A session with `facts` (20,000 rows, keys `(k1, k2)` in 1,000 × 50 values), `offers`
    /// (unique on `(k1, k2)`: 50,000 rows) and `orders` (30,000 narrow rows).
    async fn session() -> crate::Session {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE facts (k1 BIGINT, k2 BIGINT, o BIGINT, a BIGINT, b BIGINT, c BIGINT);
                INSERT INTO facts SELECT value % 1000, value % 50, value, value + 1, value + 2, value + 3 \
                    FROM generate_series(1, 20000);
                CREATE TABLE offers (k1 BIGINT, k2 BIGINT, cost BIGINT);
                INSERT INTO offers SELECT value % 1000, value / 1000, value \
                    FROM generate_series(0, 49999);
                CREATE TABLE orders (ok BIGINT, d BIGINT);
                INSERT INTO orders SELECT value, value + 1 FROM generate_series(1, 30000)",
            )
            .await
            .expect("setup");
        session
    }

    /// The physical plan of `sql`, and its first (topmost) hash join.
    async fn plan(
        session: &crate::Session,
        sql: &str,
    ) -> (Arc<dyn ExecutionPlan>, Arc<dyn ExecutionPlan>) {
        let plan = session
            .context()
            .sql(sql)
            .await
            .expect("plan")
            .create_physical_plan()
            .await
            .expect("physical plan");
        let mut top = None;
        plan.apply(|node| {
            if node.downcast_ref::<HashJoinExec>().is_some() {
                top = Some(Arc::clone(node));
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("walk");
        let top = top.unwrap_or_else(|| panic!("no hash join in {plan:?}"));
        (plan, top)
    }

    /// What Strata's registry estimates for the topmost hash join of `sql`.
    async fn top_join_statistics(
        session: &crate::Session,
        sql: &str,
    ) -> datafusion::physical_plan::operator_statistics::ExtendedStatistics {
        let (_, join) = plan(session, sql).await;
        super::registry()
            .compute(join.as_ref())
            .expect("statistics")
    }

    #[tokio::test]
    async fn a_join_on_a_composite_key_keeps_the_rows_of_its_foreign_side() {
        let session = session().await;
        let stats = top_join_statistics(
            &session,
            "SELECT f.o, x.cost FROM facts f JOIN offers x ON f.k1 = x.k1 AND f.k2 = x.k2",
        )
        .await;
        // DataFusion's own estimate, by k1 alone: 20,000 × 50,000 / 1,000 = 1M.
        assert_eq!(stats.base().num_rows, Precision::Inexact(20_000));
        assert_eq!(stats.base().total_byte_size, Precision::Absent);
    }

    #[tokio::test]
    async fn keys_whose_ranges_do_not_overlap_keep_no_rows() {
        let mut session = session().await;
        session
            .sql(
                "CREATE TABLE far (k1 BIGINT, k2 BIGINT);
                INSERT INTO far SELECT value + 5000, value % 50 FROM generate_series(1, 1000)",
            )
            .await
            .expect("setup");
        let stats = top_join_statistics(
            &session,
            "SELECT f.o FROM facts f JOIN far x ON f.k1 = x.k1 AND f.k2 = x.k2",
        )
        .await;
        assert_eq!(stats.base().num_rows.get_value(), Some(&0));
    }

    #[tokio::test]
    async fn a_join_above_builds_on_the_composite_join_when_it_has_fewer_rows() {
        let session = session().await;
        // The composite join keeps 20,000 rows of four columns; orders is 30,000 rows of two,
        // fewer bytes but more rows: the hash table goes on the join's side.
        let (plan, join) = plan(
            &session,
            "SELECT f.a, f.b, x.cost, o.d FROM facts f, offers x, orders o \
                WHERE f.k1 = x.k1 AND f.k2 = x.k2 AND x.cost = o.ok",
        )
        .await;
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let build = join.children()[0];
        let mut build_tables = Vec::new();
        build
            .apply(|node| {
                let line = datafusion::physical_plan::displayable(node.as_ref())
                    .one_line()
                    .to_string();
                if let Some(table) = line.split("table=main.public.").nth(1) {
                    build_tables.push(table.split(',').next().unwrap_or("").to_string());
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .expect("walk");
        build_tables.sort();
        assert_eq!(build_tables, ["facts", "offers"], "{text}");
    }
}
