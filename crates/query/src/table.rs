//! `StrataTable`: a table snapshot as a DataFusion `TableProvider` that prunes before it reads.
//!
//! `scan` prunes twice with DataFusion's `PruningPredicate`: first whole partitions, from their
//! bounds; then files, from the min/max/null statistics kept in the table log. The surviving files
//! go to DataFusion's Parquet reader with the same predicate, which prunes row groups and pages
//! (and applies dynamic filters from joins at run time, using the per-file statistics attached
//! here). A thin [`StrataScanExec`] on top reports what was pruned in `EXPLAIN ANALYZE` and the
//! query log, passes statistics through, applies the dynamic filters to the decoded rows
//! ([`crate::runtime_filter`]), and serves hot files from the scan cache
//! ([`crate::scan_cache`]).
//!
//! Writes (`INSERT`) go through [`StrataSink`]: route → encode → upload → one commit.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, ColumnStatistics, DFSchema, ScalarValue, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, FileSource, ParquetSource,
};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::split_conjunction;
use datafusion::physical_expr_common::physical_expr::snapshot_generation;
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
    PushedDown,
};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use parquet::arrow::RowNumber;
use strata_storage::{DataFile, Snapshot, TableLog, TableWriter, Transaction, run_cpu, writer};

use crate::mv::rewrite::StrataOptions;
use crate::runtime_filter::{AdaptiveJoinFilter, RuntimeFilterMetrics, RuntimeFilterStream};
use crate::scan_cache::ScanCache;
use crate::types::{key_scalar, scalar};
use crate::warehouse::Warehouse;

/// DataFusion's name for the warehouse's object store.
pub const WAREHOUSE_STORE_URL: &str = "strata://warehouse";

/// The column a row-id scan ([`StrataTable::with_row_ids`]) adds: the row's data file.
pub(crate) const FILE_COLUMN: &str = "__strata_file";
/// The column a row-id scan adds: the row's position in its data file (Parquet's row number).
pub(crate) const ROW_COLUMN: &str = "__strata_row";

/// One table at one snapshot.
#[derive(Debug)]
pub struct StrataTable {
    warehouse: Warehouse,
    /// Qualified name, for messages and the query log.
    name: String,
    log: TableLog,
    snapshot: Snapshot,
    schema: SchemaRef,
    /// True when read through time travel: such a table cannot be written.
    historical: bool,
    /// Rows carry [`FILE_COLUMN`] and [`ROW_COLUMN`] (the scan of a DML statement).
    row_ids: bool,
}

