//! Runtime filters: join (and top-k) filters applied to rows as they leave a table scan.
//!
//! When a hash join has built its table from a dimension, DataFusion derives a *dynamic filter*
//! from the build side (key bounds, and an IN list or a lookup into the join's hash table) and
//! pushes it down the probe side. The Parquet reader uses it only to skip files and row groups by
//! their statistics; every row of a surviving row group still travels up to the join, through any
//! aggregation or join in between. In a warehouse that is most of the work: TPC-H Q17 averages
//! `l_quantity` per part over all 6M lineitem rows to compare with 204 parts, and Q18 joins
//! 6M lineitem rows with their orders before a semi join keeps 57 orders.
//!
//! [`RuntimeFilterStream`] evaluates those filters on each decoded batch, so rows that cannot
//! survive a join above are dropped at the scan, before any operator works on them. It keeps
//! the filters in the order of their measured pass rate (most selective first, each evaluated
//! only on the rows the previous ones kept) and stops evaluating a filter that keeps nearly every
//! row, re-measuring it now and then, so a filter that does not help costs next to nothing.
//! The filter of a join built in hash partitions is evaluated by [`super::partitioned_filter`].
//! A filter is only an optimisation: the join above still checks every row it receives.
//!
//! DataFusion starts every build side of a plan at once (`CoalescePartitionsExec` spawns its
//! inputs when executed), so a scan below a join's build side can finish before a join further
//! up has a filter for it: in TPC-H Q21 all 10,000 suppliers were hashed although the nation
//! join keeps 400 of them, and the supplier filter on 6M lineitem rows then dropped nothing.
//! The `await_join_filters` rule makes each scan that holds a hash join's filter wait until that join's
//! build side is complete before it opens a file, so the filter prunes files and row groups and
//! drops rows from the first batch. This cannot deadlock: a join's filter only reaches its probe
//! side, and its build side, which completes the filter, only waits for joins above it.
//!
//! Since a waiting scan only reads once its join filters are complete, the Parquet reader can
//! apply them while it decodes (late materialization, `strata.late_materialization`): it
//! decodes the key columns, evaluates the filters, and decodes the other columns only for the
//! rows that pass. The filters are evaluated together by an [`AdaptiveJoinFilter`], which
//! orders them by pass rate and stops evaluating one that keeps nearly every row.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use arrow::array::BooleanArray;
use arrow::compute::{BatchCoalescer, filter_record_batch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::utils::conjunction_opt;
use datafusion::physical_expr_common::physical_expr::{
    snapshot_generation, snapshot_physical_expr,
};
use datafusion::physical_plan::RecordBatchStream;
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, Time};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, StreamExt, TryStreamExt};

use super::join_keys::{JoinKeySet, JoinKeySets};
use super::partitioned_filter::{filter_mask, filter_mask_of_selection};

/// A filter that keeps at least this share of the rows it sees is not worth evaluating.
const USELESS_PASS_RATE: f64 = 0.95;
/// A join key bloom filter that passes at least this share of the rows it sees is not worth
/// testing before its filter.
const WEAK_BLOOM_PASS_RATE: f64 = 0.5;
/// Rows a filter must have seen before its pass rate is trusted.
const MIN_ROWS_MEASURED: u64 = 65_536;
/// A filter judged useless is still evaluated on one batch in this many, to notice a change.
const REMEASURE_EVERY: u64 = 32;

/// Metrics of the runtime filters of one scan.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeFilterMetrics {
    /// Rows dropped by the filters.
    pub rows_pruned: Count,
    /// Time spent evaluating the filters and copying the rows they keep.
    pub time: Time,
}

impl RuntimeFilterMetrics {
    /// The figures of partition `partition` of a scan whose metrics are `metrics`.
    pub(crate) fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            rows_pruned: MetricBuilder::new(metrics)
                .counter("runtime_filter_pruned_rows", partition),
            time: MetricBuilder::new(metrics).subset_time("runtime_filter_time", partition),
        }
    }
}

/// How many rows a filter has seen and kept: the measure by which filters are ordered and
/// useless ones skipped. Atomic, so the copies of an [`AdaptiveJoinFilter`] in every file's
/// reader share one.
#[derive(Debug, Default)]
struct PassRate {
    rows_in: AtomicU64,
    rows_out: AtomicU64,
}

