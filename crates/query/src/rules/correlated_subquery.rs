//! Correlated subqueries DataFusion leaves unplanned, turned into joins.
//!
//! DataFusion decorrelates a subquery whose correlation is an equality it can pull above the
//! subquery's aggregate (`WHERE o.c_id = c.id`), and EXISTS / IN that stand in a WHERE clause.
//! It cannot plan the rest, which reports "Physical plan does not support logical expression
//! ScalarSubquery": a count of the rows *below* each row (`(SELECT count(*) FROM t AS x WHERE
//! x.b < t.b)`), and EXISTS / IN used as a value (`SELECT a, EXISTS (...) FROM t`).
//!
//! This rule runs after DataFusion's own subquery rules and handles what they left, the way
//! "Unnesting Arbitrary Queries" (Neumann and Kemper, 2015) does, in set-at-a-time joins
//! rather than one subquery run per row:
//! 1. EXISTS and IN become scalar subqueries over an aggregate of the subquery's rows:
//!    `EXISTS (q)` is `(SELECT count(*) > 0 FROM q)`, and `e IN (SELECT y ...)` is TRUE when
//!    some `y = e`, NULL when none is but `e` or some `y` is NULL, FALSE otherwise (SQL's
//!    three-valued IN).
//! 2. The *domain* D, the distinct values of the outer columns the subquery refers to, is
//!    joined into the subquery where the correlation sits; every operator above carries D's
//!    columns (a projection keeps them, an aggregate groups by them). The subquery then yields
//!    its value for every outer value at once.
//! 3. An ungrouped aggregate yields a row even over no rows (`count(*)` is 0): D is left-joined
//!    to the grouped result so each outer value gets that row (the "count bug").
//! 4. The outer rows are left-joined to the result on D's columns (NULL equal to NULL), and
//!    the subquery is replaced by the result's column.
//!
//! It runs right after DataFusion's subquery rules, before filter pushdown moves a subquery's
//! correlated filter below the alias its outer references name. The outer query runs twice
//! (for the domain and for its rows), so an outer query with a volatile function or a LIMIT,
//! which may give other rows the second time, is left alone; so are subqueries with a
//! correlated LIMIT, window, union or outer join, and references to a query two levels out.
//! Those fail as before, with an error.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{
    Column, DFSchema, DataFusionError, ExprSchema, NullEquality, Result, ScalarValue,
};
use datafusion::functions_aggregate::count::count_all;
use datafusion::functions_aggregate::expr_fn::bool_or;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Distinct, Expr, Filter, JoinType, LogicalPlan, LogicalPlanBuilder, Projection, Sort, Subquery,
    SubqueryAlias, lit, when,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct CorrelatedSubqueries;

impl OptimizerRule for CorrelatedSubqueries {
    fn name(&self) -> &str {
        "strata_correlated_subqueries"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Projection(projection) => {
                let input = Arc::clone(&projection.input);
                let mut changed = false;
                let mut joined = (*input).clone();
                let mut exprs = Vec::with_capacity(projection.expr.len());
                for expr in projection.expr {
                    // The column keeps its name (`a IN (<subquery>)`), unique in the projection.
                    let name = expr.schema_name().to_string();
                    let (expr, new_input, rewritten) =
                        rewrite_expression(expr, &input, joined, config)?;
                    joined = new_input;
                    changed |= rewritten;
                    exprs.push(match expr {
                        Expr::Alias(_) => expr,
                        expr if rewritten => expr.alias(name),
                        expr => expr,
                    });
                }
                if !changed {
                    let projection = Projection::try_new_with_schema(
                        exprs,
                        input,
                        Arc::clone(&projection.schema),
                    )?;
                    return Ok(Transformed::no(LogicalPlan::Projection(projection)));
                }
                let plan = LogicalPlanBuilder::from(joined).project(exprs)?.build()?;
                Ok(Transformed::yes(plan))
            }
            LogicalPlan::Filter(filter) => {
                let input = Arc::clone(&filter.input);
                let (predicate, joined, rewritten) =
                    rewrite_expression(filter.predicate, &input, (*input).clone(), config)?;
                if !rewritten {
                    let filter = Filter::try_new(predicate, input)?;
                    return Ok(Transformed::no(LogicalPlan::Filter(filter)));
                }
                // The filter's output is its input's columns, without the joined ones.
                let columns: Vec<Expr> = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let plan = LogicalPlanBuilder::from(joined)
                    .filter(predicate)?
                    .project(columns)?
                    .build()?;
                Ok(Transformed::yes(plan))
            }
            plan => Ok(Transformed::no(plan)),
        }
    }
}

