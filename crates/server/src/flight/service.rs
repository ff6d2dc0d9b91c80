//! The Flight SQL service over one warehouse.
//!
//! ```text
//!  GetFlightInfo(statement) ──► parse, check policy ──► query: plan only, schema + ticket
//!                                                   └─► other: run now, result kept for the ticket
//!  DoGet(ticket) ──► query: DataFusion stream ──► wire types ──► Arrow IPC, batch by batch
//!  DoPut(update | ingest | prepared parameters | ingest channel: see `ingest`)
//!  DoAction(prepare, close, cancel, strata.channel_status)
//! ```
//!
//! Each authenticated caller (token, or user for Basic-on-every-call) has its own SQL session,
//! so `USE` and `SET` persist between its calls. A query's stream holds one of the server's
//! query slots (`max_concurrent_queries`), ends with `DeadlineExceeded` past the query
//! timeout, and stops (freeing its memory) when the client disconnects or cancels it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::stream::{AbortHandle, Abortable, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use strata_query::parser::ParsedStatement;
use strata_query::{CommitGate, IngestChannels, IngestMode, Session, StatementResult, Warehouse};
use tokio::sync::{Mutex as AsyncMutex, OwnedSemaphorePermit, Semaphore};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, Identity, Role};
use crate::error::{status, stream_status};
use crate::flight::framing;
use crate::flight::ingest;
use crate::flight::metadata::{
    self, ForeignKeys, SQL_INFO, SYSTEM_TABLE, TABLE, XDBC_TYPES, foreign_keys_schema,
    primary_keys_schema,
};
use crate::flight::wire::{WireTypes, wire_batch, wire_schema};
use crate::limits::Limits;
use crate::policy::{self, LoadPolicy};

/// The Flight action that cancels a query (Flight RPC, not in arrow-flight's SQL dispatch).
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";
/// Prepared statements a client neither closed nor used are dropped after this long.
const PREPARED_IDLE_LIFETIME: Duration = Duration::from_secs(3600);
/// Results nobody fetched are dropped after this long.
const UNFETCHED_RESULT_LIFETIME: Duration = Duration::from_secs(600);

type SharedSession = Arc<AsyncMutex<Session>>;

/// A ticket handed out by `GetFlightInfo` and not yet fetched.
enum Pending {
    /// A query planned for its schema, run when fetched.
    Query {
        owner: String,
        session: SharedSession,
        statement: ParsedStatement,
        params: Vec<ParamValues>,
        schema: SchemaRef,
        created: Instant,
    },
    /// The result of a statement that already ran.
    Ready {
        owner: String,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        created: Instant,
    },
}

impl Pending {
    fn owner(&self) -> &str {
        match self {
            Pending::Query { owner, .. } | Pending::Ready { owner, .. } => owner,
        }
    }

    fn created(&self) -> Instant {
        match self {
            Pending::Query { created, .. } | Pending::Ready { created, .. } => *created,
        }
    }
}

/// A prepared statement.
struct Prepared {
    owner: String,
    /// Created or last bound; statements idle past `PREPARED_IDLE_LIFETIME` are dropped.
    touched: Instant,
    statements: Vec<ParsedStatement>,
    /// Bound parameter rows (one execution each); empty when nothing is bound.
    params: Vec<ParamValues>,
}

/// Strata's Flight SQL service.
pub struct StrataFlightSql {
    warehouse: Warehouse,
    auth: Arc<Authenticator>,
    limits: Limits,
    sessions: Mutex<HashMap<String, SharedSession>>,
    pending: Mutex<HashMap<String, Pending>>,
    prepared: Mutex<HashMap<String, Prepared>>,
    running: Arc<Mutex<HashMap<String, (String, AbortHandle)>>>,
    query_slots: Arc<Semaphore>,
    /// Where users without the admin role may `COPY INTO` from.
    load: LoadPolicy,
    /// Exactly-once ingest channels (DoPut `["strata.ingest", ...]`).
    channels: IngestChannels,
}

