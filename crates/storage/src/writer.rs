//! Writing rows into a table: validate → route → encode Parquet (in parallel) → upload.
//!
//! [`TableWriter`] receives batches, splits each by partition with [`partition::route`], and
//! appends every slice to the open Parquet file of its partition (a file opens once its first few
//! thousand rows are there to choose its encodings from); slices of different partitions are
//! encoded in parallel on rayon. A file is closed when it reaches the target size. Closed
//! files are uploaded at once and described as [`DataFile`]s with per-column statistics; nothing
//! is visible until the caller commits them in one [`Transaction`](crate::log::Transaction).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{cast, max, max_boolean, max_string, min, min_boolean, min_string};
use arrow::datatypes::*;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use rayon::prelude::*;

use crate::error::{Error, Result, panic_message};
use crate::id::TableId;
use crate::load::RowError;
use crate::log::{ColumnStats, DataFile, Snapshot, StatValue};
use crate::partition::{self, Partition, Partitioning};
use crate::store::paths;

/// Default size at which a data file is closed and a new one started.
pub const DEFAULT_TARGET_FILE_SIZE_BYTES: usize = 128 * 1024 * 1024;
/// Rows per Parquet row group: the unit of row-group pruning.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 512 * 1024;
/// Longest string kept as a min/max statistic; longer values would bloat the log.
const MAX_STRING_STAT_BYTES: usize = 256;

/// How data files are written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Size at which a data file is closed and a new one started.
    pub target_file_size_bytes: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Interval partitions one statement may create.
    pub max_new_partitions: usize,
    /// The one partition rows may go to (`INSERT ... PARTITION (p)`): a row of another is an
    /// error.
    pub only_partition: Option<String>,
    /// Rows arrive in the order files should keep (a rewrite sorted them already, or laid them
    /// along a Z-order): the table's sort key is not applied again.
    pub presorted: bool,
}

/// Default of [`WriteOptions::max_new_partitions`].
pub const DEFAULT_MAX_NEW_PARTITIONS: usize = 1000;

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            target_file_size_bytes: DEFAULT_TARGET_FILE_SIZE_BYTES,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            max_new_partitions: DEFAULT_MAX_NEW_PARTITIONS,
            only_partition: None,
            presorted: false,
        }
    }
}

/// Runs CPU-bound `f` on the rayon pool and awaits it without blocking a tokio worker.
///
/// A panic in `f` (a bug, or a reader meeting input it did not expect) becomes
/// [`Error::Panicked`] for this call alone: uncaught, rayon would abort the whole process and
/// every session on it.
pub async fn run_cpu<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(outcome.map_err(|payload| Error::Panicked {
            message: panic_message(payload.as_ref()),
        }));
    });
    rx.await.unwrap_or_else(|_| {
        Err(Error::Panicked {
            message: "the worker stopped without an answer".to_string(),
        })
    })
}

/// A Parquet file being encoded in memory.
struct OpenFile {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    stats: Vec<StatsAccumulator>,
}

/// An encoded file, ready to upload.
#[derive(Debug)]
pub struct EncodedFile {
    /// The partition the file belongs to.
    pub partition: String,
    /// The encoded Parquet file.
    pub bytes: Bytes,
    /// Rows in it.
    pub rows: u64,
    /// Per column statistics, by name.
    pub stats: BTreeMap<String, ColumnStats>,
    /// The field id of each column, by name.
    pub field_ids: BTreeMap<String, u32>,
}

/// Rows per data page of a table with a sort key (see [`TableWriter::new`]).
const SORTED_PAGE_ROWS: usize = 4096;

/// Encodes rows for one table; see the module docs.
pub struct TableWriter {
    table: String,
    schema: SchemaRef,
    /// `schema` with the columns' field ids, as files are written.
    file_schema: SchemaRef,
    layout: Option<Partitioning>,
    props: WriterProperties,
    options: WriteOptions,
    open: HashMap<String, OpenFile>,
    finished: Vec<EncodedFile>,
    created: Vec<Partition>,
    rows_seen: usize,
    /// Rows seen when the current source started, and lines it skipped (see `start_source`).
    numbering: (usize, usize),
    /// Constraints every batch must satisfy before it is written.
    check: Option<Box<dyn BatchCheck>>,
    /// The columns (by position) files are sorted by, and whether by their Z-order; empty
    /// when rows keep the order they came in.
    sort_key: Vec<usize>,
    curve: bool,
    /// With a sort key: the rows of each partition not yet written, sorted and encoded as one
    /// file when they reach the target file size (see [`SORT_BUFFER_FACTOR`]).
    pending: HashMap<String, Pending>,
    /// Without a sort key: the first rows of partitions whose next file is not open yet, kept
    /// until there are enough to choose the file's encodings from (see [`file_properties`]).
    opening: HashMap<String, Opening>,
}

/// The first rows of a partition's next file.
#[derive(Default)]
struct Opening {
    batches: Vec<RecordBatch>,
    rows: usize,
}

/// Slices an [`Opening`] keeps before they are copied into one batch: routed slices share their
/// whole batch's buffers, so holding many would keep many batches alive.
const OPENING_MAX_SLICES: usize = 4;

/// Rows of one partition waiting to be sorted into a file.
#[derive(Default)]
struct Pending {
    batches: Vec<RecordBatch>,
    bytes: usize,
}

