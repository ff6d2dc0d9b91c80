//! What every PostgreSQL connection of a server shares: the warehouse, users, limits and
//! query slots, and the cancel signals of open connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::shared::Shared;
use async_trait::async_trait;
use pgwire::api::RandomPidSecretKeyGenerator;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;

/// A connection's cancel signal: bumped by a cancel request.
pub(crate) type CancelSignal = Arc<tokio::sync::watch::Sender<u64>>;

/// What every PostgreSQL connection of a server shares.
pub(crate) struct PgServer {
    pub(crate) shared: Shared,
    /// Each connection's cancel signal by its backend key (pid, secret).
    pub(crate) cancels: Arc<Cancels>,
    /// Backend keys for new connections.
    pub(crate) pids: RandomPidSecretKeyGenerator,
}

impl PgServer {
    pub(crate) fn new(shared: Shared) -> Self {
        Self {
            shared,
            cancels: Arc::new(Cancels::default()),
            pids: RandomPidSecretKeyGenerator::default(),
        }
    }
}

/// Cancel signals of the open connections. A cancel request arrives on a connection of its
/// own, naming the backend key the target connection got at sign-in; its running statement
/// (planning, running or streaming rows) stops, and a commit already started finishes.
#[derive(Default)]
pub(crate) struct Cancels {
    signals: Mutex<HashMap<(i32, Vec<u8>), CancelSignal>>,
}

impl Cancels {
    /// Registers a connection's signal; it is unregistered when the registration drops.
    pub(crate) fn register(
        self: &Arc<Self>,
        key: (i32, Vec<u8>),
    ) -> (CancelSignal, CancelRegistration) {
        let signal = Arc::new(tokio::sync::watch::Sender::new(0));
        self.signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Arc::clone(&signal));
        let registration = CancelRegistration {
            key,
            cancels: Arc::clone(self),
        };
        (signal, registration)
    }
}

/// Unregisters a connection's cancel signal when the connection ends.
pub(crate) struct CancelRegistration {
    key: (i32, Vec<u8>),
    cancels: Arc<Cancels>,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.cancels
            .signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.cancel((request.pid, request.secret_key.to_bytes().to_vec()));
    }
}

impl Cancels {
    /// Cancels the running statement of the connection with backend key `key`, if any.
    pub(crate) fn cancel(&self, key: (i32, Vec<u8>)) {
        let signal = self
            .signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        // An unknown key is ignored, as PostgreSQL does: it must not tell which keys exist.
        if let Some(signal) = signal {
            signal.send_modify(|generation| *generation = generation.wrapping_add(1));
        }
    }
}
