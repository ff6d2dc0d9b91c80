//! Scans served from the warehouse's scan cache ([`crate::scan_cache`]): a Parquet scan whose
//! files are answered from cached decoded columns, filled on first read.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, RecordBatch, RecordBatchOptions,
    new_empty_array,
};
use arrow::compute::kernels::boolean::and;
use arrow::compute::{FilterBuilder, concat};
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, FileSource, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::projection::{ProjectionExprs, Projector};
use datafusion::physical_expr::utils::{collect_columns, conjunction_opt};
use datafusion::physical_optimizer::pruning::FilePruner;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use roaring::RoaringBitmap;

use crate::scan_cache::{ColumnKey, CompactColumn, ScanCache};
use crate::table::files::DeletedRows;
use crate::table::join_keys::JoinKeySets;
use crate::table::runtime_filter::{AdaptiveJoinFilter, RuntimeFilterMetrics};

/// Files served from the cache and files read, per scan, and what the runtime filters it
/// applies did, shown by `EXPLAIN ANALYZE`.
#[derive(Debug, Clone)]
struct CacheMetrics {
    files_cached: Count,
    files_read: Count,
    filters: RuntimeFilterMetrics,
}

impl CacheMetrics {
    fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            files_cached: MetricBuilder::new(metrics).counter("scan_cache_files_hit", partition),
            files_read: MetricBuilder::new(metrics).counter("scan_cache_files_read", partition),
            filters: RuntimeFilterMetrics::new(metrics, partition),
        }
    }
}

/// `input`, a Parquet scan (possibly below the repartition that spreads one file group over
/// the target partitions), with the Parquet scan served from `cache`; `None` when the cache
/// cannot serve it (see [`CachedScan::of`]). `dynamic_filters` apply to its output and
/// `metrics` get the cache's figures.
///
/// With `decodes_late` (the bloom filters of the joins' build keys), the cached scan applies
/// `dynamic_filters` itself, before it decodes the columns they do not read (see
/// [`LateFilter`]). The second value tells whether it does; if not, they are left to the
/// caller.
pub(crate) fn cached_reader(
    cache: Arc<ScanCache>,
    input: &Arc<dyn ExecutionPlan>,
    field_ids: &HashMap<String, u32>,
    dynamic_filters: &[Arc<dyn PhysicalExpr>],
    decodes_late: Option<&JoinKeySets>,
    batch_size: usize,
    metrics: &ExecutionPlanMetricsSet,
) -> Option<(Arc<dyn ExecutionPlan>, bool)> {
    if let Some(repartition) = input.downcast_ref::<RepartitionExec>() {
        let (reader, filters) = cached_reader(
            cache,
            repartition.input(),
            field_ids,
            dynamic_filters,
            decodes_late,
            batch_size,
            metrics,
        )?;
        let plan = replace_children_if_necessary(Arc::clone(input), vec![reader]).ok()?;
        return Some((plan, filters));
    }
    let scan = CachedScan::of(
        cache,
        input,
        field_ids,
        dynamic_filters,
        decodes_late,
        batch_size,
    )?;
    if !scan.cache.has_room()
        && !scan.planned.file_groups.iter().any(|group| {
            group
                .iter()
                .any(|f| scan.cache.holds(f.object_meta.location.as_ref()))
        })
    {
        // Nothing to serve and no room to add to: the planned scan reads as well.
        return None;
    }
    let filters = scan.late.is_some() || dynamic_filters.is_empty();
    let plan = Arc::new(CachedScanExec {
        scan: Arc::new(scan),
        properties: Arc::clone(input.properties()),
        metrics: metrics.clone(),
    });
    Some((plan, filters))
}

/// A Parquet scan served from the cache, in place of the `DataSourceExec` it was planned as.
#[derive(Debug)]
struct CachedScanExec {
    scan: Arc<CachedScan>,
    properties: Arc<PlanProperties>,
    /// The metrics of the `StrataScanExec` above, which shows the cache's figures.
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for CachedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CachedScanExec")
    }
}

impl ExecutionPlan for CachedScanExec {
    fn name(&self) -> &str {
        "CachedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let metrics = CacheMetrics::new(&self.metrics, partition);
        Ok(Arc::clone(&self.scan).execute(partition, context, metrics))
    }
}