/// Rewrites the subqueries DataFusion left in `expr`, an expression over `outer` (whose
/// schema is `schema`): returns the new expression, `outer` with the subqueries' results
/// joined, and whether anything changed.
fn rewrite_expression(
    expr: Expr,
    input: &LogicalPlan,
    outer: LogicalPlan,
    config: &dyn OptimizerConfig,
) -> Result<(Expr, LogicalPlan, bool)> {
    if !expr.exists(|e| Ok(is_subquery(e)))? {
        return Ok((expr, outer, false));
    }
    let schema = input.schema().as_ref();
    let mut outer = Some(outer);
    let mut changed = false;
    let expr = expr
        .transform_up(|e| {
            let (subquery, converted) = match e {
                Expr::Exists(exists) => (exists_as_scalar(&exists.subquery, exists.negated)?, true),
                Expr::InSubquery(in_subquery) => match in_as_scalar(
                    &in_subquery.expr,
                    &in_subquery.subquery,
                    in_subquery.negated,
                    schema,
                )? {
                    Some(subquery) => (subquery, true),
                    None => return Ok(Transformed::no(Expr::InSubquery(in_subquery))),
                },
                Expr::ScalarSubquery(subquery) if !subquery.outer_ref_columns.is_empty() => {
                    (subquery, false)
                }
                e => return Ok(Transformed::no(e)),
            };
            let current = outer.take().expect("outer plan present");
            match decorrelate(&subquery, input, &current, config)? {
                Some((joined, value)) => {
                    outer = Some(joined);
                    changed = true;
                    Ok(Transformed::yes(value))
                }
                None => {
                    // An uncorrelated scalar subquery is planned as DataFusion plans any.
                    outer = Some(current);
                    changed |= converted;
                    Ok(Transformed::new_transformed(
                        Expr::ScalarSubquery(subquery),
                        converted,
                    ))
                }
            }
        })?
        .data;
    Ok((expr, outer.expect("outer plan present"), changed))
}

fn is_subquery(expr: &Expr) -> bool {
    match expr {
        Expr::Exists(_) | Expr::InSubquery(_) => true,
        Expr::ScalarSubquery(subquery) => !subquery.outer_ref_columns.is_empty(),
        _ => false,
    }
}

/// `EXISTS (q)` as `(SELECT count(*) > 0 FROM q)` (`= 0` when negated).
fn exists_as_scalar(subquery: &Subquery, negated: bool) -> Result<Subquery> {
    let count = count_all();
    let test = if negated {
        count.clone().eq(lit(0i64))
    } else {
        count.clone().gt(lit(0i64))
    };
    let plan = LogicalPlanBuilder::from((*subquery.subquery).clone())
        .aggregate(Vec::<Expr>::new(), vec![count.clone()])?
        .project(vec![test.alias("__strata_exists")])?
        .build()?;
    Ok(scalar_subquery(plan, subquery))
}