impl StrataTable {
    /// The provider for `snapshot` of the table behind `log`.
    pub fn new(
        warehouse: Warehouse,
        name: String,
        log: TableLog,
        snapshot: Snapshot,
        historical: bool,
    ) -> Self {
        // NOT NULL is enforced by the writer, whose error names the column and row; if
        // DataFusion saw non-nullable fields it would fail first, naming the position in the
        // VALUES list (`column1`) instead.
        let schema = Arc::new(arrow::datatypes::Schema::new(
            snapshot
                .metadata
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Self {
            warehouse,
            name,
            log,
            snapshot,
            schema,
            historical,
            row_ids: false,
        }
    }

    /// This table as `UPDATE`, `DELETE` and `MERGE` read it: only the data files in `files`
    /// (all when `None`), each row tagged with its file's path ([`FILE_COLUMN`]) and its row
    /// number in that file ([`ROW_COLUMN`]), which identify it for the rewrite.
    pub(crate) fn with_row_ids(&self, files: Option<&HashSet<String>>) -> Self {
        let mut table = self.with_files(|f| files.is_none_or(|keep| keep.contains(&f.path)));
        table.row_ids = true;
        table
    }

    /// This table reading only the data files `keep` accepts (a materialized view's refresh
    /// reads a source's new files, or the partitions it recomputes).
    pub(crate) fn with_files(&self, keep: impl Fn(&DataFile) -> bool) -> Self {
        let mut snapshot = self.snapshot.clone();
        snapshot.files.retain(|_, f| keep(f));
        Self {
            warehouse: self.warehouse.clone(),
            name: self.name.clone(),
            log: self.log.clone(),
            snapshot,
            schema: Arc::clone(&self.schema),
            historical: self.historical,
            row_ids: false,
        }
    }

    /// The table's own columns (without row ids).
    pub(crate) fn table_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The log of the table.
    pub(crate) fn log(&self) -> &TableLog {
        &self.log
    }

    /// The qualified name of the table.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is the table at a past version (read-only).
    pub(crate) fn is_historical(&self) -> bool {
        self.historical
    }

    /// The table's columns plus, for a row-id scan, the file and row columns.
    fn scan_schema(&self) -> TableSchema {
        let mut builder = TableSchema::builder(Arc::clone(&self.schema));
        if self.row_ids {
            builder = builder
                .with_table_partition_cols(vec![Arc::new(Field::new(
                    FILE_COLUMN,
                    DataType::Utf8,
                    false,
                ))])
                .with_virtual_columns(vec![Arc::new(
                    Field::new(ROW_COLUMN, DataType::Int64, false).with_extension_type(RowNumber),
                )]);
        }
        builder.build()
    }

    /// The snapshot this provider reads.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Partition and file pruning; returns the kept files and the figures.
    fn prune(&self, predicate: Option<&PruningPredicate>) -> (Vec<&DataFile>, ScanFigures) {
        let all_files: Vec<&DataFile> = self.snapshot.files.values().collect();
        let layout = self.snapshot.metadata.partitioning.as_ref();
        let partitions_total = layout.map_or(1, |l| l.partitions.len().max(1));
        let Some(predicate) = predicate else {
            let figures = ScanFigures::of(partitions_total, &all_files, &all_files);
            return (all_files, figures);
        };
        // Partitions from bounds.
        let kept_partitions: Option<HashSet<&str>> = layout.and_then(|l| {
            let stats = PartitionBounds {
                layout: l,
                schema: &self.schema,
            };
            let keep = predicate.prune(&stats).ok()?;
            Some(
                l.partitions
                    .iter()
                    .zip(keep)
                    .filter(|(_, k)| *k)
                    .map(|(p, _)| p.name.as_str())
                    .collect(),
            )
        });
        let candidates: Vec<&DataFile> = all_files
            .iter()
            .copied()
            .filter(|f| {
                kept_partitions
                    .as_ref()
                    .is_none_or(|k| k.contains(f.partition.as_str()))
            })
            .collect();
        // Files from statistics.
        let stats = FileStatistics {
            files: &candidates,
            schema: &self.schema,
        };
        let kept: Vec<&DataFile> = match predicate.prune(&stats) {
            Ok(keep) => candidates
                .iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(f, _)| *f)
                .collect(),
            Err(_) => candidates,
        };
        let figures = ScanFigures::of(partitions_total, &all_files, &kept);
        (kept, figures)
    }

    fn file_statistics(&self, file: &DataFile) -> Statistics {
        Statistics {
            num_rows: Precision::Exact(file.rows as usize),
            total_byte_size: Precision::Inexact(file.size_bytes as usize),
            column_statistics: self
                .schema
                .fields()
                .iter()
                .map(|field| {
                    let s = file.stats.get(field.name());
                    let value = |v: Option<&strata_storage::StatValue>| {
                        v.and_then(|v| scalar(v, field.data_type()))
                            .map_or(Precision::Absent, Precision::Exact)
                    };
                    ColumnStatistics {
                        null_count: s.map_or(Precision::Absent, |s| {
                            Precision::Exact(s.null_count as usize)
                        }),
                        min_value: value(s.and_then(|s| s.min.as_ref())),
                        max_value: value(s.and_then(|s| s.max.as_ref())),
                        ..Default::default()
                    }
                })
                .collect(),
        }
    }
}

/// How much a scan read compared with the whole table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanFigures {
    pub partitions_total: usize,
    pub partitions_scanned: usize,
    pub files_total: usize,
    pub files_scanned: usize,
    pub bytes_total: u64,
    pub bytes_scanned: u64,
}

