//! `strata serve --http-listen`: SQL over HTTP, in the style of Snowflake's SQL API and
//! ClickHouse's HTTP interface, for scripts, notebooks and tools that speak neither Flight nor
//! PostgreSQL.
//!
//! ```text
//!  POST   /v1/statements        {"statement": "...", "database": "main", "schema": "public",
//!                                "async": false}            → the result, or 202 and a handle
//!  GET    /v1/statements/{id}   an async statement: 202 while it runs, then its result
//!  DELETE /v1/statements/{id}   cancels it (a commit already started finishes)
//!  POST   /v1/login             Basic credentials → {"token": ...} for `Authorization: Bearer`
//!  GET    /                     the web console (`console`), a page that uses the routes above
//! ```
//!
//! Results come as JSON (default), CSV, an Arrow IPC stream or Parquet, chosen by `?format=`
//! (`json`, `csv`, `arrow`, `parquet`) or the `Accept` header. Every request authenticates
//! with Basic credentials or a bearer token of the same users as Flight and PostgreSQL, and
//! runs in a session of its own (the `database` and `schema` fields set it) under the server's
//! query slots, timeout and file policy; the query log records `protocol = 'http'`.

mod console;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datafusion::error::Result as DfResult;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use strata_query::{CommitGate, ErrorKind, Session, StatementResult};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;

use crate::auth::{Identity, Role};
use crate::flight::wire::{WireTypes, wire_batch, wire_schema};
use crate::policy;
use crate::shared::Shared;

/// Results of async statements nobody fetched are dropped after this long.
const RESULT_LIFETIME: Duration = Duration::from_secs(600);
/// Largest request body: a statement's text.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Async statements one user may have running or holding results.
const MAX_ASYNC_PER_USER: usize = 64;
/// Largest result an async statement keeps in memory until it is fetched.
const MAX_KEPT_RESULT_BYTES: usize = 256 * 1024 * 1024;

/// What every HTTP request of a server shares.
pub(crate) struct HttpServer {
    shared: Shared,
    /// Async statements by id.
    statements: Mutex<HashMap<String, Async>>,
}

/// An async statement.
struct Async {
    owner: String,
    gate: Arc<CommitGate>,
    task: tokio::task::AbortHandle,
    /// `None` while it runs.
    outcome: Option<Result<StatementResult, Failure>>,
    finished: Option<Instant>,
}

impl HttpServer {
    pub(crate) fn new(shared: Shared) -> Self {
        Self {
            shared,
            statements: Mutex::new(HashMap::new()),
        }
    }

    fn statements(&self) -> std::sync::MutexGuard<'_, HashMap<String, Async>> {
        self.statements.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves the HTTP SQL API on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, server: Arc<HttpServer>) {
    let app = Router::new()
        .route("/v1/statements", post(submit))
        .route("/v1/statements/{id}", get(status).delete(cancel))
        .route("/v1/login", post(login))
        .route("/", get(console::page))
        .route("/console.js", get(console::script))
        .layer(axum::middleware::from_fn(console::no_browser_dialog))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(server);
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the HTTP SQL API stopped");
    }
}

/// A request's failure: its HTTP status, a machine-readable code and the message.
#[derive(Debug, Clone)]
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// A statement's error, by its kind.
    fn query(e: strata_query::Error) -> Self {
        let (status, code) = match e.kind() {
            ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::ConstraintViolation => {
                (StatusCode::UNPROCESSABLE_ENTITY, "constraint_violation")
            }
            ErrorKind::Unsupported => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
            ErrorKind::Cancelled => (StatusCode::CONFLICT, "cancelled"),
            ErrorKind::ResourceExhausted => (StatusCode::SERVICE_UNAVAILABLE, "resource_exhausted"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, crate::error::truncated(e.to_string()))
    }

    /// A refusal of the shared core (authentication, the file policy).
    fn status(s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::Unauthenticated => Self::unauthorized(s.message()),
            tonic::Code::PermissionDenied => {
                Self::new(StatusCode::FORBIDDEN, "permission_denied", s.message())
            }
            _ => Self::new(StatusCode::BAD_REQUEST, "invalid_argument", s.message()),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"strata\""),
            );
        }
        response
    }
}

