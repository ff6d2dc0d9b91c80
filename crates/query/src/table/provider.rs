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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, ColumnStatistics, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::FileGroup;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::ExecutionPlan;
use parquet::arrow::RowNumber;
use roaring::RoaringBitmap;
use strata_storage::{DataFile, IndexKind, Reads, Snapshot, TableLog, TableMetadata};

use crate::error::Result;
use crate::parser::{AsOf, split_time_travel};
use crate::table::files::{
    balanced_groups, deleted_rows_of, parquet_scan, partitioned_file, read_schema,
};
use crate::table::scan::{ScanFigures, ScanFile, ScanSpec, StrataScanExec};
use crate::table::scd::ScdSpec;
use crate::table::selectivity::SampledScan;
use crate::table::write::StrataSink;
use crate::types::{key_scalar, scalar};
use crate::warehouse::Warehouse;

/// The column a row-id scan ([`StrataTable::with_row_ids`]) adds: the row's data file.
pub(crate) const FILE_COLUMN: &str = "__strata_file";
/// The column a row-id scan adds: the row's position in its data file (Parquet's row number).
pub(crate) const ROW_COLUMN: &str = "__strata_row";

/// One table at one snapshot.
#[derive(Debug)]
pub(crate) struct StrataTable {
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
    /// Where scans note what they read, for the commit's conflict check (DML statements).
    read_log: Option<ReadLog>,
    /// What an `INSERT` that leaves a column out writes in it.
    defaults: std::collections::HashMap<String, Expr>,
}

/// What the scans of one statement read from its target table: the [`Reads`] its commit
/// checks against concurrent commits.
pub(crate) type ReadLog = Arc<Mutex<Reads>>;

impl StrataTable {
    /// The provider for `snapshot` of the table behind `log`.
    pub(crate) fn new(
        warehouse: Warehouse,
        name: String,
        log: TableLog,
        snapshot: Snapshot,
        historical: bool,
    ) -> Self {
        let schema = read_schema(&snapshot.metadata);
        let defaults = snapshot
            .metadata
            .columns
            .iter()
            .filter_map(|c| {
                let text = c.default.as_ref()?;
                let value = ScalarValue::Utf8(Some(text.clone()))
                    .cast_to(&c.data_type)
                    .ok()?;
                Some((c.name.clone(), Expr::Literal(value, None)))
            })
            .collect();
        Self {
            defaults,
            warehouse,
            name,
            log,
            snapshot,
            schema,
            historical,
            row_ids: false,
            read_log: None,
        }
    }

