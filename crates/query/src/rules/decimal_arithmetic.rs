//! DECIMAL `+`, `-` and `*` without a per-row overflow check when no row can overflow.
//!
//! Arrow adds, subtracts and multiplies `Decimal128` values with checked `i128` arithmetic: every
//! row pays for an overflow test, and for a product that test costs more than the product. In
//! TPC-H Q1 (`sum(l_extendedprice * (1 - l_discount) * (1 + l_tax))`) those checks took over a
//! quarter of the query. This optimizer rule replaces such operators with functions that first
//! bound the operands of the whole batch (the largest magnitude on each side, one cheap pass),
//! and compute the batch without checks when that bound proves no row can overflow. Otherwise
//! they call Arrow's checked kernel, so results and overflow errors are exactly those of the
//! operator they replace.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, new_null_array};
use datafusion::arrow::compute::binary;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{DECIMAL128_MAX_SCALE, DataType, Decimal128Type};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, exec_err};
use datafusion::logical_expr::expr::{BinaryExpr, ScalarFunction};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct DecimalArithmetic;

impl OptimizerRule for DecimalArithmetic {
    fn name(&self) -> &str {
        "strata_decimal_arithmetic"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        if !matches!(
            plan,
            LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Filter(_)
        ) {
            return Ok(Transformed::no(plan));
        }
        super::rewrite_node_expressions(plan, rewrite)
    }
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    let op = match op {
        Operator::Plus => DecimalOp::Add,
        Operator::Minus => DecimalOp::Sub,
        Operator::Multiply => DecimalOp::Mul,
        _ => return Ok(Transformed::no(e)),
    };
    let (Ok(l), Ok(r), Ok(out)) = (
        left.get_type(schema),
        right.get_type(schema),
        e.get_type(schema),
    ) else {
        return Ok(Transformed::no(e));
    };
    // Only where this function computes exactly the type DataFusion planned for the operator.
    if op.result_type(&l, &r).as_ref() != Some(&out) {
        return Ok(Transformed::no(e));
    }
    let args = vec![left.as_ref().clone(), right.as_ref().clone()];
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(op.udf(), args),
    )))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DecimalOp {
    Add,
    Sub,
    Mul,
}

static ADD: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| DecimalOp::Add.new_udf());
static SUB: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| DecimalOp::Sub.new_udf());
static MUL: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| DecimalOp::Mul.new_udf());

/// The functions this rule plans, for the processes of a cluster, which resolve the functions
/// of a plan by name (they are not registered in sessions: SQL does not name them).
pub(crate) fn planned_functions() -> [Arc<ScalarUDF>; 3] {
    [
        DecimalOp::Add.udf(),
        DecimalOp::Sub.udf(),
        DecimalOp::Mul.udf(),
    ]
}

impl DecimalOp {
    fn udf(self) -> Arc<ScalarUDF> {
        match self {
            DecimalOp::Add => Arc::clone(&ADD),
            DecimalOp::Sub => Arc::clone(&SUB),
            DecimalOp::Mul => Arc::clone(&MUL),
        }
    }

    fn new_udf(self) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(DecimalFunction {
            op: self,
            signature: Signature::any(2, Volatility::Immutable),
        }))
    }

    fn operator(self) -> Operator {
        match self {
            DecimalOp::Add => Operator::Plus,
            DecimalOp::Sub => Operator::Minus,
            DecimalOp::Mul => Operator::Multiply,
        }
    }

    /// DataFusion's result type for two `Decimal128` operands, when it and they have scales
    /// the kernels can rescale between (0 to 38).
    fn result_type(self, l: &DataType, r: &DataType) -> Option<DataType> {
        let rescalable = |t: &DataType| matches!(t, DataType::Decimal128(_, s) if (0..=DECIMAL128_MAX_SCALE).contains(s));
        if !rescalable(l) || !rescalable(r) {
            return None;
        }
        let out = BinaryTypeCoercer::new(l, &self.operator(), r)
            .get_result_type()
            .ok()?;
        rescalable(&out).then_some(out)
    }

    /// Arrow's checked kernel for this operator.
    fn checked(
        self,
        l: &dyn datafusion::arrow::array::Datum,
        r: &dyn datafusion::arrow::array::Datum,
    ) -> Result<ArrayRef> {
        Ok(match self {
            DecimalOp::Add => numeric::add(l, r)?,
            DecimalOp::Sub => numeric::sub(l, r)?,
            DecimalOp::Mul => numeric::mul(l, r)?,
        })
    }
}