/// A planned Parquet scan, served from the cache.
#[derive(Debug)]
struct CachedScan {
    cache: Arc<ScanCache>,
    /// The planned scan: its files, and the reader of files the cache does not take.
    planned: FileScanConfig,
    /// How the planned scan reads files (without its predicate, to read them whole).
    reader_options: TableParquetOptions,
    reader_factory: Option<Arc<dyn ParquetFileReaderFactory>>,
    /// The table columns the scan needs, by index.
    indices: Vec<usize>,
    /// The table columns the scan needs, and the projection from them to its output.
    fields: Vec<FieldRef>,
    /// What the cache holds them by.
    keys: Vec<ColumnKey>,
    needed: SchemaRef,
    projector: Projector,
    output: SchemaRef,
    /// The scan's dynamic filters in terms of the table's columns, to prune whole files.
    prune: Option<Arc<dyn PhysicalExpr>>,
    /// The scan's dynamic filters as it applies them to rows, when the scan decodes late
    /// (`strata.late_materialization`); `None` when it does not, there are none, or one reads
    /// a computed output column.
    late: Option<LateFilter>,
    file_schema: SchemaRef,
    batch_size: usize,
    /// The planned scan's own metrics, which count the rows served from the cache too.
    source_metrics: ExecutionPlanMetricsSet,
    /// How each file is read, once decided ([`CachedScan::way_of`]).
    ways: std::sync::Mutex<HashMap<String, Way>>,
}

/// How a cached scan reads one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// From the cache, or whole into it.
    Cache,
    /// By the planned Parquet scan, with its pruning.
    Planned,
}

impl CachedScan {
    /// The cached form of `input`, a Parquet scan, whose output `dynamic_filters` apply to;
    /// `None` when the cache cannot serve it: not a plain Parquet scan of table columns (a DML
    /// scan's file and row columns), or one whose reader applies the static predicate (the
    /// session's `pushdown_filters`) unless it is Strata's own late-decoding reader, which only
    /// applies `dynamic_filters`.
    fn of(
        cache: Arc<ScanCache>,
        input: &Arc<dyn ExecutionPlan>,
        field_ids: &HashMap<String, u32>,
        dynamic_filters: &[Arc<dyn PhysicalExpr>],
        decodes_late: Option<&JoinKeySets>,
        batch_size: usize,
    ) -> Option<Self> {
        let exec = input.downcast_ref::<DataSourceExec>()?;
        let (planned, source) = exec.downcast_to_file_source::<ParquetSource>()?;
        let options = source.table_parquet_options();
        if options.global.pushdown_filters && decodes_late.is_none() {
            return None;
        }
        let table = source.table_schema();
        if !table.table_partition_cols().is_empty() || !table.virtual_columns().is_empty() {
            return None;
        }
        let file_schema = Arc::clone(table.file_schema());
        let projection = match source.projection() {
            Some(p) => p.clone(),
            None => ProjectionExprs::from_indices(
                &(0..file_schema.fields().len()).collect::<Vec<_>>(),
                &file_schema,
            ),
        };
        // For each output column that is a table column as such, its index in the table.
        let plain: Vec<Option<usize>> = projection
            .iter()
            .map(|p| p.expr.downcast_ref::<Column>().map(|c| c.index()))
            .collect();
        let indices = projection.column_indices();
        if indices.iter().any(|&i| i >= file_schema.fields().len()) {
            return None;
        }
        let fields: Vec<FieldRef> = indices
            .iter()
            .map(|&i| Arc::clone(&file_schema.fields()[i]))
            .collect();
        let keys = fields
            .iter()
            .map(|f| {
                let id = field_ids.get(f.name()).map(|id| format!("#{id}"));
                (
                    id.unwrap_or_else(|| f.name().clone()),
                    f.data_type().clone(),
                )
            })
            .collect();
        let needed = Arc::new(Schema::new(fields.clone()));
        let position = |i: usize| indices.iter().position(|&n| n == i);
        let projection = projection
            .try_map_exprs(|expr| {
                expr.transform(|e| match e.downcast_ref::<Column>() {
                    Some(c) => {
                        let at = position(c.index()).expect("column among the needed ones");
                        Ok(Transformed::yes(
                            Arc::new(Column::new(c.name(), at)) as Arc<dyn PhysicalExpr>
                        ))
                    }
                    None => Ok(Transformed::no(e)),
                })
                .map(|t| t.data)
            })
            .ok()?;
        let projector = projection.make_projector(&needed).ok()?;

        let mut reader_options = options.clone();
        reader_options.global.pushdown_filters = false;
        let late = decodes_late.and_then(|key_sets| {
            LateFilter::of(dynamic_filters, key_sets, &plain, &indices, &fields)
        });
        Some(Self {
            cache,
            prune: in_table_columns(dynamic_filters, &plain, &file_schema),
            late,
            planned: planned.clone(),
            reader_options,
            reader_factory: source.parquet_file_reader_factory().cloned(),
            indices,
            fields,
            keys,
            needed,
            projector,
            output: input.schema(),
            file_schema,
            batch_size,
            source_metrics: source.metrics().clone(),
            ways: Default::default(),
        })
    }

