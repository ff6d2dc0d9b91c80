//! `StrataScanExec`: the execution plan of one table scan, on top of DataFusion's Parquet scan.
//!
//! It reports what pruning left of the table (`EXPLAIN ANALYZE`, the query log), passes
//! statistics through, applies dynamic filters from joins and top-k to the decoded rows
//! ([`super::runtime_filter`]), waits for the hash-join filters it holds before it opens a
//! file, and serves hot files from the scan cache ([`super::cached_scan`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use datafusion::common::Statistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::split_conjunction;
use datafusion::physical_expr_common::physical_expr::snapshot_generation;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
    PushedDown,
};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use roaring::RoaringBitmap;
use strata_storage::{DataFile, TableMetadata};

use crate::config::StrataOptions;
use crate::scan_cache::ScanCache;
use crate::table::join_keys::JoinKeySets;
use crate::table::runtime_filter::{AdaptiveJoinFilter, RuntimeFilterMetrics, RuntimeFilterStream};

/// How much a scan read compared with the whole table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanFigures {
    /// Partitions of the tables scanned.
    pub partitions_total: usize,
    /// Partitions left after pruning.
    pub partitions_scanned: usize,
    /// Data files of the tables scanned.
    pub files_total: usize,
    /// Data files left after pruning.
    pub files_scanned: usize,
    /// Bytes of all data files.
    pub bytes_total: u64,
    /// Bytes of the files left after pruning.
    pub bytes_scanned: u64,
    /// Rows of all data files.
    pub rows_total: u64,
    /// Rows of the files left after pruning.
    pub rows_scanned: u64,
}

impl ScanFigures {
    /// The figures of two scans together.
    pub(crate) fn plus(&self, other: &Self) -> Self {
        Self {
            partitions_total: self.partitions_total.saturating_add(other.partitions_total),
            partitions_scanned: self
                .partitions_scanned
                .saturating_add(other.partitions_scanned),
            files_total: self.files_total.saturating_add(other.files_total),
            files_scanned: self.files_scanned.saturating_add(other.files_scanned),
            bytes_total: self.bytes_total.saturating_add(other.bytes_total),
            bytes_scanned: self.bytes_scanned.saturating_add(other.bytes_scanned),
            rows_total: self.rows_total.saturating_add(other.rows_total),
            rows_scanned: self.rows_scanned.saturating_add(other.rows_scanned),
        }
    }

    pub(crate) fn of(partitions_total: usize, all: &[&DataFile], kept: &[&DataFile]) -> Self {
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
            rows_total: all.iter().map(|f| f.rows).sum(),
            rows_scanned: kept.iter().map(|f| f.rows).sum(),
        }
    }
}

/// What a table scan reads, in a form that can leave the process: kept by each
/// [`StrataScanExec`] the table provider plans (see [`crate::table::remote`]) (not by the scans of `UPDATE`, `DELETE` and
/// `MERGE`, which stay on the coordinator).
#[derive(Debug)]
pub(crate) struct ScanSpec {
    /// The warehouse's location URL.
    pub(crate) warehouse: String,
    pub(crate) metadata: Arc<TableMetadata>,
    /// The snapshot version read, for `EXPLAIN` and messages.
    pub(crate) version: u64,
    /// The files the scan reads with their rows and deleted rows, by the partition this
    /// process planned (executors look files up by path: their tasks are grouped anew).
    pub(crate) groups: Vec<Vec<ScanFile>>,
    pub(crate) projection: Option<Vec<usize>>,
    pub(crate) limit: Option<usize>,
}

impl ScanSpec {
    /// The scan's files by path.
    pub(crate) fn files_by_path(&self) -> HashMap<&str, &ScanFile> {
        self.groups
            .iter()
            .flatten()
            .map(|f| (f.path.as_str(), f))
            .collect()
    }
}

/// One data file of a [`ScanSpec`].
#[derive(Debug, Clone)]
pub(crate) struct ScanFile {
    /// Its path under the warehouse root.
    pub(crate) path: String,
    /// The name of the partition that holds it, for the figures of a scan pruned again before
    /// it leaves (see [`crate::table::remote::for_cluster`]).
    pub(crate) partition: String,
    pub(crate) size: u64,
    pub(crate) rows: u64,
    /// The rows its deletion vector deletes.
    pub(crate) deleted: Option<Arc<RoaringBitmap>>,
}

