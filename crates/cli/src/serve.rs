//! `strata serve`: command-line flags of the Flight SQL server, where its users come from, and
//! the warnings an operator must not miss.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_query::{Warehouse, WarehouseOptions};
use strata_server::auth::{DEFAULT_USER, random_password};
use strata_server::{Authenticator, Limits, Role, ServeOptions, ServerConfig};

/// Flags of `strata serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Warehouse root (overrides the global --warehouse).
    #[arg(long, short = 'w')]
    warehouse: Option<String>,

    /// Memory the server may use: queries, scan cache and metadata (overrides the global
    /// --memory-limit) [default: three quarters of the machine's memory].
    #[arg(long, value_parser = strata_query::parse_byte_size)]
    memory_limit: Option<usize>,

    /// Address to listen on. Without configured users only a loopback address is allowed.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:32010")]
    listen: SocketAddr,

    /// Server config (TOML: users with argon2 password hashes, load_locations);
    /// `./strata.toml` when it exists.
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,

    /// PEM certificate chain: serve TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Queries streaming at once; more wait for a slot.
    #[arg(long, default_value_t = 16)]
    max_concurrent_queries: usize,

    /// Seconds a query may run before it fails (0: no limit).
    #[arg(long, default_value_t = 3600)]
    query_timeout_secs: u64,

    /// Minutes a bearer token from the handshake stays valid.
    #[arg(long, default_value_t = 720)]
    token_lifetime_mins: u64,

    /// Seconds between passes of table maintenance: partition retention, and compaction of
    /// partitions with `strata.auto_compact_min_files` small files.
    #[arg(long, default_value_t = 60)]
    maintenance_interval_secs: u64,

    /// Largest gRPC message accepted or sent (e.g. 64MiB).
    #[arg(long, default_value = "64MiB", value_parser = strata_query::parse_byte_size)]
    max_message_size: usize,

    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` over HTTP on this address
    /// (e.g. 127.0.0.1:9464). The page has no authentication: keep it on loopback or a
    /// private network.
    #[arg(long, env = "STRATA_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,

    /// Also serve the PostgreSQL wire protocol on this address (e.g. 127.0.0.1:5432), for
    /// psql, JDBC, psycopg and BI tools' PostgreSQL drivers; TLS with --tls-cert.
    #[arg(long, env = "STRATA_PG_LISTEN")]
    pg_listen: Option<SocketAddr>,

    /// PostgreSQL connections open at once (PostgreSQL's max_connections); one more is refused
    /// with "sorry, too many clients already".
    #[arg(long, env = "STRATA_PG_MAX_CONNECTIONS", default_value_t = 100)]
    pg_max_connections: usize,

    /// Also serve SQL over HTTP on this address (e.g. 127.0.0.1:8080): `POST /v1/statements`,
    /// results as JSON, CSV, Arrow or Parquet. Plain HTTP: keep it on loopback or behind a
    /// TLS-terminating proxy.
    #[arg(long, env = "STRATA_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,

    /// Turn authentication off. Anyone who reaches the port can read and change the
    /// warehouse: for local experiments only.
    #[arg(long)]
    insecure_no_auth: bool,
}

pub(crate) async fn run(
    location: &str,
    mut options: WarehouseOptions,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let location = args.warehouse.as_deref().unwrap_or(location);
    if args.memory_limit.is_some() {
        options.memory_limit = args.memory_limit;
    }
    // A server always has a limit: without one, a single query could take the memory of
    // every session.
    let memory_limit = *options
        .memory_limit
        .get_or_insert_with(strata_query::default_server_memory_limit);
    eprintln!(
        "memory limit {} MiB for queries, scan cache and metadata (--memory-limit to change)",
        memory_limit >> 20
    );
    let config = args.config.clone().or_else(|| {
        let default = PathBuf::from("strata.toml");
        default.exists().then_some(default)
    });
    let password = std::env::var("STRATA_PASSWORD").ok();
    let ServerConfig {
        mut users,
        load_locations,
        load_endpoints,
    } = ServerConfig::load(config.as_deref(), password.as_deref())?;
    let auth = if args.insecure_no_auth {
        eprintln!(
            "WARNING: authentication is OFF (--insecure-no-auth). Anyone who can reach {} can \
             read and change this warehouse. Use it for local experiments only.",
            args.listen
        );
        Authenticator::disabled()
    } else {
        if users.is_empty() {
            anyhow::ensure!(
                args.listen.ip().is_loopback()
                    && args.pg_listen.is_none_or(|a| a.ip().is_loopback())
                    && args.http_listen.is_none_or(|a| a.ip().is_loopback()),
                "no users are configured, so the server only listens on a loopback address: \
                 set STRATA_PASSWORD or --config strata.toml to listen on {}",
                args.listen
            );
            let generated = random_password();
            users.add(DEFAULT_USER, &generated, Role::Admin)?;
            eprintln!(
                "No users configured: generated a password for user '{DEFAULT_USER}' \
                 (shown once; set STRATA_PASSWORD to choose one):\n\n    {generated}\n"
            );
        }
        Authenticator::new(users, Duration::from_secs(args.token_lifetime_mins * 60))
    };
    if args.pg_listen.is_some() {
        let missing = auth.users_without_scram();
        if !missing.is_empty() {
            eprintln!(
                "WARNING: PostgreSQL clients cannot sign in as {}: their strata.toml entries \
                 lack scram_sha_256 (`strata hash-password` prints it)",
                missing.join(", ")
            );
        }
    }
    for address in std::iter::once(args.listen).chain(args.pg_listen) {
        if auth.enabled() && args.tls_cert.is_none() && !address.ip().is_loopback() {
            eprintln!(
                "WARNING: listening on {address} without TLS: passwords, tokens and results \
                 cross the network in clear text. Use --tls-cert and --tls-key."
            );
        }
    }
    let warehouse = Warehouse::open_with(location, options)
        .await
        .with_context(|| format!("opening warehouse {location}"))?;
    let serve_options = ServeOptions {
        auth: Arc::new(auth),
        limits: Limits {
            max_concurrent_queries: args.max_concurrent_queries,
            query_timeout: (args.query_timeout_secs > 0)
                .then(|| Duration::from_secs(args.query_timeout_secs)),
        },
        tls: args.tls_cert.zip(args.tls_key),
        max_message_size: args.max_message_size,
        load_locations,
        load_endpoints,
        maintenance_tick: Duration::from_secs(args.maintenance_interval_secs.max(1)),
        pg_listener: match args.pg_listen {
            Some(address) => Some(strata_server::bind(address).await?),
            None => None,
        },
        pg_max_connections: args.pg_max_connections,
        http_listener: match args.http_listen {
            Some(address) => Some(strata_server::bind(address).await?),
            None => None,
        },
    };
    if let Some(bound) = serve_options
        .http_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
    {
        if !bound.ip().is_loopback() {
            eprintln!(
                "WARNING: the HTTP SQL API on {bound} is plain HTTP: put a TLS-terminating \
                 proxy in front of it"
            );
        }
        eprintln!("HTTP SQL API on http://{bound}/v1/statements");
    }
    if let Some(bound) = serve_options
        .pg_listener
        .as_ref()
        .and_then(|pg| pg.local_addr().ok())
    {
        eprintln!(
            "PostgreSQL wire protocol on {bound}: psql \"host={} port={} user=strata{}\"",
            bound.ip(),
            bound.port(),
            if serve_options.tls.is_some() {
                " sslmode=require"
            } else {
                ""
            }
        );
    }
    let listener = strata_server::bind(args.listen).await?;
    // Metrics: the recorder is installed before anything runs, so no event goes uncounted.
    let _metrics = match args.metrics_listen {
        Some(address) => {
            let handle = strata_server::monitoring::install()?;
            let metrics_listener = strata_server::bind(address).await?;
            let bound = metrics_listener.local_addr().unwrap_or(address);
            eprintln!("Prometheus metrics on http://{bound}/metrics (/healthz, /readyz)");
            Some(AbortOnDrop(tokio::spawn(strata_server::monitoring::serve(
                metrics_listener,
                warehouse.clone(),
                handle,
            ))))
        }
        None => None,
    };
    let address = listener.local_addr().unwrap_or(args.listen);
    let scheme = if serve_options.tls.is_some() {
        "grpc+tls"
    } else {
        "grpc"
    };
    eprintln!(
        "Strata Flight SQL server on {scheme}://{address} (warehouse {})",
        warehouse.location()
    );
    // Materialized views with `refresh = 'every ...'` refresh in the background: the server
    // runs them inside its query slots and timeout.
    // Ctrl-C ends the process; commits are atomic, so nothing is left half-written.
    let served =
        strata_server::serve(warehouse, listener, serve_options, std::future::pending()).await;
    served?;
    Ok(())
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
