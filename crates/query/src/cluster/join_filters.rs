//! Join filters for a cluster: the keys of a small dimension, evaluated on the coordinator,
//! prune the fact table's files before a job leaves.
//!
//! In one process a hash join builds its table from the dimension first and hands the scan of
//! the fact table a dynamic filter of the keys it holds; the scan waits for it, and its
//! partition and file pruning then skips what no key can match ([`crate::table::runtime_filter`]).
//! SSB's `lo_orderdate = d_datekey AND d_year = 1993` reads one year of seven so. On a cluster
//! the join runs in one stage and the scan in another, possibly before it: the filter cannot
//! reach the scan, which then reads every partition (SSB q1.x 5-13x slower, SCALING.md).
//!
//! So before a job goes out, [`find`] picks the hash joins whose filter reaches a scan by the
//! column its table is range-partitioned or clustered by (where file statistics tell files
//! apart) and whose build side reads at most `strata.cluster_join_filter_rows` rows.
//! [`evaluate`] runs each such build side here, projected to its keys, and fills the join's
//! filter with their bounds, and with the keys themselves when there are at most
//! [`MAX_LISTED_KEYS`]. [`crate::table::remote::for_cluster`] then makes the filled filters
//! part of the scans' static predicates: the files whose statistics they rule out are dropped
//! from the job, and executors prune row groups with them. The join on the cluster still
//! checks every row: a filter only has to keep every row that can match, which bounds of the
//! actual keys do.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::{NullEquality, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::{Accumulator, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, DynamicFilterPhysicalExpr, in_list, lit,
};
use datafusion::physical_expr::utils::conjunction;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::table::StrataScanExec;
use crate::table::scan_figures;

/// At most this many distinct keys go into a filter as a list (pruning statistics test lists
/// of up to 20 values); more keys are filtered by their bounds alone.
const MAX_LISTED_KEYS: usize = 20;

/// A hash join whose dynamic filter can prune the files of a scan on its probe side.
pub(crate) struct JoinFilter {
    join: Arc<dyn ExecutionPlan>,
    filter: Arc<DynamicFilterPhysicalExpr>,
    /// `table.column` of each scan the filter prunes.
    targets: Vec<String>,
    /// The tables its build side reads.
    build_tables: Vec<String>,
    /// The rows its build side's scans read.
    build_rows: u64,
}

impl JoinFilter {
    /// The filter's expression id.
    pub(crate) fn id(&self) -> Option<u64> {
        self.filter.expression_id()
    }

    /// What `EXPLAIN` says of it before it is evaluated.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} by the join keys of {} ({} rows read on the coordinator)",
            self.targets.join(", "),
            self.build_tables.join(", "),
            self.build_rows
        )
    }
}

/// The hash joins of `plan` whose build side is worth evaluating here: their dynamic filter
/// reaches a scan by the column its table is partitioned or clustered by, the build side
/// reads at most `max_rows` rows and waits for no filter from outside it. A join inside the
/// build side of one picked is not picked: evaluating the outer one runs it.
pub(crate) fn find(plan: &Arc<dyn ExecutionPlan>, max_rows: u64) -> Vec<JoinFilter> {
    let mut found = Vec::new();
    if max_rows == 0 {
        return found;
    }
    walk(plan, max_rows, &mut found);
    found
}

fn walk(node: &Arc<dyn ExecutionPlan>, max_rows: u64, found: &mut Vec<JoinFilter>) {
    if let Some(picked) = candidate(node, max_rows) {
        found.push(picked);
        if let Some(join) = (node.as_ref() as &dyn Any).downcast_ref::<HashJoinExec>() {
            walk(join.right(), max_rows, found);
        }
        return;
    }
    for child in node.children() {
        walk(child, max_rows, found);
    }
}

fn candidate(node: &Arc<dyn ExecutionPlan>, max_rows: u64) -> Option<JoinFilter> {
    let join = (node.as_ref() as &dyn Any).downcast_ref::<HashJoinExec>()?;
    let filter = join_filter(join)?;
    let id = filter.expression_id()?;
    // NULL keys must match NULL keys, or (NOT IN) a NULL probe key must reach the join:
    // bounds would drop them.
    if join.null_equality() != NullEquality::NullEqualsNothing || join.null_aware {
        return None;
    }
    let build_rows = scan_figures(join.left()).rows_scanned;
    if build_rows > max_rows || !self_contained(join.left()) {
        return None;
    }
    let ids = HashSet::from([id]);
    let mut targets = Vec::new();
    scans(join.right(), &mut |scan| {
        let Some(spec) = scan.remote() else {
            return;
        };
        let metadata = &spec.metadata;
        let pruning_columns: Vec<&str> = metadata
            .partitioning
            .iter()
            .map(|p| p.column.as_str())
            .chain(metadata.cluster_by.first().map(String::as_str))
            .collect();
        for held in scan.reader_join_filters(&ids) {
            for key in held.children() {
                if let Some(column) = (key.as_ref() as &dyn Any).downcast_ref::<Column>()
                    && pruning_columns.contains(&column.name())
                {
                    targets.push(format!("{}.{}", scan.table(), column.name()));
                }
            }
        }
    });
    if targets.is_empty() {
        return None;
    }
    let mut build_tables = Vec::new();
    scans(join.left(), &mut |scan| {
        build_tables.push(scan.table().to_string())
    });
    Some(JoinFilter {
        join: Arc::clone(node),
        filter,
        targets,
        build_tables,
        build_rows,
    })
}

/// The dynamic filter `join` fills for its probe side, when it has one.
fn join_filter(join: &HashJoinExec) -> Option<Arc<DynamicFilterPhysicalExpr>> {
    join.dynamic_expressions_produced()
        .into_iter()
        .find_map(|e| {
            Arc::downcast::<DynamicFilterPhysicalExpr>(e as Arc<dyn Any + Send + Sync>).ok()
        })
}

