//! `VACUUM`: deleting files no snapshot of interest references.
//!
//! Orphans come from statements that failed or were killed after uploading data files, from
//! files removed by later commits (`DROP PARTITION`, replaced tables) and from dropped tables. A
//! file is deleted only if it is older than the retention period: that protects time travel to
//! recent versions and the uploads of writers that have not committed yet.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;

use crate::catalog::CatalogState;
use crate::error::Result;
use crate::id::TableId;
use crate::log::TableLog;
use crate::store::paths;

/// What a vacuum removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VacuumReport {
    /// Data files deleted.
    pub files_deleted: u64,
    /// Their bytes.
    pub bytes_deleted: u64,
}

/// Deletes unreferenced data files of `table` older than `retention`.
pub async fn vacuum_table(
    store: &Arc<dyn ObjectStore>,
    log: &TableLog,
    retention: Duration,
) -> Result<VacuumReport> {
    let snapshot = log.latest().await?;
    let live: HashSet<&str> = snapshot.files.keys().map(String::as_str).collect();
    let cutoff = Utc::now() - retention;
    let candidates: Vec<(Path, u64)> = store
        .list(Some(&paths::table_data_dir(log.id())))
        .try_filter_map(|meta| {
            let keep = live.contains(meta.location.as_ref()) || meta.last_modified > cutoff;
            async move { Ok((!keep).then_some((meta.location, meta.size))) }
        })
        .try_collect()
        .await?;
    delete(store, candidates).await
}

/// Deletes the directories of tables no longer in the catalog, older than `retention`.
pub async fn vacuum_dropped_tables(
    store: &Arc<dyn ObjectStore>,
    catalog: &CatalogState,
    retention: Duration,
) -> Result<VacuumReport> {
    let known: HashSet<&TableId> = catalog.table_ids().collect();
    let listing = store
        .list_with_delimiter(Some(&Path::from("tables")))
        .await?;
    let cutoff = Utc::now() - retention;
    let mut report = VacuumReport::default();
    for dir in listing.common_prefixes {
        let Some(id) = dir.filename().map(|s| TableId(s.to_string())) else {
            continue;
        };
        if known.contains(&id) {
            continue;
        }
        let objects: Vec<_> = store.list(Some(&dir)).try_collect().await?;
        if objects.iter().any(|m| m.last_modified > cutoff) {
            continue;
        }
        let r = delete(
            store,
            objects.into_iter().map(|m| (m.location, m.size)).collect(),
        )
        .await?;
        report.files_deleted += r.files_deleted;
        report.bytes_deleted += r.bytes_deleted;
    }
    Ok(report)
}

/// Deletes every file of table `id` at once: for a table that was being created and never
/// entered the catalog.
pub async fn delete_table_files(
    store: &Arc<dyn ObjectStore>,
    id: &TableId,
) -> Result<VacuumReport> {
    let objects: Vec<_> = store
        .list(Some(&crate::store::paths::table_dir(id)))
        .try_collect()
        .await?;
    delete(
        store,
        objects.into_iter().map(|m| (m.location, m.size)).collect(),
    )
    .await
}

async fn delete(store: &Arc<dyn ObjectStore>, files: Vec<(Path, u64)>) -> Result<VacuumReport> {
    let report = VacuumReport {
        files_deleted: files.len() as u64,
        bytes_deleted: files.iter().map(|(_, s)| s).sum(),
    };
    let locations = futures::stream::iter(files.into_iter().map(|(p, _)| Ok(p))).boxed();
    store
        .delete_stream(locations)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(report)
}
