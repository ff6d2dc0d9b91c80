//! Integer `+`, `-` and `*` fail on overflow instead of wrapping around.
//!
//! DataFusion plans integer arithmetic with Arrow's wrapping kernels, so
//! `SELECT 9223372036854775807 + 1` returned -9223372036854775808 and `INT * INT` wrapped at 32
//! bits. PostgreSQL, DuckDB and Snowflake raise an error, and so does Strata: this analyzer
//! rule, run right after type coercion (before constant folding, which would otherwise fold a
//! wrapped constant), replaces each integer operator with a function that calls Arrow's checked
//! kernel. The error names the operation and its type.
//!
//! Checking costs a branch per row, and SSB's `lo_extendedprice * lo_discount` is in a hot
//! loop. As for decimals (see [`super::decimal_arithmetic`]), each batch first bounds its
//! operands (the largest magnitude on each side, from Arrow's min/max kernels); when the bound
//! proves no row can overflow, the batch runs the wrapping kernel, which then cannot wrap.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, exec_err};
use datafusion::logical_expr::expr::{BinaryExpr, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct CheckedIntegers;

impl AnalyzerRule for CheckedIntegers {
    fn name(&self) -> &str {
        "strata_checked_integers"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| super::rewrite_node_expressions(node, rewrite))
            .map(|t| t.data)
    }
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    let op = match op {
        Operator::Plus => IntegerOp::Add,
        Operator::Minus => IntegerOp::Sub,
        Operator::Multiply => IntegerOp::Mul,
        _ => return Ok(Transformed::no(e)),
    };
    let (Ok(l), Ok(r)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok(Transformed::no(e));
    };
    // After type coercion both sides of an integer operator have one integer type, which is
    // the result's.
    if l != r || !l.is_integer() {
        return Ok(Transformed::no(e));
    }
    let args = vec![left.as_ref().clone(), right.as_ref().clone()];
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(op.udf(), args),
    )))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum IntegerOp {
    Add,
    Sub,
    Mul,
}

static ADD: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| IntegerOp::Add.new_udf());
static SUB: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| IntegerOp::Sub.new_udf());
static MUL: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| IntegerOp::Mul.new_udf());

/// The functions this rule plans, for the processes of a cluster, which resolve the functions
/// of a plan by name (they are not registered in sessions: SQL does not name them).
pub(crate) fn planned_functions() -> [Arc<ScalarUDF>; 3] {
    [
        IntegerOp::Add.udf(),
        IntegerOp::Sub.udf(),
        IntegerOp::Mul.udf(),
    ]
}

impl IntegerOp {
    fn udf(self) -> Arc<ScalarUDF> {
        match self {
            IntegerOp::Add => Arc::clone(&ADD),
            IntegerOp::Sub => Arc::clone(&SUB),
            IntegerOp::Mul => Arc::clone(&MUL),
        }
    }

    fn new_udf(self) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(IntegerFunction {
            op: self,
            signature: Signature::any(2, Volatility::Immutable),
        }))
    }

    /// Whether the operands' bounds prove that no row of `l op r` overflows.
    fn cannot_overflow(self, l: &ArrayRef, r: &ArrayRef) -> bool {
        let (Some((l_low, l_high)), Some((r_low, r_high)), Some((min, max))) =
            (range(l), range(r), type_range(l.data_type()))
        else {
            return false;
        };
        // The result's extremes come from the operands' extremes (in i128, where only a
        // product of two 64-bit extremes can overflow: then nothing is proven).
        let extremes = match self {
            IntegerOp::Add => [l_low.checked_add(r_low), l_high.checked_add(r_high)],
            IntegerOp::Sub => [l_low.checked_sub(r_high), l_high.checked_sub(r_low)],
            IntegerOp::Mul => {
                let products = [
                    l_low.checked_mul(r_low),
                    l_low.checked_mul(r_high),
                    l_high.checked_mul(r_low),
                    l_high.checked_mul(r_high),
                ];
                return products
                    .iter()
                    .all(|v| v.is_some_and(|v| (min..=max).contains(&v)));
            }
        };
        extremes
            .iter()
            .all(|v| v.is_some_and(|v| (min..=max).contains(&v)))
    }

    fn symbol(self) -> &'static str {
        match self {
            IntegerOp::Add => "+",
            IntegerOp::Sub => "-",
            IntegerOp::Mul => "*",
        }
    }
}