impl PassRate {
    fn rate(&self) -> f64 {
        let rows_in = self.rows_in.load(Ordering::Relaxed);
        if rows_in == 0 {
            // Unmeasured filters go first: they may be the selective ones.
            return 0.0;
        }
        self.rows_out.load(Ordering::Relaxed) as f64 / rows_in as f64
    }

    fn is_useless(&self) -> bool {
        self.rows_in.load(Ordering::Relaxed) >= MIN_ROWS_MEASURED
            && self.rate() >= USELESS_PASS_RATE
    }

    /// Whether a bloom filter passing this share of rows is not worth testing: the exact
    /// filter would then look most rows up anyway, after hashing them once more.
    fn is_weak(&self) -> bool {
        self.rows_in.load(Ordering::Relaxed) >= MIN_ROWS_MEASURED
            && self.rate() >= WEAK_BLOOM_PASS_RATE
    }

    fn record(&self, rows_in: usize, rows_out: usize) {
        self.rows_in.fetch_add(rows_in as u64, Ordering::Relaxed);
        self.rows_out.fetch_add(rows_out as u64, Ordering::Relaxed);
    }
}

/// One filter with what it has done so far.
struct Tracked {
    expr: Arc<dyn PhysicalExpr>,
    /// The filter's generation when the counts were started: a dynamic filter that changed
    /// (a join finished its build, a top-k tightened) is measured afresh.
    generation: u64,
    measured: PassRate,
}

/// A scan's batch stream with the runtime filters applied; output batches are coalesced back to
/// the session's batch size, so a selective filter does not flood the plan with tiny batches.
pub(crate) struct RuntimeFilterStream {
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    filters: Vec<Tracked>,
    coalescer: BatchCoalescer,
    batches_seen: u64,
    input_done: bool,
    metrics: RuntimeFilterMetrics,
}

impl RuntimeFilterStream {
    pub(crate) fn new(
        input: SendableRecordBatchStream,
        filters: &[Arc<dyn PhysicalExpr>],
        batch_size: usize,
        metrics: RuntimeFilterMetrics,
    ) -> Self {
        let schema = input.schema();
        Self {
            // Batches at least half full pass through uncopied.
            coalescer: BatchCoalescer::new(Arc::clone(&schema), batch_size)
                .with_biggest_coalesce_batch_size(Some(batch_size / 2)),
            input,
            schema,
            filters: filters
                .iter()
                .map(|expr| Tracked {
                    expr: Arc::clone(expr),
                    generation: snapshot_generation(expr),
                    measured: PassRate::default(),
                })
                .collect(),
            batches_seen: 0,
            input_done: false,
            metrics,
        }
    }

    /// Applies the filters to one batch; `None` when no row survives.
    fn apply(&mut self, mut batch: RecordBatch) -> DfResult<Option<RecordBatch>> {
        let _timer = self.metrics.time.timer();
        let rows_before = batch.num_rows();
        self.batches_seen += 1;
        let remeasure = self.batches_seen.is_multiple_of(REMEASURE_EVERY);
        self.filters
            .sort_by(|a, b| a.measured.rate().total_cmp(&b.measured.rate()));
        for filter in &mut self.filters {
            let generation = snapshot_generation(&filter.expr);
            if generation != filter.generation {
                filter.generation = generation;
                filter.measured = PassRate::default();
            }
            if filter.measured.is_useless() && !remeasure {
                continue;
            }
            let current = snapshot_physical_expr(Arc::clone(&filter.expr))?;
            if is_true(&current) {
                // A join that has not finished its build side yet: nothing to filter by.
                continue;
            }
            let rows = batch.num_rows();
            let mask = filter_mask(&current, &batch)?;
            let kept = mask.true_count();
            filter.measured.record(rows, kept);
            if kept == 0 {
                self.metrics.rows_pruned.add(rows_before);
                return Ok(None);
            }
            if kept < rows {
                batch = filter_record_batch(&batch, &mask)?;
            }
        }
        self.metrics.rows_pruned.add(rows_before - batch.num_rows());
        Ok(Some(batch))
    }
}

fn is_true(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<Literal>()
        .is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(true)))
}