/// The scan of one table: a DataFusion Parquet scan plus what pruning left of the table.
#[derive(Debug)]
pub(crate) struct StrataScanExec {
    table: String,
    /// The field id of each table column, by name: what the scan cache keys columns by.
    field_ids: Arc<HashMap<String, u32>>,
    input: Arc<dyn ExecutionPlan>,
    figures: ScanFigures,
    /// Dynamic filters from joins and top-k above, applied to the scan's rows
    /// (see [`crate::runtime_filter`]).
    runtime_filters: Vec<Arc<dyn PhysicalExpr>>,
    /// The hash-join filters among them: the scan waits until each is complete before it
    /// opens a file (see [`crate::table::runtime_filter::AwaitJoinFilters`]).
    awaited: Vec<Arc<dyn PhysicalExpr>>,
    /// Whether the Parquet reader evaluates the awaited filters while decoding (see
    /// [`StrataScanExec::awaiting`]).
    decodes_late: bool,
    /// The bloom filters of the awaited joins' build keys, tested before their filters.
    key_sets: Arc<JoinKeySets>,
    metrics: ExecutionPlanMetricsSet,
    /// The index a lookup of this scan uses (an equality on a bloom-filtered column, or a
    /// condition on the leading sort-key column): the scan then reads through the Parquet
    /// reader, whose row-group and page pruning reads a sliver of each file, rather than fill
    /// the scan cache with whole columns.
    index: Option<String>,
    /// What the scan executes, chosen at its first execution: the input, or the input with
    /// its Parquet scan served from the scan cache.
    reader: OnceLock<(Arc<dyn ExecutionPlan>, Reader)>,
    /// What the scan reads, in the form that travels to a cluster's executors (see
    /// [`crate::table::remote`]); `None` for the scans of DML statements.
    remote: Option<Arc<ScanSpec>>,
    /// The fraction of rows the scan's static filters kept in a sample of its data, when
    /// DataFusion cannot estimate it from statistics (see [`crate::table::selectivity`]).
    sampled_selectivity: Option<f64>,
}

