//! Running a PostgreSQL client's statements on its connection's session.
//!
//! Simple queries (`Query`) may hold several statements; each answers in turn, and the first
//! failure ends the batch. Extended queries (`Parse`/`Bind`/`Execute`) plan at `Parse`, for
//! the parameter and result types `Describe` reports; `Bind` brings typed values in text or
//! binary, and pgwire serves a portal's rows `max_rows` at a time. Queries stream: their rows
//! are encoded batch by batch (arrow-pg, text or binary per column) while a query slot is held,
//! and stop at a cancel request or the query timeout. Other statements run to their end under
//! the same slot, timeout and cancel, a commit already started always finishing.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{MemPortalStore, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use pgwire::messages::response::NoticeResponse;
use strata_query::parser::ParsedStatement;
use strata_query::{CommitGate, Session};

use super::compat::{self, Command};
use super::connection::{Connection, Cursor, connection};
use super::error::{query_error, status_error, user_error};
use super::server::PgServer;
use crate::policy;

/// Open cursors a connection may hold.
const MAX_CURSORS: usize = 64;
/// Rows one FETCH answers with at most (FETCH ALL included): its rows are held in memory.
const MAX_FETCH_ROWS: usize = 1_000_000;

/// A statement prepared with `Parse`: what it is, and the types `Describe` reports.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    command: Command,
    /// The types DataFusion infers for `$1`, `$2`, ... (`None`: it could not tell).
    parameters: Vec<Option<DataType>>,
    /// The rows' schema, for statements known to return rows before they run.
    result: Option<SchemaRef>,
}

/// The types DataFusion infers for a statement's `$1`, `$2`, ... (`None`: it could not tell).
async fn parameter_types(
    session: &Session,
    statement: &ParsedStatement,
) -> PgWireResult<Vec<Option<DataType>>> {
    Ok(session
        .parameter_schema(statement)
        .await
        .map_err(|e| query_error(e, None))?
        .fields()
        .iter()
        .map(|f| (f.data_type() != &DataType::Null).then(|| f.data_type().clone()))
        .collect())
}

