//! What a server needs from a session beyond [`Session::sql`]: query results that stream
//! batch by batch instead of being collected, result and parameter schemas known before a
//! statement runs (Flight SQL answers `GetFlightInfo` with them), and bulk ingest of Arrow
//! batches into a table in one commit.
//!
//! A streamed query is recorded in `system.query_log` when its stream ends: with `SUCCESS`
//! and the rows sent, `FAILED` and the error, or `CANCELLED` when the stream is dropped
//! before its end (a client that disconnects or cancels).

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::util::display::FormatOptions;
use chrono::{DateTime, Utc};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, Union};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, RecordBatchStream, execute_stream};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::{Stream, StreamExt};
use strata_storage::{Error as StorageError, QueryLogEntry, Transaction};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::parser::{ParsedStatement, Statement};
use crate::result::StatementResult;
use crate::session::Session;
use crate::statement::query_log;
use crate::table::{scan_figures, write_batches};
use crate::types::column_defs;
use crate::warehouse::Warehouse;

/// What bulk ingest does with the target table (the modes of Flight SQL and ADBC ingest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// Create the table from the batches' schema; fail if it exists.
    Create,
    /// Append to an existing table; fail if it does not exist.
    Append,
    /// Append, creating the table first if it does not exist.
    CreateAppend,
    /// Replace the table (its rows and columns) with the batches, creating it if needed.
    Replace,
    /// Replace an existing table; fail if it does not exist.
    ReplaceExisting,
}

impl Session {
    /// Whether `execute_stream` streams this statement's rows (a query), so that its schema is
    /// known before it runs.
    pub fn is_query(statement: &ParsedStatement) -> bool {
        matches!(&statement.statement, Statement::Sql(s) if matches!(s.as_ref(), SqlStatement::Query(_)))
    }

    /// Whether `execute_stream` streams this statement's rows as they come, its schema known
    /// before it runs: a query, or `SUBSCRIBE` (which never ends by itself).
    pub fn is_streamed(statement: &ParsedStatement) -> bool {
        Self::is_query(statement) || matches!(statement.statement, Statement::Subscribe { .. })
    }

    /// The schema of a streamed statement's rows (see [`Session::is_streamed`]), from its
    /// plan, without running it.
    pub async fn query_schema(
        &self,
        statement: &ParsedStatement,
        params: Option<&ParamValues>,
    ) -> Result<SchemaRef> {
        if let Statement::Subscribe { view } = &statement.statement {
            return super::subscribe::schema(self, view).await;
        }
        self.warehouse().refresh_catalog().await?;
        let plan = self.plan(sql_statement(statement)?, params).await?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Ok(crate::result::visible_schema(&schema).unwrap_or(schema))
    }

    /// The placeholders (`$1`, `?`) of a statement with the types DataFusion infers for them,
    /// in order, as an Arrow schema (`$1`, `$2`, ...); empty for statements without any.
    pub async fn parameter_schema(&self, statement: &ParsedStatement) -> Result<SchemaRef> {
        let Statement::Sql(s) = &statement.statement else {
            return Ok(Arc::new(Schema::empty()));
        };
        if !matches!(
            s.as_ref(),
            SqlStatement::Query(_)
                | SqlStatement::Insert(_)
                | SqlStatement::Update { .. }
                | SqlStatement::Delete(_)
                | SqlStatement::Explain { .. }
        ) {
            return Ok(Arc::new(Schema::empty()));
        }
        self.warehouse().refresh_catalog().await?;
        let plan = self.plan(s.as_ref().clone(), None).await?;
        // `$n` is the n-th field, whatever the statement left out: a statement that uses `$2`
        // and not `$1` still has its second parameter second (its first is of no known type).
        let found = plan.get_parameter_fields()?;
        let count = found
            .keys()
            .filter_map(|name| name.trim_start_matches('$').parse::<usize>().ok())
            .max()
            .unwrap_or(0)
            .min(u16::MAX as usize);
        Ok(Arc::new(Schema::new(
            (1..=count)
                .map(|n| {
                    let name = format!("${n}");
                    match found.get(&name).cloned().flatten() {
                        Some(f) => Field::new(name, f.data_type().clone(), true),
                        None => Field::new(name, arrow::datatypes::DataType::Null, true),
                    }
                })
                .collect::<Vec<_>>(),
        )))
    }

