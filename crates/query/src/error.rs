//! The one error type of the query layer, and the kind of each error that clients act on.
//!
//! Errors keep their type from storage to the client: a storage error that travelled through
//! DataFusion (a write inside an `INSERT` plan, a scan) is unwrapped back into
//! [`Error::Storage`], and [`Error::kind`] says what a client should do about it (retry a lost
//! commit race, fix the statement, look for the name). The servers map kinds to their protocol's
//! codes in one place each.

use datafusion::error::DataFusionError;
use strata_storage::Error as StorageError;

/// Errors of the SQL layer: parse errors, unsupported statements, and errors of the layers below.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse.
    #[error("SQL parse error: {0}")]
    Parse(String),

    /// A statement or option Strata does not support.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// A statement that cannot be planned or run as written (wrong names, types, options).
    #[error("{0}")]
    Plan(String),

    /// The statement was cancelled (or timed out) before it committed anything.
    #[error("statement cancelled before it committed; nothing was written")]
    Cancelled,

    /// The statement needs a role its user does not have.
    #[error("permission denied: {0}")]
    PermissionDenied(String),

    /// A statement names a table or view that does not exist.
    #[error("table '{name}' not found{}", did_you_mean(.suggestions))]
    TableNotFound {
        /// The name as the statement wrote it.
        name: String,
        /// Existing names close to it, best first.
        suggestions: Vec<String>,
    },

    /// An error of the storage layer.
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// An error DataFusion raised while planning or running a statement.
    #[error(transparent)]
    DataFusion(DataFusionError),

    /// An Arrow error (a value that does not convert, a schema that does not match).
    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// `COPY INTO` rejected more rows than `MAX_ERROR_RATIO` allows.
    #[error(
        "COPY INTO {table}: {rejected} of {parsed} rows rejected ({:.1}%), more than \
         MAX_ERROR_RATIO = {max_ratio}; nothing was loaded. First: {first}. Every rejected row \
         is in system.load_errors",
        100.0 * *rejected as f64 / *parsed as f64
    )]
    TooManyRejects {
        /// The target table.
        table: String,
        /// Rows rejected.
        rejected: u64,
        /// Rows read.
        parsed: u64,
        /// The ratio allowed.
        max_ratio: f64,
        /// The first rejected row and why.
        first: String,
    },
}

/// `; did you mean 'x'?` for a non-empty list of suggestions.
fn did_you_mean(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        [one] => format!("; did you mean '{one}'?"),
        many => format!(
            "; did you mean {}?",
            many.iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

/// What kind of failure an error is, which decides what a client can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The statement is wrong as written (syntax, types, values, options): fix it.
    InvalidArgument,
    /// A database, schema, table, view, partition or version that does not exist.
    NotFound,
    /// An object of that name exists already.
    AlreadyExists,
    /// The statement lost a commit race with a concurrent writer; nothing was written, and
    /// running it again may succeed.
    Conflict,
    /// The rows would break a declared constraint (key, foreign key, check, NOT NULL); the
    /// constraint is named in the message.
    ConstraintViolation,
    /// The statement was cancelled or timed out before it committed.
    Cancelled,
    /// The user may not run the statement (it needs the admin role).
    PermissionDenied,
    /// Strata does not support the statement or option.
    Unsupported,
    /// The memory limit or another resource ran out.
    ResourceExhausted,
    /// A fault of the server or the storage under it, not of the statement.
    Internal,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Parse(_) | Error::Plan(_) | Error::Arrow(_) | Error::TooManyRejects { .. } => {
                ErrorKind::InvalidArgument
            }
            Error::TableNotFound { .. } => ErrorKind::NotFound,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Storage(s) => storage_kind(s),
            Error::DataFusion(d) => datafusion_kind(d),
        }
    }

    /// True when the statement failed only because a concurrent writer committed first, so
    /// that running it again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Conflict
    }
}

fn storage_kind(e: &StorageError) -> ErrorKind {
    match e {
        StorageError::DatabaseNotFound { .. }
        | StorageError::SchemaNotFound { .. }
        | StorageError::TableNotFound { .. }
        | StorageError::ViewNotFound { .. }
        | StorageError::PartitionNotFound { .. }
        | StorageError::VersionNotFound { .. }
        | StorageError::NoVersionAtTime { .. }
        | StorageError::NoFilesMatch { .. }
        | StorageError::SecretNotFound { .. } => ErrorKind::NotFound,
        StorageError::DatabaseExists { .. }
        | StorageError::SchemaExists { .. }
        | StorageError::TableExists { .. }
        | StorageError::NameTaken { .. }
        | StorageError::PartitionExists { .. }
        | StorageError::SecretExists { .. } => ErrorKind::AlreadyExists,
        StorageError::CommitConflict { .. } | StorageError::TooManyConflicts { .. } => {
            ErrorKind::Conflict
        }
        StorageError::ConstraintViolation { .. } => ErrorKind::ConstraintViolation,
        StorageError::InvalidPartitioning { .. }
        | StorageError::NoPartitionForValue { .. }
        | StorageError::TooManyPartitions { .. }
        | StorageError::SchemaMismatch { .. }
        | StorageError::Load { .. }
        | StorageError::NotEmpty { .. }
        | StorageError::WrongKind { .. }
        | StorageError::InvalidArgument(_) => ErrorKind::InvalidArgument,
        StorageError::InvalidWarehouse { .. }
        | StorageError::ObjectStore { .. }
        | StorageError::Io { .. }
        | StorageError::CorruptMetadata { .. }
        | StorageError::Panicked { .. }
        | StorageError::Arrow(_)
        | StorageError::Parquet(_) => ErrorKind::Internal,
    }
}

