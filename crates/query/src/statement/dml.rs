//! `UPDATE`, `DELETE` and `MERGE INTO`: one pass over the affected rows, one commit.
//!
//! DataFusion plans the statement (names, types, subqueries, `UPDATE ... FROM`, the `USING`
//! source); this module runs that plan against the table's snapshot over a scan that tags each
//! row with its data file and its row number in that file ([`StrataTable::with_row_ids`]). The
//! statement's own matching logic (`WHERE`, the join of `FROM`, `ON` and the `WHEN` clauses)
//! gives a *change plan* ([`Target::change_plan`]): per affected row, its new value, its file
//! and row number, and whether the old row goes and the new one is written. Running it
//! streams the new rows into the table writer (routing, constraints) while it gathers the rows
//! deleted per file; those leave their files by deletion vectors, or by rewriting the file
//! when most of it is deleted ([`crate::table::deletes`]). A target row matched by several
//! source rows is an error (as in Snowflake), found when its row is deleted twice.
//!
//! A table with constraints runs the plan twice: new rows are checked against the table
//! without the rows the statement deletes, which must be known first.
//!
//! Partition and file pruning apply through the scan's filters. A concurrent commit that
//! removed or deleted rows of the same files makes the statement fail with a conflict (and
//! run again); nothing is written. `EXPLAIN ANALYZE` runs the statement and says how its rows
//! went.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchOptions, StringArray, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Int64Type;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::conditional_expressions::CaseBuilder;
use datafusion::logical_expr::dml::{MergeIntoAction, MergeIntoClause, MergeIntoClauseKind};
use datafusion::logical_expr::{
    DmlStatement, Expr, ExprSchemable, JoinType, LogicalPlan, LogicalPlanBuilder, WriteOp, lit,
    when,
};
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use futures::StreamExt;
use strata_storage::{Reads, Transaction};

use crate::catalog::materialized_view::{MaterializedViewTable, read_only};
use crate::error::{Error, Result};
use crate::result::StatementResult;
use crate::session::Session;
use crate::table::deletes::{RowDeletes, plan_file_changes};
use crate::table::provider::{FILE_COLUMN, ROW_COLUMN, ReadLog, StrataTable};
use crate::table::write::{TableWrite, write_batches};

