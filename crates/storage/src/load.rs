//! Reading source files for `COPY INTO`: CSV, newline-delimited JSON and Parquet.
//!
//! Sources are local paths, `file://` URLs, directories (every file in them) or globs, and the
//! same on S3 (`s3://bucket/landing/2024-*.csv`). Each file is read into batches of the table's
//! schema; any failure names the file and, where the reader can tell, the line or row group and
//! the column, so a user can fix the input.
//!
//! A remote file is fetched whole before it is read (Parquet needs random access, and a fetch is
//! one request); load files of the size object stores recommend (100–250 MB), not one huge file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::{Buf, Bytes};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;

use crate::error::{Error, Result};
use crate::store::{is_s3, open_s3};

/// Rows per batch read from a source file.
const READ_BATCH_ROWS: usize = 64 * 1024;

/// CSV parsing options (Snowflake `FILE_FORMAT = (TYPE = CSV ...)`).
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Lines to skip at the start (`SKIP_HEADER`); 1 also enables header validation.
    pub skip_header: usize,
    pub delimiter: u8,
    pub quote: u8,
    pub escape: Option<u8>,
    /// Strings read as NULL (`NULL_IF`).
    pub null_if: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            skip_header: 0,
            delimiter: b',',
            quote: b'"',
            escape: None,
            null_if: vec!["\\N".to_string()],
        }
    }
}

/// The format of source files.
#[derive(Debug, Clone)]
pub enum FileFormat {
    Csv(CsvOptions),
    /// Newline-delimited JSON objects, matched to columns by name.
    Json,
    /// Parquet, matched to columns by name (or by position if names differ).
    Parquet,
}

impl FileFormat {
    /// Guesses the format from a file extension; CSV otherwise.
    pub fn from_extension(path: &str) -> Self {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".parquet") {
            FileFormat::Parquet
        } else if lower.ends_with(".json")
            || lower.ends_with(".ndjson")
            || lower.ends_with(".jsonl")
        {
            FileFormat::Json
        } else {
            FileFormat::Csv(CsvOptions::default())
        }
    }
}

/// A file to load.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The local path or URL, as recorded in load history.
    pub name: String,
    pub size_bytes: u64,
    pub modified: Option<DateTime<Utc>>,
    origin: Origin,
}

#[derive(Debug, Clone)]
enum Origin {
    Local(PathBuf),
    Remote {
        store: Arc<dyn ObjectStore>,
        path: object_store::path::Path,
    },
}

/// The bytes of a source file, ready to read: a local file, or a fetched remote object.
#[derive(Debug)]
pub enum SourceData {
    File(File),
    Bytes(Bytes),
}

impl SourceData {
    /// All the bytes.
    fn bytes(self) -> std::io::Result<Bytes> {
        match self {
            SourceData::File(mut f) => {
                let mut buffer = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut buffer)?;
                Ok(Bytes::from(buffer))
            }
            SourceData::Bytes(b) => Ok(b),
        }
    }

    /// A buffered reader over the bytes.
    fn buffered(self) -> Box<dyn BufRead> {
        match self {
            SourceData::File(f) => Box::new(BufReader::new(f)),
            SourceData::Bytes(b) => Box::new(b.reader()),
        }
    }
}

impl SourceFile {
    /// The file name as recorded in load history.
    pub fn display(&self) -> String {
        self.name.clone()
    }

    /// Opens the file: a local one as it is, a remote one fetched whole.
    pub async fn open(&self) -> Result<SourceData> {
        let fail = |reason: String| Error::Load {
            file: self.name.clone(),
            reason,
        };
        match &self.origin {
            Origin::Local(path) => File::open(path)
                .map(SourceData::File)
                .map_err(|e| fail(format!("cannot open: {e}"))),
            Origin::Remote { store, path } => {
                let got = store
                    .get(path)
                    .await
                    .map_err(|e| fail(format!("cannot fetch: {e}")))?;
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| fail(format!("cannot fetch: {e}")))?;
                Ok(SourceData::Bytes(bytes))
            }
        }
    }
}

/// Lists the files named by `location`: a file, a directory, a glob, or a URL of one
/// (`file://`, `s3://`). `s3_settings` add to the `AWS_*` environment (credentials given with
/// the statement).
pub async fn list_sources(
    location: &str,
    s3_settings: &[(String, String)],
) -> Result<Vec<SourceFile>> {
    if is_s3(location) {
        list_remote(location, s3_settings).await
    } else {
        // Directory listings and globs block: keep them off the async workers.
        let location = location.to_string();
        tokio::task::spawn_blocking(move || list_local(&location))
            .await
            .map_err(|e| Error::InvalidArgument(format!("listing files: {e}")))?
    }
}