    /// The scan's partition `partition`, file by file: from the cache, or read whole into it,
    /// or read by the planned scan.
    fn execute(
        self: Arc<Self>,
        partition: usize,
        context: Arc<TaskContext>,
        metrics: CacheMetrics,
    ) -> SendableRecordBatchStream {
        let files = self
            .planned
            .file_groups
            .get(partition)
            .map(|g| g.files().to_vec())
            .unwrap_or_default();
        let rows = MetricBuilder::new(&self.source_metrics).output_rows(partition);
        let output = Arc::clone(&self.output);
        let limit = self.planned.limit;
        let this = Arc::clone(&self);
        let batches = stream::iter(files)
            .then(move |file| {
                let this = Arc::clone(&this);
                let context = Arc::clone(&context);
                let metrics = metrics.clone();
                let rows = rows.clone();
                async move { this.open(file, context, metrics, rows).await }
            })
            .try_flatten();
        let batches: BoxStream<'static, DfResult<RecordBatch>> = match limit {
            None => batches.boxed(),
            Some(limit) => batches
                .scan(limit, |left, batch| {
                    let out = match batch {
                        Ok(_) if *left == 0 => None,
                        Ok(b) => {
                            let take = b.num_rows().min(*left);
                            *left -= take;
                            Some(Ok(b.slice(0, take)))
                        }
                        Err(e) => Some(Err(e)),
                    };
                    futures::future::ready(out)
                })
                .boxed(),
        };
        // Cached batches come from memory, never waiting on the runtime: spend its budget per
        // batch, as DataFusion's own scans do, so a query over hot data still yields (and a
        // cancelled one stops).
        datafusion::physical_plan::coop::make_cooperative(Box::pin(RecordBatchStreamAdapter::new(
            output, batches,
        )))
    }

    async fn open(
        self: Arc<Self>,
        file: PartitionedFile,
        context: Arc<TaskContext>,
        metrics: CacheMetrics,
        rows: Count,
    ) -> DfResult<BoxStream<'static, DfResult<RecordBatch>>> {
        if self.pruned(&file)? {
            return Ok(stream::empty().boxed());
        }
        let path = file.object_meta.location.to_string();
        // DataFusion splits big files into byte ranges over the partitions. A file read by the
        // planned scan is read range by range as planned; a file served from the cache or read
        // whole into it is handled by the partition with its first range, the others skip it.
        let first_range = file.range.as_ref().is_none_or(|r| r.start == 0);
        if self.way_of(&path) == Way::Planned {
            if first_range {
                metrics.files_read.add(1);
            }
            let one = FileScanConfigBuilder::from(self.planned.clone())
                .with_file_groups(vec![FileGroup::new(vec![file])])
                .build();
            return Ok(DataSourceExec::from_data_source(one)
                .execute(0, context)?
                .boxed());
        }
        if !first_range {
            return Ok(stream::empty().boxed());
        }
        let file = PartitionedFile {
            range: None,
            ..file
        };
        let deleted = file.extension::<DeletedRows>().map(|d| Arc::clone(&d.0));
        if let Some((n, columns)) = self.cache.get(&path, &self.keys) {
            metrics.files_cached.add(1);
            return Ok(self.serve(n, columns, deleted, rows, metrics.filters));
        }
        metrics.files_read.add(1);
        // A source of its own (a clone would share its metrics), so that the bytes it read can
        // be added to the planned scan's figures.
        let mut source = ParquetSource::new(TableSchema::from(Arc::clone(&self.file_schema)))
            .with_table_parquet_options(self.reader_options.clone());
        if let Some(factory) = &self.reader_factory {
            source = source.with_parquet_file_reader_factory(Arc::clone(factory));
        }
        // The cache holds every row of the file; deleted ones are left out as it serves them.
        let file = PartitionedFile {
            extensions: Default::default(),
            ..file
        };
        let one =
            FileScanConfigBuilder::new(self.planned.object_store_url.clone(), Arc::new(source))
                .with_projection_indices(Some(self.indices.clone()))?
                .with_expr_adapter(self.planned.expr_adapter_factory.clone())
                .with_file_groups(vec![FileGroup::new(vec![file])])
                .build();
        let reader = DataSourceExec::from_data_source(one);
        let batches: Vec<RecordBatch> = reader.execute(0, context)?.try_collect().await?;
        if let Some(bytes) = reader
            .metrics()
            .and_then(|m| m.sum_by_name("bytes_scanned"))
        {
            MetricBuilder::new(&self.source_metrics)
                .global_counter("bytes_scanned")
                .add(bytes.as_usize());
        }
        let n = batches.iter().map(|b| b.num_rows()).sum();
        let columns = (0..self.fields.len())
            .map(|i| match batches.as_slice() {
                [] => Ok(new_empty_array(self.fields[i].data_type())),
                [one] => Ok(Arc::clone(one.column(i))),
                all => {
                    let parts: Vec<&dyn arrow::array::Array> =
                        all.iter().map(|b| b.column(i).as_ref()).collect();
                    concat(&parts)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.cache.insert(&path, n, &self.keys, &columns);
        let columns = columns
            .into_iter()
            .map(|c| Arc::new(CompactColumn::Plain(c)))
            .collect();
        Ok(self.serve(n, columns, deleted, rows, metrics.filters))
    }

    /// How this scan reads the file `path`, decided once for all its partitions (each may
    /// hold a range of it): from the cache or whole into it when the cache holds the file or
    /// admits it now, else by the planned scan.
    fn way_of(&self, path: &str) -> Way {
        let mut ways = self.ways.lock().unwrap_or_else(|e| e.into_inner());
        *ways.entry(path.to_string()).or_insert_with(|| {
            // A file with some columns cached was read before: the rest join it if they fit.
            let cache = &self.cache;
            if cache.holds_all(path, &self.keys)
                || (cache.has_room() && (cache.holds(path) || cache.admits(path)))
            {
                Way::Cache
            } else {
                Way::Planned
            }
        })
    }

    /// Whether the dynamic filters, as they stand, rule out every row of `file` by its
    /// statistics.
    fn pruned(&self, file: &PartitionedFile) -> DfResult<bool> {
        let Some(predicate) = &self.prune else {
            return Ok(false);
        };
        match FilePruner::try_new(Arc::clone(predicate), &self.file_schema, file, Count::new()) {
            Some(mut pruner) => pruner.should_prune(),
            None => Ok(false),
        }
    }

    /// `columns` (of `n` rows) as the scan's output batches, without the `deleted` rows and,
    /// when it applies its runtime filters, the rows they drop.
    fn serve(
        self: Arc<Self>,
        n: usize,
        columns: Vec<Arc<CompactColumn>>,
        deleted: Option<Arc<RoaringBitmap>>,
        rows: Count,
        metrics: RuntimeFilterMetrics,
    ) -> BoxStream<'static, DfResult<RecordBatch>> {
        let size = self.batch_size.max(1);
        stream::iter((0..n).step_by(size).map(move |offset| {
            let len = size.min(n - offset);
            let batch = self.rows(&columns, offset, len, deleted.as_deref(), &metrics)?;
            if let Some(batch) = &batch {
                rows.add(batch.num_rows());
            }
            Ok(batch)
        }))
        .filter_map(|batch| futures::future::ready(batch.transpose()))
        .boxed()
    }

    /// Rows `offset..offset + len` of `columns` that are not `deleted` and pass the runtime
    /// filters, as an output batch; `None` when no row is left. The filters are evaluated on
    /// the columns they read, and the other columns decoded only for the rows they keep.
    fn rows(
        &self,
        columns: &[Arc<CompactColumn>],
        offset: usize,
        len: usize,
        deleted: Option<&RoaringBitmap>,
        metrics: &RuntimeFilterMetrics,
    ) -> DfResult<Option<RecordBatch>> {
        let mut decoded: Vec<Option<ArrayRef>> = vec![None; columns.len()];
        let mut keep = deleted.and_then(|d| not_deleted(d, offset, len));
        if let Some(late) = &self.late {
            let timer = metrics.time.timer();
            for &i in &late.columns {
                decoded[i] = Some(columns[i].slice(offset, len)?);
            }
            let read: Vec<ArrayRef> = late
                .columns
                .iter()
                .filter_map(|&i| decoded[i].clone())
                .collect();
            let options = RecordBatchOptions::new().with_row_count(Some(len));
            let read = RecordBatch::try_new_with_options(Arc::clone(&late.schema), read, &options)?;
            let passed = match late.predicate.evaluate(&read)? {
                ColumnarValue::Array(mask) => Some(mask.as_boolean().clone()),
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => None,
                ColumnarValue::Scalar(_) => Some(BooleanArray::from(vec![false; len])),
            };
            let before = keep.as_ref().map_or(len, |k| k.true_count());
            keep = match (keep, passed) {
                (Some(live), Some(passed)) => Some(and(&live, &passed)?),
                (live, passed) => live.or(passed),
            };
            let after = keep.as_ref().map_or(len, |k| k.true_count());
            metrics.rows_pruned.add(before - after);
            timer.done();
        }
        let kept = keep.as_ref().map_or(len, |k| k.true_count());
        if kept == 0 {
            return Ok(None);
        }
        let arrays = match keep.filter(|_| kept < len) {
            None => columns
                .iter()
                .zip(decoded)
                .map(|(column, done)| done.map_or_else(|| column.slice(offset, len), Ok))
                .collect::<Result<Vec<_>, _>>()?,
            Some(mask) => {
                let keep = FilterBuilder::new(&mask).optimize().build();
                columns
                    .iter()
                    .zip(decoded)
                    .map(|(column, done)| match done {
                        Some(done) => keep.filter(&done),
                        None => column.filter(offset, len, &keep),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let options = RecordBatchOptions::new().with_row_count(Some(kept));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.needed), arrays, &options)?;
        let projected = self.projector.project_batch(&batch)?;
        Ok(Some(RecordBatch::try_new_with_options(
            Arc::clone(&self.output),
            projected.columns().to_vec(),
            &options,
        )?))
    }
}

/// The runtime filters a cached scan evaluates itself, before it decodes the columns they do
/// not read (late materialization, as the Parquet reader does with
/// `strata.late_materialization`). A join that keeps a few rows in a thousand (TPC-H Q19
/// keeps 0.1% of lineitem) then no longer decodes every row's strings to throw them away.
#[derive(Debug)]
struct LateFilter {
    /// The filters, over `schema`, as one [`AdaptiveJoinFilter`]: most selective first, and
    /// one that keeps nearly every row skipped.
    predicate: AdaptiveJoinFilter,
    /// The needed columns (indices into [`CachedScan::fields`]) the filters read, in the order
    /// of `schema`.
    columns: Vec<usize>,
    schema: SchemaRef,
}

impl LateFilter {
    /// `filters`, over the scan's output columns (the table's columns `plain` where they are
    /// such), over the needed columns (the table's columns `indices`, of `fields`) they read,
    /// each join filter after its join's bloom filter in `key_sets`; `None` when there are
    /// none or one reads a computed output column.
    fn of(
        filters: &[Arc<dyn PhysicalExpr>],
        key_sets: &JoinKeySets,
        plain: &[Option<usize>],
        indices: &[usize],
        fields: &[FieldRef],
    ) -> Option<Self> {
        if filters.is_empty() {
            return None;
        }
        // The needed column behind each output column a filter reads.
        let needed = |output: usize| {
            let table = plain.get(output).copied().flatten()?;
            indices.iter().position(|&i| i == table)
        };
        let mut columns = Vec::new();
        for filter in filters {
            for column in collect_columns(filter) {
                let at = needed(column.index())?;
                if !columns.contains(&at) {
                    columns.push(at);
                }
            }
        }
        columns.sort_unstable();
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|&i| Arc::clone(&fields[i]))
                .collect::<Vec<_>>(),
        ));
        let remapped = remap_columns(filters, |c| {
            let at = columns.iter().position(|&i| Some(i) == needed(c.index()))?;
            Some(Column::new(c.name(), at))
        })?;
        Some(Self {
            predicate: AdaptiveJoinFilter::new(remapped).with_key_sets(key_sets),
            columns,
            schema,
        })
    }
}