impl ScanFigures {
    fn of(partitions_total: usize, all: &[&DataFile], kept: &[&DataFile]) -> Self {
        let partitions_scanned = kept
            .iter()
            .map(|f| f.partition.as_str())
            .collect::<HashSet<_>>()
            .len();
        Self {
            partitions_total,
            partitions_scanned,
            files_total: all.len(),
            files_scanned: kept.len(),
            bytes_total: all.iter().map(|f| f.size_bytes).sum(),
            bytes_scanned: kept.iter().map(|f| f.size_bytes).sum(),
        }
    }
}

/// Partition bounds as pruning statistics: one container per partition, `[lower, upper - 1]`.
struct PartitionBounds<'a> {
    layout: &'a strata_storage::Partitioning,
    schema: &'a SchemaRef,
}

impl PruningStatistics for PartitionBounds<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        if column.name != self.layout.column {
            return None;
        }
        let t = self.schema.field_with_name(&column.name).ok()?.data_type();
        let null = ScalarValue::try_from(t).ok()?;
        let values = self.layout.partitions.iter().map(|p| {
            p.lower
                .and_then(|k| key_scalar(k, t))
                .unwrap_or_else(|| null.clone())
        });
        ScalarValue::iter_to_array(values).ok()
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        if column.name != self.layout.column {
            return None;
        }
        let t = self.schema.field_with_name(&column.name).ok()?.data_type();
        let null = ScalarValue::try_from(t).ok()?;
        let values = self.layout.partitions.iter().map(|p| {
            p.upper
                .and_then(|k| key_scalar(k - 1, t))
                .unwrap_or_else(|| null.clone())
        });
        ScalarValue::iter_to_array(values).ok()
    }

    fn num_containers(&self) -> usize {
        self.layout.partitions.len()
    }

    fn null_counts(&self, _column: &Column) -> Option<ArrayRef> {
        None
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        None
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// File statistics from the log as pruning statistics: one container per file.
struct FileStatistics<'a> {
    files: &'a [&'a DataFile],
    schema: &'a SchemaRef,
}

impl FileStatistics<'_> {
    fn values(
        &self,
        column: &Column,
        pick: impl Fn(&strata_storage::ColumnStats) -> Option<&strata_storage::StatValue>,
    ) -> Option<ArrayRef> {
        let t = self.schema.field_with_name(&column.name).ok()?.data_type();
        let null = ScalarValue::try_from(t).ok()?;
        let values: Vec<ScalarValue> = self
            .files
            .iter()
            .map(|f| {
                f.stats
                    .get(&column.name)
                    .and_then(&pick)
                    .and_then(|v| scalar(v, t))
                    .unwrap_or_else(|| null.clone())
            })
            .collect();
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for FileStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.min.as_ref())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.max.as_ref())
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let counts: Option<Vec<u64>> = self
            .files
            .iter()
            .map(|f| f.stats.get(&column.name).map(|s| s.null_count))
            .collect();
        Some(Arc::new(UInt64Array::from(counts?)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(
            self.files.iter().map(|f| f.rows),
        )))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// Splits files into `n` groups of similar byte size (largest first, into the lightest group).
fn balanced_groups(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    let n = n.max(1).min(files.len().max(1));
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for f in files {
        let lightest = groups
            .iter_mut()
            .min_by_key(|(size, _)| *size)
            .expect("at least one group");
        lightest.0 += f.object_meta.size;
        lightest.1.push(f);
    }
    // An empty table keeps one (empty) group: a scan with no partitions satisfies no
    // distribution, and a join building on it would fail the plan's sanity check.
    let mut groups: Vec<FileGroup> = groups
        .into_iter()
        .filter(|(_, g)| !g.is_empty())
        .map(|(_, g)| FileGroup::new(g))
        .collect();
    if groups.is_empty() {
        groups.push(FileGroup::new(Vec::new()));
    }
    groups
}