/// The smallest and largest valid value of an integer column (0, 0 when it has none), widened
/// to `i128`, where the operators on them cannot overflow.
fn range(array: &ArrayRef) -> Option<(i128, i128)> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::compute::{max, min};
    use datafusion::arrow::datatypes::{
        Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
    };
    macro_rules! bounds {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            let low = min(a).map_or(0, i128::from);
            let high = max(a).map_or(0, i128::from);
            Some((low, high))
        }};
    }
    match array.data_type() {
        DataType::Int8 => bounds!(Int8Type),
        DataType::Int16 => bounds!(Int16Type),
        DataType::Int32 => bounds!(Int32Type),
        DataType::Int64 => bounds!(Int64Type),
        DataType::UInt8 => bounds!(UInt8Type),
        DataType::UInt16 => bounds!(UInt16Type),
        DataType::UInt32 => bounds!(UInt32Type),
        DataType::UInt64 => bounds!(UInt64Type),
        _ => None,
    }
}

/// The values an integer type holds.
fn type_range(t: &DataType) -> Option<(i128, i128)> {
    Some(match t {
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::Int64 => (i64::MIN.into(), i64::MAX.into()),
        DataType::UInt8 => (0, u8::MAX.into()),
        DataType::UInt16 => (0, u16::MAX.into()),
        DataType::UInt32 => (0, u32::MAX.into()),
        DataType::UInt64 => (0, u64::MAX.into()),
        _ => return None,
    })
}

/// One checked operator as a scalar function (not registered: only [`CheckedIntegers`] plans
/// it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntegerFunction {
    op: IntegerOp,
    signature: Signature,
}

impl ScalarUDFImpl for IntegerFunction {
    fn name(&self) -> &str {
        match self.op {
            IntegerOp::Add => "checked_add",
            IntegerOp::Sub => "checked_sub",
            IntegerOp::Mul => "checked_mul",
        }
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [l, r] => Ok(format!("{l} {} {r}", self.op.symbol())),
            _ => exec_err!("{} takes two arguments", self.name()),
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [l, _] => Ok(l.clone()),
            _ => exec_err!("{} takes two arguments", self.name()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [l, r] = args.args.as_slice() else {
            return exec_err!("{} takes two arguments", self.name());
        };
        let both_scalars = matches!((l, r), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let (l, r) = (l.to_array(args.number_rows)?, r.to_array(args.number_rows)?);
        let result = if !both_scalars && self.op.cannot_overflow(&l, &r) {
            match self.op {
                IntegerOp::Add => numeric::add_wrapping(&l, &r),
                IntegerOp::Sub => numeric::sub_wrapping(&l, &r),
                IntegerOp::Mul => numeric::mul_wrapping(&l, &r),
            }
        } else {
            match self.op {
                IntegerOp::Add => numeric::add(&l, &r),
                IntegerOp::Sub => numeric::sub(&l, &r),
                IntegerOp::Mul => numeric::mul(&l, &r),
            }
        };
        let result: ArrayRef = match result {
            Ok(result) => result,
            Err(datafusion::arrow::error::ArrowError::ArithmeticOverflow(detail)) => {
                let operation = detail.trim_start_matches("Overflow happened on: ");
                return exec_err!(
                    "integer out of range: {operation} does not fit in {}",
                    strata_storage::sql_type_name(l.data_type())
                );
            }
            Err(e) => return Err(e.into()),
        };
        super::binary_result(result, both_scalars)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, Int64Array};

    use super::*;

    #[test]
    fn batches_whose_bounds_cannot_overflow_skip_the_check() {
        let small: ArrayRef = Arc::new(Int32Array::from(vec![Some(-46_000), None, Some(46_000)]));
        let big: ArrayRef = Arc::new(Int32Array::from(vec![47_000, 1]));
        assert!(IntegerOp::Mul.cannot_overflow(&small, &small));
        assert!(!IntegerOp::Mul.cannot_overflow(&big, &big));
        assert!(IntegerOp::Add.cannot_overflow(&big, &big));
        let edge: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX]));
        let one: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(!IntegerOp::Add.cannot_overflow(&edge, &one));
        assert!(IntegerOp::Sub.cannot_overflow(&edge, &one));
        let low: ArrayRef = Arc::new(Int64Array::from(vec![i64::MIN]));
        assert!(!IntegerOp::Sub.cannot_overflow(&low, &one));
        let minus_one: ArrayRef = Arc::new(Int64Array::from(vec![-1]));
        assert!(!IntegerOp::Mul.cannot_overflow(&low, &minus_one));
        let huge: ArrayRef = Arc::new(datafusion::arrow::array::UInt64Array::from(vec![u64::MAX]));
        assert!(!IntegerOp::Mul.cannot_overflow(&huge, &huge));
    }
}