/// Calls `f` on every Strata scan of `plan`.
fn scans(plan: &Arc<dyn ExecutionPlan>, f: &mut dyn FnMut(&StrataScanExec)) {
    if let Some(scan) = (plan.as_ref() as &dyn Any).downcast_ref::<StrataScanExec>() {
        f(scan);
    }
    for child in plan.children() {
        scans(child, f);
    }
}

/// Whether `plan` runs on its own: every join filter one of its scans waits for is made by a
/// join inside it (a scan waiting for a join that is not run would wait in vain).
fn self_contained(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut made = HashSet::new();
    let mut awaited = HashSet::new();
    fn collect(plan: &Arc<dyn ExecutionPlan>, made: &mut HashSet<u64>, awaited: &mut HashSet<u64>) {
        let node = plan.as_ref() as &dyn Any;
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            made.extend(join_filter(join).and_then(|f| f.expression_id()));
        }
        if let Some(scan) = node.downcast_ref::<StrataScanExec>() {
            awaited.extend(scan.awaited_ids());
        }
        for child in plan.children() {
            collect(child, made, awaited);
        }
    }
    collect(plan, &mut made, &mut awaited);
    awaited.is_subset(&made)
}

/// Runs the build side of `join` here and fills its dynamic filter with the bounds of its
/// keys (and the keys themselves when few); returns what `EXPLAIN ANALYZE` says of it, or
/// `None` when the build side has more than `max_rows` rows (the filter is then left empty:
/// the estimate `find` used counts the rows read, not those joins above them make).
pub(crate) async fn evaluate(
    join: &JoinFilter,
    context: Arc<TaskContext>,
    max_rows: u64,
) -> Result<Option<String>> {
    let exec = (join.join.as_ref() as &dyn Any)
        .downcast_ref::<HashJoinExec>()
        .ok_or_else(|| Error::Plan("a join filter without its hash join".to_string()))?;
    let keys: Vec<(Arc<dyn PhysicalExpr>, String)> = exec
        .on()
        .iter()
        .enumerate()
        .map(|(i, (build, _))| (Arc::clone(build), format!("key{i}")))
        .collect();
    let projection = ProjectionExec::try_new(keys, Arc::clone(exec.left()))?;
    let mut seen: Vec<KeyValues> = projection
        .schema()
        .fields()
        .iter()
        .map(|field| KeyValues::new(field.data_type()))
        .collect::<Result<_>>()?;
    let mut stream = execute_stream(Arc::new(projection), context)?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows = rows.saturating_add(batch.num_rows() as u64);
        if rows > max_rows {
            return Ok(None);
        }
        for (values, column) in seen.iter_mut().zip(batch.columns()) {
            values.add(column)?;
        }
    }
    let probe_schema = exec.right().schema();
    let mut conjuncts = Vec::new();
    let mut described = Vec::new();
    for (values, (_, probe)) in seen.iter_mut().zip(exec.on()) {
        let probe_type = probe.data_type(&probe_schema)?;
        let (min, max) = (values.min.evaluate()?, values.max.evaluate()?);
        if min.is_null() || max.is_null() {
            // No key that is not NULL: no probe row can match.
            conjuncts = vec![lit(false)];
            described = vec!["no keys".to_string()];
            break;
        }
        let (Ok(min), Ok(max)) = (min.cast_to(&probe_type), max.cast_to(&probe_type)) else {
            continue;
        };
        described.push(format!("[{min}, {max}]"));
        conjuncts.push(compare(probe, Operator::GtEq, min));
        conjuncts.push(compare(probe, Operator::LtEq, max));
        // A key that does not cast would be missing from the list: then only the bounds.
        let listed = values.distinct.take().and_then(|keys| {
            keys.into_iter()
                .map(|k| k.cast_to(&probe_type).map(lit))
                .collect::<std::result::Result<Vec<_>, _>>()
                .ok()
        });
        if let Some(list) = listed {
            conjuncts.push(in_list(Arc::clone(probe), list, &false, &probe_schema)?);
        }
    }
    if !conjuncts.is_empty() {
        join.filter.update(conjunction(conjuncts))?;
    }
    Ok(Some(format!(
        "{}: {rows} rows of {} evaluated on the coordinator, keys {}",
        join.targets.join(", "),
        join.build_tables.join(", "),
        described.join(" and ")
    )))
}

fn compare(
    probe: &Arc<dyn PhysicalExpr>,
    op: Operator,
    value: ScalarValue,
) -> Arc<dyn PhysicalExpr> {
    Arc::new(BinaryExpr::new(Arc::clone(probe), op, lit(value)))
}

/// The bounds of one join key's values, and the values while they are few.
struct KeyValues {
    min: MinAccumulator,
    max: MaxAccumulator,
    distinct: Option<HashSet<ScalarValue>>,
}

impl KeyValues {
    fn new(data_type: &arrow::datatypes::DataType) -> Result<Self> {
        Ok(Self {
            min: MinAccumulator::try_new(data_type)?,
            max: MaxAccumulator::try_new(data_type)?,
            distinct: Some(HashSet::new()),
        })
    }

    fn add(&mut self, column: &arrow::array::ArrayRef) -> Result<()> {
        self.min.update_batch(std::slice::from_ref(column))?;
        self.max.update_batch(std::slice::from_ref(column))?;
        if let Some(keys) = &mut self.distinct {
            for row in 0..column.len() {
                if column.is_null(row) {
                    continue;
                }
                keys.insert(ScalarValue::try_from_array(column, row)?);
                if keys.len() > MAX_LISTED_KEYS {
                    self.distinct = None;
                    break;
                }
            }
        }
        Ok(())
    }
}
