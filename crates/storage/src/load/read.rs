//! Reading one source file into batches of a table's schema, record by record.
//!
//! A load must say exactly what is wrong with its input, and with `ON_ERROR = CONTINUE` it must
//! keep every good row of a file that has bad ones. So the readers work a record at a time where
//! a record can be bad on its own: a CSV record with the wrong number of fields or bytes that are
//! not UTF-8, a JSON line that is not an object or does not decode, a value of any format that
//! does not convert to its column's type, a NULL in a NOT NULL column. Each such record becomes a
//! [`RowError`] naming its line, column, value and reason; the rest of the batch goes on. With
//! [`OnRowError::Fail`] the first one fails the file instead.
//!
//! Problems with the whole file (unreadable Parquet, columns that cannot be matched, I/O) are
//! errors of the file in both modes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, RecordBatch, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;

use super::source::{CsvOptions, FileFormat, SourceData, SourceFile};
use crate::error::{Error, Result};

/// Rows per batch read from a source file.
const READ_BATCH_ROWS: usize = 64 * 1024;

/// How the columns of a Parquet or JSON file are matched to the table's
/// (`MATCH_BY_COLUMN_NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColumnMatch {
    /// Parquet: by name (any case) if the file has every table column, else by position if
    /// the counts agree; JSON: by key.
    #[default]
    Auto,
    /// By name, exactly; a table column the file lacks is NULL, a file column the table lacks
    /// is left out.
    CaseSensitive,
    /// By name, in any case; otherwise as [`ColumnMatch::CaseSensitive`].
    CaseInsensitive,
}

impl ColumnMatch {
    /// Whether a file's column `name` is the table's column `column`.
    pub fn matches(self, name: &str, column: &str) -> bool {
        match self {
            ColumnMatch::CaseSensitive => name == column,
            ColumnMatch::Auto | ColumnMatch::CaseInsensitive => name.eq_ignore_ascii_case(column),
        }
    }
}

/// What a reader does with a bad record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRowError {
    /// Fail the file with the first bad record.
    Fail,
    /// Leave the record out and report it in [`SourceBatch::errors`].
    Collect,
}

/// A record that cannot be loaded, or (with no line) a problem of a whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The line of a CSV or JSON file, the row of a Parquet file, counted from 1.
    pub line: Option<u64>,
    /// The column or columns at fault.
    pub column: Option<String>,
    /// The offending value as text.
    pub value: Option<String>,
    /// Why it was rejected.
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(column) = &self.column {
            write!(f, "column '{column}': ")?;
        }
        f.write_str(&self.reason)
    }
}

/// Rows read from a source file, in the table's schema, with the records left out of them.
#[derive(Debug)]
pub struct SourceBatch {
    /// The rows read, in the table's schema.
    pub rows: RecordBatch,
    /// The line (row, for Parquet) of each row of `rows`.
    pub lines: Vec<u64>,
    /// Records of this stretch of the file that were left out, by line.
    pub errors: Vec<RowError>,
}

/// Reads `data`, the contents of `file`, as batches of `schema`, passing each to `sink`, and
/// returns the number of records read (loaded or not). Blocking: call off the async runtime.
/// Errors name the file.
pub fn read_file(
    file: &SourceFile,
    data: SourceData,
    format: &FileFormat,
    matching: ColumnMatch,
    schema: &SchemaRef,
    on_error: OnRowError,
    mut sink: impl FnMut(SourceBatch) -> Result<()>,
) -> Result<u64> {
    let name = file.display();
    let fail = |reason: String| Error::Load {
        file: name.clone(),
        reason,
    };
    // The first bad record fails the file in `Fail` mode.
    let mut deliver = |batch: SourceBatch| -> Result<()> {
        if on_error == OnRowError::Fail
            && let Some(first) = batch.errors.first()
        {
            return Err(fail(first.to_string()));
        }
        sink(batch).map_err(|e| fail(e.to_string()))
    };
    // The Parquet reader asserts on some damaged files (fuzzing found one: "column start and
    // length should not be negative"); a panic of a reader is the file's error, not the
    // process's.
    let read = std::panic::AssertUnwindSafe(|| match format {
        FileFormat::Csv(options) => {
            let mut reader = data.buffered();
            skip_lines(&mut reader, options.skip_header).map_err(|e| fail(e.to_string()))?;
            read_csv(reader, options, schema, on_error, &mut deliver, &fail)
        }
        FileFormat::Json => {
            let bytes = data
                .bytes()
                .map_err(|e| fail(format!("cannot read: {e}")))?;
            let bytes = match matching {
                ColumnMatch::CaseInsensitive => keys_as_columns(&bytes, schema),
                _ => bytes,
            };
            read_json(&bytes, schema, &mut deliver, &fail)
        }
        FileFormat::Parquet => match data {
            SourceData::File(f) => read_parquet(f, schema, matching, &mut deliver, &fail),
            SourceData::Bytes(b) => read_parquet(b, schema, matching, &mut deliver, &fail),
            SourceData::Decompressed(_) => Err(compressed_parquet(&fail)),
        },
    });
    std::panic::catch_unwind(read).unwrap_or_else(|payload| {
        Err(fail(format!(
            "the file is damaged: its reader failed ({})",
            crate::error::panic_message(payload.as_ref())
        )))
    })
}

