//! `SUBSCRIBE [TO] mv`: a materialized view's rows, then every row that changes, as commits
//! land, the way Materialize's SUBSCRIBE pushes a view to a dashboard that need not poll.
//!
//! The stream first sends the view's rows as of its newest version, then watches the view's
//! log: at each new version (a continuous view's fold, a refresh) it reads the view and sends
//! the rows that were not in what it sent last, so each window's new value arrives as it
//! changes. Every row carries the `version` and `committed_at` of the view it came from. The
//! stream ends only when its reader drops it (the shell's Ctrl-C, a Flight client that
//! cancels, a server's query timeout); it remembers the last rows sent, as many as the view
//! holds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::ObjectName;
use futures::StreamExt;

use crate::catalog::materialized_view::Definition;
use crate::error::{Error, Result};
use crate::session::Session;
use crate::warehouse::Warehouse;

/// How often the view's log is read for a new version.
const POLL: Duration = Duration::from_millis(100);

/// The rows a subscription to `view` sends: `version`, `committed_at`, then the view's columns.
pub(crate) async fn schema(session: &Session, view: &ObjectName) -> Result<SchemaRef> {
    open(session, view).await?;
    let columns = view_schema(session, view).await?;
    Ok(with_version(&columns))
}

/// Starts a subscription to `view`.
pub(crate) async fn stream(
    session: &Session,
    view: &ObjectName,
) -> Result<SendableRecordBatchStream> {
    let (log, _, qualified) = open(session, view).await?;
    let columns = view_schema(session, view).await?;
    let schema = with_version(&columns);
    let (db, schema_name, table) = session.qualify_table(view)?;
    let state = Watch {
        warehouse: session.warehouse().clone(),
        log,
        qualified,
        table: TableReference::full(db, schema_name, table),
        columns,
        schema: Arc::clone(&schema),
        version: None,
        sent: HashSet::new(),
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        loop {
            match state.next_changes().await {
                Ok(Some(batch)) => return Some((Ok(batch), state)),
                Ok(None) => tokio::time::sleep(POLL).await,
                Err(e) => return Some((Err(e.into()), state)),
            }
        }
    })
    .boxed();
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
}

/// The log, snapshot and qualified name of materialized view `view`.
async fn open(
    session: &Session,
    view: &ObjectName,
) -> Result<(strata_storage::TableLog, strata_storage::Snapshot, String)> {
    session.warehouse().refresh_catalog().await?;
    let (log, snapshot, qualified) = session.open_table(view).await?;
    if Definition::of(&snapshot.metadata).is_none() {
        return Err(Error::Plan(format!(
            "SUBSCRIBE TO {qualified}: not a materialized view (subscribe to a view over it, \
             such as a continuous one)"
        )));
    }
    Ok((log, snapshot, qualified))
}

/// The view's columns as readers see them.
async fn view_schema(session: &Session, view: &ObjectName) -> Result<SchemaRef> {
    let (db, schema, table) = session.qualify_table(view)?;
    let df = session
        .context()
        .table(TableReference::full(db, schema, table))
        .await?;
    Ok(Arc::new(df.schema().as_arrow().clone()))
}

fn with_version(columns: &Schema) -> SchemaRef {
    let mut fields = vec![
        Arc::new(Field::new("version", DataType::UInt64, false)),
        Arc::new(Field::new(
            "committed_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )),
    ];
    fields.extend(columns.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// A subscription's state between versions.
struct Watch {
    warehouse: Warehouse,
    log: strata_storage::TableLog,
    qualified: String,
    /// The view.
    table: TableReference,
    columns: SchemaRef,
    schema: SchemaRef,
    /// The version last read.
    version: Option<u64>,
    /// The rows of that version, in arrow's row format.
    sent: HashSet<Vec<u8>>,
}

impl Watch {
    /// The rows that changed since the version last read, if the view has a newer one with
    /// changed rows.
    async fn next_changes(&mut self) -> Result<Option<RecordBatch>> {
        let snapshot = self.warehouse.snapshot(&self.log).await?;
        let version = snapshot.version.0;
        if self.version == Some(version) {
            return Ok(None);
        }
        self.version = Some(version);
        // Through DataFusion's context, not `Session::sql`: the catalog is read afresh.
        self.warehouse.refresh_catalog().await?;
        let session = self.warehouse.session();
        let batches = session
            .context()
            .table(self.table.clone())
            .await?
            .collect()
            .await?;
        let converter = RowConverter::new(
            self.columns
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let mut now = HashSet::new();
        let mut changed = Vec::new();
        for batch in &batches {
            if batch.num_columns() != self.columns.fields().len() {
                return Err(Error::Plan(format!(
                    "SUBSCRIBE TO {}: the view's columns changed; subscribe again",
                    self.qualified
                )));
            }
            let rows = converter.convert_columns(batch.columns())?;
            let keep: Vec<bool> = rows
                .iter()
                .map(|row| {
                    let bytes = row.as_ref().to_vec();
                    let new = !self.sent.contains(&bytes);
                    now.insert(bytes);
                    new
                })
                .collect();
            let batch = RecordBatch::try_new(Arc::clone(&self.columns), batch.columns().to_vec())?;
            let kept = filter_record_batch(&batch, &keep.into())?;
            if kept.num_rows() > 0 {
                changed.push(kept);
            }
        }
        self.sent = now;
        let rows: usize = changed.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(None);
        }
        let changed = arrow::compute::concat_batches(&self.columns, &changed)?;
        let at = snapshot.committed_at.timestamp_micros();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(vec![version; rows])),
            Arc::new(TimestampMicrosecondArray::from(vec![at; rows]).with_timezone("UTC")),
        ];
        columns.extend(changed.columns().iter().cloned());
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?))
    }
}
