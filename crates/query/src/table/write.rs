//! The write path of a table: a stream of batches checked against the table's constraints,
//! routed to partitions, encoded as Parquet, uploaded, and committed in one transaction.
//! `INSERT` reaches it through [`StrataSink`], every other statement through
//! [`write_batches`].

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::datasource::sink::DataSink;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use strata_storage::{
    DataFile, Reads, Snapshot, TableLog, TableWriter, Transaction, Uploads, WriteOptions, run_cpu,
};

use crate::table::constraints::Fences;
use crate::table::deletes::FileChanges;
use crate::table::files::{
    balanced_groups, deleted_rows_of, parquet_scan, partitioned_file, read_schema,
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
    data: SendableRecordBatchStream,
    txn: Transaction,
) -> crate::Result<(u64, Snapshot)> {
    let mut write = TableWrite::begin(warehouse, options, name, log, snapshot, txn, None).await?;
    match write.write(data).await {
        Ok(()) => write.commit().await,
        Err(e) => {
            write.abort().await;
            Err(e)
        }
    }
}

/// One statement's write to a table: rows from any number of streams, rows deleted from
/// existing files ([`FileChanges`]), then one commit. Begun with [`TableWrite::begin`], it must
/// end with [`TableWrite::commit`] or [`TableWrite::abort`].
pub(crate) struct TableWrite<'a> {
    warehouse: &'a Warehouse,
    name: &'a str,
    log: &'a TableLog,
    snapshot: &'a Snapshot,
    /// The table writer (taken out while it runs on the CPU pool).
    writer: Option<TableWriter>,
    uploads: Uploads,
    fences: Fences,
    txn: Transaction,
}

impl<'a> TableWrite<'a> {
    /// Starts a write of `txn` on top of `snapshot`. Rows it writes are checked against the
    /// table's constraints as the table stands after `changes` (when known up front) and
    /// `txn.remove`.
    pub(crate) async fn begin(
        warehouse: &'a Warehouse,
        options: WriteOptions,
        name: &'a str,
        log: &'a TableLog,
        snapshot: &'a Snapshot,
        mut txn: Transaction,
        changes: Option<&FileChanges>,
    ) -> crate::Result<Self> {
        let mut removed = txn.remove.clone();
        let mut marked = Vec::new();
        if let Some(changes) = changes {
            removed.extend(changes.removed.iter().cloned());
            marked.extend(changes.marked.iter().cloned());
        }
        let prepared =
            crate::table::constraints::prepare(warehouse, name, log, snapshot, &removed, &marked)
                .await?;
        if prepared.exclusive {
            txn.reads = Reads::Table;
        }
        // Rows are written under the metadata the commit installs (a new index's layout).
        let writer = match &txn.replace_metadata {
            Some(metadata) => {
                let mut s = snapshot.clone();
                s.metadata = metadata.clone();
                TableWriter::new(name, &s, options)
            }
            None => TableWriter::new(name, snapshot, options),
        }
        .with_check(prepared.check);
        let uploads = Uploads::begin(&warehouse.object_store(), log.id()).await?;
        Ok(Self {
            warehouse,
            name,
            log,
            snapshot,
            writer: Some(writer),
            uploads,
            fences: prepared.fences,
            txn,
        })
    }

    /// Writes the batches of `data`.
    pub(crate) async fn write(&mut self, mut data: SendableRecordBatchStream) -> crate::Result<()> {
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let mut writer = self.writer.take().ok_or_else(finished_writer)?;
            let (writer, result) = run_cpu(move || {
                let r = writer.write(batch);
                (writer, r)
            })
            .await?;
            let writer = self.writer.insert(writer);
            result?;
            let finished = writer.take_finished();
            if !finished.is_empty() {
                let added = self.uploads.upload(finished).await?;
                self.txn.add.extend(added);
            }
        }
        Ok(())
    }

    /// Deletes rows of existing files as `changes` says: writes the rest of the files it
    /// rewrites, uploads the deletion vectors of the files it marks, and records both.
    pub(crate) async fn apply(&mut self, changes: FileChanges) -> crate::Result<()> {
        if !changes.rewritten.is_empty() {
            // The rest of the rewritten files, read through their in-memory vectors.
            let metadata = &self.snapshot.metadata;
            let ctx =
                SessionContext::new_with_config_rt(SessionConfig::new(), self.warehouse.runtime());
            let state = ctx.state();
            let rewritten: Vec<&DataFile> = changes.rewritten.iter().collect();
            let deleted = deleted_rows_of(self.warehouse, &rewritten).await?;
            let files = rewritten
                .iter()
                .map(|f| partitioned_file(f, deleted.get(&f.path)))
                .collect();
            let groups = balanced_groups(files, state.config_options().execution.target_partitions);
            let scan = parquet_scan(
                &state,
                metadata,
                TableSchema::builder(read_schema(metadata)).build(),
                groups,
                None,
                None,
                None,
            )?;
            let stream = execute_stream(scan, ctx.task_ctx())?;
            self.write(stream).await?;
        }
        for file in changes.marked {
            let rows =
                self.warehouse.deleted_rows(&file).await?.ok_or_else(|| {
                    crate::Error::Plan(format!("no deleted rows for {}", file.path))
                })?;
            let vector = self
                .uploads
                .upload_deletion_vector(&file.partition, rows.as_ref().clone())
                .await?;
            self.txn.add.push(DataFile {
                deletion_vector: Some(strata_storage::DeletionVector {
                    rows: None,
                    ..vector
                }),
                ..file
            });
        }
        self.txn.remove.extend(changes.removed);
        Ok(())
    }

    /// Adds `reads` to what the transaction read (the scans of the statement, planned after
    /// the write began).
    pub(crate) fn read(&mut self, reads: Reads) {
        self.txn.reads = std::mem::take(&mut self.txn.reads).union(reads);
    }

    /// Finishes the files being written and commits everything in one transaction.
    pub(crate) async fn commit(mut self) -> crate::Result<(u64, Snapshot)> {
        let committed = async {
            let writer = self.writer.take().ok_or_else(finished_writer)?;
            let rows = writer.rows_written() as u64;
            let (files, created) = run_cpu(move || writer.finish()).await??;
            let added = self.uploads.upload(files).await?;
            self.txn.add.extend(added);
            self.txn.add_partitions.extend(created);
            let fences = std::mem::take(&mut self.fences);
            if let Some(removal) = fences
                .commit(self.warehouse, self.log, self.snapshot.version)
                .await?
            {
                removal.seal(self.name, &mut self.txn)?;
            }
            let snapshot = self
                .warehouse
                .commit(self.name, self.log, self.snapshot, &self.txn)
                .await?;
            Ok((rows, snapshot))
        }
        .await;
        self.uploads.finish().await;
        committed
    }

    /// Gives up the write: nothing is committed (uploaded files are orphans for VACUUM).
    pub(crate) async fn abort(self) {
        self.uploads.finish().await;
    }
}

fn finished_writer() -> crate::Error {
    crate::Error::Plan("the table write has already ended".to_string())
}