/// The columns of a Parquet or JSON file (`ENABLE_SCHEMA_EVOLUTION`): the Parquet schema, or
/// the types the JSON values of the whole file infer to. Blocking: call off the async runtime.
pub fn file_columns(
    file: &SourceFile,
    data: SourceData,
    format: &FileFormat,
) -> Result<Vec<Field>> {
    let fail = |reason: String| Error::Load {
        file: file.display(),
        reason,
    };
    fn parquet_fields<R: ChunkReader + 'static>(reader: R) -> Result<Vec<Field>, String> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(reader)
            .map_err(|e| format!("not a readable Parquet file: {e}"))?;
        Ok(builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect())
    }
    let read = std::panic::AssertUnwindSafe(|| -> Result<Vec<Field>, String> {
        match format {
            FileFormat::Parquet => match data {
                SourceData::File(f) => parquet_fields(f),
                SourceData::Bytes(b) => parquet_fields(b),
                SourceData::Decompressed(_) => Err(COMPRESSED_PARQUET.to_string()),
            },
            FileFormat::Json => {
                let bytes = data.bytes().map_err(|e| format!("cannot read: {e}"))?;
                let (schema, _) =
                    arrow::json::reader::infer_json_schema(std::io::Cursor::new(&bytes[..]), None)
                        .map_err(|e| format!("cannot infer the columns of the file: {e}"))?;
                Ok(schema.fields().iter().map(|f| f.as_ref().clone()).collect())
            }
            FileFormat::Csv(_) => {
                Err("new columns are found in Parquet and JSON files, not CSV".to_string())
            }
        }
    });
    std::panic::catch_unwind(read)
        .unwrap_or_else(|payload| {
            Err(format!(
                "the file is damaged: its reader failed ({})",
                crate::error::panic_message(payload.as_ref())
            ))
        })
        .map_err(fail)
}

const COMPRESSED_PARQUET: &str =
    "a compressed Parquet file: Parquet compresses its pages itself; load the .parquet file";

fn compressed_parquet(fail: &dyn Fn(String) -> Error) -> Error {
    fail(COMPRESSED_PARQUET.to_string())
}

/// CSV: every field is read as text, then converted column by column (see [`conform_rows`]).
fn read_csv(
    reader: Box<dyn std::io::BufRead>,
    options: &CsvOptions,
    schema: &SchemaRef,
    on_error: OnRowError,
    deliver: &mut dyn FnMut(SourceBatch) -> Result<()>,
    fail: &dyn Fn(String) -> Error,
) -> Result<u64> {
    let newlines = Rc::new(RefCell::new(Newlines::default()));
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(options.delimiter)
        .quote(options.quote)
        .escape(options.escape)
        .trim(if options.trim_space {
            csv::Trim::Fields
        } else {
            csv::Trim::None
        })
        .buffer_capacity(1 << 20)
        .from_reader(LineCounter {
            inner: reader,
            offset: 0,
            last: 0,
            newlines: Rc::clone(&newlines),
        });
    let null_if: Vec<&[u8]> = options.null_if.iter().map(|s| s.as_bytes()).collect();
    let width = schema.fields().len();
    let mut text = TextRows::new(width);
    let mut errors = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut records = 0u64;
    let skipped = options.skip_header as u64;
    while csv
        .read_byte_record(&mut record)
        .map_err(|e| fail(e.to_string()))?
    {
        records += 1;
        let start = record.position().map_or(0, |p| p.byte());
        let line = newlines.borrow_mut().line_at(start) + skipped;
        if let Err(error) = text.push(&record, line, schema, &null_if, options) {
            errors.push(error);
            // In `Fail` mode this fails, with the bad record or an earlier bad value.
            if on_error == OnRowError::Fail {
                text.flush(schema, options, &mut errors, deliver)?;
            }
        }
        if text.lines.len() == READ_BATCH_ROWS {
            text.flush(schema, options, &mut errors, deliver)?;
        }
    }
    text.flush(schema, options, &mut errors, deliver)?;
    Ok(records)
}