/// `e IN (SELECT y ...)` as a scalar subquery over the rows of the IN's subquery, with SQL's
/// three-valued answer; `None` when `e` cannot move into the subquery (it holds a subquery
/// or a reference further out).
fn in_as_scalar(
    expr: &Expr,
    subquery: &Subquery,
    negated: bool,
    schema: &DFSchema,
) -> Result<Option<Subquery>> {
    if expr.contains_outer()
        || expr.exists(|e| {
            Ok(matches!(
                e,
                Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_)
            ))
        })?
    {
        return Ok(None);
    }
    let plan = subquery.subquery.as_ref();
    let [value] = <[Column; 1]>::try_from(plan.schema().columns())
        .map_err(|_| DataFusionError::Plan("an IN subquery returns one column".to_string()))?;
    // `e` seen from inside the subquery: its columns are outer references.
    let outer_expr = expr
        .clone()
        .transform(|e| match e {
            Expr::Column(c) => {
                let field = schema.field_from_column(&c)?;
                Ok(Transformed::yes(Expr::OuterReferenceColumn(
                    Arc::clone(field),
                    c,
                )))
            }
            e => Ok(Transformed::no(e)),
        })?
        .data;
    let y = Expr::Column(value);
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    let answer = when(column("__strata_in_rows").eq(lit(0i64)), lit(false))
        .when(column("__strata_in_found"), lit(true))
        .when(
            column("__strata_in_nulls").or(outer_expr.clone().is_null()),
            lit(ScalarValue::Boolean(None)),
        )
        .otherwise(lit(false))?;
    let answer = if negated { !answer } else { answer };
    let plan = LogicalPlanBuilder::from(plan.clone())
        .aggregate(
            Vec::<Expr>::new(),
            vec![
                count_all().alias("__strata_in_rows"),
                bool_or(y.clone().eq(outer_expr)).alias("__strata_in_found"),
                bool_or(y.is_null()).alias("__strata_in_nulls"),
            ],
        )?
        .project(vec![answer.alias("__strata_in")])?
        .build()?;
    Ok(Some(scalar_subquery(plan, subquery)))
}

fn scalar_subquery(plan: LogicalPlan, like: &Subquery) -> Subquery {
    Subquery {
        outer_ref_columns: plan.all_out_ref_exprs(),
        subquery: Arc::new(plan),
        spans: like.spans.clone(),
    }
}

/// The outer columns `plan` refers to, each once, or `None` when a subquery inside it still
/// refers out (a reference two levels out, or one DataFusion and this rule left).
fn outer_references(plan: &LogicalPlan) -> Result<Option<Vec<Column>>> {
    let mut columns: Vec<Column> = Vec::new();
    let mut nested = false;
    plan.apply(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::OuterReferenceColumn(_, c) if !columns.contains(c) => {
                        columns.push(c.clone())
                    }
                    Expr::ScalarSubquery(s) if !s.outer_ref_columns.is_empty() => nested = true,
                    Expr::Exists(_) | Expr::InSubquery(_) | Expr::SetComparison(_) => {
                        nested |= e_outer_refs(e)
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok((!nested).then_some(columns))
}

fn e_outer_refs(e: &Expr) -> bool {
    match e {
        Expr::Exists(x) => !x.subquery.outer_ref_columns.is_empty(),
        Expr::InSubquery(x) => !x.subquery.outer_ref_columns.is_empty(),
        Expr::SetComparison(x) => !x.subquery.outer_ref_columns.is_empty(),
        _ => false,
    }
}

/// Whether `plan` yields at most one row: its value comes from an ungrouped aggregate.
fn one_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(a) => a.group_expr.is_empty(),
        LogicalPlan::Projection(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_) => plan.inputs().first().is_some_and(|i| one_row(i)),
        _ => false,
    }
}