/// The rows of `offset..offset + len` of a file that `deleted` does not hold, as a mask;
/// `None` when it holds none of them.
fn not_deleted(deleted: &RoaringBitmap, offset: usize, len: usize) -> Option<BooleanArray> {
    let start = u32::try_from(offset).unwrap_or(u32::MAX);
    let end = u32::try_from(offset + len).unwrap_or(u32::MAX);
    let mut gone = deleted.range(start..end).peekable();
    gone.peek()?;
    let mut keep = BooleanBufferBuilder::new(len);
    keep.append_n(len, true);
    for row in gone {
        keep.set_bit((row - start) as usize, false);
    }
    Some(BooleanArray::new(keep.finish(), None))
}

/// The conjunction of `filters` (on the scan's output columns, which are the table's columns
/// `plain` where they are such) on the table's columns, or `None` when there are none or one
/// refers to a computed output column.
fn in_table_columns(
    filters: &[Arc<dyn PhysicalExpr>],
    plain: &[Option<usize>],
    table: &SchemaRef,
) -> Option<Arc<dyn PhysicalExpr>> {
    let remapped = remap_columns(filters, |c| {
        let at = plain.get(c.index()).copied().flatten()?;
        Some(Column::new(table.field(at).name(), at))
    })?;
    conjunction_opt(remapped)
}

