//! Strata's SQL layer: a DataFusion session over a Strata warehouse.
//!
//! ```text
//!  Session::sql(text)
//!     │ parser: split on `;`, Snowflake → Generic → MySQL → Postgres dialects,
//!     │         plus PARTITION BY RANGE / ADD|DROP PARTITION / VACUUM / time travel
//!     ├── catalog DDL, CREATE TABLE [AS], COPY INTO, SHOW, DESCRIBE ──► strata-storage
//!     ├── SELECT, INSERT, EXPLAIN, SET ──► DataFusion ──► StrataTable (prunes partitions
//!     │                                                   and files, then Parquet scan)
//!     ├── UPDATE, DELETE, MERGE ──► planned by DataFusion, run by `dml`: copy-on-write of
//!     │                             the files holding affected rows, one commit
//!     ├── APPLY CHANGES ──► `scd`: SCD Type 2 history folded, changed keys rewritten
//!     ├── CREATE VIEW ──► `views`: query text in the catalog, planned again on each read
//!     └── CREATE / REFRESH MATERIALIZED VIEW ──► `mv`: a table + definition + source
//!                             versions; refresh folds appends, recomputes touched
//!                             partitions, or recomputes all, in one commit
//!  every statement ──► system.query_log
//! ```
//!
//! Entry points: [`Warehouse::open`] and [`Warehouse::session`], then [`Session::sql`].

pub mod catalog;
mod constraints;
mod copy;
pub mod date_comparison;
pub mod date_dimension;
mod decimal_arithmetic;
mod dml;
pub mod error;
pub mod fk_join;
mod lineage;
pub mod mv;
pub mod parser;
pub mod progress;
mod runtime_filter;
pub mod scan_cache;
mod scd;
pub mod session;
pub mod star_join;
mod streaming;
pub mod system;
pub mod table;
pub mod types;
mod views;
pub mod warehouse;

pub use error::{Error, Result};
pub use progress::{Progress, ProgressFigures};
pub use session::{Session, StatementResult};
pub use streaming::IngestMode;
pub use warehouse::{Warehouse, WarehouseOptions, parse_byte_size};
