//! `CREATE ALERT`, `ALTER ALERT ... RESUME | SUSPEND`, `EXECUTE ALERT`, `DROP ALERT`,
//! `SHOW ALERTS`, and what one check of an alert does.
//!
//! An alert is a schema object in the catalog ([`strata_storage::AlertEntry`]), created
//! suspended as in Snowflake. `strata serve` checks resumed alerts on their schedules, in the
//! same scheduler and with the same put-if-absent leases as tasks, so among servers sharing a
//! warehouse each slot is checked once ([`super::scheduler::run_task_scheduler`]).
//!
//! A check runs the condition's query as the alert's owner, counting its rows and keeping a
//! sample of five. When there are rows, the action runs:
//! - `NOTIFY WEBHOOK 'url'` posts a JSON object (alert, slot, time, rows, sample, query id) to
//!   the URL, with a 10 s timeout per attempt, retried twice after 1 s and 2 s; any 2xx answer
//!   is success. Only admins may create one (the server would call any address asked).
//! - Anything else is a statement, run as the owner: `EXECUTE TASK t` runs a task graph.
//!
//! Every check leaves one [`AlertRun`] in `system.alert_history`, fired or not. A webhook's
//! path and query (where services put their tokens) are never shown: not in `SHOW ALERTS`, not
//! in the history, not in errors.

use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::sql::sqlparser::ast::ObjectName;
use futures::StreamExt;
use strata_storage::{AlertEntry, AlertRun, Error as StorageError};

use crate::error::{Error, Result};
use crate::parser::{self, AlertStatement, CreateAlert};
use crate::redact::redact;
use crate::result::StatementResult;
use crate::schedule::Schedule;
use crate::session::Session;
use crate::statement::task_runs::TaskLimits;
use crate::warehouse::Warehouse;

/// Rows of the condition kept as the sample a webhook carries.
const SAMPLE_ROWS: usize = 5;
/// Attempts of a webhook post.
const WEBHOOK_ATTEMPTS: u32 = 3;
/// The time one webhook attempt may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs an alert statement.
pub(crate) async fn execute(
    session: &mut Session,
    statement: &AlertStatement,
) -> Result<StatementResult> {
    match statement {
        AlertStatement::Create(def) => create(session, def).await,
        AlertStatement::Resume { name, resume } => resume_or_suspend(session, name, *resume).await,
        AlertStatement::Execute { name } => {
            let (qualified, alert) = existing(session, name)?;
            let run = check(
                session.warehouse(),
                &qualified,
                &alert,
                Utc::now(),
                "EXECUTE ALERT",
                &TaskLimits::default(),
            )
            .await;
            Ok(StatementResult::strings(
                &["alert_name", "status", "rows", "attempts", "error"],
                vec![vec![
                    run.alert,
                    run.status,
                    run.rows.to_string(),
                    run.attempts.to_string(),
                    run.error.unwrap_or_default(),
                ]],
            ))
        }
        AlertStatement::Drop { name, if_exists } => drop_alert(session, name, *if_exists).await,
        AlertStatement::Show => show(session).await,
    }
}

/// The action of an alert.
enum Action {
    Webhook(url::Url),
    Statement(String),
}

impl Action {
    /// Reads `THEN <action>` as stored.
    fn parse(text: &str) -> Result<Action> {
        let trimmed = text.trim();
        let upper = trimmed.to_ascii_uppercase();
        let Some(rest) = upper
            .strip_prefix("NOTIFY")
            .map(str::trim_start)
            .filter(|r| r.starts_with("WEBHOOK"))
        else {
            return Ok(Action::Statement(trimmed.to_string()));
        };
        // The same offset in the original text (upper-casing ASCII keeps byte offsets).
        let literal = trimmed[trimmed.len() - rest.len() + "WEBHOOK".len()..].trim();
        let url = literal
            .strip_prefix('\'')
            .and_then(|l| l.strip_suffix('\''))
            .ok_or_else(|| {
                Error::Parse("NOTIFY WEBHOOK 'url': the URL is a quoted string".to_string())
            })?;
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::Plan(format!(
                "NOTIFY WEBHOOK: not a URL ({e}): {}",
                shown_url_text(url)
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(Error::Plan(format!(
                "NOTIFY WEBHOOK: an http:// or https:// URL with a host, not {}",
                shown_url(&parsed)
            )));
        }
        Ok(Action::Webhook(parsed))
    }

    /// The action as shown to people: a webhook without its path and query.
    fn shown(&self) -> String {
        match self {
            Action::Webhook(url) => format!("NOTIFY WEBHOOK '{}'", shown_url(url)),
            Action::Statement(sql) => redact(sql),
        }
    }
}

/// A URL without what may be a secret: scheme, host and port only.
fn shown_url(url: &url::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let hidden = if url.path() != "/" || url.query().is_some() {
        "/…"
    } else {
        ""
    };
    format!(
        "{}://{}{port}{hidden}",
        url.scheme(),
        url.host_str().unwrap_or_default()
    )
}

/// What of a string that is not a URL can be shown: its scheme, if it has one.
fn shown_url_text(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, _)) if scheme.len() < 16 => format!("{scheme}://…"),
        _ => "…".to_string(),
    }
}

