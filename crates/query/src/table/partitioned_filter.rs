//! The runtime filter of a hash join built in partitions, evaluated in one pass.
//!
//! A hash join whose build side is hash-partitioned publishes its dynamic filter as
//! `CASE hash_repartition(keys) % n WHEN 0 THEN f0 WHEN 1 THEN f1 ... ELSE e END`: a probe row
//! can only match the build rows of its own partition, so it is tested against that
//! partition's key bounds and hash table. DataFusion evaluates that CASE as it does any CASE:
//! each branch compares every remaining row with its WHEN value, and the branches' answers are
//! merged back into row order through `MutableArrayData`, one call per run of rows of the same
//! branch. Hash partitions alternate from row to row, so those runs are a row long. In TPC-H
//! SF 10 Q17, where both lineitem scans are filtered by a partitioned join, the merge took 29%
//! of the query's CPU and the checked modulo 7%.
//!
//! [`filter_mask`] recognises that shape and evaluates it directly: one pass computes each
//! row's partition, each partition's filter runs on its own rows (gathered from just the
//! columns it reads), and the answers are scattered back into one bitmap. Any other filter is
//! evaluated as DataFusion would.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::buffer::BooleanBuffer;
use arrow::compute::kernels::boolean::{and, or};
use arrow::compute::{prep_null_mask_filter, take_record_batch};
use arrow::datatypes::{DataType, Schema, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CaseExpr, Column, Literal};
use datafusion::physical_expr::utils::collect_columns;

/// Partition counts above this are not routed here (a plan never has that many).
const MAX_PARTITIONS: u64 = 4096;

