//! `strata serve`: the protocols BI tools and notebooks reach a Strata warehouse by, over one
//! shared core of users, limits and policy.
//!
//! ```text
//!  client ──gRPC/TLS──► auth (Basic → bearer token, checked on every call)
//!                        └─► flight: StrataFlightSql ──► per-caller strata_query::Session
//!                              ├─ statements, prepared statements, ingest, cancel
//!                              ├─ ingest channels: exactly-once appends, group commit
//!                              └─ metadata: catalogs, schemas, tables, SQL info, types
//!  psql, JDBC ──PG v3/TLS──► pg: SCRAM-SHA-256 ──► a strata_query::Session per connection
//!  curl, scripts ──HTTP──► http: Basic or bearer ──► a Session per request: JSON, CSV, Arrow
//!  scraper ──HTTP──────► monitoring: Prometheus metrics, health checks
//! ```
//!
//! Shared by every protocol: [`auth`] (users, passwords, tokens), `policy` (what remote SQL
//! may not do) and the limits of [`Limits`]. [`flight`] is the Arrow Flight SQL service,
//! `pg` the PostgreSQL wire protocol; [`monitoring`] serves Prometheus metrics and health
//! checks over HTTP.

#![warn(missing_docs)]

/// Users, password hashes and bearer tokens.
pub mod auth;
mod error;
/// The Arrow Flight SQL protocol: the service, ingest channels and metadata answers.
pub mod flight;
/// `--http-listen`: SQL over HTTP (JSON, CSV, Arrow, Parquet).
mod http;
mod limits;
/// `--metrics-listen`: Prometheus `/metrics`, `/healthz` and `/readyz`.
pub mod monitoring;
/// The PostgreSQL wire protocol: psql, JDBC, psycopg and the BI tools built on them.
mod pg;
mod policy;
mod shared;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use strata_query::Warehouse;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity as TlsIdentity, Server, ServerTlsConfig};

pub use auth::{Authenticator, Role, ServerConfig, Users};
pub use error::{Error, Result};
pub use flight::service::StrataFlightSql;
pub use limits::Limits;
pub use policy::LoadPolicy;

/// How a server runs.
#[derive(Debug)]
pub struct ServeOptions {
    /// Who may connect.
    pub auth: Arc<Authenticator>,
    /// Concurrency and time limits of queries.
    pub limits: Limits,
    /// PEM certificate chain and private key: serve TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest gRPC message accepted or sent, in bytes (Arrow batches and ingest chunks).
    pub max_message_size: usize,
    /// URL prefixes users without the admin role may `COPY INTO` from.
    pub load_locations: Vec<String>,
    /// S3 endpoints users without the admin role may name in `COPY INTO ... ENDPOINT`.
    pub load_endpoints: Vec<String>,
    /// How often partition retention and automatic compaction look at every table.
    pub maintenance_tick: std::time::Duration,
    /// Serve the PostgreSQL wire protocol on this listener too (`--pg-listen`), with the same
    /// TLS certificate.
    pub pg_listener: Option<TcpListener>,
    /// PostgreSQL connections open at once; one more is refused (`--pg-max-connections`).
    pub pg_max_connections: usize,
    /// Serve the HTTP SQL API on this listener too (`--http-listen`).
    pub http_listener: Option<TcpListener>,
}

impl ServeOptions {
    /// Options with `auth` and default limits, no TLS, 64 MiB messages.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self {
            auth,
            limits: Limits::default(),
            tls: None,
            max_message_size: 64 * 1024 * 1024,
            load_locations: Vec::new(),
            load_endpoints: Vec::new(),
            maintenance_tick: std::time::Duration::from_secs(60),
            pg_listener: None,
            pg_max_connections: 100,
            http_listener: None,
        }
    }
}

/// Binds `address`.
pub async fn bind(address: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Io {
            path: address.to_string(),
            source,
        })
}

/// Serves `warehouse` on `listener` until `shutdown` completes.
pub async fn serve(
    warehouse: Warehouse,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let timeout = options.limits.query_timeout;
    let load = LoadPolicy {
        locations: options.load_locations,
        endpoints: options.load_endpoints,
    };
    let service = StrataFlightSql::new(
        warehouse.clone(),
        Arc::clone(&options.auth),
        options.limits.clone(),
    )
    .with_load_policy(load.clone());
    // PostgreSQL and HTTP clients share the users, query slots, limits and file policy.
    let shared = shared::Shared {
        warehouse: warehouse.clone(),
        auth: Arc::clone(&options.auth),
        limits: options.limits,
        slots: service.query_slots(),
        load,
    };
    let _pg = match options.pg_listener {
        Some(listener) => {
            let tls = match &options.tls {
                Some((cert, key)) => Some(pg::tls_acceptor(cert, key)?),
                None => None,
            };
            let server = Arc::new(pg::PgServer::new(shared.clone()));
            let max = options.pg_max_connections.max(1);
            Some(AbortOnDrop(tokio::spawn(pg::serve(
                listener, server, tls, max,
            ))))
        }
        None => None,
    };
    let _http = options.http_listener.map(|listener| {
        let server = Arc::new(http::HttpServer::new(shared));
        AbortOnDrop(tokio::spawn(http::serve(listener, server)))
    });
    // Materialized views with `refresh = 'every ...'` refresh in the background, inside the
    // same query slots and timeout as clients' statements.
    let warehouse_for_maintenance = warehouse.clone();
    let warehouse_for_tasks = warehouse.clone();
    let scheduler = tokio::spawn(strata_query::run_scheduler(
        warehouse,
        std::time::Duration::from_secs(1),
        strata_query::RefreshLimits {
            slots: Some(service.query_slots()),
            timeout,
        },
    ));
    // Stops with the server, however it ends.
    let _scheduler = AbortOnDrop(scheduler);
    // Partition retention and automatic compaction, also inside the query slots.
    let maintenance = tokio::spawn(strata_query::run_maintenance(
        warehouse_for_maintenance,
        options.maintenance_tick,
        Some(service.query_slots()),
    ));
    let _maintenance = AbortOnDrop(maintenance);
    // Scheduled tasks (`CREATE TASK ... SCHEDULE`), also inside the query slots; a task's own
    // TIMEOUT overrides the server's.
    let tasks = tokio::spawn(strata_query::run_task_scheduler(
        warehouse_for_tasks,
        std::time::Duration::from_secs(1),
        strata_query::TaskLimits {
            slots: Some(service.query_slots()),
            timeout,
        },
    ));
    let _tasks = AbortOnDrop(tasks);
    let flight = FlightServiceServer::new(service)
        .max_decoding_message_size(options.max_message_size)
        .max_encoding_message_size(options.max_message_size);
    let mut server = Server::builder();
    if let Some((cert, key)) = &options.tls {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })
        };
        let identity = TlsIdentity::from_pem(read(cert)?, read(key)?);
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| Error::Tls(e.to_string()))?;
    }
    server
        .add_service(flight)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await?;
    Ok(())
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accepted connections with `TCP_NODELAY` (without it, Nagle's algorithm and delayed ACKs
/// add ~40 ms to every short call) and keepalive probes, which notice vanished clients.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(60)))
}