impl StrataScanExec {
    /// The qualified name of the table scanned.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    pub(crate) fn new(
        table: String,
        field_ids: Arc<HashMap<String, u32>>,
        input: Arc<dyn ExecutionPlan>,
        figures: ScanFigures,
    ) -> Self {
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
            field_ids,
            input,
            figures,
            runtime_filters: Vec::new(),
            awaited: Vec::new(),
            decodes_late: false,
            key_sets: Arc::default(),
            metrics,
            index: None,
            reader: OnceLock::new(),
            remote: None,
            sampled_selectivity: None,
        }
    }

    /// This scan, able to run on a cluster's executors as `spec`.
    pub(crate) fn with_remote(mut self, spec: Option<ScanSpec>) -> Self {
        self.remote = spec.map(Arc::new);
        self
    }

    /// This scan, whose static filters kept `selectivity` of a sample's rows.
    pub(crate) fn with_sampled_selectivity(mut self, selectivity: Option<f64>) -> Self {
        self.sampled_selectivity = selectivity;
        self
    }

    /// The fraction of rows the filters above this scan kept in a sample of its data; `None`
    /// when not sampled (DataFusion estimates them, or the table is small).
    pub(crate) fn sampled_selectivity(&self) -> Option<f64> {
        self.sampled_selectivity
    }

    /// What the scan reads, as executors of a cluster read it.
    pub(crate) fn remote(&self) -> Option<&Arc<ScanSpec>> {
        self.remote.as_ref()
    }

    /// This scan as a lookup through `index` (see [`StrataScanExec::index`]).
    pub(crate) fn with_index(mut self, index: Option<String>) -> Self {
        self.index = index;
        self
    }

    /// What pruning left of the table.
    pub(crate) fn figures(&self) -> ScanFigures {
        self.figures
    }

    /// The dynamic filters of the joins whose expression id is in `ids`, as this scan's
    /// Parquet reader holds them: over the table's columns.
    pub(crate) fn reader_join_filters(&self, ids: &HashSet<u64>) -> Vec<Arc<dyn PhysicalExpr>> {
        match parquet_source(&self.input).and_then(|(_, source)| source.filter()) {
            Some(predicate) => {
                crate::table::runtime_filter::dynamic_filters_among(&[predicate], ids)
            }
            None => Vec::new(),
        }
    }

    /// The expression ids of the dynamic filters among its runtime filters that are in `ids`.
    pub(crate) fn held_join_filters(&self, ids: &HashSet<u64>) -> Vec<u64> {
        crate::table::runtime_filter::dynamic_filters_among(&self.runtime_filters, ids)
            .iter()
            .filter_map(|f| f.expression_id())
            .collect()
    }

    /// The expression ids of the join filters this scan waits for before it reads.
    pub(crate) fn awaited_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.awaited.iter().filter_map(|f| f.expression_id())
    }

    /// This scan, waiting for the dynamic filters in its runtime filters whose expression id is
    /// in `join_filters`; `None` when it holds none of them.
    ///
    /// With `decode_late`, the Parquet reader evaluates the awaited join filters while
    /// decoding (see [`filtering_while_decoding`]): it decodes their key columns first and the
    /// other columns only for the rows that pass, which is most of the work saved when a join
    /// keeps a few rows in a thousand (TPC-H Q17, Q19).
    ///
    /// Each join filter is evaluated after the bloom filter of its join's build keys, when
    /// `key_sets` holds one (see [`crate::table::join_keys`]).
    pub(crate) fn awaiting(
        &self,
        join_filters: &HashSet<u64>,
        key_sets: &Arc<JoinKeySets>,
        decode_late: bool,
    ) -> Option<Self> {
        let awaited = crate::table::runtime_filter::dynamic_filters_among(
            &self.runtime_filters,
            join_filters,
        );
        if awaited.is_empty() {
            return None;
        }
        let late = decode_late
            .then(|| filtering_while_decoding(&self.input, join_filters, key_sets))
            .flatten();
        Some(Self {
            table: self.table.clone(),
            field_ids: Arc::clone(&self.field_ids),
            decodes_late: late.is_some(),
            key_sets: Arc::clone(key_sets),
            input: late.unwrap_or_else(|| Arc::clone(&self.input)),
            figures: self.figures,
            runtime_filters: self.runtime_filters.clone(),
            awaited,
            metrics: self.metrics.clone(),
            index: self.index.clone(),
            reader: OnceLock::new(),
            remote: self.remote.clone(),
            sampled_selectivity: self.sampled_selectivity,
        })
    }

    /// The input with its Parquet scan served from the warehouse's scan cache, when the session
    /// uses the cache and the cache can serve the scan.
    fn cached_reader(&self, context: &TaskContext) -> Option<(Arc<dyn ExecutionPlan>, Reader)> {
        let config = context.session_config();
        let enabled = config
            .options()
            .extensions
            .get::<StrataOptions>()
            .is_none_or(|o| o.scan_cache);
        let cache = config.get_extension::<ScanCache>()?;
        if !enabled || cache.budget() == 0 || self.index.is_some() {
            return None;
        }
        let (reader, filters) = crate::table::cached_scan::cached_reader(
            cache,
            &self.input,
            &self.field_ids,
            &self.runtime_filters,
            self.decodes_late.then_some(self.key_sets.as_ref()),
            config.batch_size(),
            &self.metrics,
        )?;
        Some((
            reader,
            match filters {
                true => Reader::CachedFiltering,
                false => Reader::Cached,
            },
        ))
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

/// How a table scan reads, and so which of its runtime filters are left to apply to the
/// batches it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// The planned Parquet scan: the filters it did not apply while decoding.
    Planned,
    /// The scan cache, whole files: all of them.
    Cached,
    /// The scan cache, applying all of them itself as it serves rows.
    CachedFiltering,
}

/// The Parquet scan of a table scan's input (possibly below the repartition that spreads one
/// file group over the target partitions).
pub(crate) fn parquet_source(
    input: &Arc<dyn ExecutionPlan>,
) -> Option<(
    &datafusion::datasource::physical_plan::FileScanConfig,
    &ParquetSource,
)> {
    if let Some(repartition) = input.downcast_ref::<RepartitionExec>() {
        return parquet_source(repartition.input());
    }
    input
        .downcast_ref::<DataSourceExec>()?
        .downcast_to_file_source::<ParquetSource>()
}