/// `filters` with each column `c` they read replaced by `column(c)`; `None` when that is
/// `None` for one of them.
fn remap_columns(
    filters: &[Arc<dyn PhysicalExpr>],
    column: impl Fn(&Column) -> Option<Column>,
) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
    filters
        .iter()
        .map(|f| {
            Arc::clone(f)
                .transform(|e| match e.downcast_ref::<Column>() {
                    Some(c) => match column(c) {
                        Some(new) => Ok(Transformed::yes(Arc::new(new) as Arc<dyn PhysicalExpr>)),
                        None => plan_err!("computed column {}", c.name()),
                    },
                    None => Ok(Transformed::no(e)),
                })
                .map(|t| t.data)
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::util::pretty::pretty_format_batches;

    use crate::Warehouse;
    use crate::config::WarehouseOptions;

    async fn run(session: &mut crate::Session, sql: &str) -> String {
        let result = session.sql(sql).await.expect(sql);
        let batches = &result.last().expect("a result").batches;
        pretty_format_batches(batches).expect("format").to_string()
    }

    /// The `scan_cache_*` figures of `table`'s scan in the `EXPLAIN ANALYZE` of `sql`:
    /// (files served from the cache, files read).
    async fn cache_figures(session: &mut crate::Session, sql: &str, table: &str) -> (u64, u64) {
        let plan = run(session, &format!("EXPLAIN ANALYZE {sql}")).await;
        let scan = plan
            .lines()
            .find(|l| l.contains(&format!("StrataScanExec: table=main.public.{table},")))
            .unwrap_or_else(|| panic!("no scan of {table} in {plan}"));
        let figure = |name: &str| {
            regex::Regex::new(&format!(r"{name}=(\d+)"))
                .expect("regex")
                .captures(scan)
                .map_or(0, |c| c[1].parse().expect("number"))
        };
        (
            figure("scan_cache_files_hit"),
            figure("scan_cache_files_read"),
        )
    }

    const SETUP: &str = "CREATE TABLE t (k INT, v BIGINT, s VARCHAR);
        INSERT INTO t SELECT CAST(value % 7 AS INT), value, 'a' || CAST(value % 3 AS VARCHAR) FROM generate_series(1, 20000);
        INSERT INTO t SELECT CAST(value % 7 AS INT), value, NULL FROM generate_series(20001, 30000)";

    /// A second scan of the same columns is served from the cache, with the same answer as the
    /// Parquet reader gives.
    #[tokio::test]
    async fn a_hot_scan_is_served_from_the_cache() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session.sql(SETUP).await.expect("setup");
        let sql = "SELECT k, sum(v) AS total, count(s) AS named, max(s) AS top FROM t \
                   WHERE v > 100 GROUP BY k ORDER BY k";
        session
            .sql("SET strata.scan_cache = false")
            .await
            .expect("set");
        let read = run(&mut session, sql).await;
        assert_eq!(cache_figures(&mut session, sql, "t").await, (0, 0));
        assert_eq!(warehouse.scan_cache().files(), 0);

        session
            .sql("SET strata.scan_cache = true")
            .await
            .expect("set");
        // The first read only remembers the files; the second caches them.
        assert_eq!(cache_figures(&mut session, sql, "t").await, (0, 2));
        assert_eq!(warehouse.scan_cache().files(), 0);
        assert_eq!(cache_figures(&mut session, sql, "t").await, (0, 2));
        assert_eq!(warehouse.scan_cache().files(), 2);
        // Narrow integers and a dictionary: k in 1 byte a row, v in 2, s in 1.
        let used = warehouse.scan_cache().used();
        assert!(used > 30000 * 3 && used < 30000 * 5, "{used}");
        assert_eq!(cache_figures(&mut session, sql, "t").await, (2, 0));
        assert_eq!(run(&mut session, sql).await, read);
        let budget = crate::config::default_scan_cache_bytes();
        let held = run(
            &mut session,
            &format!(
                "SELECT table_name, files, columns, rows, bytes > 240000 AS big, \
                 budget_bytes = {budget} AS budget FROM system.scan_cache"
            ),
        )
        .await;
        assert!(
            held.contains("| t          | 2     | 3       | 30000 | false | true   |"),
            "{held}"
        );

        // Other columns of cached files are read and added; the ones held are served.
        let narrow = "SELECT count(*) AS n, sum(k) AS keys FROM t";
        let answer = run(&mut session, narrow).await;
        assert!(answer.contains("| 30000 | 90000 |"), "{answer}");
        assert_eq!(cache_figures(&mut session, narrow, "t").await, (2, 0));
        let computed = "SELECT sum(v * 2) AS doubled, count(*) AS n FROM t WHERE s IS NULL";
        let answer = run(&mut session, computed).await;
        assert!(answer.contains("| 500010000 | 10000 |"), "{answer}");
    }

    /// A file DataFusion splits into byte ranges over the partitions is read and served once.
    #[tokio::test]
    async fn a_file_split_over_partitions_is_served_once() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "SET datafusion.execution.target_partitions = 3;
                 SET datafusion.optimizer.repartition_file_min_size = 1000;
                 CREATE TABLE t (k INT, v BIGINT);
                 INSERT INTO t SELECT CAST(value % 7 AS INT) AS k, value AS v FROM generate_series(1, 50000)",
            )
            .await
            .expect("setup");
        let sql = "SELECT count(*) AS n, sum(v) AS total FROM t";
        let plan = run(&mut session, &format!("EXPLAIN {sql}")).await;
        assert!(plan.contains(".parquet:0.."), "the file is split: {plan}");
        for _ in 0..2 {
            let answer = run(&mut session, sql).await;
            assert!(answer.contains("| 50000 | 1250025000 |"), "{answer}");
        }
        assert_eq!(cache_figures(&mut session, sql, "t").await, (1, 0));
    }

    /// Files that do not fit the budget are read by the Parquet reader; the ones that did are
    /// served.
    #[tokio::test]
    async fn files_that_do_not_fit_the_budget_are_read() {
        // Columns k and v, compact (1 and 2 bytes a row): 30 KB in the second file, 60 KB in
        // the first.
        let budget = 50 * 1024;
        let options = WarehouseOptions {
            scan_cache_bytes: budget,
            ..Default::default()
        };
        let warehouse = Warehouse::open_with("memory://", options)
            .await
            .expect("warehouse");
        let mut session = warehouse.session();
        session.sql(SETUP).await.expect("setup");
        // Only the second file holds v > 20000.
        let recent = "SELECT k, sum(v) AS total FROM t WHERE v > 20000 GROUP BY k ORDER BY k";
        assert_eq!(cache_figures(&mut session, recent, "t").await, (0, 1));
        let sql = "SELECT k, sum(v) AS total FROM t GROUP BY k ORDER BY k";
        let first = run(&mut session, sql).await;
        assert!(first.contains("| 6 | 64275000 |"), "{first}");
        for _ in 0..2 {
            assert_eq!(cache_figures(&mut session, sql, "t").await, (1, 1));
        }
        assert_eq!(run(&mut session, sql).await, first);
        let cache = warehouse.scan_cache();
        assert_eq!(cache.files(), 1);
        assert!(
            cache.used() > 20 * 1024 && cache.used() <= budget,
            "{}",
            cache.used()
        );
    }

    /// Under a memory limit the cache lives in the query pool: it fills only what queries
    /// leave, and a query that needs more memory makes it give files back, so the answer is
    /// the one without a cache and the pool never holds more than the limit's share.
    #[tokio::test]
    async fn queries_take_memory_back_from_the_cache() {
        let limit = 24 << 20;
        let options = WarehouseOptions {
            memory_limit: Some(limit),
            ..Default::default()
        };
        let warehouse = Warehouse::open_with("memory://", options)
            .await
            .expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql("CREATE TABLE t (id BIGINT, x DOUBLE)")
            .await
            .expect("create");
        for part in 0..4 {
            let (from, to) = (part * 400_000 + 1, (part + 1) * 400_000);
            session
                .sql(&format!(
                    "INSERT INTO t SELECT value, CAST(value AS DOUBLE) / 7 \
                     FROM generate_series({from}, {to})"
                ))
                .await
                .expect("insert");
        }
        let warm = "SELECT count(*) AS n, sum(id) AS ids FROM t WHERE x > 1";
        for _ in 0..2 {
            let answer = run(&mut session, warm).await;
            assert!(answer.contains("| 1599993 |"), "{answer}");
        }
        let cache = warehouse.scan_cache();
        let filled = cache.used();
        assert!(filled > 0 && filled <= cache.budget(), "{filled}");
        let pool = std::sync::Arc::clone(&warehouse.runtime().memory_pool);
        assert_eq!(pool.reserved(), filled, "the cache's bytes are in the pool");

        // 1.6M groups need more than the pool has left beside the cache.
        let heavy = "SELECT count(*) AS groups, sum(n) AS n FROM \
                     (SELECT x, count(*) AS n FROM t GROUP BY x)";
        let answer = run(&mut session, heavy).await;
        assert!(answer.contains("| 1600000 | 1600000 |"), "{answer}");
        assert!(cache.used() < filled, "{} of {filled}", cache.used());
        assert_eq!(pool.reserved(), cache.used());
        let served = run(&mut session, warm).await;
        session
            .sql("SET strata.scan_cache = false")
            .await
            .expect("set");
        assert_eq!(run(&mut session, warm).await, served);
    }

    /// A cached scan below a join skips the files the join's filter rules out by their
    /// statistics, as the Parquet reader does.
    #[tokio::test]
    async fn join_filters_prune_cached_files() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE facts (k INT, v BIGINT);
                 INSERT INTO facts SELECT CAST(value AS INT) AS k, value AS v FROM generate_series(1, 5000);
                 INSERT INTO facts SELECT CAST(value AS INT) AS k, value AS v FROM generate_series(5001, 10000);
                 CREATE TABLE dims (k INT, name VARCHAR);
                 INSERT INTO dims VALUES (6000, 'six'), (7000, 'seven'), (100, 'low')",
            )
            .await
            .expect("setup");
        let warm = "SELECT sum(v) AS total FROM facts";
        assert!(run(&mut session, warm).await.contains("| 50005000 |"));
        let sql = "SELECT sum(v) AS total FROM facts JOIN dims ON facts.k = dims.k \
                   WHERE name <> 'low'";
        let answer = run(&mut session, sql).await;
        assert!(answer.contains("| 13000 |"), "{answer}");
        // The first file (k up to 5000) is pruned: neither served nor read.
        assert_eq!(cache_figures(&mut session, sql, "facts").await, (1, 0));
    }

    /// A cached scan below a selective join applies the join's filter itself, on the key
    /// column, and decodes the other columns (narrow integers, dictionary strings) only for
    /// the rows it keeps, deleted rows left out: the answer is the Parquet reader's.
    #[tokio::test]
    async fn a_cached_scan_filters_rows_before_it_decodes_the_rest() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE facts (k INT, v BIGINT, s VARCHAR);
                 INSERT INTO facts SELECT CAST(value % 1000 AS INT), value, 'mode ' || CAST(value % 7 AS VARCHAR) FROM generate_series(1, 30000);
                 INSERT INTO facts SELECT CAST(value % 1000 AS INT), value, NULL FROM generate_series(30001, 40000);
                 DELETE FROM facts WHERE v % 5 = 0;
                 CREATE TABLE dims (k INT, name VARCHAR);
                 INSERT INTO dims VALUES (3, 'three'), (500, 'five hundred'), (999, 'last'), (1, 'one')",
            )
            .await
            .expect("setup");
        let sql = "SELECT s, count(*) AS n, sum(v) AS total, min(name) AS name \
                   FROM facts JOIN dims ON facts.k = dims.k WHERE name <> 'one' \
                   GROUP BY s ORDER BY s";
        session
            .sql("SET strata.scan_cache = false")
            .await
            .expect("set");
        let want = run(&mut session, sql).await;
        // Keys 3 and 999 keep their 40 rows each; key 500's rows are all deleted.
        assert!(want.contains("|        | 20 | 700020 | last |"), "{want}");
        session
            .sql("SET strata.scan_cache = true")
            .await
            .expect("set");
        // Late, then filtering served batches.
        for late in [true, false] {
            session
                .sql(&format!("SET strata.late_materialization = {late}"))
                .await
                .expect("set");
            for _ in 0..3 {
                assert_eq!(run(&mut session, sql).await, want, "late {late}");
            }
            assert_eq!(cache_figures(&mut session, sql, "facts").await, (2, 0));
            let plan = run(&mut session, &format!("EXPLAIN ANALYZE {sql}")).await;
            let scan = plan
                .lines()
                .find(|l| l.contains("StrataScanExec: table=main.public.facts,"))
                .expect("the facts scan");
            assert_eq!(scan.contains("filters_while_decoding"), late, "{scan}");
            // 32,000 live rows, of which 80 pass.
            assert!(
                scan.contains("runtime_filter_pruned_rows=31.92 K"),
                "late {late}: {scan}"
            );
        }
    }

    /// Pruning by an aggregate's running MIN/MAX (DataFusion's aggregate dynamic filter) never
    /// changes an answer. DataFusion 55 built that filter from the MIN/MAX of plain columns
    /// alone, so `MAX(b), MAX(a + 1)` skipped the files without a larger `b` that the second
    /// aggregate needed (apache/datafusion#24816). Every pair of aggregates, with and without
    /// a WHERE clause, through the cached and the Parquet scan, on one partition (files in
    /// order: deterministic) and on several, is compared with the same query over VALUES.
    #[tokio::test]
    async fn running_min_max_never_prunes_rows_another_aggregate_needs() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql("CREATE TABLE t (a INT, b INT, c INT)")
            .await
            .expect("create");
        // Four files of disjoint ranges: a rises, b falls, c wanders; the last one holds NULLs.
        let mut rows = Vec::new();
        for file in 0..4 {
            let values: Vec<String> = (0..10)
                .map(|i| {
                    let a = file * 10 + i;
                    let c = if file == 3 && i % 3 == 0 {
                        "NULL".to_string()
                    } else {
                        ((a * a) % 37).to_string()
                    };
                    format!("({a}, {}, {c})", 100 - a)
                })
                .collect();
            session
                .sql(&format!("INSERT INTO t VALUES {}", values.join(", ")))
                .await
                .expect("insert");
            rows.extend(values);
        }
        let reference = format!("(VALUES {}) AS t(a, b, c)", rows.join(", "));
        let aggregates = [
            "MIN(a)",
            "MAX(a)",
            "MAX(b)",
            "MIN(-a)",
            "MAX(a + 1)",
            "MIN(c)",
            "COUNT(*)",
            "SUM(b)",
            "COUNT(c)",
        ];
        let mut checked = 0;
        for partitions in [1, 4] {
            session
                .sql(&format!(
                    "SET datafusion.execution.target_partitions = {partitions}"
                ))
                .await
                .expect("set");
            for cache in [true, false] {
                session
                    .sql(&format!("SET strata.scan_cache = {cache}"))
                    .await
                    .expect("set");
                for first in aggregates {
                    for second in aggregates {
                        for filter in ["", " WHERE c > 3"] {
                            let select = format!("SELECT {first} AS x, {second} AS y FROM");
                            let got = run(&mut session, &format!("{select} t{filter}")).await;
                            let want =
                                run(&mut session, &format!("{select} {reference}{filter}")).await;
                            assert_eq!(
                                got, want,
                                "{select} t{filter} (cache {cache}, {partitions} partitions)"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 2 * 9 * 9 * 2);
    }
}
