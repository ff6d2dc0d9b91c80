//! Deleting rows by position: how `DELETE`, `UPDATE`, `MERGE` and `APPLY CHANGES` take rows
//! out of existing data files.
//!
//! A statement gathers the rows it deletes as (data file, row number) pairs ([`RowDeletes`],
//! from the row-id scan's file and row columns). Then, file by file, a cost rule picks how they
//! go ([`plan_file_changes`]):
//!
//! - **removed:** every row of the file is deleted; the file leaves the snapshot;
//! - **rewritten** (copy-on-write): more than `strata.dml_rewrite_share` of its rows are deleted
//!   (with those deleted before); its other rows are written to new files. Every later scan
//!   would otherwise read more dead rows than live ones;
//! - **marked** (merge-on-read): the rows go in the file's deletion vector (all of its deleted
//!   rows, a roaring bitmap; see [`strata_storage::deletion`]), which costs a few bytes per row
//!   instead of the whole file.
//!
//! `OPTIMIZE` later folds deletion vectors away by rewriting the files that have them.

use std::collections::HashMap;
use std::fmt;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use roaring::RoaringBitmap;
use strata_storage::{DataFile, DeletionVector, Snapshot};

use crate::error::{Error, Result};
use crate::warehouse::Warehouse;

/// The rows a statement deletes, by data file path.
#[derive(Debug, Default)]
pub(crate) struct RowDeletes {
    files: HashMap<String, RoaringBitmap>,
}

/// A row deleted twice by one statement: a `MERGE` whose source matches a target row more
/// than once.
#[derive(Debug)]
pub(crate) struct DeletedTwice;

impl RowDeletes {
    /// Adds the rows of `files` (paths) and `rows` (row numbers), those `keep` is true for.
    pub(crate) fn add(
        &mut self,
        files: &dyn Array,
        rows: &dyn Array,
        keep: Option<&BooleanArray>,
    ) -> Result<std::result::Result<(), DeletedTwice>> {
        let files = cast(files, &DataType::Utf8)?;
        let files = files.as_string::<i32>();
        let rows = rows
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| Error::Plan("row numbers are not BIGINT".to_string()))?;
        for i in 0..files.len() {
            if keep.is_some_and(|k| !k.is_valid(i) || !k.value(i))
                || files.is_null(i)
                || rows.is_null(i)
            {
                continue;
            }
            let row = u32::try_from(rows.value(i)).map_err(|_| {
                Error::Plan(format!(
                    "row number {} of {} is out of range",
                    rows.value(i),
                    files.value(i)
                ))
            })?;
            let path = files.value(i);
            let set = match self.files.get_mut(path) {
                Some(set) => set,
                None => self.files.entry(path.to_string()).or_default(),
            };
            if !set.insert(row) {
                return Ok(Err(DeletedTwice));
            }
        }
        Ok(Ok(()))
    }
}

/// What a statement does to the existing files it deletes rows from.
#[derive(Debug, Default)]
pub(crate) struct FileChanges {
    /// New versions of files whose deleted rows go in their deletion vector (held in memory
    /// until the write uploads it).
    pub(crate) marked: Vec<DataFile>,
    /// Files rewritten without their deleted rows: their current version with all deleted rows
    /// in an in-memory deletion vector, to read the others through.
    pub(crate) rewritten: Vec<DataFile>,
    /// The current versions of every file above, and of files that lose all their rows: what
    /// the commit removes.
    pub(crate) removed: Vec<DataFile>,
    /// Rows deleted, per way.
    pub(crate) rows_marked: u64,
    pub(crate) rows_rewritten: u64,
    pub(crate) rows_removed: u64,
    /// Rows the rewritten files keep (written again).
    pub(crate) rows_kept: u64,
    /// The share of a file's rows above which it is rewritten.
    pub(crate) rewrite_share: f64,
}

impl FileChanges {
    /// Files removed outright (every row deleted).
    pub(crate) fn files_removed(&self) -> usize {
        self.removed.len() - self.marked.len() - self.rewritten.len()
    }
}

impl fmt::Display for FileChanges {
    /// How the rows went, for `EXPLAIN ANALYZE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deletion vectors: {} files ({} rows); rewritten: {} files ({} rows deleted, {} kept); \
             removed: {} files ({} rows); cost rule: rewrite a file when over {:.0}% of its rows \
             are deleted (strata.dml_rewrite_share)",
            self.marked.len(),
            self.rows_marked,
            self.rewritten.len(),
            self.rows_rewritten,
            self.rows_kept,
            self.files_removed(),
            self.rows_removed,
            self.rewrite_share * 100.0
        )
    }
}

/// Decides, file by file, how the rows `deletes` of `snapshot` go (see the module docs).
pub(crate) async fn plan_file_changes(
    warehouse: &Warehouse,
    snapshot: &Snapshot,
    deletes: RowDeletes,
    rewrite_share: f64,
) -> Result<FileChanges> {
    let mut changes = FileChanges {
        rewrite_share,
        ..Default::default()
    };
    let mut files: Vec<(String, RoaringBitmap)> = deletes.files.into_iter().collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, new) in files {
        let file = snapshot.files.get(&path).ok_or_else(|| {
            Error::Plan(format!(
                "data file {path} is not part of the table's snapshot"
            ))
        })?;
        let mut deleted = match warehouse.deleted_rows(file).await? {
            Some(before) => before.as_ref().clone(),
            None => RoaringBitmap::new(),
        };
        let before = deleted.len();
        deleted |= new;
        let now = deleted.len() - before;
        if deleted.len() >= file.rows {
            changes.rows_removed += now;
        } else if deleted.len() as f64 > rewrite_share * file.rows as f64 {
            changes.rows_rewritten += now;
            changes.rows_kept += file.rows - deleted.len();
            changes.rewritten.push(with_deleted(file, deleted));
        } else {
            changes.rows_marked += now;
            changes.marked.push(with_deleted(file, deleted));
        }
        changes.removed.push(file.clone());
    }
    Ok(changes)
}

fn with_deleted(file: &DataFile, deleted: RoaringBitmap) -> DataFile {
    DataFile {
        deletion_vector: Some(DeletionVector::in_memory(deleted)),
        ..file.clone()
    }
}