/// A sorted table's rows are buffered per partition until they take this many times the
/// target file size in memory (about a file's worth, encoded); all partitions together hold
/// at most twice that (the largest buffer is written out first).
const SORT_BUFFER_FACTOR: usize = 2;

/// A check of rows before they are written: the table's constraints, which the query layer
/// knows how to evaluate. Runs on the CPU pool with the writer.
pub trait BatchCheck: Send + std::fmt::Debug {
    /// The rows of `batch` (in the table's schema) that break a constraint, by row, each with
    /// the constraint's columns, the values and the reason ("violates CHECK constraint ...").
    /// Keys of the other rows count as written from now on (until a [`rollback`]).
    ///
    /// [`rollback`]: BatchCheck::rollback
    fn screen(&mut self, batch: &RecordBatch) -> Result<Vec<(usize, RowError)>, String>;

    /// Checks `batch`; `first_row` is the number of its first row in messages (the row of an
    /// INSERT). The error names the first bad row and says what is wrong.
    fn check(&mut self, batch: &RecordBatch, first_row: usize) -> Result<(), String> {
        match self.screen(batch)?.first() {
            Some((row, error)) => Err(format!("row {} {}", first_row + row, error.reason)),
            None => Ok(()),
        }
    }

    /// Checks what can only be checked once every row is known (keys the statement removed
    /// that other tables still reference).
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Marks the rows screened so far as kept, whatever happens to later ones.
    fn savepoint(&mut self) {}

    /// Forgets the rows screened since the last savepoint (a skipped file).
    fn rollback(&mut self) {}
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("table", &self.table)
            .field("open_files", &self.open.len())
            .field("finished", &self.finished.len())
            .finish()
    }
}

