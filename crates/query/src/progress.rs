//! Live figures of the statement a session is running, for progress bars.
//!
//! A shell wants to show, while a long statement runs, how far it got: rows and bytes the
//! scans have read so far, and for `COPY INTO` the files and bytes loaded out of those to
//! load. The session shares a [`Progress`] with whoever asked for it; statements record what
//! they run in it, and [`Progress::figures`] reads the running plan's metrics (DataFusion
//! updates them as batches flow) without disturbing it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};

use crate::error::Result;

/// A handle on the progress of a session's running statement; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The physical plans the statement runs (a query has one; a refresh may run several).
    plans: Mutex<Vec<Arc<dyn ExecutionPlan>>>,
    files_to_load: AtomicU64,
    files_loaded: AtomicU64,
    bytes_to_load: AtomicU64,
    bytes_loaded: AtomicU64,
    rows_loaded: AtomicU64,
}

/// How far the running statement got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressFigures {
    /// Rows the statement's scans produced so far.
    pub rows_scanned: u64,
    /// Bytes the statement's Parquet scans read so far.
    pub bytes_scanned: u64,
    /// `COPY INTO`: files to load.
    pub files_to_load: u64,
    /// `COPY INTO`: files loaded so far.
    pub files_loaded: u64,
    /// `COPY INTO`: bytes of the files to load.
    pub bytes_to_load: u64,
    /// `COPY INTO`: bytes of the files loaded so far.
    pub bytes_loaded: u64,
    /// `COPY INTO`: rows loaded so far.
    pub rows_loaded: u64,
}

impl Progress {
    /// The figures now.
    pub fn figures(&self) -> ProgressFigures {
        let mut figures = ProgressFigures {
            files_to_load: self.inner.files_to_load.load(Ordering::Relaxed),
            files_loaded: self.inner.files_loaded.load(Ordering::Relaxed),
            bytes_to_load: self.inner.bytes_to_load.load(Ordering::Relaxed),
            bytes_loaded: self.inner.bytes_loaded.load(Ordering::Relaxed),
            rows_loaded: self.inner.rows_loaded.load(Ordering::Relaxed),
            ..ProgressFigures::default()
        };
        let plans = self.inner.plans.lock().expect("progress lock").clone();
        for plan in &plans {
            add_scanned(plan, &mut figures);
        }
        figures
    }

    /// Forgets the previous statement.
    pub(crate) fn reset(&self) {
        self.inner.plans.lock().expect("progress lock").clear();
        for counter in [
            &self.inner.files_to_load,
            &self.inner.files_loaded,
            &self.inner.bytes_to_load,
            &self.inner.bytes_loaded,
            &self.inner.rows_loaded,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// Follows `plan`'s scans.
    pub(crate) fn watch(&self, plan: &Arc<dyn ExecutionPlan>) {
        self.inner
            .plans
            .lock()
            .expect("progress lock")
            .push(Arc::clone(plan));
    }

    /// Runs `df` as a stream whose scans this progress follows.
    pub(crate) async fn execute(&self, df: DataFrame) -> Result<SendableRecordBatchStream> {
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        self.watch(&plan);
        Ok(execute_stream(plan, task)?)
    }

    /// A load of `files` files of `bytes` bytes starts.
    pub(crate) fn load_planned(&self, files: u64, bytes: u64) {
        self.inner.files_to_load.store(files, Ordering::Relaxed);
        self.inner.bytes_to_load.store(bytes, Ordering::Relaxed);
    }

    /// One file of `bytes` bytes was loaded, with `rows` rows.
    pub(crate) fn file_loaded(&self, bytes: u64, rows: u64) {
        self.inner.files_loaded.fetch_add(1, Ordering::Relaxed);
        self.inner.bytes_loaded.fetch_add(bytes, Ordering::Relaxed);
        self.inner.rows_loaded.fetch_add(rows, Ordering::Relaxed);
    }
}

/// Adds the rows and bytes `plan`'s leaves (its scans) have produced so far.
fn add_scanned(plan: &Arc<dyn ExecutionPlan>, figures: &mut ProgressFigures) {
    let children = plan.children();
    if children.is_empty() {
        if let Some(metrics) = plan.metrics() {
            figures.rows_scanned += metrics.output_rows().unwrap_or(0) as u64;
            figures.bytes_scanned += metrics
                .sum_by_name("bytes_scanned")
                .map_or(0, |v| v.as_usize() as u64);
        }
        return;
    }
    for child in children {
        add_scanned(child, figures);
    }
}

#[cfg(test)]
mod tests {
    use crate::Warehouse;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_running_query_reports_the_rows_its_scans_produced() {
        let warehouse = Warehouse::open("memory://").await.unwrap();
        let mut session = warehouse.session();
        session
            .sql("CREATE TABLE t (n BIGINT); INSERT INTO t SELECT value FROM generate_series(1, 50000)")
            .await
            .unwrap();
        let progress = session.progress();
        let statement = &crate::parser::parse("SELECT n FROM t").unwrap()[0];
        let mut stream = session.execute_stream(statement, None).await.unwrap();
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            rows += batch.unwrap().num_rows() as u64;
        }
        let figures = progress.figures();
        assert_eq!(rows, 50_000);
        assert_eq!(figures.rows_scanned, 50_000);
        assert!(figures.bytes_scanned > 0, "{figures:?}");

        // COPY INTO counts files, bytes and rows as it loads them.
        let dir = tempfile::tempdir().unwrap();
        for (name, rows) in [("a.csv", "1\n2\n"), ("b.csv", "3\n")] {
            std::fs::write(dir.path().join(name), format!("n\n{rows}")).unwrap();
        }
        session
            .sql(&format!(
                "COPY INTO t FROM '{}' FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1)",
                dir.path().display()
            ))
            .await
            .unwrap();
        let loaded = progress.figures();
        assert_eq!(
            (
                loaded.files_to_load,
                loaded.files_loaded,
                loaded.rows_loaded
            ),
            (2, 2, 3)
        );
        // "n\n1\n2\n" and "n\n3\n": 6 + 4 bytes.
        assert_eq!((loaded.bytes_to_load, loaded.bytes_loaded), (10, 10));

        // The next statement starts from zero.
        session.sql("CREATE TABLE u (x INT)").await.unwrap();
        assert_eq!(progress.figures(), Default::default());
    }
}
