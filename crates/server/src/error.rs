//! The one error type of the server, and how query errors become gRPC status codes that
//! clients show to their users.

use datafusion::error::DataFusionError;
use tonic::Status;

/// Errors of starting and configuring the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the server reads (configuration, certificates) cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The configuration file is wrong.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, and where.
        reason: String,
    },

    /// A password could not be hashed.
    #[error("password hashing failed: {0}")]
    Hash(String),

    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(String),

    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Monitoring(String),

    /// The gRPC server failed.
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),

    /// The warehouse failed (opening it, or a statement of the server's own).
    #[error(transparent)]
    Query(#[from] strata_query::Error),
}

/// Result with the server [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest message a status carries; the rest is cut (a statement's error can quote whole rows).
const MAX_MESSAGE_BYTES: usize = 4096;

/// The gRPC status of a query-layer error, by its kind (see [`strata_query::ErrorKind`]):
///
/// | kind | code |
/// |---|---|
/// | the statement is wrong (syntax, types, values) | `InvalidArgument` |
/// | a name that does not exist | `NotFound` |
/// | a name that exists already | `AlreadyExists` |
/// | a commit lost to a concurrent writer (retry it) | `Aborted` |
/// | a constraint violation (named in the message) | `FailedPrecondition` |
/// | not supported | `Unimplemented` |
/// | memory limit | `ResourceExhausted` |
/// | anything else (a fault of the server) | `Internal` |
///
/// Refused permissions are `PermissionDenied` (see `policy`), cancelled statements
/// `Cancelled` and timeouts `DeadlineExceeded` (see `service`).
pub(crate) fn status(e: strata_query::Error) -> Status {
    use strata_query::ErrorKind;
    let kind = e.kind();
    let message = truncated(e.to_string());
    // The kind only: a message may quote the statement (a parse error echoes its tokens,
    // credentials included) or the values it touched.
    match kind {
        ErrorKind::Internal | ErrorKind::ResourceExhausted => {
            tracing::warn!(kind = ?kind, "statement failed");
        }
        _ => tracing::info!(kind = ?kind, "statement refused"),
    }
    match kind {
        ErrorKind::InvalidArgument => Status::invalid_argument(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::AlreadyExists => Status::already_exists(message),
        ErrorKind::Conflict => Status::aborted(message),
        ErrorKind::ConstraintViolation => Status::failed_precondition(message),
        ErrorKind::Unsupported => Status::unimplemented(message),
        ErrorKind::PermissionDenied => Status::permission_denied(message),
        ErrorKind::Cancelled => Status::cancelled(message),
        ErrorKind::ResourceExhausted => Status::resource_exhausted(message),
        ErrorKind::Internal => Status::internal(message),
    }
}

/// `message` cut to [`MAX_MESSAGE_BYTES`] (on a character boundary), marked with "...".
pub(crate) fn truncated(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// The status of an error DataFusion reports while a query streams.
pub(crate) fn stream_status(e: DataFusionError) -> Status {
    status(strata_query::Error::from(e))
}
