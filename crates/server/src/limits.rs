//! How much of the server one statement, and all of them together, may take: shared by every
//! protocol, so a PostgreSQL client and a Flight client wait for the same query slots.

use std::time::Duration;

/// Limits of a server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Queries streaming at once; more wait for a slot.
    pub max_concurrent_queries: usize,
    /// A query still streaming after this long fails with `DeadlineExceeded`.
    pub query_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_queries: 16,
            query_timeout: Some(Duration::from_secs(3600)),
        }
    }
}