    /// The provider for `database.schema.name`, where `name` may carry a time-travel suffix.
    pub(crate) async fn open(
        warehouse: &Warehouse,
        database: &str,
        schema: &str,
        name: &str,
    ) -> Result<Option<StrataTable>> {
        let (base, as_of) = split_time_travel(name);
        let catalog = warehouse.catalog();
        let Ok(entry) = catalog.table(database, schema, base) else {
            return Ok(None);
        };
        let qualified = format!("{database}.{schema}.{base}");
        let log = warehouse.table_log(&entry.id, &qualified);
        let snapshot = match as_of {
            None => warehouse.snapshot(&log).await?,
            Some(AsOf::Version(v)) => log.at_version(strata_storage::Version(v)).await?,
            // An SCD Type 2 table answers from its current snapshot (the catalog filters the
            // versions valid then); any other table travels in time.
            Some(AsOf::ValidAt(micros)) => {
                let current = warehouse.snapshot(&log).await?;
                if ScdSpec::of(&current.metadata).is_some() {
                    current
                } else {
                    log.at_time(micros_to_time(micros)?).await?
                }
            }
            Some(AsOf::Timestamp(micros)) => log.at_time(micros_to_time(micros)?).await?,
        };
        Ok(Some(StrataTable::new(
            warehouse.clone(),
            qualified,
            log,
            snapshot,
            as_of.is_some(),
        )))
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
            read_log: self.read_log.clone(),
            defaults: self.defaults.clone(),
        }
    }

    /// This table reading exactly `files`, which need not be in its snapshot any more (a
    /// file an `OPTIMIZE` rewrote since is still stored until `VACUUM` deletes it, and holds
    /// the same rows as when it was added).
    pub(crate) fn with_only_files(&self, files: &[DataFile]) -> Self {
        let mut table = self.with_files(|_| false);
        table.snapshot.files = files.iter().map(|f| (f.path.clone(), f.clone())).collect();
        table
    }

    /// This table noting in `log` what its scans read.
    pub(crate) fn with_read_log(mut self, log: ReadLog) -> Self {
        self.read_log = Some(log);
        self
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
    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// What a scan of `files` in `groups` reads, as a cluster's executors read it.
    fn scan_spec(
        &self,
        files: &[&DataFile],
        deleted: &HashMap<String, Arc<RoaringBitmap>>,
        groups: &[FileGroup],
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> ScanSpec {
        let known: HashMap<&str, &DataFile> = files.iter().map(|f| (f.path.as_str(), *f)).collect();
        let groups = groups
            .iter()
            .map(|group| {
                group
                    .files()
                    .iter()
                    .map(|f| {
                        let path = f.object_meta.location.to_string();
                        let file = known.get(path.as_str());
                        ScanFile {
                            rows: file.map_or(0, |f| f.rows),
                            partition: file.map(|f| f.partition.clone()).unwrap_or_default(),
                            deleted: deleted.get(&path).cloned(),
                            size: f.object_meta.size,
                            path,
                        }
                    })
                    .collect()
            })
            .collect();
        ScanSpec {
            warehouse: self.warehouse.location().to_string(),
            metadata: Arc::new(self.snapshot.metadata.clone()),
            version: self.snapshot.version.0,
            groups,
            projection: projection.cloned(),
            limit,
        }
    }

    /// Partition and file pruning; returns the kept files, the figures, and what the scan
    /// reads: the partitions whose bounds the predicate keeps (file statistics do not count:
    /// a file added later may match).
    fn prune(&self, predicate: Option<&PruningPredicate>) -> (Vec<&DataFile>, ScanFigures, Reads) {
        let all_files: Vec<&DataFile> = self.snapshot.files.values().collect();
        let layout = self.snapshot.metadata.partitioning.as_ref();
        let partitions_total = layout.map_or(1, |l| l.partitions.len().max(1));
        let Some(predicate) = predicate else {
            let figures = ScanFigures::of(partitions_total, &all_files, &all_files);
            return (all_files, figures, Reads::Table);
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
            metadata: &self.snapshot.metadata,
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
        let reads = match kept_partitions {
            Some(names) => Reads::Partitions(names.into_iter().map(String::from).collect()),
            None => Reads::Table,
        };
        (kept, figures, reads)
    }

    fn file_statistics(&self, file: &DataFile) -> Statistics {
        // With rows deleted, a column's bounds and null count may be those of deleted rows.
        let exact = file.deletion_vector.is_none();
        let known = |value: ScalarValue| {
            if exact {
                Precision::Exact(value)
            } else {
                Precision::Inexact(value)
            }
        };
        Statistics {
            num_rows: Precision::Exact(file.live_rows() as usize),
            total_byte_size: Precision::Inexact(file.size_bytes as usize),
            column_statistics: self
                .schema
                .fields()
                .iter()
                .map(|field| {
                    let s = self.snapshot.metadata.stats_of(file, field.name());
                    let value = |v: Option<&strata_storage::StatValue>| {
                        v.and_then(|v| scalar(v, field.data_type()))
                            .map_or(Precision::Absent, known)
                    };
                    let nulls = |n: u64| {
                        if exact {
                            Precision::Exact(n as usize)
                        } else {
                            Precision::Inexact(n as usize)
                        }
                    };
                    ColumnStatistics {
                        null_count: s.map_or(Precision::Absent, |s| nulls(s.null_count)),
                        min_value: value(s.and_then(|s| s.min.as_ref())),
                        max_value: value(s.and_then(|s| s.max.as_ref())),
                        ..Default::default()
                    }
                })
                .collect(),
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
    metadata: &'a strata_storage::TableMetadata,
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
                self.metadata
                    .stats_of(f, &column.name)
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
            .map(|f| {
                self.metadata
                    .stats_of(f, &column.name)
                    .map(|s| s.null_count)
            })
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

#[async_trait]
impl TableProvider for StrataTable {
    fn schema(&self) -> SchemaRef {
        if self.row_ids {
            Arc::clone(self.scan_schema().table_schema())
        } else {
            Arc::clone(&self.schema)
        }
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
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
        let files: Vec<Statistics> = self
            .snapshot
            .files
            .values()
            .map(|f| self.file_statistics(f))
            .collect();
        let mut merged = if files.is_empty() {
            Statistics::new_unknown(&self.schema).with_num_rows(Precision::Exact(0))
        } else {
            Statistics::try_merge_iter(files.iter(), &self.schema).ok()?
        };
        if self.row_ids {
            // The file and row columns: unknown. The row count still lets a join of a DML
            // statement build its hash table on the smaller side (its source, usually).
            merged.column_statistics.extend([
                ColumnStatistics::new_unknown(),
                ColumnStatistics::new_unknown(),
            ]);
        }
        Some(merged)
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
        let (files, figures, reads) = self.prune(pruning.as_ref());
        if let Some(log) = &self.read_log {
            let mut noted = log.lock().unwrap_or_else(|e| e.into_inner());
            *noted = std::mem::take(&mut *noted).union(reads);
        }
        let deleted = deleted_rows_of(&self.warehouse, &files)
            .await
            .map_err(DataFusionError::from)?;
        let partitioned: Vec<PartitionedFile> = files
            .iter()
            .map(|f| {
                let file = partitioned_file(f, deleted.get(&f.path));
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
        let groups = balanced_groups(
            partitioned,
            state.config_options().execution.target_partitions,
        );
        // Only a warehouse opened with a cluster sends scans away.
        let remote = (!self.row_ids && self.warehouse.options().cluster.is_some())
            .then(|| self.scan_spec(&files, &deleted, &groups, projection, limit));
        let scan = parquet_scan(
            state,
            &self.snapshot.metadata,
            self.scan_schema(),
            groups,
            projection,
            limit,
            TableProvider::statistics(self),
        )?;
        let field_ids = self
            .snapshot
            .metadata
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.field_id))
            .collect();
        let index = lookup_index(&self.snapshot.metadata, filters);
        let sampled = match (&predicate, self.row_ids) {
            (None, _) | (_, true) => None,
            (Some(predicate), false) => {
                let sample = SampledScan {
                    warehouse: &self.warehouse,
                    metadata: &self.snapshot.metadata,
                    schema: &self.schema,
                    files: &files,
                    table_rows: self.snapshot.files.values().map(|f| f.live_rows()).sum(),
                };
                sample.selectivity(state, filters, predicate).await
            }
        };
        Ok(Arc::new(
            StrataScanExec::new(self.name.clone(), Arc::new(field_ids), scan, figures)
                .with_index(index)
                .with_remote(remote)
                .with_sampled_selectivity(sampled),
        ))
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
        // `INSERT INTO t SELECT ... FROM t` reads its target: not a blind append.
        let mut reads_target = false;
        datafusion::common::tree_node::TreeNode::apply(&input, |node| {
            if let Some(scan) = node.downcast_ref::<StrataScanExec>() {
                reads_target |= scan.table() == self.name;
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })?;
        let sink = StrataSink {
            warehouse: self.warehouse.clone(),
            name: self.name.clone(),
            log: self.log.clone(),
            snapshot: self.snapshot.clone(),
            schema: Arc::clone(&self.schema),
            overwrite,
            reads_target,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

fn micros_to_time(micros: i64) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| crate::Error::Plan(format!("time travel: timestamp {micros} out of range")))
}

/// The index a scan with `filters` looks rows up by, if any: an equality (or IN list) on a
/// column with bloom filters, or a comparison on the leading column of the sort key. Its name
/// is the index's (`cluster key` for `CLUSTER BY`).
fn lookup_index(metadata: &TableMetadata, filters: &[Expr]) -> Option<String> {
    let blooms = metadata.bloom_filter_columns();
    let leading = metadata.sort_key().first();
    let column_of = |e: &Expr| match e {
        Expr::Column(c) => Some(c.name.clone()),
        _ => None,
    };
    let literal = |e: &Expr| matches!(e, Expr::Literal(..));
    for filter in filters.iter().flat_map(|f| split_conjunction(f)) {
        let (column, equality) = match filter {
            Expr::BinaryExpr(b)
                if matches!(
                    b.op,
                    Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
                ) =>
            {
                let column = match (column_of(&b.left), column_of(&b.right)) {
                    (Some(c), None) if literal(&b.right) => c,
                    (None, Some(c)) if literal(&b.left) => c,
                    _ => continue,
                };
                (column, b.op == Operator::Eq)
            }
            Expr::InList(list) if !list.negated && list.list.iter().all(literal) => {
                match column_of(&list.expr) {
                    Some(c) => (c, true),
                    None => continue,
                }
            }
            Expr::Between(b) if !b.negated && literal(&b.low) && literal(&b.high) => {
                match column_of(&b.expr) {
                    Some(c) => (c, false),
                    None => continue,
                }
            }
            _ => continue,
        };
        if equality && blooms.contains(column.as_str()) {
            let index = metadata
                .indexes
                .iter()
                .find(|i| i.kind == IndexKind::Hash && i.columns.contains(&column));
            if let Some(index) = index {
                return Some(index.name.clone());
            }
        }
        if leading == Some(&column) {
            if !metadata.cluster_by.is_empty() {
                return Some("cluster key".to_string());
            }
            let index = metadata
                .indexes
                .iter()
                .find(|i| i.kind == IndexKind::BTree && i.columns.first() == Some(&column));
            if let Some(index) = index {
                return Some(index.name.clone());
            }
        }
    }
    None
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