/// One operator as a scalar function (not registered: only [`DecimalArithmetic`] plans it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct DecimalFunction {
    op: DecimalOp,
    signature: Signature,
}

impl ScalarUDFImpl for DecimalFunction {
    fn name(&self) -> &str {
        match self.op {
            DecimalOp::Add => "decimal_add",
            DecimalOp::Sub => "decimal_sub",
            DecimalOp::Mul => "decimal_mul",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [l, r] => match self.op.result_type(l, r) {
                Some(t) => Ok(t),
                None => exec_err!("{} of {l} and {r}", self.name()),
            },
            _ => exec_err!("{} takes two arguments", self.name()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [l, r] = args.args.as_slice() else {
            return exec_err!("{} takes two arguments", self.name());
        };
        let out = args.return_type().clone();
        let both_scalars = matches!((l, r), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let result = evaluate(self.op, l, r, &out)?;
        super::binary_result(result, both_scalars)
    }
}

/// A column or a single value (Arrow's "datum"), with the largest magnitude it holds.
struct Operand {
    array: ArrayRef,
    scalar: bool,
    scale: i8,
}

impl Operand {
    fn new(value: &ColumnarValue) -> Result<Self> {
        let (array, scalar) = match value {
            ColumnarValue::Array(a) => (Arc::clone(a), false),
            ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
        };
        let DataType::Decimal128(_, scale) = array.data_type() else {
            return exec_err!("decimal arithmetic on {}", array.data_type());
        };
        Ok(Self {
            scale: *scale,
            array,
            scalar,
        })
    }

    fn values(&self) -> &PrimitiveArray<Decimal128Type> {
        self.array.as_primitive::<Decimal128Type>()
    }

    /// The largest magnitude of any value (including slots under nulls, which the unchecked
    /// kernels compute too).
    fn bound(&self) -> u128 {
        self.values()
            .values()
            .iter()
            .fold(0, |m, v| m.max(v.unsigned_abs()))
    }

    fn datum(&self) -> Box<dyn datafusion::arrow::array::Datum + '_> {
        if self.scalar {
            Box::new(datafusion::arrow::array::Scalar::new(&self.array))
        } else {
            Box::new(&self.array)
        }
    }
}

fn evaluate(
    op: DecimalOp,
    l: &ColumnarValue,
    r: &ColumnarValue,
    out: &DataType,
) -> Result<ArrayRef> {
    let (l, r) = (Operand::new(l)?, Operand::new(r)?);
    let DataType::Decimal128(precision, scale) = *out else {
        return exec_err!("decimal arithmetic returning {out}");
    };
    // Factors that bring both sides to the result's scale (sums only).
    let factor = |s: i8| 10_i128.pow((scale - s).max(0) as u32);
    let (lf, rf) = match op {
        DecimalOp::Mul => (1, 1),
        DecimalOp::Add | DecimalOp::Sub => (factor(l.scale), factor(r.scale)),
    };
    let (lb, rb) = (l.bound(), r.bound());
    let fits = match op {
        DecimalOp::Mul => lb.checked_mul(rb),
        DecimalOp::Add | DecimalOp::Sub => lb
            .checked_mul(lf as u128)
            .zip(rb.checked_mul(rf as u128))
            .and_then(|(a, b)| a.checked_add(b)),
    }
    .is_some_and(|m| m <= i128::MAX as u128);
    if !fits {
        return op.checked(l.datum().as_ref(), r.datum().as_ref());
    }
    let f = move |a: i128, b: i128| match op {
        DecimalOp::Add => a.wrapping_mul(lf).wrapping_add(b.wrapping_mul(rf)),
        DecimalOp::Sub => a.wrapping_mul(lf).wrapping_sub(b.wrapping_mul(rf)),
        DecimalOp::Mul => a.wrapping_mul(b),
    };
    let (lv, rv) = (l.values(), r.values());
    let result: PrimitiveArray<Decimal128Type> = match (l.scalar, r.scalar) {
        (true, false) if lv.is_null(0) => return Ok(new_null_array(out, rv.len())),
        (false, true) if rv.is_null(0) => return Ok(new_null_array(out, lv.len())),
        (true, false) => {
            let a = lv.value(0);
            rv.unary(|b| f(a, b))
        }
        (false, true) => {
            let b = rv.value(0);
            lv.unary(|a| f(a, b))
        }
        _ => binary(lv, rv, f)?,
    };
    Ok(Arc::new(result.with_precision_and_scale(precision, scale)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Decimal128Array;
    use datafusion::arrow::datatypes::Field;
    use datafusion::common::ScalarValue;
    use datafusion::common::config::ConfigOptions;

    fn decimals(values: &[Option<i128>], p: u8, s: i8) -> ColumnarValue {
        ColumnarValue::Array(Arc::new(
            Decimal128Array::from(values.to_vec())
                .with_precision_and_scale(p, s)
                .unwrap(),
        ))
    }

    fn call(op: DecimalOp, l: ColumnarValue, r: ColumnarValue) -> Result<ArrayRef> {
        let out = op
            .result_type(&l.data_type(), &r.data_type())
            .expect("decimal operands");
        let udf = op.udf();
        let rows = match (&l, &r) {
            (ColumnarValue::Array(a), _) | (_, ColumnarValue::Array(a)) => a.len(),
            _ => 1,
        };
        let arg_fields = [&l, &r]
            .iter()
            .map(|v| Arc::new(Field::new("a", v.data_type(), true)))
            .collect();
        udf.invoke_with_args(ScalarFunctionArgs {
            args: vec![l, r],
            arg_fields,
            number_rows: rows,
            return_field: Arc::new(Field::new("r", out, true)),
            config_options: Arc::new(ConfigOptions::default()),
        })?
        .into_array(rows)
    }

    /// Arrow's own checked kernel on the same operands.
    fn reference(op: DecimalOp, l: &ColumnarValue, r: &ColumnarValue) -> Result<ArrayRef> {
        let (l, r) = (Operand::new(l)?, Operand::new(r)?);
        op.checked(l.datum().as_ref(), r.datum().as_ref())
    }

    #[test]
    fn matches_arrow_on_columns_scalars_and_nulls() {
        let price = decimals(
            &[Some(9_999_999_999_999), Some(-12_345), None, Some(0)],
            15,
            2,
        );
        let discount = decimals(&[Some(10), Some(7), Some(3), None], 15, 2);
        let one = ColumnarValue::Scalar(ScalarValue::Decimal128(Some(1), 20, 0));
        let null = ColumnarValue::Scalar(ScalarValue::Decimal128(None, 20, 0));
        for op in [DecimalOp::Add, DecimalOp::Sub, DecimalOp::Mul] {
            for (l, r) in [
                (&price, &discount),
                (&one, &discount),
                (&price, &one),
                (&null, &price),
            ] {
                let got = call(op, l.clone(), r.clone()).unwrap();
                let want = reference(op, l, r).unwrap();
                assert_eq!(got.as_ref(), want.as_ref(), "{op:?} {l:?} {r:?}");
            }
        }
    }

    #[test]
    fn overflow_still_fails_like_arrow() {
        let big = decimals(&[Some(1), Some(10_i128.pow(37))], 38, 0);
        let err = call(DecimalOp::Mul, big.clone(), big.clone()).unwrap_err();
        let want = reference(DecimalOp::Mul, &big, &big).unwrap_err();
        assert!(err.to_string().contains("Overflow"), "{err}");
        assert!(want.to_string().contains("Overflow"), "{want}");
        // Within range the same operands compute without the check.
        let small = decimals(&[Some(1), Some(10_i128.pow(18))], 38, 0);
        let got = call(DecimalOp::Mul, small.clone(), small.clone()).unwrap();
        assert_eq!(
            got.as_primitive::<Decimal128Type>().value(1),
            10_i128.pow(36)
        );
    }

    #[tokio::test]
    async fn plans_decimal_operators_as_unchecked_functions() {
        use datafusion::execution::SessionStateBuilder;
        use datafusion::prelude::SessionContext;
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_optimizer_rule(Arc::new(DecimalArithmetic))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.sql("CREATE TABLE t (p DECIMAL(15,2), d DECIMAL(15,2), x DOUBLE)")
            .await
            .unwrap();
        let df = ctx
            .sql("SELECT sum(p * (1 - d)) AS revenue, x * 2 FROM t GROUP BY x")
            .await
            .unwrap();
        let plan = df
            .into_optimized_plan()
            .unwrap()
            .display_indent()
            .to_string();
        assert!(plan.contains("decimal_mul(t.p, decimal_sub("), "{plan}");
        assert!(!plan.contains("decimal_mul(t.x"), "{plan}");
    }
}