    /// One statement as a DataFusion [`DataFrame`]: a query is planned (reading materialized
    /// views where they answer it) but not run, so the caller can add to it and choose how to
    /// execute it; any other statement runs now and its result table becomes the frame.
    pub async fn dataframe(&mut self, statement: &ParsedStatement) -> Result<DataFrame> {
        if !Self::is_query(statement) {
            let result = self.execute(statement).await?;
            let table = MemTable::try_new(result.schema, vec![result.batches])?;
            return Ok(self.context().read_table(Arc::new(table))?);
        }
        self.warehouse().refresh_catalog().await?;
        let plan = self.plan(sql_statement(statement)?, None).await?;
        Ok(DataFrame::new(self.context().state(), plan))
    }

    /// Runs one statement. A query's batches stream from DataFusion as they are produced
    /// (dropping the stream stops the query and frees its memory); any other statement runs
    /// to completion first and its result comes back as a stream.
    pub async fn execute_stream(
        &mut self,
        statement: &ParsedStatement,
        params: Option<&ParamValues>,
    ) -> Result<SendableRecordBatchStream> {
        if let Statement::Subscribe { view } = &statement.statement {
            return super::subscribe::stream(self, view).await;
        }
        if !Self::is_query(statement) {
            let result = self.execute_with(statement, params).await?;
            let batches = result.batches.into_iter().map(Ok);
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                result.schema,
                futures::stream::iter(batches),
            )));
        }
        let started_at = Utc::now();
        let clock = Instant::now();
        let query_id = query_log::new_query_id();
        let span = query_log::span(&query_id, self.id());
        self.set_last_query_id(query_id.clone());
        self.progress().reset();
        super::data_tests::install(self.warehouse());
        let planned = async {
            self.warehouse().refresh_catalog().await?;
            let plan = self.plan(sql_statement(statement)?, params).await?;
            let df = self.context().execute_logical_plan(plan).await?;
            let physical = df.create_physical_plan().await?;
            self.progress().watch(&physical);
            let (physical, stream, job) = self.execute_placed(physical).await?;
            // Names kept apart while planning are shown as the query wrote them.
            let stream: SendableRecordBatchStream =
                match crate::result::visible_schema(&stream.schema()) {
                    Some(visible) => {
                        let schema = Arc::clone(&visible);
                        Box::pin(RecordBatchStreamAdapter::new(
                            schema,
                            stream.map(move |batch| Ok(crate::result::relabel(batch?, &visible)?)),
                        ))
                    }
                    None => stream,
                };
            Ok::<_, Error>((physical, stream, job))
        };
        let planned =
            futures::FutureExt::catch_unwind(AssertUnwindSafe(planned.instrument(span.clone())))
                .await
                .unwrap_or_else(|payload| Err(super::panicked(payload.as_ref())));
        let (planned, job) = match planned {
            Ok((plan, stream, job)) => (Ok((plan, stream)), job),
            Err(e) => (Err(e), None),
        };
        let log = QueryLog {
            job,
            warehouse: self.warehouse().clone(),
            session_id: self.id().to_string(),
            user_name: self.user_name(),
            protocol: self.protocol().to_string(),
            text: statement.text.clone(),
            started_at,
            clock,
            query_id,
            span,
            _running: crate::telemetry::QueryGuard::start(),
        };
        match planned {
            Ok((plan, inner)) => Ok(Box::pin(LoggedStream {
                inner,
                plan,
                log: Some(log),
                rows: 0,
                ending: None,
                ended: false,
            })),
            Err(e) => {
                // No stream yet: write the entry before answering, so a process that exits on
                // the error does not lose it.
                let entry = {
                    let _in_statement = log.span.enter();
                    log.entry("FAILED", Some(e.to_string()), 0, None)
                };
                query_log::write(&log.warehouse, &entry).await;
                Err(e)
            }
        }
    }

    /// The rows of the query `physical`: streamed from this process, or, when the warehouse
    /// has a cluster and the query belongs there, streamed from the executors that hold the
    /// finished job's partitions. Returns the plan that runs (the job's, on a cluster) and the
    /// job's figures, for the query log.
    async fn execute_placed(
        &mut self,
        physical: Arc<dyn ExecutionPlan>,
    ) -> Result<(
        Arc<dyn ExecutionPlan>,
        SendableRecordBatchStream,
        Option<crate::cluster::JobFigures>,
    )> {
        let context = self.context().task_ctx();
        if let Some(url) = self.warehouse().options().cluster.clone() {
            let options = self.strata_options();
            let placement =
                crate::cluster::place(&physical, &options, Some(Arc::clone(&context))).await?;
            if let crate::cluster::Placement::Cluster { plan, .. } = placement {
                let (rows, job) = self.run_on_cluster(&url, Arc::clone(&plan)).await?;
                let stream = RecordBatchStreamAdapter::new(physical.schema(), rows);
                return Ok((plan, Box::pin(stream), Some(job)));
            }
        }
        let stream = execute_stream(Arc::clone(&physical), context)?;
        Ok((physical, stream, None))
    }

    /// Runs a statement once for each row of parameters, as a client's batch of bound rows
    /// (JDBC `executeBatch`, DB-API `executemany`) means. An `INSERT` runs as one statement
    /// over all rows: one commit, so either every row is written or none is. Anything else
    /// runs row by row; the results are concatenated.
    pub async fn execute_batch(
        &mut self,
        statement: &ParsedStatement,
        rows: &[ParamValues],
    ) -> Result<StatementResult> {
        let is_insert = matches!(
            &statement.statement,
            Statement::Sql(s) if matches!(s.as_ref(), SqlStatement::Insert(_))
        );
        if is_insert && rows.len() > 1 {
            return self.insert_rows(statement, rows).await;
        }
        let mut results = Vec::with_capacity(rows.len().max(1));
        if rows.is_empty() {
            results.push(self.execute_with(statement, None).await?);
        }
        for row in rows {
            results.push(self.execute_with(statement, Some(row)).await?);
        }
        let schema = Arc::clone(&results[0].schema);
        Ok(StatementResult {
            schema,
            batches: results.into_iter().flat_map(|r| r.batches).collect(),
        })
    }

    /// One `INSERT` whose input is the union of its input bound to each parameter row.
    async fn insert_rows(
        &mut self,
        statement: &ParsedStatement,
        rows: &[ParamValues],
    ) -> Result<StatementResult> {
        let started_at = Utc::now();
        let clock = Instant::now();
        let outcome = async {
            self.warehouse().refresh_catalog().await?;
            let template = self.plan(sql_statement(statement)?, None).await?;
            let LogicalPlan::Dml(dml) = &template else {
                return Err(Error::Plan(format!(
                    "expected an INSERT plan for {}",
                    statement.text
                )));
            };
            let mut inputs = Vec::with_capacity(rows.len());
            for row in rows {
                match template.clone().with_param_values(row.clone())? {
                    LogicalPlan::Dml(bound) => inputs.push(bound.input),
                    _ => unreachable!("binding parameters keeps the plan's shape"),
                }
            }
            let union = LogicalPlan::Union(Union::try_new(inputs)?);
            let plan = LogicalPlan::Dml(DmlStatement::new(
                dml.table_name.clone(),
                Arc::clone(&dml.target),
                dml.op.clone(),
                Arc::new(union),
            ));
            let df = self.context().execute_logical_plan(plan).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            Ok::<_, Error>(StatementResult { schema, batches })
        }
        .await;
        let (status, error, count) = match &outcome {
            Ok(r) => ("SUCCESS", None, r.row_count() as u64),
            Err(e) => ("FAILED", Some(e.to_string()), 0),
        };
        let text = format!("{} -- {} parameter rows", statement.text, rows.len());
        let entry = query_log::Entry {
            query_id: query_log::new_query_id(),
            session_id: self.id(),
            user_name: self.user_name(),
            protocol: self.protocol(),
            text: &text,
            started_at,
            elapsed: clock.elapsed(),
            status,
            error,
            rows: count,
            figures: Default::default(),
            retries: 0,
            job: None,
        };
        query_log::record(self.warehouse(), entry).await;
        outcome
    }

    /// Writes a stream of batches into `name` (`table`, `schema.table` or
    /// `database.schema.table`) in one commit and returns the rows written. Columns are
    /// matched by name and cast to the table's types; a missing or unknown column, or a value
    /// that does not fit its column, fails the ingest and leaves the table as it was.
    pub async fn ingest(
        &mut self,
        name: &[String],
        mode: IngestMode,
        data: SendableRecordBatchStream,
    ) -> Result<u64> {
        super::data_tests::install(self.warehouse());
        self.warehouse().refresh_catalog().await?;
        let object = datafusion::sql::sqlparser::ast::ObjectName::from(
            name.iter()
                .map(|p| datafusion::sql::sqlparser::ast::Ident::with_quote('"', p))
                .collect::<Vec<_>>(),
        );
        let (db, schema, table) = self.qualify_table(&object)?;
        let qualified = format!("{db}.{schema}.{table}");
        let catalog = self.warehouse().catalog();
        catalog.schema(&db, &schema)?;
        let exists = catalog.table(&db, &schema, &table).is_ok();
        let create = match (mode, exists) {
            (IngestMode::Create, true) => {
                return Err(StorageError::TableExists { name: qualified }.into());
            }
            (IngestMode::Append | IngestMode::ReplaceExisting, false) => {
                return Err(Error::Plan(format!(
                    "ingest: table {qualified} does not exist"
                )));
            }
            (IngestMode::Append | IngestMode::CreateAppend, true) => false,
            (IngestMode::Create | IngestMode::CreateAppend | IngestMode::Replace, false)
            | (IngestMode::Replace | IngestMode::ReplaceExisting, true) => true,
        };
        if create {
            // A new table enters the catalog only after its data is committed, so a failed
            // ingest leaves no table behind, and `Replace` swaps the old table for the new one
            // in one catalog commit.
            let metadata = strata_storage::TableMetadata {
                columns: column_defs(data.schema().fields()),
                partitioning: None,
                properties: Default::default(),
                constraints: Vec::new(),
                last_field_id: 0,
                name_mapping: Default::default(),
                indexes: Vec::new(),
                cluster_by: Vec::new(),
                tests: Vec::new(),
                tags: Default::default(),
            };
            let warehouse = self.warehouse();
            let options = self.write_options();
            let replace = matches!(mode, IngestMode::Replace | IngestMode::ReplaceExisting);
            return warehouse
                .create_table(
                    &db,
                    &schema,
                    &table,
                    metadata,
                    replace,
                    async |log, snapshot| {
                        let data = conform(data, snapshot.metadata.schema(), &qualified);
                        let ingest = Transaction::new("INGEST");
                        write_batches(warehouse, options, &qualified, log, &snapshot, data, ingest)
                            .await
                    },
                )
                .await;
        }
        let (log, snapshot, _) = self.open_table_for_write(&object).await?;
        let data = conform(data, snapshot.metadata.schema(), &qualified);
        let (rows, _) = write_batches(
            self.warehouse(),
            self.write_options(),
            &qualified,
            &log,
            &snapshot,
            data,
            Transaction::new("INGEST"),
        )
        .await?;
        crate::telemetry::loaded(rows, 0);
        crate::mv::scheduler::refresh_on_commit(self.warehouse()).await;
        Ok(rows)
    }
}