/// Passes bytes through to the CSV reader, noting where every line ends: the reader's own
/// line numbers are wrong after blank lines and with CRLF endings (rust-csv #208, #395), its
/// byte offsets are not.
struct LineCounter<R> {
    inner: R,
    offset: u64,
    last: u8,
    newlines: Rc<RefCell<Newlines>>,
}

impl<R: std::io::Read> std::io::Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut newlines = self.newlines.borrow_mut();
        for i in memchr::memchr_iter(b'\n', &buf[..n]) {
            let previous = if i == 0 { self.last } else { buf[i - 1] };
            newlines
                .pending
                .push_back((self.offset + i as u64, previous == b'\r'));
        }
        if n > 0 {
            self.last = buf[n - 1];
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// The line ends a [`LineCounter`] saw and the reader has not passed yet.
#[derive(Default)]
struct Newlines {
    /// (offset of a `\n`, whether a `\r` comes right before it).
    pending: VecDeque<(u64, bool)>,
    passed: u64,
}

impl Newlines {
    /// The line (from 1) of the first character of the record the reader says starts at byte
    /// `start`: it may point at the end of the previous line or at blank lines before it.
    fn line_at(&mut self, start: u64) -> u64 {
        while self.pending.front().is_some_and(|(at, _)| *at < start) {
            self.pending.pop_front();
            self.passed += 1;
        }
        let mut at = start;
        while let Some(&(newline, cr)) = self.pending.front() {
            if newline != at && !(cr && newline == at + 1) {
                break;
            }
            self.pending.pop_front();
            self.passed += 1;
            at = newline + 1;
        }
        self.passed + 1
    }
}

/// CSV records of one batch, as text columns.
struct TextRows {
    columns: Vec<StringBuilder>,
    lines: Vec<u64>,
}

impl TextRows {
    fn new(width: usize) -> Self {
        Self {
            columns: (0..width)
                .map(|_| StringBuilder::with_capacity(READ_BATCH_ROWS, READ_BATCH_ROWS * 8))
                .collect(),
            lines: Vec::with_capacity(READ_BATCH_ROWS),
        }
    }

    /// Adds a record, or says why it cannot be read.
    fn push(
        &mut self,
        record: &csv::ByteRecord,
        line: u64,
        schema: &SchemaRef,
        null_if: &[&[u8]],
        options: &CsvOptions,
    ) -> Result<(), RowError> {
        let width = self.columns.len();
        if record.len() != width && options.error_on_column_count_mismatch {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(RowError {
                line: Some(line),
                column: None,
                value: None,
                reason: format!(
                    "expected {width} fields, found {} (the table has {width} columns: {}; look \
                     for a missing or extra delimiter or an unterminated quote)",
                    record.len(),
                    names.join(", ")
                ),
            });
        }
        // One UTF-8 check of the whole record, then a boundary check per field: the fields of
        // a record are stored back to back, so a character split by a delimiter (`\xc3,\xa9`)
        // is valid in the whole and not in its fields.
        let all = std::str::from_utf8(record.as_slice()).ok();
        let mut texts: Vec<Option<&str>> = Vec::with_capacity(width);
        for (field, bytes) in schema.fields().iter().zip(record.iter()) {
            let range = record.range(texts.len()).unwrap_or(0..0);
            let text = match all.and_then(|all| all.get(range)) {
                Some(text) => text,
                None => match std::str::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(e) => return Err(invalid_utf8(line, field.name(), bytes, &e)),
                },
            };
            let null = (text.is_empty() && options.empty_field_as_null) || null_if.contains(&bytes);
            texts.push((!null).then_some(text));
        }
        // Without ERROR_ON_COLUMN_COUNT_MISMATCH, missing fields are NULL (extra ones were
        // left out by the zip above).
        texts.resize(width, None);
        for (column, text) in self.columns.iter_mut().zip(texts) {
            match text {
                Some(text) => column.append_value(text),
                None => column.append_null(),
            }
        }
        self.lines.push(line);
        Ok(())
    }

    /// Converts the rows held so far and delivers them with `errors`, the records left out of
    /// the same stretch of the file.
    fn flush(
        &mut self,
        schema: &SchemaRef,
        options: &CsvOptions,
        errors: &mut Vec<RowError>,
        deliver: &mut dyn FnMut(SourceBatch) -> Result<()>,
    ) -> Result<()> {
        if self.lines.is_empty() {
            return match errors.is_empty() {
                true => Ok(()),
                false => deliver(SourceBatch {
                    rows: RecordBatch::new_empty(Arc::clone(schema)),
                    lines: Vec::new(),
                    errors: std::mem::take(errors),
                }),
            };
        }
        let columns: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        let lines = std::mem::take(&mut self.lines);
        let formats = TextFormats {
            date: options.date_format.as_deref(),
            timestamp: options.timestamp_format.as_deref(),
        };
        let (rows, lines) = conform_rows(&columns, schema, formats, lines, errors)?;
        errors.sort_by_key(|e| e.line);
        deliver(SourceBatch {
            rows,
            lines,
            errors: std::mem::take(errors),
        })
    }
}

