//! Sampled selectivity: the fraction of rows a scan's filters keep, measured on a sample of
//! the table when DataFusion cannot estimate it from column statistics.
//!
//! DataFusion's join planning puts the side with fewer estimated rows on a hash join's build
//! side. For a filter it can reason about with intervals (`x < 10`, `d BETWEEN ...`) it
//! estimates the rows kept from the columns' min/max; for any other (`LIKE`, a function, an
//! OR of IN lists) it assumes 20%. TPC-H Q9's `p_name LIKE '%green%'` keeps 5.4% of the
//! parts, and at 20% the filtered parts joined to lineitem look larger than partsupp and
//! orders: both of those (8M and 15M rows) became hash tables, where the 3.3M joined rows
//! should have.
//!
//! So when a scan of a large table has such filters, the provider evaluates them on a sample
//! of [`SAMPLE_ROWS`] rows, the first rows of up to [`SAMPLE_FILES`] of its files spread over
//! the table (read through the Parquet reader, only the filters' columns), and the scan
//! carries the fraction kept; the `sampled_selectivity` rule
//! hands it to the `FilterExec` above, whose statistics then use it instead of 20%. Data files
//! never change, so the warehouse remembers each file's answer for each filter.
//!
//! Files are spread over the table because one file is biased when the table is partitioned
//! by a column the filter depends on (TPC-H's orders by date: every order of 1993 has
//! status 'F', half of all orders do). A file's first rows are still biased when the file is
//! sorted by the filtered column; the sample only has to get the order of magnitude right. Any error while sampling
//! leaves the estimate to DataFusion.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::datasource::physical_plan::FileGroup;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::intervals::utils::check_support;
use datafusion::physical_plan::ExecutionPlan;
use strata_storage::{DataFile, TableMetadata};

use crate::config::StrataOptions;
use crate::table::files::{parquet_scan, partitioned_file};
use crate::warehouse::Warehouse;

/// Rows of the sample: enough to see a filter that keeps 1 row in 1,000 a few times.
pub(crate) const SAMPLE_ROWS: usize = 8192;

/// Files the sample reads from, spread over the table's files in path order (partitions).
pub(crate) const SAMPLE_FILES: usize = 8;

/// Tables with fewer live rows are not sampled: their hash tables are small either way.
pub(crate) const SAMPLE_MIN_ROWS: u64 = 100_000;

/// What a scan samples: the table's files left after pruning, and schema.
pub(crate) struct SampledScan<'a> {
    pub(crate) warehouse: &'a Warehouse,
    pub(crate) metadata: &'a TableMetadata,
    pub(crate) schema: &'a SchemaRef,
    pub(crate) files: &'a [&'a DataFile],
    /// The live rows of the whole table, which the scan's statistics count.
    pub(crate) table_rows: u64,
}

impl SampledScan<'_> {
    /// The fraction of the table's rows that `filters` keep (0 to 1): the fraction of the
    /// sampled rows they keep, times the fraction of the rows that pruning left (the scan's
    /// statistics are the whole table's, and pruning already applied the filters to the
    /// files: orders with status 'F' are all in the files of 1992 to mid-1995). `None` when
    /// DataFusion estimates the filters itself, the table is small, sampling is off, or the
    /// sample could not be read. `physical` is the filters' conjunction as the scan planned it.
    pub(crate) async fn selectivity(
        &self,
        session: &dyn Session,
        filters: &[Expr],
        physical: &Arc<dyn PhysicalExpr>,
    ) -> Option<f64> {
        let enabled = session
            .config_options()
            .extensions
            .get::<StrataOptions>()
            .is_none_or(|o| o.sample_filter_selectivity);
        let rows: u64 = self.files.iter().map(|f| f.live_rows()).sum();
        if !enabled || rows < SAMPLE_MIN_ROWS {
            return None;
        }
        if check_support(physical, self.schema) {
            return None;
        }
        let predicate = conjunction(filters.to_vec())?;
        let files = sample_files(self.files);
        let key = memo_key(&files, &predicate);
        let kept = match self.warehouse.sampled_selectivity(key) {
            Some(known) => known,
            None => {
                let sampled = self.sample(session, &files, &predicate).await?;
                self.warehouse.remember_sampled_selectivity(key, sampled);
                sampled
            }
        };
        Some(kept * (rows as f64 / self.table_rows.max(rows) as f64))
    }

    /// Evaluates `predicate` on the first rows of each of `files`, [`SAMPLE_ROWS`] in all.
    async fn sample(
        &self,
        session: &dyn Session,
        files: &[&DataFile],
        predicate: &Expr,
    ) -> Option<f64> {
        let mut columns: Vec<usize> = predicate
            .column_refs()
            .iter()
            .filter_map(|c| self.schema.index_of(c.name()).ok())
            .collect();
        columns.sort_unstable();
        columns.dedup();
        if columns.is_empty() {
            return None;
        }
        // One partition per file: the scan's limit is each partition's.
        let groups = files
            .iter()
            .map(|f| FileGroup::new(vec![partitioned_file(f, None)]))
            .collect();
        let plan = parquet_scan(
            session,
            self.metadata,
            TableSchema::from(Arc::clone(self.schema)),
            groups,
            Some(&columns),
            Some(SAMPLE_ROWS.div_ceil(files.len().max(1))),
            None,
        )
        .ok()?;
        let sample_schema = DFSchema::try_from(plan.schema()).ok()?;
        let predicate = session
            .create_physical_expr(predicate.clone(), &sample_schema)
            .ok()?;
        let plan: Arc<dyn ExecutionPlan> = plan;
        let batches = datafusion::physical_plan::collect(plan, session.task_ctx())
            .await
            .ok()?;
        let (mut rows, mut kept) = (0usize, 0usize);
        for batch in &batches {
            let mask = predicate
                .evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
                .ok()?;
            // NULL is not kept, as in a WHERE clause.
            kept += mask.as_boolean_opt()?.true_count();
            rows += batch.num_rows();
        }
        (rows > 0).then(|| kept as f64 / rows as f64)
    }
}

/// Up to [`SAMPLE_FILES`] of `files` (none empty), evenly spaced in path order.
fn sample_files<'a>(files: &[&'a DataFile]) -> Vec<&'a DataFile> {
    let mut files: Vec<&DataFile> = files
        .iter()
        .copied()
        .filter(|f| f.live_rows() > 0)
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let n = files.len();
    if n <= SAMPLE_FILES {
        return files;
    }
    (0..SAMPLE_FILES)
        .map(|i| files[i * n / SAMPLE_FILES])
        .collect()
}

/// The memo key of `predicate` sampled on `files`: a hash of their paths and of the
/// predicate, so that many files or a filter with a long IN list do not make a long key.
fn memo_key(files: &[&DataFile], predicate: &Expr) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        file.path.hash(&mut hasher);
    }
    predicate.hash(&mut hasher);
    hasher.finish()
}