/// The rows of `batch` that `filter` keeps, as a mask without nulls: a NULL answer drops the
/// row, as in a WHERE clause.
pub(crate) fn filter_mask(
    filter: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> DfResult<BooleanArray> {
    let schema = batch.schema();
    if let Some(routed) = Routed::of(filter, &schema)? {
        return routed.mask(batch);
    }
    // `key IS NULL OR CASE ...`: a join that must see NULL keys widens its filter so.
    if let Some(binary) = filter.downcast_ref::<BinaryExpr>()
        && matches!(binary.op(), Operator::And | Operator::Or)
        && (is_routed(binary.left(), &schema) || is_routed(binary.right(), &schema))
    {
        // On masks without nulls AND and OR keep the rows the three-valued ones keep.
        let left = filter_mask(binary.left(), batch)?;
        let right = filter_mask(binary.right(), batch)?;
        return Ok(match binary.op() {
            Operator::And => and(&left, &right)?,
            _ => or(&left, &right)?,
        });
    }
    let mask = filter.evaluate(batch)?.into_array(batch.num_rows())?;
    Ok(without_nulls(mask.as_boolean()))
}

/// [`filter_mask`] of the rows `selection` holds, as a mask over all of `batch`'s rows (rows
/// outside the selection are dropped).
pub(crate) fn filter_mask_of_selection(
    filter: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    selection: &BooleanArray,
) -> DfResult<BooleanArray> {
    let rows = selection.len();
    let chosen: Vec<u32> = selection.values().set_indices().map(|i| i as u32).collect();
    if chosen.len() == rows {
        return filter_mask(filter, batch);
    }
    let indices = UInt32Array::from(chosen);
    let subset = take_record_batch(batch, &indices)?;
    let answer = filter_mask(filter, &subset)?;
    Ok(scatter(rows, indices.values(), &answer))
}

fn without_nulls(mask: &BooleanArray) -> BooleanArray {
    if mask.null_count() > 0 {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    }
}

fn is_routed(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> bool {
    matches!(Routed::of(expr, schema), Ok(Some(_)))
}

/// A mask over `rows` rows that holds `answer[j]` at row `at[j]` and false elsewhere.
pub(crate) fn scatter(rows: usize, at: &[u32], answer: &BooleanArray) -> BooleanArray {
    let mut bits = vec![0u8; rows.div_ceil(8)];
    set_rows(&mut bits, at, Some(answer));
    mask_of(bits, rows)
}

/// Sets the bit of row `at[j]` in `bits` for each `j` that `keep` keeps (all, without it).
fn set_rows(bits: &mut [u8], at: &[u32], keep: Option<&BooleanArray>) {
    for (j, &row) in at.iter().enumerate() {
        if keep.is_none_or(|k| k.value(j)) {
            let row = row as usize;
            bits[row / 8] |= 1 << (row % 8);
        }
    }
}

fn mask_of(bits: Vec<u8>, rows: usize) -> BooleanArray {
    BooleanArray::new(BooleanBuffer::new(bits.into(), 0, rows), None)
}

/// A filter of the shape `CASE <routing> % n WHEN v THEN f ... [ELSE e] END`, taken apart.
struct Routed<'a> {
    /// The expression whose value modulo `partitions` routes a row (a hash of its keys).
    routing: &'a Arc<dyn PhysicalExpr>,
    partitions: u64,
    /// For each partition, the index of the first branch whose WHEN names it.
    branch_of: Vec<Option<usize>>,
    /// The THEN of every branch, then the ELSE (absent: NULL, which drops the row).
    answers: Vec<Option<&'a Arc<dyn PhysicalExpr>>>,
}

impl<'a> Routed<'a> {
    fn of(expr: &'a Arc<dyn PhysicalExpr>, schema: &Schema) -> DfResult<Option<Self>> {
        let Some(case) = expr.downcast_ref::<CaseExpr>() else {
            return Ok(None);
        };
        let Some(modulo) = case.expr().and_then(|e| e.downcast_ref::<BinaryExpr>()) else {
            return Ok(None);
        };
        let partitions = match literal(modulo.right()) {
            Some(ScalarValue::UInt64(Some(n))) if *modulo.op() == Operator::Modulo => *n,
            _ => return Ok(None),
        };
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Ok(None);
        }
        let mut branch_of = vec![None; partitions as usize];
        let mut answers = Vec::new();
        for (i, (when, then)) in case.when_then_expr().iter().enumerate() {
            let Some(ScalarValue::UInt64(Some(value))) = literal(when) else {
                return Ok(None);
            };
            if *value >= partitions || then.data_type(schema)? != DataType::Boolean {
                return Ok(None);
            }
            branch_of[*value as usize].get_or_insert(i);
            answers.push(Some(then));
        }
        match case.else_expr() {
            Some(e) if e.data_type(schema)? != DataType::Boolean => return Ok(None),
            e => answers.push(e),
        }
        Ok(Some(Self {
            routing: modulo.left(),
            partitions,
            branch_of,
            answers,
        }))
    }

    fn mask(&self, batch: &RecordBatch) -> DfResult<BooleanArray> {
        let rows = batch.num_rows();
        let routing = self.routing.evaluate(batch)?.into_array(rows)?;
        let Some(hashes) = routing.as_primitive_opt::<UInt64Type>() else {
            return Err(DataFusionError::Internal(format!(
                "a partitioned join filter routes by {}, not UInt64",
                routing.data_type()
            )));
        };
        // Each row's branch: its partition's, or the ELSE (also for a NULL routing value).
        let otherwise = self.answers.len() - 1;
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); self.answers.len()];
        let values = hashes.values();
        // The modulo of a power of two is a mask: no division per row.
        let low_bits = self
            .partitions
            .is_power_of_two()
            .then_some(self.partitions - 1);
        for (row, &hash) in values.iter().enumerate() {
            let branch = if hashes.is_null(row) {
                otherwise
            } else {
                let partition = match low_bits {
                    Some(mask) => hash & mask,
                    None => hash % self.partitions,
                };
                self.branch_of[partition as usize].unwrap_or(otherwise)
            };
            rows_of[branch].push(row as u32);
        }
        let mut bits = vec![0u8; rows.div_ceil(8)];
        for (branch, at) in rows_of.into_iter().enumerate() {
            let Some(answer) = self.answers[branch] else {
                continue;
            };
            if at.is_empty() {
                continue;
            }
            let at = UInt32Array::from(at);
            let keep: Option<BooleanArray> = match literal(answer) {
                Some(ScalarValue::Boolean(Some(true))) => None,
                Some(ScalarValue::Boolean(_)) => continue,
                _ if at.len() == rows => Some(filter_mask(answer, batch)?),
                _ => {
                    let (answer, columns) = on_own_columns(answer, batch)?;
                    let subset = take_record_batch(&columns, &at)?;
                    Some(filter_mask(&answer, &subset)?)
                }
            };
            set_rows(&mut bits, at.values(), keep.as_ref());
        }
        Ok(mask_of(bits, rows))
    }
}

