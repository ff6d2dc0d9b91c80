//! The Parquet scan of a set of a table's data files, as DataFusion runs it: the one place that
//! builds a `DataSourceExec` over Strata's files, for table scans and for the key lookups of
//! constraint checks.
//!
//! Files are never rewritten for a schema change, so one table holds files written under many
//! schemas. [`FieldIdAdapterFactory`] reads each file by the columns' field ids (Iceberg's
//! rule): a renamed column finds its old files, a dropped and re-added name does not find the
//! old column's values, a column added later reads as its default, and a widened column is
//! cast from its older type.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::common::Statistics;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapter, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use roaring::RoaringBitmap;
use std::collections::HashMap;
use strata_storage::{DataFile, TableMetadata};

/// DataFusion's name for the warehouse's object store.
pub(crate) const WAREHOUSE_STORE_URL: &str = "strata://warehouse";

/// The rows of a data file its deletion vector marks deleted, attached to the file's
/// [`PartitionedFile`] for the scan cache, which reads files whole and drops these rows as it
/// serves them.
#[derive(Debug, Clone)]
pub(crate) struct DeletedRows(pub(crate) Arc<RoaringBitmap>);

/// `file` as DataFusion scans it: with the rows its deletion vector marks (`deleted`) left
/// out by a row selection, which the Parquet reader applies before decoding.
pub(crate) fn partitioned_file(
    file: &DataFile,
    deleted: Option<&Arc<RoaringBitmap>>,
) -> PartitionedFile {
    scanned_file(&file.path, file.size_bytes, file.rows, deleted)
}

/// The data file at `path` (`size` bytes, `rows` rows) as DataFusion scans it, less the rows in
/// `deleted`.
fn scanned_file(
    path: &str,
    size: u64,
    rows: u64,
    deleted: Option<&Arc<RoaringBitmap>>,
) -> PartitionedFile {
    without_deleted(PartitionedFile::new(path.to_string(), size), rows, deleted)
}

/// `scanned` (a data file of `rows` rows, or a byte range of it) less the rows in `deleted`.
pub(crate) fn without_deleted(
    scanned: PartitionedFile,
    rows: u64,
    deleted: Option<&Arc<RoaringBitmap>>,
) -> PartitionedFile {
    match deleted {
        Some(deleted) if !deleted.is_empty() => scanned
            .with_extension(ParquetRowSelection::new(live_selection(deleted, rows)))
            .with_extension(DeletedRows(Arc::clone(deleted))),
        _ => scanned,
    }
}

/// The rows of a file of `rows` rows that are not in `deleted`, as a Parquet row selection.
fn live_selection(deleted: &RoaringBitmap, rows: u64) -> RowSelection {
    let mut selectors = Vec::new();
    // The next row not yet covered by a selector, and the run of deleted rows being gathered.
    let mut next = 0u64;
    let mut run: Option<(u64, u64)> = None;
    let mut flush = |(start, end): (u64, u64), next: &mut u64| {
        if start > *next {
            selectors.push(RowSelector::select((start - *next) as usize));
        }
        selectors.push(RowSelector::skip((end - start) as usize));
        *next = end;
    };
    for row in deleted.iter().map(u64::from).take_while(|r| *r < rows) {
        run = match run {
            Some((start, end)) if row == end => Some((start, end + 1)),
            Some(done) => {
                flush(done, &mut next);
                Some((row, row + 1))
            }
            None => Some((row, row + 1)),
        };
    }
    if let Some(done) = run {
        flush(done, &mut next);
    }
    if rows > next {
        selectors.push(RowSelector::select((rows - next) as usize));
    }
    RowSelection::from(selectors)
}

