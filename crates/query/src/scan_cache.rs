//! The scan cache: the columns of hot data files, kept decoded as Arrow arrays in a compact
//! encoding ([`compact`]: narrow integers and decimals, dictionary strings).
//!
//! Decompressing and decoding Parquet pages is about a quarter of the CPU time of a hot TPC-H
//! run (LZ4, dictionary and RLE decoding, and the copies around them). Strata's data files are
//! immutable and uniquely named, so the decoded columns of a file can be kept and served again
//! without checking anything: a cached column never goes stale. The cache holds, per data file,
//! the columns queries have read from it, each as one compact array of all the file's rows; a
//! scan decodes them batch by batch, which costs less than one pass over the values.
//!
//! **Admission on the second read.** The first scan to read a file reads it with the planned
//! Parquet scan, which skips row groups and pages by the predicate and decodes late; the file
//! is only remembered. The second scan reads it whole into the cache. A query run once (the
//! cold run of a benchmark, an ad-hoc look at an old partition) pays no more than it would
//! without a cache and leaves the cache to what is read again.
//!
//! **What a cached scan reads.** A file enters the cache read whole, without the scan's
//! predicate: pruning row groups or pages would leave a partial column. That costs nothing in
//! rows, because Strata's scans apply their filters above the reader anyway (static conjuncts
//! in the `FilterExec`, dynamic ones from joins in the table scan); a cached
//! scan prunes whole files with the dynamic filters, as the Parquet reader does. A file
//! DataFusion split into byte ranges over several partitions is read whole by the partition
//! with its first range when it enters the cache, and range by range otherwise. A file that
//! arrives when the cache is full is read by the planned Parquet scan, and a scan with no file
//! in the cache and no room left is not served at all.
//!
//! **Budget.** Admission, not eviction, keeps the cache within its budget: a file's columns
//! are added while they fit, and stay while they are used. A least-recently-used cache smaller
//! than a scan that cycles over it would evict each column just before it is needed again (SSB
//! SF 10 under a 2 GiB limit); a cache that keeps what it took first serves that part of every
//! scan. Only files unread for [`IDLE`] (a dropped table, files compaction replaced, a table
//! nobody queries) make room for new ones. The cache is the warehouse's, shared by its
//! sessions. Its budget is `WarehouseOptions::scan_cache_bytes` (default a quarter of RAM),
//! and under a memory limit its bytes are a reservation in the warehouse's memory pool
//! ([`crate::memory`]): it takes only memory queries leave free, and a query that needs more
//! makes it evict its least recently read files. `SET strata.scan_cache = false` bypasses it.
//!
//! This module is the cache itself, owned by the warehouse; the execution plan that serves
//! scans from it is `table::cached_scan`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::execution::memory_pool::MemoryReservation;

use crate::memory::Reclaim;

mod compact;
pub(crate) use compact::CompactColumn;

/// How long a cached file may go unread before a new file may take its place.
pub(crate) const IDLE: Duration = Duration::from_secs(300);

/// Decoded columns of data files within a memory budget (see the module documentation).
#[derive(Debug)]
pub struct ScanCache {
    budget: usize,
    state: Mutex<State>,
    /// The cache's bytes in the warehouse's memory pool, under a memory limit; set once, right
    /// after the cache is made (the pool must know the cache to ask it for memory back).
    reservation: std::sync::OnceLock<MemoryReservation>,
}

#[derive(Debug, Default)]
struct State {
    used: usize,
    files: HashMap<String, CachedFile>,
    /// A file's columns did not fit: until files go idle, scans read with the planned
    /// reader rather than read whole files the cache cannot take.
    full: bool,
    /// Files read once, not cached yet (forgotten all at once past [`MAX_SEEN`]).
    seen: std::collections::HashSet<String>,
}

/// How many files read once the cache remembers.
const MAX_SEEN: usize = 1 << 16;

/// The cached columns of one data file.
#[derive(Debug)]
struct CachedFile {
    rows: usize,
    columns: HashMap<(String, DataType), Arc<CompactColumn>>,
    bytes: usize,
    last_read: Instant,
}