impl Stream for RuntimeFilterStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(batch) = self.coalescer.next_completed_batch() {
                return Poll::Ready(Some(Ok(batch)));
            }
            if self.input_done {
                return Poll::Ready(None);
            }
            match self.input.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(batch))) => {
                    if let Some(batch) = self.apply(batch)?
                        && let Err(e) = self.coalescer.push_batch(batch)
                    {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
                Poll::Ready(None) => {
                    self.input_done = true;
                    if let Err(e) = self.coalescer.finish_buffered_batch() {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
            }
        }
    }
}

impl RecordBatchStream for RuntimeFilterStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// The join filters of a scan evaluated by the Parquet reader while it decodes, as one
/// `RowFilter` predicate: the reader decodes all their key columns in one pass, this computes
/// one mask, and the reader decodes the other columns only for the rows it keeps. Separate
/// predicates would each decode their columns under the previous ones' selection; with three
/// or four 20-40% selective star-join filters that was slower than filtering decoded batches.
///
/// Inside, it has the economy of [`RuntimeFilterStream`]: the filters run most selective
/// first, each only on the rows the previous ones kept, and a filter seen to keep nearly every
/// row is skipped, re-measured one batch in [`REMEASURE_EVERY`]. In TPC-H Q9 the orders and
/// partsupp joins' filters keep every lineitem row, and looking each row up in their hash
/// tables cost more than the part filter saved.
///
/// Its snapshot is the conjunction of the filters, so file, row-group and page pruning see
/// through it.
#[derive(Debug)]
pub(crate) struct AdaptiveJoinFilter {
    filters: Vec<Arc<dyn PhysicalExpr>>,
    /// One per filter, shared by every copy of the expression: all files and partitions of
    /// the scan.
    measured: Arc<[PassRate]>,
    /// One per filter: the bloom filter of its join's build keys, tested before the filter
    /// (see [`super::join_keys`]).
    blooms: Arc<[Option<MeasuredBloom>]>,
    batches: Arc<AtomicU64>,
}

/// A join's bloom filter and the share of rows it has passed.
#[derive(Debug)]
struct MeasuredBloom {
    set: Arc<JoinKeySet>,
    measured: PassRate,
}

impl AdaptiveJoinFilter {
    pub(crate) fn new(filters: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        Self {
            measured: filters.iter().map(|_| PassRate::default()).collect(),
            blooms: filters.iter().map(|_| None).collect(),
            filters,
            batches: Arc::default(),
        }
    }

    /// The filter testing, before each join filter, the bloom filter of that join's build
    /// keys when `key_sets` has one.
    pub(crate) fn with_key_sets(mut self, key_sets: &JoinKeySets) -> Self {
        self.blooms = self
            .filters
            .iter()
            .map(|filter| {
                let set = key_sets.get(&join_filter_id(filter)?)?;
                Some(MeasuredBloom {
                    set: Arc::clone(set),
                    measured: PassRate::default(),
                })
            })
            .collect();
        self
    }

    /// The rows of `batch` (within `selection`, which selects `rows_in` rows) that the bloom
    /// filter of filter `i`'s join passes; `None` when it has none (yet), or when it passes so many rows that testing it
    /// costs more than it saves (measured as the filters are, re-measured now and then).
    fn bloom_mask(
        &self,
        i: usize,
        batch: &RecordBatch,
        selection: Option<&BooleanArray>,
        rows_in: usize,
        remeasure: bool,
    ) -> DfResult<Option<BooleanArray>> {
        let Some(MeasuredBloom { set, measured }) = &self.blooms[i] else {
            return Ok(None);
        };
        if set.bloom().is_none() || (measured.is_weak() && !remeasure) {
            return Ok(None);
        }
        // `join_filter_id` found filter `i` a dynamic filter: its children are its keys.
        let keys = self.filters[i]
            .children()
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<DfResult<Vec<_>>>()?;
        let passes = set.mask(&keys, selection.map(|s| (s, rows_in)))?;
        if let Some(passes) = &passes {
            measured.record(rows_in, passes.true_count());
        }
        Ok(passes)
    }
}

/// The expression id of `filter` when it is a join's dynamic filter as such (not inside
/// another expression, which could negate it).
fn join_filter_id(filter: &Arc<dyn PhysicalExpr>) -> Option<u64> {
    filter.downcast_ref::<DynamicFilterPhysicalExpr>()?;
    filter.expression_id()
}

impl PartialEq for AdaptiveJoinFilter {
    fn eq(&self, other: &Self) -> bool {
        self.filters.len() == other.filters.len()
            && self
                .filters
                .iter()
                .zip(&other.filters)
                .all(|(a, b)| a.as_ref() == b.as_ref())
    }
}