impl std::fmt::Debug for StrataFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataFlightSql")
            .field("warehouse", &self.warehouse.location())
            .field("limits", &self.limits)
            .finish()
    }
}

impl StrataFlightSql {
    /// The service for `warehouse`.
    pub fn new(warehouse: Warehouse, auth: Arc<Authenticator>, limits: Limits) -> Self {
        let slots = limits.max_concurrent_queries.max(1);
        Self {
            auth,
            limits,
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            prepared: Mutex::new(HashMap::new()),
            running: Arc::new(Mutex::new(HashMap::new())),
            query_slots: Arc::new(Semaphore::new(slots)),
            load: LoadPolicy::default(),
            channels: IngestChannels::new(warehouse.clone()),
            warehouse,
        }
    }

    /// The server's query slots, for other work that must share them (scheduled refreshes).
    pub fn query_slots(&self) -> Arc<Semaphore> {
        Arc::clone(&self.query_slots)
    }

    /// Lets users without the admin role `COPY INTO` from under these URL prefixes, through
    /// these S3 endpoints.
    pub fn with_load_policy(mut self, load: LoadPolicy) -> Self {
        self.load = load;
        self
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        self.auth
            .authenticate(request.metadata(), request.remote_addr().map(|a| a.ip()))
    }

    fn session(&self, who: &Identity) -> SharedSession {
        let mut sessions = self
            .sessions
            .lock()
            .expect("session lock is never poisoned");
        if !sessions.contains_key(&who.session_key) {
            // A new caller: forget the sessions of tokens that expired.
            sessions.retain(|key, _| match key.strip_prefix("token:") {
                Some(token) => self.auth.token_is_valid(token),
                None => true,
            });
        }
        let session = Arc::clone(sessions.entry(who.session_key.clone()).or_insert_with(|| {
            let mut session = self.warehouse.session();
            session.set_user(&who.user, who.role == Role::Admin);
            session.set_protocol("flight");
            Arc::new(AsyncMutex::new(session))
        }));
        metrics::gauge!(strata_query::telemetry::SESSIONS_ACTIVE).set(sessions.len() as f64);
        session
    }

    fn keep(&self, pending: Pending) -> String {
        let handle = uuid::Uuid::new_v4().to_string();
        let mut map = self.pending.lock().expect("pending lock is never poisoned");
        map.retain(|_, p| p.created().elapsed() < UNFETCHED_RESULT_LIFETIME);
        map.insert(handle.clone(), pending);
        handle
    }

    fn take_pending(&self, handle: &str, who: &Identity) -> Result<Pending, Status> {
        let mut map = self.pending.lock().expect("pending lock is never poisoned");
        match map.get(handle) {
            Some(p) if p.owner() == who.user => Ok(map.remove(handle).expect("present")),
            _ => Err(Status::not_found(
                "unknown or already fetched ticket: run the statement again",
            )),
        }
    }

    /// Parses a statement text and checks what the caller may run.
    fn parse(&self, sql: &str, who: &Identity) -> Result<Vec<ParsedStatement>, Status> {
        let statements = strata_query::parser::parse(sql).map_err(status)?;
        if statements.is_empty() {
            return Err(Status::invalid_argument("no SQL statement given"));
        }
        for s in &statements {
            policy::check(s, who.role, &self.load)?;
        }
        Ok(statements)
    }