/// Newline-delimited JSON, one object per line. A stretch of lines that does not decode as a
/// whole is decoded line by line to find the bad ones.
fn read_json(
    bytes: &Bytes,
    schema: &SchemaRef,
    deliver: &mut dyn FnMut(SourceBatch) -> Result<()>,
    fail: &dyn Fn(String) -> Error,
) -> Result<u64> {
    // Every column nullable: a missing key is reported as a NULL in a NOT NULL column.
    let decode_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let lines: Vec<(u64, std::ops::Range<usize>)> = non_blank_lines(bytes);
    for chunk in lines.chunks(READ_BATCH_ROWS) {
        let whole = &bytes[chunk[0].1.start..chunk[chunk.len() - 1].1.end];
        let mut errors = Vec::new();
        // One object per line, or the rows would not match their lines.
        let decoded = decode_json(&decode_schema, whole).ok();
        let (batch, numbers) = match decoded.filter(|b| b.num_rows() == chunk.len()) {
            Some(batch) => (batch, chunk.iter().map(|(n, _)| *n).collect()),
            None => {
                let mut good = Vec::with_capacity(whole.len());
                let mut numbers = Vec::new();
                for (n, range) in chunk {
                    let line = &bytes[range.clone()];
                    match decode_json(&decode_schema, line) {
                        Ok(b) if b.num_rows() == 1 => {
                            good.extend_from_slice(line);
                            good.push(b'\n');
                            numbers.push(*n);
                        }
                        Ok(b) => errors.push(RowError {
                            line: Some(*n),
                            column: None,
                            value: Some(excerpt(line)),
                            reason: format!(
                                "{} JSON values on one line; the file must hold one object per \
                                 line (newline-delimited JSON)",
                                b.num_rows()
                            ),
                        }),
                        Err(e) => errors.push(json_error(*n, line, &e.to_string())),
                    }
                }
                let batch = decode_json(&decode_schema, &good).map_err(|e| fail(e.to_string()))?;
                (batch, numbers)
            }
        };
        let (rows, numbers) = conform_rows(
            batch.columns(),
            schema,
            TextFormats::default(),
            numbers,
            &mut errors,
        )?;
        errors.sort_by_key(|e| e.line);
        deliver(SourceBatch {
            rows,
            lines: numbers,
            errors,
        })?;
    }
    Ok(lines.len() as u64)
}

/// (line number, byte range) of every line of `bytes` that is not blank.
/// The error for a CSV field that is not UTF-8.
fn invalid_utf8(line: u64, column: &str, bytes: &[u8], e: &std::str::Utf8Error) -> RowError {
    RowError {
        line: Some(line),
        column: Some(column.to_string()),
        value: Some(String::from_utf8_lossy(bytes).into_owned()),
        reason: format!(
            "invalid UTF-8 ({e}); the file is not UTF-8: convert it first, e.g. iconv -f \
             latin1 -t utf-8"
        ),
    }
}

