//! Deletion vectors: the rows of a data file that later changes deleted, kept beside the file
//! instead of rewriting it (merge-on-read, as in Delta Lake and Iceberg v3).
//!
//! A change that touches a few rows of a big file (`DELETE`, `UPDATE`, `MERGE`, `APPLY
//! CHANGES`) writes the numbers of the rows it deletes (their positions in the Parquet file) as
//! a roaring bitmap in a small `.dv` file next to the data file, and commits the data file again
//! with that vector. Scans skip the marked rows, time travel reads the vector of its version
//! (vectors are immutable: a later change writes a new one holding all deleted rows), and
//! `OPTIMIZE` folds them away by rewriting the file.
//!
//! The `.dv` file is the portable roaring format (readable by any roaring library); the log
//! records its path, its cardinality and size, which a reader checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The deleted rows of one data file, as the log records them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletionVector {
    /// Path of the `.dv` file under the warehouse root (empty while only in memory).
    pub path: String,
    /// Rows it marks deleted.
    pub cardinality: u64,
    /// Bytes of the `.dv` file.
    pub size_bytes: u64,
    /// The rows themselves, when this process built them (not part of the log).
    #[serde(skip)]
    pub rows: Option<Arc<RoaringBitmap>>,
}

impl PartialEq for DeletionVector {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
            && self.cardinality == other.cardinality
            && self.size_bytes == other.size_bytes
    }
}

impl DeletionVector {
    /// A vector of `rows` held in memory only: what a statement reads its own changes through
    /// before it uploads them.
    pub fn in_memory(rows: RoaringBitmap) -> Self {
        Self {
            path: String::new(),
            cardinality: rows.len(),
            size_bytes: 0,
            rows: Some(Arc::new(rows)),
        }
    }

    /// Writes `rows` to `path` and describes the file.
    pub async fn write(
        store: &Arc<dyn ObjectStore>,
        path: Path,
        rows: RoaringBitmap,
    ) -> Result<Self> {
        let mut bytes = Vec::with_capacity(rows.serialized_size());
        rows.serialize_into(&mut bytes)
            .map_err(|source| Error::Io {
                path: path.to_string(),
                source,
            })?;
        let size_bytes = bytes.len() as u64;
        store.put(&path, bytes.into()).await?;
        Ok(Self {
            path: path.to_string(),
            cardinality: rows.len(),
            size_bytes,
            rows: Some(Arc::new(rows)),
        })
    }

    /// The rows of this vector of the data file `file` (of `file_rows` rows): from memory, or
    /// read from its `.dv` file and checked against what the log says of it.
    pub async fn read(
        &self,
        store: &Arc<dyn ObjectStore>,
        file: &str,
        file_rows: u64,
    ) -> Result<RoaringBitmap> {
        if let Some(rows) = &self.rows {
            return Ok(rows.as_ref().clone());
        }
        let bytes = store
            .get(&Path::from(self.path.as_str()))
            .await?
            .bytes()
            .await?;
        self.decode(&bytes, file, file_rows)
    }

    fn decode(&self, bytes: &[u8], file: &str, file_rows: u64) -> Result<RoaringBitmap> {
        let corrupt = |reason: String| Error::CorruptMetadata {
            path: self.path.clone(),
            reason: format!("deletion vector of {file}: {reason}"),
        };
        if bytes.len() as u64 != self.size_bytes {
            return Err(corrupt(format!(
                "{} bytes, the log says {}",
                bytes.len(),
                self.size_bytes
            )));
        }
        let rows = RoaringBitmap::deserialize_from(bytes).map_err(|e| corrupt(e.to_string()))?;
        if rows.len() != self.cardinality {
            return Err(corrupt(format!(
                "{} rows, the log says {}",
                rows.len(),
                self.cardinality
            )));
        }
        if let Some(last) = rows.max().filter(|last| u64::from(*last) >= file_rows) {
            return Err(corrupt(format!(
                "marks row {last} of a file of {file_rows} rows"
            )));
        }
        Ok(rows)
    }
}

/// Deletion vectors read from storage, by path: they are immutable, and a hot table's scans
/// need them on every query.
#[derive(Debug)]
pub struct DeletionVectorCache {
    budget: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<String, Arc<RoaringBitmap>>,
    bytes: usize,
}

impl DeletionVectorCache {
    /// A cache holding up to `budget` bytes of vectors.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// The rows `vector` marks deleted in the data file `file` (of `file_rows` rows).
    pub async fn deleted_rows(
        &self,
        store: &Arc<dyn ObjectStore>,
        vector: &DeletionVector,
        file: &str,
        file_rows: u64,
    ) -> Result<Arc<RoaringBitmap>> {
        if let Some(rows) = &vector.rows {
            return Ok(Arc::clone(rows));
        }
        if let Some(rows) = self.lock().entries.get(&vector.path) {
            return Ok(Arc::clone(rows));
        }
        let rows = Arc::new(vector.read(store, file, file_rows).await?);
        let size = rows.serialized_size();
        let mut state = self.lock();
        if size <= self.budget {
            // Vectors are small and evenly used: any entry makes room as well as another.
            while state.bytes + size > self.budget {
                let Some(victim) = state.entries.keys().next().cloned() else {
                    break;
                };
                if let Some(old) = state.entries.remove(&victim) {
                    state.bytes = state.bytes.saturating_sub(old.serialized_size());
                }
            }
            if state
                .entries
                .insert(vector.path.clone(), Arc::clone(&rows))
                .is_none()
            {
                state.bytes += size;
            }
        }
        Ok(rows)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    const FILE: &str = "tables/t/data/f.parquet";

    #[tokio::test]
    async fn vectors_round_trip_and_damage_is_reported() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rows: RoaringBitmap = [1u32, 5, 6, 7, 999].into_iter().collect();
        let written = DeletionVector::write(&store, Path::from("t/a.dv"), rows.clone())
            .await
            .expect("write");
        let vector = DeletionVector {
            rows: None,
            ..written.clone()
        };
        let cache = DeletionVectorCache::new(1 << 20);
        let read = cache
            .deleted_rows(&store, &vector, FILE, 1000)
            .await
            .expect("read");
        assert_eq!(read.as_ref(), &rows);

        // A vector that marks rows past the end of its file, or disagrees with the log.
        let error = vector
            .read(&store, FILE, 500)
            .await
            .expect_err("past the end");
        assert!(error.to_string().contains("marks row 999"), "{error}");
        let lying = DeletionVector {
            cardinality: 4,
            ..vector.clone()
        };
        let error = lying
            .read(&store, FILE, 1000)
            .await
            .expect_err("wrong count");
        assert!(error.to_string().contains("the log says 4"), "{error}");
        store
            .put(
                &Path::from("t/a.dv"),
                vec![0u8; written.size_bytes as usize].into(),
            )
            .await
            .expect("damage");
        let error = vector.read(&store, FILE, 1000).await.expect_err("garbage");
        assert!(error.to_string().contains("t/a.dv"), "{error}");
    }
}
