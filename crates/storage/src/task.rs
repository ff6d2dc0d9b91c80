//! Scheduled tasks and alerts as the catalog keeps them, the record of each run or check, and
//! the lease that makes each scheduled run happen once among the servers sharing a warehouse.
//!
//! A task is a schema object (`CREATE TASK`), so it lives in the catalog next to stages and
//! file formats: its schedule, its upstream tasks, its retry and timeout policy, its condition
//! and its body are kept as written; what they mean (cron, intervals, SQL) is the query layer's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::{Record, day, stable_digest};

/// A task (`CREATE TASK`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    /// `SCHEDULE = '...'`: `USING CRON <expr> <time zone>` or `<n> <unit>`; none for a task
    /// that runs after others or on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// `AFTER a, b`: the tasks (`db.schema.task`) that must succeed before this one runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// `RETRIES = n`: attempts after the first.
    #[serde(default)]
    pub retries: u32,
    /// `RETRY_DELAY`: the wait before the first retry, in milliseconds; it doubles each time.
    #[serde(default)]
    pub retry_delay_ms: u64,
    /// `TIMEOUT`: an attempt still running after this long fails, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// `WHEN <condition>`: a boolean SQL expression; the run is skipped when it is not true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The statement or `BEGIN ... END` script, as written.
    pub body: String,
    /// The database and schema unqualified names in the body resolve in.
    pub database: String,
    /// See `database`.
    pub schema: String,
    /// Whether the scheduler runs it (`ALTER TASK ... RESUME`); tasks start suspended.
    pub resumed: bool,
    /// When it was last resumed: intervals count from here, and no earlier slot is run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<DateTime<Utc>>,
    /// `COMMENT = '...'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Who created it; the body runs as this user.
    pub owner: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// One attempt of one task (or a skip), kept under `_system/task_runs/<day>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRun {
    /// The task: `db.schema.task`.
    pub task: String,
    /// The run of the task graph this attempt belongs to (a schedule slot or an `EXECUTE TASK`).
    pub graph_run_id: String,
    /// The slot it ran for (the time `EXECUTE TASK` was called, for a manual run).
    pub scheduled_at: DateTime<Utc>,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    /// `SUCCEEDED`, `FAILED`, `SKIPPED` (an upstream task failed, or the condition was not
    /// true) or `CANCELLED` (timed out).
    pub status: String,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows its statements returned or changed.
    pub rows: u64,
    /// The query log id of its last statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<String>,
    /// What started it: `SCHEDULE`, `EXECUTE TASK` or `AFTER <task>`.
    pub trigger: String,
}

impl Record for TaskRun {
    const KIND: &'static str = "task_runs";

    fn bucket(&self) -> String {
        day(&self.started_at)
    }

    fn id(&self) -> String {
        format!(
            "{}-{:016x}-{}",
            self.graph_run_id,
            stable_digest(&self.task),
            self.attempt
        )
    }
}

/// The claim of one scheduled slot of one task by one server, written with put-if-absent: the
/// server that writes it runs the slot, every other one skips it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLease {
    /// The task: `db.schema.task`.
    pub task: String,
    /// The slot.
    pub scheduled_at: DateTime<Utc>,
    /// Who claimed it (a process id and host, for people reading the files).
    pub holder: String,
    /// When.
    pub claimed_at: DateTime<Utc>,
}

impl Record for TaskLease {
    const KIND: &'static str = "task_leases";

    fn bucket(&self) -> String {
        day(&self.scheduled_at)
    }

    fn id(&self) -> String {
        format!(
            "{:016x}-{}",
            stable_digest(&self.task),
            self.scheduled_at.timestamp_micros()
        )
    }
}

/// An alert (`CREATE ALERT`): on its schedule, a query is run; when it returns rows, the
/// action runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEntry {
    /// `SCHEDULE = '...'`, as for tasks.
    pub schedule: String,
    /// The query of `IF (EXISTS (<query>))`.
    pub condition: String,
    /// `THEN <action>` as written: `NOTIFY WEBHOOK 'url'`, or a statement (`EXECUTE TASK t`,
    /// `INSERT ...`).
    pub action: String,
    /// The database and schema unqualified names resolve in.
    pub database: String,
    /// See `database`.
    pub schema: String,
    /// Whether the scheduler checks it (`ALTER ALERT ... RESUME`); alerts start suspended.
    pub resumed: bool,
    /// When it was last resumed: its schedule counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<DateTime<Utc>>,
    /// `COMMENT = '...'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Who created it; the condition and action run as this user.
    pub owner: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// One check of one alert, kept under `_system/alert_history/<day>/`: every check leaves one,
/// fired or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRun {
    /// The alert: `db.schema.alert`.
    pub alert: String,
    /// The slot checked (the time of `EXECUTE ALERT`, for a manual check).
    pub scheduled_at: DateTime<Utc>,
    /// When the check started.
    pub checked_at: DateTime<Utc>,
    /// When the check and its action ended.
    pub finished_at: DateTime<Utc>,
    /// `FIRED` (the condition returned rows and the action ran), `NOT_FIRED`,
    /// `CONDITION_FAILED` or `ACTION_FAILED`.
    pub status: String,
    /// Rows the condition returned.
    pub rows: u64,
    /// The action, with secrets in it (a webhook's path) hidden.
    pub action: String,
    /// Attempts the action took (webhooks are retried).
    pub attempts: u32,
    /// Why the condition or the action failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The query log id of the condition's query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<String>,
    /// What started it: `SCHEDULE` or `EXECUTE ALERT`.
    pub trigger: String,
}

impl Record for AlertRun {
    const KIND: &'static str = "alert_history";

    fn bucket(&self) -> String {
        day(&self.checked_at)
    }

    fn id(&self) -> String {
        format!(
            "{:016x}-{}-{}",
            stable_digest(&self.alert),
            self.scheduled_at.timestamp_micros(),
            self.checked_at.timestamp_micros()
        )
    }
}
