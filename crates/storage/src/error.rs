//! The one error type of the storage layer.

use crate::id::Version;

/// Errors of the storage layer. Variants carry the names a user needs to find the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The warehouse location cannot be opened as given.
    #[error("invalid warehouse location '{url}': {reason}")]
    InvalidWarehouse {
        /// The location as given.
        url: String,
        /// Why.
        reason: String,
    },

    /// The object store failed (network, permissions, a missing object).
    #[error("object store error: {source}")]
    ObjectStore {
        #[from]
        /// The underlying error.
        source: object_store::Error,
    },

    /// A local file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        #[source]
        /// The underlying error.
        source: std::io::Error,
    },

    /// Code of Strata panicked while running a statement: a bug. Only that statement failed.
    #[error("internal error (a bug, please report it): {message}; the statement was not applied")]
    Panicked {
        /// The panic's message.
        message: String,
    },

    /// A catalog or log file does not parse.
    #[error("corrupt metadata file {path}: {reason}")]
    CorruptMetadata {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },

    /// No database of that name.
    #[error("database '{name}' does not exist")]
    DatabaseNotFound {
        /// The object's qualified name.
        name: String,
    },

    /// A database of that name exists already.
    #[error("database '{name}' already exists")]
    DatabaseExists {
        /// The object's qualified name.
        name: String,
    },

    /// No schema of that name.
    #[error("schema '{database}.{schema}' does not exist")]
    SchemaNotFound {
        /// The database.
        database: String,
        /// The schema.
        schema: String,
    },

    /// A schema of that name exists already.
    #[error("schema '{database}.{schema}' already exists")]
    SchemaExists {
        /// The database.
        database: String,
        /// The schema.
        schema: String,
    },

    /// A database or schema still holds objects.
    #[error("{what} '{name}' is not empty; use CASCADE to drop it with its contents")]
    NotEmpty {
        /// `database` or `schema`.
        what: &'static str,
        /// The object's qualified name.
        name: String,
    },

    /// No table of that name.
    #[error("table '{name}' does not exist")]
    TableNotFound {
        /// The object's qualified name.
        name: String,
    },

    /// A table of that name exists already.
    #[error("table '{name}' already exists")]
    TableExists {
        /// The object's qualified name.
        name: String,
    },

    /// The name is taken by an object of another kind.
    #[error("'{name}' already exists as {}", with_article(kind))]
    NameTaken {
        /// The object's qualified name.
        name: String,
        /// What the name is taken by.
        kind: &'static str,
    },

    /// The statement names an object of another kind (`DROP TABLE` on a view).
    #[error("'{name}' is a {is}; use {hint}")]
    WrongKind {
        /// The object's qualified name.
        name: String,
        /// What the object is.
        is: &'static str,
        /// The statement to use instead.
        hint: &'static str,
    },

    /// No view of that name.
    #[error("view '{name}' does not exist")]
    ViewNotFound {
        /// The object's qualified name.
        name: String,
    },

    /// No stage, file format or external table of that name.
    #[error("{kind} '{name}' does not exist")]
    ObjectNotFound {
        /// What was looked for ("stage", "file format").
        kind: &'static str,
        /// The object's qualified name.
        name: String,
    },

    /// Time travel to a version the table never had.
    #[error("table '{table}' has no version {version}")]
    VersionNotFound {
        /// The table.
        table: String,
        /// The version.
        version: Version,
    },

    /// Time travel to before the table existed.
    #[error("table '{table}' did not exist at {timestamp}")]
    NoVersionAtTime {
        /// The table.
        table: String,
        /// The time asked for.
        timestamp: String,
    },

    /// A partition layout that cannot be built.
    #[error("invalid partitioning for table '{table}': {reason}")]
    InvalidPartitioning {
        /// The table.
        table: String,
        /// Why.
        reason: String,
    },

    /// No partition of that name.
    #[error("table '{table}' has no partition '{partition}'")]
    PartitionNotFound {
        /// The table.
        table: String,
        /// The partition.
        partition: String,
    },

    /// A partition of that name exists already.
    #[error("table '{table}' already has a partition '{partition}'")]
    PartitionExists {
        /// The table.
        table: String,
        /// The partition.
        partition: String,
    },

    /// A row whose key no partition accepts.
    #[error(
        "no partition of table '{table}' accepts {column} = {value} (row {row} of the input); nothing was written"
    )]
    NoPartitionForValue {
        /// The table.
        table: String,
        /// The partition key column.
        column: String,
        /// The key value.
        value: String,
        /// The row of the input, from 1.
        row: usize,
    },

    /// A statement would create more interval partitions than the cap allows.
    #[error(
        "the statement would create more than {max} new partitions of table '{table}' \
         (strata.max_partitions_per_statement = {max}); nothing was written. Check the \
         partition key's values, or raise the setting"
    )]
    TooManyPartitions {
        /// The table.
        table: String,
        /// The cap.
        max: usize,
    },

    /// Rows that break a declared constraint or NOT NULL; the reason names it.
    #[error("table '{table}': {reason}")]
    ConstraintViolation {
        /// The table.
        table: String,
        /// Why.
        reason: String,
    },

    /// Rows whose columns do not fit the table.
    #[error("table '{table}': schema mismatch: {reason}")]
    SchemaMismatch {
        /// The table.
        table: String,
        /// Why.
        reason: String,
    },

    /// A concurrent commit changed what this statement read or removes; nothing was committed.
    #[error(
        "table '{table}': a concurrent commit at version {version} conflicts with this statement: {reason}; nothing was committed, and the statement can be retried"
    )]
    CommitConflict {
        /// The table.
        table: String,
        /// The version.
        version: Version,
        /// Why.
        reason: String,
    },

    /// Every commit attempt lost to concurrent writers; nothing was committed.
    #[error(
        "gave up committing to '{name}' after {attempts} attempts lost to concurrent writers; nothing was committed, and the statement can be retried"
    )]
    TooManyConflicts {
        /// The object's qualified name.
        name: String,
        /// Attempts made.
        attempts: usize,
    },

    /// A source file that cannot be read.
    #[error("error loading {file}: {reason}")]
    Load {
        /// The source file.
        file: String,
        /// Why.
        reason: String,
    },

    /// A load pattern that matches no file.
    #[error("no files match '{pattern}'")]
    NoFilesMatch {
        /// The pattern.
        pattern: String,
    },

    /// An Arrow error.
    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// A Parquet error.
    #[error("Parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// A statement names a secret that does not exist.
    #[error("secret '{name}' does not exist")]
    SecretNotFound {
        /// The name.
        name: String,
    },

    /// `CREATE SECRET` of a name that exists (without `OR REPLACE`).
    #[error("secret '{name}' already exists")]
    SecretExists {
        /// The name.
        name: String,
    },

    /// A value or option the storage layer refuses.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Result with the storage [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text of a panic payload (`panic!` with a literal or with a formatted message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// "a table", "an external table".
fn with_article(noun: &str) -> String {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {noun}")
    } else {
        format!("a {noun}")
    }
}
