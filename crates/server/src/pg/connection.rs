//! A signed-in PostgreSQL connection: its session, parameters, cursors and COPY in progress,
//! kept in pgwire's session extensions for every handler to find.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgwire::api::ClientInfo;
use pgwire::error::PgWireResult;
use strata_query::Session;
use tokio::sync::Mutex as AsyncMutex;

use super::compat::Settings;
use super::copy::Spool;
use super::error::user_error;
use super::server::{CancelRegistration, CancelSignal};
use crate::auth::Identity;

/// One signed-in PostgreSQL connection, kept in pgwire's session extensions.
pub(crate) struct Connection {
    /// Its SQL session: current database and schema, `SET strata.*` options.
    pub(crate) session: AsyncMutex<Session>,
    /// Who signed in.
    pub(crate) identity: Identity,
    /// PostgreSQL's own parameters (`SET DateStyle`, `search_path` as shown) and the
    /// transaction the client believes it is in.
    pub(crate) settings: Mutex<Settings>,
    /// A `COPY ... FROM STDIN` receiving its data.
    pub(crate) copy: Mutex<Option<Spool>>,
    /// Open cursors (`DECLARE ... CURSOR`), by name.
    pub(crate) cursors: AsyncMutex<HashMap<String, Cursor>>,
    /// Bumped by a cancel request: the running statement stops.
    pub(crate) cancels: CancelSignal,
    pub(crate) _registration: CancelRegistration,
}

impl Connection {
    /// Notes that a statement changed data, for a later `ROLLBACK`'s warning.
    pub(crate) fn note_write(&self) {
        if let Some(wrote) = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .transaction
            .as_mut()
        {
            *wrote = true;
        }
    }
}

/// An open cursor: its query's stream, and rows of a batch a `FETCH` left.
pub(crate) struct Cursor {
    pub(crate) schema: arrow::datatypes::SchemaRef,
    pub(crate) stream: futures::stream::BoxStream<'static, PgWireResult<arrow::array::RecordBatch>>,
    pub(crate) pending: Option<arrow::array::RecordBatch>,
}

/// The connection a client signed in with.
pub(crate) fn connection<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Connection>> {
    client
        .session_extensions()
        .get::<Connection>()
        .ok_or_else(|| user_error("08003", "the connection has not signed in".to_string()))
}
