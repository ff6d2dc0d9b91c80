//! Query rewrite: answering a `GROUP BY` from a fresh materialized view that holds it.
//!
//! Every aggregate in a query's plan (its `Aggregate` node and the select-project-join below)
//! is summarised as tables, join equalities, filters, group keys and aggregate calls, with
//! columns named by table id so that aliases do not matter. A materialized view whose query is
//! one `GROUP BY` has the same summary. The view answers the aggregate when
//!
//! - it reads the same tables with the same joins (star-schema joins included);
//! - each of its filters is one of the query's, or implied by one (`d_year = 1994` implies
//!   `d_year >= 1993`), and the query's other filters only use the view's group keys;
//! - each query group key is a view group key, an expression of them, or a coarser
//!   `date_trunc` of one (`month` from a view by `day`);
//! - each aggregate is stored (`SUM`, `COUNT`, `MIN`, `MAX`, any aggregate when the groups
//!   are the same), or can be rebuilt from stored ones (`AVG` from `SUM` and `COUNT`, which
//!   views keep for every `AVG`; `MIN`, `MAX` and `COUNT(DISTINCT)` of group keys).
//!
//! The `Aggregate` node is then replaced by a scan of the view, filtered, re-aggregated when
//! the query's groups are coarser (sums of sums, sums of counts, mins of mins, ...), and
//! projected to the exact columns the node had, so the rest of the plan is untouched. Only
//! views with no unreflected change qualify, unless `SET strata.max_staleness` allows their
//! lag; `SET strata.mv_rewrite = false` turns the rewrite off. `EXPLAIN` shows the view's scan.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::datatypes::DataType;
use chrono::Utc;
use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Operator, Volatility,
    binary_expr, cast, lit,
};

use crate::catalog::materialized_view::{Definition, fingerprint, list, sources_changed};
use crate::catalog::views::parse_query;
use crate::config::parse_duration;
use crate::error::Result;
use crate::mv::refresh::{
    StaleRanges, in_ranges, not_incremental, partition_column, replace_column, replace_scan,
    stale_ranges,
};
use crate::session::Session;
use crate::table::StrataTable;

/// A materialized view that can answer queries now.
struct Candidate {
    /// `db.schema.name`, how the rewritten plan names its scan.
    reference: TableReference,
    table: Arc<StrataTable>,
    summary: Summary,
    /// For each stored column: the view's group key or aggregate it holds.
    columns: Vec<Stored>,
    rows: u64,
    /// For a view behind its sources: the ranges of its key whose rows are stale, to be read
    /// from the tables instead.
    stale: Option<StaleRanges>,
}

/// What a stored column of a view holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stored {
    Group(usize),
    Aggregate(usize),
}

/// `plan` with each aggregate a fresh materialized view can answer read from that view.
pub(crate) async fn rewrite(session: &Session, plan: LogicalPlan) -> Result<LogicalPlan> {
    let options = session.strata_options();
    let has_aggregate = plan
        .exists(|p| Ok(matches!(p, LogicalPlan::Aggregate(_))))
        .unwrap_or(false);
    if !options.mv_rewrite || !has_aggregate {
        return Ok(plan);
    }
    let max_staleness = parse_duration(&options.max_staleness)?;
    // Best effort: a view that cannot be read must not fail queries that do not need it.
    let candidates = match candidates(session, max_staleness).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "materialized views not considered for this query");
            return Ok(plan);
        }
    };
    if candidates.is_empty() {
        return Ok(plan);
    }
    Ok(plan
        .transform_up(|node| {
            let LogicalPlan::Aggregate(aggregate) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(query) = Summary::of(aggregate) else {
                return Ok(Transformed::no(node));
            };
            let best = candidates
                .iter()
                .filter_map(|c| answer(aggregate, &query, c).map(|p| (c.rows, p)))
                .min_by_key(|(rows, _)| *rows);
            Ok(match best {
                Some((_, replacement)) => Transformed::yes(replacement),
                None => Transformed::no(node),
            })
        })?
        .data)
}