/// Runs a DataFusion-planned `UPDATE`, `DELETE` or `MERGE INTO` on a Strata table; `None` for
/// any other plan.
///
/// `EXPLAIN ANALYZE` of one runs it too, and returns how its rows went instead of its count
/// (`VERBOSE`: and the physical plan of its pass, with metrics).
pub(crate) async fn run(session: &Session, plan: &LogicalPlan) -> Result<Option<StatementResult>> {
    let (dml, analyze, verbose) = match plan {
        LogicalPlan::Dml(dml) => (dml, false, false),
        LogicalPlan::Analyze(a) => match a.input.as_ref() {
            LogicalPlan::Dml(dml) => (dml, true, a.verbose),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    if !matches!(
        dml.op,
        WriteOp::Update | WriteOp::Delete | WriteOp::MergeInto(_)
    ) {
        return Ok(None);
    }
    let provider = source_as_provider(&dml.target)?;
    if let Some(view) = provider.downcast_ref::<MaterializedViewTable>() {
        return Err(Error::Plan(read_only(view.storage().name())));
    }
    let Some(table) = provider.downcast_ref::<StrataTable>() else {
        return Err(Error::Plan(format!(
            "{} of {} is not supported: it is not a warehouse table",
            dml.op.name(),
            dml.table_name
        )));
    };
    if table.is_historical() {
        return Err(Error::Plan(format!(
            "cannot change '{}' at a past version",
            table.name()
        )));
    }
    // A subquery that reads the target table reads all of it; otherwise the row-id scans
    // note the partitions they read.
    let reads = if scans_of(&dml.input, &dml.table_name)? > 1 {
        Reads::Table
    } else {
        Reads::Nothing
    };
    let target = Target {
        session,
        table,
        reference: dml.table_name.clone(),
        reads: Arc::new(Mutex::new(reads)),
        outcome: Mutex::new(None),
        physical: Mutex::new(None),
    };
    let result = match &dml.op {
        WriteOp::Delete => target.delete(dml).await?,
        WriteOp::Update => target.update(dml).await?,
        WriteOp::MergeInto(op) => target.merge(dml, &op.on, &op.clauses).await?,
        _ => unreachable!("checked above"),
    };
    if !analyze {
        return Ok(Some(result));
    }
    let physical = target
        .physical
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let mut report = target
        .outcome
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_else(|| {
            vec![format!(
                "{} {}: every row deleted, every file removed",
                dml.op.name(),
                table.name()
            )]
        });
    if let Some(plan) = physical.filter(|_| verbose) {
        report.push(String::new());
        report.push(
            DisplayableExecutionPlan::with_metrics(plan.as_ref())
                .indent(true)
                .to_string(),
        );
    }
    Ok(Some(explain_result(&report)))
}

/// `UPDATE t SET ... FROM s WHERE cond` (Postgres) as the `MERGE` it means:
/// `MERGE INTO t USING s ON cond WHEN MATCHED THEN UPDATE SET ...` (DataFusion does not plan
/// `UPDATE ... FROM` itself). Run it with [`run`] and report [`updated_rows`].
pub(crate) fn update_from_as_merge(update: &ast::Update) -> Result<ast::Statement> {
    let from = match &update.from {
        Some(ast::UpdateTableFromKind::BeforeSet(f) | ast::UpdateTableFromKind::AfterSet(f)) => f,
        None => return Err(Error::Plan("expected UPDATE ... FROM".into())),
    };
    let [source] = from.as_slice() else {
        return Err(Error::Unsupported(
            "UPDATE ... FROM with several tables; join them in a subquery".into(),
        ));
    };
    if !source.joins.is_empty() || !update.table.joins.is_empty() {
        return Err(Error::Unsupported(
            "UPDATE ... FROM with JOIN; join the sources in a subquery".into(),
        ));
    }
    if update.returning.is_some() || update.limit.is_some() || !update.order_by.is_empty() {
        return Err(Error::Unsupported(
            "RETURNING, ORDER BY or LIMIT in UPDATE ... FROM".into(),
        ));
    }
    let on = update
        .selection
        .clone()
        .unwrap_or_else(|| ast::Expr::Value(ast::Value::Boolean(true).with_empty_span()));
    Ok(ast::Statement::Merge(ast::Merge {
        merge_token: AttachedToken::empty(),
        optimizer_hints: Vec::new(),
        into: true,
        table: update.table.relation.clone(),
        source: source.relation.clone(),
        on: Box::new(on),
        clauses: vec![ast::MergeClause {
            when_token: AttachedToken::empty(),
            clause_kind: ast::MergeClauseKind::Matched,
            predicate: None,
            action: ast::MergeAction::Update(ast::MergeUpdateExpr {
                update_token: AttachedToken::empty(),
                assignments: update.assignments.clone(),
                update_predicate: None,
                delete_predicate: None,
            }),
        }],
        output: None,
    }))
}

/// The `count` result of an `UPDATE ... FROM` run as `MERGE`.
/// `INSERT [OVERWRITE | INTO] t PARTITION (p) SELECT ...`: rows of range partition `p` only
/// (any other row is an error); with OVERWRITE they replace the partition's rows, the other
/// partitions untouched, in one commit.
pub(crate) async fn insert_partition(
    session: &Session,
    insert: &datafusion::sql::sqlparser::ast::Insert,
) -> Result<StatementResult> {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, TableObject};
    let name = match insert.partitioned.as_deref() {
        Some([SqlExpr::Identifier(ident)]) => crate::parser::normalize(ident),
        _ => {
            return Err(Error::Plan(
                "INSERT ... PARTITION (p) names one partition of the table, such as p2024_01"
                    .to_string(),
            ));
        }
    };
    if !insert.columns.is_empty() {
        return Err(Error::Unsupported(
            "a column list with PARTITION (p): select every column of the table, in order"
                .to_string(),
        ));
    }
    let TableObject::TableName(table) = &insert.table else {
        return Err(Error::Unsupported(
            "INSERT INTO a table function".to_string(),
        ));
    };
    let (log, snapshot, qualified) = session.open_table_for_write(table).await?;
    let Some(layout) = snapshot.metadata.partitioning.as_ref() else {
        return Err(Error::Plan(format!(
            "{qualified} is not partitioned: INSERT ... PARTITION needs a range-partitioned table"
        )));
    };
    if layout.partition(&name).is_none() {
        let names: Vec<&str> = layout.partitions.iter().map(|p| p.name.as_str()).collect();
        return Err(Error::Plan(format!(
            "{qualified} has no partition '{name}' (partitions: {})",
            names.join(", ")
        )));
    }
    let Some(source) = &insert.source else {
        return Err(Error::Plan(
            "INSERT ... PARTITION (p) takes a SELECT or VALUES".to_string(),
        ));
    };
    let plan = session
        .plan(ast::Statement::Query(source.clone()), None)
        .await?;
    let columns = snapshot.metadata.columns.len();
    if plan.schema().fields().len() != columns {
        return Err(Error::Plan(format!(
            "{qualified} has {columns} columns; the query returns {}",
            plan.schema().fields().len()
        )));
    }
    let df = session.context().execute_logical_plan(plan).await?;
    let stream = session.progress().execute(df).await?;
    let mut txn = Transaction::new(if insert.overwrite {
        "INSERT OVERWRITE PARTITION"
    } else {
        "INSERT"
    });
    if insert.overwrite {
        txn.remove = snapshot.files_in(&name).cloned().collect();
        // Rows a concurrent statement adds to the partition would survive the overwrite.
        txn.reads = Reads::Partitions([name.clone()].into_iter().collect());
    }
    let mut options = session.write_options();
    options.only_partition = Some(name);
    let (rows, _) = write_batches(
        session.warehouse(),
        options,
        &qualified,
        &log,
        &snapshot,
        stream,
        txn,
    )
    .await?;
    Ok(count_result(rows))
}

pub(crate) fn updated_rows(merge: &StatementResult) -> StatementResult {
    let updated = merge
        .batches
        .first()
        .and_then(|b| {
            b.column(1)
                .as_primitive_opt::<arrow::datatypes::UInt64Type>()
        })
        .map_or(0, |a| a.value(0));
    count_result(updated)
}

/// Refuses `LIMIT` in the matching rows of UPDATE or DELETE (MySQL's `DELETE ... LIMIT`).
fn reject_limit(input: &LogicalPlan) -> Result<()> {
    let mut limited = false;
    input.apply(|node| {
        limited |= matches!(node, LogicalPlan::Limit(_));
        Ok(TreeNodeRecursion::Continue)
    })?;
    if limited {
        return Err(Error::Unsupported(
            "LIMIT in UPDATE or DELETE: which rows it picks is undefined".into(),
        ));
    }
    Ok(())
}

/// How many scans of `table` `plan` has, subqueries included.
fn scans_of(plan: &LogicalPlan, table: &TableReference) -> Result<usize> {
    let mut scans = 0;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.resolved_eq(table)
        {
            scans += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(scans)
}

/// The table a statement changes, how the statement's plan names it, and what its scans read.
struct Target<'a> {
    session: &'a Session,
    table: &'a StrataTable,
    reference: TableReference,
    reads: ReadLog,
    /// The report of the change, once committed (`EXPLAIN ANALYZE`).
    outcome: Mutex<Option<Vec<String>>>,
    /// The physical plan of the change's last pass.
    physical: Mutex<Option<Arc<dyn ExecutionPlan>>>,
}

/// What a `MERGE` did.
#[derive(Debug, Default)]
struct Affected {
    updated: u64,
    deleted: u64,
    inserted: u64,
}

/// Kinds of change, as numbered in the `__strata_change` column of `MERGE`.
const KEEP: i64 = 0;

/// The columns a change plan ([`Target::apply`]) ends with, after the new row's columns.
const REMOVES_COLUMN: &str = "__strata_removes";
const WRITES_COLUMN: &str = "__strata_writes";

/// What a change plan did: rows per `__strata_change` value, and the rows it deletes.
#[derive(Debug, Default)]
struct Tally {
    by_change: HashMap<i64, u64>,
    deletes: RowDeletes,
}

/// How a change went, for the statement's result and `EXPLAIN ANALYZE`.
#[derive(Debug)]
pub(crate) struct Outcome {
    by_change: HashMap<i64, u64>,
    /// Rows written (new versions and inserts, plus the rows rewritten files keep).
    rows_written: u64,
    /// How deleted rows went, file by file.
    changes: String,
    /// Times the change plan ran (twice when the table has constraints: they are checked
    /// against the table without the deleted rows).
    passes: u32,
}

impl Outcome {
    /// Lines for `EXPLAIN ANALYZE`.
    pub(crate) fn report(&self, operation: &str, table: &str) -> Vec<String> {
        let changed: u64 = self.by_change.values().sum();
        vec![
            format!(
                "{operation} {table}: {changed} rows changed in {} passes",
                self.passes
            ),
            format!("rows written: {}", self.rows_written),
            self.changes.clone(),
        ]
    }
}

impl Target<'_> {
    async fn delete(&self, dml: &DmlStatement) -> Result<StatementResult> {
        reject_limit(&dml.input)?;
        if let LogicalPlan::TableScan(_) = dml.input.as_ref() {
            // No WHERE: every file goes, none is read.
            let snapshot = self.table.snapshot();
            let mut txn = Transaction::new("DELETE");
            txn.remove = snapshot.files.values().cloned().collect();
            txn.reads = Reads::Table;
            self.session
                .commit_removal(self.table.name(), self.table.log(), snapshot, &txn)
                .await?;
            return Ok(count_result(snapshot.row_count()));
        }
        let plan = self.with_row_ids(&dml.input)?;
        let changes = self.change_plan(plan, None, lit(1i64), lit(true), lit(false))?;
        let outcome = self.apply(changes, "DELETE").await?;
        Ok(count_result(outcome.by_change.values().sum()))
    }

    async fn update(&self, dml: &DmlStatement) -> Result<StatementResult> {
        // DataFusion plans UPDATE as a projection of the new row over the matching rows.
        let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
            return Err(Error::Plan(format!(
                "unexpected plan for UPDATE of {}",
                self.reference
            )));
        };
        let matching = &projection.input;
        reject_limit(matching)?;
        let plan = self.with_row_ids(matching)?;
        let changes = self.change_plan(
            plan,
            Some(projection.expr.clone()),
            lit(1i64),
            lit(true),
            lit(true),
        )?;
        let outcome = self.apply(changes, "UPDATE").await?;
        Ok(count_result(outcome.by_change.values().sum()))
    }

    async fn merge(
        &self,
        dml: &DmlStatement,
        on: &Expr,
        clauses: &[MergeIntoClause],
    ) -> Result<StatementResult> {
        let joined = self.merge_join(&dml.input, on, clauses)?;
        let change = tagged(joined.schema(), CHANGE_COLUMN)?;
        let is = |kind: fn(&MergeIntoAction) -> bool| -> Expr {
            let ids: Vec<Expr> = clauses
                .iter()
                .enumerate()
                .filter(|(_, c)| kind(&c.action))
                .map(|(i, _)| lit(i as i64 + 1))
                .collect();
            if ids.is_empty() {
                lit(false)
            } else {
                change.clone().in_list(ids, false)
            }
        };
        let columns = self.table.table_schema();
        let mut new_values = Vec::with_capacity(columns.fields().len());
        for (position, field) in columns.fields().iter().enumerate() {
            let current = Expr::Column(Column::new(Some(self.reference.clone()), field.name()));
            let mut case: Option<CaseBuilder> = None;
            for (i, clause) in clauses.iter().enumerate() {
                let expr = match &clause.action {
                    MergeIntoAction::Update(assignments) => assignments
                        .iter()
                        .find(|(name, _)| name == field.name())
                        .map(|(_, e)| e.clone())
                        .unwrap_or_else(|| current.clone()),
                    MergeIntoAction::Insert { columns, values } => {
                        let at = if columns.is_empty() {
                            (position < values.len()).then_some(position)
                        } else {
                            columns.iter().position(|c| c == field.name())
                        };
                        match at {
                            Some(at) => values[at].clone(),
                            None => Expr::Literal(ScalarValue::try_from(field.data_type())?, None),
                        }
                    }
                    MergeIntoAction::Delete => continue,
                };
                let expr = expr.cast_to(field.data_type(), joined.schema())?;
                let this = change.clone().eq(lit(i as i64 + 1));
                case = Some(match case {
                    None => when(this, expr),
                    Some(mut c) => c.when(this, expr),
                });
            }
            let value = match case {
                Some(mut c) => c.otherwise(current)?,
                None => current,
            };
            new_values.push(value.alias(field.name()));
        }
        let changed = LogicalPlanBuilder::from(joined)
            .filter(change.clone().not_eq(lit(KEEP)))?
            .build()?;
        let (removes, writes) = (is(removes_row), is(writes_row));
        let plan = self.change_plan(changed, Some(new_values), change, removes, writes)?;
        let outcome = self.apply(plan, "MERGE").await?;
        let mut affected = Affected::default();
        for (&clause, &rows) in &outcome.by_change {
            let Some(c) = usize::try_from(clause - 1)
                .ok()
                .and_then(|i| clauses.get(i))
            else {
                continue;
            };
            let counter = match c.action {
                MergeIntoAction::Update(_) => &mut affected.updated,
                MergeIntoAction::Delete => &mut affected.deleted,
                MergeIntoAction::Insert { .. } => &mut affected.inserted,
            };
            *counter += rows;
        }
        Ok(merge_result(&affected))
    }

    /// The plan of a change over `plan` (rows of the row-id scan, possibly joined): the new
    /// row (`new_values`, the table's columns; none for `DELETE`), then the row's file and row
    /// number, `change` (a number saying what happens to it), whether the target row goes
    /// (`removes`) and whether the new row is written (`writes`).
    fn change_plan(
        &self,
        plan: LogicalPlan,
        new_values: Option<Vec<Expr>>,
        change: Expr,
        removes: Expr,
        writes: Expr,
    ) -> Result<LogicalPlan> {
        let file = tagged(plan.schema(), FILE_COLUMN)?;
        let row = tagged(plan.schema(), ROW_COLUMN)?;
        let mut columns = new_values.unwrap_or_default();
        columns.extend([
            file.alias(FILE_COLUMN),
            row.alias(ROW_COLUMN),
            change.alias(CHANGE_COLUMN),
            removes.alias(REMOVES_COLUMN),
            writes.alias(WRITES_COLUMN),
        ]);
        Ok(LogicalPlanBuilder::from(plan).project(columns)?.build()?)
    }

    /// Runs the change `plan` ([`Target::change_plan`]) and commits it in one transaction: the
    /// rows it removes leave their files (deletion vectors or rewrites, by the cost rule of
    /// [`crate::table::deletes`]), the rows it writes go to new files.
    async fn apply(&self, plan: LogicalPlan, operation: &str) -> Result<Outcome> {
        let warehouse = self.session.warehouse();
        let snapshot = self.table.snapshot();
        // Checked by SET to be in 0..=1.
        let share = self.session.strata_options().dml_rewrite_share;
        let writes = plan.schema().fields().len() > 5;
        // With constraints, the new rows are checked against the table without the rows the
        // statement deletes: those must be known first.
        let known = if snapshot.metadata.constraints.is_empty() {
            None
        } else {
            let (stream, tally) = self.split(plan.clone()).await?;
            drain(stream).await?;
            let tally = take(&tally);
            let changes = plan_file_changes(warehouse, snapshot, tally.deletes, share).await?;
            Some((tally.by_change, changes))
        };
        let mut write = TableWrite::begin(
            warehouse,
            self.session.write_options(),
            self.table.name(),
            self.table.log(),
            snapshot,
            Transaction::new(operation),
            known.as_ref().map(|(_, changes)| changes),
        )
        .await?;
        let written = async {
            let mut passes = 1;
            let (by_change, changes) = match known {
                Some(known) => {
                    if writes {
                        passes += 1;
                        let (stream, _) = self.split(plan).await?;
                        write.write(stream).await?;
                    }
                    known
                }
                None => {
                    let (stream, tally) = self.split(plan).await?;
                    if writes {
                        write.write(stream).await?;
                    } else {
                        drain(stream).await?;
                    }
                    let tally = take(&tally);
                    let changes =
                        plan_file_changes(warehouse, snapshot, tally.deletes, share).await?;
                    (tally.by_change, changes)
                }
            };
            let summary = changes.to_string();
            write.apply(changes).await?;
            Ok::<_, Error>((by_change, summary, passes))
        }
        .await;
        let (by_change, changes, passes) = match written {
            Ok(done) if !done.0.is_empty() => done,
            Ok((_, changes, passes)) => {
                // Nothing matched: nothing to commit.
                write.abort().await;
                let outcome = Outcome {
                    by_change: HashMap::new(),
                    rows_written: 0,
                    changes,
                    passes,
                };
                *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(outcome.report(operation, self.table.name()));
                return Ok(outcome);
            }
            Err(e) => {
                write.abort().await;
                return Err(e);
            }
        };
        write.read(self.reads.lock().unwrap_or_else(|e| e.into_inner()).clone());
        let (rows_written, _) = write.commit().await?;
        let outcome = Outcome {
            by_change,
            rows_written,
            changes,
            passes,
        };
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(outcome.report(operation, self.table.name()));
        Ok(outcome)
    }

    /// Executes the change `plan`: a stream of the rows it writes (as table rows), and the
    /// tally it fills as the stream is read.
    async fn split(
        &self,
        plan: LogicalPlan,
    ) -> Result<(SendableRecordBatchStream, Arc<Mutex<Tally>>)> {
        let ctx = self.session.context();
        let physical = ctx
            .execute_logical_plan(plan)
            .await?
            .create_physical_plan()
            .await?;
        let stream = execute_stream(Arc::clone(&physical), ctx.task_ctx())?;
        // The last pass's plan, with its metrics once it ran, for EXPLAIN ANALYZE.
        *self.physical.lock().unwrap_or_else(|e| e.into_inner()) = Some(physical);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let columns = stream.schema().fields().len() - 5;
        // A DELETE writes no rows: its change plan has no table columns.
        let schema = if columns == 0 {
            Arc::new(Schema::empty())
        } else {
            self.table.table_schema()
        };
        let output = Arc::clone(&schema);
        let name = self.table.name().to_string();
        let noted = Arc::clone(&tally);
        let rows = stream.map(move |batch| {
            let batch = batch?;
            let mut tally = noted.lock().unwrap_or_else(|e| e.into_inner());
            let change = batch.column(columns + 2).as_primitive_opt::<Int64Type>();
            let removes = batch.column(columns + 3).as_boolean_opt();
            let writes = batch.column(columns + 4).as_boolean_opt();
            let (Some(change), Some(removes), Some(writes)) = (change, removes, writes) else {
                return Err(DataFusionError::Internal(
                    "unexpected types in a change plan".to_string(),
                ));
            };
            for c in change.iter().flatten() {
                *tally.by_change.entry(c).or_default() += 1;
            }
            let added = tally
                .deletes
                .add(
                    batch.column(columns).as_ref(),
                    batch.column(columns + 1).as_ref(),
                    Some(removes),
                )
                .map_err(DataFusionError::from)?;
            if added.is_err() {
                return Err(DataFusionError::from(Error::Plan(format!(
                    "a row of {name} matches several rows of the source (USING or FROM), so \
                     its new value is ambiguous; make the source match at most one row per \
                     target row"
                ))));
            }
            let kept = filter_record_batch(&batch, writes)?;
            let options = RecordBatchOptions::new().with_row_count(Some(kept.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                Arc::clone(&output),
                kept.columns()[..columns].to_vec(),
                &options,
            )?)
        });
        let stream: SendableRecordBatchStream =
            Box::pin(RecordBatchStreamAdapter::new(schema, rows));
        Ok((stream, tally))
    }

    /// The target (every row, tagged with file and row number) joined with the `USING` source on `on`, plus `__strata_change`: the number (from 1) of
    /// the first `WHEN` clause that applies to the row, or 0.
    fn merge_join(
        &self,
        source: &Arc<LogicalPlan>,
        on: &Expr,
        clauses: &[MergeIntoClause],
    ) -> Result<LogicalPlan> {
        let target = self.row_id_scan()?;
        let source = with_column(source.as_ref().clone(), lit(true), SOURCE_COLUMN)?;
        let kinds = |f: fn(&MergeIntoClauseKind) -> bool| clauses.iter().any(|c| f(&c.kind));
        let inserts = kinds(|k| k.is_not_matched_by_target());
        let by_source = kinds(|k| *k == MergeIntoClauseKind::NotMatchedBySource);
        let join_type = match (inserts, by_source) {
            (false, false) => JoinType::Inner,
            (true, false) => JoinType::Right,
            (false, true) => JoinType::Left,
            (true, true) => JoinType::Full,
        };
        let joined = LogicalPlanBuilder::from(target)
            .join_on(source, join_type, vec![on.clone()])?
            .build()?;
        let in_target = tagged(joined.schema(), ROW_COLUMN)?.is_not_null();
        let in_source = tagged(joined.schema(), SOURCE_COLUMN)?.is_not_null();
        let first = |wanted: &dyn Fn(&MergeIntoClauseKind) -> bool| -> Result<Expr> {
            let mut chosen: Option<CaseBuilder> = None;
            for (i, c) in clauses.iter().enumerate() {
                if !wanted(&c.kind) {
                    continue;
                }
                let condition = c.predicate.clone().unwrap_or(lit(true));
                let id = lit(i as i64 + 1);
                chosen = Some(match chosen {
                    None => when(condition, id),
                    Some(mut case) => case.when(condition, id),
                });
            }
            Ok(match chosen {
                None => lit(KEEP),
                Some(mut case) => case.otherwise(lit(KEEP))?,
            })
        };
        let change = when(
            in_target.clone().and(in_source.clone()),
            first(&|k| *k == MergeIntoClauseKind::Matched)?,
        )
        .when(in_source, first(&|k| k.is_not_matched_by_target())?)
        .otherwise(first(&|k| *k == MergeIntoClauseKind::NotMatchedBySource)?)?;
        with_column(joined, change, CHANGE_COLUMN)
    }

    /// A scan of the target table with row ids, named as the statement names it.
    fn row_id_scan(&self) -> Result<LogicalPlan> {
        let provider: Arc<dyn TableProvider> = Arc::new(
            self.table
                .with_row_ids(None)
                .with_read_log(Arc::clone(&self.reads)),
        );
        Ok(
            LogicalPlanBuilder::scan(self.reference.clone(), provider_as_source(provider), None)?
                .build()?,
        )
    }

    /// `plan` with its scan of the target table (outside subqueries, which see the whole
    /// table) replaced by a row-id scan.
    fn with_row_ids(&self, plan: &Arc<LogicalPlan>) -> Result<LogicalPlan> {
        let scan = self.row_id_scan()?;
        let mut replaced = 0;
        let plan = plan
            .as_ref()
            .clone()
            .transform_up(|node| match node {
                LogicalPlan::TableScan(s) if s.table_name.resolved_eq(&self.reference) => {
                    replaced += 1;
                    Ok(Transformed::yes(scan.clone()))
                }
                other => other.recompute_schema().map(Transformed::yes),
            })?
            .data;
        if replaced != 1 {
            return Err(Error::Unsupported(format!(
                "{} appears {replaced} times in the statement outside subqueries; alias the \
                 other use in a subquery",
                self.reference
            )));
        }
        Ok(plan)
    }
}