/// `subquery` (correlated, over `outer`) as a join: `outer` left-joined to the subquery's
/// value for each distinct value of the outer columns it refers to, and the column of that
/// value; `None` when the subquery's shape is not one this rule handles.
fn decorrelate(
    subquery: &Subquery,
    input: &LogicalPlan,
    outer: &LogicalPlan,
    config: &dyn OptimizerConfig,
) -> Result<Option<(LogicalPlan, Expr)>> {
    let plan = subquery.subquery.as_ref();
    let Some(references) = outer_references(plan)? else {
        return Ok(None);
    };
    if references.is_empty()
        || !one_row(plan)
        || plan.schema().fields().len() != 1
        || !references.iter().all(|c| input.schema().has_column(c))
        || !repeatable(input)?
    {
        return Ok(None);
    }
    let keys = references.clone();
    let prefix = config.alias_generator().next("__strata_corr");
    let names: Vec<String> = (0..references.len())
        .map(|i| format!("{prefix}_{i}"))
        .collect();
    // The domain comes from the node's own input: `outer` may hold the joins of other
    // subqueries of the same node already.
    let domain = LogicalPlanBuilder::from(input.clone())
        .project(
            keys.iter()
                .zip(&names)
                .map(|(c, name)| Expr::Column(c.clone()).alias(name)),
        )?
        .distinct()?
        .build()?;
    let domain = Domain {
        plan: domain,
        references,
        names,
        prefix: prefix.clone(),
    };
    let Some((inner, true)) = domain.rewrite(plan)? else {
        return Ok(None);
    };
    let value = plan.schema().columns().remove(0);
    let value_name = format!("{prefix}_value");
    let mut columns = vec![Expr::Column(value).alias(&value_name)];
    let right_names: Vec<String> = domain.names.iter().map(|n| format!("{n}_r")).collect();
    for (name, right) in domain.names.iter().zip(&right_names) {
        columns.push(unqualified(name).alias(right));
    }
    let result = LogicalPlanBuilder::from(inner).project(columns)?.build()?;
    let left_keys = keys;
    let right_keys: Vec<Column> = right_names.iter().map(Column::new_unqualified).collect();
    let joined = LogicalPlanBuilder::from(outer.clone())
        .join_detailed(
            result,
            JoinType::Left,
            (left_keys, right_keys),
            None,
            NullEquality::NullEqualsNull,
        )?
        .build()?;
    Ok(Some((joined, unqualified(&value_name))))
}

