//! The one error type of the server, and how query errors become gRPC status codes that
//! clients show to their users.

use datafusion::error::DataFusionError;
use strata_storage::Error as StorageError;
use tonic::Status;

/// Errors of starting and configuring the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {reason}")]
    Config { path: String, reason: String },

    #[error("password hashing failed: {0}")]
    Hash(String),

    #[error("TLS: {0}")]
    Tls(String),

    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),

    #[error(transparent)]
    Query(#[from] strata_query::Error),
}

/// Result with the server [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The gRPC status of a query-layer error: the client's mistakes (bad SQL, unknown names,
/// values that do not fit) are `InvalidArgument`/`NotFound`/`AlreadyExists`, memory limits
/// `ResourceExhausted`, everything else `Internal`. The message is the error's own text.
pub(crate) fn status(e: strata_query::Error) -> Status {
    use strata_query::Error as Q;
    let message = e.to_string();
    match &e {
        Q::Parse(_) | Q::Plan(_) | Q::Arrow(_) | Q::TooManyRejects { .. } => {
            Status::invalid_argument(message)
        }
        Q::Unsupported(_) => Status::unimplemented(message),
        Q::Storage(s) => storage_status(s, message),
        Q::DataFusion(d) => datafusion_status(d, message),
    }
}

fn storage_status(e: &StorageError, message: String) -> Status {
    match e {
        StorageError::DatabaseNotFound { .. }
        | StorageError::SchemaNotFound { .. }
        | StorageError::TableNotFound { .. }
        | StorageError::PartitionNotFound { .. }
        | StorageError::VersionNotFound { .. }
        | StorageError::NoVersionAtTime { .. }
        | StorageError::NoFilesMatch { .. } => Status::not_found(message),
        StorageError::DatabaseExists { .. }
        | StorageError::SchemaExists { .. }
        | StorageError::TableExists { .. }
        | StorageError::PartitionExists { .. } => Status::already_exists(message),
        StorageError::CommitConflict { .. } | StorageError::TooManyConflicts { .. } => {
            Status::aborted(message)
        }
        StorageError::InvalidPartitioning { .. }
        | StorageError::NoPartitionForValue { .. }
        | StorageError::SchemaMismatch { .. }
        | StorageError::Load { .. }
        | StorageError::NotEmpty { .. }
        | StorageError::InvalidArgument(_) => Status::invalid_argument(message),
        _ => Status::internal(message),
    }
}

fn datafusion_status(e: &DataFusionError, message: String) -> Status {
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::ArrowError(..) => Status::invalid_argument(message),
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        DataFusionError::External(inner) => match inner.downcast_ref::<StorageError>() {
            Some(s) => storage_status(s, message),
            None => Status::internal(message),
        },
        _ => Status::internal(message),
    }
}

/// The status of an error DataFusion reports while a query streams.
pub(crate) fn stream_status(e: DataFusionError) -> Status {
    status(strata_query::Error::from(e))
}