/// The materialized views fresh enough to answer queries, with their summaries.
async fn candidates(
    session: &Session,
    max_staleness: std::time::Duration,
) -> Result<Vec<Candidate>> {
    let warehouse = session.warehouse();
    let mut out = Vec::new();
    for (name, definition, rows) in list(warehouse).await? {
        let mut planner = warehouse.session();
        planner.set_schema(&definition.database, &definition.schema)?;
        let Ok(plan) = planner
            .plan_raw(parse_query(&definition.storage_query)?, None)
            .await
        else {
            continue;
        };
        // Rows computed with another definition of a view it reads, or from inputs that
        // change without a version (the clock, system tables), cannot stand in for the query.
        // Nor can a continuous view that left late rows out.
        if definition.fingerprint.as_deref() != Some(fingerprint(&plan).as_str())
            || not_incremental(&plan).is_some()
            || definition.late_rows_left_out > 0
        {
            continue;
        }
        let Some((summary, columns)) = view_summary(&plan) else {
            continue;
        };
        // The digest matched above, so only the sources' versions are left to compare.
        let stale = if fresh_enough(session, &definition, max_staleness).await? {
            None
        } else {
            match stale_ranges(warehouse, planner.context(), &plan, &definition).await? {
                Some(ranges) => Some(ranges),
                None => continue,
            }
        };
        let Some(table) = StrataTable::open(warehouse, &name[0], &name[1], &name[2]).await? else {
            continue;
        };
        out.push(Candidate {
            reference: TableReference::full(name[0].clone(), name[1].clone(), name[2].clone()),
            table: Arc::new(table),
            summary,
            columns,
            rows,
            stale,
        });
    }
    Ok(out)
}

async fn fresh_enough(
    session: &Session,
    definition: &Definition,
    max_staleness: std::time::Duration,
) -> Result<bool> {
    if definition.refreshed_at.is_none() {
        return Ok(false);
    }
    if !sources_changed(session.warehouse(), definition).await? {
        return Ok(true);
    }
    // Stale: the lag is at most the time since the last refresh.
    Ok(definition.refreshed_at.is_some_and(|t| {
        (Utc::now() - t)
            .to_std()
            .is_ok_and(|lag| !max_staleness.is_zero() && lag <= max_staleness)
    }))
}

/// A `GROUP BY` over select-project-join, with columns named by table id.
#[derive(Debug)]
struct Summary {
    tables: BTreeSet<String>,
    /// Equalities between columns of two tables, each pair ordered.
    joins: BTreeSet<(Column, Column)>,
    filters: Vec<Expr>,
    groups: Vec<Expr>,
    aggregates: Vec<Expr>,
}

impl Summary {
    fn of(aggregate: &Aggregate) -> Option<Self> {
        if aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return None;
        }
        let mut qualifiers: HashMap<TableReference, String> = HashMap::new();
        let mut conjuncts: Vec<Expr> = Vec::new();
        collect(&aggregate.input, &mut qualifiers, &mut conjuncts)?;
        // Only expressions that mean the same on a view's rows as on the tables' rows.
        let portable = |e: &Expr| {
            !e.exists(|e| {
                Ok(match e {
                    Expr::ScalarSubquery(_)
                    | Expr::InSubquery(_)
                    | Expr::Exists(_)
                    | Expr::OuterReferenceColumn(..)
                    | Expr::Placeholder(_) => true,
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility != Volatility::Immutable
                    }
                    _ => false,
                })
            })
            .unwrap_or(true)
        };
        if !conjuncts
            .iter()
            .chain(&aggregate.group_expr)
            .chain(&aggregate.aggr_expr)
            .all(portable)
        {
            return None;
        }
        let mut tables = BTreeSet::new();
        for id in qualifiers.values() {
            tables.insert(id.clone());
        }
        // A table read twice (self-join) would make names ambiguous.
        let scans = count_scans(&aggregate.input);
        if scans != tables.len() {
            return None;
        }
        let canonical = |e: &Expr| canonical(e, &qualifiers);
        let mut joins = BTreeSet::new();
        let mut filters = Vec::new();
        for c in &conjuncts {
            let c = canonical(c)?;
            if let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = &c
                && let (Expr::Column(l), Expr::Column(r)) = (left.as_ref(), right.as_ref())
                && l.relation != r.relation
            {
                let pair = if l.flat_name() <= r.flat_name() {
                    (l.clone(), r.clone())
                } else {
                    (r.clone(), l.clone())
                };
                joins.insert(pair);
                continue;
            }
            if !filters.contains(&c) {
                filters.push(c);
            }
        }
        Some(Self {
            tables,
            joins,
            filters,
            groups: aggregate
                .group_expr
                .iter()
                .map(|e| canonical(&e.clone().unalias_nested().data))
                .collect::<Option<_>>()?,
            aggregates: aggregate
                .aggr_expr
                .iter()
                .map(|e| canonical(&e.clone().unalias_nested().data))
                .collect::<Option<_>>()?,
        })
    }
}

