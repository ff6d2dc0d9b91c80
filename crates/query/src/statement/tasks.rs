//! `CREATE TASK`, `ALTER TASK ... RESUME | SUSPEND`, `EXECUTE TASK`, `DROP TASK`, `SHOW TASKS`.
//!
//! A task is a schema object in the catalog ([`strata_storage::TaskEntry`]): its schedule,
//! upstream tasks, retry and timeout policy, condition and body, checked when it is created
//! (the schedule parses, the body and condition parse, the upstream tasks exist and make no
//! cycle). Tasks are created suspended, as in Snowflake. How they run is [`super::task_runs`].

use chrono::Utc;
use datafusion::sql::sqlparser::ast::ObjectName;
use strata_storage::{Error as StorageError, TaskEntry};

use crate::config::parse_duration;
use crate::error::{Error, Result};
use crate::parser::{self, CreateTask, TaskStatement};
use crate::redact::redact;
use crate::result::StatementResult;
use crate::schedule::Schedule;
use crate::session::Session;
use crate::statement::task_runs::{self, TaskLimits};

/// Runs a task statement.
pub(crate) async fn execute(
    session: &mut Session,
    statement: &TaskStatement,
) -> Result<StatementResult> {
    match statement {
        TaskStatement::Create(def) => create(session, def).await,
        TaskStatement::Resume { name, resume } => resume_or_suspend(session, name, *resume).await,
        TaskStatement::Execute { name } => {
            let qualified = existing(session, name)?;
            let runs = task_runs::run_graph(
                session.warehouse(),
                &qualified,
                Utc::now(),
                "EXECUTE TASK",
                &TaskLimits::default(),
            )
            .await?;
            Ok(StatementResult::strings(
                &["task_name", "attempt", "status", "error", "rows"],
                runs.iter()
                    .map(|r| {
                        vec![
                            r.task.clone(),
                            r.attempt.to_string(),
                            r.status.clone(),
                            r.error.clone().unwrap_or_default(),
                            r.rows.to_string(),
                        ]
                    })
                    .collect(),
            ))
        }
        TaskStatement::Drop { name, if_exists } => drop(session, name, *if_exists).await,
        TaskStatement::Show => show(session).await,
    }
}

/// `db.schema.task` of an existing task.
fn existing(session: &Session, name: &ObjectName) -> Result<String> {
    let (db, schema, task) = session.qualify_table(name)?;
    let qualified = format!("{db}.{schema}.{task}");
    let catalog = session.warehouse().catalog();
    if catalog.schema(&db, &schema)?.tasks.contains_key(&task) {
        Ok(qualified)
    } else {
        Err(StorageError::ObjectNotFound {
            kind: "task",
            name: qualified,
        }
        .into())
    }
}

