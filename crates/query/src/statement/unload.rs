//! Unload: `COPY INTO 's3://bucket/out/' | '/dir/' | @stage/path FROM (SELECT ...) | table
//! [PARTITION BY (expr)] [FILE_FORMAT = (TYPE = PARQUET | CSV | JSON ...)]
//! [CREDENTIALS = (SECRET = s)] [MAX_FILE_SIZE = bytes] [OVERWRITE = TRUE] [HEADER = TRUE]
//! [SINGLE = TRUE]`, Snowflake's form.
//!
//! The query's rows are written as files under the location: Parquet (Snappy, what every
//! reader takes), CSV or newline-delimited JSON, a new file when one reaches `MAX_FILE_SIZE`
//! (16 MB by default, as in Snowflake). `PARTITION BY (column)` writes Hive-style
//! `column=value/` folders without the column in the files (what DuckDB, Spark and Strata's
//! external tables read back as a column); `PARTITION BY (expression)` uses the expression's
//! text as the folder path, as Snowflake does (`'date=' || TO_CHAR(d, 'YYYY-MM-DD')`).
//!
//! File names carry the statement's id, so an unload never overwrites a file: without
//! `OVERWRITE = TRUE` a location that holds files is refused; with it the old files are deleted
//! only after every new file is written. A failing unload deletes the files it wrote. The
//! result lists each file with its rows and bytes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Query, Statement as SqlStatement};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression as ParquetCompression;
use parquet::file::properties::WriterProperties;
use strata_storage::Location;
use strata_storage::load::Compression;

use super::copy::s3_settings;
use super::file_formats;
use super::stages;
use crate::error::{Error, Result};
use crate::formats::{FormatSpec, boolean, key_values};
use crate::result::StatementResult;
use crate::session::Session;

/// Snowflake's default `MAX_FILE_SIZE`.
const DEFAULT_MAX_FILE_SIZE: u64 = 16 << 20;
/// The largest `MAX_FILE_SIZE` (and `SINGLE` file): a file is built in memory before it is
/// written.
const LARGEST_MAX_FILE_SIZE: u64 = 1 << 30;
/// Bytes buffered over all open files before the largest is closed early.
const BUFFER_BUDGET: usize = 256 << 20;
/// Folders one unload may write.
const MAX_PARTITIONS: usize = 1_000;
/// Files open at once (each holds a Parquet writer's buffers).
const MAX_OPEN_FILES: usize = 64;

/// The format files are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    Parquet,
    Csv { header: bool, delimiter: u8 },
    Json,
}

impl OutputFormat {
    fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Csv { .. } => "csv",
            OutputFormat::Json => "json",
        }
    }
}

