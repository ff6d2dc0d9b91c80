//! Strata's table format on object storage.
//!
//! ```text
//!  Catalog (_catalog/<v>.json)          databases → schemas → tables (name → TableId)
//!     │
//!  TableLog (tables/<id>/_log/<v>.json)  numbered commits, put-if-absent, checkpoints
//!     │ Snapshot = metadata + live DataFiles with statistics
//!  TableWriter                          route rows to range partitions → Parquet (rayon)
//!     │
//!  object_store                         local disk (fsynced), memory://
//! ```
//!
//! Entry points: [`WarehouseStore::open`] for a root, [`Catalog`] for names, [`TableLog`] to read
//! snapshots and commit [`Transaction`]s, [`TableWriter`] to turn batches into data files, and
//! [`load`] to read CSV / JSON / Parquet sources.
//!
//! Invariants: data files are immutable and only become visible through a commit; a commit
//! either lands entirely or not at all; a crashed writer leaves only unreferenced files behind,
//! which [`vacuum`] removes.

pub mod catalog;
pub mod error;
pub mod load;
pub mod log;
pub mod partition;
pub mod store;
pub mod vacuum;
pub mod writer;

pub use catalog::{
    Catalog, CatalogState, DEFAULT_DATABASE, DEFAULT_SCHEMA, SchemaEntry, TableEntry, ViewEntry,
};
pub use error::{Error, Result};
pub use log::{
    Action, ColumnDef, ColumnStats, Commit, Constraint, DataFile, LoadedFile, Snapshot, StatValue,
    TableId, TableLog, TableMetadata, Transaction, Version,
};
pub use partition::{Interval, KeyType, Partition, Partitioning, UpperBound};
pub use store::WarehouseStore;
pub use writer::{BatchCheck, TableWriter, WriteOptions, run_cpu};