    /// Runs statements to completion under the server's limits (a query slot, the query
    /// timeout) and returns the result of the last one. With parameter rows (a prepared
    /// statement), the one statement runs for every row; an `INSERT` writes all rows in one
    /// commit. A statement stopped by the timeout commits nothing.
    async fn run_all(
        &self,
        session: &SharedSession,
        statements: &[ParsedStatement],
        rows: &[ParamValues],
    ) -> Result<StatementResult, Status> {
        // The session first, then a slot, as for streamed queries.
        let mut session = session.lock().await;
        let _slot = Arc::clone(&self.query_slots)
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("server is shutting down"))?;
        // The timeout and the statement's commit race on a gate: a statement whose commit had
        // started runs to its end, and its result says it committed.
        let limit = self.limits.query_timeout;
        let run = Box::pin(Self::run_statements(&mut session, statements, rows));
        CommitGate::run_with_timeout(run, limit)
            .await
            .unwrap_or_else(|stopped| {
                let before = match stopped.statements_finished {
                    0 => String::new(),
                    n => format!(" (the {n} statements before it had finished and committed)"),
                };
                Err(Status::deadline_exceeded(format!(
                    "statement exceeded the server's query timeout of {} s and was stopped \
                     before it committed anything{before}",
                    limit.unwrap_or_default().as_secs()
                )))
            })
    }

    async fn run_statements(
        session: &mut Session,
        statements: &[ParsedStatement],
        rows: &[ParamValues],
    ) -> Result<StatementResult, Status> {
        if let [one] = statements {
            return session.execute_batch(one, rows).await.map_err(status);
        }
        if !rows.is_empty() {
            return Err(Status::invalid_argument(
                "parameters can be bound to a single statement only",
            ));
        }
        let Some((last, before)) = statements.split_last() else {
            return Err(Status::invalid_argument("no statement"));
        };
        for s in before {
            if Session::is_query(s) {
                // Only the last result goes back: stream an earlier query's rows away rather
                // than hold them all.
                let mut rows = session.execute_stream(s, None).await.map_err(status)?;
                while let Some(batch) = rows.next().await {
                    batch.map_err(|e| status(e.into()))?;
                }
            } else {
                session.execute_with(s, None).await.map_err(status)?;
            }
        }
        session.execute_with(last, None).await.map_err(status)
    }

    /// A `FlightInfo` for a result with `schema` fetched with `ticket`.
    fn flight_info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Plans a single query (for its schema) or runs anything else, and keeps it for DoGet.
    async fn statement_info(
        &self,
        who: &Identity,
        statements: Vec<ParsedStatement>,
        params: Vec<ParamValues>,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let types = WireTypes::requested(request.metadata());
        let descriptor = request.into_inner();
        let session = self.session(who);
        // A script whose last statement is a query: the statements before it run now, and
        // the query streams at DoGet like a single one (never materialized whole).
        let pending = if let Some((statement, before)) = statements.split_last()
            && Session::is_streamed(statement)
            && (before.is_empty() || params.is_empty())
        {
            if !before.is_empty() {
                self.run_all(&session, before, &[]).await?;
            }
            let schema = {
                let s = session.lock().await;
                s.query_schema(statement, params.first())
                    .await
                    .map_err(status)?
            };
            Pending::Query {
                owner: who.user.clone(),
                session,
                statement: statement.clone(),
                params,
                schema: wire_schema(&schema, types),
                created: Instant::now(),
            }
        } else {
            let result = self.run_all(&session, &statements, &params).await?;
            Pending::Ready {
                owner: who.user.clone(),
                schema: wire_schema(&result.schema, types),
                batches: result.batches,
                created: Instant::now(),
            }
        };
        let schema = match &pending {
            Pending::Query { schema, .. } | Pending::Ready { schema, .. } => Arc::clone(schema),
        };
        let handle = self.keep(pending);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        Self::flight_info(&schema, ticket.as_any().encode_to_vec(), descriptor)
    }

    /// Streams a pending result to the client.
    async fn fetch(
        &self,
        handle: &str,
        pending: Pending,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        match pending {
            Pending::Ready {
                owner,
                schema,
                batches,
                ..
            } => {
                let stream = futures::stream::iter(batches.into_iter().map(Ok));
                Ok(self.respond(handle, &owner, schema, stream.boxed(), None))
            }
            Pending::Query {
                owner,
                session,
                statement,
                params,
                schema,
                ..
            } => {
                // The session first, then a slot: a caller whose session is busy must not
                // hold one of the server's query slots while it waits.
                let mut s = session.lock().await;
                let slot = Arc::clone(&self.query_slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| Status::unavailable("server is shutting down"))?;
                let rows: Vec<Option<&ParamValues>> = if params.is_empty() {
                    vec![None]
                } else {
                    params.iter().map(Some).collect()
                };
                let mut streams = Vec::new();
                for p in rows {
                    streams.push(s.execute_stream(&statement, p).await.map_err(status)?);
                }
                drop(s);
                let batches = futures::stream::iter(streams).flatten().boxed();
                Ok(self.respond(handle, &owner, schema, batches, Some(slot)))
            }
        }
    }

    /// The DoGet response: batches in wire types, cancellable through `handle`, under the
    /// query timeout, holding `slot` until the stream ends or is dropped.
    fn respond(
        &self,
        handle: &str,
        owner: &str,
        schema: SchemaRef,
        batches: BoxStream<'static, Result<RecordBatch, DataFusionError>>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Response<<Self as FlightService>::DoGetStream> {
        let (abort, registration) = AbortHandle::new_pair();
        self.running
            .lock()
            .expect("running lock is never poisoned")
            .insert(handle.to_string(), (owner.to_string(), abort.clone()));
        let guard = RunningGuard {
            handle: handle.to_string(),
            running: Arc::clone(&self.running),
            _slot: slot,
        };
        let wire = Arc::clone(&schema);
        let converted = batches.map(move |b| {
            let b = b.map_err(|e| FlightError::Tonic(Box::new(stream_status(e))))?;
            wire_batch(&b, &wire).map_err(FlightError::Arrow)
        });
        let deadline = self
            .limits
            .query_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fired = Arc::clone(&timed_out);
        let timer = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => futures::future::pending().await,
            }
            fired.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        let timeout = self.limits.query_timeout;
        let limited = Abortable::new(framing::frame(converted), registration).take_until(timer);
        let ending = futures::stream::once(async move {
            let _guard = guard;
            if abort.is_aborted() {
                Some(Err(FlightError::Tonic(Box::new(Status::cancelled(
                    "query cancelled",
                )))))
            } else if timed_out.load(std::sync::atomic::Ordering::Relaxed) {
                Some(Err(FlightError::Tonic(Box::new(
                    Status::deadline_exceeded(format!(
                        "query exceeded the server's query timeout of {} s",
                        timeout.unwrap_or_default().as_secs()
                    )),
                ))))
            } else {
                None
            }
        })
        .filter_map(futures::future::ready);
        // Batches arrive message-sized: the encoder must not cut them again by their buffers'
        // capacity (see `framing`).
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(usize::MAX / 2)
            .build(limited.chain(ending))
            .map_err(Status::from);
        Response::new(Box::pin(stream))
    }

    /// Reads parameter rows from a DoPut stream: one `ParamValues` per row.
    async fn read_parameters(stream: PeekableFlightDataStream) -> Result<Vec<ParamValues>, Status> {
        let batches: Vec<RecordBatch> = record_batches(stream)
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("reading parameters: {e}")))?;
        let mut rows = Vec::new();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                let values = batch
                    .columns()
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, row))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Status::invalid_argument(format!("parameter: {e}")))?;
                rows.push(ParamValues::from(values));
            }
        }
        Ok(rows)
    }

    fn prepared_handle(handle: &Bytes) -> Result<String, Status> {
        String::from_utf8(handle.to_vec())
            .map_err(|_| Status::invalid_argument("malformed prepared statement handle"))
    }

    fn cancel(&self, info: &FlightInfo, who: &Identity) -> CancelStatus {
        let mut status = CancelStatus::NotCancellable;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let Ok(any) = Any::decode(ticket.ticket.as_ref()) else {
                continue;
            };
            let handle = if let Ok(Some(t)) = any.unpack::<TicketStatementQuery>() {
                String::from_utf8_lossy(&t.statement_handle).to_string()
            } else if let Ok(Some(p)) = any.unpack::<CommandPreparedStatementQuery>() {
                String::from_utf8_lossy(&p.prepared_statement_handle).to_string()
            } else {
                continue;
            };
            if let Some((_, abort)) = self
                .running
                .lock()
                .expect("running lock is never poisoned")
                .get(&handle)
                .filter(|(owner, _)| *owner == who.user)
            {
                abort.abort();
                status = CancelStatus::Cancelled;
            } else if self.take_pending(&handle, who).is_ok() {
                status = CancelStatus::Cancelled;
            }
        }
        status
    }

    /// The `FlightInfo` of a metadata command: its result schema, and the command itself as
    /// the ticket.
    fn command_info(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: &impl ProstMessageExt,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        Self::flight_info(
            schema,
            command.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    /// The foreign keys a key request asks for.
    async fn foreign_keys<T: Send>(
        &self,
        request: &Request<T>,
        wanted: ForeignKeys<'_>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_batch(request, async |s| {
            let tables = s.warehouse().constraints().await.map_err(status)?;
            metadata::foreign_keys(&tables, wanted).map_err(|e| Status::internal(e.to_string()))
        })
        .await
    }

    async fn metadata_batch<T: Send>(
        &self,
        request: &Request<T>,
        build: impl AsyncFnOnce(&Session) -> Result<RecordBatch, Status>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let who = self.caller(request)?;
        let session = self.session(&who);
        let batch = {
            let s = session.lock().await;
            s.warehouse().refresh_catalog().await.map_err(status)?;
            build(&s).await?
        };
        let schema = batch.schema();
        Ok(self.respond(
            &uuid::Uuid::new_v4().to_string(),
            &who.user,
            schema,
            futures::stream::once(async { Ok(batch) }).boxed(),
            None,
        ))
    }
}

