//! How tasks run: a graph run, attempts with retries, and the scheduler inside `strata serve`.
//!
//! - **A graph run** starts at one task (a schedule's slot, or `EXECUTE TASK`) and runs every
//!   task `AFTER` it once all its upstream tasks in the run have succeeded. A task whose
//!   upstream task failed or was skipped is not run: it is recorded `SKIPPED`, naming why.
//! - **An attempt** runs the task's body (a statement or a `BEGIN ... END` script) in a fresh
//!   session as the task's owner, in the task's schema, within its `TIMEOUT` (stopped before it
//!   commits, or left to finish if its commit had begun, like any statement). A failed attempt
//!   is retried `RETRIES` times, after `RETRY_DELAY`, then twice that, and so on (at most an
//!   hour). A `WHEN` condition that is not true skips the run. A `RUN DATA TESTS` in the body
//!   fails the attempt when an ERROR test fails, as `dbt test` exits non-zero. Every attempt and skip is a
//!   [`TaskRun`] record, read by `system.task_runs`.
//! - **The scheduler** ([`super::scheduler::run_task_scheduler`]) looks every tick for the latest slot of each
//!   resumed scheduled task that came after the last one it handled. It claims the slot with a
//!   put-if-absent lease ([`TaskLease`]), as commits are written, so with several servers on
//!   one warehouse each slot runs once. Missed slots (the server was down) are not run one by
//!   one: the task runs once, for the most recent slot it missed. A run still going when its
//!   next slot comes makes that slot wait for the following one (runs never overlap).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use strata_storage::{TaskEntry, TaskRun};
use tokio::sync::Semaphore;

use crate::commit_gate::CommitGate;
use crate::error::{Error, Result};
use crate::parser::{self, DataTestStatement, Statement};
use crate::redact::redact;
use crate::result::StatementResult;
use crate::statement::data_tests;
use crate::warehouse::Warehouse;

/// The longest wait between two attempts of a task.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3_600);
/// The most tasks one graph run runs (a bound on a graph's size).
const MAX_GRAPH_TASKS: usize = 1_000;

/// The limits a server puts on every statement, which task runs keep too.
#[derive(Debug, Clone, Default)]
pub struct TaskLimits {
    /// The server's query slots: each attempt waits for one.
    pub slots: Option<Arc<Semaphore>>,
    /// The server's query timeout, for tasks without a `TIMEOUT` of their own.
    pub timeout: Option<Duration>,
}

/// The statements of a task's body: the inside of `BEGIN ... END`, or the body itself.
pub(crate) fn script_of(body: &str) -> &str {
    let trimmed = body.trim().trim_end_matches(';').trim_end();
    let upper = trimmed.to_ascii_uppercase();
    if upper.starts_with("BEGIN") && upper.ends_with("END") && trimmed.len() >= 8 {
        trimmed[5..trimmed.len() - 3].trim()
    } else {
        trimmed
    }
}