/// Runs `COPY INTO <location> FROM ...`.
pub(crate) async fn unload(session: &Session, statement: &SqlStatement) -> Result<StatementResult> {
    let SqlStatement::CopyIntoSnowflake {
        into,
        from_obj,
        from_query,
        partition,
        file_format,
        copy_options,
        stage_params,
        into_columns,
        ..
    } = statement
    else {
        return Err(Error::Plan("expected COPY INTO <location>".to_string()));
    };
    if into_columns.is_some() {
        return Err(Error::Plan(
            "COPY INTO <location> takes no column list; select the columns in the query"
                .to_string(),
        ));
    }
    let target = stages::reference_text(into);
    let target = target.trim_matches('\'').to_string();
    let credentials = key_values(&stage_params.credentials);
    let mut format_options = file_formats::expand(session, key_values(file_format))?;
    let (url, settings) = if target.starts_with('@') {
        if !credentials.is_empty() || stage_params.endpoint.is_some() {
            return Err(Error::Plan(format!(
                "COPY INTO {target}: the stage brings its credentials; name none here"
            )));
        }
        let stage = stages::resolve(session, &target).await?;
        format_options = file_formats::overlay(&stage.file_format, format_options);
        (stage.url, stage.settings)
    } else {
        let settings = s3_settings(session, &credentials, stage_params.endpoint.as_deref()).await?;
        (target.clone(), settings)
    };
    let spec = FormatSpec::parse(&format_options)?;
    let format = match &spec.format {
        None | Some(strata_storage::load::FileFormat::Parquet) => OutputFormat::Parquet,
        Some(strata_storage::load::FileFormat::Json) => OutputFormat::Json,
        Some(strata_storage::load::FileFormat::Csv(_)) => OutputFormat::Csv {
            header: spec.csv.skip_header > 0,
            delimiter: spec.csv.delimiter,
        },
    };
    let compression = spec.compression.unwrap_or(Compression::None);
    if format == OutputFormat::Parquet && compression != Compression::None {
        return Err(Error::Plan(
            "COMPRESSION applies to CSV and JSON unloads; Parquet files compress their pages"
                .to_string(),
        ));
    }
    let mut max_file_size = DEFAULT_MAX_FILE_SIZE;
    let mut overwrite = false;
    let mut single = false;
    let mut header = None;
    for (key, values) in key_values(copy_options) {
        let v = values.concat();
        match key.as_str() {
            "MAX_FILE_SIZE" => {
                max_file_size = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=LARGEST_MAX_FILE_SIZE).contains(n))
                    .ok_or_else(|| {
                        Error::Plan(format!(
                            "MAX_FILE_SIZE = {v}: give bytes, from 1 to {LARGEST_MAX_FILE_SIZE}"
                        ))
                    })?
            }
            "OVERWRITE" => overwrite = boolean(&key, &v)?,
            "SINGLE" => single = boolean(&key, &v)?,
            "HEADER" => header = Some(boolean(&key, &v)?),
            "DETAILED_OUTPUT" => {}
            other => {
                return Err(Error::Unsupported(format!(
                    "COPY INTO <location> option {other} (use MAX_FILE_SIZE, OVERWRITE, \
                     HEADER, SINGLE)"
                )));
            }
        }
    }
    // Parquet and JSON files always carry the column names.
    let format = match (format, header) {
        (OutputFormat::Csv { delimiter, .. }, Some(header)) => {
            OutputFormat::Csv { header, delimiter }
        }
        (other, _) => other,
    };
    if single && partition.is_some() {
        return Err(Error::Plan(
            "SINGLE = TRUE writes one file; it cannot be partitioned".to_string(),
        ));
    }

    // The rows.
    let query: Box<Query> = match (from_query, from_obj) {
        (Some(q), _) => q.clone(),
        (None, Some(table)) => {
            let sql = format!("SELECT * FROM {table}");
            match crate::parser::parse(&sql)?.pop().map(|s| s.statement) {
                Some(crate::parser::Statement::Sql(s)) => match *s {
                    SqlStatement::Query(q) => q,
                    _ => return Err(Error::Plan(format!("cannot read {table}"))),
                },
                _ => return Err(Error::Plan(format!("cannot read {table}"))),
            }
        }
        (None, None) => {
            return Err(Error::Plan(
                "COPY INTO <location> needs FROM (SELECT ...) or FROM table".to_string(),
            ));
        }
    };
    let plan = session.plan(SqlStatement::Query(query), None).await?;
    let mut df = session.context().execute_logical_plan(plan).await?;
    let partitioning = match partition.as_deref() {
        None => Partitioning::None,
        Some(expr) => {
            let (expr, hive) = match unnest(expr) {
                SqlExpr::Identifier(ident) => {
                    let name = crate::parser::normalize(ident);
                    (
                        format!("{}", SqlExpr::Identifier(ident.clone())),
                        Some(name),
                    )
                }
                other => (format!("CAST(({other}) AS VARCHAR)"), None),
            };
            let state = session.context().state();
            let key = state.create_logical_expr(&expr, df.schema())?;
            df = df.with_column(PARTITION_KEY, key)?;
            match hive {
                Some(column) => Partitioning::Hive(column),
                None => Partitioning::Expression,
            }
        }
    };

    let location = Location::open(&url, &settings)?;
    session
        .warehouse()
        .refuse_overlap(&location, "COPY INTO <location>")
        .await?;
    let existing = location.list().await?;
    if single && url.ends_with('/') {
        return Err(Error::Plan(
            "SINGLE = TRUE names a file: give the location without a trailing /".to_string(),
        ));
    }
    let existing: Vec<_> = if single {
        existing
            .into_iter()
            .filter(|o| o.location == location.prefix)
            .collect()
    } else {
        existing
    };
    if !existing.is_empty() && !overwrite {
        return Err(Error::Plan(format!(
            "'{}' already holds {} file(s), first {}: write elsewhere, or add OVERWRITE = \
             TRUE to replace them",
            location.url_of(&location.prefix),
            existing.len(),
            location.url_of(&existing[0].location)
        )));
    }

    let mut writer = Unloader {
        location: &location,
        format,
        compression,
        max_file_size,
        single,
        statement_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        partitioning,
        open: HashMap::new(),
        counters: HashMap::new(),
        folders: std::collections::HashSet::new(),
        written: Vec::new(),
    };
    let outcome = async {
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            writer.write(batch?).await?;
        }
        writer.finish().await
    }
    .await;
    if let Err(e) = outcome {
        // Best effort: what this statement wrote goes.
        for file in &writer.written {
            let _ = location.store.delete(&file.path).await;
        }
        return Err(e);
    }
    // OVERWRITE replaces what unloads wrote (or the SINGLE file); other files stay.
    let new: std::collections::HashSet<&Path> = writer.written.iter().map(|f| &f.path).collect();
    let unloaded =
        regex::Regex::new(r"^data_[0-9a-f]{8}_[0-9]+[.](parquet|csv|json)([.](gz|zst|bz2))?$")
            .map_err(|e| Error::Plan(e.to_string()))?;
    let replaced = existing.iter().filter(|o| {
        !new.contains(&o.location)
            && (single || o.location.filename().is_some_and(|n| unloaded.is_match(n)))
    });
    for old in replaced {
        location
            .store
            .delete(&old.location)
            .await
            .map_err(strata_storage::Error::from)?;
    }
    report(&location, &writer.written)
}