/// Loads the deletion vectors of `files` (those that have one), by data file path.
pub(crate) async fn deleted_rows_of(
    warehouse: &crate::warehouse::Warehouse,
    files: &[&DataFile],
) -> crate::Result<HashMap<String, Arc<RoaringBitmap>>> {
    let mut loads = Vec::new();
    for file in files {
        let Some(vector) = file.deletion_vector.clone() else {
            continue;
        };
        // Only what the load needs: a file's statistics are not worth a copy per scan.
        let (warehouse, path, rows) = (warehouse.clone(), file.path.clone(), file.rows);
        loads.push(async move {
            let deleted = warehouse.vector_rows(&vector, &path, rows).await?;
            Ok::<_, crate::Error>((path, deleted))
        });
    }
    let loaded: Vec<_> = futures::stream::iter(loads)
        .buffer_unordered(16)
        .try_collect()
        .await?;
    Ok(loaded.into_iter().collect())
}

/// Splits files into `n` groups of similar byte size (largest first, into the lightest group).
pub(crate) fn balanced_groups(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
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

/// A Parquet scan of `groups` of data files read as `schema` (the table's columns, plus the
/// file and row columns of a row-id scan), with DataFusion's options of the running session.
///
/// Filters reach the Parquet source later, through DataFusion's physical filter pushdown, which
/// prunes row groups and pages with them. Footers and page indexes come from the runtime's
/// metadata cache: data files are immutable and uniquely named, so a cached footer never goes
/// stale, and a hot query skips fetching and decoding the metadata of every file it touches.
pub(crate) fn parquet_scan(
    session: &dyn datafusion::catalog::Session,
    metadata: &TableMetadata,
    schema: TableSchema,
    groups: Vec<FileGroup>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
    statistics: Option<Statistics>,
) -> DfResult<Arc<DataSourceExec>> {
    let scan = ParquetScan {
        store_url: ObjectStoreUrl::parse(WAREHOUSE_STORE_URL)?,
        metadata,
        schema,
        groups,
        projection,
        limit,
        statistics,
        predicate: None,
        own_groups: false,
    };
    scan.build(session.runtime_env(), session.config_options())
}

/// What a Parquet scan of a table's files reads, for [`parquet_scan`] and for executors of a
/// cluster, which hold a task context rather than a session.
pub(crate) struct ParquetScan<'a> {
    /// Where the runtime finds the files' object store.
    pub(crate) store_url: ObjectStoreUrl,
    pub(crate) metadata: &'a TableMetadata,
    pub(crate) schema: TableSchema,
    pub(crate) groups: Vec<FileGroup>,
    pub(crate) projection: Option<&'a Vec<usize>>,
    pub(crate) limit: Option<usize>,
    pub(crate) statistics: Option<Statistics>,
    /// The reader's predicate, for row-group and page pruning (a scan planned here gets it
    /// from filter pushdown instead).
    pub(crate) predicate: Option<Arc<dyn PhysicalExpr>>,
    /// Each partition reads exactly its own group of files. DataFusion lets the partitions
    /// of one scan take files from each other's groups when they run out, which is right in
    /// one process but reads every file once per task when each partition is a separate
    /// task with its own copy of the scan (executors of a cluster).
    pub(crate) own_groups: bool,
}

impl ParquetScan<'_> {
    /// The scan, on `runtime` with the session options `options`.
    pub(crate) fn build(
        self,
        runtime: &datafusion::execution::runtime_env::RuntimeEnv,
        options: &datafusion::config::ConfigOptions,
    ) -> DfResult<Arc<DataSourceExec>> {
        let parquet_options = datafusion::config::TableParquetOptions {
            global: options.execution.parquet.clone(),
            ..Default::default()
        };
        let readers = CachedParquetFileReaderFactory::new(
            runtime.object_store(&self.store_url)?,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let mut source = ParquetSource::new(self.schema)
            .with_table_parquet_options(parquet_options)
            .with_parquet_file_reader_factory(Arc::new(readers));
        if let Some(predicate) = self.predicate {
            source = source.with_predicate(predicate);
        }
        let mut config = FileScanConfigBuilder::new(self.store_url, Arc::new(source))
            .with_file_groups(self.groups)
            .with_projection_indices(self.projection.cloned())?
            .with_expr_adapter(Some(Arc::new(FieldIdAdapterFactory::new(self.metadata))))
            .with_limit(self.limit)
            .with_preserve_order(self.own_groups);
        if let Some(stats) = self.statistics {
            config = config.with_statistics(stats);
        }
        Ok(DataSourceExec::from_data_source(config.build()))
    }
}