/// Reads `stream` to its end.
async fn drain(mut stream: SendableRecordBatchStream) -> Result<()> {
    while let Some(batch) = stream.next().await {
        batch?;
    }
    Ok(())
}

fn take(tally: &Mutex<Tally>) -> Tally {
    std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The column the `MERGE` source gets so the join tells matched from unmatched rows.
const SOURCE_COLUMN: &str = "__strata_source";
/// The number of the `WHEN` clause that applies to a joined row of `MERGE` (0: none).
const CHANGE_COLUMN: &str = "__strata_change";

fn is_update(a: &MergeIntoAction) -> bool {
    matches!(a, MergeIntoAction::Update(_))
}

fn is_delete(a: &MergeIntoAction) -> bool {
    matches!(a, MergeIntoAction::Delete)
}

fn is_insert(a: &MergeIntoAction) -> bool {
    matches!(a, MergeIntoAction::Insert { .. })
}

/// The action writes a (new or updated) row.
fn writes_row(a: &MergeIntoAction) -> bool {
    is_update(a) || is_insert(a)
}

/// The action takes a target row away (to update or delete it).
fn removes_row(a: &MergeIntoAction) -> bool {
    is_update(a) || is_delete(a)
}

/// `plan` with one more column, `name` = `value`.
fn with_column(plan: LogicalPlan, value: Expr, name: &str) -> Result<LogicalPlan> {
    let mut columns: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    columns.push(value.alias(name));
    Ok(LogicalPlanBuilder::from(plan).project(columns)?.build()?)
}

/// The column named `name` of `schema`, with whatever qualifier it has.
fn tagged(schema: &datafusion::common::DFSchema, name: &str) -> Result<Expr> {
    let (qualifier, field) = schema.qualified_field_with_unqualified_name(name)?;
    Ok(Expr::Column(Column::new(qualifier.cloned(), field.name())))
}

/// The result of `UPDATE`/`DELETE`: the number of rows changed, as DataFusion reports DML.
fn count_result(rows: u64) -> StatementResult {
    let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(UInt64Array::from(vec![rows]))],
    )
    .expect("count batch matches its schema");
    StatementResult {
        schema,
        batches: vec![batch],
    }
}

