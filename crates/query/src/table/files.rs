//! The Parquet scan of a set of a table's data files, as DataFusion runs it: the one place that
//! builds a `DataSourceExec` over Strata's files, for table scans and for the key lookups of
//! constraint checks.

use datafusion::execution::runtime_env::RuntimeEnv;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;

/// DataFusion's name for the warehouse's object store.
pub(crate) const WAREHOUSE_STORE_URL: &str = "strata://warehouse";

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
    options: &ConfigOptions,
    runtime: &RuntimeEnv,
    schema: TableSchema,
    groups: Vec<FileGroup>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
    statistics: Option<Statistics>,
) -> DfResult<Arc<DataSourceExec>> {
    let parquet_options = datafusion::config::TableParquetOptions {
        global: options.execution.parquet.clone(),
        ..Default::default()
    };
    let store_url = ObjectStoreUrl::parse(WAREHOUSE_STORE_URL)?;
    let readers = CachedParquetFileReaderFactory::new(
        runtime.object_store(&store_url)?,
        runtime.cache_manager.get_file_metadata_cache(),
    );
    let source = ParquetSource::new(schema)
        .with_table_parquet_options(parquet_options)
        .with_parquet_file_reader_factory(Arc::new(readers));
    let mut config = FileScanConfigBuilder::new(store_url, Arc::new(source))
        .with_file_groups(groups)
        .with_projection_indices(projection.cloned())?
        .with_limit(limit);
    if let Some(stats) = statistics {
        config = config.with_statistics(stats);
    }
    Ok(DataSourceExec::from_data_source(config.build()))
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
