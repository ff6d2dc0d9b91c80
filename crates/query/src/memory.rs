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
//!
//! Operators that can spill (sorts, hash aggregates, repartitions' buffers) share the pool
//! through [`SpillSharePool`]: each may always grow to an equal share of all of them, as in
//! DataFusion's `FairSpillPool`, and beyond that take memory nobody holds. Counting only the
//! registered spillers, most of them idle, left TPC-H Q18's 15M-group aggregate 80 MB of a
//! 1.4 GB pool; it spilled 18 times and took twice the CPU.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, human_readable_size,
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

/// The warehouse's memory pool: a [`SpillSharePool`], whose one reclaiming consumer, the scan
/// cache, makes room for the others (see the module documentation).
pub(crate) struct WarehousePool {
    inner: SpillSharePool,
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
        Self {
            inner: SpillSharePool::new(size),
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
        // Free memory first, then the cache's, and only then a spiller's share past the size.
        if self.inner.try_grow_into_free(reservation, additional) {
            return Ok(());
        }
        if let Some(cache) = self.reclaimer_for(reservation) {
            // Each round evicts at least one file; scans refilling the cache meanwhile cannot
            // keep the loop going past a bound.
            for _ in 0..MAX_RECLAIM_ROUNDS {
                if cache.reclaim(additional.max(MIN_RECLAIM)) == 0 {
                    break;
                }
                if self.inner.try_grow_into_free(reservation, additional) {
                    return Ok(());
                }
            }
        }
        self.inner.try_grow(reservation, additional)
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

/// A pool of fixed size whose spilling consumers share what the others leave.
///
/// A spilling consumer asking to hold `wanted` bytes in all gets them when the pool has room
/// for them. When it is full, it may still go past its size by at most a
/// [`OVERDRAW_DIVISOR`]th of it, for
///
/// - **its floor**: `wanted` is at most an equal share, among all registered spillers, of the
///   memory the others leave (DataFusion's `FairSpillPool` share); or
/// - **its fair share**: counting every other spiller at most `wanted` (max-min fairness), the
///   spillers fit.
///
/// The larger spillers are then refused at their next growth, spill, and give the memory back.
/// Free memory alone would let one operator that started early keep the pool while a second
/// spills again and again at a few megabytes; the shares make the larger one yield.
///
/// Consumers that cannot spill (hash join build sides, the scan cache) take what is free, and
/// the overdraw as far as spillers hold memory they will give back, so spillers that filled the
/// pool do not fail a join. Whatever the order of requests, the pool never holds more than its
/// size and the overdraw.
pub(crate) struct SpillSharePool {
    size: usize,
    state: Mutex<ShareState>,
}

/// How far past its size the pool lets a spiller claim its share, or a consumer that cannot
/// spill take what spillers hold (see [`SpillSharePool`]): a sixteenth of the pool, inside the
/// memory limit's headroom.
const OVERDRAW_DIVISOR: usize = 16;

#[derive(Debug, Default)]
struct ShareState {
    /// Bytes held by consumers that cannot spill.
    unspillable: usize,
    /// Bytes held by all spilling consumers.
    spillable: usize,
    /// Registrations of spilling consumers.
    spillers: usize,
    /// Bytes held per spilling consumer, by consumer id, while it is registered.
    held: HashMap<usize, Spiller>,
}

#[derive(Debug, Default)]
struct Spiller {
    registrations: usize,
    bytes: usize,
}

impl SpillSharePool {
    /// A pool of `size` bytes, or without a limit.
    pub(crate) fn new(size: Option<usize>) -> Self {
        Self {
            size: size.unwrap_or(usize::MAX),
            state: Mutex::new(ShareState::default()),
        }
    }

    /// Grows `reservation` by `additional` bytes if the pool has that much free, whatever the
    /// consumer's share.
    fn try_grow_into_free(&self, reservation: &MemoryReservation, additional: usize) -> bool {
        let mut state = self.state();
        let fits = state.fits(self.size, additional, 0);
        if fits {
            state.add(reservation.consumer(), additional);
        }
        fits
    }

    fn state(&self) -> MutexGuard<'_, ShareState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ShareState {
    fn add(&mut self, consumer: &MemoryConsumer, bytes: usize) {
        if consumer.can_spill() {
            self.spillable = self.spillable.saturating_add(bytes);
            let spiller = self.held.entry(consumer.id()).or_default();
            spiller.bytes = spiller.bytes.saturating_add(bytes);
        } else {
            self.unspillable = self.unspillable.saturating_add(bytes);
        }
    }

    fn remove(&mut self, consumer: &MemoryConsumer, bytes: usize) {
        if consumer.can_spill() {
            self.spillable = self.spillable.saturating_sub(bytes);
            if let Some(spiller) = self.held.get_mut(&consumer.id()) {
                spiller.bytes = spiller.bytes.saturating_sub(bytes);
            }
        } else {
            self.unspillable = self.unspillable.saturating_sub(bytes);
        }
    }

    /// Whether `additional` more bytes keep the pool within `size` and `overdraw` bytes more.
    fn fits(&self, size: usize, additional: usize, overdraw: usize) -> bool {
        self.unspillable
            .saturating_add(self.spillable)
            .checked_add(additional)
            .is_some_and(|total| total <= size.saturating_add(overdraw))
    }

    /// Whether spiller `id` may hold `wanted` bytes in a pool of `size` (the rules of
    /// [`SpillSharePool`]); `additional` of them are new.
    fn spiller_may_hold(&self, size: usize, id: usize, wanted: usize, additional: usize) -> bool {
        if self.fits(size, additional, 0) {
            return true;
        }
        if !self.fits(size, additional, size / OVERDRAW_DIVISOR) {
            return false;
        }
        let available = size.saturating_sub(self.unspillable);
        if wanted <= available / self.spillers.max(1) {
            return true;
        }
        let others_capped = self
            .held
            .iter()
            .filter(|(other, _)| **other != id)
            .fold(0usize, |sum, (_, s)| {
                sum.saturating_add(s.bytes.min(wanted))
            });
        wanted.saturating_add(others_capped) <= available
    }

    /// Whether a consumer that cannot spill may take `additional` more bytes: what is free,
    /// and past the pool's size as far as spillers hold memory they will give back, up to the
    /// overdraw.
    fn unspillable_may_take(&self, size: usize, additional: usize) -> bool {
        self.fits(
            size,
            additional,
            self.spillable.min(size / OVERDRAW_DIVISOR),
        )
    }
}

impl fmt::Debug for SpillSharePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpillSharePool")
            .field("size", &self.size)
            .field("state", &*self.state())
            .finish()
    }
}