fn literal(expr: &Arc<dyn PhysicalExpr>) -> Option<&ScalarValue> {
    expr.downcast_ref::<Literal>().map(Literal::value)
}

/// `expr` rewritten to read a batch of only the columns it uses, and that batch: gathering rows
/// for one partition then copies only those columns.
fn on_own_columns(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> DfResult<(Arc<dyn PhysicalExpr>, RecordBatch)> {
    let mut used: Vec<usize> = collect_columns(expr).iter().map(Column::index).collect();
    used.sort_unstable();
    used.dedup();
    if used.len() == batch.num_columns() {
        return Ok((Arc::clone(expr), batch.clone()));
    }
    let columns = batch.project(&used)?;
    let rewritten = Arc::clone(expr)
        .transform(|e| {
            let Some(column) = e.downcast_ref::<Column>() else {
                return Ok(Transformed::no(e));
            };
            let position = used.binary_search(&column.index()).map_err(|_| {
                DataFusionError::Internal(format!("column {column} was not collected"))
            })?;
            Ok(Transformed::yes(
                Arc::new(Column::new(column.name(), position)) as Arc<dyn PhysicalExpr>,
            ))
        })?
        .data;
    Ok((rewritten, columns))
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array, StringArray, UInt64Array};
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::{InListExpr, IsNullExpr, col, lit};

    use super::*;

    /// A batch of `rows` rows: `h` routes, `k` is the key (NULL one row in `null_every`), `s`
    /// is a column no filter reads.
    fn batch(rows: u64, seed: u64, null_every: u64) -> RecordBatch {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let h: UInt64Array = (0..rows).map(|_| next()).collect();
        let k: Int64Array = (0..rows)
            .map(|i| (null_every == 0 || i % null_every != 0).then(|| (next() % 100) as i64))
            .collect();
        let s: StringArray = (0..rows).map(|i| Some(format!("row {i}"))).collect();
        let schema = Schema::new(vec![
            Field::new("s", DataType::Utf8, false),
            Field::new("h", DataType::UInt64, false),
            Field::new("k", DataType::Int64, true),
        ]);
        let columns: Vec<ArrayRef> = vec![Arc::new(s), Arc::new(h), Arc::new(k)];
        RecordBatch::try_new(Arc::new(schema), columns).expect("batch")
    }

    /// `CASE h % partitions WHEN p THEN <partition p's filter> ... ELSE otherwise END` as a
    /// partitioned join builds it; `skip` partitions get no branch.
    fn routed(
        schema: &Schema,
        partitions: u64,
        skip: &[u64],
        otherwise: Option<bool>,
    ) -> Arc<dyn PhysicalExpr> {
        let key = col("k", schema).expect("k");
        let branches = (0..partitions)
            .filter(|p| !skip.contains(p))
            .map(|p| {
                let p_i64 = p as i64;
                let then: Arc<dyn PhysicalExpr> = match p % 3 {
                    // Bounds AND a membership list.
                    0 => Arc::new(BinaryExpr::new(
                        Arc::new(BinaryExpr::new(
                            Arc::clone(&key),
                            Operator::GtEq,
                            lit(p_i64),
                        )),
                        Operator::And,
                        Arc::new(
                            InListExpr::try_new(
                                Arc::clone(&key),
                                (0..20).map(|v| lit(v * 3 + p_i64)).collect(),
                                false,
                                schema,
                            )
                            .expect("in list"),
                        ),
                    )),
                    1 => Arc::new(BinaryExpr::new(
                        Arc::clone(&key),
                        Operator::Lt,
                        lit(50 + p_i64),
                    )),
                    _ => lit(p % 2 == 0),
                };
                (lit(ScalarValue::UInt64(Some(p))), then)
            })
            .collect();
        let modulo = Arc::new(BinaryExpr::new(
            col("h", schema).expect("h"),
            Operator::Modulo,
            lit(ScalarValue::UInt64(Some(partitions))),
        ));
        Arc::new(CaseExpr::try_new(Some(modulo), branches, otherwise.map(lit)).expect("case"))
    }

    /// What DataFusion's own evaluation keeps.
    fn reference(filter: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> BooleanArray {
        let mask = filter
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .expect("evaluate");
        without_nulls(mask.as_boolean())
    }

    #[test]
    fn keeps_exactly_the_rows_datafusions_case_keeps() {
        let mut checked = 0;
        for (seed, rows) in [(1, 0), (2, 1), (3, 7), (4, 8192), (5, 1000)] {
            for null_every in [0, 5] {
                let batch = batch(rows, seed, null_every);
                let schema = batch.schema();
                for partitions in [1, 2, 3, 4, 16] {
                    for skip in [&[][..], &[0], &[1, 2]] {
                        for otherwise in [None, Some(false), Some(true)] {
                            if skip.iter().filter(|&&p| p < partitions).count() as u64 == partitions
                            {
                                // No branch at all: a CASE needs one.
                                continue;
                            }
                            let filter = routed(&schema, partitions, skip, otherwise);
                            assert!(Routed::of(&filter, &schema).expect("shape").is_some());
                            let widened: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
                                Arc::new(IsNullExpr::new(col("k", &schema).expect("k"))),
                                Operator::Or,
                                Arc::clone(&filter),
                            ));
                            for f in [&filter, &widened] {
                                let want = reference(f, &batch);
                                assert_eq!(filter_mask(f, &batch).expect("mask"), want, "{f}");
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        // Every shape but the one partition with its branch skipped.
        assert_eq!(checked, 5 * 2 * (5 * 3 - 1) * 3 * 2);
    }

    #[test]
    fn a_selection_keeps_only_selected_rows_the_filter_keeps() {
        let batch = batch(3000, 9, 7);
        let schema = batch.schema();
        let filter = routed(&schema, 2, &[], Some(false));
        let selection: BooleanArray = (0..3000).map(|i| Some(i % 3 != 0)).collect();
        let got = filter_mask_of_selection(&filter, &batch, &selection).expect("mask");
        let all = reference(&filter, &batch);
        let want = and(&all, &selection).expect("and");
        assert_eq!(got, want);
        assert!(got.true_count() > 0 && got.true_count() < all.true_count());
    }

    #[test]
    fn other_shapes_are_evaluated_as_datafusion_would() {
        let batch = batch(500, 3, 4);
        let schema = batch.schema();
        let plain: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            col("k", &schema).expect("k"),
            Operator::Lt,
            lit(30i64),
        ));
        // A CASE on a value that is no modulo, and a modulo by a column.
        let h = col("h", &schema).expect("h");
        let not_modulo: Arc<dyn PhysicalExpr> = Arc::new(
            CaseExpr::try_new(
                Some(Arc::clone(&h)),
                vec![(lit(ScalarValue::UInt64(Some(0))), Arc::clone(&plain))],
                Some(lit(true)),
            )
            .expect("case"),
        );
        let by_column: Arc<dyn PhysicalExpr> = Arc::new(
            CaseExpr::try_new(
                Some(Arc::new(BinaryExpr::new(
                    Arc::clone(&h),
                    Operator::Modulo,
                    Arc::clone(&h),
                ))),
                vec![(lit(ScalarValue::UInt64(Some(0))), Arc::clone(&plain))],
                None,
            )
            .expect("case"),
        );
        for f in [&plain, &not_modulo, &by_column] {
            assert!(Routed::of(f, &schema).expect("shape").is_none(), "{f}");
            assert_eq!(filter_mask(f, &batch).expect("mask"), reference(f, &batch));
        }
    }
}
