//! Strata's SQL layer: a DataFusion session over a Strata warehouse.
//!
//! The crate is built in layers; each module uses only the layers below it (`.ci/layers.py`
//! checks this, and that no module imports another in a circle):
//!
//! ```text
//!  statement   Session::sql/execute: dispatch, plan step (+ MV rewrite), query log, hooks;
//!     │        one handler per family: ddl, dml (+merge), copy, apply_changes, views, stream
//!  mv          CREATE / REFRESH MATERIALIZED VIEW, scheduler, query rewrite onto views
//!     │
//!  session     the DataFusion context: catalog, rules, options; planning, name qualification
//!  cluster     where a query runs; Ballista jobs; the scheduler and executor processes
//!     │
//!  catalog     schema providers, system tables, views, materialized-view and SCD readers,
//!  rules       lineage; plans stored SQL through its `Planner` trait, which the session
//!     │        implements | optimizer and analyzer rules, table functions
//!  table       StrataTable: prune, scan (runtime filters, scan cache, remote form), write,
//!              constraints
//!     │
//!  warehouse config parser types progress result scan_cache memory     (state and leaves)
//!  error redact commit_gate
//!     │
//!  strata-storage   catalog, table logs, partitions, Parquet I/O, loaders, system records
//! ```
//!
//! Entry points: [`Warehouse::open`] and [`Warehouse::session`], then [`Session::sql`].

#![warn(missing_docs)]

mod catalog;
pub mod cluster;
pub mod commit_gate;
pub mod config;
pub mod error;
mod formats;
mod functions;
mod memory;
mod mv;
pub mod parser;
pub mod progress;
pub mod redact;
mod result;
mod rules;
mod scan_cache;
mod schedule;
mod session;
mod statement;
mod table;
pub mod telemetry;
mod types;
mod warehouse;

pub use catalog::tables::{Comments, comments};
pub use commit_gate::CommitGate;
pub use config::{
    StrataOptions, WarehouseOptions, default_scan_cache_bytes, default_server_memory_limit,
    parse_byte_size,
};
pub use error::{Error, ErrorKind, Result};
pub use mv::{RefreshLimits, run_scheduler};
pub use progress::{Progress, ProgressFigures};
pub use result::StatementResult;
pub use session::Session;
pub use statement::channels::{Appended, ChannelStatus, ChannelWriter, IngestChannels};
pub use statement::maintenance::run_maintenance;
pub use statement::monitoring::observe;
pub use statement::scheduler::run_task_scheduler;
pub use statement::stream::IngestMode;
pub use statement::task_runs::TaskLimits;
pub use strata_storage::Constraint;
pub use table::{ScanFigures, scan_figures};
pub use warehouse::Warehouse;
