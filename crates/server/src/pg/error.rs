//! Errors as PostgreSQL clients read them: a SQLSTATE by the error's kind, so that drivers
//! raise the right exception (psycopg's `IntegrityError` for a constraint, `QueryCanceled`
//! for a cancel or timeout, a retryable `SerializationFailure` for a lost commit race).
//!
//! | kind | SQLSTATE |
//! |---|---|
//! | syntax | `42601` syntax_error |
//! | the statement is wrong otherwise | `22023` invalid_parameter_value |
//! | a name that does not exist | `42P01` undefined_table |
//! | a name that exists already | `42P07` duplicate_table |
//! | a commit lost to a concurrent writer (retry it) | `40001` serialization_failure |
//! | a constraint violation | `23000` integrity_constraint_violation |
//! | not supported | `0A000` feature_not_supported |
//! | not allowed | `42501` insufficient_privilege |
//! | cancelled, or past the query timeout | `57014` query_canceled |
//! | memory limit | `53200` out_of_memory |
//! | anything else | `XX000` internal_error |

use pgwire::api::{ClientInfo, ErrorHandler};
use pgwire::error::{ErrorInfo, PgWireError};
use strata_query::ErrorKind;
use tonic::{Code, Status};

use crate::error::truncated;

/// An `ERROR` with `code`.
pub(crate) fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        truncated(message),
    )))
}

/// A `FATAL` error: the connection ends (sign-in failures).
pub(crate) fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        truncated(message),
    )))
}

/// A refused sign-in.
pub(crate) fn auth_error(status: Status) -> PgWireError {
    fatal("28P01", status.message().to_string())
}

/// A refusal of the shared core (the file policy: `PermissionDenied`).
pub(crate) fn status_error(status: Status) -> PgWireError {
    let code = match status.code() {
        Code::PermissionDenied => "42501",
        Code::InvalidArgument => "22023",
        Code::Unimplemented => "0A000",
        Code::Cancelled | Code::DeadlineExceeded => "57014",
        Code::ResourceExhausted => "53000",
        Code::Unavailable => "57P01",
        _ => "XX000",
    };
    user_error(code, status.message().to_string())
}

/// A statement's error, with `replace`'s first text shown as its second (a spool's path as
/// `STDIN`).
pub(crate) fn query_error(e: strata_query::Error, replace: Option<(&str, &str)>) -> PgWireError {
    let kind = e.kind();
    let code = match kind {
        _ if matches!(e, strata_query::Error::Parse(_)) => "42601",
        ErrorKind::InvalidArgument => "22023",
        ErrorKind::NotFound => "42P01",
        ErrorKind::AlreadyExists => "42P07",
        ErrorKind::Conflict => "40001",
        ErrorKind::ConstraintViolation => "23000",
        ErrorKind::Unsupported => "0A000",
        ErrorKind::PermissionDenied => "42501",
        ErrorKind::Cancelled => "57014",
        ErrorKind::ResourceExhausted => "53200",
        ErrorKind::Internal => "XX000",
    };
    // The kind only: a message may quote the statement or the values it touched.
    match kind {
        ErrorKind::Internal | ErrorKind::ResourceExhausted => {
            tracing::warn!(kind = ?kind, protocol = "postgres", "statement failed");
        }
        _ => tracing::info!(kind = ?kind, protocol = "postgres", "statement refused"),
    }
    let mut message = e.to_string();
    if let Some((from, to)) = replace {
        message = message.replace(from, to);
    }
    user_error(code, message)
}

/// Logs protocol errors (never the statement: it may carry a secret).
pub(crate) struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        match error {
            PgWireError::UserError(info) => {
                tracing::debug!(code = %info.code, "PostgreSQL error sent");
            }
            PgWireError::IoError(e) => tracing::debug!(error = %e, "PostgreSQL connection"),
            other => tracing::info!(error = %other, "PostgreSQL protocol error"),
        }
    }
}