fn non_blank_lines(bytes: &[u8]) -> Vec<(u64, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let end = start + line.len();
        if !line.iter().all(u8::is_ascii_whitespace) {
            out.push((i as u64 + 1, start..end));
        }
        start = end + 1;
    }
    out
}

fn decode_json(schema: &SchemaRef, bytes: &[u8]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(READ_BATCH_ROWS)
        .build_decoder()?;
    let mut batches = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let read = decoder.decode(rest)?;
        rest = &rest[read..];
        if let Some(batch) = decoder.flush()? {
            batches.push(batch);
        }
        if read == 0 {
            break;
        }
    }
    if let Some(batch) = decoder.flush()? {
        batches.push(batch);
    }
    arrow::compute::concat_batches(schema, &batches)
}

/// The start of a rejected line, as kept in `system.load_errors`.
fn excerpt(line: &[u8]) -> String {
    String::from_utf8_lossy(line).chars().take(200).collect()
}

/// Why JSON line `line` (number `n`) does not decode, with the field and value Arrow names.
fn json_error(n: u64, line: &[u8], message: &str) -> RowError {
    if let Err(e) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line) {
        return RowError {
            line: Some(n),
            column: None,
            value: Some(excerpt(line)),
            reason: format!("not a JSON object: {e}"),
        };
    }
    let capture = |pattern: &str| {
        regex::Regex::new(pattern)
            .expect("valid regex")
            .captures(message)
            .map(|c| c[1].to_string())
    };
    let message = message.trim_start_matches("Json error: ");
    let column = capture(r"whilst decoding field '([^']*)'");
    let reason = match &column {
        Some(c) => message
            .split_once(&format!("'{c}': "))
            .map_or(message, |(_, reason)| reason),
        None => message,
    };
    RowError {
        line: Some(n),
        column,
        value: capture(r#"failed to parse "(.*)" as"#),
        reason: reason.to_string(),
    }
}

/// Parquet, columns matched by name (or position), values cast to the table's types.
fn read_parquet<R: ChunkReader + 'static>(
    reader: R,
    schema: &SchemaRef,
    matching: ColumnMatch,
    deliver: &mut dyn FnMut(SourceBatch) -> Result<()>,
    fail: &dyn Fn(String) -> Error,
) -> Result<u64> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader)
        .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?;
    let file_schema = Arc::clone(builder.schema());
    let indices: Vec<Option<usize>> = match matching {
        ColumnMatch::Auto => match_columns(&file_schema, schema)
            .map_err(fail)?
            .into_iter()
            .map(Some)
            .collect(),
        _ => match_by_name(&file_schema, schema, matching).map_err(fail)?,
    };
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
    // Decoding runs on a thread of its own, a few batches ahead of the caller, which routes
    // and encodes what it delivers, so that the two overlap. When delivering fails the channel
    // closes and the decoder stops at its next batch; a panic of the decoder reaches
    // `read_file`'s guard when the scope ends.
    std::thread::scope(|scope| {
        let (decoded, batches) = std::sync::mpsc::sync_channel(DECODED_AHEAD);
        scope.spawn(move || {
            for batch in reader {
                if decoded.send(batch).is_err() {
                    break;
                }
            }
        });
        deliver_parquet(batches, &row_groups, &indices, schema, deliver, fail)
    })
}

/// Batches decoded ahead of the one being delivered.
const DECODED_AHEAD: usize = 2;

/// Delivers the decoded `batches` of a Parquet file in the table's columns; returns the rows
/// read.
fn deliver_parquet(
    batches: std::sync::mpsc::Receiver<Result<RecordBatch, arrow::error::ArrowError>>,
    row_groups: &[i64],
    indices: &[Option<usize>],
    schema: &SchemaRef,
    deliver: &mut dyn FnMut(SourceBatch) -> Result<()>,
    fail: &dyn Fn(String) -> Error,
) -> Result<u64> {
    let mut rows = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| {
            fail(format!(
                "{e} (row group {} of {})",
                row_group_of(row_groups, rows),
                row_groups.len()
            ))
        })?;
        let n = batch.num_rows();
        let picked: Vec<ArrayRef> = indices
            .iter()
            .zip(schema.fields())
            .map(|(i, field)| match i {
                Some(i) => Arc::clone(batch.column(*i)),
                None => arrow::array::new_null_array(field.data_type(), n),
            })
            .collect();
        let numbers = (rows + 1..=rows + n as u64).collect();
        rows += n as u64;
        let mut errors = Vec::new();
        let (picked, numbers) = conform_rows(
            &picked,
            schema,
            TextFormats::default(),
            numbers,
            &mut errors,
        )
        .map_err(|e| fail(e.to_string()))?;
        errors.sort_by_key(|e| e.line);
        deliver(SourceBatch {
            rows: picked,
            lines: numbers,
            errors,
        })?;
    }
    Ok(rows)
}