/// Parses extended-query statements: pgwire's `QueryParser`.
pub(crate) struct Parser {
    compat: PostgresCompatibilityParser,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let conn = connection(client)?;
        let mut commands = compat::parse(sql, &self.compat).map_err(|e| query_error(e, None))?;
        let command = match commands.len() {
            0 => return Ok(None),
            1 => commands.remove(0),
            _ => {
                return Err(user_error(
                    "42601",
                    "cannot insert multiple commands into a prepared statement".to_string(),
                ));
            }
        };
        let (parameters, result) = match &command {
            Command::Strata(statement) => {
                let session = conn.session.lock().await;
                let parameters = parameter_types(&session, statement).await?;
                let result = if Session::is_streamed(statement) {
                    Some(
                        session
                            .query_schema(statement, None)
                            .await
                            .map_err(|e| query_error(e, None))?,
                    )
                } else {
                    None
                };
                (parameters, result)
            }
            Command::Show(name) => (Vec::new(), Some(show_schema(name))),
            Command::Declare { query, .. } => {
                let session = conn.session.lock().await;
                (parameter_types(&session, query).await?, None)
            }
            Command::Fetch { name, .. } => {
                let schema = conn
                    .cursors
                    .lock()
                    .await
                    .get(name)
                    .map(|c| Arc::clone(&c.schema));
                (Vec::new(), schema)
            }
            _ => (Vec::new(), None),
        };
        Ok(Some(Prepared {
            command,
            parameters,
            result,
        }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        statement
            .parameters
            .iter()
            .map(|t| match t {
                Some(t) => into_pg_type(t),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &statement.result {
            Some(schema) => pg_fields(schema, format.unwrap_or(&Format::UnifiedText)),
            None => Ok(Vec::new()),
        }
    }
}

/// The simple and extended query handlers.
pub(crate) struct Queries {
    server: Arc<PgServer>,
    parser: Arc<Parser>,
}

impl Queries {
    pub(crate) fn new(server: Arc<PgServer>) -> Self {
        Self {
            server,
            parser: Arc::new(Parser {
                compat: PostgresCompatibilityParser::new(),
            }),
        }
    }

    /// Runs one command; rows are encoded in `format`.
    async fn run<C>(
        &self,
        client: &mut C,
        conn: &Arc<Connection>,
        command: &Command,
        params: Option<ParamValues>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match command {
            Command::Strata(statement) => self.run_statement(conn, statement, params, format).await,
            Command::Set { name, value } => {
                if name == "search_path" {
                    let schema = value.split(',').next().unwrap_or_default().trim();
                    let schema = schema.trim_matches('"');
                    if !schema.is_empty() && schema != "$user" && schema != "pg_catalog" {
                        let mut session = conn.session.lock().await;
                        let database = session.current_schema().0.to_string();
                        session
                            .set_schema(&database, schema)
                            .map_err(|e| query_error(e, None))?;
                    }
                }
                conn.settings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .set(name, value.clone());
                Ok(Response::Execution(Tag::new("SET")))
            }
            Command::Show(name) => {
                let rows = {
                    let settings = conn.settings.lock().unwrap_or_else(|e| e.into_inner());
                    if name == "all" {
                        settings.all()
                    } else {
                        vec![(name.clone(), settings.show(name).unwrap_or_default())]
                    }
                };
                let schema = show_schema(name);
                let batch = if name == "all" {
                    let names =
                        arrow::array::StringArray::from_iter_values(rows.iter().map(|r| &r.0));
                    let values =
                        arrow::array::StringArray::from_iter_values(rows.iter().map(|r| &r.1));
                    arrow::array::RecordBatch::try_new(
                        Arc::clone(&schema),
                        vec![Arc::new(names), Arc::new(values)],
                    )
                } else {
                    let values =
                        arrow::array::StringArray::from_iter_values(rows.iter().map(|r| &r.1));
                    arrow::array::RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(values)])
                }
                .map_err(|e| user_error("XX000", e.to_string()))?;
                Ok(rows_response(&schema, vec![batch], format)?)
            }
            Command::Begin => {
                // A BEGIN inside a transaction keeps what the transaction wrote.
                let mut settings = conn.settings.lock().unwrap_or_else(|e| e.into_inner());
                settings.transaction = Some(settings.transaction.unwrap_or(false));
                Ok(Response::TransactionStart(Tag::new("BEGIN")))
            }
            Command::Commit => {
                conn.settings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .transaction = None;
                Ok(Response::TransactionEnd(Tag::new("COMMIT")))
            }
            Command::Rollback => {
                let wrote = conn
                    .settings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .transaction
                    .take()
                    .unwrap_or(false);
                if wrote {
                    // Saying nothing would let the client believe its writes were undone.
                    let notice = ErrorInfo::new(
                        "WARNING".to_string(),
                        "25P01".to_string(),
                        "ROLLBACK did not undo the writes since BEGIN: Strata commits each \
                         statement when it runs"
                            .to_string(),
                    );
                    client
                        .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                            notice,
                        )))
                        .await?;
                }
                Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
            }
            Command::Accept(tag) => Ok(Response::Execution(Tag::new(tag))),
            Command::Declare { name, query } => {
                policy::check(query, conn.identity.role, &self.server.shared.load)
                    .map_err(status_error)?;
                if !Session::is_query(query) {
                    return Err(user_error(
                        "42601",
                        "DECLARE CURSOR needs a query (SELECT, WITH, VALUES)".to_string(),
                    ));
                }
                if conn.cursors.lock().await.len() >= MAX_CURSORS {
                    return Err(user_error(
                        "53400",
                        format!("a connection may hold {MAX_CURSORS} open cursors: CLOSE one"),
                    ));
                }
                let stream = {
                    let mut session = conn.session.lock().await;
                    session
                        .execute_stream(query, params.as_ref())
                        .await
                        .map_err(|e| query_error(e, None))?
                };
                let schema = stream.schema();
                let stream = run_ahead(&self.server, conn, stream);
                // As in PostgreSQL, the cursor is also a portal: drivers `Describe` it for
                // its columns before they FETCH.
                let fetch = Prepared {
                    command: Command::Fetch {
                        name: name.clone(),
                        count: None,
                    },
                    parameters: Vec::new(),
                    result: Some(Arc::clone(&schema)),
                };
                if let Some(store) = client
                    .portal_store()
                    .as_any()
                    .downcast_ref::<MemPortalStore<Prepared>>()
                {
                    let statement = Arc::new(StoredStatement::new(name.clone(), fetch, Vec::new()));
                    store.put_portal(Arc::new(Portal::new_cursor(name.clone(), statement)));
                }
                conn.cursors.lock().await.insert(
                    name.clone(),
                    Cursor {
                        schema,
                        stream,
                        pending: None,
                    },
                );
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            Command::Fetch { name, count } => {
                let mut cursors = conn.cursors.lock().await;
                let cursor = cursors.get_mut(name).ok_or_else(|| {
                    user_error("34000", format!("cursor \"{name}\" does not exist"))
                })?;
                let mut left = count.unwrap_or(MAX_FETCH_ROWS).min(MAX_FETCH_ROWS);
                let mut batches = Vec::new();
                while left > 0 {
                    let batch = match cursor.pending.take() {
                        Some(batch) => batch,
                        None => match cursor.stream.next().await {
                            Some(batch) => batch?,
                            None => break,
                        },
                    };
                    let rows = batch.num_rows();
                    if rows <= left {
                        left -= rows;
                        batches.push(batch);
                    } else {
                        batches.push(batch.slice(0, left));
                        cursor.pending = Some(batch.slice(left, rows - left));
                        left = 0;
                    }
                }
                if count.is_none_or(|n| n > MAX_FETCH_ROWS) && left == 0 {
                    // More rows than one FETCH answers with: say so rather than stop short.
                    cursor.pending = None;
                    return Err(user_error(
                        "54000",
                        format!(
                            "FETCH answers at most {MAX_FETCH_ROWS} rows: fetch in parts \
                             (FETCH FORWARD n)"
                        ),
                    ));
                }
                let schema = Arc::clone(&cursor.schema);
                let mut response = rows_response(&schema, batches, format)?;
                if let Response::Query(query) = &mut response {
                    query.command_tag = "FETCH".to_string();
                }
                Ok(response)
            }
            Command::Close(name) => {
                let mut cursors = conn.cursors.lock().await;
                if let Some(store) = client
                    .portal_store()
                    .as_any()
                    .downcast_ref::<MemPortalStore<Prepared>>()
                {
                    let names: Vec<String> = match name {
                        Some(name) => vec![name.clone()],
                        None => cursors.keys().cloned().collect(),
                    };
                    for name in names {
                        store.rm_portal(&name);
                    }
                }
                match name {
                    Some(name) => {
                        cursors.remove(name).ok_or_else(|| {
                            user_error("34000", format!("cursor \"{name}\" does not exist"))
                        })?;
                    }
                    None => cursors.clear(),
                }
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
            Command::CopyIn(super::copy::CopySpec { options, .. })
            | Command::CopyOut(super::copy::CopyOutSpec { options, .. })
                if options.binary =>
            {
                Err(user_error(
                    "0A000",
                    "COPY in PostgreSQL's binary format is not supported: use FORMAT csv or text"
                        .to_string(),
                ))
            }
            Command::CopyOut(spec) => {
                let statement = strata_query::parser::parse(&spec.query)
                    .map_err(|e| query_error(e, None))?
                    .pop()
                    .ok_or_else(|| user_error("42601", "COPY: no query".to_string()))?;
                policy::check(&statement, conn.identity.role, &self.server.shared.load)
                    .map_err(status_error)?;
                let stream = {
                    let mut session = conn.session.lock().await;
                    session
                        .execute_stream(&statement, None)
                        .await
                        .map_err(|e| query_error(e, None))?
                };
                let schema = stream.schema();
                let writer = super::copy::CopyWriter::new(&spec.options);
                // The header travels with the first row: pgwire counts data messages for the
                // `COPY n` tag.
                let header = writer.header(&schema);
                let lines = run_ahead(&self.server, conn, stream)
                    .map(move |batch| {
                        let lines = batch.and_then(|b| {
                            writer
                                .rows(&b)
                                .map_err(|e| user_error("22P02", format!("COPY: {e}")))
                        });
                        futures::stream::iter(match lines {
                            Ok(lines) => lines.into_iter().map(Ok).collect::<Vec<_>>(),
                            Err(e) => vec![Err(e)],
                        })
                    })
                    .flatten()
                    .boxed();
                let data = futures::stream::unfold(
                    (lines, header, false),
                    |(mut lines, mut header, done)| async move {
                        if done {
                            return None;
                        }
                        match lines.next().await {
                            Some(line) => {
                                let line = match (header.take(), line) {
                                    (Some(mut head), Ok(line)) => {
                                        head.extend_from_slice(&line);
                                        Ok(head)
                                    }
                                    (_, line) => line,
                                };
                                let data = line.map(|l| CopyData::new(l.into()));
                                Some((data, (lines, None, false)))
                            }
                            // No rows: the header alone.
                            None => header
                                .take()
                                .map(|head| (Ok(CopyData::new(head.into())), (lines, None, true))),
                        }
                    },
                );
                Ok(Response::CopyOut(CopyResponse::new(
                    0,
                    schema.fields().len(),
                    data,
                )))
            }
            Command::CopyIn(spec) => {
                if spec.column_list {
                    return Err(user_error(
                        "0A000",
                        "COPY ... FROM STDIN with a column list: the data must have the \
                         table's columns in order; leave the list out"
                            .to_string(),
                    ));
                }
                let spool = super::copy::Spool::create(spec.clone()).map_err(|e| {
                    user_error("53100", format!("COPY: creating a temporary file: {e}"))
                })?;
                *conn.copy.lock().unwrap_or_else(|e| e.into_inner()) = Some(spool);
                Ok(Response::CopyIn(CopyResponse::new(
                    0,
                    0,
                    futures::stream::empty(),
                )))
            }
        }
    }

