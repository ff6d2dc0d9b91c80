//! Table scans on a Ballista cluster: the form a [`StrataScanExec`] travels in to executors.
//!
//! A query on a cluster is planned here, on the coordinator, with the catalog, partition and file
//! pruning and the MV rewrite; Ballista's scheduler then splits the physical plan into stages
//! at its shuffles and runs their tasks on executors. Before the plan leaves, [`for_cluster`]
//! turns every table scan into a [`RemoteScanExec`] over DataFusion's own Parquet scan of the
//! files pruning kept, its files packed into one group per task (`strata.cluster_task_bytes`).
//! The scheduler hands each task its groups of that child (it knows how for DataFusion's scan);
//! the node adds what an executor needs to read the same rows, and nothing it could not use:
//!
//! - the warehouse location (a URL, never credentials: executors open the store with their own
//!   environment, e.g. `AWS_*`, or the named secret they were started with);
//! - the table's metadata at the snapshot read (its columns and their field ids, so that files
//!   written under older schemas read as they do here) and the snapshot version;
//! - the rows each file's deletion vector deletes;
//! - the projection, the limit, and the reader's predicate for row-group and page pruning.
//!
//! [`StrataCodec`] writes the node as `strata.ScanNode` (`proto/strata.proto`; the Rust form
//! below is written with prost's derive, so no build needs `protoc`) and hands every other node,
//! the child scan included, to Ballista's and DataFusion's codecs. Runtime filters from joins
//! stay behind (a join and the scan it would filter may run in different processes), except
//! those the coordinator filled first ([`crate::cluster::join_filters`]): they become part of
//! the scan's predicate, and the files they rule out are dropped before the plan leaves.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::datatypes::SchemaRef;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::Statistics;
use datafusion::common::pruning::PrunableStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, FileSource, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::utils::{conjunction, conjunction_opt, split_conjunction};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_expr_common::physical_expr::{
    snapshot_generation, snapshot_physical_expr,
};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalExprNode;
use object_store::ObjectStore;
use prost::Message;
use roaring::RoaringBitmap;
use strata_storage::TableMetadata;

use crate::table::files::{ParquetScan, read_schema, without_deleted};
use crate::table::join_keys::CollectJoinKeysExec;
use crate::table::scan::{ScanFigures, ScanFile, ScanSpec, StrataScanExec};

/// `plan` with each table scan replaced by a [`RemoteScanExec`], ready for the cluster; an
/// error names the first node that cannot leave this process (a system table, a row-id scan of
/// a DML statement, an in-memory table).
/// Each scan's files are packed into tasks of about `task_bytes`. The dynamic filters of the
/// joins in `evaluated` were filled here (see [`crate::cluster::join_filters`]): they join
/// the scans' static predicates, and the files their statistics rule out are dropped.
pub(crate) fn for_cluster(
    plan: Arc<dyn ExecutionPlan>,
    task_bytes: usize,
    evaluated: &HashSet<u64>,
) -> Result<Arc<dyn ExecutionPlan>, String> {
    let rewritten = plan.transform_down(|node| {
        let Some(scan) = node.downcast_ref::<StrataScanExec>() else {
            if node.children().is_empty() && !travels(&node) {
                return Err(DataFusionError::Plan(format!(
                    "the plan reads {}, which only this process holds (a system table, a \
                     VALUES list, a table function)",
                    node.name()
                )));
            }
            return Ok(Transformed::no(node));
        };
        let Some(spec) = scan.remote() else {
            return Err(DataFusionError::Plan(format!(
                "the scan of {} marks rows for a DML statement",
                scan.table()
            )));
        };
        let join_keys = scan
            .reader_join_filters(evaluated)
            .into_iter()
            .map(snapshot_physical_expr)
            .collect::<DfResult<Vec<_>>>()?;
        let files = portable_files(node.children()[0], task_bytes, &join_keys)?;
        let (spec, figures) = match &files.kept {
            Some(kept) => kept_only(spec, scan.figures(), kept),
            None => (Arc::clone(spec), scan.figures()),
        };
        let remote = RemoteScanExec {
            table: scan.table().to_string(),
            predicate: files.predicate,
            figures,
            properties: projected(&files.scan, &spec)?,
            spec,
            input: files.scan,
            store: StoreSettings::default(),
            built: BuiltReader::default(),
        };
        Ok(Transformed::new(
            Arc::new(remote) as Arc<dyn ExecutionPlan>,
            true,
            TreeNodeRecursion::Jump,
        ))
    });
    let rewritten = rewritten.and_then(|t| {
        t.data.transform_up(|node| {
            if let Some(repartition) = node.downcast_ref::<RepartitionExec>()
                && matches!(repartition.partitioning(), Partitioning::RoundRobinBatch(_))
            {
                // Executors run one partition per task: spreading batches round-robin
                // only adds a shuffle (Ballista plans none of its own).
                return Ok(Transformed::yes(Arc::clone(repartition.input())));
            }
            if let Some(collect) = node.downcast_ref::<CollectJoinKeysExec>() {
                // Its bloom filter serves scans of this process only.
                return Ok(Transformed::yes(Arc::clone(collect.input())));
            }
            if node.downcast_ref::<HashJoinExec>().is_some() {
                // A join's dynamic filter feeds scans of its own process only; without it
                // the scheduler may swap the join's inputs (to broadcast the smaller side).
                return Ok(Transformed::yes(node.reset_state()?));
            }
            Ok(Transformed::no(node))
        })
    });
    rewritten.map(|t| t.data).map_err(|e| match e {
        DataFusionError::Plan(reason) => reason,
        other => other.to_string(),
    })
}