/// Converts `columns` (one per table column, any type) to `schema`. A row with a value that does
/// not convert, or with NULL in a NOT NULL column, is left out and reported in `errors` (its
/// first problem only). Returns the rows kept and their lines.
/// Formats text is read in for DATE and TIMESTAMP columns (`DATE_FORMAT`, `TIMESTAMP_FORMAT`),
/// in chrono's words; `None` reads ISO 8601 (and what Arrow's cast takes).
#[derive(Debug, Clone, Copy, Default)]
struct TextFormats<'a> {
    date: Option<&'a str>,
    timestamp: Option<&'a str>,
}

impl TextFormats<'_> {
    /// `column` (text) read as `to` with the format for that type, if one is set; a value that
    /// does not match the format is NULL.
    fn parse(&self, column: &ArrayRef, to: &DataType) -> Option<(ArrayRef, &str)> {
        let text = column.as_string_opt::<i32>()?;
        match to {
            DataType::Date32 => {
                let format = self.date?;
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
                let days = text.iter().map(|v| {
                    let date = chrono::NaiveDate::parse_from_str(v?.trim(), format).ok()?;
                    i32::try_from((date - epoch).num_days()).ok()
                });
                Some((Arc::new(Date32Array::from_iter(days)), format))
            }
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                let format = self.timestamp?;
                let micros = text.iter().map(|v| {
                    let v = v?.trim();
                    let at = chrono::NaiveDateTime::parse_from_str(v, format)
                        .ok()
                        .or_else(|| {
                            chrono::NaiveDate::parse_from_str(v, format)
                                .ok()?
                                .and_hms_opt(0, 0, 0)
                        })?;
                    Some(at.and_utc().timestamp_micros())
                });
                let array =
                    TimestampMicrosecondArray::from_iter(micros).with_timezone_opt(tz.clone());
                Some((Arc::new(array), format))
            }
            _ => None,
        }
    }
}

/// Marks bad (once each) the rows whose value in `column` did not read as `field`'s type
/// (`read` is NULL where `column` is not), with an error naming line, column and value.
fn reject_unread(
    bad: &mut [bool],
    errors: &mut Vec<RowError>,
    lines: &[u64],
    field: &Field,
    column: &ArrayRef,
    read: &ArrayRef,
    how: &str,
) {
    for r in (0..read.len()).filter(|r| column.is_valid(*r) && read.is_null(*r)) {
        if !std::mem::replace(&mut bad[r], true) {
            let value = text_of(column, r);
            errors.push(RowError {
                line: Some(lines[r]),
                column: Some(field.name().clone()),
                reason: format!(
                    "cannot read '{value}' as {}{how}",
                    crate::log::sql_type_name(field.data_type())
                ),
                value: Some(value),
            });
        }
    }
}

/// Converts computed columns (one per table column, any type; a transforming load's results)
/// to `schema` as a file's values are converted: a row with a value that does not convert, or
/// with NULL in a NOT NULL column, is left out and reported in `errors`. Text is read in the
/// CSV options' `DATE_FORMAT` and `TIMESTAMP_FORMAT`. Returns the rows kept and their lines.
pub fn conform(
    columns: &[ArrayRef],
    schema: &SchemaRef,
    csv: &CsvOptions,
    lines: Vec<u64>,
    errors: &mut Vec<RowError>,
) -> Result<(RecordBatch, Vec<u64>)> {
    let formats = TextFormats {
        date: csv.date_format.as_deref(),
        timestamp: csv.timestamp_format.as_deref(),
    };
    conform_rows(columns, schema, formats, lines, errors)
}