/// The caller of a request.
fn caller(
    server: &HttpServer,
    headers: &HeaderMap,
    from: std::net::SocketAddr,
) -> Result<Identity, Failure> {
    let header = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    server
        .shared
        .auth
        .authenticate_header(header, Some(from.ip()))
        .map_err(Failure::status)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    statement: String,
    database: Option<String>,
    schema: Option<String>,
    #[serde(default, rename = "async")]
    run_async: bool,
}

#[derive(Debug, Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

/// How a result is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Arrow,
    Parquet,
}

impl Format {
    fn chosen(query: &FormatQuery, headers: &HeaderMap) -> Result<Self, Failure> {
        if let Some(name) = &query.format {
            return match name.to_ascii_lowercase().as_str() {
                "json" => Ok(Format::Json),
                "csv" => Ok(Format::Csv),
                "arrow" | "arrow_stream" | "arrows" => Ok(Format::Arrow),
                "parquet" => Ok(Format::Parquet),
                other => Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_argument",
                    format!("format '{other}': use json, csv, arrow or parquet"),
                )),
            };
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        Ok(if accept.contains("text/csv") {
            Format::Csv
        } else if accept.contains("application/vnd.apache.arrow.stream") {
            Format::Arrow
        } else if accept.contains("parquet") {
            Format::Parquet
        } else {
            Format::Json
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

async fn login(
    State(server): State<Arc<HttpServer>>,
    ConnectInfo(from): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let who = caller(&server, &headers, from)?;
    let token = server.shared.auth.issue_token(&who);
    Ok(axum::Json(serde_json::json!({"token": token, "user": who.user})).into_response())
}

async fn submit(
    State(server): State<Arc<HttpServer>>,
    ConnectInfo(from): ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let who = caller(&server, &headers, from)?;
    let format = Format::chosen(&query, &headers)?;
    let request: Submit = serde_json::from_slice(&body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!(
                "the body must be JSON {{\"statement\": \"...\", \"database\": ..., \"schema\": \
                 ..., \"async\": false}}: {e}"
            ),
        )
    })?;
    let id = uuid::Uuid::new_v4().to_string();
    let gate = CommitGate::new();
    if !request.run_async {
        let outcome = run(&server, &who, request, &gate).await;
        return respond(&id, outcome?, format);
    }
    let running = Arc::clone(&server);
    let task_gate = Arc::clone(&gate);
    let task_id = id.clone();
    let task_who = who.clone();
    let mut statements = server.statements();
    let now = Instant::now();
    statements.retain(|_, s| {
        s.finished
            .is_none_or(|f| now.duration_since(f) < RESULT_LIFETIME)
    });
    let held = statements.values().filter(|s| s.owner == who.user).count();
    if held >= MAX_ASYNC_PER_USER {
        return Err(Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_statements",
            format!(
                "{held} async statements of yours are running or holding results: fetch or \
                 DELETE some (results are kept {} minutes)",
                RESULT_LIFETIME.as_secs() / 60
            ),
        ));
    }
    let task = tokio::spawn(async move {
        let outcome = match run(&running, &task_who, request, &task_gate).await {
            Ok(outcome) => keep(outcome, running.shared.limits.query_timeout).await,
            Err(e) => Err(e),
        };
        if let Some(entry) = running.statements().get_mut(&task_id) {
            entry.outcome = Some(outcome);
            entry.finished = Some(Instant::now());
        }
    });
    statements.insert(
        id.clone(),
        Async {
            owner: who.user.clone(),
            gate,
            task: task.abort_handle(),
            outcome: None,
            finished: None,
        },
    );
    Ok(accepted(&id))
}