/// Whether a leaf other than a table scan can be sent as it is: the leaves datafusion-proto
/// writes that read nothing of this process.
fn travels(leaf: &Arc<dyn ExecutionPlan>) -> bool {
    matches!(leaf.name(), "EmptyExec" | "PlaceholderRowExec")
}

/// The Parquet scan below a table scan (`input`, possibly under a repartition) as it travels:
/// DataFusion's own scan of the same files, packed into one group per task ([`tasks`]), which
/// Ballista's scheduler knows how to hand out by task, and datafusion-proto how to write. What
/// it cannot carry (the field-id adapter, deletion vectors, the cached reader)
/// [`RemoteScanExec`] adds back on the executor. Its predicate keeps the conjuncts fixed at
/// planning, plus `join_keys`, the join filters evaluated here; other dynamic filters from
/// joins and top-k are filled in by operators that may run in another process. Files whose
/// statistics `join_keys` rule out are dropped.
fn portable_files(
    input: &Arc<dyn ExecutionPlan>,
    task_bytes: usize,
    join_keys: &[Arc<dyn PhysicalExpr>],
) -> DfResult<PortableFiles> {
    let (config, source) = crate::table::scan::parquet_source(input)
        .ok_or_else(|| DataFusionError::Plan("the scan does not read Parquet files".to_string()))?;
    let mut fixed: Vec<Arc<dyn PhysicalExpr>> = source
        .filter()
        .map(|predicate| {
            split_conjunction(&predicate)
                .into_iter()
                .filter(|c| snapshot_generation(c) == 0)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    fixed.extend(join_keys.iter().cloned());
    let table_schema = Arc::clone(source.table_schema().table_schema());
    let (groups, kept) = match conjunction_opt(join_keys.to_vec()) {
        Some(keys) => {
            let (groups, kept) = pruned(&config.file_groups, keys, &table_schema);
            (groups, Some(kept))
        }
        None => (config.file_groups.clone(), None),
    };
    let portable = ParquetSource::new(source.table_schema().clone())
        .with_table_parquet_options(source.table_parquet_options().clone());
    // Only the file groups travel: datafusion-proto 55 reads a projected Parquet scan back
    // with the table's columns (RemoteScanExec projects on the executor), and so its
    // statistics; the store is the executor's own (any registered URL decodes).
    let unknown = Statistics::new_unknown(&table_schema);
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(portable))
        .with_file_groups(tasks(
            &groups,
            task_bytes_for(&config.file_groups, task_bytes),
        ))
        .with_limit(config.limit)
        .with_statistics(unknown)
        .build();
    Ok(PortableFiles {
        scan: DataSourceExec::from_data_source(config),
        predicate: (!fixed.is_empty()).then(|| conjunction(fixed)),
        kept,
    })
}

/// `groups` without the files whose statistics (the table's, from its log) show that no row
/// passes `predicate`, and the paths of the files kept. A predicate pruning cannot use keeps
/// every file.
fn pruned(
    groups: &[FileGroup],
    predicate: Arc<dyn PhysicalExpr>,
    schema: &SchemaRef,
) -> (Vec<FileGroup>, HashSet<String>) {
    let files: Vec<&PartitionedFile> = groups.iter().flat_map(|g| g.files()).collect();
    let statistics = files
        .iter()
        .map(|f| {
            f.statistics
                .clone()
                .unwrap_or_else(|| Arc::new(Statistics::new_unknown(schema)))
        })
        .collect();
    let keep = PruningPredicateBuilder::new()
        .with_file_schema(Arc::clone(schema))
        .try_build(predicate)
        .and_then(|p| p.prune(&PrunableStatistics::new(statistics, Arc::clone(schema))))
        .unwrap_or_else(|_| vec![true; files.len()]);
    let kept: HashSet<String> = files
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(f, _)| f.object_meta.location.to_string())
        .collect();
    let groups = groups
        .iter()
        .map(|g| {
            let files = g
                .files()
                .iter()
                .filter(|f| kept.contains(f.object_meta.location.as_ref()))
                .cloned()
                .collect();
            FileGroup::new(files)
        })
        .collect();
    (groups, kept)
}

