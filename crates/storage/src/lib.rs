//! Strata's table format on object storage.
//!
//! ```text
//!  Catalog (_catalog/<v>.json)          databases → schemas → tables (name → TableId)
//!     │
//!  TableLog (tables/<id>/_log/<v>.json)  numbered commits, put-if-absent, checkpoints
//!     │ Snapshot = metadata + live DataFiles with statistics
//!     │ DataFile (+ DeletionVector: rows deleted since, a roaring bitmap beside the file)
//!  TableWriter                          route rows to range partitions → sort (index key) → Parquet (rayon)
//!     │
//!  object_store                         local disk (fsynced), memory://, s3://
//! ```
//!
//! Beside the tables, [`records`] keeps what the warehouse remembers of its own work (query log,
//! failed loads, rejected rows, lineage) as small JSON objects under `_system/`.
//!
//! Entry points: [`WarehouseStore::open`] for a root, [`Catalog`] for names, [`TableLog`] to read
//! snapshots and commit [`Transaction`]s, [`TableWriter`] to turn batches into data files, and
//! [`load`] to read CSV / JSON / Parquet sources.
//!
//! Invariants: data files are immutable and only become visible through a commit; a commit
//! either lands entirely or not at all; a crashed writer leaves only unreferenced files behind,
//! which [`vacuum`] removes.

#![warn(missing_docs)]

/// Databases, schemas and names of tables and views, as a log of catalog versions.
pub mod catalog;
/// Data tests a table keeps, and the record of each run.
pub mod data_test;
#[cfg(test)]
mod decode_fuzz;
/// Deletion vectors: rows of a data file deleted without rewriting it.
pub mod deletion;
/// The one error type of the storage layer.
pub mod error;
mod faults;
/// Table ids and log versions.
pub mod id;
/// Finding and reading `COPY INTO` sources (CSV, JSON, Parquet).
pub mod load;
/// The transactional table log: commits, snapshots, checkpoints, time travel.
pub mod log;
/// Range partitioning: layouts, bounds and routing rows to partitions.
pub mod partition;
/// System records: query log, load history, rejected rows, lineage.
pub mod records;
/// Named secrets (`CREATE SECRET`): the keys a load needs, kept out of scripts.
pub mod secrets;
pub mod sort;
/// Opening a warehouse root as an object store, and the paths under it.
pub mod store;
/// Scheduled tasks, their runs and the leases of their slots.
pub mod task;
/// Deleting files no snapshot within the retention period references.
pub mod vacuum;
/// Turning batches into Parquet data files of a table.
pub mod writer;

pub use catalog::{
    Catalog, CatalogState, DEFAULT_DATABASE, DEFAULT_SCHEMA, ExternalFile, ExternalTableEntry,
    FileFormatEntry, FormatOptions, SYSTEM_SCHEMA, SchemaEntry, StageEntry, TableEntry, ViewEntry,
};
pub use data_test::{DataTest, DataTestResult, Severity, TestCheck};
pub use deletion::{DeletionVector, DeletionVectorCache};
pub use error::{Error, Result, panic_message};
pub use faults::{Fault, FaultyStore};
pub use id::{TableId, Version};
pub use log::{
    Action, Channel, ChannelAdvance, ChannelOffset, ColumnDef, ColumnStats, Commit, Constraint,
    DataFile, FENCE_TTL_SECONDS, Fence, Index, IndexKind, LoadedFile, Reads, Snapshot, StatValue,
    TableLog, TableMetadata, Transaction, sql_type_name,
};
pub use partition::{Interval, KeyType, Partition, Partitioning, Retention, UpperBound};
pub use records::{
    ColumnLineageEdge, LineageEdge, LoadErrors, LoadFailure, QueryLogEntry, Record, RejectedRow,
    SystemRecords,
};
pub use secrets::{Secret, Secrets};
pub use store::{Location, WarehouseStore};
pub use task::{AlertEntry, AlertRun, TaskEntry, TaskLease, TaskRun};
pub use writer::{
    BatchCheck, DEFAULT_MAX_NEW_PARTITIONS, TableWriter, Uploads, WriteOptions, run_cpu,
};
