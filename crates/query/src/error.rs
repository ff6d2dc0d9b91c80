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

    /// A write to a table with `test_on_load = true` failed one of its ERROR data tests.
    #[error(
        "{operation} into {table} committed nothing: data test '{test}' failed on {failing_rows} \
         row(s) of the table as the write would leave it. First failing rows: {sample}. Every \
         result is in system.data_test_results"
    )]
    DataTestFailed {
        /// The table.
        table: String,
        /// The write (`INSERT`, `COPY INTO`, ...).
        operation: String,
        /// The test that failed (the first, when several did).
        test: String,
        /// How many rows it returned.
        failing_rows: u64,
        /// The first of them, as JSON.
        sample: String,
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
            Error::DataTestFailed { .. } => ErrorKind::ConstraintViolation,
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
        | StorageError::ObjectNotFound { .. }
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
            DataFusionError::Plan(message) if message.contains(NO_SIGNATURE) => {
                Error::Plan(no_signature(&message))
            }
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => Error::from(inner),
                Err(shared) => Error::DataFusion(DataFusionError::Shared(shared)),
            },
            other => Error::DataFusion(other),
        }
    }
}

/// What DataFusion says when no signature of a function takes the argument types given.
const NO_SIGNATURE: &str = "No function matches the given name and argument types '";

/// DataFusion's "Internal error: Function 'avg' failed to match any signature, ... This issue
/// was likely caused by a bug in DataFusion's code ..." for a user's type mistake, said plainly:
/// `avg(VARCHAR)` does not exist, the argument types it takes, and what to do.
fn no_signature(message: &str) -> String {
    // A function with its own coercion (Strata's) explains itself: keep its words.
    if let Some(own) = message.split("user-defined coercion failed with: ").nth(1) {
        let own = own.split(NO_SIGNATURE).next().unwrap_or(own);
        let own = own.trim_start_matches("Error during planning: ");
        let own = own
            .trim_end()
            .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
        return own.to_string();
    }
    let call = message
        .split(NO_SIGNATURE)
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or("the function");
    let name = call.split('(').next().unwrap_or(call);
    let args = call
        .strip_prefix(name)
        .and_then(|a| a.strip_prefix('('))
        .and_then(|a| a.strip_suffix(')'))
        .unwrap_or("");
    let shown: Vec<String> = args
        .split(", ")
        .filter(|a| !a.is_empty())
        .map(sql_type_of_arrow_name)
        .collect();
    let candidates: Vec<&str> = message
        .split("Candidate functions:")
        .nth(1)
        .map(|c| c.lines().map(str::trim).filter(|l| !l.is_empty()).collect())
        .unwrap_or_default();
    let mut text = format!("function {name}({}) does not exist", shown.join(", "));
    if !candidates.is_empty() {
        text.push_str(&format!("; {name} takes {}", candidates.join(", ")));
    }
    text.push_str("; cast the arguments to one of those types, CAST(x AS type)");
    text
}

/// An Arrow type as DataFusion prints it in a signature (`Utf8`, `Int64`, `Decimal128(10, 2)`),
/// by its SQL name.
fn sql_type_of_arrow_name(name: &str) -> String {
    let sql = match name {
        "Utf8" | "LargeUtf8" | "Utf8View" => "VARCHAR",
        "Int8" => "TINYINT",
        "Int16" => "SMALLINT",
        "Int32" => "INT",
        "Int64" => "BIGINT",
        "Float32" => "REAL",
        "Float64" => "DOUBLE",
        "Boolean" => "BOOLEAN",
        "Date32" | "Date64" => "DATE",
        "Null" => "NULL",
        other if other.starts_with("Timestamp(") => "TIMESTAMP",
        other if other.starts_with("Decimal128(") => {
            return other.replace("Decimal128", "DECIMAL").replace(", ", ",");
        }
        other => other,
    };
    sql.to_string()
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
    fn a_type_mistake_in_a_call_is_a_plain_error_naming_the_types() {
        let message = "Internal error: Function 'avg' failed to match any signature, errors: \
            Error during planning: Function 'avg' requires Decimal, but received String.\n\
            This issue was likely caused by a bug in DataFusion's code. No function matches the \
            given name and argument types 'avg(Utf8)'. You might need to add explicit type \
            casts.\n\tCandidate functions:\n\tavg(Decimal)\n\tavg(Float64)";
        let e = Error::from(DataFusionError::Plan(message.into()));
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            e.to_string(),
            "function avg(VARCHAR) does not exist; avg takes avg(Decimal), avg(Float64); cast \
             the arguments to one of those types, CAST(x AS type)"
        );
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