/// Runs the graph of tasks starting at `root`, for slot `scheduled_at`; returns every attempt
/// and skip, in the order they happened.
pub(crate) async fn run_graph(
    warehouse: &Warehouse,
    root: &str,
    scheduled_at: DateTime<Utc>,
    trigger: &str,
    limits: &TaskLimits,
) -> Result<Vec<TaskRun>> {
    let catalog = warehouse.refresh_catalog().await?;
    let tasks: BTreeMap<String, TaskEntry> = catalog.tasks().into_iter().collect();
    if !tasks.contains_key(root) {
        return Err(strata_storage::Error::ObjectNotFound {
            kind: "task",
            name: root.to_string(),
        }
        .into());
    }
    // The tasks reachable from the root, and for each its upstream tasks among them.
    let mut members: Vec<String> = vec![root.to_string()];
    let mut index = 0;
    while index < members.len() && members.len() < MAX_GRAPH_TASKS {
        let current = members[index].clone();
        for (name, task) in &tasks {
            if task.after.contains(&current) && !members.contains(name) {
                members.push(name.clone());
            }
        }
        index += 1;
    }
    let in_run: HashSet<&str> = members.iter().map(String::as_str).collect();
    let graph_run_id = uuid::Uuid::new_v4().to_string();
    // Task → whether it succeeded in this run.
    let mut outcome: HashMap<String, bool> = HashMap::new();
    let mut runs = Vec::new();
    // Run in dependency order: each pass runs the tasks whose upstream tasks are all done.
    while outcome.len() < members.len() {
        let ready: Vec<String> = members
            .iter()
            .filter(|m| !outcome.contains_key(*m))
            .filter(|m| {
                tasks[*m]
                    .after
                    .iter()
                    .filter(|u| in_run.contains(u.as_str()))
                    .all(|u| outcome.contains_key(u))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            let task = &tasks[&name];
            let failed_upstream = task.after.iter().find(|u| outcome.get(*u) == Some(&false));
            let task_trigger = if name == root {
                trigger.to_string()
            } else {
                format!("AFTER {}", task.after.join(", "))
            };
            if let Some(upstream) = failed_upstream {
                let now = Utc::now();
                let skip = TaskRun {
                    task: name.clone(),
                    graph_run_id: graph_run_id.clone(),
                    scheduled_at,
                    started_at: now,
                    finished_at: now,
                    attempt: 0,
                    status: "SKIPPED".to_string(),
                    error: Some(format!("upstream task {upstream} did not succeed")),
                    rows: 0,
                    query_id: None,
                    trigger: task_trigger,
                };
                record(warehouse, &skip).await;
                runs.push(skip);
                outcome.insert(name, false);
                continue;
            }
            let attempts = run_task(
                warehouse,
                &name,
                task,
                &graph_run_id,
                scheduled_at,
                &task_trigger,
                limits,
            )
            .await;
            let succeeded = attempts.last().is_some_and(|r| r.status == "SUCCEEDED");
            runs.extend(attempts);
            outcome.insert(name, succeeded);
        }
    }
    Ok(runs)
}

/// Runs one task: its condition, then attempts until one succeeds or the retries are spent.
async fn run_task(
    warehouse: &Warehouse,
    name: &str,
    task: &TaskEntry,
    graph_run_id: &str,
    scheduled_at: DateTime<Utc>,
    trigger: &str,
    limits: &TaskLimits,
) -> Vec<TaskRun> {
    let mut runs = Vec::new();
    let attempts = task.retries.saturating_add(1);
    for attempt in 1..=attempts {
        let started_at = Utc::now();
        let outcome = attempt_once(warehouse, task, limits).await;
        let (status, error, rows, query_id) = match outcome {
            Ok(Attempt::Ran { rows, query_id }) => ("SUCCEEDED", None, rows, query_id),
            Ok(Attempt::ConditionFalse) => (
                "SKIPPED",
                Some("its WHEN condition was not true".to_string()),
                0,
                None,
            ),
            // Errors quote statements, which may carry keys.
            Err((status, e)) => (status, Some(redact(&e.to_string())), 0, None),
        };
        let run = TaskRun {
            task: name.to_string(),
            graph_run_id: graph_run_id.to_string(),
            scheduled_at,
            started_at,
            finished_at: Utc::now(),
            attempt,
            status: status.to_string(),
            error,
            rows,
            query_id,
            trigger: trigger.to_string(),
        };
        record(warehouse, &run).await;
        let done = run.status != "FAILED" && run.status != "CANCELLED";
        runs.push(run);
        if done {
            break;
        }
        if attempt < attempts {
            let delay = Duration::from_millis(task.retry_delay_ms)
                .saturating_mul(2u32.saturating_pow(attempt - 1))
                .min(MAX_RETRY_DELAY);
            tracing::warn!(task = %name, attempt, retry_in_ms = delay.as_millis() as u64, "task attempt failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
    // A run its condition skipped is not a success: the tasks after it are skipped too.
    runs
}

/// What one attempt did.
enum Attempt {
    Ran { rows: u64, query_id: Option<String> },
    ConditionFalse,
}

/// One attempt: waits for a query slot, checks the condition, runs the body within the
/// timeout. The error comes with its status (`FAILED` or `CANCELLED`).
async fn attempt_once(
    warehouse: &Warehouse,
    task: &TaskEntry,
    limits: &TaskLimits,
) -> std::result::Result<Attempt, (&'static str, Error)> {
    let _slot = match &limits.slots {
        Some(slots) => Some(
            Arc::clone(slots)
                .acquire_owned()
                .await
                .map_err(|_| ("CANCELLED", Error::Cancelled))?,
        ),
        None => None,
    };
    let timeout = task
        .timeout_ms
        .map(Duration::from_millis)
        .or(limits.timeout);
    let run = Box::pin(async {
        let mut session = warehouse.session();
        session.set_user(&task.owner, false);
        session.set_schema(&task.database, &task.schema)?;
        if let Some(condition) = &task.condition {
            let result = session.sql(&format!("SELECT ({condition}) AS run")).await?;
            if !is_true(&result) {
                return Ok(Attempt::ConditionFalse);
            }
        }
        let mut rows = 0u64;
        for statement in parser::parse(script_of(&task.body))? {
            let result = session.execute(&statement).await?;
            rows = rows.saturating_add(rows_of(&result));
            // As `dbt test` exits non-zero, a failing ERROR test fails the task.
            if let Statement::DataTest(run) = &statement.statement
                && matches!(run.as_ref(), DataTestStatement::Run { .. })
            {
                let failed = data_tests::failed_tests(&result);
                if !failed.is_empty() {
                    return Err(Error::Plan(format!(
                        "data tests failed: {} (see system.data_test_results)",
                        failed.join(", ")
                    )));
                }
            }
        }
        Ok::<_, Error>(Attempt::Ran {
            rows,
            query_id: session.last_query_id().map(str::to_string),
        })
    });
    match CommitGate::run_with_timeout(run, timeout).await {
        Ok(outcome) => outcome.map_err(|e| ("FAILED", e)),
        Err(stopped) => Err((
            "CANCELLED",
            Error::Plan(format!(
                "timed out after {} s ({} statement(s) of the body had finished; the running \
                 one committed nothing)",
                timeout.unwrap_or_default().as_secs(),
                stopped.statements_finished
            )),
        )),
    }
}

/// Whether a condition's one value is true.
fn is_true(results: &[StatementResult]) -> bool {
    let Some(batch) = results.first().and_then(|r| r.batches.first()) else {
        return false;
    };
    if batch.num_rows() == 0 || batch.num_columns() == 0 {
        return false;
    }
    batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .is_some_and(|b| arrow::array::Array::is_valid(b, 0) && b.value(0))
}

/// The rows a statement changed (`count` of a DML result) or returned.
fn rows_of(result: &StatementResult) -> u64 {
    let schema = &result.schema;
    if schema.fields().len() == 1 && schema.field(0).name() == "count" {
        let counted: u64 = result
            .batches
            .iter()
            .filter_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::UInt64Array>()
            })
            .flat_map(|a| a.iter().flatten())
            .sum();
        return counted;
    }
    result.row_count() as u64
}

/// Writes a run record; a failure to record is logged, never the run's failure.
async fn record(warehouse: &Warehouse, run: &TaskRun) {
    crate::telemetry::task_run(&run.status);
    if let Err(e) = warehouse.records().put(run).await {
        tracing::warn!(task = %run.task, error = %e, "task run not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_bodies_lose_begin_and_end() {
        assert_eq!(
            script_of("BEGIN SELECT 1; SELECT 2; END"),
            "SELECT 1; SELECT 2;"
        );
        assert_eq!(script_of("begin\n SELECT 1;\nend;"), "SELECT 1;");
        assert_eq!(script_of("SELECT 1"), "SELECT 1");
        assert_eq!(script_of("SELECT backend"), "SELECT backend");
    }
}
