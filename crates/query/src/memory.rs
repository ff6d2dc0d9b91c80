//! The warehouse's one memory budget: running queries, the scan cache and the metadata caches
//! share `WarehouseOptions::memory_limit`, as they share DuckDB's `memory_limit`.
//!
//! A limit that bounds queries alone lets a process grow far past it: at SSB SF 10 under a
//! 2 GiB limit, the scan cache's own quarter of RAM took the process to 4.9 GB. Here the limit
//! is split once, when the warehouse opens ([`Budget::split`]):
//!
//! - **metadata**: Parquet footers and page indexes (DataFusion's file-metadata cache) and
//!   deletion vectors, each with a fixed cap;
//! - **headroom**: memory no pool tracks (batches in flight between operators, Parquet read
//!   buffers, hash tables' probe batches, the allocator's slack), a quarter of the limit;
//! - **the pool**: the rest, shared by queries and the scan cache.
//!
//! The scan cache holds a reservation in the pool like any operator, up to its own cap (three
//! quarters of the pool at most). It is the one consumer that gives memory back: when a
//! query's reservation does not fit, [`WarehousePool`] evicts the cache's least recently read
//! files until it fits, or the cache is empty and the query spills or fails as it would have.
//! A cached file that a running scan still serves is freed when that scan drops it.

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

use datafusion::error::Result as DfResult;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, UnboundedMemoryPool,
};

/// How a warehouse's memory limit is shared out (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// The query pool, which the scan cache's reservation is part of; `None` for no limit.
    pub(crate) pool: Option<usize>,
    /// The most the scan cache holds.
    pub(crate) scan_cache: usize,
    /// The most the Parquet footer and page index cache holds.
    pub(crate) file_metadata: usize,
    /// The most the deletion vector cache holds.
    pub(crate) deletion_vectors: usize,
}

/// The metadata caches' caps without a limit (DataFusion's default for footers).
const FILE_METADATA_BYTES: usize = 50 << 20;
const DELETION_VECTOR_BYTES: usize = 64 << 20;

impl Budget {
    /// The shares of `limit` (bytes for the whole warehouse, or none), with the scan cache
    /// asked for `scan_cache` bytes.
    pub(crate) fn split(limit: Option<usize>, scan_cache: usize) -> Self {
        let Some(limit) = limit else {
            return Self {
                pool: None,
                scan_cache,
                file_metadata: FILE_METADATA_BYTES,
                deletion_vectors: DELETION_VECTOR_BYTES,
            };
        };
        let file_metadata = FILE_METADATA_BYTES.min(limit / 32);
        let deletion_vectors = DELETION_VECTOR_BYTES.min(limit / 32);
        let headroom = limit / 4;
        let pool = limit
            .saturating_sub(file_metadata)
            .saturating_sub(deletion_vectors)
            .saturating_sub(headroom);
        Self {
            pool: Some(pool),
            scan_cache: scan_cache.min(pool - pool / 4),
            file_metadata,
            deletion_vectors,
        }
    }
}

/// What the pool asks to give memory back: the scan cache.
pub(crate) trait Reclaim: Send + Sync {
    /// Frees at least `bytes` if it can (less when it holds less); returns what it freed.
    fn reclaim(&self, bytes: usize) -> usize;
}

/// The warehouse's memory pool: DataFusion's fair spill pool (each spilling operator gets an
/// equal share, the others take what is free), whose one reclaiming consumer, the scan cache,
/// makes room for the others (see the module documentation).
pub(crate) struct WarehousePool {
    inner: Arc<dyn MemoryPool>,
    /// The scan cache, once it exists, and the id of its reservation's consumer.
    reclaimer: OnceLock<(Weak<dyn Reclaim>, usize)>,
}

/// The least the cache is asked to free at once: a few files' columns, so that a query growing
/// batch by batch does not evict once per batch.
const MIN_RECLAIM: usize = 16 << 20;
/// The most rounds of eviction one reservation waits for.
const MAX_RECLAIM_ROUNDS: usize = 1024;

impl WarehousePool {
    /// A pool of `size` bytes, or without a limit.
    pub(crate) fn new(size: Option<usize>) -> Self {
        let inner: Arc<dyn MemoryPool> = match size {
            Some(size) => Arc::new(FairSpillPool::new(size)),
            None => Arc::new(UnboundedMemoryPool::default()),
        };
        Self {
            inner,
            reclaimer: OnceLock::new(),
        }
    }

