//! The scheduler inside `strata serve`: runs resumed scheduled tasks and checks resumed alerts
//! on their schedules. Each slot is claimed with a put-if-absent lease ([`TaskLease`]), so with
//! several servers on one warehouse each slot runs once; missed slots make one catch-up run;
//! a run still going when its next slot comes makes that slot wait (see
//! [`super::task_runs`] for what a task run is, [`super::alerts`] for an alert check).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use strata_storage::TaskLease;

use crate::schedule::Schedule;
use crate::statement::alerts;
use crate::statement::task_runs::{self, TaskLimits};
use crate::warehouse::Warehouse;

/// Runs resumed scheduled tasks on their schedules, and checks resumed alerts on theirs (see
/// [`super::alerts`]), looking every `tick`, until dropped (see the module's docs for the
/// catch-up and overlap rules). Each attempt runs inside `limits`.
pub async fn run_task_scheduler(warehouse: Warehouse, tick: Duration, limits: TaskLimits) {
    let holder = format!(
        "pid {} on {}",
        std::process::id(),
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string())
    );
    let mut slots = Slots {
        holder,
        handled: HashMap::new(),
        running: Arc::default(),
    };
    loop {
        tokio::time::sleep(tick).await;
        let Ok(catalog) = warehouse.refresh_catalog().await else {
            continue;
        };
        let now = Utc::now();
        for (name, task) in catalog.tasks() {
            let scheduled = task.schedule.as_deref().filter(|_| task.resumed);
            let Some(slot) = slots
                .claim(&warehouse, &name, scheduled, task.resumed_at, now)
                .await
            else {
                continue;
            };
            let running = Running(Arc::clone(&slots.running), name.clone());
            let (warehouse, limits) = (warehouse.clone(), limits.clone());
            tokio::spawn(async move {
                let _running = running;
                let outcome = Box::pin(task_runs::run_graph(
                    &warehouse, &name, slot, "SCHEDULE", &limits,
                ))
                .await;
                if let Err(e) = outcome {
                    tracing::warn!(task = %name, error = %e, "task graph did not run");
                }
            });
        }
        // Alerts are checked by the same rules, under their own names in the leases.
        for (name, alert) in catalog.alerts() {
            let key = format!("alert:{name}");
            let scheduled = Some(alert.schedule.as_str()).filter(|_| alert.resumed);
            let Some(slot) = slots
                .claim(&warehouse, &key, scheduled, alert.resumed_at, now)
                .await
            else {
                continue;
            };
            let running = Running(Arc::clone(&slots.running), key);
            let (warehouse, limits) = (warehouse.clone(), limits.clone());
            tokio::spawn(async move {
                let _running = running;
                Box::pin(alerts::check(
                    &warehouse, &name, &alert, slot, "SCHEDULE", &limits,
                ))
                .await;
            });
        }
    }
}

/// Marks a task or alert as running here until dropped: when its run ends, and also when the
/// run panics or is aborted, so it is never stuck as running.
struct Running(Arc<std::sync::Mutex<HashSet<String>>>, String);

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// What a scheduler knows of the slots of tasks and alerts.
struct Slots {
    /// Who claims slots: a process id and host.
    holder: String,
    /// Task or alert → the last slot this server handled (ran, or found claimed).
    handled: HashMap<String, DateTime<Utc>>,
    /// Tasks and alerts whose run is still going here.
    running: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl Slots {
    /// The slot `name` should run now, claimed by this server (then marked running), or
    /// `None`: not scheduled or suspended (`schedule` is `None`), no new slot, still running,
    /// or another server claimed it.
    async fn claim(
        &mut self,
        warehouse: &Warehouse,
        name: &str,
        schedule: Option<&str>,
        resumed_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let (Some(text), Some(anchor)) = (schedule, resumed_at) else {
            self.handled.remove(name);
            return None;
        };
        let schedule = Schedule::parse(text).ok()?;
        let after = self.handled.get(name).copied().unwrap_or(anchor);
        let slot = schedule.latest_slot(anchor, after, now)?;
        if self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
        {
            return None;
        }
        self.handled.insert(name.to_string(), slot);
        let lease = TaskLease {
            task: name.to_string(),
            scheduled_at: slot,
            holder: self.holder.clone(),
            claimed_at: now,
        };
        match warehouse.records().claim(&lease).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(task = %name, error = %e, "could not claim a slot");
                self.handled.remove(name);
                return None;
            }
        }
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of a query as text, one string per row.
    async fn rows(warehouse: &Warehouse, sql: &str) -> Vec<String> {
        let results = warehouse.session().sql(sql).await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&results[0].batches)
            .unwrap()
            .to_string();
        text.lines()
            .skip(3)
            .filter(|l| l.starts_with('|'))
            .map(str::to_string)
            .collect()
    }

    /// Two servers share a warehouse whose task runs every 2 s with another task after it.
    /// After 5 s of downtime, the missed slots make one catch-up run, not two; then each slot
    /// runs once (one server claims it), and the downstream task always starts after the
    /// upstream one has finished.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_servers_run_each_slot_once_in_order_and_catch_up_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let first = Warehouse::open(root).await.unwrap();
        let second = Warehouse::open(root).await.unwrap();
        first
            .session()
            .sql(
                "CREATE TABLE hits (n INT); CREATE TABLE follows (n BIGINT);
                 CREATE TASK tick SCHEDULE = '2 SECONDS' AS INSERT INTO hits VALUES (1);
                 CREATE TASK follow AFTER tick AS INSERT INTO follows SELECT count(*) FROM hits;
                 ALTER TASK tick RESUME",
            )
            .await
            .unwrap();
        // No server runs while two slots pass.
        tokio::time::sleep(Duration::from_millis(5_000)).await;
        let tick = Duration::from_millis(100);
        let started = Utc::now();
        let servers = [
            tokio::spawn(run_task_scheduler(
                first.clone(),
                tick,
                TaskLimits::default(),
            )),
            tokio::spawn(run_task_scheduler(
                second.clone(),
                tick,
                TaskLimits::default(),
            )),
        ];
        tokio::time::sleep(Duration::from_millis(4_500)).await;
        for server in servers {
            server.abort();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let slots = rows(
            &first,
            "SELECT CAST(scheduled_at AS BIGINT) FROM system.task_runs \
             WHERE task = 'main.public.tick' ORDER BY 1",
        )
        .await;
        let slots: Vec<i64> = slots
            .iter()
            .filter_map(|l| l.trim_matches(|c| c == '|' || c == ' ').parse().ok())
            .collect();
        let distinct: HashSet<i64> = slots.iter().copied().collect();
        assert_eq!(distinct.len(), slots.len(), "a slot ran twice: {slots:?}");
        // The slots missed while no server ran (two of them) make one run.
        let started_micros = started.timestamp_micros();
        let missed = slots.iter().filter(|s| **s <= started_micros).count();
        assert_eq!(missed, 1, "{slots:?} (servers started at {started_micros})");
        assert!(slots.len() >= 2, "the schedule went on: {slots:?}");
        let out_of_order = rows(
            &first,
            "SELECT count(*) FROM system.task_runs f JOIN system.task_runs t \
             ON f.graph_run_id = t.graph_run_id \
             WHERE f.task = 'main.public.follow' AND t.task = 'main.public.tick' \
             AND (f.started_at < t.finished_at OR f.status <> 'SUCCEEDED')",
        )
        .await;
        assert_eq!(out_of_order, ["| 0        |"]);
        let follows = rows(&first, "SELECT count(*) FROM follows").await;
        assert_eq!(follows, [format!("| {:<8} |", slots.len())]);
    }
}