/// The column holding each row's partition key while rows are split.
const PARTITION_KEY: &str = "__strata_unload_partition";

fn unnest(expr: &SqlExpr) -> &SqlExpr {
    match expr {
        SqlExpr::Nested(inner) => unnest(inner),
        SqlExpr::Tuple(items) if items.len() == 1 => unnest(&items[0]),
        other => other,
    }
}

/// How rows are split into folders.
#[derive(Debug, Clone)]
enum Partitioning {
    None,
    /// `column=value/` folders, the column left out of the files.
    Hive(String),
    /// The expression's text is the folder path.
    Expression,
}

/// A file written.
#[derive(Debug)]
struct Written {
    path: Path,
    rows: u64,
    bytes: u64,
}

/// A file being built in memory.
struct OpenFile {
    folder: String,
    rows: u64,
    body: Body,
}

enum Body {
    Parquet(Box<ArrowWriter<Vec<u8>>>),
    Text(Vec<u8>),
}

impl Body {
    fn size(&self) -> usize {
        match self {
            Body::Parquet(w) => w.inner().len() + w.in_progress_size(),
            Body::Text(b) => b.len(),
        }
    }
}

struct Unloader<'a> {
    location: &'a Location,
    format: OutputFormat,
    compression: Compression,
    max_file_size: u64,
    single: bool,
    statement_id: String,
    partitioning: Partitioning,
    /// Open files by folder.
    open: HashMap<String, OpenFile>,
    /// Files started per folder.
    counters: HashMap<String, u64>,
    /// Every folder rows went to.
    folders: std::collections::HashSet<String>,
    written: Vec<Written>,
}