impl TableWriter {
    /// A writer for `table` at `snapshot`.
    pub fn new(table: &str, snapshot: &Snapshot, options: WriteOptions) -> Self {
        let metadata = &snapshot.metadata;
        let mut props = WriterProperties::builder()
            // LZ4_RAW: files as small as Snappy's (TPC-H SF1: 360 vs 353 MB) that decode
            // faster (TPC-H SF1 hot geomean 0.071 s vs 0.079 s); BENCHMARKS.md has the figures.
            .set_compression(Compression::LZ4_RAW)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(options.row_group_rows));
        // Indexed columns: a bloom filter per row group, sized for a row group of distinct
        // values at the Parquet default of a 5% false-positive rate.
        for column in metadata.bloom_filter_columns() {
            let path = parquet::schema::types::ColumnPath::from(column);
            props = props
                .set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_max_ndv(path, options.row_group_rows as u64);
        }
        // Sorted tables: smaller pages, so that the page index narrows a lookup on the sort
        // key to a few thousand rows instead of Parquet's default 20,000.
        if !metadata.sort_key().is_empty() {
            props = props.set_data_page_row_count_limit(SORTED_PAGE_ROWS);
        }
        let props = props.build();
        let schema = metadata.schema();
        let sort_key = if options.presorted {
            Vec::new()
        } else {
            metadata
                .sort_key()
                .iter()
                .filter_map(|c| schema.index_of(c).ok())
                .collect()
        };
        Self {
            sort_key,
            curve: metadata.sorts_by_curve(),
            pending: HashMap::new(),
            opening: HashMap::new(),
            table: table.to_string(),
            schema,
            file_schema: metadata.file_schema(),
            layout: metadata.partitioning.clone(),
            props,
            options,
            open: HashMap::new(),
            finished: Vec::new(),
            created: Vec::new(),
            rows_seen: 0,
            numbering: (0, 0),
            check: None,
        }
    }

    /// Checks every batch with `check` before writing it.
    pub fn with_check(mut self, check: Option<Box<dyn BatchCheck>>) -> Self {
        self.check = check;
        self
    }

    /// The name of the table written, for messages.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table schema rows must match.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Casts `batch` to the table schema (by position), checking NOT NULL columns.
    pub fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        conform(&self.table, &self.schema, batch, self.row_offset())
    }

    /// Checks, routes and encodes one batch: the first row that breaks a constraint fails it.
    /// CPU-bound: call through [`run_cpu`].
    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.conform(&batch)?;
        let row_offset = self.row_offset();
        if let Some(check) = &mut self.check {
            check
                .check(&batch, row_offset + 1)
                .map_err(|reason| Error::ConstraintViolation {
                    table: self.table.clone(),
                    reason,
                })?;
        }
        self.write_screened(batch)
    }

    /// The rows of `batch` (in the table's schema) that break a constraint, by row; the others
    /// may then be written with [`write_screened`](Self::write_screened).
    pub fn screen(&mut self, batch: &RecordBatch) -> Result<Vec<(usize, RowError)>> {
        match &mut self.check {
            Some(check) if batch.num_rows() > 0 => {
                check
                    .screen(batch)
                    .map_err(|reason| Error::ConstraintViolation {
                        table: self.table.clone(),
                        reason,
                    })
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Marks the rows screened so far as kept (see [`BatchCheck::savepoint`]).
    pub fn savepoint(&mut self) {
        if let Some(check) = &mut self.check {
            check.savepoint();
        }
    }

    /// Forgets the rows screened since the last savepoint (see [`BatchCheck::rollback`]).
    pub fn rollback(&mut self) {
        if let Some(check) = &mut self.check {
            check.rollback();
        }
    }

    /// Routes and encodes a batch of the table's schema that was already screened.
    pub fn write_screened(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let row_offset = self.row_offset();
        let parts = match &mut self.layout {
            Some(layout) => {
                let budget = self
                    .options
                    .max_new_partitions
                    .saturating_sub(self.created.len());
                let routed = partition::route(&self.table, layout, &batch, row_offset, budget)
                    .map_err(|e| match e {
                        Error::TooManyPartitions { table, .. } => Error::TooManyPartitions {
                            table,
                            max: self.options.max_new_partitions,
                        },
                        other => other,
                    })?;
                if let Some(only) = &self.options.only_partition
                    && let Some((other, _)) = routed.parts.iter().find(|(name, _)| name != only)
                {
                    let other = match routed.created.iter().any(|p| &p.name == other) {
                        true => format!("a new partition '{other}'"),
                        false => format!("partition '{other}'"),
                    };
                    return Err(Error::InvalidArgument(format!(
                        "table '{}': a row belongs to {other}: INSERT ... PARTITION ({only}) \
                         takes only rows of partition '{only}'",
                        self.table
                    )));
                }
                self.created.extend(routed.created);
                routed.parts
            }
            None => vec![(String::new(), batch.clone())],
        };
        self.rows_seen += batch.num_rows();
        if !self.sort_key.is_empty() {
            return self.buffer_sorted(parts);
        }
        let parts = self.open_files(parts)?;
        self.write_open(parts)
    }
}

impl TableWriter {
    /// The slices of `parts` whose partition has a file open, opening the files of partitions
    /// that now have [`ENCODING_SAMPLE_ROWS`] rows waiting; the other slices wait in
    /// [`Self::opening`]. A file's encodings are chosen from its first rows, and a batch routed
    /// to many partitions gives each only a few dozen: judged on those, every column looks
    /// unique, and judged on none, every column is dictionary-encoded, which for keys and
    /// prices costs most of a load's time in the dictionary's hash table and makes bigger
    /// files.
    fn open_files(
        &mut self,
        parts: Vec<(String, RecordBatch)>,
    ) -> Result<Vec<(String, RecordBatch)>> {
        let mut ready = Vec::with_capacity(parts.len());
        for (name, slice) in parts {
            if self.open.contains_key(&name) {
                ready.push((name, slice));
                continue;
            }
            let waiting = self.opening.entry(name.clone()).or_default();
            waiting.rows += slice.num_rows();
            waiting.batches.push(slice);
            if waiting.rows < ENCODING_SAMPLE_ROWS {
                if waiting.batches.len() > OPENING_MAX_SLICES {
                    let rows = arrow::compute::concat_batches(&self.schema, &waiting.batches)?;
                    waiting.batches = vec![rows];
                }
                continue;
            }
            let rows = self.take_opening(&name)?;
            self.open_file(&name, &rows)?;
            ready.push((name, rows));
        }
        Ok(ready)
    }

    /// The rows waiting for `partition`'s next file, as one batch.
    fn take_opening(&mut self, partition: &str) -> Result<RecordBatch> {
        let waiting = self.opening.remove(partition).unwrap_or_default();
        Ok(arrow::compute::concat_batches(
            &self.schema,
            &waiting.batches,
        )?)
    }

    /// Opens `partition`'s next file, its encodings chosen from `first`, its first rows.
    fn open_file(&mut self, partition: &str, first: &RecordBatch) -> Result<()> {
        let writer = ArrowWriter::try_new(
            Vec::new(),
            Arc::clone(&self.file_schema),
            Some(file_properties(&self.props, first)),
        )?;
        let stats = (0..self.schema.fields().len())
            .map(|_| StatsAccumulator::default())
            .collect();
        self.open.insert(
            partition.to_string(),
            OpenFile {
                writer,
                rows: 0,
                stats,
            },
        );
        Ok(())
    }

    /// Writes `parts` to their partitions' open files, in parallel, and closes the files that
    /// reach the target size.
    fn write_open(&mut self, parts: Vec<(String, RecordBatch)>) -> Result<()> {
        let mut slices: HashMap<String, RecordBatch> = parts.into_iter().collect();
        let mut work: Vec<(&String, &mut OpenFile, RecordBatch)> = self
            .open
            .iter_mut()
            .filter_map(|(name, file)| slices.remove(name).map(|b| (name, file, b)))
            .collect();
        let target = self.options.target_file_size_bytes;
        let full: Vec<String> = work
            .par_iter_mut()
            .map(|(name, file, slice)| -> Result<Option<String>> {
                file.writer.write(slice)?;
                file.rows += slice.num_rows() as u64;
                for (acc, column) in file.stats.iter_mut().zip(slice.columns()) {
                    acc.update(column);
                }
                let size = file.writer.bytes_written() + file.writer.in_progress_size();
                Ok((size >= target).then(|| (*name).clone()))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        for name in full {
            let file = self.open.remove(&name).expect("full file is open");
            self.finished
                .push(close_file(&self.file_schema, name, file)?);
        }
        Ok(())
    }
}

impl TableWriter {
    /// Adds routed rows to their partitions' buffers, and writes out the buffers that fill a
    /// file (or the largest ones, while all of them hold too much).
    fn buffer_sorted(&mut self, parts: Vec<(String, RecordBatch)>) -> Result<()> {
        for (name, slice) in parts {
            let pending = self.pending.entry(name).or_default();
            // The slice's own bytes: routed slices share their batch's buffers.
            let bytes: usize = slice
                .columns()
                .iter()
                .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
                .sum();
            pending.bytes = pending.bytes.saturating_add(bytes);
            pending.batches.push(slice);
        }
        // Rows in memory take a few times the bytes they encode to: a buffer of this many
        // fills about a file of the target size.
        let target = self
            .options
            .target_file_size_bytes
            .saturating_mul(SORT_BUFFER_FACTOR);
        let mut full: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.bytes >= target)
            .map(|(name, _)| name.clone())
            .collect();
        let mut held: usize = self
            .pending
            .iter()
            .filter(|(name, _)| !full.contains(name))
            .map(|(_, p)| p.bytes)
            .sum();
        while held > target.saturating_mul(2) {
            let Some((name, bytes)) = self
                .pending
                .iter()
                .filter(|(name, _)| !full.contains(name))
                .map(|(name, p)| (name.clone(), p.bytes))
                .max_by_key(|(_, bytes)| *bytes)
            else {
                break;
            };
            held -= bytes;
            full.push(name);
        }
        self.write_pending(full)
    }

    /// Sorts the buffered rows of `partitions` and encodes each as one file, in parallel.
    fn write_pending(&mut self, partitions: Vec<String>) -> Result<()> {
        let work: Vec<(String, Pending)> = partitions
            .into_iter()
            .filter_map(|name| self.pending.remove(&name).map(|p| (name, p)))
            .collect();
        let files = work
            .into_par_iter()
            .map(|(name, pending)| {
                let rows = arrow::compute::concat_batches(&self.schema, &pending.batches)?;
                let rows = crate::sort::sort_rows(&rows, &self.sort_key, self.curve)?;
                let mut writer = ArrowWriter::try_new(
                    Vec::new(),
                    Arc::clone(&self.file_schema),
                    Some(file_properties(&self.props, &rows)),
                )?;
                writer.write(&rows)?;
                let mut stats: Vec<StatsAccumulator> = (0..self.schema.fields().len())
                    .map(|_| StatsAccumulator::default())
                    .collect();
                for (acc, column) in stats.iter_mut().zip(rows.columns()) {
                    acc.update(column);
                }
                let file = OpenFile {
                    writer,
                    rows: rows.num_rows() as u64,
                    stats,
                };
                close_file(&self.file_schema, name, file)
            })
            .collect::<Result<Vec<_>>>()?;
        self.finished.extend(files);
        Ok(())
    }
}

/// Rows of a file's first slice looked at to choose its encodings.
const ENCODING_SAMPLE_ROWS: usize = 4096;
/// Above this share of distinct values in the sample, a column is not dictionary-encoded.
const MAX_DICTIONARY_DISTINCT_SHARE: f64 = 0.5;
/// Fewer sampled values than this say nothing about a column: it keeps dictionary encoding.
/// (A batch routed to many partitions opens each file with a slice of a few dozen rows, in
/// which every column looks unique; judged on those, an SSB warehouse doubled in size.)
const MIN_ENCODING_SAMPLE_VALUES: usize = 1024;

/// The writer properties of one file: the table's, with dictionary encoding turned off for
/// columns that are nearly unique in the file's first rows (keys, prices, comments), when the
/// first slice is big enough to tell. Parquet
/// writers dictionary-encode everything until the dictionary page outgrows 1 MiB, which in a
/// partition file of a few hundred thousand rows it never does; a dictionary of unique values
/// makes the file bigger and every read slower (decode indices, then gather) than plain values.
fn file_properties(base: &WriterProperties, first: &RecordBatch) -> WriterProperties {
    let sample = first.slice(0, first.num_rows().min(ENCODING_SAMPLE_ROWS));
    let mut builder = base.clone().into_builder();
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        let distinct = distinct_share(column.as_ref());
        if distinct.is_some_and(|share| share > MAX_DICTIONARY_DISTINCT_SHARE) {
            builder = builder.set_column_dictionary_enabled(
                parquet::schema::types::ColumnPath::from(field.name().as_str()),
                false,
            );
        }
    }
    builder.build()
}

/// Share of distinct non-null values in `column`, for flat primitive and string columns.
fn distinct_share(column: &dyn Array) -> Option<f64> {
    use std::collections::HashSet;
    use std::hash::Hash;
    fn share<T: Hash + Eq>(values: impl Iterator<Item = Option<T>>) -> Option<f64> {
        let mut seen = HashSet::new();
        let mut count = 0usize;
        for value in values.flatten() {
            count += 1;
            seen.insert(value);
        }
        (count >= MIN_ENCODING_SAMPLE_VALUES).then(|| seen.len() as f64 / count as f64)
    }
    macro_rules! primitive {
        ($t:ty) => {
            share(column.as_primitive::<$t>().iter())
        };
    }
    match column.data_type() {
        DataType::Int8 => primitive!(Int8Type),
        DataType::Int16 => primitive!(Int16Type),
        DataType::Int32 => primitive!(Int32Type),
        DataType::Int64 => primitive!(Int64Type),
        DataType::UInt32 => primitive!(UInt32Type),
        DataType::UInt64 => primitive!(UInt64Type),
        DataType::Date32 => primitive!(Date32Type),
        DataType::Decimal128(_, _) => primitive!(Decimal128Type),
        DataType::Timestamp(_, _) => share(
            cast(column, &DataType::Int64)
                .ok()?
                .as_primitive::<Int64Type>()
                .iter(),
        ),
        DataType::Float64 => share(
            column
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map(f64::to_bits)),
        ),
        DataType::Utf8 => share(column.as_string::<i32>().iter()),
        DataType::LargeUtf8 => share(column.as_string::<i64>().iter()),
        DataType::Utf8View => share(column.as_string_view().iter()),
        _ => None,
    }
}

/// Finishes an open file: encodes its footer and collects its statistics.
fn close_file(schema: &SchemaRef, partition: String, file: OpenFile) -> Result<EncodedFile> {
    let OpenFile {
        writer,
        rows,
        stats,
    } = file;
    let bytes = Bytes::from(writer.into_inner()?);
    let stats = schema
        .fields()
        .iter()
        .zip(stats)
        .map(|(f, s)| (f.name().clone(), s.finish()))
        .collect();
    let field_ids = schema
        .fields()
        .iter()
        .filter_map(|f| {
            let id = f
                .metadata()
                .get(parquet::arrow::PARQUET_FIELD_ID_META_KEY)?;
            Some((f.name().clone(), id.parse().ok()?))
        })
        .collect();
    Ok(EncodedFile {
        partition,
        bytes,
        rows,
        stats,
        field_ids,
    })
}

impl TableWriter {
    /// Files closed so far (taken, so they can be uploaded while writing goes on).
    pub fn take_finished(&mut self) -> Vec<EncodedFile> {
        std::mem::take(&mut self.finished)
    }

    /// Closes every open file. Returns the remaining files and the interval partitions created.
    /// CPU-bound: call through [`run_cpu`].
    pub fn finish(mut self) -> Result<(Vec<EncodedFile>, Vec<Partition>)> {
        if let Some(check) = &mut self.check {
            check
                .finish()
                .map_err(|reason| Error::ConstraintViolation {
                    table: self.table.clone(),
                    reason,
                })?;
        }
        let pending: Vec<String> = self.pending.keys().cloned().collect();
        self.write_pending(pending)?;
        // Partitions whose file never gathered a full sample: open it on the rows there are.
        let waiting: Vec<String> = self.opening.keys().cloned().collect();
        let mut last = Vec::with_capacity(waiting.len());
        for name in waiting {
            let rows = self.take_opening(&name)?;
            self.open_file(&name, &rows)?;
            last.push((name, rows));
        }
        self.write_open(last)?;
        let open: Vec<(String, OpenFile)> = self.open.drain().collect();
        let schema = Arc::clone(&self.file_schema);
        let closed: Vec<EncodedFile> = open
            .into_par_iter()
            .map(|(name, file)| close_file(&schema, name, file))
            .collect::<Result<_>>()?;
        let mut files = std::mem::take(&mut self.finished);
        files.extend(closed);
        Ok((files, self.created))
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> usize {
        self.rows_seen
    }

    /// Starts numbering rows in error messages afresh, for a new source file whose first
    /// `skipped` lines are not rows (a CSV header).
    pub fn start_source(&mut self, skipped: usize) {
        self.numbering = (self.rows_seen, skipped);
    }

    /// What to add to a 0-based row of the current batch to number it in messages.
    fn row_offset(&self) -> usize {
        self.rows_seen - self.numbering.0 + self.numbering.1
    }
}

/// The data files one statement uploads to one table before it commits them.
///
/// They are named after the statement (`<id>-<uuid>.parquet`), and while it runs a marker
/// `_inflight/<id>` says so: VACUUM spares the files of a statement whose marker is there, so
/// it never deletes the uploads of a commit that has not been written yet (see
/// [`crate::vacuum`]). [`finish`](Self::finish) removes the marker. A marker left by a killed
/// process is recognised as such on the same host (its process is gone) and expires elsewhere
/// after [`crate::vacuum::INFLIGHT_EXPIRY`].
#[derive(Debug)]
pub struct Uploads {
    store: Arc<dyn ObjectStore>,
    table: TableId,
    id: String,
}

impl Uploads {
    /// Starts the uploads of a statement to `table`: writes its marker.
    pub async fn begin(store: &Arc<dyn ObjectStore>, table: &TableId) -> Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        // The marker matters only while this process lives: no fsync.
        let mut options = object_store::PutOptions::default();
        options.extensions.insert(crate::store::Ephemeral);
        store
            .put_opts(
                &paths::inflight_marker(table, &id),
                PutPayload::from(crate::vacuum::Writer::this_process().to_string()),
                options,
            )
            .await?;
        Ok(Self {
            store: Arc::clone(store),
            table: table.clone(),
            id,
        })
    }

    /// Uploads encoded files in parallel and describes them for the log.
    pub async fn upload(&self, files: Vec<EncodedFile>) -> Result<Vec<DataFile>> {
        upload(&self.store, &self.table, &self.id, files).await
    }

    /// Uploads the deletion vector `rows` of a data file in `partition`.
    pub async fn upload_deletion_vector(
        &self,
        partition: &str,
        rows: roaring::RoaringBitmap,
    ) -> Result<crate::DeletionVector> {
        let path = paths::new_deletion_vector(&self.table, partition, &self.id);
        crate::DeletionVector::write(&self.store, path, rows).await
    }

    /// Ends the uploads, committed or not: removes the marker. A failure only delays VACUUM.
    pub async fn finish(self) {
        let marker = paths::inflight_marker(&self.table, &self.id);
        if let Err(e) = self.store.delete(&marker).await {
            tracing::warn!(marker = %marker, error = %e, "in-flight marker not removed");
        }
    }
}

/// Uploads encoded files in parallel and describes them for the log.
async fn upload(
    store: &Arc<dyn ObjectStore>,
    table: &TableId,
    uploads: &str,
    files: Vec<EncodedFile>,
) -> Result<Vec<DataFile>> {
    futures::stream::iter(files)
        .map(|f| {
            let store = Arc::clone(store);
            async move {
                let path = paths::new_data_file(table, &f.partition, uploads);
                let size = f.bytes.len() as u64;
                store.put(&path, PutPayload::from(f.bytes)).await?;
                Ok::<_, Error>(DataFile {
                    path: path.to_string(),
                    partition: f.partition,
                    rows: f.rows,
                    size_bytes: size,
                    stats: f.stats,
                    field_ids: f.field_ids,
                    deletion_vector: None,
                })
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await
}

/// Casts `batch` to `schema`, column by column in order, with errors naming the column.
pub fn conform(
    table: &str,
    schema: &SchemaRef,
    batch: &RecordBatch,
    row_offset: usize,
) -> Result<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Err(Error::SchemaMismatch {
            table: table.to_string(),
            reason: format!(
                "table has {} columns but {} values were supplied",
                schema.fields().len(),
                batch.num_columns()
            ),
        });
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let column = if column.data_type() == field.data_type() {
            Arc::clone(column)
        } else {
            let options = arrow::compute::CastOptions {
                safe: false,
                ..Default::default()
            };
            arrow::compute::cast_with_options(column, field.data_type(), &options).map_err(|e| {
                Error::SchemaMismatch {
                    table: table.to_string(),
                    reason: format!(
                        "column '{}' expects {}: {e}",
                        field.name(),
                        field.data_type()
                    ),
                }
            })?
        };
        if !field.is_nullable() && column.null_count() > 0 {
            let row = (0..column.len()).find(|i| column.is_null(*i)).unwrap_or(0);
            return Err(Error::ConstraintViolation {
                table: table.to_string(),
                reason: format!(
                    "NOT NULL column '{}' got NULL at row {}",
                    field.name(),
                    row_offset + row + 1
                ),
            });
        }
        columns.push(column);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Running min/max/null count of one column.
#[derive(Debug, Default)]
struct StatsAccumulator {
    min: Option<StatValue>,
    max: Option<StatValue>,
    null_count: u64,
    /// False once a value without a usable statistic was seen (e.g. a long string).
    unusable: bool,
}

impl StatsAccumulator {
    fn update(&mut self, column: &ArrayRef) {
        self.null_count += column.null_count() as u64;
        if self.unusable || column.null_count() == column.len() {
            return;
        }
        match min_max(column) {
            Some((lo, hi)) => {
                self.min = Some(match self.min.take() {
                    Some(m) if !less(&lo, &m) => m,
                    _ => lo,
                });
                self.max = Some(match self.max.take() {
                    Some(m) if !less(&m, &hi) => m,
                    _ => hi,
                });
            }
            None => {
                self.unusable = true;
                self.min = None;
                self.max = None;
            }
        }
    }

    fn finish(self) -> ColumnStats {
        ColumnStats {
            min: self.min,
            max: self.max,
            null_count: self.null_count,
        }
    }
}

fn less(a: &StatValue, b: &StatValue) -> bool {
    match (a, b) {
        (StatValue::Int(a), StatValue::Int(b)) => a < b,
        (StatValue::UInt(a), StatValue::UInt(b)) => a < b,
        (StatValue::Float(a), StatValue::Float(b)) => a < b,
        (StatValue::Decimal(a), StatValue::Decimal(b)) => {
            a.parse::<i128>().unwrap_or(0) < b.parse::<i128>().unwrap_or(0)
        }
        (StatValue::Str(a), StatValue::Str(b)) => a < b,
        (StatValue::Bool(a), StatValue::Bool(b)) => !a & b,
        _ => false,
    }
}

/// Min and max of a column as log values, or `None` for types without statistics.
fn min_max(column: &ArrayRef) -> Option<(StatValue, StatValue)> {
    macro_rules! ints {
        ($t:ty, $variant:ident, $conv:ty) => {{
            let a = column.as_primitive::<$t>();
            Some((
                StatValue::$variant(min(a)? as $conv),
                StatValue::$variant(max(a)? as $conv),
            ))
        }};
    }
    match column.data_type() {
        DataType::Int8 => ints!(Int8Type, Int, i64),
        DataType::Int16 => ints!(Int16Type, Int, i64),
        DataType::Int32 => ints!(Int32Type, Int, i64),
        DataType::Int64 => ints!(Int64Type, Int, i64),
        DataType::UInt8 => ints!(UInt8Type, UInt, u64),
        DataType::UInt16 => ints!(UInt16Type, UInt, u64),
        DataType::UInt32 => ints!(UInt32Type, UInt, u64),
        DataType::UInt64 => ints!(UInt64Type, UInt, u64),
        DataType::Date32 => ints!(Date32Type, Int, i64),
        DataType::Timestamp(TimeUnit::Second, _) => ints!(TimestampSecondType, Int, i64),
        DataType::Timestamp(TimeUnit::Millisecond, _) => ints!(TimestampMillisecondType, Int, i64),
        DataType::Timestamp(TimeUnit::Microsecond, _) => ints!(TimestampMicrosecondType, Int, i64),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => ints!(TimestampNanosecondType, Int, i64),
        DataType::Float32 | DataType::Float64 => {
            let f = cast(column, &DataType::Float64).ok()?;
            let a = f.as_primitive::<Float64Type>();
            let (lo, hi) = (min(a)?, max(a)?);
            if lo.is_nan() || hi.is_nan() {
                return None;
            }
            Some((StatValue::Float(lo), StatValue::Float(hi)))
        }
        DataType::Decimal128(_, _) => {
            let a = column.as_primitive::<Decimal128Type>();
            Some((
                StatValue::Decimal(min(a)?.to_string()),
                StatValue::Decimal(max(a)?.to_string()),
            ))
        }
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            string_stats(min_string(a)?, max_string(a)?)
        }
        DataType::LargeUtf8 => {
            let a = column.as_string::<i64>();
            string_stats(min_string(a)?, max_string(a)?)
        }
        DataType::Boolean => {
            let a = column.as_boolean();
            Some((
                StatValue::Bool(min_boolean(a)?),
                StatValue::Bool(max_boolean(a)?),
            ))
        }
        _ => None,
    }
}

fn string_stats(lo: &str, hi: &str) -> Option<(StatValue, StatValue)> {
    (lo.len() <= MAX_STRING_STAT_BYTES && hi.len() <= MAX_STRING_STAT_BYTES).then(|| {
        (
            StatValue::Str(lo.to_string()),
            StatValue::Str(hi.to_string()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[tokio::test]
    async fn a_panic_on_the_cpu_pool_is_an_error_of_that_call_alone() {
        let err = run_cpu(|| -> u32 { panic!("reader bug") })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Panicked { message } if message == "reader bug"),
            "{err}"
        );
        // The pool goes on.
        assert_eq!(run_cpu(|| 6 * 7).await.unwrap(), 42);
    }

    #[test]
    fn stats_track_min_max_and_nulls_across_batches() {
        let mut acc = StatsAccumulator::default();
        acc.update(&(Arc::new(Int64Array::from(vec![Some(5), None, Some(-2)])) as ArrayRef));
        acc.update(&(Arc::new(Int64Array::from(vec![7, 1])) as ArrayRef));
        let s = acc.finish();
        assert_eq!(s.min, Some(StatValue::Int(-2)));
        assert_eq!(s.max, Some(StatValue::Int(7)));
        assert_eq!(s.null_count, 1);
    }

    #[test]
    fn long_strings_have_no_min_max() {
        let mut acc = StatsAccumulator::default();
        let long = "x".repeat(MAX_STRING_STAT_BYTES + 1);
        acc.update(&(Arc::new(StringArray::from(vec!["a", long.as_str()])) as ArrayRef));
        acc.update(&(Arc::new(StringArray::from(vec!["b"])) as ArrayRef));
        assert_eq!(acc.finish().min, None);
    }

    /// Encodings of each column chunk of the first row group of a written file.
    /// The values of the `Int64` column at `index` of the Parquet file `bytes`, in file order.
    fn int64_column(bytes: &Bytes, index: usize) -> Vec<i64> {
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes.clone(), 1024)
                .expect("reader");
        let mut values = Vec::new();
        for batch in reader {
            let batch = batch.expect("batch");
            values.extend(batch.column(index).as_primitive::<Int64Type>().values());
        }
        values
    }

    /// The first snapshot of a table with `metadata` and no files.
    fn snapshot_of(metadata: crate::log::TableMetadata) -> Snapshot {
        Snapshot {
            version: crate::id::Version(0),
            committed_at: chrono::Utc::now(),
            metadata,
            files: Default::default(),
            loaded: Default::default(),
            fences: Default::default(),
            channels: Default::default(),
        }
    }

    fn encodings(props: WriterProperties, batch: &RecordBatch) -> Vec<Vec<Encoding>> {
        let mut writer =
            ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).expect("writer");
        writer.write(batch).expect("write");
        let bytes = Bytes::from(writer.into_inner().expect("close"));
        let reader = SerializedFileReader::new(bytes).expect("read back");
        let group = reader.metadata().row_group(0);
        group
            .columns()
            .iter()
            .map(|c| c.encodings().collect())
            .collect()
    }

    #[test]
    fn nearly_unique_columns_are_not_dictionary_encoded() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("flag", DataType::Utf8, false),
            Field::new("comment", DataType::Utf8, false),
        ]));
        let rows = 10_000i64;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| ["A", "N", "R"][i as usize % 3]),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("comment {i}")),
                )),
            ],
        )
        .expect("batch");
        let base = WriterProperties::builder().build();
        let chosen = encodings(file_properties(&base, &batch), &batch);
        let dictionary = |e: &Vec<Encoding>| e.contains(&Encoding::RLE_DICTIONARY);
        assert!(!dictionary(&chosen[0]), "unique keys: {:?}", chosen[0]);
        assert!(dictionary(&chosen[1]), "three flags: {:?}", chosen[1]);
        assert!(!dictionary(&chosen[2]), "unique comments: {:?}", chosen[2]);
        // Without the choice, the writer dictionary-encodes all three.
        let default = encodings(base.clone(), &batch);
        assert!(default.iter().all(dictionary), "{default:?}");
        // A first slice too small to judge keeps the default.
        let small = batch.slice(0, 100);
        let chosen = encodings(file_properties(&base, &small), &small);
        assert!(chosen.iter().all(dictionary), "{chosen:?}");
    }

    /// A table sorted by an index writes one sorted file per partition however its rows
    /// arrive: batches spread over 300 partitions (routed into slices that share the batch's
    /// buffers) are buffered, not flushed as hundreds of tiny files, and every file is sorted.
    #[test]
    fn sorted_writes_make_one_sorted_file_per_partition() {
        use crate::log::{ColumnDef, Index, IndexKind, TableMetadata};
        let mut metadata = TableMetadata::new(vec![
            ColumnDef::new("p", DataType::Int64, false),
            ColumnDef::new("k", DataType::Int64, false),
        ]);
        metadata.partitioning = Some(Partitioning {
            column: "p".into(),
            key_type: crate::partition::KeyType::Integer,
            interval: Some(crate::partition::Interval::Width(10)),
            partitions: Vec::new(),
        });
        metadata.indexes.push(Index {
            name: "k_idx".into(),
            columns: vec!["k".into()],
            include: Vec::new(),
            kind: IndexKind::BTree,
            pending: Vec::new(),
        });
        metadata.assign_field_ids(None);
        let snapshot = snapshot_of(metadata);
        let mut writer = TableWriter::new("t", &snapshot, WriteOptions::default());
        let rows = 3000i64;
        for b in 0..10i64 {
            let batch = RecordBatch::try_new(
                writer.schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i % 3000))),
                    Arc::new(Int64Array::from_iter_values(
                        (0..rows).map(|i| (i * 7919 + b) % 10007),
                    )),
                ],
            )
            .expect("batch");
            writer.write(batch).expect("write");
            assert!(writer.take_finished().is_empty(), "batch {b} flushed files");
        }
        let (files, created) = writer.finish().expect("finish");
        assert_eq!(created.len(), 300);
        assert_eq!(files.len(), 300);
        for file in &files {
            let reader = SerializedFileReader::new(file.bytes.clone()).expect("read back");
            let keys = int64_column(&file.bytes, 1);
            assert_eq!(reader.metadata().file_metadata().num_rows(), 100);
            assert!(
                keys.windows(2).all(|w| w[0] <= w[1]),
                "not sorted: {keys:?}"
            );
        }
    }

    /// Rows routed to many partitions arrive a few dozen per partition and batch; a file's
    /// encodings are still chosen from its first thousands of rows, whatever the slices: keys
    /// plain, flags dictionary-encoded. Every row is written once, in order, including the
    /// partitions that never gather a full sample.
    #[test]
    fn encodings_are_chosen_from_a_files_first_rows_not_its_first_slice() {
        use crate::log::{ColumnDef, TableMetadata};
        let mut metadata = TableMetadata::new(vec![
            ColumnDef::new("p", DataType::Int64, false),
            ColumnDef::new("key", DataType::Int64, false),
            ColumnDef::new("flag", DataType::Utf8, false),
        ]);
        metadata.partitioning = Some(Partitioning {
            column: "p".into(),
            key_type: crate::partition::KeyType::Integer,
            interval: Some(crate::partition::Interval::Width(1)),
            partitions: Vec::new(),
        });
        metadata.assign_field_ids(None);
        let snapshot = snapshot_of(metadata);
        let mut writer = TableWriter::new("t", &snapshot, WriteOptions::default());
        // 50 partitions, 40 rows each per batch, 200 batches: 8,000 rows a partition. Partition
        // 50 gets one row per batch, 200 in all: too few to judge.
        let per_batch = 50 * 40 + 1;
        let mut key = 0i64;
        for _ in 0..200 {
            let p: Vec<i64> = (0..per_batch)
                .map(|i| (i % 50 + (i / 2000) * 50) as i64)
                .collect();
            let keys: Vec<i64> = (0..per_batch)
                .map(|_| {
                    key += 1;
                    key
                })
                .collect();
            let batch = RecordBatch::try_new(
                writer.schema(),
                vec![
                    Arc::new(Int64Array::from(p)),
                    Arc::new(Int64Array::from(keys)),
                    Arc::new(StringArray::from_iter_values(
                        (0..per_batch).map(|i| ["A", "N", "R"][i % 3]),
                    )),
                ],
            )
            .expect("batch");
            writer.write(batch).expect("write");
        }
        let (files, created) = writer.finish().expect("finish");
        assert_eq!(created.len(), 51);
        assert_eq!(files.len(), 51);
        let mut all_keys = Vec::new();
        for file in &files {
            let reader = SerializedFileReader::new(file.bytes.clone()).expect("read back");
            let rows = reader.metadata().file_metadata().num_rows();
            let encodings: Vec<Vec<Encoding>> = reader
                .metadata()
                .row_group(0)
                .columns()
                .iter()
                .map(|c| c.encodings().collect())
                .collect();
            let dictionary = |e: &Vec<Encoding>| e.contains(&Encoding::RLE_DICTIONARY);
            if rows == 200 {
                assert!(encodings.iter().all(dictionary), "{encodings:?}");
            } else {
                assert_eq!(rows, 8000);
                assert!(!dictionary(&encodings[1]), "unique keys: {encodings:?}");
                assert!(dictionary(&encodings[2]), "three flags: {encodings:?}");
            }
            let keys = int64_column(&file.bytes, 1);
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "rows out of order");
            all_keys.extend(keys);
        }
        all_keys.sort_unstable();
        assert_eq!(all_keys, (1..=key).collect::<Vec<_>>());
    }
}