impl fmt::Display for SpillSharePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        write!(
            f,
            "spill share(size: {}, spillable: {}, unspillable: {}, spillers: {})",
            human_readable_size(self.size),
            human_readable_size(state.spillable),
            human_readable_size(state.unspillable),
            state.spillers
        )
    }
}

impl MemoryPool for SpillSharePool {
    fn name(&self) -> &str {
        "spill share"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            let mut state = self.state();
            state.spillers += 1;
            state.held.entry(consumer.id()).or_default().registrations += 1;
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if !consumer.can_spill() {
            return;
        }
        let mut state = self.state();
        state.spillers = state.spillers.saturating_sub(1);
        let id = consumer.id();
        let gone = state.held.get_mut(&id).is_none_or(|spiller| {
            spiller.registrations = spiller.registrations.saturating_sub(1);
            spiller.registrations == 0
        });
        if gone && let Some(spiller) = state.held.remove(&id) {
            // Reservations free themselves before their registration goes; this only keeps
            // the totals right if one did not.
            state.spillable = state.spillable.saturating_sub(spiller.bytes);
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.state().add(reservation.consumer(), additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.state().remove(reservation.consumer(), shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let consumer = reservation.consumer();
        let mut state = self.state();
        let granted = if consumer.can_spill() {
            let id = consumer.id();
            let held = state.held.get(&id).map_or(0, |s| s.bytes);
            held.checked_add(additional)
                .is_some_and(|wanted| state.spiller_may_hold(self.size, id, wanted, additional))
        } else {
            state.unspillable_may_take(self.size, additional)
        };
        if !granted {
            let free = self
                .size
                .saturating_sub(state.unspillable.saturating_add(state.spillable));
            drop(state);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "Failed to allocate additional {} for {} with {} already allocated for this \
                 reservation - {} remain available for the total memory pool: {self}",
                human_readable_size(additional),
                consumer.name(),
                human_readable_size(reservation.size()),
                human_readable_size(free),
            )));
        }
        state.add(consumer, additional);
        Ok(())
    }