/// `spec` and `figures` with only the files in `kept`.
fn kept_only(
    spec: &ScanSpec,
    figures: ScanFigures,
    kept: &HashSet<String>,
) -> (Arc<ScanSpec>, ScanFigures) {
    let groups: Vec<Vec<ScanFile>> = spec
        .groups
        .iter()
        .map(|g| {
            g.iter()
                .filter(|f| kept.contains(&f.path))
                .cloned()
                .collect()
        })
        .filter(|g: &Vec<ScanFile>| !g.is_empty())
        .collect();
    let files: Vec<&ScanFile> = groups.iter().flatten().collect();
    let figures = ScanFigures {
        partitions_scanned: files
            .iter()
            .map(|f| f.partition.as_str())
            .collect::<HashSet<_>>()
            .len(),
        files_scanned: files.len(),
        bytes_scanned: files.iter().map(|f| f.size).sum(),
        rows_scanned: files.iter().map(|f| f.rows).sum(),
        ..figures
    };
    let spec = ScanSpec {
        warehouse: spec.warehouse.clone(),
        metadata: Arc::clone(&spec.metadata),
        version: spec.version,
        groups,
        projection: spec.projection.clone(),
        limit: spec.limit,
    };
    (Arc::new(spec), figures)
}

/// The task size for regrouping `groups`: a scan planned as one partition stays one task, since
/// the operators above it were planned for a single partition (a `Single` aggregate, a sort, a
/// limit) and would run once per task.
fn task_bytes_for(groups: &[FileGroup], task_bytes: usize) -> usize {
    if groups.len() <= 1 {
        usize::MAX
    } else {
        task_bytes
    }
}

/// The file groups of a scan regrouped for a cluster: each group is one task, so the groups
/// this process planned for its own cores would cap a scan at that many executors' slots.
/// Files (and the byte ranges DataFusion cut large files into) are packed in order into groups
/// of about `task_bytes`; a file or range larger than that is a task of its own.
fn tasks(groups: &[FileGroup], task_bytes: usize) -> Vec<FileGroup> {
    let task_bytes = u64::try_from(task_bytes.max(1)).unwrap_or(u64::MAX);
    let mut tasks = Vec::new();
    let (mut current, mut bytes) = (Vec::new(), 0u64);
    for file in groups.iter().flat_map(|g| g.files()) {
        let size = file.range.as_ref().map_or(file.object_meta.size, |r| {
            u64::try_from(r.end.saturating_sub(r.start)).unwrap_or(0)
        });
        if !current.is_empty() && bytes.saturating_add(size) > task_bytes {
            tasks.push(FileGroup::new(std::mem::take(&mut current)));
            bytes = 0;
        }
        current.push(file.clone());
        bytes = bytes.saturating_add(size);
    }
    if !current.is_empty() || tasks.is_empty() {
        // A scan that pruning left without files is one empty task: a plan needs a partition.
        tasks.push(FileGroup::new(current));
    }
    tasks
}

