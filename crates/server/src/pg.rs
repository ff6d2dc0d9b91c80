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

/// Serves PostgreSQL clients on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, server: Arc<PgServer>, tls: Option<TlsAcceptor>) {
    let handlers = Arc::new(Handlers {
        queries: Arc::new(query::Queries::new(Arc::clone(&server))),
        copy: Arc::new(load::CopyIn::new(Arc::clone(&server))),
        server,
    });
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
        let handlers = Arc::clone(&handlers);
        let tls = tls.clone();
        tokio::spawn(async move {
            // A panic in one connection ends that connection, not the server: tokio catches
            // it at the task's edge.
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(error = %e, "PostgreSQL connection ended with an error");
            }
        });
    }
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