    fn reserved(&self) -> usize {
        let state = self.state();
        state.spillable.saturating_add(state.unspillable)
    }

    fn memory_limit(&self) -> MemoryLimit {
        match self.size {
            usize::MAX => MemoryLimit::Infinite,
            size => MemoryLimit::Finite(size),
        }
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

    fn spiller(pool: &Arc<dyn MemoryPool>, name: &str) -> MemoryReservation {
        MemoryConsumer::new(name)
            .with_can_spill(true)
            .register(pool)
    }

    const MB: usize = 1 << 20;

    #[test]
    fn a_busy_spiller_takes_what_idle_ones_do_not_hold() {
        let pool: Arc<dyn MemoryPool> = Arc::new(SpillSharePool::new(Some(100 * MB)));
        let idle: Vec<_> = (0..19)
            .map(|i| spiller(&pool, &format!("idle {i}")))
            .collect();
        let aggregate = spiller(&pool, "aggregate");
        // DataFusion's fair pool stops it at 5 MB, a twentieth.
        aggregate.try_grow(90 * MB).expect("free memory is taken");
        // An idle spiller still gets its floor, a twentieth of the pool.
        idle[0].try_grow(5 * MB).expect("the floor");
        // Another takes a fair share past the pool's size, within the overdraw, and no more.
        idle[1].try_grow(10 * MB).expect("a fair share");
        assert!(idle[2].try_grow(10 * MB).is_err(), "past the overdraw");
        assert!(aggregate.try_grow(MB).is_err(), "the larger one must spill");
        drop(idle);
        assert_eq!(pool.reserved(), 90 * MB);
        drop(aggregate);
        assert_eq!(pool.reserved(), 0);
    }

    #[test]
    fn the_larger_spiller_yields_to_a_fair_share() {
        let pool: Arc<dyn MemoryPool> = Arc::new(SpillSharePool::new(Some(160 * MB)));
        let early = spiller(&pool, "early");
        let late = spiller(&pool, "late");
        // Eight idle spillers make the floor 16 MB.
        let _idle: Vec<_> = (0..8)
            .map(|i| spiller(&pool, &format!("idle {i}")))
            .collect();
        early.try_grow(150 * MB).expect("free");
        late.try_grow(10 * MB).expect("free");
        // The late one grows past the pool by its fair share, at most a sixteenth over.
        late.try_grow(10 * MB).expect("fair share, overdrawn");
        assert!(pool.reserved() <= 160 * MB + 160 * MB / OVERDRAW_DIVISOR);
        assert!(late.try_grow(10 * MB).is_err(), "the overdraw is bounded");
        // The early one is refused even a little more, so it spills and gives back.
        assert!(early.try_grow(MB).is_err());
        early.resize(10 * MB);
        late.try_grow(60 * MB).expect("free again");
        // Two spillers at 80 MB each: neither may take the other's half.
        early.try_grow(70 * MB).expect("free");
        assert!(early.try_grow(MB).is_err());
        assert!(late.try_grow(MB).is_err());
    }

    #[test]
    fn unspillable_consumers_take_what_is_free_and_what_spillers_give_back() {
        let pool: Arc<dyn MemoryPool> = Arc::new(SpillSharePool::new(Some(100 * MB)));
        let join = MemoryConsumer::new("join").register(&pool);
        let sort = spiller(&pool, "sort");
        sort.try_grow(70 * MB).expect("free");
        join.try_grow(30 * MB).expect("free");
        // The join may take the overdraw, since the sort holds memory it can give back.
        join.try_grow(6 * MB).expect("the overdraw");
        assert!(join.try_grow(MB).is_err(), "past the overdraw");
        // The spiller now holds more than the join leaves, and must spill.
        assert!(sort.try_grow(1).is_err());
        sort.resize(0);
        join.try_grow(60 * MB).expect("freed");
        assert_eq!(pool.reserved(), 96 * MB);
        // With no spiller holding memory, there is no overdraw.
        assert!(join.try_grow(5 * MB).is_err());
    }

    #[test]
    fn split_and_shared_reservations_keep_the_books() {
        let pool: Arc<dyn MemoryPool> = Arc::new(SpillSharePool::new(Some(100 * MB)));
        let mut sort = spiller(&pool, "sort");
        sort.try_grow(40 * MB).expect("free");
        let half = sort.split(20 * MB);
        let rest = sort.take();
        let empty = rest.new_empty();
        empty.try_grow(MB).expect("free");
        assert_eq!(pool.reserved(), 41 * MB);
        drop((half, rest, empty, sort));
        assert_eq!(pool.reserved(), 0);
        let share = pool.downcast_ref::<SpillSharePool>().expect("the pool");
        let state = share.state();
        assert_eq!(
            (state.spillers, state.held.len(), state.spillable),
            (0, 0, 0)
        );
    }

    /// Random grows, shrinks and drops over spilling and other consumers: the books always
    /// balance, and the pool never goes past its size by more than the overdraw.
    #[test]
    fn random_reservations_keep_the_books_and_the_bound() {
        let size = 64 * MB;
        let pool: Arc<dyn MemoryPool> = Arc::new(SpillSharePool::new(Some(size)));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let mut live: Vec<MemoryReservation> = Vec::new();
        for step in 0..20_000 {
            match next(8) {
                0 if live.len() < 24 => {
                    let consumer = MemoryConsumer::new(format!("c{step}"));
                    live.push(consumer.with_can_spill(next(3) > 0).register(&pool));
                }
                1 if !live.is_empty() => {
                    live.swap_remove(next(live.len()));
                }
                2 | 3 if !live.is_empty() => {
                    let r = &live[next(live.len())];
                    r.shrink(next(r.size() + 1));
                }
                _ if !live.is_empty() => {
                    let r = &live[next(live.len())];
                    let before = pool.reserved();
                    if r.try_grow(next(8 * MB)).is_err() {
                        assert_eq!(pool.reserved(), before, "a refusal takes nothing");
                    }
                }
                _ => {}
            }
            let held: usize = live.iter().map(MemoryReservation::size).sum();
            assert_eq!(pool.reserved(), held);
            assert!(
                held <= size + size / OVERDRAW_DIVISOR,
                "{held} after step {step}"
            );
        }
        live.clear();
        assert_eq!(pool.reserved(), 0);
    }

    /// A query that aggregates, joins and sorts, under limits from too small to ample: each run
    /// gives the unlimited answer or says the memory ran out, and leaves nothing reserved.
    #[tokio::test]
    async fn every_limit_answers_right_or_says_memory_ran_out() {
        use crate::{ErrorKind, Warehouse, WarehouseOptions};

        const QUERY: &str = "SELECT g % 7 AS bucket, count(*) AS n, sum(s) AS total \
            FROM (SELECT a.value % 150000 AS g, sum(b.value) AS s \
                  FROM generate_series(1, 300000) a \
                  JOIN generate_series(1, 300000) b ON a.value = b.value \
                  GROUP BY a.value % 150000 ORDER BY s DESC) \
            GROUP BY g % 7 ORDER BY bucket";
        async fn run(limit: Option<usize>) -> crate::Result<String> {
            let options = WarehouseOptions {
                memory_limit: limit,
                target_partitions: Some(4),
                ..WarehouseOptions::default()
            };
            let warehouse = Warehouse::open_with("memory://", options).await?;
            let answer = warehouse.session().sql(QUERY).await;
            // Tasks of a failed query stop as they are dropped, a moment after its error.
            let pool = Arc::clone(&warehouse.runtime().memory_pool);
            for _ in 0..200 {
                if pool.reserved() == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(pool.reserved(), 0, "limit {limit:?}: {pool}");
            let batches = answer?;
            Ok(
                arrow::util::pretty::pretty_format_batches(&batches[0].batches)
                    .expect("format")
                    .to_string(),
            )
        }

        let expected = run(None).await.expect("no limit");
        let mut answered = 0;
        for limit in [256 << 10, 2 * MB, 8 * MB, 24 * MB, 64 * MB, 256 * MB] {
            match run(Some(limit)).await {
                Ok(answer) => {
                    assert_eq!(answer, expected, "limit {limit}");
                    answered += 1;
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::ResourceExhausted, "{e}"),
            }
        }
        assert!(answered >= 3, "only {answered} limits answered");
    }
}