fn conform_rows(
    columns: &[ArrayRef],
    schema: &SchemaRef,
    formats: TextFormats,
    lines: Vec<u64>,
    errors: &mut Vec<RowError>,
) -> Result<(RecordBatch, Vec<u64>)> {
    let strict = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let rows = lines.len();
    let mut bad = vec![false; rows];
    let mut typed = Vec::with_capacity(columns.len());
    for (field, column) in schema.fields().iter().zip(columns) {
        let converted = if column.data_type() == field.data_type() {
            Arc::clone(column)
        } else if let Some((parsed, format)) = formats.parse(column, field.data_type()) {
            let how = format!(" in the format '{format}'");
            reject_unread(&mut bad, errors, &lines, field, column, &parsed, &how);
            parsed
        } else {
            match arrow::compute::cast_with_options(column, field.data_type(), &strict) {
                Ok(c) => c,
                Err(e) => {
                    let lenient = arrow::compute::cast(column, field.data_type())?;
                    if !(0..rows).any(|r| column.is_valid(r) && lenient.is_null(r)) {
                        return Err(Error::InvalidArgument(format!(
                            "column '{}': {e}",
                            field.name()
                        )));
                    }
                    reject_unread(&mut bad, errors, &lines, field, column, &lenient, "");
                    lenient
                }
            }
        };
        if !field.is_nullable() && converted.null_count() > 0 {
            for r in (0..rows).filter(|r| converted.is_null(*r)) {
                if !std::mem::replace(&mut bad[r], true) {
                    errors.push(RowError {
                        line: Some(lines[r]),
                        column: Some(field.name().clone()),
                        value: None,
                        reason: "NULL in a NOT NULL column".to_string(),
                    });
                }
            }
        }
        typed.push(converted);
    }
    if !bad.contains(&true) {
        return Ok((RecordBatch::try_new(Arc::clone(schema), typed)?, lines));
    }
    let keep = BooleanArray::from_iter(bad.iter().map(|b| Some(!b)));
    let typed = typed
        .iter()
        .map(|c| arrow::compute::filter(c, &keep))
        .collect::<Result<Vec<_>, _>>()?;
    let lines = lines
        .into_iter()
        .zip(&bad)
        .filter(|(_, b)| !**b)
        .map(|(l, _)| l)
        .collect();
    Ok((RecordBatch::try_new(Arc::clone(schema), typed)?, lines))
}

fn text_of(column: &ArrayRef, row: usize) -> String {
    ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
        .map(|f| f.value(row).to_string())
        .unwrap_or_default()
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
/// `MATCH_BY_COLUMN_NAME`: each table column's position in the file, if it has it. A file
/// that shares no column with the table is an error: it is surely the wrong file.
fn match_by_name(
    file: &SchemaRef,
    table: &SchemaRef,
    matching: ColumnMatch,
) -> Result<Vec<Option<usize>>, String> {
    let indices: Vec<Option<usize>> = table
        .fields()
        .iter()
        .map(|f| {
            file.fields()
                .iter()
                .position(|ff| matching.matches(ff.name(), f.name()))
        })
        .collect();
    if indices.iter().all(Option::is_none) {
        let names: Vec<&str> = file.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(format!(
            "no column of the file ({}) matches a column of the table by name",
            names.join(", ")
        ));
    }
    Ok(indices)
}

/// The lines of a JSON file with each key that names a table column in another case spelled
/// as the column (`MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE`). A line that is not an object is
/// kept as it is, to be reported by the reader.
fn keys_as_columns(bytes: &Bytes, schema: &SchemaRef) -> Bytes {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let renamed = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
            .ok()
            .filter(|object| {
                object.keys().any(|k| {
                    schema.field_with_name(k).is_err() && column_in_any_case(schema, k).is_some()
                })
            })
            .map(|object| {
                let object: serde_json::Map<String, serde_json::Value> = object
                    .into_iter()
                    .map(|(k, v)| match column_in_any_case(schema, &k) {
                        Some(column) if schema.field_with_name(&k).is_err() => (column, v),
                        _ => (k, v),
                    })
                    .collect();
                serde_json::to_vec(&object).unwrap_or_else(|_| line.to_vec())
            });
        out.extend_from_slice(renamed.as_deref().unwrap_or(line));
    }
    Bytes::from(out)
}

