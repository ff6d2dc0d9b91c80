//! The one error type of the query layer.

use datafusion::error::DataFusionError;

/// Errors of the SQL layer: parse errors, unsupported statements, and errors of the layers below.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SQL parse error: {0}")]
    Parse(String),

    #[error("not supported: {0}")]
    Unsupported(String),

    #[error("{0}")]
    Plan(String),

    #[error(transparent)]
    Storage(#[from] strata_storage::Error),

    #[error(transparent)]
    DataFusion(DataFusionError),

    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error(
        "COPY INTO {table}: {rejected} of {parsed} rows rejected ({:.1}%), more than \
         MAX_ERROR_RATIO = {max_ratio}; nothing was loaded. First: {first}. Every rejected row \
         is in system.load_errors",
        100.0 * *rejected as f64 / *parsed as f64
    )]
    TooManyRejects {
        table: String,
        rejected: u64,
        parsed: u64,
        max_ratio: f64,
        first: String,
    },
}

impl From<DataFusionError> for Error {
    /// Unwraps storage errors that travelled through DataFusion, so callers see the original.
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        if let DataFusionError::External(inner) = root {
            if let Some(storage) = inner.downcast_ref::<strata_storage::Error>() {
                return Error::Plan(storage.to_string());
            }
            // Our own error, sent through DataFusion (a write inside a DataFusion plan).
            if let Some(ours) = inner.downcast_ref::<Error>() {
                return Error::Plan(ours.to_string());
            }
        }
        match e {
            DataFusionError::External(inner) => match inner.downcast::<strata_storage::Error>() {
                Ok(s) => Error::Storage(*s),
                Err(other) => Error::DataFusion(DataFusionError::External(other)),
            },
            other => Error::DataFusion(other),
        }
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
