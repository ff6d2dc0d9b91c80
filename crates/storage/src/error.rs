//! The one error type of the storage layer.

use crate::id::Version;

/// Errors of the storage layer. Variants carry the names a user needs to find the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid warehouse location '{url}': {reason}")]
    InvalidWarehouse { url: String, reason: String },

    #[error("object store error: {source}")]
    ObjectStore {
        #[from]
        source: object_store::Error,
    },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("corrupt metadata file {path}: {reason}")]
    CorruptMetadata { path: String, reason: String },

    #[error("database '{name}' does not exist")]
    DatabaseNotFound { name: String },

    #[error("database '{name}' already exists")]
    DatabaseExists { name: String },

    #[error("schema '{database}.{schema}' does not exist")]
    SchemaNotFound { database: String, schema: String },

    #[error("schema '{database}.{schema}' already exists")]
    SchemaExists { database: String, schema: String },

    #[error("{what} '{name}' is not empty; use CASCADE to drop it with its contents")]
    NotEmpty { what: &'static str, name: String },

    #[error("table '{name}' does not exist")]
    TableNotFound { name: String },

    #[error("table '{name}' already exists")]
    TableExists { name: String },

    #[error("'{name}' already exists as a {kind}")]
    NameTaken { name: String, kind: &'static str },

    #[error("'{name}' is a {is}; use {hint}")]
    WrongKind {
        name: String,
        is: &'static str,
        hint: &'static str,
    },

    #[error("view '{name}' does not exist")]
    ViewNotFound { name: String },

    #[error("table '{table}' has no version {version}")]
    VersionNotFound { table: String, version: Version },

    #[error("table '{table}' did not exist at {timestamp}")]
    NoVersionAtTime { table: String, timestamp: String },

    #[error("invalid partitioning for table '{table}': {reason}")]
    InvalidPartitioning { table: String, reason: String },

    #[error("table '{table}' has no partition '{partition}'")]
    PartitionNotFound { table: String, partition: String },

    #[error("table '{table}' already has a partition '{partition}'")]
    PartitionExists { table: String, partition: String },

    #[error(
        "no partition of table '{table}' accepts {column} = {value} (row {row} of the input); nothing was written"
    )]
    NoPartitionForValue {
        table: String,
        column: String,
        value: String,
        row: usize,
    },

    #[error("table '{table}': {reason}")]
    ConstraintViolation { table: String, reason: String },

    #[error("table '{table}': schema mismatch: {reason}")]
    SchemaMismatch { table: String, reason: String },

    #[error(
        "table '{table}': a concurrent commit at version {version} conflicts with this statement: {reason}; nothing was committed, and the statement can be retried"
    )]
    CommitConflict {
        table: String,
        version: Version,
        reason: String,
    },

    #[error(
        "gave up committing to '{name}' after {attempts} attempts lost to concurrent writers; nothing was committed, and the statement can be retried"
    )]
    TooManyConflicts { name: String, attempts: usize },

    #[error("error loading {file}: {reason}")]
    Load { file: String, reason: String },

    #[error("no files match '{pattern}'")]
    NoFilesMatch { pattern: String },

    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("Parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Result with the storage [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