    /// Runs a Strata statement: a query streams, anything else runs to its end.
    async fn run_statement(
        &self,
        conn: &Arc<Connection>,
        statement: &ParsedStatement,
        params: Option<ParamValues>,
        format: &Format,
    ) -> PgWireResult<Response> {
        policy::check(statement, conn.identity.role, &self.server.shared.load)
            .map_err(status_error)?;
        if Session::is_streamed(statement) {
            let stream = {
                let mut session = conn.session.lock().await;
                session
                    .execute_stream(statement, params.as_ref())
                    .await
                    .map_err(|e| query_error(e, None))?
            };
            let fields = Arc::new(pg_fields(&stream.schema(), format)?);
            let rows = rows(&self.server, conn, stream, Arc::clone(&fields));
            return Ok(Response::Query(QueryResponse::new(fields, rows)));
        }
        let result = {
            let mut session = conn.session.lock().await;
            let run = Box::pin(session.execute_with(statement, params.as_ref()));
            run_gated(&self.server, run, Some(conn)).await?
        }
        .map_err(|e| query_error(e, None))?;
        let tag = command_tag(&statement.text);
        if !matches!(
            tag.as_str(),
            "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "USE" | "SET" | "LIST"
        ) {
            conn.note_write();
        }
        if let Some(count) = result.changed_rows() {
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            let tag = match tag.as_str() {
                "INSERT" => Tag::new("INSERT").with_oid(0).with_rows(count),
                other => Tag::new(other).with_rows(count),
            };
            return Ok(Response::Execution(tag));
        }
        let names: Vec<&str> = result
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        if names == ["status"] || result.schema.fields().is_empty() {
            return Ok(Response::Execution(Tag::new(&tag)));
        }
        rows_response(&result.schema, result.batches, format)
    }
}