#[async_trait]
impl TableProvider for StrataTable {
    fn schema(&self) -> SchemaRef {
        if self.row_ids {
            Arc::clone(self.scan_schema().table_schema())
        } else {
            Arc::clone(&self.schema)
        }
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Pruning is by ranges and statistics: rows must still be filtered above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    fn statistics(&self) -> Option<Statistics> {
        if self.row_ids {
            return None;
        }
        let files: Vec<Statistics> = self
            .snapshot
            .files
            .values()
            .map(|f| self.file_statistics(f))
            .collect();
        if files.is_empty() {
            return Some(Statistics::new_unknown(&self.schema).with_num_rows(Precision::Exact(0)));
        }
        Statistics::try_merge_iter(files.iter(), &self.schema).ok()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let df_schema = DFSchema::try_from(self.schema())?;
        let predicate: Option<Arc<dyn PhysicalExpr>> = match conjunction(filters.to_vec()) {
            Some(expr) => Some(state.create_physical_expr(expr, &df_schema)?),
            None => None,
        };
        let pruning = match &predicate {
            Some(p) => PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(&self.schema))
                .try_build(Arc::clone(p))
                .ok(),
            None => None,
        };
        let (files, figures) = self.prune(pruning.as_ref());
        let partitioned: Vec<PartitionedFile> = files
            .iter()
            .map(|f| {
                let file = PartitionedFile::new(f.path.clone(), f.size_bytes);
                if self.row_ids {
                    PartitionedFile {
                        partition_values: vec![ScalarValue::Utf8(Some(f.path.clone()))],
                        ..file
                    }
                } else {
                    file.with_statistics(Arc::new(self.file_statistics(f)))
                }
            })
            .collect();
        let options = state.config_options();
        let target_partitions = options.execution.target_partitions;
        let parquet_options = datafusion::config::TableParquetOptions {
            global: options.execution.parquet.clone(),
            ..Default::default()
        };
        // The filters reach the Parquet source through DataFusion's physical filter pushdown
        // (passed through `StrataScanExec`), which prunes row groups and pages with them.
        //
        // Footers and page indexes come from the runtime's metadata cache: data files are
        // immutable and uniquely named, so a cached footer never goes stale, and a hot query
        // skips fetching and decoding the metadata of every file it touches.
        let store_url = ObjectStoreUrl::parse(WAREHOUSE_STORE_URL)?;
        let runtime = state.runtime_env();
        let readers = CachedParquetFileReaderFactory::new(
            runtime.object_store(&store_url)?,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let source = ParquetSource::new(self.scan_schema())
            .with_table_parquet_options(parquet_options)
            .with_parquet_file_reader_factory(Arc::new(readers));
        let mut config = FileScanConfigBuilder::new(store_url, Arc::new(source))
            .with_file_groups(balanced_groups(partitioned, target_partitions))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit);
        if let Some(stats) = TableProvider::statistics(self) {
            config = config.with_statistics(stats);
        }
        let scan = DataSourceExec::from_data_source(config.build());
        Ok(Arc::new(StrataScanExec::new(
            self.name.clone(),
            scan,
            figures,
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.historical {
            return Err(DataFusionError::Plan(format!(
                "cannot write to '{}' at a past version",
                self.name
            )));
        }
        let overwrite = match insert_op {
            InsertOp::Append => false,
            InsertOp::Overwrite => true,
            InsertOp::Replace => {
                return Err(DataFusionError::NotImplemented(
                    "REPLACE INTO is not supported; use INSERT OVERWRITE or MERGE".to_string(),
                ));
            }
        };
        let sink = StrataSink {
            warehouse: self.warehouse.clone(),
            name: self.name.clone(),
            log: self.log.clone(),
            snapshot: self.snapshot.clone(),
            schema: Arc::clone(&self.schema),
            overwrite,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Writes an `INSERT` into a table and commits it.
#[derive(Debug)]
pub struct StrataSink {
    warehouse: Warehouse,
    name: String,
    log: TableLog,
    snapshot: Snapshot,
    schema: SchemaRef,
    overwrite: bool,
}

impl DisplayAs for StrataSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StrataSink: table={}", self.name)
    }
}

#[async_trait]
impl DataSink for StrataSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let operation = if self.overwrite {
            "INSERT OVERWRITE"
        } else {
            "INSERT"
        };
        let mut txn = Transaction::new(operation);
        if self.overwrite {
            txn.remove = self.snapshot.files.values().cloned().collect();
        }
        let (rows, _) = write_batches(
            &self.warehouse,
            &self.name,
            &self.log,
            &self.snapshot,
            data,
            txn,
        )
        .await
        .map_err(DataFusionError::from)?;
        Ok(rows)
    }
}

/// Writes a stream of batches into a table and commits them in one transaction.
pub(crate) async fn write_batches(
    warehouse: &Warehouse,
    name: &str,
    log: &TableLog,
    snapshot: &Snapshot,
    mut data: SendableRecordBatchStream,
    mut txn: Transaction,
) -> crate::Result<(u64, Snapshot)> {
    let store = warehouse.object_store();
    let (check, exclusive) =
        crate::constraints::prepare(warehouse, name, log, snapshot, &txn.remove).await?;
    txn.exclusive |= exclusive;
    let mut table_writer =
        TableWriter::new(name, snapshot, warehouse.write_options()).with_check(check);
    let mut added: Vec<DataFile> = Vec::new();
    while let Some(batch) = data.next().await {
        let batch = batch?;
        let (w, result) = run_cpu(move || {
            let mut w = table_writer;
            let r = w.write(batch);
            (w, r)
        })
        .await;
        table_writer = w;
        result?;
        let finished = table_writer.take_finished();
        if !finished.is_empty() {
            added.extend(writer::upload(&store, log.id(), finished).await?);
        }
    }
    let rows = table_writer.rows_written() as u64;
    let (files, created) = run_cpu(move || table_writer.finish()).await?;
    added.extend(writer::upload(&store, log.id(), files).await?);
    txn.add.extend(added);
    txn.add_partitions.extend(created);
    let snapshot = log.commit(snapshot, &txn).await?;
    warehouse.remember(log.id(), &snapshot);
    Ok((rows, snapshot))
}

/// The scan of one table: a DataFusion Parquet scan plus what pruning left of the table.
#[derive(Debug)]
pub struct StrataScanExec {
    table: String,
    input: Arc<dyn ExecutionPlan>,
    figures: ScanFigures,
    /// Dynamic filters from joins and top-k above, applied to the scan's rows
    /// (see [`crate::runtime_filter`]).
    runtime_filters: Vec<Arc<dyn PhysicalExpr>>,
    /// The hash-join filters among them: the scan waits until each is complete before it
    /// opens a file (see [`crate::runtime_filter::AwaitJoinFilters`]).
    awaited: Vec<Arc<dyn PhysicalExpr>>,
    /// Whether the Parquet reader evaluates the awaited filters while decoding (see
    /// [`StrataScanExec::awaiting`]).
    decodes_late: bool,
    metrics: ExecutionPlanMetricsSet,
    /// What the scan executes, chosen at its first execution: the input, or the input with
    /// its Parquet scan served from the scan cache (`true`).
    reader: OnceLock<(Arc<dyn ExecutionPlan>, bool)>,
}

impl StrataScanExec {
    fn new(table: String, input: Arc<dyn ExecutionPlan>, figures: ScanFigures) -> Self {
        let metrics = ExecutionPlanMetricsSet::new();
        let set = |name: &'static str, value: usize| {
            MetricBuilder::new(&metrics).global_counter(name).add(value);
        };
        set("partitions_total", figures.partitions_total);
        set("partitions_scanned", figures.partitions_scanned);
        set("files_total", figures.files_total);
        set("files_scanned", figures.files_scanned);
        set("bytes_scanned", figures.bytes_scanned as usize);
        Self {
            table,
            input,
            figures,
            runtime_filters: Vec::new(),
            awaited: Vec::new(),
            decodes_late: false,
            metrics,
            reader: OnceLock::new(),
        }
    }

    /// What pruning left of the table.
    pub fn figures(&self) -> ScanFigures {
        self.figures
    }

    /// The table scanned.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// This scan, waiting for the dynamic filters in its runtime filters whose expression id is
    /// in `join_filters`; `None` when it holds none of them.
    ///
    /// With `decode_late`, the Parquet reader evaluates the awaited join filters while
    /// decoding (see [`filtering_while_decoding`]): it decodes their key columns first and the
    /// other columns only for the rows that pass, which is most of the work saved when a join
    /// keeps a few rows in a thousand (TPC-H Q17, Q19).
    pub(crate) fn awaiting(&self, join_filters: &HashSet<u64>, decode_late: bool) -> Option<Self> {
        let awaited =
            crate::runtime_filter::dynamic_filters_among(&self.runtime_filters, join_filters);
        if awaited.is_empty() {
            return None;
        }
        let late = decode_late
            .then(|| filtering_while_decoding(&self.input, join_filters))
            .flatten();
        Some(Self {
            table: self.table.clone(),
            decodes_late: late.is_some(),
            input: late.unwrap_or_else(|| Arc::clone(&self.input)),
            figures: self.figures,
            runtime_filters: self.runtime_filters.clone(),
            awaited,
            metrics: self.metrics.clone(),
            reader: OnceLock::new(),
        })
    }

    /// The input with its Parquet scan served from the warehouse's scan cache, when the session
    /// uses the cache and the cache can serve the scan.
    fn cached_reader(&self, context: &TaskContext) -> Option<Arc<dyn ExecutionPlan>> {
        let config = context.session_config();
        let enabled = config
            .options()
            .extensions
            .get::<StrataOptions>()
            .is_none_or(|o| o.scan_cache);
        let cache = config.get_extension::<ScanCache>()?;
        if !enabled || cache.budget() == 0 {
            return None;
        }
        crate::scan_cache::cached_reader(
            cache,
            &self.input,
            &self.runtime_filters,
            self.decodes_late,
            config.batch_size(),
            &self.metrics,
        )
    }

    /// The runtime filters the scan applies to decoded batches: all of them, less the awaited
    /// join filters when the Parquet reader already applied those.
    fn filters_after_decoding(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        if !self.decodes_late {
            return self.runtime_filters.clone();
        }
        let awaited: HashSet<u64> = self
            .awaited
            .iter()
            .filter_map(|f| f.expression_id())
            .collect();
        self.runtime_filters
            .iter()
            .filter(|f| !f.expression_id().is_some_and(|id| awaited.contains(&id)))
            .cloned()
            .collect()
    }
}

/// `input`, a Parquet scan (possibly below the repartition that spreads one file group over
/// the target partitions), made to evaluate the join filters whose expression id is in
/// `join_filters` while decoding (a Parquet `RowFilter`); `None` when it is not a Parquet scan,
/// its predicate holds none of them, or it already filters while decoding
/// (`datafusion.execution.parquet.pushdown_filters`).
///
/// The reader's predicate becomes those join filters as one [`AdaptiveJoinFilter`]: one
/// decoding pass over all their key columns, one mask. The scan's static conjuncts stay with
/// the `FilterExec` above: in the `RowFilter` they would be evaluated twice, and one that keeps
/// most rows (`o_comment NOT LIKE ...` in TPC-H Q13) only fragments the selection. The price is
/// that the reader no longer prunes row groups and pages with them; the scan has already
/// pruned partitions and files with the same conjuncts.
fn filtering_while_decoding(
    input: &Arc<dyn ExecutionPlan>,
    join_filters: &HashSet<u64>,
) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some(repartition) = input.downcast_ref::<RepartitionExec>() {
        let reader = filtering_while_decoding(repartition.input(), join_filters)?;
        return replace_children_if_necessary(Arc::clone(input), vec![reader]).ok();
    }
    let exec = input.downcast_ref::<DataSourceExec>()?;
    let (config, source) = exec.downcast_to_file_source::<ParquetSource>()?;
    if source.table_parquet_options().global.pushdown_filters {
        // The session has the reader apply its whole predicate and the plan above relies on
        // it for the static conjuncts. (Such a reader also takes the join filters, so the scan
        // awaits none today; this keeps a change there from dropping rows.)
        return None;
    }
    let predicate = source.filter()?;
    let awaited = split_conjunction(&predicate)
        .into_iter()
        .filter(|conjunct| {
            !crate::runtime_filter::dynamic_filters_among(&[Arc::clone(conjunct)], join_filters)
                .is_empty()
        })
        .cloned()
        .collect::<Vec<_>>();
    if awaited.is_empty() {
        return None;
    }
    let predicate = Arc::new(AdaptiveJoinFilter::new(awaited));
    let source = source.with_predicate(predicate).with_pushdown_filters(true);
    let config = FileScanConfigBuilder::from(config.clone())
        .with_source(Arc::new(source))
        .build();
    Some(DataSourceExec::from_data_source(config))
}

