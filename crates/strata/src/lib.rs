//! Strata, embedded: a columnar data warehouse inside a Rust program.
//!
//! This crate is the front door for programs that embed Strata instead of talking to
//! `strata serve`. It wraps the engine crates (`strata-query` over `strata-storage`) in the
//! few calls a program needs: open a warehouse, start a session, run SQL, load data.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> strata::Result<()> {
//! let warehouse = strata::Warehouse::open("memory://").await?;
//! let mut session = warehouse.session();
//! session.execute("CREATE TABLE sales (day DATE, amount DOUBLE)").await?;
//! session.execute("INSERT INTO sales VALUES ('2024-01-02', 10.5), ('2024-01-03', 4.5)").await?;
//!
//! let total = session.sql("SELECT sum(amount) AS total FROM sales").await?;
//! let batches = total.collect().await?;
//! assert_eq!(strata::arrow::util::pretty::pretty_format_batches(&batches)?.to_string(), "\
//! +-------+
//! | total |
//! +-------+
//! | 15.0  |
//! +-------+");
//! # Ok(())
//! # }
//! ```
//!
//! The warehouse location is a directory, a `file://` or `s3://` URL, or `memory://`. Every
//! statement a [`Session`] runs is a transaction: it commits whole or leaves the warehouse as
//! it was. [`Warehouse::builder`] sets the memory limit, the size of written files and the
//! number of threads a query uses. For what is not wrapped here, [`Session::engine`] hands
//! out the engine's own session.

#![warn(missing_docs)]

use datafusion::arrow::array::RecordBatch;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use strata_query::IngestMode;

pub use datafusion::arrow;
pub use datafusion::dataframe::DataFrame;
pub use datafusion::execution::SendableRecordBatchStream;
pub use strata_query::{Error, Result, StatementResult};

/// An open warehouse; cheap to clone, shared by every session of the program.
#[derive(Debug, Clone)]
pub struct Warehouse {
    inner: strata_query::Warehouse,
}

impl Warehouse {
    /// Opens the warehouse at `location` (a directory, `file://`, `s3://` or `memory://`),
    /// creating it if it is empty, with default settings.
    pub async fn open(location: &str) -> Result<Self> {
        WarehouseBuilder::default().open(location).await
    }

    /// Settings for opening a warehouse.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> strata::Result<()> {
    /// let warehouse = strata::Warehouse::builder()
    ///     .memory_limit(2 << 30) // queries spill to disk beyond 2 GiB
    ///     .target_file_size(128 << 20)
    ///     .threads(4)
    ///     .setting("datafusion.execution.batch_size", "16384")
    ///     .open("memory://")
    ///     .await?;
    /// let mut session = warehouse.session();
    /// let config = session.engine().context().copied_config();
    /// assert_eq!(config.target_partitions(), 4);
    /// assert_eq!(config.batch_size(), 16384);
    ///
    /// // A setting that does not exist fails when the warehouse opens.
    /// let error = strata::Warehouse::builder()
    ///     .setting("datafusion.execution.no_such_setting", "1")
    ///     .open("memory://")
    ///     .await
    ///     .unwrap_err();
    /// assert!(error.to_string().contains("no_such_setting"), "{error}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> WarehouseBuilder {
        WarehouseBuilder::default()
    }

    /// A new SQL session (database `main`, schema `public`).
    pub fn session(&self) -> Session {
        Session {
            inner: self.inner.session(),
        }
    }

    /// Where the warehouse lives, as a URL.
    pub fn location(&self) -> &str {
        self.inner.location()
    }

    /// The engine's warehouse, e.g. to serve it over Flight SQL with `strata-server`.
    pub fn engine(&self) -> &strata_query::Warehouse {
        &self.inner
    }
}

/// How to open a warehouse: [`Warehouse::builder`], then [`WarehouseBuilder::open`].
#[derive(Debug, Clone, Default)]
pub struct WarehouseBuilder {
    options: strata_query::WarehouseOptions,
}