/// The columns of a table as scans read them: all nullable. NOT NULL is enforced by the
/// writer, whose error names the column and row; if DataFusion saw non-nullable fields it
/// would fail first, naming the position in the VALUES list (`column1`) instead.
pub(crate) fn read_schema(metadata: &strata_storage::TableMetadata) -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(
        metadata
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

/// Where a table column comes from in a data file.
#[derive(Debug)]
struct ColumnSource {
    field_id: u32,
    /// Its name in files written before field ids.
    legacy_name: Option<String>,
    /// Its value in files written before it existed.
    default: Option<ScalarValue>,
}

/// Reads each data file by field id; see the module docs.
#[derive(Debug)]
pub(crate) struct FieldIdAdapterFactory {
    columns: Arc<HashMap<String, ColumnSource>>,
}

impl FieldIdAdapterFactory {
    pub(crate) fn new(metadata: &TableMetadata) -> Self {
        let columns = metadata
            .columns
            .iter()
            .map(|c| {
                let legacy_name = metadata
                    .name_mapping
                    .iter()
                    .find(|(_, id)| **id == c.field_id)
                    .map(|(name, _)| name.clone());
                let default = c.initial_default.as_ref().and_then(|text| {
                    ScalarValue::Utf8(Some(text.clone()))
                        .cast_to(&c.data_type)
                        .ok()
                });
                let source = ColumnSource {
                    field_id: c.field_id,
                    legacy_name,
                    default,
                };
                (c.name.clone(), source)
            })
            .collect();
        Self {
            columns: Arc::new(columns),
        }
    }
}

impl PhysicalExprAdapterFactory for FieldIdAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> DfResult<Arc<dyn PhysicalExprAdapter>> {
        let by_id: HashMap<u32, usize> = physical_file_schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let id = f
                    .metadata()
                    .get(parquet::arrow::PARQUET_FIELD_ID_META_KEY)?;
                Some((id.parse().ok()?, i))
            })
            .collect();
        Ok(Arc::new(FieldIdAdapter {
            columns: Arc::clone(&self.columns),
            by_id,
            fallback: DefaultPhysicalExprAdapter::new(
                Arc::clone(&logical_file_schema),
                Arc::clone(&physical_file_schema),
            ),
            logical: logical_file_schema,
            physical: physical_file_schema,
        }))
    }
}

/// [`FieldIdAdapterFactory`]'s rewrite for one file.
#[derive(Debug)]
struct FieldIdAdapter {
    columns: Arc<HashMap<String, ColumnSource>>,
    /// The file's columns by field id; empty for a file written before field ids.
    by_id: HashMap<u32, usize>,
    /// For columns that are not the table's (the row number of a row-id scan).
    fallback: DefaultPhysicalExprAdapter,
    logical: SchemaRef,
    physical: SchemaRef,
}

impl FieldIdAdapter {
    /// The index in the file of the table column `source`, if the file has it.
    fn find(&self, source: &ColumnSource) -> Option<usize> {
        if self.by_id.is_empty() {
            let name = source.legacy_name.as_ref()?;
            self.physical.index_of(name).ok()
        } else {
            self.by_id.get(&source.field_id).copied()
        }
    }