/// Walks the select-project-join under an aggregate: scans (with their qualifiers) and the
/// conjuncts of filters and inner joins. `None` for any other shape.
fn collect(
    plan: &LogicalPlan,
    qualifiers: &mut HashMap<TableReference, String>,
    conjuncts: &mut Vec<Expr>,
) -> Option<()> {
    match plan {
        LogicalPlan::Filter(f) => {
            conjuncts.extend(split_conjunction(&f.predicate).into_iter().cloned());
            collect(&f.input, qualifiers, conjuncts)
        }
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            for (l, r) in &j.on {
                conjuncts.push(binary_expr(l.clone(), Operator::Eq, r.clone()));
            }
            if let Some(f) = &j.filter {
                conjuncts.extend(split_conjunction(f).into_iter().cloned());
            }
            collect(&j.left, qualifiers, conjuncts)?;
            collect(&j.right, qualifiers, conjuncts)
        }
        LogicalPlan::SubqueryAlias(a) => {
            let id = table_id(&a.input)?;
            qualifiers.insert(a.alias.clone(), id);
            Some(())
        }
        LogicalPlan::TableScan(scan) if scan.filters.is_empty() && scan.fetch.is_none() => {
            let id = table_id(plan)?;
            qualifiers.insert(scan.table_name.clone(), id);
            Some(())
        }
        _ => None,
    }
}