/// A table named in a key request: [database, schema, table], empty when not given.
fn table_name(catalog: Option<String>, schema: Option<String>, table: String) -> [String; 3] {
    [
        catalog.unwrap_or_default(),
        schema.unwrap_or_default(),
        table,
    ]
}

/// Unregisters a query when its stream ends or is dropped, and frees its slot.
struct RunningGuard {
    handle: String,
    running: Arc<Mutex<HashMap<String, (String, AbortHandle)>>>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&self.handle);
        }
    }
}

/// The Arrow batches of a DoPut stream, from its first message (which arrow-flight peeked at
/// to dispatch the command). That message may carry only the command (an update without
/// parameters) and no IPC message; such messages are skipped.
fn record_batches(stream: PeekableFlightDataStream) -> FlightRecordBatchStream {
    FlightRecordBatchStream::new_from_flight_data(
        stream
            .into_peekable()
            .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
            .map_err(FlightError::from),
    )
}

fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(message.0)
}

/// The rows a statement changed, 0 for anything but DML.
fn affected_rows(result: &StatementResult) -> i64 {
    result
        .changed_rows()
        .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightSqlService for StrataFlightSql {
    type FlightService = StrataFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Stream2<HandshakeResponse>>, Status> {
        if !self.auth.enabled() {
            let empty = futures::stream::iter(vec![Ok(HandshakeResponse::default())]);
            return Ok(Response::new(Box::pin(empty)));
        }
        let who = self.caller(&request)?;
        let token = match who.session_key.strip_prefix("token:") {
            Some(existing) => existing.to_string(),
            None => self.auth.issue_token(&who),
        };
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response = Response::new(
            Box::pin(futures::stream::iter(vec![Ok(reply)])) as Stream2<HandshakeResponse>
        );
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("token is not a header value"))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = self.caller(&request)?;
        let statements = self.parse(&query.query, &who)?;
        self.statement_info(&who, statements, Vec::new(), request)
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let who = self.caller(&request)?;
        let handle = String::from_utf8_lossy(&ticket.statement_handle).to_string();
        let pending = self.take_pending(&handle, &who)?;
        self.fetch(&handle, pending).await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let who = self.caller(&request)?;
        let statements = self.parse(&command.query, &who)?;
        let result = self.run_all(&self.session(&who), &statements, &[]).await?;
        Ok(affected_rows(&result))
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let who = self.caller(&request)?;
        if command.temporary {
            return Err(Status::unimplemented("temporary tables are not supported"));
        }
        let options = command.table_definition_options.unwrap_or_default();
        let if_not_exist = TableNotExistOption::try_from(options.if_not_exist)
            .unwrap_or(TableNotExistOption::Unspecified);
        let if_exists = TableExistsOption::try_from(options.if_exists)
            .unwrap_or(TableExistsOption::Unspecified);
        let create = !matches!(if_not_exist, TableNotExistOption::Fail);
        let mode = match (create, if_exists) {
            (true, TableExistsOption::Fail | TableExistsOption::Unspecified) => IngestMode::Create,
            (true, TableExistsOption::Append) => IngestMode::CreateAppend,
            (true, TableExistsOption::Replace) => IngestMode::Replace,
            (false, TableExistsOption::Replace) => IngestMode::ReplaceExisting,
            (false, TableExistsOption::Append) => IngestMode::Append,
            (false, _) => {
                return Err(Status::invalid_argument(
                    "ingest must be allowed to create the table or to append to/replace it",
                ));
            }
        };
        let catalog = command.catalog.filter(|c| !c.is_empty());
        let schema = command.schema.filter(|s| !s.is_empty());
        let name = match (catalog, schema) {
            (Some(c), Some(s)) => vec![c, s, command.table],
            (None, Some(s)) => vec![s, command.table],
            (None, None) => vec![command.table],
            (Some(_), None) => {
                return Err(Status::invalid_argument(
                    "ingest: a catalog needs a schema as well",
                ));
            }
        };
        let mut batches = record_batches(request.into_inner());
        let first = batches
            .next()
            .await
            .transpose()
            .map_err(|e| Status::invalid_argument(format!("reading ingest data: {e}")))?;
        let schema = match (&first, batches.schema()) {
            (Some(b), _) => b.schema(),
            (None, Some(s)) => Arc::clone(s),
            (None, None) => return Err(Status::invalid_argument("ingest without a schema")),
        };
        let rest = batches.map_err(|e| DataFusionError::External(Box::new(e)));
        let data = futures::stream::iter(first.map(Ok)).chain(rest);
        let data = Box::pin(RecordBatchStreamAdapter::new(schema, data));
        // Qualify the name with the caller's current database and schema, then write through
        // a session of its own: the caller's session is not held while the upload arrives.
        let name = {
            let session = self.session(&who);
            let session = session.lock().await;
            let (database, schema) = session.current_schema();
            let mut full = vec![database.to_string(), schema.to_string()];
            full.truncate(3 - name.len());
            full.extend(name);
            full
        };
        let mut writer = self.warehouse.session();
        writer.set_user(&who.user, who.role == Role::Admin);
        writer.set_protocol("flight");
        let rows = writer.ingest(&name, mode, data).await.map_err(status)?;
        Ok(rows as i64)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let who = self.caller(&request)?;
        let types = WireTypes::requested(request.metadata());
        let statements = self.parse(&query.query, &who)?;
        let session = self.session(&who);
        let (dataset_schema, parameter_schema) = {
            let s = session.lock().await;
            match statements.as_slice() {
                [one] => {
                    let params = s.parameter_schema(one).await.map_err(status)?;
                    let dataset = if Session::is_query(one) && params.fields().is_empty() {
                        let schema = s.query_schema(one, None).await.map_err(status)?;
                        Some(wire_schema(schema.as_ref(), types))
                    } else if Session::is_query(one) {
                        // The result schema of a query with placeholders, typed by the
                        // parameters DataFusion inferred.
                        let probe: Vec<ScalarValue> = params
                            .fields()
                            .iter()
                            .map(|f| {
                                ScalarValue::try_from(f.data_type()).unwrap_or(ScalarValue::Null)
                            })
                            .collect();
                        let p = ParamValues::from(probe);
                        s.query_schema(one, Some(&p))
                            .await
                            .ok()
                            .map(|schema| wire_schema(&schema, types))
                    } else {
                        None
                    };
                    (dataset, params)
                }
                _ => (None, Arc::new(Schema::empty())),
            }
        };
        let handle = uuid::Uuid::new_v4().to_string();
        let result = ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.clone().into(),
            dataset_schema: match &dataset_schema {
                Some(s) => schema_bytes(s)?,
                None => Bytes::new(),
            },
            parameter_schema: if parameter_schema.fields().is_empty() {
                Bytes::new()
            } else {
                schema_bytes(&parameter_schema)?
            },
        };
        let mut prepared = self
            .prepared
            .lock()
            .expect("prepared lock is never poisoned");
        prepared.retain(|_, p| p.touched.elapsed() < PREPARED_IDLE_LIFETIME);
        prepared.insert(
            handle,
            Prepared {
                owner: who.user,
                touched: Instant::now(),
                statements,
                params: Vec::new(),
            },
        );
        Ok(result)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let who = self.caller(&request)?;
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        let mut prepared = self
            .prepared
            .lock()
            .expect("prepared lock is never poisoned");
        if prepared.get(&handle).is_some_and(|p| p.owner == who.user) {
            prepared.remove(&handle);
        }
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let who = self.caller(&request)?;
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        let params = Self::read_parameters(request.into_inner()).await?;
        let mut prepared = self
            .prepared
            .lock()
            .expect("prepared lock is never poisoned");
        let entry = prepared
            .get_mut(&handle)
            .filter(|p| p.owner == who.user)
            .ok_or_else(|| Status::not_found("unknown prepared statement"))?;
        entry.params = params;
        entry.touched = Instant::now();
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = self.caller(&request)?;
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        let (statements, params) = {
            let prepared = self
                .prepared
                .lock()
                .expect("prepared lock is never poisoned");
            let p = prepared
                .get(&handle)
                .filter(|p| p.owner == who.user)
                .ok_or_else(|| Status::not_found("unknown prepared statement"))?;
            (p.statements.clone(), p.params.clone())
        };
        self.statement_info(&who, statements, params, request).await
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let who = self.caller(&request)?;
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        let sent = Self::read_parameters(request.into_inner()).await?;
        let (statements, bound) = {
            let prepared = self
                .prepared
                .lock()
                .expect("prepared lock is never poisoned");
            let p = prepared
                .get(&handle)
                .filter(|p| p.owner == who.user)
                .ok_or_else(|| Status::not_found("unknown prepared statement"))?;
            (p.statements.clone(), p.params.clone())
        };
        let params = if sent.is_empty() { bound } else { sent };
        let session = self.session(&who);
        Ok(affected_rows(
            &self.run_all(&session, &statements, &params).await?,
        ))
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let who = self.caller(&request)?;
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("malformed FlightInfo: {e}")))?;
        let result = match self.cancel(&info, &who) {
            CancelStatus::Cancelled => 1,
            _ => 3,
        };
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_put_fallback(
        &self,
        mut request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        // Numbered before anything of the stream is read: a reopen after this refuses it.
        let stream_number = IngestChannels::stream_number();
        let who = self.caller(&request)?;
        let Some(command) = ingest::target(&message, request.get_mut()).await? else {
            return Err(Status::unimplemented(format!(
                "DoPut of an unknown command '{}'",
                message.type_url
            )));
        };
        let acks = ingest::append(
            &self.channels,
            &who,
            command,
            stream_number,
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(acks))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type == ingest::CHANNEL_STATUS {
            self.caller(&request)?;
            let reply = ingest::channel_status(&self.channels, &request.get_ref().body).await?;
            return Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(
                reply,
            )]))));
        }
        if request.get_ref().r#type != CANCEL_FLIGHT_INFO {
            return Err(Status::invalid_argument(format!(
                "unknown action '{}'",
                request.get_ref().r#type
            )));
        }
        let who = self.caller(&request)?;
        let cancel =
            CancelFlightInfoRequest::decode(request.get_ref().body.clone()).map_err(|e| {
                Status::invalid_argument(format!("malformed CancelFlightInfoRequest: {e}"))
            })?;
        let info = cancel
            .info
            .ok_or_else(|| Status::invalid_argument("CancelFlightInfoRequest without info"))?;
        let result = CancelFlightInfoResult::new(self.cancel(&info, &who));
        let body = arrow_flight::Result {
            body: result.encode_to_vec().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(
            body,
        )]))))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(vec![
            Ok(ActionType {
                r#type: CANCEL_FLIGHT_INFO.to_string(),
                description: "Cancels a running query.\nRequest Message: \
                              CancelFlightInfoRequest\nResponse Message: CancelFlightInfoResult"
                    .to_string(),
            }),
            Ok(ActionType {
                r#type: ingest::CHANNEL_STATUS.to_string(),
                description: "The last committed offset token of an ingest channel.\nRequest: \
                              {\"table\": \"db.schema.table\", \"channel\": \"name\"} (JSON)\n\
                              Response: {\"table\", \"channel\", \"offset_token\", \"rows\", \
                              \"commits\"} (JSON)"
                    .to_string(),
            }),
        ])
    }

    // Metadata: FlightInfo carries the command back as the ticket.

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(request, &schema, &query)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_batch(&request, async |s| {
            metadata::catalogs(s, query.into_builder())
        })
        .await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(request, &schema, &query)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_batch(&request, async |s| {
            metadata::db_schemas(s, query.into_builder())
        })
        .await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(request, &schema, &query)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_batch(&request, async |s| {
            metadata::tables(s, query.into_builder()).await
        })
        .await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(request, &schema, &query)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_batch(&request, async |_| {
            let mut b = query.into_builder();
            b.append(SYSTEM_TABLE);
            b.append(TABLE);
            b.build().map_err(|e| Status::internal(e.to_string()))
        })
        .await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        self.command_info(request, &schema, &query)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_batch(&request, async |_| {
            query
                .into_builder(&SQL_INFO)
                .build()
                .map_err(|e| Status::internal(e.to_string()))
        })
        .await
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&XDBC_TYPES).schema();
        self.command_info(request, &schema, &query)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_batch(&request, async |_| {
            query
                .into_builder(&XDBC_TYPES)
                .build()
                .map_err(|e| Status::internal(e.to_string()))
        })
        .await
    }

    // Keys: from the declared PRIMARY KEY and FOREIGN KEY constraints, so BI tools find the
    // star schema's relationships by themselves.

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(request, &primary_keys_schema(), &query)
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.metadata_batch(&request, async |s| {
            let tables = s.warehouse().constraints().await.map_err(status)?;
            metadata::primary_keys(
                &tables,
                query.catalog.as_deref(),
                query.db_schema.as_deref(),
                &query.table,
            )
            .map_err(|e| Status::internal(e.to_string()))
        })
        .await
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(request, &foreign_keys_schema(), &query)
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let table = table_name(query.catalog, query.db_schema, query.table);
        self.foreign_keys(&request, ForeignKeys::Imported(&table))
            .await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(request, &foreign_keys_schema(), &query)
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let table = table_name(query.catalog, query.db_schema, query.table);
        self.foreign_keys(&request, ForeignKeys::Exported(&table))
            .await
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(request, &foreign_keys_schema(), &query)
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let pk = table_name(query.pk_catalog, query.pk_db_schema, query.pk_table);
        let fk = table_name(query.fk_catalog, query.fk_db_schema, query.fk_table);
        self.foreign_keys(&request, ForeignKeys::Between(&pk, &fk))
            .await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