fn list_local(location: &str) -> Result<Vec<SourceFile>> {
    let location = location.strip_prefix("file://").unwrap_or(location);
    if location.contains("://") {
        return Err(Error::InvalidArgument(format!(
            "cannot load from '{location}': only local paths and file:// URLs are supported"
        )));
    }
    let path = Path::new(location);
    let mut paths: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|source| Error::Io {
                path: location.to_string(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else if location.contains(['*', '?', '[']) {
        glob::glob(location)
            .map_err(|e| Error::InvalidArgument(format!("bad pattern '{location}': {e}")))?
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect()
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        return Err(Error::NoFilesMatch {
            pattern: location.to_string(),
        });
    };
    if paths.is_empty() {
        return Err(Error::NoFilesMatch {
            pattern: location.to_string(),
        });
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            let path = path.canonicalize().unwrap_or(path);
            Ok(SourceFile {
                name: path.display().to_string(),
                size_bytes: meta.len(),
                modified: meta.modified().ok().map(DateTime::<Utc>::from),
                origin: Origin::Local(path),
            })
        })
        .collect()
}

/// Lists `s3://bucket/key`: the object `key`, the objects directly under `key/`, or the objects
/// matching `key` as a glob (`*` and `?` stay within one path segment).
async fn list_remote(location: &str, settings: &[(String, String)]) -> Result<Vec<SourceFile>> {
    let no_files = || Error::NoFilesMatch {
        pattern: location.to_string(),
    };
    let (store, bucket, key) = open_s3(location, settings)?;
    let key = key.trim_matches('/');
    let parse = |p: &str| {
        object_store::path::Path::parse(p)
            .map_err(|e| Error::InvalidArgument(format!("'{location}': {e}")))
    };
    let mut objects: Vec<ObjectMeta> = if let Some(glob_at) = key.find(['*', '?', '[']) {
        let pattern = glob::Pattern::new(key)
            .map_err(|e| Error::InvalidArgument(format!("bad pattern '{location}': {e}")))?;
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        let prefix = parse(key[..glob_at].rsplit_once('/').map_or("", |(dir, _)| dir))?;
        store
            .list(Some(&prefix))
            .try_filter(|o| std::future::ready(pattern.matches_with(o.location.as_ref(), options)))
            .try_collect()
            .await?
    } else {
        let path = parse(key)?;
        match store.head(&path).await {
            Ok(meta) if !key.is_empty() => vec![meta],
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                store.list_with_delimiter(Some(&path)).await?.objects
            }
            Err(e) => return Err(e.into()),
        }
    };
    if objects.is_empty() {
        return Err(no_files());
    }
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(objects
        .into_iter()
        .map(|o| SourceFile {
            name: format!("{bucket}/{}", o.location),
            size_bytes: o.size,
            modified: Some(o.last_modified),
            origin: Origin::Remote {
                store: Arc::clone(&store),
                path: o.location,
            },
        })
        .collect())
}

