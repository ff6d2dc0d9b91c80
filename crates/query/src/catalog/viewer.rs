//! `Viewer`: the user a session's catalog answers for.

use std::sync::Arc;

/// Who reads the catalog: `system.query_log` shows a user their own statements and an admin
/// everyone's. The session's user, set when a server's client signs in; shared with the
/// session so that a later sign-in applies.
#[derive(Debug, Clone)]
pub(crate) struct Viewer(Arc<std::sync::RwLock<User>>);

/// A user, as the query log records and filters by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    /// The name statements are logged under.
    pub(crate) name: String,
    /// Sees every user's statements.
    pub(crate) admin: bool,
}

impl Viewer {
    /// A viewer that is `user`.
    pub(crate) fn new(user: User) -> Self {
        Self(Arc::new(std::sync::RwLock::new(user)))
    }

    /// The user now.
    pub(crate) fn user(&self) -> User {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Becomes `user`.
    pub(crate) fn set(&self, user: User) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = user;
    }
}