impl WarehouseBuilder {
    /// Memory all running queries may hold together, in bytes. Sorts, aggregations and joins
    /// that can spill write to the temp directory beyond it; others fail with an error that
    /// says so. No limit by default.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.options.memory_limit = Some(bytes);
        self
    }

    /// Memory for decoded columns of hot data files, in bytes, shared by all sessions and on
    /// top of the memory limit (default a quarter of RAM; 0 turns the cache off). Hot scans are served
    /// from it without decompressing or decoding Parquet pages.
    pub fn scan_cache(mut self, bytes: usize) -> Self {
        self.options.scan_cache_bytes = bytes;
        self
    }

    /// The size a written Parquet file grows to before the next one starts (default 128 MiB).
    pub fn target_file_size(mut self, bytes: usize) -> Self {
        self.options.write.target_file_size_bytes = bytes;
        self
    }

    /// Rows per Parquet row group, the unit of statistics-based skipping.
    pub fn row_group_rows(mut self, rows: usize) -> Self {
        self.options.write.row_group_rows = rows;
        self
    }

    /// How many threads (DataFusion partitions) one query runs on; one per CPU core by
    /// default.
    pub fn threads(mut self, threads: usize) -> Self {
        self.options.target_partitions = Some(threads);
        self
    }

    /// A setting every session starts with, as if it ran `SET name = value` first, e.g.
    /// `.setting("datafusion.execution.batch_size", "16384")`. An unknown name or a bad value
    /// fails [`WarehouseBuilder::open`].
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.options
            .settings
            .push((name.to_string(), value.to_string()));
        self
    }

    /// Days of `system.query_log` kept (30 by default).
    pub fn query_log_retention_days(mut self, days: u32) -> Self {
        self.options.query_log_retention_days = days;
        self
    }

    /// Opens (or creates) the warehouse at `location` with these settings.
    pub async fn open(self, location: &str) -> Result<Warehouse> {
        let inner = strata_query::Warehouse::open_with(location, self.options).await?;
        Ok(Warehouse { inner })
    }
}

/// A SQL session: its current database and schema (`USE`) and settings (`SET`) carry over
/// from one statement to the next.
#[derive(Debug)]
pub struct Session {
    inner: strata_query::Session,
}

impl Session {
    /// Runs a script of statements separated by `;` and returns one result per statement.
    /// The first failing statement stops the script; it leaves the warehouse as it was, and
    /// the statements before it stay committed.
    pub async fn execute(&mut self, sql: &str) -> Result<Vec<StatementResult>> {
        self.inner.sql(sql).await
    }

    /// The last statement of `sql` as a DataFusion [`DataFrame`], the statements before it
    /// run first. A query is planned, not run: filter, join or aggregate it further, then
    /// `collect()` or `execute_stream()` it. Any other statement (DDL, `INSERT`, `COPY INTO`)
    /// runs now and its result table becomes the frame.
    pub async fn sql(&mut self, sql: &str) -> Result<DataFrame> {
        let mut statements = strata_query::parser::parse(sql)?;
        let last = statements
            .pop()
            .ok_or_else(|| Error::Plan("no SQL statement to run".to_string()))?;
        for statement in &statements {
            self.inner.execute(statement).await?;
        }
        self.inner.dataframe(&last).await
    }

    /// Runs one statement and streams its rows batch by batch, as `strata serve` does for
    /// its clients: dropping the stream stops the query. The statement is recorded in
    /// `system.query_log` when the stream ends.
    pub async fn query(&mut self, sql: &str) -> Result<SendableRecordBatchStream> {
        let statements = strata_query::parser::parse(sql)?;
        let [statement] = statements.as_slice() else {
            return Err(Error::Plan(format!(
                "query() runs one statement, found {}",
                statements.len()
            )));
        };
        self.inner.execute_stream(statement, None).await
    }

    /// Loads Arrow batches into `table` (`name`, `schema.name` or `database.schema.name`) in
    /// one commit and returns the rows written. Columns are matched by name and cast to the
    /// table's types; partitions, constraints and dependent materialized views are handled as
    /// for `INSERT`. A table that does not exist is created from the first batch's schema.
    /// A batch that does not fit fails the load and leaves the table as it was.
    pub async fn load_batches(
        &mut self,
        table: &str,
        batches: impl IntoIterator<Item = RecordBatch>,
    ) -> Result<u64> {
        let mut batches = batches.into_iter().peekable();
        let Some(first) = batches.peek() else {
            return Ok(0);
        };
        let schema = first.schema();
        let stream = futures::stream::iter(batches.map(Ok).collect::<Vec<_>>());
        self.load_stream(
            table,
            Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        )
        .await
    }

    /// Like [`Session::load_batches`], for batches produced as they are loaded (a stream
    /// bigger than memory).
    pub async fn load_stream(
        &mut self,
        table: &str,
        batches: SendableRecordBatchStream,
    ) -> Result<u64> {
        self.inner
            .ingest(&name_parts(table), IngestMode::CreateAppend, batches)
            .await
    }

    /// Loads files into `table` with `COPY INTO`: a path, directory, glob, `file://` or
    /// `s3://` URL. Files already loaded into the table are skipped unless
    /// [`CopyOptions::force`] is set. Returns the per-file report (file, status, rows loaded,
    /// errors) that the SQL statement returns.
    pub async fn copy_into(
        &mut self,
        table: &str,
        source: &str,
        options: &CopyOptions,
    ) -> Result<StatementResult> {
        let sql = options.statement(table, source);
        let mut results = self.inner.sql(&sql).await?;
        Ok(results.pop().expect("one statement, one result"))
    }