/// 202 with the handle of a statement still running.
fn accepted(id: &str) -> Response {
    let body = serde_json::json!({
        "statement_id": id,
        "status": "running",
        "href": format!("/v1/statements/{id}"),
    });
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

async fn status(
    State(server): State<Arc<HttpServer>>,
    ConnectInfo(from): ConnectInfo<std::net::SocketAddr>,
    Path(id): Path<String>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let who = caller(&server, &headers, from)?;
    let format = Format::chosen(&query, &headers)?;
    let outcome = {
        let statements = server.statements();
        match statements.get(&id) {
            Some(s) if s.owner == who.user => s.outcome.clone(),
            _ => return Err(unknown(&id)),
        }
    };
    match outcome {
        None => Ok(accepted(&id)),
        Some(outcome) => respond(&id, Outcome::Done(outcome?), format),
    }
}

async fn cancel(
    State(server): State<Arc<HttpServer>>,
    ConnectInfo(from): ConnectInfo<std::net::SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let who = caller(&server, &headers, from)?;
    let mut statements = server.statements();
    let Some(entry) = statements.get_mut(&id).filter(|s| s.owner == who.user) else {
        return Err(unknown(&id));
    };
    let status = if entry.outcome.is_some() {
        "finished"
    } else if entry.gate.cancel() {
        entry.task.abort();
        entry.outcome = Some(Err(Failure::new(
            StatusCode::CONFLICT,
            "cancelled",
            "statement cancelled; nothing was committed",
        )));
        entry.finished = Some(Instant::now());
        "cancelled"
    } else {
        // Its commit had started: it finishes, and its result says so.
        "committing"
    };
    Ok(axum::Json(serde_json::json!({"statement_id": id, "status": status})).into_response())
}

fn unknown(id: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no statement {id} of yours: it never ran async, or its result expired"),
    )
}

/// What a request's last statement gave: a result in hand, or a query's rows still coming,
/// with the query slot they hold and the time they must end by.
enum Outcome {
    Done(StatementResult),
    Rows {
        rows: SendableRecordBatchStream,
        slot: OwnedSemaphorePermit,
        deadline: Option<tokio::time::Instant>,
    },
}

/// What a statement's future gives before the rows are read.
enum Last {
    Done(StatementResult),
    Rows(SendableRecordBatchStream),
}

/// Runs a request's statements in a session of its own under the server's slots, timeout and
/// `gate`. A last statement that is a query is planned here and its rows streamed by the
/// caller; anything else runs to its end.
async fn run(
    server: &HttpServer,
    who: &Identity,
    request: Submit,
    gate: &Arc<CommitGate>,
) -> Result<Outcome, Failure> {
    let statements = strata_query::parser::parse(&request.statement).map_err(Failure::query)?;
    let Some((last, before)) = statements.split_last() else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "no SQL statement given",
        ));
    };
    for s in &statements {
        policy::check(s, who.role, &server.shared.load).map_err(Failure::status)?;
    }
    let mut session = server.shared.warehouse.session();
    session.set_user(&who.user, who.role == Role::Admin);
    session.set_protocol("http");
    if request.database.is_some() || request.schema.is_some() {
        let (database, schema) = {
            let (d, s) = session.current_schema();
            (d.to_string(), s.to_string())
        };
        server
            .shared
            .warehouse
            .refresh_catalog()
            .await
            .map_err(Failure::query)?;
        session
            .set_schema(
                request.database.as_deref().unwrap_or(&database),
                request.schema.as_deref().unwrap_or(&schema),
            )
            .map_err(Failure::query)?;
    }
    let timeout = server.shared.limits.query_timeout;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let limit = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => futures::future::pending().await,
        }
    };
    let mut limit = std::pin::pin!(limit);
    let slot = tokio::select! {
        slot = Arc::clone(&server.shared.slots).acquire_owned() => slot.map_err(|_| {
            Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "shutting down")
        })?,
        _ = &mut limit => return Err(timed_out(timeout)),
    };
    let work = async {
        for statement in before {
            if Session::is_query(statement) {
                // Only the last result goes back: an earlier query's rows are read away.
                let mut rows = session.execute_stream(statement, None).await?;
                while let Some(batch) = rows.next().await {
                    batch?;
                }
            } else {
                session.execute_with(statement, None).await?;
            }
        }
        Ok::<_, strata_query::Error>(if Session::is_streamed(last) {
            Last::Rows(session.execute_stream(last, None).await?)
        } else {
            Last::Done(session.execute_with(last, None).await?)
        })
    };
    let mut work = std::pin::pin!(gate.run(work));
    let last = tokio::select! {
        outcome = &mut work => outcome.map_err(Failure::query)?,
        _ = &mut limit => {
            if gate.cancel() {
                return Err(timed_out(timeout));
            }
            work.await.map_err(Failure::query)?
        }
    };
    Ok(match last {
        Last::Done(result) => Outcome::Done(result),
        Last::Rows(rows) => Outcome::Rows {
            rows,
            slot,
            deadline,
        },
    })
}

