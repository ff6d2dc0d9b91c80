//! The Arrow Flight SQL protocol (ADBC, the Flight SQL JDBC driver, pyarrow):
//!
//! - [`service`]: the Flight SQL RPCs (statements, prepared statements, tickets, cancel);
//! - [`ingest`]: exactly-once ingest channels over DoPut;
//! - [`metadata`]: what object browsers ask for;
//! - `framing` and `wire`: how results are cut into messages and typed for every client.

/// Exactly-once ingest channels: DoPut `["strata.ingest", table, channel, offset_token]`.
pub mod ingest;
/// Flight SQL metadata answers (catalogs, schemas, tables, keys, SQL info).
pub mod metadata;
/// The Flight SQL service: auth, headers, tickets, streaming.
pub mod service;

mod framing;
/// Arrow types every client reads (shared with the HTTP API).
pub(crate) mod wire;