/// The properties of a scan of `files` (all the table's columns) projected as `spec` says.
fn projected(files: &Arc<dyn ExecutionPlan>, spec: &ScanSpec) -> DfResult<Arc<PlanProperties>> {
    let schema = read_schema(&spec.metadata);
    let schema = match &spec.projection {
        Some(columns) => Arc::new(schema.project(columns)?),
        None => schema,
    };
    Ok(Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        files.properties().output_partitioning().clone(),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )))
}

/// [`portable_files`]: the scan, and the predicate it travels without (datafusion-proto reads
/// a pushed-down predicate back against the projected columns; [`ScanNode`] carries it
/// against the table's).
struct PortableFiles {
    scan: Arc<dyn ExecutionPlan>,
    predicate: Option<Arc<dyn PhysicalExpr>>,
    /// The paths of the files kept, when join filters pruned them.
    kept: Option<HashSet<String>>,
}

/// A table scan on a cluster's executor: DataFusion's scan of the files of its task (its
/// input, as the scheduler cut it), read with the table's field ids and deletion vectors, the
/// executor's own object store and runtime.
#[derive(Debug)]
pub(crate) struct RemoteScanExec {
    table: String,
    spec: Arc<ScanSpec>,
    /// The reader's predicate, for row-group and page pruning.
    predicate: Option<Arc<dyn PhysicalExpr>>,
    figures: ScanFigures,
    /// DataFusion's scan of the files (see [`portable_files`]).
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    /// How this process reaches the warehouse's store (an executor's named secret).
    store: StoreSettings,
    /// The reader of this task's files, built on first use; its metrics are the scan's (bytes
    /// read, row groups pruned), which the scheduler sums per stage.
    built: BuiltReader,
}

/// A scan's reader once built. `Debug` says only whether it is: the reader holds the store,
/// whose `Debug` would show an access key id.
#[derive(Default)]
struct BuiltReader(OnceLock<Arc<DataSourceExec>>);

impl fmt::Debug for BuiltReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuiltReader(built: {})", self.0.get().is_some())
    }
}

/// The S3 settings an executor opens warehouses with, over its `AWS_*` environment: the keys
/// of the named secret it was started with (`--secret`), never anything a plan carried.
/// `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub(crate) struct StoreSettings(Arc<Vec<(String, String)>>);

impl StoreSettings {
    pub(crate) fn new(settings: Vec<(String, String)>) -> Self {
        Self(Arc::new(settings))
    }
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreSettings({} settings)", self.0.len())
    }
}

impl RemoteScanExec {
    /// What pruning left of the table (here, before the job left).
    pub(crate) fn figures(&self) -> ScanFigures {
        self.figures
    }

    /// The Parquet scan this executor runs: the input's file groups, each file with its rows
    /// and deleted rows from the spec.
    fn reader(&self, context: &TaskContext) -> DfResult<Arc<DataSourceExec>> {
        let (config, _) = self
            .input
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.downcast_to_file_source::<ParquetSource>())
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "the scan of {} arrived without its Parquet files",
                    self.table
                ))
            })?;
        let files = self.spec.files_by_path();
        let groups = config
            .file_groups
            .iter()
            .map(|group| {
                let files = group
                    .files()
                    .iter()
                    .map(|file| {
                        let path = file.object_meta.location.as_ref();
                        let known = files.get(path).ok_or_else(|| {
                            DataFusionError::Internal(format!(
                                "the scan of {} names file {path}, which its snapshot does not hold",
                                self.table
                            ))
                        })?;
                        Ok(without_deleted(file.clone(), known.rows, known.deleted.as_ref()))
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                Ok(FileGroup::new(files))
            })
            .collect::<DfResult<Vec<_>>>()?;
        ParquetScan {
            store_url: register_store(context, &self.spec.warehouse, &self.store)?,
            metadata: &self.spec.metadata,
            schema: TableSchema::builder(read_schema(&self.spec.metadata)).build(),
            groups,
            projection: self.spec.projection.as_ref(),
            limit: self.spec.limit,
            statistics: None,
            predicate: self.predicate.clone(),
            own_groups: true,
        }
        .build(&context.runtime_env(), context.session_config().options())
    }
}