fn timed_out(timeout: Option<Duration>) -> Failure {
    Failure::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        format!(
            "statement exceeded the server's query timeout of {} s and was stopped before it \
             committed anything",
            timeout.unwrap_or_default().as_secs()
        ),
    )
}

/// An async statement's result, kept until fetched: its rows read into memory, at most
/// [`MAX_KEPT_RESULT_BYTES`] of them.
async fn keep(outcome: Outcome, timeout: Option<Duration>) -> Result<StatementResult, Failure> {
    let (mut rows, deadline, _slot) = match outcome {
        Outcome::Done(result) => return Ok(result),
        Outcome::Rows {
            rows,
            slot,
            deadline,
        } => (rows, deadline, slot),
    };
    let schema = rows.schema();
    let mut batches = Vec::new();
    let mut bytes = 0usize;
    loop {
        let next = tokio::select! {
            next = rows.next() => next,
            _ = sleep_until(deadline) => {
                return Err(timed_out(timeout));
            }
        };
        let Some(batch) = next else { break };
        let batch = batch.map_err(|e| Failure::query(e.into()))?;
        bytes = bytes.saturating_add(batch.get_array_memory_size());
        if bytes > MAX_KEPT_RESULT_BYTES {
            return Err(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "result_too_large",
                format!(
                    "an async statement's result is kept in memory, at most {} MiB: run it \
                     without \"async\" to stream its rows",
                    MAX_KEPT_RESULT_BYTES >> 20
                ),
            ));
        }
        batches.push(batch);
    }
    Ok(StatementResult { schema, batches })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => futures::future::pending().await,
    }
}