fn column_in_any_case(schema: &SchemaRef, key: &str) -> Option<String> {
    schema
        .fields()
        .iter()
        .find(|f| f.name().eq_ignore_ascii_case(key))
        .map(|f| f.name().clone())
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::source::list_local;
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int64Type};
    use std::fs::File;
    use std::io::Write;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Float64, true),
        ]))
    }

    fn read(
        name: &str,
        text: &str,
        format: FileFormat,
        on_error: OnRowError,
    ) -> Result<(Vec<i64>, Vec<u64>, Vec<RowError>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let file = &list_local(path.to_str().unwrap()).unwrap()[0];
        let data = SourceData::File(File::open(&path).unwrap());
        let (mut ids, mut lines, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        read_file(
            file,
            data,
            &format,
            ColumnMatch::Auto,
            &schema(),
            on_error,
            |b| {
                ids.extend(b.rows.column(0).as_primitive::<Int64Type>().values());
                lines.extend(b.lines);
                errors.extend(b.errors);
                Ok(())
            },
        )?;
        Ok((ids, lines, errors))
    }

    fn csv_with_header() -> FileFormat {
        FileFormat::Csv(CsvOptions {
            skip_header: 1,
            ..Default::default()
        })
    }

    #[test]
    fn a_bad_csv_value_names_file_line_and_column() {
        let err = read(
            "bad.csv",
            "id,amount\n1,2.5\n2,abc\n",
            csv_with_header(),
            OnRowError::Fail,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("bad.csv") && err.contains("line 3: column 'amount': cannot read 'abc'"),
            "{err}"
        );
    }

    #[test]
    fn collected_csv_errors_keep_the_good_rows_and_name_each_bad_one() {
        let text = "id,amount\n1,2.5\n2,abc\n3,\"multi\nline\"\n4,1,9\n,7\n5,1e3\n";
        let (ids, lines, errors) =
            read("mixed.csv", text, csv_with_header(), OnRowError::Collect).unwrap();
        assert_eq!(ids, vec![1, 5]);
        assert_eq!(lines, vec![2, 8]);
        let found: Vec<(Option<u64>, Option<&str>)> = errors
            .iter()
            .map(|e| (e.line, e.column.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(3), Some("amount")),
                (Some(4), Some("amount")),
                (Some(6), None),
                (Some(7), Some("id")),
            ],
            "{errors:?}"
        );
        assert_eq!(errors[0].value.as_deref(), Some("abc"));
        assert!(errors[2].reason.contains("expected 2 fields, found 3"));
        assert_eq!(errors[3].reason, "NULL in a NOT NULL column");
    }

    #[test]
    fn lines_are_counted_across_crlf_endings_blank_lines_and_quoted_newlines() {
        let text = "id,amount\r\n1,2\r\n\r\n2,abc\r\n3,\"4\r\n\"\n\n\n5,x\n";
        let (ids, lines, errors) =
            read("crlf.csv", text, csv_with_header(), OnRowError::Collect).unwrap();
        assert_eq!(ids, vec![1, 3], "{errors:?}");
        assert_eq!(lines, vec![2, 5]);
        let found: Vec<Option<u64>> = errors.iter().map(|e| e.line).collect();
        assert_eq!(found, vec![Some(4), Some(9)], "{errors:?}");
    }

    #[test]
    fn the_first_bad_record_fails_the_file_even_if_a_later_one_is_malformed() {
        let err = read(
            "order.csv",
            "1,x\n2,3\n3,4,5\n",
            FileFormat::Csv(CsvOptions::default()),
            OnRowError::Fail,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 1: column 'amount'"), "{err}");
    }

    #[test]
    fn collected_json_errors_name_the_line() {
        let text = "{\"id\": 1, \"amount\": 2}\n\n{\"id\": \"one\"}\n{\"id\": 3\n{\"amount\": 1}\n{\"id\": 4}\n";
        let (ids, lines, errors) =
            read("x.ndjson", text, FileFormat::Json, OnRowError::Collect).unwrap();
        assert_eq!(ids, vec![1, 4]);
        assert_eq!(lines, vec![1, 6]);
        let found: Vec<(Option<u64>, Option<&str>)> = errors
            .iter()
            .map(|e| (e.line, e.column.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(3), Some("id")),
                (Some(4), None),
                (Some(5), Some("id"))
            ],
            "{errors:?}"
        );
        assert_eq!(errors[0].value.as_deref(), Some("one"));
        assert!(errors[1].reason.starts_with("not a JSON object"));
    }

    #[test]
    fn a_truncated_parquet_file_is_rejected_with_its_name() {
        let err = read(
            "cut.parquet",
            "PAR1 not really",
            FileFormat::Parquet,
            OnRowError::Collect,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cut.parquet"), "{err}");
    }
}