impl Unloader<'_> {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let parts: Vec<(String, RecordBatch)> = match &self.partitioning {
            Partitioning::None => vec![(String::new(), batch)],
            partitioning => split(&batch, partitioning)?,
        };
        // Pieces small enough that a file can close near MAX_FILE_SIZE.
        let parts: Vec<(String, RecordBatch)> = parts
            .into_iter()
            .flat_map(|(folder, rows)| {
                let per_row = rows.get_array_memory_size() / rows.num_rows().max(1);
                let step = (self.max_file_size as usize / per_row.max(1)).clamp(1, 64 * 1024);
                (0..rows.num_rows())
                    .step_by(step)
                    .map(|at| {
                        (
                            folder.clone(),
                            rows.slice(at, step.min(rows.num_rows() - at)),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for (folder, rows) in parts {
            if self.folders.insert(folder.clone()) && self.folders.len() > MAX_PARTITIONS {
                return Err(Error::Plan(format!(
                    "PARTITION BY gives more than {MAX_PARTITIONS} folders; partition by \
                     something coarser"
                )));
            }
            let schema = rows.schema();
            let file = match self.open.remove(&folder) {
                Some(file) => file,
                None => OpenFile {
                    folder: folder.clone(),
                    rows: 0,
                    body: self.new_body(&schema)?,
                },
            };
            let mut file = file;
            file.rows += rows.num_rows() as u64;
            match &mut file.body {
                Body::Parquet(w) => w.write(&rows).map_err(strata_storage::Error::from)?,
                Body::Text(buffer) => self.append_text(buffer, &rows)?,
            }
            if !self.single && file.body.size() as u64 >= self.max_file_size {
                self.close(file).await?;
            } else {
                self.open.insert(folder, file);
            }
        }
        if self.single {
            // One file, built whole: bounded by the largest file size.
            let size = self.open.values().map(|f| f.body.size()).sum::<usize>();
            if size as u64 > LARGEST_MAX_FILE_SIZE {
                return Err(Error::Plan(format!(
                    "SINGLE = TRUE: the file would pass {} MiB; unload to several files",
                    LARGEST_MAX_FILE_SIZE >> 20
                )));
            }
            return Ok(());
        }
        // Bounded memory: close the largest open file when all of them hold too much, or when
        // too many are open.
        while self.open.values().map(|f| f.body.size()).sum::<usize>() > BUFFER_BUDGET
            || self.open.len() > MAX_OPEN_FILES
        {
            let Some(largest) = self
                .open
                .iter()
                .max_by_key(|(_, f)| f.body.size())
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(file) = self.open.remove(&largest) {
                self.close(file).await?;
            }
        }
        Ok(())
    }

    fn new_body(&self, schema: &SchemaRef) -> Result<Body> {
        Ok(match self.format {
            OutputFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(ParquetCompression::SNAPPY)
                    .build();
                Body::Parquet(Box::new(
                    ArrowWriter::try_new(Vec::new(), Arc::clone(schema), Some(props))
                        .map_err(strata_storage::Error::from)?,
                ))
            }
            OutputFormat::Csv { header, delimiter } => {
                let mut buffer = Vec::new();
                if header {
                    let names: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    let mut w = arrow::csv::WriterBuilder::new()
                        .with_header(false)
                        .with_delimiter(delimiter)
                        .build(&mut buffer);
                    let header_row = RecordBatch::try_new(
                        Arc::new(Schema::new(
                            names
                                .iter()
                                .map(|n| Field::new(*n, DataType::Utf8, false))
                                .collect::<Vec<_>>(),
                        )),
                        names
                            .iter()
                            .map(|n| Arc::new(StringArray::from(vec![*n])) as ArrayRef)
                            .collect(),
                    )?;
                    w.write(&header_row)?;
                }
                Body::Text(buffer)
            }
            OutputFormat::Json => Body::Text(Vec::new()),
        })
    }

    fn append_text(&self, buffer: &mut Vec<u8>, rows: &RecordBatch) -> Result<()> {
        match self.format {
            OutputFormat::Csv { delimiter, .. } => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .build(buffer);
                w.write(rows)?;
            }
            _ => {
                let mut w = arrow::json::LineDelimitedWriter::new(buffer);
                w.write(rows)?;
                w.finish()?;
            }
        }
        Ok(())
    }

    async fn close(&mut self, file: OpenFile) -> Result<()> {
        let body = match file.body {
            Body::Parquet(w) => w.into_inner().map_err(strata_storage::Error::from)?,
            Body::Text(b) => self
                .compression
                .compress(b)
                .map_err(|e| Error::Plan(format!("compressing an unloaded file: {e}")))?,
        };
        let path = if self.single {
            self.location.prefix.clone()
        } else {
            let n = self.counters.entry(file.folder.clone()).or_insert(0);
            let name = format!(
                "data_{}_{n}.{}{}",
                self.statement_id,
                self.format.extension(),
                match self.compression {
                    Compression::Gzip => ".gz",
                    Compression::Zstd => ".zst",
                    Compression::Bzip2 => ".bz2",
                    _ => "",
                }
            );
            *n += 1;
            let mut path = self.location.prefix.clone();
            for part in file.folder.split('/').filter(|p| !p.is_empty()) {
                path = path.clone().join(part);
            }
            path.clone().join(name.as_str())
        };
        let bytes = body.len() as u64;
        self.location
            .store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(strata_storage::Error::from)?;
        self.written.push(Written {
            path,
            rows: file.rows,
            bytes,
        });
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        let mut folders: Vec<String> = self.open.keys().cloned().collect();
        folders.sort();
        for folder in folders {
            if let Some(file) = self.open.remove(&folder) {
                self.close(file).await?;
            }
        }
        Ok(())
    }
}

/// Splits `batch` by its partition key into (folder, rows without the key) pairs.
fn split(batch: &RecordBatch, partitioning: &Partitioning) -> Result<Vec<(String, RecordBatch)>> {
    let key_at = batch.schema().index_of(PARTITION_KEY)?;
    let keys = arrow::compute::cast(batch.column(key_at), &DataType::Utf8)?;
    let keys = keys
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Plan("partition key is not text".to_string()))?;
    // Columns written: all but the key, and (Hive) but the partition column.
    let hidden: Vec<usize> = match partitioning {
        Partitioning::Hive(column) => {
            let schema = batch.schema();
            let mut hidden = vec![key_at];
            if let Some((i, _)) = schema
                .fields()
                .iter()
                .enumerate()
                .find(|(i, f)| *i != key_at && f.name() == column)
            {
                hidden.push(i);
            }
            hidden
        }
        _ => vec![key_at],
    };
    let kept: Vec<usize> = (0..batch.num_columns())
        .filter(|i| !hidden.contains(i))
        .collect();
    let rows = batch.project(&kept)?;
    let mut groups: Vec<(Option<&str>, Vec<u32>)> = Vec::new();
    let mut index: HashMap<Option<&str>, usize> = HashMap::new();
    for r in 0..keys.len() {
        let key = keys.is_valid(r).then(|| keys.value(r));
        let slot = *index.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(r as u32);
    }
    groups
        .into_iter()
        .map(|(key, rows_of)| {
            let folder = folder(key, partitioning)?;
            let take = UInt32Array::from(rows_of);
            let columns = rows
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c.as_ref(), &take, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok((folder, RecordBatch::try_new(rows.schema(), columns)?))
        })
        .collect()
}