/// Runs a statement under a query slot, the query timeout and (with `conn`) the connection's
/// cancel requests. A statement whose commit has started runs to its end.
pub(crate) async fn run_gated<F: std::future::Future + ?Sized>(
    server: &PgServer,
    run: std::pin::Pin<Box<F>>,
    conn: Option<&Arc<Connection>>,
) -> PgWireResult<F::Output> {
    // The timeout and a cancel request count from now: waiting for a slot is part of it.
    let timeout = server.shared.limits.query_timeout;
    let mut cancelled = conn.map(|c| c.cancels.subscribe());
    let stop = async {
        let timer = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => futures::future::pending().await,
            }
        };
        let cancel = async {
            match cancelled.as_mut() {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        futures::future::pending::<()>().await;
                    }
                }
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            _ = timer => "timeout",
            _ = cancel => "cancel",
        }
    };
    let mut stop = std::pin::pin!(stop);
    let _slot = tokio::select! {
        slot = Arc::clone(&server.shared.slots).acquire_owned() => {
            slot.map_err(|_| user_error("57P01", "server is shutting down".to_string()))?
        }
        why = &mut stop => return Err(stopped(why, timeout)),
    };
    let gate = CommitGate::new();
    let mut run = std::pin::pin!(gate.run(run));
    tokio::select! {
        output = &mut run => Ok(output),
        why = &mut stop => {
            if gate.cancel() {
                Err(stopped(why, timeout))
            } else {
                Ok(run.await)
            }
        }
    }
}

