//! The write path of a table: a stream of batches checked against the table's constraints,
//! routed to partitions, encoded as Parquet, uploaded, and committed in one transaction.
//! `INSERT` reaches it through [`StrataSink`], every other statement through
//! [`write_batches`].

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use strata_storage::{
    DataFile, Reads, Snapshot, TableLog, TableWriter, Transaction, Uploads, WriteOptions, run_cpu,
};

use crate::warehouse::Warehouse;

/// Writes an `INSERT` into a table and commits it.
#[derive(Debug)]
pub(crate) struct StrataSink {
    pub(crate) warehouse: Warehouse,
    pub(crate) name: String,
    pub(crate) log: TableLog,
    pub(crate) snapshot: Snapshot,
    pub(crate) schema: SchemaRef,
    pub(crate) overwrite: bool,
    /// The rows come from a scan of the table itself (`INSERT INTO t SELECT ... FROM t`).
    pub(crate) reads_target: bool,
}

impl DisplayAs for StrataSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StrataSink: table={}", self.name)
    }
}

#[async_trait]
impl DataSink for StrataSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let operation = if self.overwrite {
            "INSERT OVERWRITE"
        } else {
            "INSERT"
        };
        let mut txn = Transaction::new(operation);
        if self.overwrite {
            // An overwrite replaces every row, including rows a concurrent commit added.
            txn.remove = self.snapshot.files.values().cloned().collect();
        }
        if self.overwrite || self.reads_target {
            txn.reads = Reads::Table;
        }
        let strata = context
            .session_config()
            .options()
            .extensions
            .get::<crate::config::StrataOptions>()
            .cloned()
            .unwrap_or_default();
        let options = self.warehouse.write_options(&strata);
        let (rows, _) = write_batches(
            &self.warehouse,
            options,
            &self.name,
            &self.log,
            &self.snapshot,
            data,
            txn,
        )
        .await
        .map_err(DataFusionError::from)?;
        Ok(rows)
    }
}

/// Writes a stream of batches into a table and commits them in one transaction.
pub(crate) async fn write_batches(
    warehouse: &Warehouse,
    options: WriteOptions,
    name: &str,
    log: &TableLog,
    snapshot: &Snapshot,
    mut data: SendableRecordBatchStream,
    mut txn: Transaction,
) -> crate::Result<(u64, Snapshot)> {
    let store = warehouse.object_store();
    let prepared =
        crate::table::constraints::prepare(warehouse, name, log, snapshot, &txn.remove).await?;
    if prepared.exclusive {
        txn.reads = Reads::Table;
    }
    let (check, fences) = (prepared.check, prepared.fences);
    // Rows are written under the metadata the commit installs (a new index's layout).
    let writer_snapshot = match &txn.replace_metadata {
        Some(metadata) => {
            let mut s = snapshot.clone();
            s.metadata = metadata.clone();
            std::borrow::Cow::Owned(s)
        }
        None => std::borrow::Cow::Borrowed(snapshot),
    };
    let mut table_writer = TableWriter::new(name, &writer_snapshot, options).with_check(check);
    let uploads = Uploads::begin(&store, log.id()).await?;
    let written = async {
        let mut added: Vec<DataFile> = Vec::new();
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let (w, result) = run_cpu(move || {
                let mut w = table_writer;
                let r = w.write(batch);
                (w, r)
            })
            .await?;
            table_writer = w;
            result?;
            let finished = table_writer.take_finished();
            if !finished.is_empty() {
                added.extend(uploads.upload(finished).await?);
            }
        }
        let rows = table_writer.rows_written() as u64;
        let (files, created) = run_cpu(move || table_writer.finish()).await??;
        added.extend(uploads.upload(files).await?);
        txn.add.extend(added);
        txn.add_partitions.extend(created);
        if let Some(removal) = fences.commit(warehouse, log, snapshot.version).await? {
            removal.seal(name, &mut txn)?;
        }
        let snapshot = warehouse.commit(name, log, snapshot, &txn).await?;
        Ok((rows, snapshot))
    }
    .await;
    uploads.finish().await;
    written
}