/// The result of `EXPLAIN ANALYZE` of a change: DataFusion's two columns, the report as the
/// plan's text.
fn explain_result(lines: &[String]) -> StatementResult {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("plan_type", DataType::Utf8, false),
        Field::new("plan", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec!["Plan with Metrics"])),
            Arc::new(StringArray::from(vec![lines.join("\n")])),
        ],
    )
    .expect("explain batch matches its schema");
    StatementResult {
        schema,
        batches: vec![batch],
    }
}

/// The result of `MERGE`: rows inserted, updated and deleted, as Snowflake reports them.
fn merge_result(affected: &Affected) -> StatementResult {
    let names = ["rows_inserted", "rows_updated", "rows_deleted"];
    let schema: SchemaRef = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::UInt64, false))
            .collect::<Vec<_>>(),
    ));
    let values = [affected.inserted, affected.updated, affected.deleted];
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        values
            .iter()
            .map(|v| Arc::new(UInt64Array::from(vec![*v])) as Arc<dyn Array>)
            .collect(),
    )
    .expect("merge result matches its schema");
    StatementResult {
        schema,
        batches: vec![batch],
    }
}

#[cfg(test)]
mod tests {
    use crate::Warehouse;

    /// Concurrent statements on the same files: each either commits or fails with a conflict,
    /// and no committed change is lost. Statements on different partitions all commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut setup = warehouse.session();
        setup
            .sql(
                "CREATE TABLE counters (p INT, n INT) PARTITION BY RANGE (p) (
                   PARTITION a VALUES LESS THAN (10), PARTITION b VALUES LESS THAN (20));
                 INSERT INTO counters VALUES (1, 0), (11, 0);",
            )
            .await
            .unwrap();
        let run = |sql: &'static str| {
            let warehouse = warehouse.clone();
            tokio::spawn(async move {
                let mut session = warehouse.session();
                let mut committed = 0u32;
                for _ in 0..6 {
                    match session.sql(sql).await {
                        Ok(_) => committed += 1,
                        Err(e) => assert!(e.to_string().contains("conflict"), "{e}"),
                    }
                }
                committed
            })
        };
        let same = [
            run("UPDATE counters SET n = n + 1 WHERE p = 1"),
            run("UPDATE counters SET n = n + 1 WHERE p = 1"),
        ];
        let other = run("UPDATE counters SET n = n + 1 WHERE p = 11");
        let mut committed_same = 0;
        for task in same {
            committed_same += task.await.unwrap();
        }
        let committed_other = other.await.unwrap();
        assert!(committed_same >= 6, "at least one writer always wins");
        assert_eq!(committed_other, 6, "another partition never conflicts");
        let result = setup
            .sql("SELECT p, n FROM counters ORDER BY p")
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&result[0].batches)
            .unwrap()
            .to_string();
        assert!(
            text.contains(&format!("| 1  | {committed_same} "))
                && text.contains(&format!("| 11 | {committed_other} ")),
            "{text} (same: {committed_same}, other: {committed_other})"
        );
    }

    async fn count(session: &mut crate::Session, sql: &str) -> String {
        let result = session.sql(sql).await.unwrap();
        arrow::util::pretty::pretty_format_batches(&result[0].batches)
            .unwrap()
            .to_string()
    }

    /// Several sessions run the same insert-if-absent MERGE of new keys at once: each key is
    /// inserted once. The losers of the commit race run again on the newer snapshot (the
    /// retries are in the query log), where the keys are matched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_merges_insert_each_new_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut setup = warehouse.session();
        setup
            .sql(
                "CREATE TABLE target (k INT, v INT);
                 CREATE TABLE source (k INT, v INT);
                 INSERT INTO source SELECT CAST(value AS INT), 1 FROM generate_series(1, 12);",
            )
            .await
            .unwrap();
        let merges: Vec<_> = (0..4)
            .map(|_| {
                let warehouse = warehouse.clone();
                tokio::spawn(async move {
                    warehouse
                        .session()
                        .sql(
                            "MERGE INTO target t USING source s ON t.k = s.k
                             WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)",
                        )
                        .await
                })
            })
            .collect();
        for merge in merges {
            merge.await.unwrap().unwrap();
        }
        let text = count(
            &mut setup,
            "SELECT count(*) AS n, count(DISTINCT k) AS keys FROM target",
        )
        .await;
        assert!(text.contains("| 12 | 12   |"), "{text}");
        let retries = count(
            &mut setup,
            "SELECT sum(retries) > 0 AS retried FROM system.query_log WHERE query_text LIKE 'MERGE%'",
        )
        .await;
        assert!(retries.contains("true"), "{retries}");
    }
}
