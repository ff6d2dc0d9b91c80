//! External tables as DataFusion reads them: Parquet, CSV or JSON files read in place.
//!
//! The files are those of the table's last listing ([`ExternalTableEntry::files`]), so two
//! queries see the same files until `ALTER EXTERNAL TABLE ... REFRESH`. Hive-style `key=value`
//! folders give the values of the partition columns; a filter on partition columns is evaluated
//! on those values before the scan, so files in folders it excludes are never opened. The scan
//! itself is DataFusion's file scan of the format (its Parquet scan prunes row groups with the
//! query's filters too).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    CsvSource, FileScanConfigBuilder, FileSource, JsonSource, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use object_store::path::Path;
use strata_storage::load::{Compression, FileFormat};
use strata_storage::{ExternalFile, ExternalTableEntry, Location};

use super::files::balanced_groups;

/// How an external table's files are read.
#[derive(Debug, Clone)]
pub(crate) struct ExternalFormat {
    /// Parquet, CSV (with its options) or JSON.
    pub(crate) format: FileFormat,
    /// How CSV and JSON files are compressed.
    pub(crate) compression: Compression,
}

impl ExternalFormat {
    /// The format an external table's options (checked at creation, `TYPE` always among them)
    /// say.
    pub(crate) fn from_options(options: &[(String, Vec<String>)]) -> crate::error::Result<Self> {
        let spec = crate::formats::FormatSpec::parse(options)?;
        Ok(Self {
            format: spec.format_of(""),
            compression: spec.compression.unwrap_or(Compression::None),
        })
    }
}

/// An external table, ready to scan.
#[derive(Debug)]
pub(crate) struct ExternalTable {
    name: String,
    entry: ExternalTableEntry,
    location: Location,
    format: ExternalFormat,
    /// The columns in the files.
    file_schema: SchemaRef,
    /// The columns read from folder names.
    partition_fields: Vec<FieldRef>,
    /// Both.
    schema: SchemaRef,
}

impl ExternalTable {
    /// The table `name` described by `entry`, its files reached with `settings`.
    pub(crate) fn new(
        name: String,
        entry: ExternalTableEntry,
        settings: &[(String, String)],
        format: ExternalFormat,
    ) -> crate::error::Result<Self> {
        let location = Location::open(&entry.location, settings)?;
        let field = |c: &strata_storage::ColumnDef| {
            Arc::new(Field::new(&c.name, c.data_type.clone(), true)) as FieldRef
        };
        let (partition_fields, file_fields): (Vec<FieldRef>, Vec<FieldRef>) = {
            let mut partition = Vec::new();
            let mut file = Vec::new();
            for c in &entry.columns {
                if entry.partition_columns.contains(&c.name) {
                    partition.push(field(c));
                } else {
                    file.push(field(c));
                }
            }
            (partition, file)
        };
        let file_schema = Arc::new(Schema::new(file_fields.clone()));
        let schema = Arc::new(Schema::new(
            file_fields
                .into_iter()
                .chain(partition_fields.iter().cloned())
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            name,
            entry,
            location,
            format,
            file_schema,
            partition_fields,
            schema,
        })
    }