/// `input`, a Parquet scan (possibly below the repartition that spreads one file group over
/// the target partitions), made to evaluate the join filters whose expression id is in
/// `join_filters` while decoding (a Parquet `RowFilter`); `None` when it is not a Parquet scan,
/// its predicate holds none of them, or it already filters while decoding
/// (`datafusion.execution.parquet.pushdown_filters`).
///
/// The reader's predicate becomes those join filters as one [`AdaptiveJoinFilter`], each after
/// its join's bloom filter in `key_sets`: one decoding pass over all their key columns, one
/// mask. The scan's static conjuncts stay with
/// the `FilterExec` above: in the `RowFilter` they would be evaluated twice, and one that keeps
/// most rows (`o_comment NOT LIKE ...` in TPC-H Q13) only fragments the selection. The price is
/// that the reader no longer prunes row groups and pages with them; the scan has already
/// pruned partitions and files with the same conjuncts.
fn filtering_while_decoding(
    input: &Arc<dyn ExecutionPlan>,
    join_filters: &HashSet<u64>,
    key_sets: &JoinKeySets,
) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some(repartition) = input.downcast_ref::<RepartitionExec>() {
        let reader = filtering_while_decoding(repartition.input(), join_filters, key_sets)?;
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
            !crate::table::runtime_filter::dynamic_filters_among(
                &[Arc::clone(conjunct)],
                join_filters,
            )
            .is_empty()
        })
        .cloned()
        .collect::<Vec<_>>();
    if awaited.is_empty() {
        return None;
    }
    let predicate = Arc::new(AdaptiveJoinFilter::new(awaited).with_key_sets(key_sets));
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
                if let Some(index) = &self.index {
                    write!(f, ", index={index}")?;
                }
                if let Some(selectivity) = self.sampled_selectivity {
                    write!(f, ", sampled_selectivity={selectivity:.3}")?;
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
            field_ids: Arc::clone(&self.field_ids),
            input,
            figures: self.figures,
            runtime_filters: self.runtime_filters.clone(),
            awaited: self.awaited.clone(),
            decodes_late: self.decodes_late,
            key_sets: Arc::clone(&self.key_sets),
            metrics: self.metrics.clone(),
            index: self.index.clone(),
            reader: OnceLock::new(),
            remote: self.remote.clone(),
            sampled_selectivity: self.sampled_selectivity,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batch_size = context.session_config().batch_size();
        let (input, reader) = self
            .reader
            .get_or_init(|| {
                self.cached_reader(&context)
                    .unwrap_or_else(|| (Arc::clone(&self.input), Reader::Planned))
            })
            .clone();
        let filters = match reader {
            Reader::Planned => self.filters_after_decoding(),
            Reader::Cached => self.runtime_filters.clone(),
            Reader::CachedFiltering => Vec::new(),
        };
        let open = move || input.execute(partition, context);
        let stream = if self.awaited.is_empty() {
            open()?
        } else {
            let wait = MetricBuilder::new(&self.metrics).subset_time("join_filter_wait", partition);
            crate::table::runtime_filter::after_filters_complete(
                &self.awaited,
                self.input.schema(),
                open,
                wait,
            )
        };
        // The stream coalesces what a filtering cached scan leaves, too.
        if filters.is_empty()
            && (reader != Reader::CachedFiltering || self.runtime_filters.is_empty())
        {
            return Ok(stream);
        }
        let metrics = RuntimeFilterMetrics::new(&self.metrics, partition);
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
            field_ids: Arc::clone(&self.field_ids),
            input: Arc::clone(&self.input),
            figures: self.figures,
            runtime_filters: runtime,
            awaited: Vec::new(),
            decodes_late: false,
            key_sets: Arc::default(),
            metrics: self.metrics.clone(),
            index: self.index.clone(),
            reader: OnceLock::new(),
            remote: self.remote.clone(),
            sampled_selectivity: self.sampled_selectivity,
        };
        Ok(
            FilterPushdownPropagation::with_parent_pushdown_result(pushed)
                .with_updated_node(Arc::new(node)),
        )
    }
}
