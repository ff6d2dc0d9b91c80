//! Whether a statement may still be cancelled, or has begun to commit and must finish.
//!
//! A server's query timeout, a Flight cancel or Ctrl-C in the shell stop a statement by dropping
//! its future. Dropped before its commit, the statement leaves nothing behind; dropped while a
//! commit is on the wire, it may have committed anyway, and telling the client "cancelled" would
//! be a lie. So the two race on one atomic: whoever runs a statement under a [`CommitGate`]
//! asks [`CommitGate::cancel`] before dropping it, and every commit of the warehouse (a table
//! log, the catalog, a secret) passes [`begin_commit`] first. Exactly one of them wins:
//!
//! - the cancel: no commit of that statement starts (a late one fails with "cancelled"), and the
//!   caller drops the statement;
//! - the commit: the statement runs to its end, and the caller reports what it returned with a
//!   note that the cancel came too late.
//!
//! The gate is found through a task-local, so that commits deep in a DataFusion sink see it
//! without every layer passing it down; a statement run without a gate cannot be cancelled
//! half-way by this means and commits as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::error::{Error, Result};

const OPEN: u8 = 0;
const COMMITTING: u8 = 1;
const CANCELLED: u8 = 2;

tokio::task_local! {
    static GATE: Arc<CommitGate>;
}

/// The cancel-or-commit state of one running statement (or script).
#[derive(Debug, Default)]
pub struct CommitGate {
    state: AtomicU8,
    /// Statements of a script run under this gate that have finished.
    finished: AtomicUsize,
}

impl CommitGate {
    /// A gate for a statement that has not committed anything.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Runs `future` (a statement) under this gate.
    pub async fn run<F: Future>(self: &Arc<Self>, future: F) -> F::Output {
        GATE.scope(Arc::clone(self), future).await
    }

    /// Runs `future` (a statement or script) under a new gate, and stops it at `limit` unless
    /// its commit has started, in which case it runs to its end and its output is returned.
    /// `Err` when it was stopped: nothing of the running statement was committed. The future
    /// comes boxed: a statement's future is large, and moving it by value through the layers
    /// of futures here overflowed a worker's stack.
    pub async fn run_with_timeout<F: Future + ?Sized>(
        future: std::pin::Pin<Box<F>>,
        limit: Option<std::time::Duration>,
    ) -> Result<F::Output, Stopped> {
        let gate = Self::new();
        let run = gate.run(future);
        let Some(limit) = limit else {
            return Ok(run.await);
        };
        let mut run = std::pin::pin!(run);
        match tokio::time::timeout(limit, &mut run).await {
            Ok(output) => Ok(output),
            Err(_) if gate.cancel() => Err(Stopped {
                statements_finished: gate.statements_finished(),
            }),
            Err(_) => {
                tracing::warn!(
                    timeout_s = limit.as_secs(),
                    "statement passed its timeout while committing; letting it finish"
                );
                Ok(run.await)
            }
        }
    }

    /// Asks to cancel. True: no commit has started and none will, so the statement may be
    /// dropped. False: a commit started first; let the statement finish.
    pub fn cancel(&self) -> bool {
        match self
            .state
            .compare_exchange(OPEN, CANCELLED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(state) => state == CANCELLED,
        }
    }

    /// Whether a commit of the statement has started.
    pub fn committing(&self) -> bool {
        self.state.load(Ordering::SeqCst) == COMMITTING
    }

    /// How many statements of the script run under this gate had finished (and committed
    /// what they wrote) when it was cancelled.
    pub fn statements_finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

/// A statement stopped by [`CommitGate::run_with_timeout`] before it committed.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// Statements of the script before it that had finished (and committed what they wrote).
    pub statements_finished: usize,
}

/// Called when a statement of a script has finished: the next one may be cancelled until it
/// commits.
pub(crate) fn statement_finished() {
    let _ = GATE.try_with(|gate| {
        let _ = gate
            .state
            .compare_exchange(COMMITTING, OPEN, Ordering::SeqCst, Ordering::SeqCst);
        gate.finished.fetch_add(1, Ordering::SeqCst);
    });
}

/// Called by every commit before it writes: fails if the running statement was cancelled, and
/// otherwise makes it uncancellable.
pub(crate) fn begin_commit() -> Result<CommitTicket> {
    let outcome = GATE.try_with(|gate| {
        match gate
            .state
            .compare_exchange(OPEN, COMMITTING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => Ok(CommitTicket {
                gate: Some(Arc::clone(gate)),
            }),
            Err(COMMITTING) => Ok(CommitTicket { gate: None }),
            Err(_) => Err(Error::Cancelled),
        }
    });
    // Outside any gate: nothing can cancel this statement half-way.
    outcome.unwrap_or(Ok(CommitTicket { gate: None }))
}

/// The right to commit, taken by [`begin_commit`].
#[derive(Debug)]
pub(crate) struct CommitTicket {
    /// The gate this commit closed, when no earlier commit of the statement had.
    gate: Option<Arc<CommitGate>>,
}

impl CommitTicket {
    /// The commit surely wrote nothing (it lost a race before its put landed): the statement
    /// may be cancelled again, unless an earlier commit of it had started.
    pub(crate) fn wrote_nothing(self) {
        if let Some(gate) = self.gate {
            gate.state.store(OPEN, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_of_cancel_and_commit_wins() {
        let gate = CommitGate::new();
        assert!(gate.run(async { begin_commit() }).await.is_ok());
        assert!(gate.committing());
        assert!(!gate.cancel(), "a started commit cannot be cancelled");
        // A second commit of the same statement goes on; its failure does not reopen the gate.
        let second = gate.run(async { begin_commit() }).await.unwrap();
        second.wrote_nothing();
        assert!(gate.committing());

        // A commit that lost its race wrote nothing: the statement is cancellable again.
        let gate = CommitGate::new();
        gate.run(async { begin_commit() })
            .await
            .unwrap()
            .wrote_nothing();
        assert!(gate.cancel());

        let gate = CommitGate::new();
        assert!(gate.cancel());
        assert!(gate.cancel(), "cancelling twice is still cancelled");
        let late = gate.run(async { begin_commit() }).await;
        assert!(matches!(late, Err(Error::Cancelled)), "{late:?}");

        assert!(begin_commit().is_ok(), "no gate, no cancel");

        // In a script, the next statement may be cancelled until it commits.
        let gate = CommitGate::new();
        gate.run(async {
            begin_commit().unwrap();
            statement_finished();
        })
        .await;
        assert_eq!(gate.statements_finished(), 1);
        assert!(gate.cancel());
    }
}