impl Eq for AdaptiveJoinFilter {}

impl std::hash::Hash for AdaptiveJoinFilter {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for filter in &self.filters {
            filter.hash(state);
        }
    }
}

impl std::fmt::Display for AdaptiveJoinFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "adaptive(")?;
        for (i, filter) in self.filters.iter().enumerate() {
            if i > 0 {
                write!(f, " AND ")?;
            }
            write!(f, "{filter}")?;
        }
        write!(f, ")")
    }
}

impl PhysicalExpr for AdaptiveJoinFilter {
    fn data_type(&self, _input_schema: &Schema) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, _input_schema: &Schema) -> DfResult<bool> {
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        let batches = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        let remeasure = batches.is_multiple_of(REMEASURE_EVERY);
        let mut order: Vec<usize> = (0..self.filters.len()).collect();
        order.sort_by(|&a, &b| self.measured[a].rate().total_cmp(&self.measured[b].rate()));
        let rows = batch.num_rows();
        let mut mask: Option<BooleanArray> = None;
        for i in order {
            let measured = &self.measured[i];
            if measured.is_useless() && !remeasure {
                continue;
            }
            let filter = snapshot_physical_expr(Arc::clone(&self.filters[i]))?;
            if is_true(&filter) {
                // A join that has not finished its build side yet: nothing to filter by.
                continue;
            }
            let rows_in = mask.as_ref().map_or(rows, |m| m.true_count());
            let bloom = self.bloom_mask(i, batch, mask.as_ref(), rows_in, remeasure)?;
            let result = match (bloom, &mask) {
                (Some(passes), _) => filter_mask_of_selection(&filter, batch, &passes)?,
                (None, None) => filter_mask(&filter, batch)?,
                (None, Some(mask)) => filter_mask_of_selection(&filter, batch, mask)?,
            };
            let kept = result.true_count();
            measured.record(rows_in, kept);
            mask = Some(result);
            if kept == 0 {
                break;
            }
        }
        Ok(match mask {
            Some(mask) => ColumnarValue::Array(Arc::new(mask)),
            None => ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))),
        })
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.filters.iter().collect()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(Self {
            filters: children,
            measured: Arc::clone(&self.measured),
            blooms: Arc::clone(&self.blooms),
            batches: Arc::clone(&self.batches),
        }))
    }

    fn snapshot(&self) -> DfResult<Option<Arc<dyn PhysicalExpr>>> {
        Ok(conjunction_opt(self.filters.iter().cloned()))
    }

    fn fmt_sql(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match conjunction_opt(self.filters.iter().cloned()) {
            Some(all) => all.fmt_sql(f),
            None => write!(f, "true"),
        }
    }
}

