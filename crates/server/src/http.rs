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
//! ```
//!
//! Results come as JSON (default), CSV, an Arrow IPC stream or Parquet, chosen by `?format=`
//! (`json`, `csv`, `arrow`, `parquet`) or the `Accept` header. Every request authenticates
//! with Basic credentials or a bearer token of the same users as Flight and PostgreSQL, and
//! runs in a session of its own (the `database` and `schema` fields set it) under the server's
//! query slots, timeout and file policy; the query log records `protocol = 'http'`.

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
use serde::Deserialize;
use strata_query::{CommitGate, ErrorKind, StatementResult, Warehouse};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::auth::{Authenticator, Identity, Role};
use crate::flight::wire::{WireTypes, wire_batch, wire_schema};
use crate::limits::Limits;
use crate::policy::{self, LoadPolicy};

/// Results of async statements nobody fetched are dropped after this long.
const RESULT_LIFETIME: Duration = Duration::from_secs(600);
/// Largest request body: a statement's text.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What every HTTP request of a server shares.
pub(crate) struct HttpServer {
    warehouse: Warehouse,
    auth: Arc<Authenticator>,
    limits: Limits,
    slots: Arc<Semaphore>,
    load: LoadPolicy,
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
    pub(crate) fn new(
        warehouse: Warehouse,
        auth: Arc<Authenticator>,
        limits: Limits,
        slots: Arc<Semaphore>,
        load: LoadPolicy,
    ) -> Self {
        Self {
            warehouse,
            auth,
            limits,
            slots,
            load,
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
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        metadata.insert("authorization", value);
    }
    server
        .auth
        .authenticate(&metadata, Some(from.ip()))
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
    let token = server.auth.issue_token(&who);
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
    let task = tokio::spawn(async move {
        let outcome = run(&running, &task_who, request, &task_gate).await;
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
        Some(outcome) => respond(&id, outcome?, format),
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

/// Runs a request's statements in a session of its own under the server's slots, timeout and
/// `gate`; returns the last statement's result.
async fn run(
    server: &HttpServer,
    who: &Identity,
    request: Submit,
    gate: &Arc<CommitGate>,
) -> Result<StatementResult, Failure> {
    let statements = strata_query::parser::parse(&request.statement).map_err(Failure::query)?;
    if statements.is_empty() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "no SQL statement given",
        ));
    }
    for s in &statements {
        policy::check(s, who.role, &server.load).map_err(Failure::status)?;
    }
    let mut session = server.warehouse.session();
    session.set_user(&who.user, who.role == Role::Admin);
    session.set_protocol("http");
    if request.database.is_some() || request.schema.is_some() {
        let (database, schema) = {
            let (d, s) = session.current_schema();
            (d.to_string(), s.to_string())
        };
        server
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
    let _slot = Arc::clone(&server.slots)
        .acquire_owned()
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "shutting down",
            )
        })?;
    let timeout = server.limits.query_timeout;
    let work = async {
        let mut last = StatementResult::empty();
        for statement in &statements {
            last = session.execute_with(statement, None).await?;
        }
        Ok::<_, strata_query::Error>(last)
    };
    let mut work = std::pin::pin!(gate.run(work));
    let limit = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => futures::future::pending().await,
        }
    };
    tokio::select! {
        outcome = &mut work => outcome.map_err(Failure::query),
        _ = limit => {
            if gate.cancel() {
                Err(Failure::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!(
                        "statement exceeded the server's query timeout of {} s and was stopped \
                         before it committed anything",
                        timeout.unwrap_or_default().as_secs()
                    ),
                ))
            } else {
                work.await.map_err(Failure::query)
            }
        }
    }
}

/// A result in the format asked for.
fn respond(id: &str, result: StatementResult, format: Format) -> Result<Response, Failure> {
    let schema = wire_schema(&result.schema, WireTypes::Classic);
    let batches = result
        .batches
        .iter()
        .map(|b| wire_batch(b, &schema))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let body = encode(id, &schema, &batches, format)
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    let mut response = Response::new(axum::body::Body::from(body));
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

fn encode(
    id: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> Result<Vec<u8>, String> {
    let failed = |e: &dyn std::fmt::Display| format!("encoding the result: {e}");
    match format {
        Format::Json => {
            let mut rows = arrow::json::ArrayWriter::new(Vec::new());
            for batch in batches {
                rows.write(batch).map_err(|e| failed(&e))?;
            }
            rows.finish().map_err(|e| failed(&e))?;
            let data = rows.into_inner();
            let data: serde_json::Value = if data.is_empty() {
                serde_json::Value::Array(Vec::new())
            } else {
                serde_json::from_slice(&data).map_err(|e| failed(&e))?
            };
            let meta: Vec<serde_json::Value> = schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            serde_json::to_vec(&serde_json::json!({
                "statement_id": id,
                "meta": meta,
                "data": data,
                "rows": rows,
            }))
            .map_err(|e| failed(&e))
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(Vec::new());
            if batches.is_empty() {
                let empty = RecordBatch::new_empty(Arc::clone(schema));
                writer.write(&empty).map_err(|e| failed(&e))?;
            }
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
            Ok(writer.into_inner())
        }
        Format::Arrow => {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)
                .map_err(|e| failed(&e))?;
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
            writer.finish().map_err(|e| failed(&e))?;
            writer.into_inner().map_err(|e| failed(&e))
        }
        Format::Parquet => {
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(Vec::new(), Arc::clone(schema), None)
                    .map_err(|e| failed(&e))?;
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
            writer.into_inner().map_err(|e| failed(&e))
        }
    }
}
