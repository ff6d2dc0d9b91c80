//! `strata serve --pg-listen`: the PostgreSQL wire protocol (v3), for the tools that speak
//! only it: psql, JDBC, psycopg and SQLAlchemy, Metabase, Superset, Grafana, DBeaver, Tableau,
//! Power BI, dbt-postgres.
//!
//! ```text
//!  client ──TCP (TLS after SSLRequest)──► startup: SCRAM-SHA-256, or the password over TLS
//!            │                              └─► Connection: a strata_query::Session of its own
//!            ├─ simple query ──► compat: SET/SHOW/BEGIN/COPY FROM STDIN, pg_catalog rewrites
//!            ├─ parse/bind/execute ──► typed parameters, portals with row limits
//!            │                              └─► Session ──► arrow-pg: text and binary rows
//!            ├─ COPY data ──► spooled to a file, loaded by COPY INTO (constraints, rejects)
//!            └─ cancel request (own connection) ──► stops the running statement
//! ```
//!
//! pgwire frames the messages and runs the protocol's state machines; this module decides
//! what each statement means. Everything a Flight client shares applies here too: the same
//! users and roles, query slots, timeout, memory limit and file policy, and the query log,
//! which records `protocol = 'postgres'`. Each connection is one session, as in PostgreSQL:
//! `USE` and `SET` last until it closes.

mod catalog;
mod compat;
mod connection;
mod copy;
mod error;
mod load;
mod query;
mod server;
mod startup;

use std::path::PathBuf;
use std::sync::Arc;

use pgwire::api::PgWireServerHandlers;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

pub(crate) use server::PgServer;

/// pgwire's handlers: a startup handler per connection, the rest shared.
struct Handlers {
    server: Arc<PgServer>,
    queries: Arc<query::Queries>,
    copy: Arc<load::CopyIn>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(startup::Startup::new(Arc::clone(&self.server)))
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::clone(&self.copy)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.server.cancels)
    }

    fn error_handler(&self) -> Arc<impl pgwire::api::ErrorHandler> {
        Arc::new(error::LogErrors)
    }
}

/// Serves PostgreSQL clients on `listener` until the task is dropped, at most
/// `max_connections` at a time: one more is refused with PostgreSQL's own FATAL 53300
/// ("sorry, too many clients already"), which libpq-based clients show as it is. A connection
/// that has not signed in after 60 seconds is closed (pgwire's startup timeout).
pub(crate) async fn serve(
    listener: TcpListener,
    server: Arc<PgServer>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
) {
    let handlers = Arc::new(Handlers {
        queries: Arc::new(query::Queries::new(Arc::clone(&server))),
        copy: Arc::new(load::CopyIn::new(Arc::clone(&server))),
        server,
    });
    let open = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accepting a PostgreSQL connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            tokio::spawn(refuse(socket, Arc::clone(&handlers.server.cancels)));
            continue;
        };
        let handlers = Arc::clone(&handlers);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _open = permit;
            // A panic in one connection ends that connection, not the server: tokio catches
            // it at the task's edge.
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(error = %e, "PostgreSQL connection ended with an error");
            }
        });
    }
}

/// Answers a connection over the limit as PostgreSQL does, then closes it: an SSL or GSSAPI
/// request is declined (`N`), the startup message read, and FATAL 53300 "sorry, too many
/// clients already" sent. A cancel request is still carried out: it must work when every
/// connection is taken. Reads are bounded in size and time.
async fn refuse(mut socket: tokio::net::TcpStream, cancels: Arc<server::Cancels>) {
    use pgwire::messages::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SSL_REQUEST: u32 = 80_877_103;
    const GSSENC_REQUEST: u32 = 80_877_104;
    const CANCEL_REQUEST: u32 = 80_877_102;
    /// One length-prefixed startup-phase packet, without its length.
    async fn packet(socket: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
        let length = socket.read_u32().await?;
        let body = usize::try_from(length)
            .ok()
            .and_then(|n| n.checked_sub(4))
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| std::io::Error::other("startup packet of a bad length"))?;
        let mut buffer = vec![0; body];
        socket.read_exact(&mut buffer).await?;
        Ok(buffer)
    }
    let code = |p: &[u8]| {
        p.get(..4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    };
    let exchange = async {
        let mut first = packet(&mut socket).await?;
        // libpq may ask for GSSAPI encryption, then SSL, before its startup message.
        for _ in 0..2 {
            if !matches!(code(&first), Some(SSL_REQUEST | GSSENC_REQUEST)) {
                break;
            }
            socket.write_all(b"N").await?;
            first = packet(&mut socket).await?;
        }
        if code(&first) == Some(CANCEL_REQUEST) {
            if let Some(pid) = first.get(4..8) {
                let pid = i32::from_be_bytes([pid[0], pid[1], pid[2], pid[3]]);
                cancels.cancel((pid, first.get(8..).unwrap_or_default().to_vec()));
            }
            return Ok(());
        }
        let refusal =
            pgwire::messages::response::ErrorResponse::from(pgwire::error::ErrorInfo::new(
                "FATAL".to_string(),
                "53300".to_string(),
                "sorry, too many clients already".to_string(),
            ));
        let mut bytes = bytes::BytesMut::new();
        refusal.encode(&mut bytes).map_err(std::io::Error::other)?;
        socket.write_all(&bytes).await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), exchange).await;
    let _ = socket.shutdown().await;
}

/// A TLS acceptor for PostgreSQL's SSLRequest from a PEM certificate chain and key.
pub(crate) fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