fn unqualified(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Whether `plan` gives the same rows each time it runs, as the domain and the outer rows
/// (two runs of it) must: no volatile function (`random()`), no LIMIT that may keep other rows
/// on another run.
fn repeatable(plan: &LogicalPlan) -> Result<bool> {
    let unrepeatable = plan.exists(|node| {
        Ok(match node {
            LogicalPlan::Limit(_) => true,
            LogicalPlan::Sort(sort) => sort.fetch.is_some(),
            _ => node.expressions().iter().any(Expr::is_volatile),
        })
    })?;
    Ok(!unrepeatable)
}

/// The domain of a correlated subquery: the distinct values of the outer columns it refers to
/// (`references`), as columns `names`.
struct Domain {
    plan: LogicalPlan,
    references: Vec<Column>,
    names: Vec<String>,
    prefix: String,
}

impl Domain {
    /// `expr` with its outer references replaced by the domain's columns.
    fn bind(&self, expr: Expr) -> Result<Expr> {
        Ok(expr
            .transform(|e| match e {
                Expr::OuterReferenceColumn(_, c) => {
                    let at = self
                        .references
                        .iter()
                        .position(|r| *r == c)
                        .expect("every outer reference is in the domain");
                    Ok(Transformed::yes(unqualified(&self.names[at])))
                }
                e => Ok(Transformed::no(e)),
            })?
            .data)
    }

    fn columns(&self) -> Vec<Expr> {
        self.names.iter().map(|n| unqualified(n)).collect()
    }

    /// `input` with the domain's columns: as it is when it has them (`dependent`), else
    /// crossed with the domain.
    fn carry(&self, input: LogicalPlan, dependent: bool) -> Result<LogicalPlan> {
        if dependent {
            return Ok(input);
        }
        LogicalPlanBuilder::from(self.plan.clone())
            .cross_join(input)?
            .build()
    }

    /// `plan` evaluated for every value of the domain at once: the plan and whether it carries
    /// the domain's columns (it does not when no outer reference sits in it); `None` when an
    /// operator in it cannot carry them.
    fn rewrite(&self, plan: &LogicalPlan) -> Result<Option<(LogicalPlan, bool)>> {
        if !plan.exists(|node| Ok(node.contains_outer_reference()))? {
            return Ok(Some((plan.clone(), false)));
        }
        let mut inputs = Vec::new();
        for input in plan.inputs() {
            let Some(rewritten) = self.rewrite(input)? else {
                return Ok(None);
            };
            inputs.push(rewritten);
        }
        let own_outer = plan.contains_outer_reference();
        let plan = match plan {
            LogicalPlan::Filter(filter) => {
                let (input, dependent) = inputs.remove(0);
                let predicate = self.bind(filter.predicate.clone())?;
                if dependent {
                    LogicalPlanBuilder::from(input).filter(predicate)?.build()?
                } else {
                    LogicalPlanBuilder::from(self.plan.clone())
                        .join_on(input, JoinType::Inner, [predicate])?
                        .build()?
                }
            }
            LogicalPlan::Projection(projection) => {
                let (input, dependent) = inputs.remove(0);
                let input = self.carry(input, dependent)?;
                let mut exprs = Vec::with_capacity(projection.expr.len() + self.names.len());
                for (expr, field) in projection.expr.iter().zip(projection.schema.columns()) {
                    let bound = self.bind(expr.clone())?;
                    exprs.push(if expr.contains_outer() {
                        bound.alias_qualified(field.relation, field.name)
                    } else {
                        bound
                    });
                }
                exprs.extend(self.columns());
                LogicalPlanBuilder::from(input).project(exprs)?.build()?
            }
            LogicalPlan::Aggregate(aggregate) => {
                let (input, dependent) = inputs.remove(0);
                let input = self.carry(input, dependent)?;
                let mut group = Vec::new();
                for (expr, field) in aggregate.group_expr.iter().zip(aggregate.schema.columns()) {
                    let bound = self.bind(expr.clone())?;
                    group.push(if expr.contains_outer() {
                        bound.alias_qualified(field.relation, field.name)
                    } else {
                        bound
                    });
                }
                group.extend(self.columns());
                let fields = aggregate.schema.columns();
                let mut aggregates = Vec::new();
                for (expr, field) in aggregate
                    .aggr_expr
                    .iter()
                    .zip(&fields[aggregate.group_expr.len()..])
                {
                    aggregates.push(if expr.contains_outer() {
                        self.bind(expr.clone())?
                            .alias_qualified(field.relation.clone(), field.name.clone())
                    } else {
                        expr.clone()
                    });
                }
                let grouped = LogicalPlanBuilder::from(input)
                    .aggregate(group, aggregates.clone())?
                    .build()?;
                if aggregate.group_expr.is_empty() {
                    self.every_value(grouped, &aggregates)?
                } else {
                    grouped
                }
            }
            LogicalPlan::SubqueryAlias(alias) => {
                let (input, _) = inputs.remove(0);
                LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                    Arc::new(input),
                    alias.alias.clone(),
                )?)
            }
            LogicalPlan::Sort(Sort { fetch: None, .. })
            | LogicalPlan::Distinct(Distinct::All(_)) => {
                let (input, dependent) = inputs.remove(0);
                if !dependent {
                    return Ok(None);
                }
                let exprs = plan
                    .expressions()
                    .into_iter()
                    .map(|e| self.bind(e))
                    .collect::<Result<Vec<_>>>()?;
                plan.with_new_exprs(exprs, vec![input])?
            }
            LogicalPlan::Join(join) => {
                let [(left, left_dependent), (right, right_dependent)] =
                    <[(LogicalPlan, bool); 2]>::try_from(inputs).map_err(|_| {
                        DataFusionError::Internal("a join has two inputs".to_string())
                    })?;
                let carries = match join.join_type {
                    JoinType::Inner => !(left_dependent && right_dependent),
                    JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti => !right_dependent,
                    JoinType::Right | JoinType::RightSemi | JoinType::RightAnti => !left_dependent,
                    _ => false,
                };
                if !carries || (own_outer && join.join_type != JoinType::Inner) {
                    return Ok(None);
                }
                // A condition referring out, over two inputs that do not: the left one
                // carries the domain.
                let left = if own_outer && !left_dependent && !right_dependent {
                    self.carry(left, false)?
                } else {
                    left
                };
                let exprs = plan
                    .expressions()
                    .into_iter()
                    .map(|e| self.bind(e))
                    .collect::<Result<Vec<_>>>()?;
                plan.with_new_exprs(exprs, vec![left, right])?
            }
            // DataFusion pushed a correlated condition into the scan (as a hint the scan
            // may use): the scan is joined to the domain on it.
            LogicalPlan::TableScan(scan) => {
                let (correlated, plain): (Vec<Expr>, Vec<Expr>) = scan
                    .filters
                    .iter()
                    .cloned()
                    .partition(|f| f.contains_outer());
                let mut scan = scan.clone();
                scan.filters = plain;
                let predicate = correlated
                    .into_iter()
                    .map(|e| self.bind(e))
                    .collect::<Result<Vec<_>>>()?;
                LogicalPlanBuilder::from(self.plan.clone())
                    .join_on(LogicalPlan::TableScan(scan), JoinType::Inner, predicate)?
                    .build()?
            }
            _ => return Ok(None),
        };
        Ok(Some((plan, true)))
    }

    /// `grouped`, an ungrouped aggregate now grouped by the domain, with a row for every value
    /// of the domain: the ones no input row reached get each aggregate's value over no rows
    /// (0 for counts, NULL for the rest).
    fn every_value(&self, grouped: LogicalPlan, aggregates: &[Expr]) -> Result<LogicalPlan> {
        let present = format!("{}_present", self.prefix);
        let schema = Arc::clone(grouped.schema());
        let group_count = schema.fields().len() - aggregates.len();
        let mut right = Vec::new();
        let mut right_names = Vec::new();
        for name in &self.names {
            let right_name = format!("{name}_g");
            right.push(unqualified(name).alias(&right_name));
            right_names.push(Column::new_unqualified(right_name));
        }
        let mut values = Vec::new();
        for (i, aggregate) in aggregates.iter().enumerate() {
            let (qualifier, field) = schema.qualified_field(group_count + i);
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            right.push(column.clone());
            let empty = if counts(aggregate) {
                ScalarValue::new_zero(field.data_type())?
            } else {
                ScalarValue::try_from(field.data_type())?
            };
            let value = when(unqualified(&present).is_null(), lit(empty)).otherwise(column)?;
            values.push(value.alias_qualified(qualifier.cloned(), field.name()));
        }
        right.push(lit(true).alias(&present));
        let right = LogicalPlanBuilder::from(grouped).project(right)?.build()?;
        let left_keys: Vec<Column> = self.names.iter().map(Column::new_unqualified).collect();
        let mut output = self.columns();
        output.extend(values);
        LogicalPlanBuilder::from(self.plan.clone())
            .join_detailed(
                right,
                JoinType::Left,
                (left_keys, right_names),
                None,
                NullEquality::NullEqualsNull,
            )?
            .project(output)?
            .build()
    }
}

/// Whether `aggregate` counts (its value over no rows is 0, not NULL).
fn counts(aggregate: &Expr) -> bool {
    let mut inner = aggregate;
    while let Expr::Alias(alias) = inner {
        inner = &alias.expr;
    }
    matches!(inner, Expr::AggregateFunction(AggregateFunction { func, .. })
        if matches!(func.name(), "count" | "approx_distinct"))
}