async fn create(session: &Session, def: &CreateTask) -> Result<StatementResult> {
    let (db, schema, name) = session.qualify_table(&def.name)?;
    let qualified = format!("{db}.{schema}.{name}");
    if let Some(text) = &def.schedule {
        Schedule::parse(text)?;
        if !def.after.is_empty() {
            return Err(Error::Plan(format!(
                "CREATE TASK {qualified}: a task runs on a SCHEDULE or AFTER other tasks, not \
                 both (the tasks after a scheduled one run in its graph)"
            )));
        }
    }
    let mut after = Vec::new();
    for upstream in &def.after {
        let upstream = existing(session, upstream)?;
        if upstream == qualified {
            return Err(Error::Plan(format!(
                "CREATE TASK {qualified}: a task cannot run after itself"
            )));
        }
        after.push(upstream);
    }
    let millis = |text: &Option<String>| -> Result<Option<u64>> {
        text.as_deref()
            .map(|t| parse_duration(t).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
            .transpose()
    };
    // The body and condition must parse now; names in them resolve when the task runs.
    let statements = parser::parse(task_runs::script_of(&def.body))?;
    if statements.is_empty() {
        return Err(Error::Plan(format!(
            "CREATE TASK {qualified}: the body has no statement"
        )));
    }
    if let Some(condition) = &def.condition {
        parser::parse(&format!("SELECT {condition}"))?;
    }
    let entry = TaskEntry {
        schedule: def.schedule.clone(),
        after: after.clone(),
        retries: def.retries.unwrap_or(0),
        retry_delay_ms: millis(&def.retry_delay)?.unwrap_or(0),
        timeout_ms: millis(&def.timeout)?,
        condition: def.condition.clone(),
        body: def.body.clone(),
        database: db.clone(),
        schema: schema.clone(),
        resumed: false,
        resumed_at: None,
        comment: def.comment.clone(),
        owner: session.user_name(),
        created_at: Utc::now(),
    };
    let mut existed = false;
    session
        .warehouse()
        .update_catalog(|c| {
            // Replacing a task must not close a cycle through the tasks after it.
            let graph = c.tasks();
            let mut stack: Vec<&str> = after.iter().map(String::as_str).collect();
            let mut seen = std::collections::HashSet::new();
            while let Some(task) = stack.pop() {
                if task == qualified {
                    return Err(StorageError::InvalidArgument(format!(
                        "CREATE TASK {qualified}: AFTER {} would make a cycle",
                        after.join(", ")
                    )));
                }
                if seen.insert(task.to_string())
                    && let Some((_, upstream)) = graph.iter().find(|(n, _)| n == task)
                {
                    stack.extend(upstream.after.iter().map(String::as_str));
                }
            }
            let tasks = &mut c.schema_mut(&db, &schema)?.tasks;
            existed = tasks.contains_key(&name);
            if existed && def.if_not_exists {
                return Ok(());
            }
            if existed && !def.or_replace {
                return Err(StorageError::NameTaken {
                    name: qualified.clone(),
                    kind: "task",
                });
            }
            tasks.insert(name.clone(), entry.clone());
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(if existed && def.if_not_exists {
        format!("task {qualified} already exists")
    } else {
        format!("created task {qualified} (suspended: ALTER TASK {qualified} RESUME)")
    }))
}

async fn resume_or_suspend(
    session: &Session,
    name: &ObjectName,
    resume: bool,
) -> Result<StatementResult> {
    let qualified = existing(session, name)?;
    let (db, schema, task) = session.qualify_table(name)?;
    session
        .warehouse()
        .update_catalog(|c| {
            let entry = c
                .schema_mut(&db, &schema)?
                .tasks
                .get_mut(&task)
                .ok_or_else(|| StorageError::ObjectNotFound {
                    kind: "task",
                    name: qualified.clone(),
                })?;
            if entry.resumed != resume {
                entry.resumed = resume;
                entry.resumed_at = resume.then(Utc::now);
            }
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(format!(
        "task {qualified} {}",
        if resume { "resumed" } else { "suspended" }
    )))
}

async fn drop(session: &Session, name: &ObjectName, if_exists: bool) -> Result<StatementResult> {
    let (db, schema, task) = session.qualify_table(name)?;
    let qualified = format!("{db}.{schema}.{task}");
    let mut dropped = false;
    session
        .warehouse()
        .update_catalog(|c| {
            let dependents: Vec<String> = c
                .tasks()
                .into_iter()
                .filter(|(_, t)| t.after.contains(&qualified))
                .map(|(n, _)| n)
                .collect();
            if !dependents.is_empty() {
                return Err(StorageError::InvalidArgument(format!(
                    "DROP TASK {qualified}: {} run(s) after it; drop or replace them first",
                    dependents.join(", ")
                )));
            }
            dropped = c.schema_mut(&db, &schema)?.tasks.remove(&task).is_some();
            if !dropped && !if_exists {
                return Err(StorageError::ObjectNotFound {
                    kind: "task",
                    name: qualified.clone(),
                });
            }
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(if dropped {
        format!("dropped task {qualified}")
    } else {
        "nothing to drop".to_string()
    }))
}

/// `SHOW TASKS`: the tasks of the current database, with their state and next slot.
async fn show(session: &Session) -> Result<StatementResult> {
    let catalog = session.warehouse().refresh_catalog().await?;
    let (database, _) = session.current_schema();
    let now = Utc::now();
    let mut rows = Vec::new();
    for (name, task) in catalog.tasks() {
        if task.database != database {
            continue;
        }
        let next = match (&task.schedule, task.resumed, task.resumed_at) {
            (Some(text), true, Some(anchor)) => Schedule::parse(text)
                .ok()
                .and_then(|s| s.next_slot(anchor, now))
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let short = name.rsplit('.').next().unwrap_or_default().to_string();
        rows.push(vec![
            short,
            task.database.clone(),
            task.schema.clone(),
            task.owner.clone(),
            if task.resumed { "started" } else { "suspended" }.to_string(),
            task.schedule.clone().unwrap_or_default(),
            task.after.join(", "),
            // A body may carry keys (`COPY ... CREDENTIALS = (...)`): shown redacted.
            task.condition.as_deref().map(redact).unwrap_or_default(),
            redact(&task.body),
            next,
            task.comment.clone().unwrap_or_default(),
        ]);
    }
    Ok(StatementResult::strings(
        &[
            "name",
            "database_name",
            "schema_name",
            "owner",
            "state",
            "schedule",
            "predecessors",
            "condition",
            "definition",
            "next_scheduled_time",
            "comment",
        ],
        rows,
    ))
}