impl ScanCache {
    /// An empty cache that holds at most `budget` bytes of arrays.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            state: Mutex::default(),
            reservation: std::sync::OnceLock::new(),
        }
    }

    /// Holds the cache's bytes in `reservation` from now on (the cache is empty still).
    pub(crate) fn reserve_in(&self, reservation: MemoryReservation) {
        let _ = self.reservation.set(reservation);
    }

    /// The most bytes the cache holds.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The bytes of the arrays it holds now.
    pub fn used(&self) -> usize {
        self.state().used
    }

    /// How many data files it holds columns of.
    pub fn files(&self) -> usize {
        self.state().files.len()
    }

    /// What it holds per data file: (path, rows, columns, bytes).
    pub fn contents(&self) -> Vec<(String, usize, usize, usize)> {
        let state = self.state();
        let mut files: Vec<_> = state
            .files
            .iter()
            .map(|(path, f)| (path.clone(), f.rows, f.columns.len(), f.bytes))
            .collect();
        files.sort();
        files
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between statements: a panic elsewhere cannot poison it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file's row count and its columns `keys`, when all of them are cached.
    pub(crate) fn get(
        &self,
        path: &str,
        keys: &[ColumnKey],
    ) -> Option<(usize, Vec<Arc<CompactColumn>>)> {
        let mut state = self.state();
        let file = state.files.get_mut(path)?;
        let columns = keys
            .iter()
            .map(|k| file.columns.get(k).cloned())
            .collect::<Option<Vec<_>>>()?;
        file.last_read = Instant::now();
        Some((file.rows, columns))
    }

    /// Whether a file the cache does not hold should be read into it now: not on its first
    /// read, which is only remembered (see the module documentation).
    pub(crate) fn admits(&self, path: &str) -> bool {
        let mut state = self.state();
        if state.seen.remove(path) {
            return true;
        }
        if state.seen.len() >= MAX_SEEN {
            state.seen.clear();
        }
        state.seen.insert(path.to_string());
        false
    }

    /// Whether it holds all the columns `keys` of the file.
    pub(crate) fn holds_all(&self, path: &str, keys: &[ColumnKey]) -> bool {
        self.state()
            .files
            .get(path)
            .is_some_and(|f| keys.iter().all(|k| f.columns.contains_key(k)))
    }

    /// Whether it holds columns of the file.
    pub(crate) fn holds(&self, path: &str) -> bool {
        self.state().files.contains_key(path)
    }

    /// Whether a file's columns could be admitted now.
    pub(crate) fn has_room(&self) -> bool {
        if self.budget == 0 {
            return false;
        }
        let mut state = self.state();
        if state.full {
            let freed = state.drop_idle("");
            self.release(freed);
        }
        !state.full
    }

    /// Gives `bytes` the cache no longer holds back to the memory pool.
    fn release(&self, bytes: usize) {
        if let Some(reservation) = self.reservation.get() {
            reservation.shrink(bytes.min(reservation.size()));
        }
    }

    /// Adds the file's columns `keys` (`arrays`, of `rows` rows) that it does not hold yet,
    /// if they fit (after dropping idle files); returns whether it holds them now.
    pub(crate) fn insert(
        &self,
        path: &str,
        rows: usize,
        keys: &[ColumnKey],
        arrays: &[ArrayRef],
    ) -> bool {
        let held = |state: &State, key: &ColumnKey| {
            state
                .files
                .get(path)
                .is_some_and(|f| f.columns.contains_key(key))
        };
        // Encoding is a pass over each column: done outside the lock.
        let new: Vec<(&ColumnKey, Arc<CompactColumn>)> = {
            let state = self.state();
            if state.files.get(path).is_some_and(|f| f.rows != rows) {
                return false;
            }
            let missing: Vec<usize> = (0..keys.len().min(arrays.len()))
                .filter(|&i| !held(&state, &keys[i]))
                .collect();
            drop(state);
            missing
                .into_iter()
                .map(|i| (&keys[i], Arc::new(CompactColumn::encode(&arrays[i]))))
                .collect()
        };
        let mut state = self.state();
        if state.files.get(path).is_some_and(|f| f.rows != rows) {
            return false;
        }
        let new: Vec<_> = new.into_iter().filter(|(k, _)| !held(&state, k)).collect();
        let bytes: usize = new.iter().map(|(_, c)| c.memory_size()).sum();
        if state.used + bytes > self.budget {
            let freed = state.drop_idle(path);
            self.release(freed);
            if state.used + bytes > self.budget {
                state.full = true;
                return false;
            }
        }
        // Memory queries hold is theirs: the file is not cached (and the cache is not full).
        if let Some(reservation) = self.reservation.get()
            && reservation.try_grow(bytes).is_err()
        {
            return false;
        }
        state.used += bytes;
        let file = state
            .files
            .entry(path.to_string())
            .or_insert_with(|| CachedFile {
                rows,
                columns: HashMap::new(),
                bytes: 0,
                last_read: Instant::now(),
            });
        file.bytes += bytes;
        file.last_read = Instant::now();
        for (key, column) in new {
            file.columns.insert(key.clone(), column);
        }
        true
    }
}

impl Reclaim for ScanCache {
    /// Evicts the least recently read files until `bytes` are freed or none is left.
    fn reclaim(&self, bytes: usize) -> usize {
        let mut state = self.state();
        let mut order: Vec<(Instant, String)> = state
            .files
            .iter()
            .map(|(p, f)| (f.last_read, p.clone()))
            .collect();
        order.sort();
        let mut freed = 0;
        for (_, path) in order {
            if freed >= bytes {
                break;
            }
            if let Some(f) = state.files.remove(&path) {
                freed += f.bytes;
            }
        }
        state.used -= freed;
        if freed > 0 {
            state.full = false;
        }
        self.release(freed);
        freed
    }
}

impl State {
    /// Drops the files (but `keep`) unread for [`IDLE`]; the cache is no longer full if any.
    /// Returns the bytes freed.
    fn drop_idle(&mut self, keep: &str) -> usize {
        let now = Instant::now();
        let idle: Vec<String> = self
            .files
            .iter()
            .filter(|(p, f)| p.as_str() != keep && now.duration_since(f.last_read) > IDLE)
            .map(|(p, _)| p.clone())
            .collect();
        let mut freed = 0;
        for p in &idle {
            if let Some(f) = self.files.remove(p) {
                freed += f.bytes;
            }
        }
        self.used -= freed;
        if !idle.is_empty() {
            self.full = false;
        }
        freed
    }
}

/// A decoded column of a file: the column's field id (its name, for a column read by name)
/// and its type as read. The id, not the name, says what the column is: a renamed column keeps
/// its cached values, a dropped and re-added name does not find the old column's.
pub(crate) type ColumnKey = (String, DataType);