    /// Makes `reclaimer` the consumer asked to give memory back, and registers its
    /// reservation in `pool` (this pool).
    pub(crate) fn register_reclaimer(
        pool: &Arc<dyn MemoryPool>,
        reclaimer: Weak<dyn Reclaim>,
    ) -> Option<MemoryReservation> {
        let this = pool.downcast_ref::<WarehousePool>()?;
        let reservation = MemoryConsumer::new("scan cache").register(pool);
        this.reclaimer
            .set((reclaimer, reservation.consumer().id()))
            .ok()?;
        Some(reservation)
    }

    /// The reclaiming consumer, unless `reservation` is its own.
    fn reclaimer_for(&self, reservation: &MemoryReservation) -> Option<Arc<dyn Reclaim>> {
        let (reclaimer, id) = self.reclaimer.get()?;
        if *id == reservation.consumer().id() {
            return None;
        }
        reclaimer.upgrade()
    }
}

impl fmt::Debug for WarehousePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarehousePool")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for WarehousePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "warehouse({})", self.inner)
    }
}

impl MemoryPool for WarehousePool {
    fn name(&self) -> &str {
        "warehouse"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional)
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let refused = match self.inner.try_grow(reservation, additional) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let Some(cache) = self.reclaimer_for(reservation) else {
            return Err(refused);
        };
        // Each round evicts at least one file; scans refilling the cache meanwhile cannot keep
        // the loop going past a bound.
        for _ in 0..MAX_RECLAIM_ROUNDS {
            if cache.reclaim(additional.max(MIN_RECLAIM)) == 0 {
                break;
            }
            if self.inner.try_grow(reservation, additional).is_ok() {
                return Ok(());
            }
        }
        Err(refused)
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn a_limit_is_shared_out_and_never_exceeded() {
        for limit in [0, 1, 1 << 20, 512 << 20, 2 << 30, 64 << 30] {
            let budget = Budget::split(Some(limit), usize::MAX);
            let pool = budget.pool.expect("a pool");
            assert!(pool + budget.file_metadata + budget.deletion_vectors <= limit);
            assert!(budget.scan_cache <= pool);
        }
        let budget = Budget::split(Some(2 << 30), 1 << 30);
        assert_eq!(budget.scan_cache, 1 << 30);
        assert_eq!(Budget::split(None, 7).scan_cache, 7);
    }

    /// A cache of `files` files of `each` bytes, holding its bytes in the pool.
    struct FakeCache {
        files: Mutex<Vec<usize>>,
        reservation: Mutex<Option<MemoryReservation>>,
    }

    impl Reclaim for FakeCache {
        fn reclaim(&self, bytes: usize) -> usize {
            let mut files = self.files.lock().unwrap();
            let mut freed = 0;
            while freed < bytes {
                let Some(file) = files.pop() else { break };
                freed += file;
            }
            if let Some(r) = self.reservation.lock().unwrap().as_ref() {
                r.shrink(freed);
            }
            freed
        }
    }

    #[test]
    fn queries_take_memory_back_from_the_cache() {
        let pool: Arc<dyn MemoryPool> = Arc::new(WarehousePool::new(Some(100 << 20)));
        let cache = Arc::new(FakeCache {
            files: Mutex::new(Vec::new()),
            reservation: Mutex::new(None),
        });
        let weak: Weak<dyn Reclaim> = Arc::downgrade(&(Arc::clone(&cache) as Arc<dyn Reclaim>));
        let reservation = WarehousePool::register_reclaimer(&pool, weak).expect("registered");
        // The cache fills 80 MB in 10 MB files.
        for _ in 0..8 {
            reservation.try_grow(10 << 20).expect("the cache fits");
            cache.files.lock().unwrap().push(10 << 20);
        }
        *cache.reservation.lock().unwrap() = Some(reservation);

        // A join's build side (unspillable) needs 50 MB: the cache gives back at least 30.
        let join = MemoryConsumer::new("join").register(&pool);
        join.try_grow(50 << 20).expect("room is made");
        assert!(pool.reserved() <= 100 << 20);
        assert!(cache.files.lock().unwrap().len() <= 5);

        // The cache cannot take what queries hold.
        let cache_reservation = cache.reservation.lock().unwrap();
        let held = cache_reservation.as_ref().unwrap().size();
        assert!(
            cache_reservation
                .as_ref()
                .unwrap()
                .try_grow((100 << 20) - held - (50 << 20) + 1)
                .is_err()
        );
        drop(cache_reservation);

        // More than the pool holds fails as before, after the cache is emptied.
        let sort = MemoryConsumer::new("sort")
            .with_can_spill(true)
            .register(&pool);
        assert!(sort.try_grow(60 << 20).is_err());
        assert!(cache.files.lock().unwrap().is_empty());
        assert_eq!(pool.reserved(), 50 << 20);
    }
}
