//! The order a rewrite of a table's files (`CREATE INDEX`, `OPTIMIZE`, `CLUSTER BY`) gives its
//! rows, so that consecutive files of a partition hold consecutive ranges and file statistics
//! prune as well as row-group statistics do.
//!
//! The table writer sorts what it buffers for one file (see [`strata_storage::sort`]); a
//! rewrite sorts all the rows at once, through DataFusion (which spills under the memory
//! limit), and tells the writer they arrive in order. A lexicographic key is an `ORDER BY`; a
//! Z-order ranks each column over all the rows (`RANK`, which streams over a sort, so it too
//! spills), scales the ranks by the row count to the same number of bits and orders by their
//! interleaving ([`ZOrderKey`]).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, UInt64Array};
use arrow::datatypes::{DataType, UInt64Type};
use datafusion::common::{Column, Result as DfResult, ScalarValue};
use datafusion::functions_window::expr_fn::rank;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprFunctionExt, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility, lit,
};
use strata_storage::sort::{interleave, z_bits};

use crate::error::Result;

/// `plan` (whose columns are the table's, named `columns`) ordered by `key`: lexicographically,
/// or along the Z-order of its columns when `curve` holds and there are several; the output
/// keeps exactly the table's columns. `rows` is about how many rows there are (it scales a
/// Z-order's ranks).
///
/// The order is over all the rows, not partition by partition: the writer routes them and
/// keeps one file open per partition, each receiving its rows in order. (Ordering by the
/// partition column first would order a month's partition by day, then key: no range pruning.)
pub(crate) fn ordered(
    plan: LogicalPlanBuilder,
    columns: &[String],
    key: &[String],
    curve: bool,
    rows: u64,
) -> Result<LogicalPlanBuilder> {
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    if key.is_empty() {
        return Ok(plan);
    }
    if !curve || key.len() < 2 {
        let sort: Vec<_> = key.iter().map(|c| column(c).sort(true, false)).collect();
        return Ok(plan.sort(sort)?);
    }
    // One window per column: a window node computes functions of one ordering.
    let mut plan = plan;
    for (i, c) in key.iter().enumerate() {
        let rank = rank()
            .order_by(vec![column(c).sort(true, false)])
            .build()?
            .alias(format!("__strata_rank_{i}"));
        plan = plan.window(vec![rank])?;
    }
    let mut arguments: Vec<Expr> = (0..key.len())
        .map(|i| column(&format!("__strata_rank_{i}")))
        .collect();
    arguments.push(lit(rows.max(1)));
    let z = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(ZOrderKey::new())),
        arguments,
    ));
    let output: Vec<Expr> = columns.iter().map(|c| column(c)).collect();
    Ok(plan.sort(vec![z.sort(true, false)])?.project(output)?)
}

/// `zorder_key(r1, r2, ..., rows)`: the Z-order value of ranks from 1 to `rows` (`RANK`), each
/// scaled to an equal share of 64 bits; NULL ranks count as the first.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ZOrderKey {
    signature: Signature,
}

impl ZOrderKey {
    fn new() -> Self {
        Self {
            signature: Signature::variadic(vec![DataType::UInt64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ZOrderKey {
    fn name(&self) -> &str {
        "zorder_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let Some((total, ranks)) = args.args.split_last() else {
            return Ok(ColumnarValue::Array(Arc::new(UInt64Array::from(vec![
                0u64;
                n
            ]))));
        };
        let total = match total {
            ColumnarValue::Scalar(ScalarValue::UInt64(Some(t))) => (*t).max(1),
            _ => return datafusion::common::exec_err!("zorder_key: the row count is a constant"),
        };
        let bits = z_bits(ranks.len());
        let mut scaled = Vec::with_capacity(ranks.len());
        for arg in ranks {
            let array = arg.to_array(n)?;
            let ranks = array.as_primitive::<UInt64Type>();
            scaled.push(
                ranks
                    .iter()
                    .map(|r| {
                        let r = r.unwrap_or(1).saturating_sub(1).min(total - 1);
                        ((u128::from(r) << bits) / u128::from(total)) as u64
                    })
                    .collect::<Vec<u64>>(),
            );
        }
        let z: ArrayRef = Arc::new(UInt64Array::from(interleave(&scaled, bits)));
        Ok(ColumnarValue::Array(z))
    }
}