fn stopped(why: &str, timeout: Option<std::time::Duration>) -> PgWireError {
    if why == "timeout" {
        user_error(
            "57014",
            format!(
                "canceling statement due to statement timeout: the server's query timeout is \
                 {} s; nothing was committed",
                timeout.unwrap_or_default().as_secs()
            ),
        )
    } else {
        user_error(
            "57014",
            "canceling statement due to user request; nothing was committed".to_string(),
        )
    }
}

/// The rows of a streaming query. A task runs the query ahead of the client by at most two
/// batches: it takes a query slot, and stops (freeing the slot) at the query timeout, a
/// cancel request, or when the client is gone, even while the client holds a portal half
/// read. A client that comes back to a query stopped that way gets its error after the rows
/// it was sent, never a silently short result.
fn rows(
    server: &Arc<PgServer>,
    conn: &Arc<Connection>,
    stream: SendableRecordBatchStream,
    fields: Arc<Vec<FieldInfo>>,
) -> impl futures::Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    run_ahead(server, conn, stream).flat_map(move |batch| {
        let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send> = match batch {
            Ok(batch) => Box::new(encode_recordbatch(Arc::clone(&fields), batch)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
        futures::stream::iter(rows)
    })
}

/// A query's batches, run ahead of the client by a task under a query slot, the timeout and
/// the connection's cancel requests (see [`rows`]).
pub(crate) fn run_ahead(
    server: &Arc<PgServer>,
    conn: &Arc<Connection>,
    stream: SendableRecordBatchStream,
) -> futures::stream::BoxStream<'static, PgWireResult<arrow::array::RecordBatch>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<arrow::array::RecordBatch>(2);
    let ended: Arc<std::sync::Mutex<Option<PgWireError>>> = Arc::default();
    let failure = Arc::clone(&ended);
    let server = Arc::clone(server);
    let mut cancelled = conn.cancels.subscribe();
    tokio::spawn(async move {
        let timeout = server.shared.limits.query_timeout;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let stop = async {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => futures::future::pending().await,
                }
            };
            let cancel = async {
                if cancelled.changed().await.is_err() {
                    futures::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = timer => "timeout",
                _ = cancel => "cancel",
            }
        };
        let mut stop = std::pin::pin!(stop);
        let fail = |e: PgWireError| {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        };
        let _slot = tokio::select! {
            slot = Arc::clone(&server.shared.slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return fail(user_error("57P01", "server is shutting down".to_string())),
            },
            why = &mut stop => return fail(stopped(why, timeout)),
            _ = tx.closed() => return,
        };
        let mut stream = stream;
        loop {
            let batch = tokio::select! {
                batch = stream.next() => batch,
                why = &mut stop => return fail(stopped(why, timeout)),
                _ = tx.closed() => return,
            };
            match batch {
                None => return,
                Some(Err(e)) => return fail(query_error(e.into(), None)),
                Some(Ok(batch)) => {
                    tokio::select! {
                        sent = tx.send(batch) => if sent.is_err() { return },
                        why = &mut stop => return fail(stopped(why, timeout)),
                    }
                }
            }
        }
    });
    futures::stream::unfold((rx, ended), |(mut rx, ended)| async move {
        match rx.recv().await {
            Some(batch) => Some((Ok(batch), (rx, ended))),
            None => {
                let error = ended.lock().unwrap_or_else(|p| p.into_inner()).take();
                error.map(|e| (Err(e), (rx, ended)))
            }
        }
    })
    .boxed()
}

/// A result's rows, all in hand.
fn rows_response(
    schema: &SchemaRef,
    batches: Vec<arrow::array::RecordBatch>,
    format: &Format,
) -> PgWireResult<Response> {
    let fields = Arc::new(pg_fields(schema, format)?);
    let encoded = Arc::clone(&fields);
    let rows = futures::stream::iter(batches)
        .flat_map(move |b| futures::stream::iter(encode_recordbatch(Arc::clone(&encoded), b)));
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}

/// The PostgreSQL columns of an Arrow schema; JSON columns (`strata.sql_type = JSON`) as
/// `json`.
fn pg_fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let mut fields = arrow_schema_to_pg_fields(schema, format, None)?;
    for (i, field) in schema.fields().iter().enumerate() {
        if field
            .metadata()
            .get("strata.sql_type")
            .is_some_and(|t| t.eq_ignore_ascii_case("JSON"))
        {
            fields[i] = FieldInfo::new(
                field.name().clone(),
                None,
                None,
                Type::JSON,
                format.format_for(i),
            );
        }
    }
    Ok(fields)
}

