//! When views refresh by themselves: after each commit that changes a source (`on_commit`), and
//! every interval inside `strata serve` (`every <n> <unit>`), with backoff after failures.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;

use crate::catalog::materialized_view::{Definition, RefreshMode, is_stale, list};
use crate::commit_gate::CommitGate;
use crate::mv::refresh::{self, refresh};
use crate::progress::Progress;
use crate::session::SessionPlanner;
use crate::table::StrataTable;
use crate::warehouse::Warehouse;

/// Refreshes every `on_commit` view that reads a table changed since it last refreshed. A
/// failing refresh is recorded on the view (see `system.materialized_views`) and logged; the
/// statement that changed the source has committed and stays so.
pub(crate) async fn refresh_on_commit(warehouse: &Warehouse) {
    let views = match list(warehouse).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "could not list materialized views");
            return;
        }
    };
    // A view over another view is stale only once that one refreshed: pass again until a
    // pass refreshes nothing (each view at most once, so failures cannot loop).
    let mut done = std::collections::HashSet::new();
    loop {
        let mut refreshed = false;
        for (name, def, _) in &views {
            let after_commits =
                matches!(def.refresh, RefreshMode::OnCommit | RefreshMode::Continuous);
            if !after_commits || done.contains(name) {
                continue;
            }
            let Ok(Some(current)) =
                StrataTable::open(warehouse, &name[0], &name[1], &name[2]).await
            else {
                continue;
            };
            let Some(def) = Definition::of(&current.snapshot().metadata) else {
                continue;
            };
            if !matches!(is_stale(warehouse, &SessionPlanner, &def).await, Ok(true)) {
                continue;
            }
            done.insert(name.clone());
            refreshed = true;
            // Refreshes started by concurrent commits race; the loser tries again on the
            // winner's rows (a few times: each retry follows a refresh that landed).
            for attempt in 1..=4 {
                match refresh(warehouse, name, false, &Progress::default()).await {
                    Err(e) if e.is_retryable() && attempt < 4 => continue,
                    Err(e) => {
                        tracing::warn!(view = %name.join("."), error = %e, "on-commit refresh failed");
                    }
                    Ok(_) => {}
                }
                break;
            }
        }
        if !refreshed {
            break;
        }
    }
}

/// The limits a server puts on every statement, which scheduled refreshes keep too.
#[derive(Debug, Clone, Default)]
pub struct RefreshLimits {
    /// The server's query slots: a refresh waits for one, as a client's statement does.
    pub slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// A refresh still running after this long is stopped and commits nothing.
    pub timeout: Option<Duration>,
}

/// Refreshes `every <interval>` views when their interval has passed since their last
/// successful refresh, checking every `tick`, until the task is dropped. A failed refresh is
/// recorded on the view and retried after 5 s, 10 s, 20 s, ... (at most an hour apart), whatever
/// the view's interval. Each refresh runs inside `limits`.
pub async fn run_scheduler(warehouse: Warehouse, tick: Duration, limits: RefreshLimits) {
    // View → (failures in a row, earliest next attempt).
    let mut failures: HashMap<[String; 3], (u32, std::time::Instant)> = HashMap::new();
    // View → when it was last found up to date (nothing is committed for that).
    let mut checked: HashMap<[String; 3], std::time::Instant> = HashMap::new();
    loop {
        tokio::time::sleep(tick).await;
        let Ok(views) = list(&warehouse).await else {
            continue;
        };
        for (name, def, _) in views {
            let RefreshMode::Every(interval) = def.refresh else {
                continue;
            };
            let due = def
                .refreshed_at
                .is_none_or(|t| (Utc::now() - t).to_std().unwrap_or_default() >= interval)
                && checked.get(&name).is_none_or(|t| t.elapsed() >= interval);
            let backing_off = failures
                .get(&name)
                .is_some_and(|(_, next)| std::time::Instant::now() < *next);
            if !due || backing_off {
                continue;
            }
            let _slot = match &limits.slots {
                Some(slots) => match std::sync::Arc::clone(slots).acquire_owned().await {
                    Ok(slot) => Some(slot),
                    // The server is shutting down.
                    Err(_) => return,
                },
                None => None,
            };
            let progress = Progress::default();
            let clock = std::time::Instant::now();
            let run = Box::pin(refresh(&warehouse, &name, false, &progress));
            // A refresh whose commit had started when the timeout came runs to its end.
            let outcome = match CommitGate::run_with_timeout(run, limits.timeout).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // Stopped before its commit: nothing changed; say so on the view.
                    let error = crate::error::Error::DataFusion(
                        datafusion::error::DataFusionError::ResourcesExhausted(format!(
                            "scheduled refresh exceeded the server's query timeout of {} s",
                            limits.timeout.unwrap_or_default().as_secs()
                        )),
                    );
                    refresh::record_failure(&warehouse, &name, clock, &error).await;
                    Err(error)
                }
            };
            match outcome {
                Ok(outcome) => {
                    failures.remove(&name);
                    if outcome.kind == refresh::Kind::UpToDate {
                        checked.insert(name, std::time::Instant::now());
                    }
                }
                Err(e) => {
                    let n = failures.get(&name).map_or(1, |f| f.0 + 1);
                    let backoff = (Duration::from_secs(5)
                        * 2u32.saturating_pow(n - 1).min(1 << 10))
                    .min(Duration::from_secs(3_600));
                    tracing::warn!(view = %name.join("."), error = %e, failures = n,
                        retry_in_s = backoff.as_secs(), "scheduled refresh failed");
                    failures.insert(name, (n, std::time::Instant::now() + backoff));
                }
            }
        }
    }
}