fn sql_statement(statement: &ParsedStatement) -> Result<SqlStatement> {
    match &statement.statement {
        Statement::Sql(s) => Ok(s.as_ref().clone()),
        _ => Err(Error::Plan(format!(
            "not a statement DataFusion plans: {}",
            statement.text
        ))),
    }
}

/// Maps incoming batches onto a table's columns by name, casting each to the column's type.
fn conform(
    data: SendableRecordBatchStream,
    target: SchemaRef,
    table: &str,
) -> SendableRecordBatchStream {
    let table = table.to_string();
    let schema = Arc::clone(&target);
    let mut first_row = 0usize;
    let stream = data.map(move |batch| {
        let batch = batch?;
        let rows = batch.num_rows();
        let conformed = conform_batch(&batch, &target, &table, first_row);
        first_row += rows;
        conformed
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// Casts `batch` onto `target`'s columns by name; an error names `table`, the column and the
/// rows (counted from `first_row`).
pub(super) fn conform_batch(
    batch: &RecordBatch,
    target: &SchemaRef,
    table: &str,
    first_row: usize,
) -> DfResult<RecordBatch> {
    let incoming = batch.schema();
    if let Some(extra) = incoming
        .fields()
        .iter()
        .find(|f| target.field_with_name(f.name()).is_err())
    {
        return Err(DataFusionError::Plan(format!(
            "ingest into {table}: column '{}' is not a column of the table",
            extra.name()
        )));
    }
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    let columns = target
        .fields()
        .iter()
        .map(|field| {
            let (index, _) = incoming.column_with_name(field.name()).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "ingest into {table}: the data has no column '{}'",
                    field.name()
                ))
            })?;
            cast_with_options(batch.column(index), field.data_type(), &options).map_err(|e| {
                DataFusionError::Plan(format!(
                    "ingest into {table}: column '{}' (rows {}..{}): cannot convert {} to {}: {e}",
                    field.name(),
                    first_row + 1,
                    first_row + batch.num_rows(),
                    batch.column(index).data_type(),
                    field.data_type()
                ))
            })
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(target), columns)?)
}

