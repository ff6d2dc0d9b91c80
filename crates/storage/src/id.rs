//! The identities every other storage module names: a table's storage id and a log version.
//!
//! They sit in their own module so that errors, paths and the logs can all name them without
//! importing one another.

use serde::{Deserialize, Serialize};

/// The version of a table (or the catalog): the number of its newest commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version(pub u64);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The identity of a table's storage, independent of its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableId(pub String);

impl TableId {
    /// A fresh id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}