    /// The engine's session, for what this facade does not wrap (prepared statements,
    /// placeholders, the DataFusion context to register functions).
    pub fn engine(&mut self) -> &mut strata_query::Session {
        &mut self.inner
    }
}

/// The format of the files [`Session::copy_into`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileFormat {
    /// Comma-separated values (other delimiters with [`CopyOptions::delimiter`]).
    #[default]
    Csv,
    /// Newline-delimited JSON objects.
    Json,
    /// Parquet; columns are matched by name.
    Parquet,
}

/// What a load does with bad records (Snowflake's `ON_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// The first bad record fails the load; nothing is committed.
    #[default]
    Abort,
    /// Bad records are left out (and kept in `system.load_errors`); the rest is loaded.
    Continue,
    /// A file with a bad record is left out whole.
    SkipFile,
}

/// Options of [`Session::copy_into`], the clauses of `COPY INTO`.
///
/// ```
/// let options = strata::CopyOptions::csv().skip_header(1).delimiter('|').on_error(strata::OnError::Continue);
/// assert_eq!(
///     options.statement("sales", "/data/sales_*.csv"),
///     "COPY INTO \"sales\" FROM '/data/sales_*.csv' FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1 \
///      FIELD_DELIMITER = '|') ON_ERROR = CONTINUE"
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    format: FileFormat,
    skip_header: Option<u32>,
    delimiter: Option<char>,
    null_if: Vec<String>,
    pattern: Option<String>,
    on_error: OnError,
    force: bool,
}

impl CopyOptions {
    /// CSV files.
    pub fn csv() -> Self {
        Self::default()
    }

    /// Newline-delimited JSON files.
    pub fn json() -> Self {
        Self {
            format: FileFormat::Json,
            ..Self::default()
        }
    }

    /// Parquet files.
    pub fn parquet() -> Self {
        Self {
            format: FileFormat::Parquet,
            ..Self::default()
        }
    }

    /// CSV: lines to skip at the top of each file (1 for a header line).
    pub fn skip_header(mut self, lines: u32) -> Self {
        self.skip_header = Some(lines);
        self
    }

    /// CSV: the field delimiter.
    pub fn delimiter(mut self, delimiter: char) -> Self {
        self.delimiter = Some(delimiter);
        self
    }

    /// CSV: field texts read as NULL (e.g. `""` and `"NULL"`).
    pub fn null_if<S: Into<String>>(mut self, texts: impl IntoIterator<Item = S>) -> Self {
        self.null_if = texts.into_iter().map(Into::into).collect();
        self
    }

    /// Only the files under the source whose path matches this regular expression.
    pub fn pattern(mut self, regex: &str) -> Self {
        self.pattern = Some(regex.to_string());
        self
    }

    /// What to do with bad records.
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Load files again even if they were loaded into the table before.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// The `COPY INTO` statement these options make for `table` and `source`.
    pub fn statement(&self, table: &str, source: &str) -> String {
        let table = name_parts(table)
            .iter()
            .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(".");
        let mut sql = format!("COPY INTO {table} FROM {}", literal(source));
        if let Some(pattern) = &self.pattern {
            sql += &format!(" PATTERN = {}", literal(pattern));
        }
        let mut format = vec![match self.format {
            FileFormat::Csv => "TYPE = CSV".to_string(),
            FileFormat::Json => "TYPE = JSON".to_string(),
            FileFormat::Parquet => "TYPE = PARQUET".to_string(),
        }];
        if let Some(lines) = self.skip_header {
            format.push(format!("SKIP_HEADER = {lines}"));
        }
        if let Some(delimiter) = self.delimiter {
            format.push(format!(
                "FIELD_DELIMITER = {}",
                literal(&delimiter.to_string())
            ));
        }
        if !self.null_if.is_empty() {
            let texts: Vec<String> = self.null_if.iter().map(|t| literal(t)).collect();
            format.push(format!("NULL_IF = ({})", texts.join(", ")));
        }
        sql += &format!(" FILE_FORMAT = ({})", format.join(" "));
        match self.on_error {
            OnError::Abort => {}
            OnError::Continue => sql += " ON_ERROR = CONTINUE",
            OnError::SkipFile => sql += " ON_ERROR = SKIP_FILE",
        }
        if self.force {
            sql += " FORCE = TRUE";
        }
        sql
    }
}

/// A SQL string literal of `text` (`COPY INTO` is read with Snowflake's escapes).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The parts of a table name as SQL reads it: unquoted parts lower-cased, `"quoted"` parts
/// exactly as written.
fn name_parts(name: &str) -> Vec<String> {
    name.split('.')
        .map(|part| {
            let part = part.trim();
            match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(quoted) => quoted.to_string(),
                None => part.to_lowercase(),
            }
        })
        .collect()
}