fn show_schema(name: &str) -> SchemaRef {
    use arrow::datatypes::Field;
    if name == "all" {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("setting", DataType::Utf8, false),
        ]))
    } else {
        Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
    }
}

/// PostgreSQL's command tag for a statement: `CREATE TABLE`, `INSERT`, `DROP VIEW`, ...
fn command_tag(text: &str) -> String {
    let words: Vec<String> = text
        .split_whitespace()
        .take(4)
        .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
        .collect();
    let first = words.first().map(String::as_str).unwrap_or("OK");
    match first {
        "CREATE" | "DROP" | "ALTER" => {
            // CREATE [OR REPLACE] [EXTERNAL|MATERIALIZED|...] <object>
            let object = words[1..]
                .iter()
                .find(|w| {
                    matches!(
                        w.as_str(),
                        "TABLE"
                            | "VIEW"
                            | "SCHEMA"
                            | "DATABASE"
                            | "INDEX"
                            | "TASK"
                            | "SECRET"
                            | "STAGE"
                            | "FUNCTION"
                            | "ALERT"
                            | "TAG"
                    )
                })
                .cloned();
            let materialized = words.iter().any(|w| w == "MATERIALIZED");
            match object {
                Some(o) if materialized => format!("{first} MATERIALIZED {o}"),
                Some(o) => format!("{first} {o}"),
                None => first.to_string(),
            }
        }
        other => other.to_string(),
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client)?;
        let commands =
            compat::parse(query, &self.parser.compat).map_err(|e| query_error(e, None))?;
        if commands.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(commands.len());
        for command in &commands {
            match self
                .run(client, &conn, command, None, &Format::UnifiedText)
                .await
            {
                Ok(response) => {
                    let copy = matches!(response, Response::CopyIn(_));
                    responses.push(response);
                    // COPY FROM STDIN takes the connection until its data ends.
                    if copy {
                        break;
                    }
                }
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client)?;
        let prepared = &portal.statement.statement;
        let params = if prepared.parameters.is_empty() && portal.parameters.is_empty() {
            None
        } else {
            let inferred: Vec<Option<&DataType>> =
                prepared.parameters.iter().map(Option::as_ref).collect();
            let values = deserialize_parameters_with_server_types(portal, &inferred, &[])?;
            Some(coerce(values, &prepared.parameters)?)
        };
        self.run(
            client,
            &conn,
            &prepared.command,
            params,
            &portal.result_column_format,
        )
        .await
    }
}

/// Parameters cast to the types the statement expects (a driver sends `int8` for any Python
/// or Java integer, `text` for a date).
fn coerce(values: ParamValues, expected: &[Option<DataType>]) -> PgWireResult<ParamValues> {
    let ParamValues::List(values) = values else {
        return Ok(values);
    };
    let cast = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let wanted = expected.get(i).cloned().flatten();
            match wanted {
                Some(t) if v.value.data_type() != t && !v.value.is_null() => v
                    .value
                    .cast_to(&t)
                    .map(|value| datafusion::common::metadata::ScalarAndMetadata::new(value, None))
                    .map_err(|e| user_error("22023", format!("parameter ${}: {e}", i + 1))),
                Some(t) if v.value.is_null() => datafusion::scalar::ScalarValue::try_from(&t)
                    .map(|value| datafusion::common::metadata::ScalarAndMetadata::new(value, None))
                    .map_err(|e| user_error("22023", format!("parameter ${}: {e}", i + 1))),
                _ => Ok(v),
            }
        })
        .collect::<PgWireResult<Vec<_>>>()?;
    Ok(ParamValues::List(cast))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tags_are_postgresql_s() {
        assert_eq!(command_tag("create table t (a int)"), "CREATE TABLE");
        assert_eq!(
            command_tag("CREATE OR REPLACE VIEW v AS SELECT 1"),
            "CREATE VIEW"
        );
        assert_eq!(
            command_tag("create materialized view m as select 1"),
            "CREATE MATERIALIZED VIEW"
        );
        assert_eq!(command_tag("DROP TABLE IF EXISTS t"), "DROP TABLE");
        assert_eq!(command_tag("use main.public"), "USE");
    }
}