/// The object stores of the warehouses this executor has read, by location: each opened once,
/// with the executor's own environment and `settings`.
fn register_store(
    context: &TaskContext,
    location: &str,
    settings: &StoreSettings,
) -> DfResult<ObjectStoreUrl> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let store = {
        let mut stores = STORES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match stores.get(location) {
            Some(store) => Arc::clone(store),
            None => {
                let store = strata_storage::WarehouseStore::open_with(location, &settings.0)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?
                    .object_store();
                stores.insert(location.to_string(), Arc::clone(&store));
                store
            }
        }
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    location.hash(&mut hasher);
    let url = ObjectStoreUrl::parse(format!("strata://w{:016x}", hasher.finish()))?;
    context
        .runtime_env()
        .register_object_store(url.as_ref(), store);
    Ok(url)
}

impl DisplayAs for RemoteScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.figures;
        write!(
            f,
            "StrataScanExec: table={}@v{}, partitions={}/{}, files={}/{}, bytes={}/{}, executors read the files",
            self.table,
            self.spec.version,
            s.partitions_scanned,
            s.partitions_total,
            s.files_scanned,
            s.files_total,
            s.bytes_scanned,
            s.bytes_total
        )
    }
}

impl ExecutionPlan for RemoteScanExec {
    fn name(&self) -> &str {
        "RemoteScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// The input's partitions are the scan's file groups, one per task: a repartition in
    /// between would hand every task all of them.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    /// The scheduler gives each task its file groups of the input.
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        Ok(Arc::new(Self {
            table: self.table.clone(),
            spec: Arc::clone(&self.spec),
            predicate: self.predicate.clone(),
            figures: self.figures,
            properties: projected(&input, &self.spec)?,
            input,
            store: self.store.clone(),
            built: BuiltReader::default(),
        }))
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        match &self.predicate {
            Some(predicate) => f(predicate),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let reader = match self.built.0.get() {
            Some(reader) => Arc::clone(reader),
            None => {
                let reader = self.reader(&context)?;
                Arc::clone(self.built.0.get_or_init(|| reader))
            }
        };
        reader.execute(partition, context)
    }

    /// The reader's metrics once it is built; always a set, so that Ballista's lists of
    /// operator metrics stay aligned with the plan.
    fn metrics(&self) -> Option<MetricsSet> {
        match self.built.0.get() {
            Some(reader) => reader.metrics(),
            None => Some(MetricsSet::new()),
        }
    }

    /// Live rows and stored bytes of the files of one partition (or all), as estimates: what
    /// the scheduler needs to broadcast a small table rather than shuffle both sides.
    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        let unknown = Statistics::new_unknown(&self.schema());
        let Some((config, _)) = self
            .input
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.downcast_to_file_source::<ParquetSource>())
        else {
            return Ok(Arc::new(unknown));
        };
        let files = self.spec.files_by_path();
        let groups: Vec<&FileGroup> = match args.partition() {
            Some(p) => config.file_groups.get(p).into_iter().collect(),
            None => config.file_groups.iter().collect(),
        };
        let (mut rows, mut bytes) = (0u64, 0u64);
        for file in groups.iter().flat_map(|g| g.files()) {
            let Some(known) = files.get(file.object_meta.location.as_ref()) else {
                return Ok(Arc::new(unknown));
            };
            let deleted = known.deleted.as_ref().map_or(0, |d| d.len());
            rows = rows.saturating_add(known.rows.saturating_sub(deleted));
            bytes = bytes.saturating_add(known.size);
        }
        let inexact = |n: u64| Precision::Inexact(usize::try_from(n).unwrap_or(usize::MAX));
        Ok(Arc::new(
            unknown
                .with_num_rows(inexact(rows))
                .with_total_byte_size(inexact(bytes)),
        ))
    }
}

/// The codec of Strata's cluster plans, installed on clients, the scheduler and executors
/// alike: [`RemoteScanExec`] as `strata.ScanNode`, everything else through Ballista's codec
/// (its shuffle readers and writers). The first byte of each encoded node says which.
#[derive(Debug, Default)]
pub(crate) struct StrataCodec {
    ballista: BallistaPhysicalExtensionCodec,
    /// What the scans this codec decodes open their store with.
    store: StoreSettings,
}