/// `db.schema.alert` and the entry of an existing alert.
fn existing(session: &Session, name: &ObjectName) -> Result<(String, AlertEntry)> {
    let (db, schema, alert) = session.qualify_table(name)?;
    let qualified = format!("{db}.{schema}.{alert}");
    let catalog = session.warehouse().catalog();
    match catalog.schema(&db, &schema)?.alerts.get(&alert) {
        Some(entry) => Ok((qualified, entry.clone())),
        None => Err(StorageError::ObjectNotFound {
            kind: "alert",
            name: qualified,
        }
        .into()),
    }
}

async fn create(session: &Session, def: &CreateAlert) -> Result<StatementResult> {
    let (db, schema, name) = session.qualify_table(&def.name)?;
    let qualified = format!("{db}.{schema}.{name}");
    Schedule::parse(&def.schedule)?;
    // The condition must plan now (a wrong column fails here, not at 2 a.m.); the action
    // must parse.
    let query = parser::parse(&def.condition)?;
    let [condition] = query.as_slice() else {
        return Err(Error::Plan(format!(
            "CREATE ALERT {qualified}: the condition is one query"
        )));
    };
    if !Session::is_query(condition) {
        return Err(Error::Plan(format!(
            "CREATE ALERT {qualified}: the condition is a query (SELECT ...), which changes \
             nothing"
        )));
    }
    session.query_schema(condition, None).await?;
    match Action::parse(&def.action)? {
        Action::Webhook(_) if !session.is_admin() => {
            return Err(Error::PermissionDenied(format!(
                "CREATE ALERT {qualified}: only admins may create an alert that calls a webhook"
            )));
        }
        Action::Webhook(_) => {}
        Action::Statement(sql) => {
            if parser::parse(&sql)?.len() != 1 {
                return Err(Error::Plan(format!(
                    "CREATE ALERT {qualified}: THEN runs one statement"
                )));
            }
        }
    }
    let entry = AlertEntry {
        schedule: def.schedule.clone(),
        condition: def.condition.clone(),
        action: def.action.clone(),
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
            let alerts = &mut c.schema_mut(&db, &schema)?.alerts;
            existed = alerts.contains_key(&name);
            if existed && def.if_not_exists {
                return Ok(());
            }
            if existed && !def.or_replace {
                return Err(StorageError::NameTaken {
                    name: qualified.clone(),
                    kind: "alert",
                });
            }
            alerts.insert(name.clone(), entry.clone());
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(if existed && def.if_not_exists {
        format!("alert {qualified} already exists")
    } else {
        format!("created alert {qualified} (suspended: ALTER ALERT {qualified} RESUME)")
    }))
}