/// The folder of a partition key: `column=value` (Hive), or the key's text as a path.
fn folder(key: Option<&str>, partitioning: &Partitioning) -> Result<String> {
    match partitioning {
        Partitioning::Hive(column) => {
            // Hive's name for NULL, which Spark, pyarrow and DuckDB read back as NULL.
            let value = key.map_or_else(|| HIVE_NULL.to_string(), hive_escape);
            Ok(format!("{}={value}", hive_escape(column)))
        }
        _ => {
            // Not `_NULL_`: names starting with `_` are not data to Hive, Spark or Strata.
            let Some(key) = key else {
                return Ok("NULL".to_string());
            };
            let segments: Vec<&str> = key.split('/').filter(|s| !s.is_empty()).collect();
            if segments.iter().any(|s| *s == "." || *s == "..") || segments.is_empty() {
                return Err(Error::Plan(format!(
                    "PARTITION BY gave '{key}': a folder path may not be empty or hold . or .."
                )));
            }
            Ok(segments.join("/"))
        }
    }
}

/// The folder value of a NULL partition key.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// A Hive partition value with `/`, `=`, `%` and control characters percent-encoded.
fn hive_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '/' | '=' | '%' | '\\') || c.is_control() {
            // Each UTF-8 byte, as Hive and pyarrow encode.
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

fn report(location: &Location, written: &[Written]) -> Result<StatementResult> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            written.iter().map(|w| location.url_of(&w.path)),
        )),
        Arc::new(Int64Array::from_iter_values(
            written.iter().map(|w| w.rows as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            written.iter().map(|w| w.bytes as i64),
        )),
    ];
    Ok(StatementResult {
        batches: vec![RecordBatch::try_new(Arc::clone(&schema), columns)?],
        schema,
    })
}