fn count_scans(plan: &LogicalPlan) -> usize {
    let mut n = 0;
    let _ = plan.apply(|p| {
        if matches!(p, LogicalPlan::TableScan(_)) {
            n += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

/// The id of the plain warehouse table a scan reads at its newest version.
fn table_id(plan: &LogicalPlan) -> Option<String> {
    let LogicalPlan::TableScan(scan) = plan else {
        return None;
    };
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<StrataTable>()?;
    (!table.is_historical()).then(|| table.log().id().0.clone())
}

/// `expr` with each column named by its table's id; `None` if a column's table is unknown.
fn canonical(expr: &Expr, qualifiers: &HashMap<TableReference, String>) -> Option<Expr> {
    let mut known = true;
    let out = expr
        .clone()
        .transform_up(|e| {
            let Expr::Column(c) = &e else {
                return Ok(Transformed::no(e));
            };
            match c.relation.as_ref().and_then(|r| qualifiers.get(r)) {
                Some(id) => Ok(Transformed::yes(Expr::Column(Column::new(
                    Some(TableReference::bare(id.clone())),
                    c.name.clone(),
                )))),
                None => {
                    known = false;
                    Ok(Transformed::no(e))
                }
            }
        })
        .ok()?
        .data;
    known.then_some(out)
}

/// A view's summary and what each of its stored columns holds; `None` unless its query is
/// one `GROUP BY` (no `HAVING`, no `LIMIT`) over select-project-join.
fn view_summary(plan: &LogicalPlan) -> Option<(Summary, Vec<Stored>)> {
    let plan = match plan {
        LogicalPlan::Sort(s) if s.fetch.is_none() => s.input.as_ref(),
        other => other,
    };
    let LogicalPlan::Projection(projection) = plan else {
        return None;
    };
    let LogicalPlan::Aggregate(aggregate) = projection.input.as_ref() else {
        return None;
    };
    let summary = Summary::of(aggregate)?;
    let groups = aggregate.group_expr.len();
    let mut columns = Vec::with_capacity(projection.expr.len());
    for expr in &projection.expr {
        let Expr::Column(c) = expr.clone().unalias_nested().data else {
            return None;
        };
        let i = aggregate.schema.index_of_column(&c).ok()?;
        columns.push(if i < groups {
            Stored::Group(i)
        } else {
            Stored::Aggregate(i - groups)
        });
    }
    // Every group key must be stored, or rows of different groups would look alike.
    let stored: BTreeSet<usize> = columns
        .iter()
        .filter_map(|c| match c {
            Stored::Group(g) => Some(*g),
            Stored::Aggregate(_) => None,
        })
        .collect();
    (stored.len() == groups).then_some((summary, columns))
}

/// The replacement for `aggregate` read from view `view`, if the view can answer it.
fn answer(aggregate: &Aggregate, query: &Summary, view: &Candidate) -> Option<LogicalPlan> {
    let mv = &view.summary;
    if query.tables != mv.tables || query.joins != mv.joins {
        return None;
    }
    let column_of = |wanted: Stored| {
        view.columns.iter().position(|c| *c == wanted).map(|i| {
            Expr::Column(Column::new(
                Some(view.reference.clone()),
                view.table.table_schema().field(i).name(),
            ))
        })
    };
    let group_columns: Vec<Expr> = (0..mv.groups.len())
        .map(|g| column_of(Stored::Group(g)))
        .collect::<Option<_>>()?;
    // `expr` over the view's group keys, or `None`.
    let over_groups = |expr: &Expr| over_keys(expr, &mv.groups, &group_columns);
    // Filters: the view's must all hold for the query; the query's others run on the view.
    for f in &mv.filters {
        if !query.filters.contains(f) && !query.filters.iter().any(|q| implies(q, f)) {
            return None;
        }
    }
    // A view without group keys has nothing to filter its one row on.
    if group_columns.is_empty() && query.filters.iter().any(|q| !mv.filters.contains(q)) {
        return None;
    }
    let mut residual: Vec<Expr> = query
        .filters
        .iter()
        .filter(|q| !mv.filters.contains(q))
        .map(&over_groups)
        .collect::<Option<_>>()?;
    let groups: Vec<Expr> = query
        .groups
        .iter()
        .map(&over_groups)
        .collect::<Option<_>>()?;
    // The same groups (each query key one view key, all of them): no re-aggregation.
    let same_groups = groups.len() == group_columns.len()
        && group_columns.iter().all(|c| groups.contains(c))
        && groups
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            == groups.len();
    // A view with stale ranges answers only for its current rows; the stale ranges are
    // aggregated from the tables. That is right only if each query group lies wholly on one
    // side: the query must group by the view's key (not a scalar aggregate, not a roll-up
    // across the key).
    if let Some(stale) = &view.stale {
        let Some(Stored::Group(g)) = view.columns.get(stale.key) else {
            return None;
        };
        if !groups.contains(&group_columns[*g])
            || read_version(&aggregate.input, &stale.source) != Some(stale.version)
        {
            return None;
        }
        residual
            .push(in_ranges(group_columns[*g].clone(), &stale.ranges, stale.nulls).is_not_true());
    }
    let mut values = Vec::with_capacity(query.aggregates.len());
    for a in &query.aggregates {
        let i = groups.len() + values.len();
        let output_type = aggregate.schema.field(i).data_type();
        values.push(aggregate_value(
            a,
            mv,
            &column_of,
            &over_groups,
            same_groups,
            output_type,
        )?);
    }
    // The view's rows as they are, when every value is a stored column; otherwise aggregate
    // (always without GROUP BY: one row even when no view row passes the filter).
    let project = same_groups && !groups.is_empty() && values.iter().all(|v| v.stored.is_some());
    let scan = LogicalPlanBuilder::scan(
        view.reference.clone(),
        provider_as_source(Arc::clone(&view.table) as _),
        None,
    )
    .ok()?;
    let scan = match residual.into_iter().reduce(Expr::and) {
        Some(predicate) => scan.filter(predicate).ok()?,
        None => scan,
    };
    let output = aggregate.schema.as_ref();
    let named = |i: usize, value: Expr| {
        let (qualifier, field) = output.qualified_field(i);
        cast(value, field.data_type().clone()).alias_qualified(qualifier.cloned(), field.name())
    };
    let plan = if project {
        let mut exprs: Vec<Expr> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| named(i, g.clone()))
            .collect();
        for (j, v) in values.into_iter().enumerate() {
            exprs.push(named(groups.len() + j, v.stored?));
        }
        scan.project(exprs).ok()?.build().ok()?
    } else {
        let group_names: Vec<Expr> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| g.clone().alias(format!("__g{i}")))
            .collect();
        let mut partials = Vec::new();
        let mut finals: Vec<Expr> = (0..groups.len())
            .map(|i| named(i, Expr::Column(Column::new_unqualified(format!("__g{i}")))))
            .collect();
        for (j, v) in values.into_iter().enumerate() {
            let mut inputs = Vec::new();
            for (k, p) in v.rollup.into_iter().enumerate() {
                let name = format!("__a{j}_{k}");
                partials.push(p.alias(&name));
                inputs.push(Expr::Column(Column::new_unqualified(name)));
            }
            finals.push(named(groups.len() + j, (v.combine)(inputs)));
        }
        scan.aggregate(group_names, partials)
            .ok()?
            .project(finals)
            .ok()?
            .build()
            .ok()?
    };
    let plan = match &view.stale {
        None => plan,
        Some(stale) => {
            let filter = |qualifier: &TableReference| {
                let key = Expr::Column(Column::new(
                    Some(qualifier.clone()),
                    partition_column(&stale.function),
                ));
                in_ranges(
                    replace_column(&stale.function, key),
                    &stale.ranges,
                    stale.nulls,
                )
            };
            let input = replace_scan(
                aggregate.input.as_ref().clone(),
                &stale.source,
                |t| t.with_files(|_| true),
                Some(&filter),
            )
            .ok()?;
            let from_tables = LogicalPlan::Aggregate(
                Aggregate::try_new(
                    Arc::new(input),
                    aggregate.group_expr.clone(),
                    aggregate.aggr_expr.clone(),
                )
                .ok()?,
            );
            if !schemas_match(plan.schema(), from_tables.schema()) {
                return None;
            }
            LogicalPlanBuilder::from(plan)
                .union(from_tables)
                .ok()?
                .build()
                .ok()?
        }
    };
    // The replacement must have exactly the node's columns.
    (plan.schema().as_ref() == output || schemas_match(plan.schema(), output)).then_some(plan)
}

/// The version at which `plan` reads table `id`, if it reads it once at its newest version.
fn read_version(plan: &LogicalPlan, id: &strata_storage::TableId) -> Option<u64> {
    let mut versions = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(t) = provider.downcast_ref::<StrataTable>()
            && t.log().id() == id
        {
            versions.push((t.snapshot().version.0, t.is_historical()));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match versions.as_slice() {
        [(v, false)] => Some(*v),
        _ => None,
    }
}

fn schemas_match(a: &DFSchema, b: &DFSchema) -> bool {
    a.fields().len() == b.fields().len()
        && a.iter().zip(b.iter()).all(|((qa, fa), (qb, fb))| {
            qa == qb && fa.name() == fb.name() && fa.data_type() == fb.data_type()
        })
}

/// How to compute one query aggregate from a view.
struct Value {
    /// With the view's groups: an expression of stored columns, if there is one.
    stored: Option<Expr>,
    /// With coarser groups: aggregates over the view's rows ...
    rollup: Vec<Expr>,
    /// ... and how their results combine.
    combine: Box<dyn Fn(Vec<Expr>) -> Expr>,
}

fn aggregate_value(
    wanted: &Expr,
    mv: &Summary,
    column_of: &dyn Fn(Stored) -> Option<Expr>,
    over_groups: &dyn Fn(&Expr) -> Option<Expr>,
    same_groups: bool,
    output_type: &DataType,
) -> Option<Value> {
    let Expr::AggregateFunction(f) = wanted else {
        return None;
    };
    let simple = f.params.filter.is_none() && f.params.order_by.is_empty();
    let stored_as = |e: &Expr| {
        mv.aggregates
            .iter()
            .position(|a| a == e)
            .and_then(|i| column_of(Stored::Aggregate(i)))
    };
    let single = |rollup: Expr| Value {
        stored: None,
        rollup: vec![rollup],
        combine: Box::new(|mut v: Vec<Expr>| v.remove(0)),
    };
    // Stored as is: the column itself with the view's groups, re-aggregated with coarser ones.
    if let Some(c) = stored_as(wanted) {
        let rollup = match (f.func.name(), f.params.distinct, simple) {
            ("sum", false, true) => Some(sum(c.clone())),
            // A count of no rows is 0, a sum of no counts NULL.
            ("count", false, true) => Some(coalesce(vec![sum(c.clone()), lit(0i64)])),
            ("min", _, true) => Some(min(c.clone())),
            ("max", _, true) => Some(max(c.clone())),
            _ => None,
        };
        match rollup {
            Some(r) => {
                return Some(Value {
                    stored: Some(c),
                    rollup: vec![r],
                    combine: Box::new(|mut v: Vec<Expr>| v.remove(0)),
                });
            }
            // With the view's groups each group is one view row: its value, whatever the
            // aggregate (MAX of one value when the plan must aggregate anyway).
            None if same_groups => {
                return Some(Value {
                    stored: Some(c.clone()),
                    rollup: vec![max(c)],
                    combine: Box::new(|mut v: Vec<Expr>| v.remove(0)),
                });
            }
            // Not re-aggregable as stored (AVG, COUNT DISTINCT): try the ways below.
            None => {}
        }
    }
    if !simple {
        return None;
    }
    // AVG from the SUM and COUNT of the same argument (in floating point: only for AVGs of
    // floating-point type, not decimals).
    if f.func.name() == "avg" && !f.params.distinct && output_type == &DataType::Float64 {
        let like = |name: &str| {
            mv.aggregates.iter().position(|a| {
                matches!(a, Expr::AggregateFunction(g)
                    if g.func.name() == name
                        && !g.params.distinct
                        && g.params.filter.is_none()
                        && g.params.args == f.params.args)
            })
        };
        let s = column_of(Stored::Aggregate(like("sum")?))?;
        let n = column_of(Stored::Aggregate(like("count")?))?;
        let divide = |s: Expr, n: Expr| {
            binary_expr(
                cast(s, DataType::Float64),
                Operator::Divide,
                cast(n, DataType::Float64),
            )
        };
        return Some(Value {
            stored: Some(divide(s.clone(), n.clone())),
            rollup: vec![sum(s), sum(n)],
            combine: Box::new(move |mut v: Vec<Expr>| {
                let n = v.remove(1);
                divide(v.remove(0), n)
            }),
        });
    }
    // MIN, MAX, COUNT(DISTINCT) of group keys: the keys are in the view.
    let over_keys_ok =
        matches!(f.func.name(), "min" | "max") || (f.func.name() == "count" && f.params.distinct);
    if over_keys_ok {
        let args: Vec<Expr> = f
            .params
            .args
            .iter()
            .map(over_groups)
            .collect::<Option<_>>()?;
        return Some(single(Expr::AggregateFunction(AggregateFunction::new_udf(
            Arc::clone(&f.func),
            args,
            f.params.distinct,
            None,
            vec![],
            None,
        ))));
    }
    None
}

/// `expr` rewritten over the view's group keys: sub-expressions equal to a key become its
/// column, `date_trunc(u, x)` over a key `date_trunc(v, x)` with `v` nesting in `u` becomes
/// `date_trunc(u, key)`. `None` if a base column is left.
fn over_keys(expr: &Expr, keys: &[Expr], columns: &[Expr]) -> Option<Expr> {
    let out = expr
        .clone()
        .transform_down(|e| {
            if let Some(i) = keys.iter().position(|k| *k == e) {
                return Ok(Transformed::new(
                    columns[i].clone(),
                    true,
                    TreeNodeRecursion::Jump,
                ));
            }
            if let Some((unit, arg)) = date_trunc(&e) {
                for (i, k) in keys.iter().enumerate() {
                    if let Some((key_unit, key_arg)) = date_trunc(k)
                        && key_arg == arg
                        && nests(&key_unit, &unit)
                        && let Expr::ScalarFunction(f) = &e
                    {
                        let mut f = f.clone();
                        f.args[1] = columns[i].clone();
                        return Ok(Transformed::new(
                            Expr::ScalarFunction(f),
                            true,
                            TreeNodeRecursion::Jump,
                        ));
                    }
                }
            }
            Ok(Transformed::no(e))
        })
        .ok()?
        .data;
    let mut base_left = false;
    let _ = out.apply(|e| {
        if let Expr::Column(c) = e
            && !columns
                .iter()
                .any(|k| matches!(k, Expr::Column(kc) if kc == c))
        {
            base_left = true;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (!base_left).then_some(out)
}

/// `date_trunc('<unit>', arg)` as (unit, arg).
fn date_trunc(e: &Expr) -> Option<(String, Expr)> {
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    if f.name() != "date_trunc" || f.args.len() != 2 {
        return None;
    }
    let Expr::Literal(ScalarValue::Utf8(Some(unit)), _) = &f.args[0] else {
        return None;
    };
    Some((unit.to_ascii_lowercase(), f.args[1].clone()))
}

/// True when every `finer` bucket lies inside one `coarser` bucket, so truncating to `finer`
/// first does not change a truncation to `coarser`.
fn nests(finer: &str, coarser: &str) -> bool {
    const UNITS: [&str; 9] = [
        "microsecond",
        "millisecond",
        "second",
        "minute",
        "hour",
        "day",
        "month",
        "quarter",
        "year",
    ];
    if finer == coarser {
        return true;
    }
    if coarser == "week" {
        return UNITS[..6].contains(&finer);
    }
    match (
        UNITS.iter().position(|u| *u == finer),
        UNITS.iter().position(|u| *u == coarser),
    ) {
        (Some(f), Some(c)) => f < c,
        _ => false,
    }
}

/// True when conjunct `query` implies conjunct `view` (both over one column, with literals).
fn implies(query: &Expr, view: &Expr) -> bool {
    let (Some((qc, q)), Some((vc, v))) = (bounds(query), bounds(view)) else {
        return false;
    };
    qc == vc && q.within(&v)
}

/// The values a conjunct allows for its column: a range with optional ends.
#[derive(Debug, Clone)]
struct Bounds {
    low: Option<(ScalarValue, bool)>,
    high: Option<(ScalarValue, bool)>,
}

impl Bounds {
    /// True when every value in `self` is in `other`.
    fn within(&self, other: &Bounds) -> bool {
        use std::cmp::Ordering::*;
        let low_ok = match (&self.low, &other.low) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some((a, ai)), Some((b, bi))) => match a.partial_cmp(b) {
                Some(Greater) => true,
                Some(Equal) => *bi || !ai,
                _ => false,
            },
        };
        let high_ok = match (&self.high, &other.high) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some((a, ai)), Some((b, bi))) => match a.partial_cmp(b) {
                Some(Less) => true,
                Some(Equal) => *bi || !ai,
                _ => false,
            },
        };
        low_ok && high_ok
    }
}

/// `column op literal`, `column BETWEEN a AND b` as the column and its bounds.
fn bounds(e: &Expr) -> Option<(Column, Bounds)> {
    // Text literals compare as text, not as the dates or numbers they may stand for
    // ('1994-1-15' > '1994-02-01'): no implication from them.
    let literal = |e: &Expr| match e {
        Expr::Literal(v, _)
            if !v.is_null()
                && !matches!(
                    v,
                    ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_)
                ) =>
        {
            Some(v.clone())
        }
        _ => None,
    };
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, value, op) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), r) => (c.clone(), literal(r)?, *op),
                (l, Expr::Column(c)) => (c.clone(), literal(l)?, op.swap()?),
                _ => return None,
            };
            let b = match op {
                Operator::Eq => Bounds {
                    low: Some((value.clone(), true)),
                    high: Some((value, true)),
                },
                Operator::Gt => Bounds {
                    low: Some((value, false)),
                    high: None,
                },
                Operator::GtEq => Bounds {
                    low: Some((value, true)),
                    high: None,
                },
                Operator::Lt => Bounds {
                    low: None,
                    high: Some((value, false)),
                },
                Operator::LtEq => Bounds {
                    low: None,
                    high: Some((value, true)),
                },
                _ => return None,
            };
            Some((column, b))
        }
        Expr::Between(b) if !b.negated => {
            let Expr::Column(c) = b.expr.as_ref() else {
                return None;
            };
            Some((
                c.clone(),
                Bounds {
                    low: Some((literal(&b.low)?, true)),
                    high: Some((literal(&b.high)?, true)),
                },
            ))
        }
        _ => None,
    }
}