fn datafusion_kind(e: &DataFusionError) -> ErrorKind {
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::ArrowError(..) => ErrorKind::InvalidArgument,
        DataFusionError::ResourcesExhausted(_) => ErrorKind::ResourceExhausted,
        DataFusionError::External(inner) => {
            if let Some(s) = inner.downcast_ref::<StorageError>() {
                storage_kind(s)
            } else if let Some(ours) = inner.downcast_ref::<Error>() {
                ours.kind()
            } else {
                ErrorKind::Internal
            }
        }
        _ => ErrorKind::Internal,
    }
}

impl From<DataFusionError> for Error {
    /// Unwraps errors of ours that travelled through DataFusion, so callers see the original
    /// with its type (a storage error inside an `INSERT` plan is [`Error::Storage`]).
    fn from(e: DataFusionError) -> Self {
        match e {
            DataFusionError::External(inner) => from_external(inner),
            DataFusionError::ArrowError(arrow, context) => match *arrow {
                arrow::error::ArrowError::ExternalError(inner) => from_external(inner),
                other => Error::DataFusion(DataFusionError::ArrowError(Box::new(other), context)),
            },
            DataFusionError::Context(context, inner) => match Error::from(*inner) {
                Error::DataFusion(inner) => {
                    Error::DataFusion(DataFusionError::Context(context, Box::new(inner)))
                }
                ours => ours,
            },
            // A diagnostic only annotates the error it wraps (and prints as it).
            DataFusionError::Diagnostic(_, inner) => Error::from(*inner),
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => Error::from(inner),
                Err(shared) => Error::DataFusion(DataFusionError::Shared(shared)),
            },
            other => Error::DataFusion(other),
        }
    }
}

/// Our error, a storage error or a DataFusion error inside `External`, unwrapped.
fn from_external(inner: Box<dyn std::error::Error + Send + Sync>) -> Error {
    let inner = match inner.downcast::<StorageError>() {
        Ok(storage) => return Error::Storage(*storage),
        Err(other) => other,
    };
    let inner = match inner.downcast::<Error>() {
        Ok(ours) => return *ours,
        Err(other) => other,
    };
    match inner.downcast::<DataFusionError>() {
        Ok(df) => Error::from(*df),
        Err(other) => Error::DataFusion(DataFusionError::External(other)),
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

/// Result with the query [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use datafusion::error::DataFusionError;
    use strata_storage::Version;

    use super::*;

    fn conflict() -> StorageError {
        StorageError::CommitConflict {
            table: "main.public.t".into(),
            version: Version(3),
            reason: "file removed".into(),
        }
    }

    #[test]
    fn storage_errors_keep_their_type_through_datafusion() {
        let wrapped = [
            DataFusionError::External(Box::new(conflict())),
            DataFusionError::Context(
                "writing".into(),
                Box::new(DataFusionError::External(Box::new(conflict()))),
            ),
            DataFusionError::ArrowError(
                Box::new(arrow::error::ArrowError::ExternalError(
                    Box::new(conflict()),
                )),
                None,
            ),
            DataFusionError::External(Box::new(Error::Storage(conflict()))),
            DataFusionError::Shared(std::sync::Arc::new(DataFusionError::External(Box::new(
                conflict(),
            )))),
        ];
        for e in wrapped {
            let ours = Error::from(e);
            assert!(
                matches!(ours, Error::Storage(StorageError::CommitConflict { .. })),
                "{ours:?}"
            );
            assert_eq!(ours.kind(), ErrorKind::Conflict);
            assert!(ours.is_retryable());
            assert_eq!(ours.to_string(), conflict().to_string());
        }
    }

    #[test]
    fn kinds_of_common_errors() {
        let plan = Error::from(DataFusionError::Plan("no such column".into()));
        assert_eq!(plan.kind(), ErrorKind::InvalidArgument);
        let oom = Error::from(DataFusionError::ResourcesExhausted("memory".into()));
        assert_eq!(oom.kind(), ErrorKind::ResourceExhausted);
        let missing = Error::TableNotFound {
            name: "sale".into(),
            suggestions: vec!["sales".into()],
        };
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert_eq!(
            missing.to_string(),
            "table 'sale' not found; did you mean 'sales'?"
        );
        let violation = Error::Storage(StorageError::ConstraintViolation {
            table: "t".into(),
            reason: "row 1 violates PRIMARY KEY constraint 'pk'".into(),
        });
        assert_eq!(violation.kind(), ErrorKind::ConstraintViolation);
    }
}