    /// The partition values of `file`, in the order of the partition columns.
    fn partition_values(&self, file: &ExternalFile) -> DfResult<Vec<ScalarValue>> {
        let folders: Vec<(&str, &str)> = file
            .path
            .split('/')
            .filter_map(|segment| segment.split_once('='))
            .collect();
        self.partition_fields
            .iter()
            .map(|field| {
                let value = folders
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field.name()))
                    // Once for object_store's encoding of the name, once for Hive's.
                    .map(|(_, v)| percent_decode(&percent_decode(v)))
                    .filter(|v| v != "NULL" && v != "__HIVE_DEFAULT_PARTITION__");
                match value {
                    None => ScalarValue::try_from(field.data_type()),
                    Some(v) => {
                        ScalarValue::try_from_string(v.clone(), field.data_type()).map_err(|_| {
                            DataFusionError::Execution(format!(
                                "external table {}: folder value '{v}' of {} in {} is not a {}",
                                self.name,
                                field.name(),
                                file.path,
                                strata_storage::sql_type_name(field.data_type())
                            ))
                        })
                    }
                }
            })
            .collect()
    }

    /// The files whose partition values pass every filter on partition columns alone.
    fn pruned_files(
        &self,
        state: &dyn Session,
        filters: &[Expr],
    ) -> DfResult<Vec<(ExternalFile, Vec<ScalarValue>)>> {
        let files: Vec<(ExternalFile, Vec<ScalarValue>)> = self
            .entry
            .files
            .iter()
            .map(|f| Ok((f.clone(), self.partition_values(f)?)))
            .collect::<DfResult<_>>()?;
        let on_partitions: Vec<&Expr> = filters
            .iter()
            .filter(|f| self.only_partition_columns(f))
            .collect();
        if on_partitions.is_empty() || files.is_empty() || self.partition_fields.is_empty() {
            return Ok(files);
        }
        let partition_schema = Arc::new(Schema::new(self.partition_fields.clone()));
        let columns: Vec<ArrayRef> = (0..self.partition_fields.len())
            .map(|i| ScalarValue::iter_to_array(files.iter().map(|(_, v)| v[i].clone())))
            .collect::<DfResult<_>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&partition_schema), columns)?;
        let df_schema = DFSchema::try_from(partition_schema)?;
        let mut keep = vec![true; files.len()];
        for filter in on_partitions {
            let expr = state.create_physical_expr(filter.clone(), &df_schema)?;
            let result = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
            let Some(mask) = result.as_any().downcast_ref::<BooleanArray>() else {
                continue;
            };
            for (i, k) in keep.iter_mut().enumerate() {
                *k &= mask.is_valid(i) && mask.value(i);
            }
        }
        Ok(files
            .into_iter()
            .zip(keep)
            .filter_map(|(f, k)| k.then_some(f))
            .collect())
    }

    fn only_partition_columns(&self, filter: &Expr) -> bool {
        let columns = filter.column_refs();
        !columns.is_empty()
            && columns.iter().all(|c| {
                self.partition_fields
                    .iter()
                    .any(|f| f.name() == c.name.as_str())
            })
    }

    fn source(&self, table_schema: TableSchema) -> Arc<dyn FileSource> {
        match &self.format.format {
            FileFormat::Parquet => Arc::new(ParquetSource::new(table_schema)),
            FileFormat::Json => Arc::new(JsonSource::new(table_schema)),
            FileFormat::Csv(csv) => {
                let options = datafusion::config::CsvOptions {
                    has_header: Some(csv.skip_header > 0),
                    delimiter: csv.delimiter,
                    quote: csv.quote,
                    escape: csv.escape,
                    ..Default::default()
                };
                Arc::new(CsvSource::new(table_schema).with_csv_options(options))
            }
        }
    }
}

/// `%2F` and the like back to the characters they encode.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = value.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[async_trait]
impl TableProvider for ExternalTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters on partition columns prune files; every filter is still applied to rows.
        Ok(filters
            .iter()
            .map(|f| {
                if self.only_partition_columns(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // A bucket is registered under a name of its own per location and secret: two tables
        // on buckets of one name (AWS and MinIO, say) never read through each other's store.
        let store_url = if self.location.store_url == "file://" {
            ObjectStoreUrl::parse("file://")?
        } else {
            let key = format!(
                "{}\n{}",
                self.entry.location,
                self.entry.secret.as_deref().unwrap_or_default()
            );
            let url = ObjectStoreUrl::parse(format!(
                "strata-external://{:016x}",
                strata_storage::records::stable_digest(&key)
            ))?;
            state
                .runtime_env()
                .register_object_store(url.as_ref(), Arc::clone(&self.location.store));
            url
        };
        let files: Vec<PartitionedFile> = self
            .pruned_files(state, filters)?
            .into_iter()
            .map(|(file, values)| {
                let path = self.location.object_path(&file.path);
                // The listed path is already in object_store's encoding: parse, not re-encode.
                let mut scanned = PartitionedFile::new(String::new(), file.size_bytes);
                scanned.object_meta.location =
                    Path::parse(&path).map_err(|e| DataFusionError::External(Box::new(e)))?;
                scanned.partition_values = values;
                Ok(scanned)
            })
            .collect::<DfResult<_>>()?;
        let table_schema = TableSchema::builder(Arc::clone(&self.file_schema))
            .with_table_partition_cols(self.partition_fields.clone())
            .build();
        let groups = balanced_groups(files, state.config().target_partitions());
        let compression = match self.format.compression {
            Compression::None => FileCompressionType::UNCOMPRESSED,
            Compression::Gzip => FileCompressionType::GZIP,
            Compression::Zstd => FileCompressionType::ZSTD,
            Compression::Bzip2 => FileCompressionType::BZIP2,
        };
        let config = FileScanConfigBuilder::new(store_url, self.source(table_schema))
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_file_compression_type(compression)
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