impl StrataCodec {
    /// The codec of an executor that reaches warehouses with `store` settings.
    pub(crate) fn with_store(store: StoreSettings) -> Self {
        Self {
            store,
            ..Self::default()
        }
    }
}

/// The first byte of a node [`StrataCodec`] encodes itself.
const STRATA_NODE: u8 = b'S';
/// The first byte of a node Ballista's codec encodes.
const BALLISTA_NODE: u8 = b'B';

impl PhysicalExtensionCodec for StrataCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match buf.split_first() {
            Some((&STRATA_NODE, rest)) => {
                let node = ScanNode::decode(rest)
                    .map_err(|e| DataFusionError::Internal(format!("strata.ScanNode: {e}")))?;
                let mut scan = node.into_exec(inputs, ctx, self, proto_converter)?;
                scan.store = self.store.clone();
                Ok(Arc::new(scan))
            }
            Some((&BALLISTA_NODE, rest)) => {
                self.ballista.try_decode(rest, inputs, ctx, proto_converter)
            }
            _ => Err(DataFusionError::Internal(
                "a plan node of an unknown codec: the client, scheduler and executors must all \
                 be Strata's"
                    .to_string(),
            )),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(scan) = node.downcast_ref::<RemoteScanExec>() {
            buf.push(STRATA_NODE);
            let message = ScanNode::of(scan, self, proto_converter)?;
            message
                .encode(buf)
                .map_err(|e| DataFusionError::Internal(format!("strata.ScanNode: {e}")))?;
            return Ok(());
        }
        buf.push(BALLISTA_NODE);
        self.ballista.try_encode(node, buf, proto_converter)
    }
}

/// `strata.ScanNode` of `proto/strata.proto`.
#[derive(Clone, PartialEq, prost::Message)]
struct ScanNode {
    #[prost(string, tag = "1")]
    table: String,
    #[prost(string, tag = "2")]
    warehouse: String,
    /// `TableMetadata` as JSON, as the table log stores it.
    #[prost(string, tag = "3")]
    metadata: String,
    #[prost(uint64, tag = "4")]
    snapshot_version: u64,
    #[prost(message, repeated, tag = "5")]
    groups: Vec<ScanFileGroup>,
    #[prost(uint32, repeated, tag = "6")]
    projection: Vec<u32>,
    #[prost(bool, tag = "7")]
    projected: bool,
    #[prost(uint64, optional, tag = "8")]
    limit: Option<u64>,
    /// Against the table's columns (not the projected ones).
    #[prost(message, optional, tag = "9")]
    predicate: Option<PhysicalExprNode>,
    #[prost(message, optional, tag = "10")]
    figures: Option<ScanFiguresNode>,
}

/// `strata.ScanFileGroup`: the files of one partition of a scan.
#[derive(Clone, PartialEq, prost::Message)]
struct ScanFileGroup {
    #[prost(message, repeated, tag = "1")]
    files: Vec<ScanFileNode>,
}

/// `strata.ScanFile`.
#[derive(Clone, PartialEq, prost::Message)]
struct ScanFileNode {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(uint64, tag = "2")]
    size: u64,
    #[prost(uint64, tag = "3")]
    rows: u64,
    /// The deleted rows as a portable roaring bitmap; empty when none are.
    #[prost(bytes = "vec", tag = "4")]
    deleted: Vec<u8>,
    #[prost(string, tag = "5")]
    partition: String,
}

/// `strata.ScanFigures`: what pruning left of the table, for `EXPLAIN`.
#[derive(Clone, PartialEq, prost::Message)]
struct ScanFiguresNode {
    #[prost(uint64, tag = "1")]
    partitions_total: u64,
    #[prost(uint64, tag = "2")]
    partitions_scanned: u64,
    #[prost(uint64, tag = "3")]
    files_total: u64,
    #[prost(uint64, tag = "4")]
    files_scanned: u64,
    #[prost(uint64, tag = "5")]
    bytes_total: u64,
    #[prost(uint64, tag = "6")]
    bytes_scanned: u64,
    #[prost(uint64, tag = "7")]
    rows_total: u64,
    #[prost(uint64, tag = "8")]
    rows_scanned: u64,
}

