//! `system.task_runs` (every attempt and skip of every task), `system.task_graph` (which task
//! runs after which) and `system.alert_history` (every check of every alert), from the
//! catalog's tasks and the records the task runner and alert checks leave (see
//! `crate::statement::task_runs` and `crate::statement::alerts`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use strata_storage::{AlertRun, TaskRun};

use crate::catalog::system_parts::{mem_table, ts_field};
use crate::error::Result;
use crate::warehouse::Warehouse;

/// `system.task_runs`, oldest first.
pub(crate) async fn task_runs(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let mut runs: Vec<TaskRun> = warehouse.records().read_all().await?;
    runs.sort_by(|a, b| {
        (a.started_at, &a.task, a.attempt).cmp(&(b.started_at, &b.task, b.attempt))
    });
    let schema = Arc::new(Schema::new(vec![
        Field::new("task", DataType::Utf8, false),
        ts_field("scheduled_at"),
        ts_field("started_at"),
        ts_field("finished_at"),
        Field::new("attempt", DataType::UInt32, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("rows", DataType::UInt64, false),
        Field::new("query_id", DataType::Utf8, true),
        Field::new("graph_run_id", DataType::Utf8, false),
        Field::new("trigger", DataType::Utf8, false),
    ]));
    let mut task = StringBuilder::new();
    let mut times: Vec<TimestampMicrosecondBuilder> = (0..3)
        .map(|_| TimestampMicrosecondBuilder::new().with_timezone("UTC"))
        .collect();
    let mut attempt = UInt32Builder::new();
    let mut status = StringBuilder::new();
    let mut error = StringBuilder::new();
    let mut rows = UInt64Builder::new();
    let mut query_id = StringBuilder::new();
    let mut graph = StringBuilder::new();
    let mut trigger = StringBuilder::new();
    for r in &runs {
        task.append_value(&r.task);
        for (builder, t) in times
            .iter_mut()
            .zip([r.scheduled_at, r.started_at, r.finished_at])
        {
            builder.append_value(t.timestamp_micros());
        }
        attempt.append_value(r.attempt);
        status.append_value(&r.status);
        error.append_option(r.error.as_deref());
        rows.append_value(r.rows);
        query_id.append_option(r.query_id.as_deref());
        graph.append_value(&r.graph_run_id);
        trigger.append_value(&r.trigger);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(task.finish())];
    columns.extend(times.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(attempt.finish()));
    columns.push(Arc::new(status.finish()));
    columns.push(Arc::new(error.finish()));
    columns.push(Arc::new(rows.finish()));
    columns.push(Arc::new(query_id.finish()));
    columns.push(Arc::new(graph.finish()));
    columns.push(Arc::new(trigger.finish()));
    mem_table(schema, columns)
}

/// `system.task_graph`: one row per edge (a task and a task it runs after), and one row with no
/// upstream task for each task that starts a graph.
pub(crate) async fn task_graph(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let catalog = warehouse.refresh_catalog().await?;
    let tasks = catalog.tasks();
    let schema = Arc::new(Schema::new(vec![
        Field::new("task", DataType::Utf8, false),
        Field::new("upstream_task", DataType::Utf8, true),
        Field::new("schedule", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, false),
    ]));
    let mut task = StringBuilder::new();
    let mut upstream = StringBuilder::new();
    let mut schedule = StringBuilder::new();
    let mut state = StringBuilder::new();
    for (name, entry) in &tasks {
        let edges: Vec<Option<&str>> = if entry.after.is_empty() {
            vec![None]
        } else {
            entry.after.iter().map(|u| Some(u.as_str())).collect()
        };
        for edge in edges {
            task.append_value(name);
            upstream.append_option(edge);
            schedule.append_option(entry.schedule.as_deref());
            state.append_value(if entry.resumed {
                "started"
            } else {
                "suspended"
            });
        }
    }
    mem_table(
        schema,
        vec![
            Arc::new(task.finish()),
            Arc::new(upstream.finish()),
            Arc::new(schedule.finish()),
            Arc::new(state.finish()),
        ],
    )
}

/// `system.alert_history`, oldest first.
pub(crate) async fn alert_history(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let mut runs: Vec<AlertRun> = warehouse.records().read_all().await?;
    runs.sort_by(|a, b| (a.checked_at, &a.alert).cmp(&(b.checked_at, &b.alert)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("alert", DataType::Utf8, false),
        ts_field("scheduled_at"),
        ts_field("checked_at"),
        ts_field("finished_at"),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("attempts", DataType::UInt32, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("query_id", DataType::Utf8, true),
        Field::new("trigger", DataType::Utf8, false),
    ]));
    let mut alert = StringBuilder::new();
    let mut times: Vec<TimestampMicrosecondBuilder> = (0..3)
        .map(|_| TimestampMicrosecondBuilder::new().with_timezone("UTC"))
        .collect();
    let mut status = StringBuilder::new();
    let mut rows = UInt64Builder::new();
    let mut action = StringBuilder::new();
    let mut attempts = UInt32Builder::new();
    let mut error = StringBuilder::new();
    let mut query_id = StringBuilder::new();
    let mut trigger = StringBuilder::new();
    for r in &runs {
        alert.append_value(&r.alert);
        for (builder, t) in times
            .iter_mut()
            .zip([r.scheduled_at, r.checked_at, r.finished_at])
        {
            builder.append_value(t.timestamp_micros());
        }
        status.append_value(&r.status);
        rows.append_value(r.rows);
        action.append_value(&r.action);
        attempts.append_value(r.attempts);
        error.append_option(r.error.as_deref());
        query_id.append_option(r.query_id.as_deref());
        trigger.append_value(&r.trigger);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(alert.finish())];
    columns.extend(times.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(status.finish()));
    columns.push(Arc::new(rows.finish()));
    columns.push(Arc::new(action.finish()));
    columns.push(Arc::new(attempts.finish()));
    columns.push(Arc::new(error.finish()));
    columns.push(Arc::new(query_id.finish()));
    columns.push(Arc::new(trigger.finish()));
    mem_table(schema, columns)
}