/// The query-log entry of a streamed query, written once when the stream ends.
struct QueryLog {
    warehouse: Warehouse,
    session_id: String,
    user_name: String,
    protocol: String,
    text: String,
    started_at: DateTime<Utc>,
    clock: Instant,
    query_id: String,
    /// The query's span, entered while its stream is polled.
    span: tracing::Span,
    /// Counts the query as running until its entry is written.
    _running: crate::telemetry::QueryGuard,
    /// What the query did on the cluster, when it ran there.
    job: Option<crate::cluster::JobFigures>,
}

impl QueryLog {
    /// The record of the query, ended now with `status`.
    fn entry(
        &self,
        status: &str,
        error: Option<String>,
        rows: u64,
        plan: Option<&Arc<dyn ExecutionPlan>>,
    ) -> QueryLogEntry {
        query_log::Entry {
            query_id: self.query_id.clone(),
            session_id: &self.session_id,
            user_name: self.user_name.clone(),
            protocol: &self.protocol,
            text: &self.text,
            started_at: self.started_at,
            elapsed: self.clock.elapsed(),
            status,
            error,
            rows,
            figures: plan.map(scan_figures).unwrap_or_default(),
            retries: 0,
            job: self.job.clone(),
        }
        .record()
    }

    /// Records the query when its stream is dropped before its end, where nothing can be
    /// awaited: the entry is written in the background.
    fn record(
        self,
        status: &str,
        error: Option<String>,
        rows: u64,
        plan: Option<&Arc<dyn ExecutionPlan>>,
    ) {
        let entry = self.entry(status, error, rows, plan);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { query_log::write(&self.warehouse, &entry).await });
        }
    }

    /// Writes the query's entry when its stream ended: the stream ends only once the entry is
    /// written, so a process that exits right after the last row keeps it.
    fn write(
        self,
        status: &str,
        error: Option<String>,
        rows: u64,
        plan: Option<&Arc<dyn ExecutionPlan>>,
    ) -> futures::future::BoxFuture<'static, ()> {
        let entry = self.entry(status, error, rows, plan);
        Box::pin(async move { query_log::write(&self.warehouse, &entry).await })
    }
}