impl ScanNode {
    fn of(
        scan: &RemoteScanExec,
        codec: &dyn PhysicalExtensionCodec,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Self> {
        let spec = &scan.spec;
        let groups = spec
            .groups
            .iter()
            .map(|files| {
                let files = files
                    .iter()
                    .map(|f| {
                        let mut deleted = Vec::new();
                        if let Some(rows) = &f.deleted {
                            rows.serialize_into(&mut deleted)
                                .map_err(|e| DataFusionError::External(Box::new(e)))?;
                        }
                        Ok(ScanFileNode {
                            path: f.path.clone(),
                            size: f.size,
                            rows: f.rows,
                            deleted,
                            partition: f.partition.clone(),
                        })
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                Ok(ScanFileGroup { files })
            })
            .collect::<DfResult<Vec<_>>>()?;
        let predicate = scan
            .predicate
            .as_ref()
            .map(|p| converter.physical_expr_to_proto(p, codec))
            .transpose()?;
        let f = scan.figures;
        Ok(Self {
            table: scan.table.clone(),
            warehouse: spec.warehouse.clone(),
            metadata: serde_json::to_string(spec.metadata.as_ref())
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            snapshot_version: spec.version,
            groups,
            projection: spec
                .projection
                .iter()
                .flatten()
                .map(|&c| u32::try_from(c).unwrap_or(u32::MAX))
                .collect(),
            projected: spec.projection.is_some(),
            limit: spec.limit.map(|l| l as u64),
            predicate,
            figures: Some(ScanFiguresNode {
                partitions_total: f.partitions_total as u64,
                partitions_scanned: f.partitions_scanned as u64,
                files_total: f.files_total as u64,
                files_scanned: f.files_scanned as u64,
                bytes_total: f.bytes_total,
                bytes_scanned: f.bytes_scanned,
                rows_total: f.rows_total,
                rows_scanned: f.rows_scanned,
            }),
        })
    }

    fn into_exec(
        self,
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        codec: &dyn PhysicalExtensionCodec,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<RemoteScanExec> {
        let metadata: TableMetadata = serde_json::from_str(&self.metadata)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let schema = read_schema(&metadata);
        let width = schema.fields().len();
        let projection = match self.projected {
            true => Some(
                self.projection
                    .iter()
                    .map(|&c| {
                        let c = c as usize;
                        if c < width {
                            Ok(c)
                        } else {
                            Err(DataFusionError::Internal(format!(
                                "strata.ScanNode: column {c} of a table of {width} columns"
                            )))
                        }
                    })
                    .collect::<DfResult<Vec<_>>>()?,
            ),
            false => None,
        };
        let predicate = self
            .predicate
            .as_ref()
            .map(|p| {
                let decode = PhysicalPlanDecodeContext::new(ctx, codec);
                converter.proto_to_physical_expr(p, &schema, &decode)
            })
            .transpose()?;
        let groups = self
            .groups
            .into_iter()
            .map(|g| {
                g.files
                    .into_iter()
                    .map(|f| {
                        let deleted = match f.deleted.is_empty() {
                            true => None,
                            false => Some(Arc::new(
                                RoaringBitmap::deserialize_from(f.deleted.as_slice())
                                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
                            )),
                        };
                        Ok(ScanFile {
                            path: f.path,
                            partition: f.partition,
                            size: f.size,
                            rows: f.rows,
                            deleted,
                        })
                    })
                    .collect::<DfResult<Vec<_>>>()
            })
            .collect::<DfResult<Vec<_>>>()?;
        let figures = self.figures.unwrap_or_default();
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let figures = ScanFigures {
            partitions_total: count(figures.partitions_total),
            partitions_scanned: count(figures.partitions_scanned),
            files_total: count(figures.files_total),
            files_scanned: count(figures.files_scanned),
            bytes_total: figures.bytes_total,
            bytes_scanned: figures.bytes_scanned,
            rows_total: figures.rows_total,
            rows_scanned: figures.rows_scanned,
        };
        let spec = ScanSpec {
            warehouse: self.warehouse,
            metadata: Arc::new(metadata),
            version: self.snapshot_version,
            groups,
            projection,
            limit: self.limit.map(count),
        };
        let [input] = inputs else {
            return Err(DataFusionError::Internal(format!(
                "strata.ScanNode of {} arrived with {} inputs, not its files",
                self.table,
                inputs.len()
            )));
        };
        Ok(RemoteScanExec {
            table: self.table,
            properties: projected(input, &spec)?,
            spec: Arc::new(spec),
            predicate,
            figures,
            input: Arc::clone(input),
            store: StoreSettings::default(),
            built: BuiltReader::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::physical_plan::{ExecutionPlan, collect_partitioned};
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;

    use super::StrataCodec;
    use crate::{Warehouse, WarehouseOptions};

    /// A plan sent through the codec reads, partition by partition, the rows the plan read
    /// here: no more (each partition its own files), no fewer (deleted rows stay deleted).
    #[tokio::test]
    async fn a_scan_through_the_codec_reads_what_it_reads_here() {
        let dir = tempfile::tempdir().unwrap();
        let options = WarehouseOptions {
            cluster: Some("df://127.0.0.1:1".to_string()),
            ..WarehouseOptions::default()
        };
        let warehouse = Warehouse::open_with(dir.path().to_str().unwrap(), options)
            .await
            .unwrap();
        let mut session = warehouse.session();
        session
            .sql(
                "SET datafusion.execution.target_partitions = 2;
                 CREATE TABLE f (k INT, v BIGINT);
                 INSERT INTO f SELECT CAST(value % 10 AS INT), value FROM generate_series(1, 1000);
                 INSERT INTO f SELECT CAST(value % 10 AS INT), value FROM generate_series(1001, 2000);
                 SET strata.dml_rewrite_share = 1;
                 DELETE FROM f WHERE v % 100 = 0",
            )
            .await
            .unwrap();
        let df = session
            .context()
            .sql("SELECT v FROM f WHERE v > 10")
            .await
            .unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let here = collect_partitioned(Arc::clone(&plan), session.context().task_ctx())
            .await
            .unwrap();
        let remote = super::for_cluster(plan, 1, &std::collections::HashSet::new()).unwrap();
        let codec = StrataCodec::default();
        let node = PhysicalPlanNode::try_from_physical_plan(remote, &codec).unwrap();
        let task = session.context().task_ctx();
        let decoded: Arc<dyn ExecutionPlan> = node.try_into_physical_plan(&task, &codec).unwrap();
        let there = collect_partitioned(decoded, session.context().task_ctx())
            .await
            .unwrap();
        let rows = |parts: &Vec<Vec<arrow::array::RecordBatch>>| -> Vec<usize> {
            parts
                .iter()
                .map(|p| p.iter().map(|b| b.num_rows()).sum())
                .collect()
        };
        assert_eq!(rows(&there), rows(&here));
        assert_eq!(rows(&here).iter().sum::<usize>(), 2000 - 10 - 20);
    }

    /// Files are packed in order into tasks of about the task size; one larger than it, or a
    /// byte range of one, is a task of its own; no file is lost or read twice.
    #[test]
    fn files_are_packed_into_tasks_of_about_the_task_size() {
        use datafusion::datasource::listing::PartitionedFile;
        use datafusion::datasource::physical_plan::FileGroup;
        let file = |name: &str, size: u64| PartitionedFile::new(name.to_string(), size);
        let groups = vec![
            FileGroup::new(vec![file("a", 40), file("b", 40), file("c", 40)]),
            FileGroup::new(vec![
                file("d", 500),
                file("e", 30).with_range(0, 15),
                file("e", 30).with_range(15, 30),
            ]),
        ];
        let tasks = super::tasks(&groups, 100);
        let names: Vec<Vec<String>> = tasks
            .iter()
            .map(|g| {
                g.files()
                    .iter()
                    .map(|f| f.object_meta.location.to_string())
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            [vec!["a", "b"], vec!["c"], vec!["d"], vec!["e", "e"]]
        );
        assert_eq!(super::tasks(&groups, 1).len(), 6);
        assert_eq!(super::tasks(&groups, usize::MAX).len(), 1);
        let nothing = super::tasks(&[], 100);
        assert_eq!(nothing.len(), 1);
        assert!(nothing[0].files().is_empty());
    }
}
