//! Loading what a `COPY table FROM STDIN` streams.
//!
//! The rows are spooled to a temporary file (`copy::Spool`), then loaded by Strata's own
//! `COPY INTO` from that file: the same CSV reader, writer, constraints, load history and
//! error messages (naming `STDIN` and the line) as any load. The spool is bounded by the disk
//! only, never by memory, and is removed however the load ends.

use std::fmt::Debug;
use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::Tag;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};

use super::connection::connection;
use super::error::{query_error, user_error};
use super::query::run_gated;
use super::server::PgServer;

/// pgwire's copy handler: spools `CopyData`, loads at `CopyDone`.
pub(crate) struct CopyIn {
    server: Arc<PgServer>,
}

impl CopyIn {
    pub(crate) fn new(server: Arc<PgServer>) -> Self {
        Self { server }
    }
}

#[async_trait]
impl CopyHandler for CopyIn {
    async fn on_copy_data<C>(&self, client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client)?;
        let mut copy = conn.copy.lock().unwrap_or_else(|e| e.into_inner());
        let Some(spool) = copy.as_mut() else {
            return Err(user_error("08P01", "COPY data without a COPY".to_string()));
        };
        if let Err(e) = spool.file.write_all(&data.data) {
            // Dropping the spool removes the file; the rest of the data is ignored until
            // CopyDone reports this.
            *copy = None;
            return Err(user_error(
                "53100",
                format!("spooling COPY data to a temporary file: {e}"),
            ));
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = connection(client)?;
        let spool = conn
            .copy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| user_error("08P01", "COPY data was not received".to_string()))?;
        let mut spool = spool;
        spool
            .file
            .flush()
            .map_err(|e| user_error("53100", format!("COPY spool: {e}")))?;
        let (spec, path) = (&spool.spec, &spool.path);
        let sql = spec.copy_into(path);
        let mut statement = strata_query::parser::parse(&sql)
            .map_err(|e| query_error(e, None))?
            .pop()
            .ok_or_else(|| user_error("42601", "COPY FROM STDIN".to_string()))?;
        // The query log shows what the client sent, not the spool's path.
        statement.text = format!("COPY {} FROM STDIN", spec.table);
        let path_text = path.display().to_string();
        let rows = {
            let mut session = conn.session.lock().await;
            let run = Box::pin(session.execute_with(&statement, None));
            run_gated(&self.server, run, Some(&conn))
                .await?
                .map_err(|e| query_error(e, Some((&path_text, "STDIN"))))?
        };
        drop(spool);
        let loaded: i64 = rows
            .batches
            .iter()
            .filter_map(|b| b.column_by_name("rows_loaded"))
            .filter_map(|c| c.as_any().downcast_ref::<arrow::array::Int64Array>())
            .flat_map(|a| a.iter().flatten())
            .sum();
        conn.note_write();
        let tag = Tag::new("COPY").with_rows(usize::try_from(loaded).unwrap_or(0));
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Ok(conn) = connection(client) {
            conn.copy.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        user_error(
            "57014",
            format!(
                "COPY from stdin failed: {}; nothing was loaded",
                fail.message
            ),
        )
    }
}