/// Reads `data`, the contents of `file`, as batches of `schema`, passing each to `sink`.
/// Blocking: call off the async runtime. Errors name the file.
pub fn read_file(
    file: &SourceFile,
    data: SourceData,
    format: &FileFormat,
    schema: &SchemaRef,
    mut sink: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<u64> {
    let name = file.display();
    let fail = |reason: String| Error::Load {
        file: name.clone(),
        reason,
    };
    let mut rows = 0u64;
    match format {
        FileFormat::Csv(options) => {
            // Read every field as text, then convert column by column: a value that does not
            // convert is reported with its line, column and text.
            let text_schema = Arc::new(Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| Field::new(f.name(), DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            ));
            let mut builder = arrow::csv::ReaderBuilder::new(text_schema)
                .with_header(false)
                .with_delimiter(options.delimiter)
                .with_quote(options.quote)
                .with_batch_size(READ_BATCH_ROWS);
            if let Some(escape) = options.escape {
                builder = builder.with_escape(escape);
            }
            let mut null_if: Vec<String> =
                options.null_if.iter().map(|s| regex::escape(s)).collect();
            null_if.push(String::new());
            let null_regex = regex::Regex::new(&format!("^({})$", null_if.join("|")))
                .map_err(|e| fail(format!("bad NULL_IF: {e}")))?;
            builder = builder.with_null_regex(null_regex);
            let mut reader = data.buffered();
            skip_lines(&mut reader, options.skip_header).map_err(|e| fail(e.to_string()))?;
            let reader = builder.build(reader).map_err(|e| fail(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| {
                    fail(describe_csv_error(
                        &e.to_string(),
                        schema,
                        options.skip_header,
                    ))
                })?;
                let first_line = options.skip_header as u64 + rows + 1;
                let typed = typed_from_text(&batch, schema, first_line).map_err(&fail)?;
                rows += batch.num_rows() as u64;
                sink(typed).map_err(|e| fail(e.to_string()))?;
            }
        }
        FileFormat::Json => {
            // Held whole, so that an error can be traced to its line.
            let bytes = data
                .bytes()
                .map_err(|e| fail(format!("cannot read: {e}")))?;
            let reader = arrow::json::ReaderBuilder::new(plain_schema(schema))
                .with_batch_size(READ_BATCH_ROWS)
                .build(bytes.clone().reader())
                .map_err(|e| fail(e.to_string()))?;
            for batch in reader {
                let batch =
                    batch.map_err(|e| fail(describe_json_error(&e.to_string(), &bytes, rows)))?;
                rows += batch.num_rows() as u64;
                sink(batch).map_err(|e| fail(e.to_string()))?;
            }
        }
        FileFormat::Parquet => {
            rows = match data {
                SourceData::File(f) => read_parquet(f, schema, sink, &fail)?,
                SourceData::Bytes(b) => read_parquet(b, schema, sink, &fail)?,
            }
        }
    }
    Ok(rows)
}

/// Reads a Parquet file as batches of `schema`; columns are matched by name (or position).
fn read_parquet<R: ChunkReader + 'static>(
    reader: R,
    schema: &SchemaRef,
    mut sink: impl FnMut(RecordBatch) -> Result<()>,
    fail: &dyn Fn(String) -> Error,
) -> Result<u64> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader)
        .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?;
    let file_schema = Arc::clone(builder.schema());
    let indices = match_columns(&file_schema, schema).map_err(fail)?;
    let row_groups: Vec<i64> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows())
        .collect();
    let reader = builder
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| {
            fail(format!(
                "{e} (row group {} of {})",
                row_group_of(&row_groups, rows),
                row_groups.len()
            ))
        })?;
        let picked = batch.project(&indices)?;
        rows += picked.num_rows() as u64;
        let row_group = row_group_of(&row_groups, rows.saturating_sub(1));
        sink(picked).map_err(|e| fail(format!("{e} (row group {row_group})")))?;
    }
    Ok(rows)
}

/// Converts a batch of CSV text columns to `schema`; an unconvertible value is reported with its
/// line (`first_line` is the line of the batch's first row), column and text.
fn typed_from_text(
    batch: &RecordBatch,
    schema: &SchemaRef,
    first_line: u64,
) -> Result<RecordBatch, String> {
    let strict = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, text) in schema.fields().iter().zip(batch.columns()) {
        match arrow::compute::cast_with_options(text, field.data_type(), &strict) {
            Ok(c) => columns.push(c),
            Err(e) => {
                let lenient =
                    arrow::compute::cast(text, field.data_type()).map_err(|e| e.to_string())?;
                let row = (0..text.len()).find(|r| text.is_valid(*r) && lenient.is_null(*r));
                let strings = text.as_string::<i32>();
                return Err(match row {
                    Some(r) => format!(
                        "line {}: column '{}': cannot read '{}' as {}",
                        first_line + r as u64,
                        field.name(),
                        strings.value(r),
                        field.data_type()
                    ),
                    None => format!("column '{}': {e}", field.name()),
                });
            }
        }
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| e.to_string())
}

/// The schema without field metadata, as readers produce it.
fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect::<Vec<_>>(),
    ))
}

fn row_group_of(row_groups: &[i64], row: u64) -> usize {
    let mut seen = 0u64;
    for (i, n) in row_groups.iter().enumerate() {
        seen += *n as u64;
        if row < seen {
            return i;
        }
    }
    row_groups.len().saturating_sub(1)
}

fn skip_lines(reader: &mut impl std::io::BufRead, n: usize) -> std::io::Result<()> {
    let mut line = Vec::new();
    for _ in 0..n {
        line.clear();
        reader.read_until(b'\n', &mut line)?;
    }
    Ok(())
}