async fn resume_or_suspend(
    session: &Session,
    name: &ObjectName,
    resume: bool,
) -> Result<StatementResult> {
    let (qualified, _) = existing(session, name)?;
    let (db, schema, alert) = session.qualify_table(name)?;
    session
        .warehouse()
        .update_catalog(|c| {
            let entry = c
                .schema_mut(&db, &schema)?
                .alerts
                .get_mut(&alert)
                .ok_or_else(|| StorageError::ObjectNotFound {
                    kind: "alert",
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
        "alert {qualified} {}",
        if resume { "resumed" } else { "suspended" }
    )))
}

async fn drop_alert(
    session: &Session,
    name: &ObjectName,
    if_exists: bool,
) -> Result<StatementResult> {
    let (db, schema, alert) = session.qualify_table(name)?;
    let qualified = format!("{db}.{schema}.{alert}");
    let mut dropped = false;
    session
        .warehouse()
        .update_catalog(|c| {
            dropped = c.schema_mut(&db, &schema)?.alerts.remove(&alert).is_some();
            if !dropped && !if_exists {
                return Err(StorageError::ObjectNotFound {
                    kind: "alert",
                    name: qualified.clone(),
                });
            }
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(if dropped {
        format!("dropped alert {qualified}")
    } else {
        "nothing to drop".to_string()
    }))
}

/// `SHOW ALERTS`: the alerts of the current database.
async fn show(session: &Session) -> Result<StatementResult> {
    let catalog = session.warehouse().refresh_catalog().await?;
    let (database, _) = session.current_schema();
    let now = Utc::now();
    let mut rows = Vec::new();
    for (name, alert) in catalog.alerts() {
        if alert.database != database {
            continue;
        }
        let next = match (alert.resumed, alert.resumed_at) {
            (true, Some(anchor)) => Schedule::parse(&alert.schedule)
                .ok()
                .and_then(|s| s.next_slot(anchor, now))
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let action = Action::parse(&alert.action)
            .map(|a| a.shown())
            .unwrap_or_else(|_| "(unreadable)".to_string());
        rows.push(vec![
            name.rsplit('.').next().unwrap_or_default().to_string(),
            alert.database.clone(),
            alert.schema.clone(),
            alert.owner.clone(),
            if alert.resumed {
                "started"
            } else {
                "suspended"
            }
            .to_string(),
            alert.schedule.clone(),
            redact(&alert.condition),
            action,
            next,
            alert.comment.clone().unwrap_or_default(),
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
            "condition",
            "action",
            "next_scheduled_time",
            "comment",
        ],
        rows,
    ))
}

/// What the condition found.
struct Found {
    rows: u64,
    sample: serde_json::Value,
    query_id: Option<String>,
}

/// Checks alert `name` for slot `scheduled_at`: runs its condition, and its action when the
/// condition returns rows; records the check and returns it. Never fails: a failure is the
/// check's status.
pub(crate) async fn check(
    warehouse: &Warehouse,
    name: &str,
    alert: &AlertEntry,
    scheduled_at: DateTime<Utc>,
    trigger: &str,
    limits: &TaskLimits,
) -> AlertRun {
    let checked_at = Utc::now();
    let action = Action::parse(&alert.action);
    let mut run = AlertRun {
        alert: name.to_string(),
        scheduled_at,
        checked_at,
        finished_at: checked_at,
        status: "NOT_FIRED".to_string(),
        rows: 0,
        action: action
            .as_ref()
            .map(Action::shown)
            .unwrap_or_else(|_| "(unreadable)".to_string()),
        attempts: 0,
        error: None,
        query_id: None,
        trigger: trigger.to_string(),
    };
    let _slot = match &limits.slots {
        Some(slots) => std::sync::Arc::clone(slots).acquire_owned().await.ok(),
        None => None,
    };
    let mut session = warehouse.session();
    session.set_user(&alert.owner, false);
    let found = match session.set_schema(&alert.database, &alert.schema) {
        Ok(()) => condition(&mut session, &alert.condition, limits.timeout).await,
        Err(e) => Err(e),
    };
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            run.status = "CONDITION_FAILED".to_string();
            run.error = Some(redact(&e.to_string()));
            return finish(warehouse, run).await;
        }
    };
    run.rows = found.rows;
    run.query_id = found.query_id.clone();
    if found.rows == 0 {
        return finish(warehouse, run).await;
    }
    let outcome = match action {
        Ok(Action::Webhook(url)) => {
            let body = serde_json::json!({
                "alert": name,
                "scheduled_at": scheduled_at.to_rfc3339(),
                "fired_at": Utc::now().to_rfc3339(),
                "rows": found.rows,
                "sample": found.sample,
                "query_id": found.query_id,
            });
            let (attempts, outcome) = post_webhook(&url, &body).await;
            run.attempts = attempts;
            outcome
        }
        Ok(Action::Statement(sql)) => {
            run.attempts = 1;
            match session.sql(&sql).await {
                Ok(_) => Ok(()),
                Err(e) => Err(redact(&e.to_string())),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(()) => run.status = "FIRED".to_string(),
        Err(e) => {
            run.status = "ACTION_FAILED".to_string();
            run.error = Some(e);
        }
    }
    finish(warehouse, run).await
}

/// Records a finished check.
async fn finish(warehouse: &Warehouse, mut run: AlertRun) -> AlertRun {
    run.finished_at = Utc::now();
    crate::telemetry::alert_checked(&run.status);
    if let Err(e) = warehouse.records().put(&run).await {
        tracing::warn!(alert = %run.alert, error = %e, "alert check not recorded");
    }
    run
}

/// Runs the condition's query: counts its rows (streamed, never held) and keeps a sample.
async fn condition(session: &mut Session, query: &str, timeout: Option<Duration>) -> Result<Found> {
    let statements = parser::parse(query)?;
    let [statement] = statements.as_slice() else {
        return Err(Error::Plan("the condition is one query".to_string()));
    };
    if !Session::is_query(statement) {
        return Err(Error::Plan(
            "the condition is a query (SELECT ...)".to_string(),
        ));
    }
    let run = async {
        let mut stream = session.execute_stream(statement, None).await?;
        let mut rows: u64 = 0;
        let mut sample = Vec::new();
        let mut kept = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows = rows.saturating_add(batch.num_rows() as u64);
            if kept < SAMPLE_ROWS && batch.num_rows() > 0 {
                let take = (SAMPLE_ROWS - kept).min(batch.num_rows());
                sample.push(batch.slice(0, take));
                kept += take;
            }
        }
        drop(stream);
        let mut json = Vec::new();
        {
            let mut writer = arrow::json::ArrayWriter::new(&mut json);
            let refs: Vec<&arrow::array::RecordBatch> = sample.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
        }
        let sample = serde_json::from_slice(&json).unwrap_or(serde_json::Value::Array(Vec::new()));
        Ok::<_, Error>((rows, sample))
    };
    let (rows, sample) = match timeout {
        Some(limit) => tokio::time::timeout(limit, run)
            .await
            .map_err(|_| Error::Plan(format!("the condition ran past {} s", limit.as_secs())))??,
        None => run.await?,
    };
    Ok(Found {
        rows,
        sample,
        query_id: session.last_query_id().map(str::to_string),
    })
}

/// Posts `body` to `url`, retrying; returns the attempts made and the outcome (an error names
/// the URL without its path).
async fn post_webhook(
    url: &url::Url,
    body: &serde_json::Value,
) -> (u32, std::result::Result<(), String>) {
    let shown = shown_url(url);
    let client = match reqwest::Client::builder().timeout(WEBHOOK_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return (0, Err(format!("webhook {shown}: no HTTP client ({e})"))),
    };
    let mut last = String::new();
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let request = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        match request.send().await {
            Ok(response) if response.status().is_success() => return (attempt, Ok(())),
            Ok(response) => last = format!("webhook {shown} answered {}", response.status()),
            // reqwest's errors name the URL: say what failed without it.
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                last = format!("webhook {shown} {kind}");
            }
        }
        if attempt < WEBHOOK_ATTEMPTS {
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
    }
    (
        WEBHOOK_ATTEMPTS,
        Err(format!("{last} (after {WEBHOOK_ATTEMPTS} attempts)")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_never_show_their_path_or_query() {
        let Action::Webhook(url) =
            Action::parse("NOTIFY WEBHOOK 'https://hooks.example.com/services/T0/B1/s3cret?x=1'")
                .unwrap()
        else {
            panic!("not a webhook");
        };
        assert_eq!(shown_url(&url), "https://hooks.example.com/…");
        let shown = Action::Webhook(url).shown();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(matches!(
            Action::parse("notify  webhook 'http://127.0.0.1:9/'").unwrap(),
            Action::Webhook(_)
        ));
        assert!(matches!(
            Action::parse("EXECUTE TASK t").unwrap(),
            Action::Statement(_)
        ));
        for bad in [
            "NOTIFY WEBHOOK 'ftp://host/x'",
            "NOTIFY WEBHOOK 'not a url'",
            "NOTIFY WEBHOOK http://x",
        ] {
            let error = Action::parse(bad).err().expect(bad).to_string();
            assert!(!error.contains("/x"), "{error}");
        }
    }
}