    fn rewrite_column(&self, column: &Column) -> DfResult<Option<Arc<dyn PhysicalExpr>>> {
        let Some(source) = self.columns.get(column.name()) else {
            return Ok(None);
        };
        let logical = self.logical.field_with_name(column.name())?;
        let Some(index) = self.find(source) else {
            let value = match &source.default {
                Some(v) => v.cast_to(logical.data_type())?,
                None => ScalarValue::Null.cast_to(logical.data_type())?,
            };
            return Ok(Some(Arc::new(Literal::new(value))));
        };
        let physical = self.physical.field(index);
        let read: Arc<dyn PhysicalExpr> = Arc::new(Column::new(physical.name(), index));
        if physical.data_type() == logical.data_type() {
            return Ok(Some(read));
        }
        Ok(Some(Arc::new(CastExpr::new_with_target_field(
            read,
            Arc::new(logical.clone()),
            None,
        ))))
    }
}

impl PhysicalExprAdapter for FieldIdAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> DfResult<Arc<dyn PhysicalExpr>> {
        expr.transform(|e| {
            let Some(column) = e.downcast_ref::<Column>() else {
                return Ok(Transformed::no(e));
            };
            match self.rewrite_column(column)? {
                Some(read) => Ok(Transformed::yes(read)),
                None => Ok(Transformed::yes(self.fallback.rewrite(e)?)),
            }
        })
        .data()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use object_store::{ObjectStoreExt, PutPayload};
    use parquet::arrow::ArrowWriter;
    use strata_storage::{DataFile, Transaction};

    use crate::Warehouse;

    async fn rows(session: &mut crate::Session, sql: &str) -> String {
        let results = session.sql(sql).await.unwrap();
        arrow::util::pretty::pretty_format_batches(&results[0].batches)
            .unwrap()
            .to_string()
    }

    /// A table from before field ids: its files have plain column names, and its metadata a
    /// name mapping (what reading the old metadata gives it). Renames and drops still read
    /// those files right.
    #[tokio::test]
    async fn files_from_before_field_ids_are_read_by_the_name_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();
        session
            .sql("CREATE TABLE t (a BIGINT, b VARCHAR)")
            .await
            .unwrap();
        let entry = warehouse
            .catalog()
            .table("main", "public", "t")
            .unwrap()
            .clone();
        let log = warehouse.table_log(&entry.id, "main.public.t");
        let base = warehouse.snapshot(&log).await.unwrap();

        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["x", "y"])),
            ],
        )
        .unwrap();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let path = strata_storage::store::paths::new_data_file(&entry.id, "", "legacy");
        let size = bytes.len() as u64;
        warehouse
            .object_store()
            .put(&path, PutPayload::from(bytes))
            .await
            .unwrap();
        let mut metadata = base.metadata.clone();
        metadata.name_mapping = metadata
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.field_id))
            .collect();
        let mut txn = Transaction::new("INSERT");
        txn.replace_metadata = Some(metadata);
        txn.add.push(DataFile {
            path: path.to_string(),
            partition: String::new(),
            rows: 2,
            size_bytes: size,
            stats: BTreeMap::new(),
            field_ids: BTreeMap::new(),
            deletion_vector: None,
        });
        warehouse
            .commit("main.public.t", &log, &base, &txn)
            .await
            .unwrap();

        session
            .sql(
                "ALTER TABLE t RENAME COLUMN a TO id; ALTER TABLE t DROP COLUMN b; \
                 ALTER TABLE t ADD COLUMN b VARCHAR DEFAULT 'new'; \
                 ALTER TABLE t ADD COLUMN a BIGINT; INSERT INTO t VALUES (3, 'z', 30)",
            )
            .await
            .unwrap();
        let got = rows(&mut session, "SELECT id, b, a FROM t ORDER BY id").await;
        let expected = "\
+----+-----+----+
| id | b   | a  |
+----+-----+----+
| 1  | new |    |
| 2  | new |    |
| 3  | z   | 30 |
+----+-----+----+";
        assert_eq!(got, expected);
    }
}