/// Table columns in the file: by name when every table column is present, else by position.
fn match_columns(file: &SchemaRef, table: &SchemaRef) -> Result<Vec<usize>, String> {
    let by_name: Option<Vec<usize>> = table
        .fields()
        .iter()
        .map(|f| {
            file.fields()
                .iter()
                .position(|ff| ff.name().eq_ignore_ascii_case(f.name()))
        })
        .collect();
    match by_name {
        Some(indices) => Ok(indices),
        None if file.fields().len() == table.fields().len() => {
            Ok((0..table.fields().len()).collect())
        }
        None => {
            let missing: Vec<&str> = table
                .fields()
                .iter()
                .filter(|f| file.field_with_name(f.name()).is_err())
                .map(|f| f.name().as_str())
                .collect();
            Err(format!(
                "the file has no column {} and its {} columns cannot be matched by position to the table's {}",
                missing.join(", "),
                file.fields().len(),
                table.fields().len()
            ))
        }
    }
}

/// Names the line of a JSON reader error: the first line, from the batch that failed (which
/// starts after `rows_before` rows), that is not a JSON object, or else the batch's first line.
fn describe_json_error(message: &str, bytes: &Bytes, rows_before: u64) -> String {
    let lines = bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    for (i, line) in lines.skip(rows_before as usize) {
        if let Err(e) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line) {
            return format!("line {}: not a JSON object: {e} ({message})", i + 1);
        }
    }
    format!(
        "{message} (in the batch of lines starting at line {})",
        rows_before + 1
    )
}

/// Rewrites arrow-csv's "column N at line L" (both counted from 0) and "for line L" (counted
/// from 1) into the column name and the real line number of the file, skipped lines included.
fn describe_csv_error(message: &str, schema: &SchemaRef, skipped: usize) -> String {
    let re = regex::Regex::new(r"column (\d+) at line (\d+)").expect("valid regex");
    let mut text = message.to_string();
    if let Some(c) = re.captures(message) {
        let col: usize = c[1].parse().unwrap_or(0);
        let line: usize = c[2].parse().unwrap_or(0);
        let name = schema
            .fields()
            .get(col)
            .map(|f| f.name().as_str())
            .unwrap_or("?");
        text = re
            // Value errors count rows from 0.
            .replace(
                message,
                format!("column '{name}' at line {}", line + skipped + 1),
            )
            .into_owned();
    }
    let fields = regex::Regex::new(r"for line (\d+)").expect("valid regex");
    if let Some(c) = fields.captures(&text.clone()) {
        let line: usize = c[1].parse().unwrap_or(0);
        text = fields
            .replace(&text, format!("for line {}", line + skipped))
            .into_owned();
    }
    // Invalid UTF-8: name the column (arrow counts fields from 1) and the likely cause.
    let field = regex::Regex::new(r"and field (\d+)").expect("valid regex");
    if let Some(c) = field.captures(&text.clone()) {
        let index: usize = c[1].parse().unwrap_or(1);
        let name = schema
            .fields()
            .get(index.saturating_sub(1))
            .map_or("?", |f| f.name().as_str());
        text = field
            .replace(&text, format!("and column '{name}'"))
            .into_owned();
        text.push_str(" (the file is not UTF-8; convert it first, e.g. iconv -f latin1 -t utf-8)");
    }
    if text.contains("incorrect number of fields") {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        text.push_str(&format!(
            " (the table has {} columns: {}; look for a missing or extra delimiter or an \
             unterminated quote)",
            names.len(),
            names.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};
    use std::io::Write;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Float64, true),
        ]))
    }

    #[test]
    fn a_bad_csv_value_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        let mut f = File::create(&path).unwrap();
        writeln!(f, "id,amount\n1,2.5\n2,abc").unwrap();
        let file = &list_local(path.to_str().unwrap()).unwrap()[0];
        let format = FileFormat::Csv(CsvOptions {
            skip_header: 1,
            ..Default::default()
        });
        let data = SourceData::File(File::open(&path).unwrap());
        let err = read_file(file, data, &format, &schema(), |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.csv") && err.contains("line 3: column 'amount': cannot read 'abc'"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_parquet_file_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.parquet");
        std::fs::write(&path, b"PAR1 not really").unwrap();
        let file = &list_local(path.to_str().unwrap()).unwrap()[0];
        let data = SourceData::Bytes(Bytes::from(std::fs::read(&path).unwrap()));
        let err = read_file(file, data, &FileFormat::Parquet, &schema(), |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut.parquet"), "{err}");
    }
}
