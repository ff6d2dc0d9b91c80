//! The table layer: a Strata table as DataFusion reads and writes it.
//!
//! ```text
//!  provider   StrataTable: a snapshot as a TableProvider; prunes partitions and files
//!     │ scan        StrataScanExec over the Parquet scan (files): figures, dynamic filters
//!     │   ├ runtime_filter   join and top-k filters applied to decoded rows
//!     │   │ └ join_keys      bloom filters of hash joins' build keys
//!     │   ├ cached_scan      hot files served from the warehouse's scan cache
//!     │   └ selectivity      filters DataFusion cannot estimate, measured on a sample
//!     │ write       StrataSink / write_batches: check → route → encode → upload → commit
//!     │   └ constraints      keys, foreign keys and checks, enforced on every write
//!  scd        SCD Type 2 declarations and layout       layout   PARTITION BY RANGE → layout
//!  external   an external table's files, read in place, pruned by Hive folder values
//!  clustering the order a rewrite gives rows: a sort key or a Z-order
//! ```
//!
//! Nothing here plans SQL or names a session: the layers above hand in what they planned.

pub(crate) mod cached_scan;
pub(crate) mod clustering;
pub(crate) mod constraints;
pub(crate) mod deletes;
pub(crate) mod external;
pub(crate) mod files;
pub(crate) mod join_keys;
pub(crate) mod layout;
pub(crate) mod partitioned_filter;
pub(crate) mod provider;
pub(crate) mod remote;
pub(crate) mod runtime_filter;
pub(crate) mod scan;
pub(crate) mod scd;
pub(crate) mod selectivity;
pub(crate) mod write;

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;

pub(crate) use files::WAREHOUSE_STORE_URL;

/// The table property holding its comment (`COMMENT ON TABLE`, `COMMENT = '...'`).
pub(crate) const COMMENT_PROPERTY: &str = "comment";
/// The table property holding its owner: who created it, or `ALTER TABLE ... OWNER TO`.
pub(crate) const OWNER_PROPERTY: &str = "owner";
/// The table property of `ALTER TABLE t SET (freshness_sla = '1 hour')`: how long a table may
/// go without new rows before `system.freshness` reports it in breach.
pub(crate) const FRESHNESS_SLA_PROPERTY: &str = "freshness_sla";
/// The table property of `ALTER TABLE t SET (ingest_commit_interval = '500 ms')`: how long
/// ingest channels gather appends into one commit.
pub(crate) const COMMIT_INTERVAL_PROPERTY: &str = "ingest_commit_interval";
/// The longest `ingest_commit_interval` a table may set.
pub(crate) const MAX_COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
pub(crate) use provider::StrataTable;
pub(crate) use remote::{StoreSettings, StrataCodec};
pub use scan::ScanFigures;
pub(crate) use scan::StrataScanExec;
pub(crate) use write::write_batches;

/// Sums the figures of every table scan in a plan: Strata's scans, and the scans a plan for a
/// cluster carries (which join filters may have pruned further).
pub fn scan_figures(plan: &Arc<dyn ExecutionPlan>) -> ScanFigures {
    let mut total = ScanFigures::default();
    let _ = plan.apply(|node| {
        if let Some(scan) = node.downcast_ref::<StrataScanExec>() {
            total = total.plus(&scan.figures());
        } else if let Some(scan) = node.downcast_ref::<remote::RemoteScanExec>() {
            total = total.plus(&scan.figures());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    total
}