/// The dynamic filters inside `filters` whose expression id is in `ids`.
pub(crate) fn dynamic_filters_among(
    filters: &[Arc<dyn PhysicalExpr>],
    ids: &HashSet<u64>,
) -> Vec<Arc<dyn PhysicalExpr>> {
    let mut found = Vec::new();
    for filter in filters {
        // The closure never fails.
        let _ = filter.apply(|expr| {
            if expr.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()
                && expr.expression_id().is_some_and(|id| ids.contains(&id))
            {
                found.push(Arc::clone(expr));
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    found
}

/// How long a scan waits for a join's filter before it reads without it. The wait is an
/// optimisation (the scan then skips what the filter rules out) and never needed for a correct
/// answer: a dynamic filter is valid at every moment. A bound keeps a plan whose join cannot
/// complete its filter before this scan runs (TPC-H q07 once hung so) from waiting forever.
pub(crate) const FILTER_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The stream of `input`'s partition, opened once every filter in `awaited` is complete (or
/// after [`FILTER_WAIT_LIMIT`]); the time spent waiting is added to `wait`.
pub(crate) fn after_filters_complete(
    awaited: &[Arc<dyn PhysicalExpr>],
    schema: SchemaRef,
    open: impl FnOnce() -> DfResult<SendableRecordBatchStream> + Send + 'static,
    wait: Time,
) -> SendableRecordBatchStream {
    let awaited = awaited.to_vec();
    let opened = futures::stream::once(async move {
        let timer = wait.timer();
        let all_complete = async {
            for filter in &awaited {
                if let Some(dynamic) = filter.downcast_ref::<DynamicFilterPhysicalExpr>() {
                    dynamic.wait_complete().await;
                }
            }
        };
        if tokio::time::timeout(FILTER_WAIT_LIMIT, all_complete)
            .await
            .is_err()
        {
            tracing::debug!("a join filter was not complete in time; scanning without waiting");
        }
        timer.done();
        open()
    })
    .try_flatten();
    Box::pin(RecordBatchStreamAdapter::new(schema, opened))
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, DynamicFilterPhysicalExpr, col, lit};
    use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
    use datafusion::physical_plan::metrics::MetricBuilder;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::*;
    use crate::Warehouse;

    fn batches(schema: &SchemaRef, n: usize, rows: i64) -> Vec<DfResult<RecordBatch>> {
        (0..n as i64)
            .map(|b| {
                let values: ArrayRef =
                    Arc::new(Int64Array::from_iter_values(b * rows..(b + 1) * rows));
                Ok(RecordBatch::try_new(Arc::clone(schema), vec![values])?)
            })
            .collect()
    }

    /// Drives the stream over `n` batches of `rows` consecutive integers in column `a`.
    async fn run(
        filter: Arc<dyn PhysicalExpr>,
        n: usize,
        rows: i64,
        batch_size: usize,
    ) -> (Vec<RecordBatch>, usize) {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let input = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(batches(&schema, n, rows)),
        ));
        let set = ExecutionPlanMetricsSet::new();
        let metrics = RuntimeFilterMetrics {
            rows_pruned: MetricBuilder::new(&set).counter("pruned", 0),
            time: MetricBuilder::new(&set).subset_time("time", 0),
        };
        let stream = RuntimeFilterStream::new(input, &[filter], batch_size, metrics.clone());
        let out: Vec<RecordBatch> = stream.map(|b| b.expect("batch")).collect().await;
        (out, metrics.rows_pruned.value())
    }

    fn a_mod_lt(schema: &Schema, modulus: i64, below: i64) -> Arc<dyn PhysicalExpr> {
        let a = col("a", schema).expect("column a");
        let modulo = Arc::new(BinaryExpr::new(a, Operator::Modulo, lit(modulus)));
        Arc::new(BinaryExpr::new(modulo, Operator::Lt, lit(below)))
    }

    #[tokio::test]
    async fn drops_rows_and_coalesces_what_is_left() {
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, false)]);
        let a = col("a", &schema).expect("column a");
        let dynamic = Arc::new(DynamicFilterPhysicalExpr::new(vec![a], lit(true)));
        // As a hash join does once its build side is complete: keep one row in ten.
        dynamic
            .update(a_mod_lt(&schema, 10, 1))
            .expect("update filter");
        let (out, pruned) = run(dynamic, 20, 1000, 1000).await;
        let kept: Vec<i64> = out
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(kept, (0..20_000).step_by(10).collect::<Vec<i64>>());
        assert_eq!(pruned, 18_000);
        // 2,000 surviving rows in batches of up to 1,000, not twenty batches of 100.
        assert_eq!(out.len(), 2);
    }

    /// A filter whose join never completes it does not stop the scan: it reads after the
    /// wait limit, with the filter as it stands.
    #[tokio::test]
    async fn a_filter_never_completed_stops_the_scan_only_for_the_wait_limit() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let a = col("a", &schema).expect("column a");
        let never: Arc<dyn PhysicalExpr> =
            Arc::new(DynamicFilterPhysicalExpr::new(vec![a], lit(true)));
        let rows = batches(&schema, 2, 10);
        let inner_schema = Arc::clone(&schema);
        let stream = after_filters_complete(
            &[never],
            Arc::clone(&schema),
            move || {
                Ok(Box::pin(RecordBatchStreamAdapter::new(
                    inner_schema,
                    futures::stream::iter(rows),
                )) as SendableRecordBatchStream)
            },
            MetricBuilder::new(&ExecutionPlanMetricsSet::new()).subset_time("wait", 0),
        );
        let started = std::time::Instant::now();
        let out: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream).await.unwrap();
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 20);
        assert!(started.elapsed() >= FILTER_WAIT_LIMIT);
    }

    #[tokio::test]
    async fn a_filter_not_yet_built_passes_everything() {
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, false)]);
        let a = col("a", &schema).expect("column a");
        let dynamic = Arc::new(DynamicFilterPhysicalExpr::new(vec![a], lit(true)));
        let (out, pruned) = run(dynamic, 5, 100, 1000).await;
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 500);
        assert_eq!(pruned, 0);
    }

    #[tokio::test]
    async fn a_filter_that_keeps_almost_everything_is_mostly_skipped() {
        // Keeps 99 rows in 100: after 64k rows the filter is judged useless and only
        // re-measured on one batch in 32, so most dropped-by-filter rows pass through
        // (the join above removes them); no row the filter keeps is ever lost.
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, false)]);
        let filter = a_mod_lt(&schema, 100, 99);
        let (out, pruned) = run(filter, 200, 1000, 1000).await;
        let rows: usize = out.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows + pruned, 200_000);
        assert!(pruned >= 650, "measured batches still filter: {pruned}");
        assert!(pruned < 1_000, "skipped batches are not filtered: {pruned}");
    }

    /// The decoder-side filter: a selective one always filters; one that keeps 99 rows in 100
    /// answers "keep all" once measured, except on re-measured batches. Either way its snapshot
    /// is the filter itself, for pruning by statistics.
    #[test]
    fn adaptive_join_filter_stops_evaluating_a_useless_filter() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let kept_rows = |filter: &AdaptiveJoinFilter| {
            batches(&schema, 200, 1000)
                .into_iter()
                .map(|batch| {
                    let batch = batch.expect("batch");
                    match filter.evaluate(&batch).expect("evaluate") {
                        ColumnarValue::Array(mask) => mask.as_boolean().true_count(),
                        ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => batch.num_rows(),
                        other => panic!("unexpected filter result {other:?}"),
                    }
                })
                .sum::<usize>()
        };

        let selective = AdaptiveJoinFilter::new(vec![a_mod_lt(&schema, 10, 1)]);
        assert_eq!(kept_rows(&selective), 20_000);

        // Two filters in one mask: a % 10 < 5 and a % 4 < 1 both hold for 3 values in 20.
        let both = AdaptiveJoinFilter::new(vec![a_mod_lt(&schema, 10, 5), a_mod_lt(&schema, 4, 1)]);
        assert_eq!(kept_rows(&both), 30_000);

        let useless = AdaptiveJoinFilter::new(vec![a_mod_lt(&schema, 100, 99)]);
        let kept = kept_rows(&useless);
        // 65 batches measure it (650 rows dropped), then one batch in 32 is re-measured.
        assert!(
            (199_000..200_000 - 650).contains(&kept),
            "kept {kept} of 200000"
        );

        let copy = Arc::new(useless)
            .with_new_children(vec![a_mod_lt(&schema, 100, 99)])
            .expect("copy");
        let batch = batches(&schema, 1, 1000).remove(0).expect("batch");
        assert!(
            matches!(copy.evaluate(&batch), Ok(ColumnarValue::Scalar(_))),
            "a copy shares the measurements"
        );
        let snapshot = copy.snapshot().expect("snapshot").expect("some");
        assert_eq!(snapshot.to_string(), a_mod_lt(&schema, 100, 99).to_string());
    }

    /// End to end: a fact table whose files all hold every key (so statistics prune nothing)
    /// joined with a filtered dimension; the scan drops the rows the join would.
    #[tokio::test]
    async fn join_filter_reaches_the_fact_rows() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                // The Parquet reader's figures are the point: no scan cache.
                "SET strata.scan_cache = false;
                 CREATE TABLE facts (k INT, v BIGINT, w BIGINT);
                 INSERT INTO facts SELECT CAST(value % 10 AS INT), value, value * 2 FROM generate_series(1, 10000);
                 CREATE TABLE dims (k INT, name VARCHAR);
                 INSERT INTO dims VALUES (1, 'one'), (2, 'two'), (3, 'three')",
            )
            .await
            .expect("setup");
        let wide = "SELECT name, sum(v), max(w) FROM facts JOIN dims ON facts.k = dims.k \
                    WHERE name = 'two' GROUP BY name";
        let answer = "| two  | 4997000      | 19984        |";
        let narrow = "SELECT name, sum(v) FROM facts JOIN dims ON facts.k = dims.k \
                      WHERE name = 'two' GROUP BY name";
        let answer_narrow = "| two  | 4997000      |";
        let run = async |session: &mut crate::Session, sql: &str| {
            let result = session.sql(sql).await.expect("query");
            pretty_format_batches(&result[0].batches)
                .expect("format")
                .to_string()
        };

        // The Parquet reader filters while decoding.
        let text = run(&mut session, wide).await;
        assert!(text.contains(answer), "{text}");
        let plan = explain_analyze(&mut session, wide).await;
        let (scan, reader) = scan_lines(&plan, "facts");
        assert!(scan.contains("runtime_filters=1"), "{plan}");
        assert!(scan.contains("filters_while_decoding"), "{plan}");
        assert!(reader.contains("pushdown_rows_pruned=9.00 K"), "{plan}");

        // So does a scan with as many key columns as others.
        let text = run(&mut session, narrow).await;
        assert!(text.contains(answer_narrow), "{text}");
        let plan = explain_analyze(&mut session, narrow).await;
        let (scan, reader) = scan_lines(&plan, "facts");
        assert!(scan.contains("filters_while_decoding"), "{plan}");
        assert!(reader.contains("pushdown_rows_pruned=9.00 K"), "{plan}");

        // A session whose reader applies its whole predicate keeps it whole: no filter above
        // checks the static conjunct `w > 10000`.
        session
            .sql("SET datafusion.execution.parquet.pushdown_filters = true")
            .await
            .expect("set");
        let filtered = "SELECT name, sum(v), max(w) FROM facts JOIN dims ON facts.k = dims.k \
                        WHERE name = 'two' AND w > 10000 GROUP BY name";
        let text = run(&mut session, filtered).await;
        assert!(
            text.contains("| two  | 3748500      | 19984        |"),
            "{text}"
        );
        let plan = explain_analyze(&mut session, filtered).await;
        let (scan, _) = scan_lines(&plan, "facts");
        assert!(!scan.contains("filters_while_decoding"), "{plan}");
        session
            .sql("SET datafusion.execution.parquet.pushdown_filters = false")
            .await
            .expect("set");

        // Without late materialization the scan filters the decoded batches.
        session
            .sql("SET strata.late_materialization = false")
            .await
            .expect("set");
        let text = run(&mut session, wide).await;
        assert!(text.contains(answer), "{text}");
        let plan = explain_analyze(&mut session, wide).await;
        let (scan, _) = scan_lines(&plan, "facts");
        assert!(!scan.contains("filters_while_decoding"), "{plan}");
        assert!(scan.contains("runtime_filter_pruned_rows=9.00 K"), "{plan}");
    }

    /// A join built in partitions publishes its filter as a CASE over the probe key's hash
    /// partition (see `partitioned_filter`). Every way a scan applies it (filtering decoded
    /// batches, the Parquet reader while decoding, the scan cache) drops rows the join would
    /// and leaves the answer as it is without join filters.
    #[tokio::test]
    async fn a_partitioned_joins_filter_drops_rows_on_every_scan_path() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "SET datafusion.execution.target_partitions = 2;
                 SET datafusion.optimizer.hash_join_single_partition_threshold = 0;
                 SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0;
                 CREATE TABLE parts (p INT, brand VARCHAR);
                 INSERT INTO parts SELECT CAST(value AS INT), 'b' || CAST(value % 20 AS VARCHAR) FROM generate_series(1, 2000);
                 CREATE TABLE items (p INT, q BIGINT);
                 INSERT INTO items SELECT CAST(value % 2000 + 1 AS INT), value FROM generate_series(1, 20000);
                 INSERT INTO items SELECT CAST(value % 2000 + 1 AS INT), value FROM generate_series(20001, 40000)",
            )
            .await
            .expect("setup");
        let sql = "SELECT count(*) AS n, sum(q) AS total FROM items JOIN parts ON items.p = parts.p \
                   WHERE brand = 'b7'";
        let run = async |session: &mut crate::Session| {
            let result = session.sql(sql).await.expect("query");
            pretty_format_batches(&result[0].batches)
                .expect("format")
                .to_string()
        };
        session
            .sql("SET datafusion.optimizer.enable_join_dynamic_filter_pushdown = false")
            .await
            .expect("set");
        let want = run(&mut session).await;
        assert!(want.contains("| 2000 |"), "{want}");
        session
            .sql("SET datafusion.optimizer.enable_join_dynamic_filter_pushdown = true")
            .await
            .expect("set");
        let settings = [
            (
                "strata.scan_cache = false",
                "strata.late_materialization = false",
            ),
            (
                "strata.scan_cache = false",
                "strata.late_materialization = true",
            ),
            (
                "strata.scan_cache = true",
                "strata.late_materialization = true",
            ),
        ];
        for (cache, late) in settings {
            session
                .sql(&format!("SET {cache}; SET {late}"))
                .await
                .expect("set");
            // The cache keeps a file once it was read twice: the third run reads it there.
            for _ in 0..3 {
                assert_eq!(run(&mut session).await, want, "{cache}, {late}");
            }
            let plan = explain_analyze(&mut session, sql).await;
            assert!(plan.contains("mode=Partitioned"), "{plan}");
            let (scan, reader) = scan_lines(&plan, "items");
            // 1,900 of the 2,000 parts are not b7: 38,000 of the 40,000 items go.
            let pruned = "38.00 K";
            assert!(
                scan.contains(&format!("runtime_filter_pruned_rows={pruned}"))
                    || reader.contains(&format!("pushdown_rows_pruned={pruned}")),
                "{cache}, {late}: {plan}"
            );
        }
    }

    async fn explain_analyze(session: &mut crate::Session, sql: &str) -> String {
        let explained = session
            .sql(&format!("EXPLAIN ANALYZE {sql}"))
            .await
            .expect("explain analyze");
        pretty_format_batches(&explained[0].batches)
            .expect("format")
            .to_string()
    }

    /// The `StrataScanExec` line of `table` in an indented plan, and the line of the Parquet
    /// reader below it.
    fn scan_lines<'a>(plan: &'a str, table: &str) -> (&'a str, &'a str) {
        let mut lines = plan.lines();
        let scan = lines
            .find(|l| l.contains(&format!("table=main.public.{table},")))
            .unwrap_or_else(|| panic!("no {table} scan in {plan}"));
        let reader = lines
            .find(|l| l.contains("DataSourceExec"))
            .unwrap_or_else(|| panic!("no reader below the {table} scan in {plan}"));
        (scan, reader)
    }

    /// A chain of joins, as TPC-H Q21's nation -> supplier -> lineitem: the middle table is the
    /// build side of one join and the probe side of the join above. Its scan must wait for the
    /// region join's filter, so only the north stores are hashed and their filter thins the
    /// sales scan below.
    #[tokio::test]
    async fn a_build_side_scan_waits_for_the_join_above() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                // The Parquet reader's figures are the point: no scan cache.
                "SET datafusion.execution.target_partitions = 2;
                 SET strata.scan_cache = false;
                 CREATE TABLE regions (r INT, name VARCHAR);
                 INSERT INTO regions VALUES (1, 'north'), (2, 'south'), (3, 'east'), (4, 'west');
                 CREATE TABLE stores (s INT, r INT);
                 INSERT INTO stores SELECT CAST(value AS INT), CAST(value % 4 + 1 AS INT) FROM generate_series(1, 500);
                 INSERT INTO stores SELECT CAST(value AS INT), CAST(value % 4 + 1 AS INT) FROM generate_series(501, 1000);
                 CREATE TABLE sales (s INT, v BIGINT);
                 INSERT INTO sales SELECT CAST(value % 1000 + 1 AS INT), value FROM generate_series(1, 20000);
                 INSERT INTO sales SELECT CAST(value % 1000 + 1 AS INT), value FROM generate_series(20001, 40000)",
            )
            .await
            .expect("setup");
        let sql = "SELECT count(*) AS n, sum(v) AS total FROM sales \
                   JOIN stores ON sales.s = stores.s JOIN regions ON stores.r = regions.r \
                   WHERE name = 'north'";
        let result = session.sql(sql).await.expect("query");
        let text = pretty_format_batches(&result[0].batches)
            .expect("format")
            .to_string();
        // Stores with s % 4 = 0 are north: 250 of 1000, 40 sales each.
        assert!(text.contains("| 10000 |"), "{text}");
        let plan = explain_analyze(&mut session, sql).await;
        let (stores, reader) = scan_lines(&plan, "stores");
        assert!(stores.contains("awaits_joins=1"), "{plan}");
        assert!(reader.contains("pushdown_rows_pruned=750"), "{plan}");
        let (_, reader) = scan_lines(&plan, "sales");
        assert!(reader.contains("pushdown_rows_pruned=30.00 K"), "{plan}");
    }
}