impl DisplayAs for StrataScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.figures;
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "StrataScanExec: table={}, partitions={}/{}, files={}/{}, bytes={}/{}",
                    self.table,
                    s.partitions_scanned,
                    s.partitions_total,
                    s.files_scanned,
                    s.files_total,
                    s.bytes_scanned,
                    s.bytes_total
                )?;
                if !self.runtime_filters.is_empty() {
                    write!(f, ", runtime_filters={}", self.runtime_filters.len())?;
                }
                if !self.awaited.is_empty() {
                    write!(f, ", awaits_joins={}", self.awaited.len())?;
                }
                if self.decodes_late {
                    write!(f, ", filters_while_decoding")?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => write!(
                f,
                "table={}\npartitions={}/{}\nfiles={}/{}",
                self.table,
                s.partitions_scanned,
                s.partitions_total,
                s.files_scanned,
                s.files_total
            ),
        }
    }
}

impl ExecutionPlan for StrataScanExec {
    fn name(&self) -> &str {
        "StrataScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// The runtime filters: a hash join computes its dynamic filter only when it finds the
    /// filter among the expressions of its probe side, and the Parquet source keeps only the
    /// filters it can evaluate (not those on the file and row-number columns of DML scans).
    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for filter in &self.runtime_filters {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        Ok(Arc::new(Self {
            table: self.table.clone(),
            input,
            figures: self.figures,
            runtime_filters: self.runtime_filters.clone(),
            awaited: self.awaited.clone(),
            decodes_late: self.decodes_late,
            metrics: self.metrics.clone(),
            reader: OnceLock::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batch_size = context.session_config().batch_size();
        let (input, cached) = self
            .reader
            .get_or_init(|| match self.cached_reader(&context) {
                Some(reader) => (reader, true),
                None => (Arc::clone(&self.input), false),
            })
            .clone();
        // A cached scan reads whole files: the scan applies all its runtime filters.
        let filters = match cached {
            true => self.runtime_filters.clone(),
            false => self.filters_after_decoding(),
        };
        let open = move || input.execute(partition, context);
        let stream = if self.awaited.is_empty() {
            open()?
        } else {
            let wait = MetricBuilder::new(&self.metrics).subset_time("join_filter_wait", partition);
            crate::runtime_filter::after_filters_complete(
                &self.awaited,
                self.input.schema(),
                open,
                wait,
            )
        };
        if filters.is_empty() {
            return Ok(stream);
        }
        let metrics = RuntimeFilterMetrics {
            rows_pruned: MetricBuilder::new(&self.metrics)
                .counter("runtime_filter_pruned_rows", partition),
            time: MetricBuilder::new(&self.metrics).subset_time("runtime_filter_time", partition),
        };
        Ok(Box::pin(RuntimeFilterStream::new(
            stream, &filters, batch_size, metrics,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    /// The scan's statistics are its Parquet source's: without asking for them, DataFusion
    /// sees an unknown table size and cannot put the small dimension on a join's build side.
    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        match input_stats.first() {
            Some(s) => Ok(Arc::clone(s)),
            None => Ok(Arc::new(Statistics::new_unknown(&self.input.schema()))),
        }
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> DfResult<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    /// Dynamic filters (pushed after planning, from hash joins and top-k sorts) that the Parquet
    /// reader only uses to skip row groups become this scan's runtime filters: they are applied
    /// to every decoded batch. Static filters stay with the `FilterExec` above.
    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> DfResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        if phase != FilterPushdownPhase::Post {
            return Ok(FilterPushdownPropagation::if_all(child_pushdown_result));
        }
        // A dynamic filter the Parquet reader only prunes with is applied here, so it is
        // pushed down as far as the nodes above are concerned.
        let mut runtime: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        let pushed: Vec<PushedDown> = child_pushdown_result
            .parent_filters
            .iter()
            .map(|r| match r.all() {
                PushedDown::No if snapshot_generation(&r.filter) != 0 => {
                    runtime.push(Arc::clone(&r.filter));
                    PushedDown::Yes
                }
                pushed => pushed,
            })
            .collect();
        if runtime.is_empty() {
            return Ok(FilterPushdownPropagation::if_all(child_pushdown_result));
        }
        let node = Self {
            table: self.table.clone(),
            input: Arc::clone(&self.input),
            figures: self.figures,
            runtime_filters: runtime,
            awaited: Vec::new(),
            decodes_late: false,
            metrics: self.metrics.clone(),
            reader: OnceLock::new(),
        };
        Ok(
            FilterPushdownPropagation::with_parent_pushdown_result(pushed)
                .with_updated_node(Arc::new(node)),
        )
    }
}

/// Sums the scan figures of every Strata scan in a plan.
pub fn scan_figures(plan: &Arc<dyn ExecutionPlan>) -> ScanFigures {
    let mut total = ScanFigures::default();
    fn walk(plan: &Arc<dyn ExecutionPlan>, total: &mut ScanFigures) {
        if let Some(scan) = (plan.as_ref() as &dyn Any).downcast_ref::<StrataScanExec>() {
            let f = scan.figures();
            total.partitions_total += f.partitions_total;
            total.partitions_scanned += f.partitions_scanned;
            total.files_total += f.files_total;
            total.files_scanned += f.files_scanned;
            total.bytes_total += f.bytes_total;
            total.bytes_scanned += f.bytes_scanned;
        }
        for child in plan.children() {
            walk(child, total);
        }
    }
    walk(plan, &mut total);
    total
}

#[cfg(test)]
mod tests {
    use crate::Warehouse;

    /// A second query reads each data file's footer from the runtime's metadata cache instead
    /// of fetching and decoding it again.
    #[tokio::test]
    async fn hot_queries_take_footers_from_the_metadata_cache() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                // Footers are what the Parquet reader reads: no scan cache.
                "SET strata.scan_cache = false;
                 CREATE TABLE t (k INT, v BIGINT);
                 INSERT INTO t SELECT CAST(value % 10 AS INT), value FROM generate_series(1, 1000);
                 INSERT INTO t SELECT CAST(value % 10 AS INT), value FROM generate_series(1001, 2000)",
            )
            .await
            .expect("setup");
        let cache = warehouse.runtime().cache_manager.get_file_metadata_cache();
        let hits = || -> Vec<usize> {
            let mut hits: Vec<usize> = cache.list_entries().values().map(|e| e.hits).collect();
            hits.sort();
            hits
        };
        assert!(hits().is_empty());
        let sql = "SELECT sum(v) FROM t WHERE k = 3";
        session.sql(sql).await.expect("cold query");
        let cold = hits();
        assert_eq!(cold.len(), 2, "one entry per data file: {cold:?}");
        session.sql(sql).await.expect("hot query");
        let hot = hits();
        assert_eq!(hot.len(), 2, "{hot:?}");
        assert!(
            hot.iter().zip(&cold).all(|(h, c)| h > c),
            "the hot query hits both: {cold:?} then {hot:?}"
        );
    }
}
