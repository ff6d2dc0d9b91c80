//! What every protocol of one server shares: the warehouse, who may connect, the limits and
//! query slots, and the file policy. Flight, PostgreSQL and HTTP clients wait for the same
//! slots and obey the same policy because they hold the same [`Shared`].

use std::sync::Arc;

use strata_query::Warehouse;
use tokio::sync::Semaphore;

use crate::auth::Authenticator;
use crate::limits::Limits;
use crate::policy::LoadPolicy;

/// The parts of a server every protocol uses.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) warehouse: Warehouse,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) limits: Limits,
    /// The server's query slots (`max_concurrent_queries`).
    pub(crate) slots: Arc<Semaphore>,
    /// Where users without the admin role may load from.
    pub(crate) load: LoadPolicy,
}
