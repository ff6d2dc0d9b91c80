//! Where the binary's statements run: an embedded warehouse, or a `strata serve` server over
//! Arrow Flight SQL (`--remote grpc://host:port`).
//!
//! The shell and `-c`/`-f` scripts work the same on both: statements are split here with
//! Strata's own parser, each is sent on its own, and its rows come back as a stream of Arrow
//! batches. Dropping the stream stops the statement: on a server, the cancelled gRPC call ends
//! the query there too.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::StreamExt;
use futures::stream::BoxStream;
use strata_query::parser::ParsedStatement;
use strata_query::{Progress, Session};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// A statement's rows as they arrive.
pub(crate) type Rows = BoxStream<'static, anyhow::Result<RecordBatch>>;

/// Where statements run.
pub(crate) enum Backend {
    /// A session on a warehouse opened by this process.
    Local(Box<Session>),
    /// A Flight SQL connection to `strata serve` (the server keeps one session per user).
    Remote(Box<Remote>),
}

/// A Flight SQL connection.
pub(crate) struct Remote {
    client: FlightSqlServiceClient<Channel>,
    url: String,
}

/// How to reach a server: `--remote`, `--user`, the password, `--tls-ca`.
pub(crate) struct RemoteOptions<'a> {
    pub(crate) url: &'a str,
    pub(crate) user: &'a str,
    /// No password (or an empty one): no handshake, for a server without authentication.
    pub(crate) password: Option<String>,
    pub(crate) tls_ca: Option<&'a Path>,
}

impl Backend {
    /// Runs one statement; its result's schema and rows.
    pub(crate) async fn run(
        &mut self,
        statement: &ParsedStatement,
    ) -> anyhow::Result<(SchemaRef, Rows)> {
        match self {
            Backend::Local(session) => {
                let stream = session.execute_stream(statement, None).await?;
                let schema = stream.schema();
                Ok((schema, stream.map(|b| Ok(b?)).boxed()))
            }
            Backend::Remote(remote) => remote.run(&statement.text).await,
        }
    }

    /// Runs one statement and keeps all its rows.
    pub(crate) async fn collect(
        &mut self,
        statement: &ParsedStatement,
    ) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
        let (schema, rows) = self.run(statement).await?;
        let batches = rows
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        Ok((schema, batches))
    }

    /// The live figures of a local statement (a server sends none).
    pub(crate) fn progress(&self) -> Option<Progress> {
        match self {
            Backend::Local(session) => Some(session.progress()),
            Backend::Remote(_) => None,
        }
    }

    /// What the shell's banner says it is connected to.
    pub(crate) fn describe(&self) -> String {
        match self {
            Backend::Local(session) => session.warehouse().location().to_string(),
            Backend::Remote(remote) => format!("{} (Flight SQL)", remote.url),
        }
    }
}

impl Remote {
    /// Connects to the server at `options.url` (`grpc://` or `grpc+tls://`) and signs in.
    pub(crate) async fn connect(options: RemoteOptions<'_>) -> anyhow::Result<Self> {
        let url = options.url;
        let (scheme, address) = url
            .split_once("://")
            .with_context(|| format!("--remote {url}: expected grpc://host:port"))?;
        let endpoint = match scheme {
            "grpc" | "http" => Channel::from_shared(format!("http://{address}"))?,
            "grpc+tls" | "https" => {
                let mut tls = ClientTlsConfig::new();
                if let Some(ca) = options.tls_ca {
                    let pem = std::fs::read(ca)
                        .with_context(|| format!("reading the certificate {}", ca.display()))?;
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                Channel::from_shared(format!("https://{address}"))?.tls_config(tls)?
            }
            other => anyhow::bail!(
                "--remote {url}: unknown scheme '{other}'; use grpc:// or grpc+tls://"
            ),
        };
        let channel = endpoint.connect().await.map_err(|e| {
            let error = anyhow::Error::new(e).context(format!("connecting to {url}"));
            // rustls says which check failed; say what to do about it.
            if format!("{error:#}").contains("certificate") {
                error.context(
                    "the server's TLS certificate is not trusted: pass the CA that signed it \
                     with --tls-ca ca.pem (a self-signed certificate cannot serve as its own \
                     CA; the README's TLS section has an openssl recipe)",
                )
            } else {
                error
            }
        })?;
        let mut client = FlightSqlServiceClient::new(channel);
        if let Some(password) = options.password.filter(|p| !p.is_empty()) {
            client
                .handshake(options.user, &password)
                .await
                .map_err(server_error)
                .with_context(|| format!("signing in to {url} as {}", options.user))?;
        }
        Ok(Self {
            client,
            url: url.to_string(),
        })
    }

    async fn run(&mut self, sql: &str) -> anyhow::Result<(SchemaRef, Rows)> {
        let info = self
            .client
            .execute(sql.to_string(), None)
            .await
            .map_err(server_error)?;
        let schema = Arc::new(info.clone().try_decode_schema()?);
        let mut parts = Vec::with_capacity(info.endpoint.len());
        for endpoint in info.endpoint {
            let ticket = endpoint
                .ticket
                .context("the server answered with an endpoint without a ticket")?;
            parts.push(self.client.do_get(ticket).await.map_err(server_error)?);
        }
        let rows = futures::stream::iter(parts)
            .flatten()
            .map(|batch| batch.map_err(server_error));
        Ok((schema, rows.boxed()))
    }
}

/// The server's message of a failed call, without the gRPC wrapping.
fn server_error(error: FlightError) -> anyhow::Error {
    match error {
        FlightError::Tonic(status) if !status.message().is_empty() => {
            anyhow::anyhow!("{}", status.message())
        }
        other => other.into(),
    }
}

/// Reads a password from the terminal without echoing it.
pub(crate) fn read_password(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let original = tcgetattr(&stdin)?;
    let mut silent = original.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &silent)?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    tcsetattr(&stdin, SetArg::TCSANOW, &original)?;
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