/// An outcome in the format asked for: a result in hand at once, a query's rows as they come
/// (the slot held until the last is sent, the query stopped at its deadline). An error after
/// the first bytes ends the response early, as an aborted transfer.
fn respond(id: &str, outcome: Outcome, format: Format) -> Result<Response, Failure> {
    let (schema, rows, slot, deadline): (_, BoxStream<'static, DfResult<RecordBatch>>, _, _) =
        match outcome {
            Outcome::Done(result) => (
                result.schema,
                futures::stream::iter(result.batches.into_iter().map(Ok)).boxed(),
                None,
                None,
            ),
            Outcome::Rows {
                rows,
                slot,
                deadline,
            } => (rows.schema(), rows.boxed(), Some(slot), deadline),
        };
    let schema = wire_schema(&schema, WireTypes::Classic);
    let (encoder, head) = Encoder::new(id, &schema, format)
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    struct State {
        encoder: Option<Encoder>,
        rows: BoxStream<'static, DfResult<RecordBatch>>,
        schema: SchemaRef,
        deadline: Option<tokio::time::Instant>,
        _slot: Option<OwnedSemaphorePermit>,
    }
    let state = State {
        encoder: Some(encoder),
        rows,
        schema,
        deadline,
        _slot: slot,
    };
    let failed = |e: String| std::io::Error::other(e);
    let body = futures::stream::unfold(state, move |mut s| async move {
        let mut encoder = s.encoder.take()?;
        let next = tokio::select! {
            next = s.rows.next() => next,
            _ = sleep_until(s.deadline) => {
                return Some((Err(failed("the query passed the server's timeout".to_string())), s));
            }
        };
        let chunk = match next {
            None => encoder.finish(),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(batch)) => match wire_batch(&batch, &s.schema) {
                Ok(batch) => {
                    let chunk = encoder.batch(&batch);
                    s.encoder = Some(encoder);
                    chunk
                }
                Err(e) => Err(e.to_string()),
            },
        };
        Some((chunk.map(Bytes::from).map_err(failed), s))
    });
    let body = futures::stream::once(futures::future::ready(Ok(Bytes::from(head)))).chain(body);
    let mut response = Response::new(axum::body::Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(id) {
        response
            .headers_mut()
            .insert("x-strata-statement-id", value);
    }
    Ok(response)
}

/// Bytes a writer leaves, taken after each batch: the writers (CSV, Arrow IPC, Parquet) keep
/// their own state across batches while their output goes out as it is made.
#[derive(Clone, Default)]
struct Spill(Arc<Mutex<Vec<u8>>>);

impl Spill {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl std::io::Write for Spill {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes a result batch by batch in one format.
enum Encoder {
    /// `{"statement_id", "meta", "data": [rows as objects...], "rows"}`.
    Json {
        rows: usize,
        first: bool,
    },
    Csv(Box<arrow::csv::Writer<Spill>>, Spill),
    Arrow(Box<arrow::ipc::writer::StreamWriter<Spill>>, Spill),
    Parquet(Box<parquet::arrow::ArrowWriter<Spill>>, Spill),
}

impl Encoder {
    /// The encoder and the bytes that open the response.
    fn new(id: &str, schema: &SchemaRef, format: Format) -> Result<(Self, Vec<u8>), String> {
        let failed = |e: &dyn std::fmt::Display| format!("encoding the result: {e}");
        let out = Spill::default();
        Ok(match format {
            Format::Json => {
                let meta: Vec<serde_json::Value> = schema
                    .fields()
                    .iter()
                    .map(|f| {
                        serde_json::json!({"name": f.name(), "type": f.data_type().to_string()})
                    })
                    .collect();
                let head = format!(
                    "{{\"statement_id\":{},\"meta\":{},\"data\":[",
                    serde_json::Value::from(id),
                    serde_json::Value::from(meta)
                );
                (
                    Encoder::Json {
                        rows: 0,
                        first: true,
                    },
                    head.into_bytes(),
                )
            }
            Format::Csv => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out.clone());
                // The header goes out even for a result without rows.
                writer
                    .write(&RecordBatch::new_empty(Arc::clone(schema)))
                    .map_err(|e| failed(&e))?;
                let head = out.take();
                (Encoder::Csv(Box::new(writer), out), head)
            }
            Format::Arrow => {
                let writer = arrow::ipc::writer::StreamWriter::try_new(out.clone(), schema)
                    .map_err(|e| failed(&e))?;
                let head = out.take();
                (Encoder::Arrow(Box::new(writer), out), head)
            }
            Format::Parquet => {
                let writer =
                    parquet::arrow::ArrowWriter::try_new(out.clone(), Arc::clone(schema), None)
                        .map_err(|e| failed(&e))?;
                let head = out.take();
                (Encoder::Parquet(Box::new(writer), out), head)
            }
        })
    }

    /// The bytes of one batch (a Parquet row group goes out when it is full).
    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, String> {
        let failed = |e: &dyn std::fmt::Display| format!("encoding the result: {e}");
        match self {
            Encoder::Json { rows, first } => {
                let mut writer = arrow::json::ArrayWriter::new(Vec::new());
                writer.write(batch).map_err(|e| failed(&e))?;
                writer.finish().map_err(|e| failed(&e))?;
                let array = writer.into_inner();
                // `[{...},{...}]` without its brackets, joined to the rows before it.
                let inner = array
                    .get(1..array.len().saturating_sub(1))
                    .unwrap_or_default();
                *rows = rows.saturating_add(batch.num_rows());
                if inner.is_empty() {
                    return Ok(Vec::new());
                }
                let mut out = Vec::with_capacity(inner.len() + 1);
                if !*first {
                    out.push(b',');
                }
                *first = false;
                out.extend_from_slice(inner);
                Ok(out)
            }
            Encoder::Csv(writer, out) => {
                writer.write(batch).map_err(|e| failed(&e))?;
                Ok(out.take())
            }
            Encoder::Arrow(writer, out) => {
                writer.write(batch).map_err(|e| failed(&e))?;
                Ok(out.take())
            }
            Encoder::Parquet(writer, out) => {
                writer.write(batch).map_err(|e| failed(&e))?;
                Ok(out.take())
            }
        }
    }

    /// The bytes that close the response.
    fn finish(self) -> Result<Vec<u8>, String> {
        let failed = |e: &dyn std::fmt::Display| format!("encoding the result: {e}");
        match self {
            Encoder::Json { rows, .. } => Ok(format!("],\"rows\":{rows}}}").into_bytes()),
            Encoder::Csv(_, out) => Ok(out.take()),
            Encoder::Arrow(mut writer, out) => {
                writer.finish().map_err(|e| failed(&e))?;
                Ok(out.take())
            }
            Encoder::Parquet(writer, out) => {
                writer.close().map_err(|e| failed(&e))?;
                Ok(out.take())
            }
        }
    }
}