/// A query's batches, recorded in the query log when they end or are dropped.
struct LoggedStream {
    inner: SendableRecordBatchStream,
    plan: Arc<dyn ExecutionPlan>,
    log: Option<QueryLog>,
    rows: u64,
    /// The entry being written after the end (and the error the stream ended with).
    ending: Option<(
        futures::future::BoxFuture<'static, ()>,
        Option<DataFusionError>,
    )>,
    ended: bool,
}

impl Stream for LoggedStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let span = this.log.as_ref().map(|l| l.span.clone());
        let _entered = span.as_ref().map(|s| s.enter());
        if this.ended {
            return Poll::Ready(None);
        }
        if this.ending.is_none() {
            let next =
                std::panic::catch_unwind(AssertUnwindSafe(|| this.inner.poll_next_unpin(cx)))
                    .unwrap_or_else(|payload| {
                        let error = super::panicked(payload.as_ref());
                        Poll::Ready(Some(Err(DataFusionError::External(Box::new(error)))))
                    });
            let (status, error) = match next {
                Poll::Ready(Some(Ok(batch))) => {
                    this.rows += batch.num_rows() as u64;
                    return Poll::Ready(Some(Ok(batch)));
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => ("FAILED", Some(e)),
                Poll::Ready(None) => ("SUCCESS", None),
            };
            let Some(log) = this.log.take() else {
                this.ended = true;
                return Poll::Ready(error.map(Err));
            };
            let message = error.as_ref().map(|e| e.to_string());
            let writing = log.write(status, message, this.rows, Some(&this.plan));
            this.ending = Some((writing, error));
        }
        let (writing, _) = this.ending.as_mut().expect("set above");
        match writing.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.ended = true;
                let (_, error) = this.ending.take().expect("set above");
                Poll::Ready(error.map(Err))
            }
        }
    }
}

impl RecordBatchStream for LoggedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for LoggedStream {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.record("CANCELLED", None, self.rows, Some(&self.plan));
        }
    }
}
