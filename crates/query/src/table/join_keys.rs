//! Join key bloom filters: a membership test beside a hash join's filter that fits in cache.
//!
//! A hash join's dynamic filter (see [`super::runtime_filter`]) drops a probe row whose key is
//! not in the join's hash table by looking the key up in that table. For a build side of
//! hundreds of thousands of keys the table is tens of megabytes, and each lookup misses the
//! cache twice: in TPC-H SF 10 Q4, looking the 60M lineitem rows up in the hash table of about
//! 570K orders took 49% of the query's CPU, to drop 96% of the rows. DataFusion's hash table
//! does not expose its keys or hashes, so no cheaper test can be derived from it.
//!
//! [`CollectJoinKeysExec`] sits on a join's build input and hashes each build key as it
//! passes into the join. Once every build partition has been read, the hashes become a
//! split-block bloom filter ([`KeyBloom`], the layout of Parquet's bloom filters: one 32-byte
//! block per key, about ten bits per key). Scans evaluate it before the exact lookup
//! ([`super::runtime_filter::AdaptiveJoinFilter`]): a row the bloom filter rejects cannot
//! match, and only the rows it passes (the matches plus about 1% of the others) are looked
//! up in the hash table. A bloom filter seen to pass most rows is skipped, as a useless join
//! filter is. The filter is only an optimisation, and a conservative one: it is used only
//! once complete, only before a join's dynamic filter as such, a row with a NULL key passes
//! it, and a build side with more than [`MAX_KEYS`] rows, or read more than once, builds
//! none.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::take;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    RecordBatchStream,
};
use futures::{Stream, StreamExt};

use crate::table::partitioned_filter::scatter;

/// Build sides with more keys than this get no bloom filter: it would outgrow the caches
/// (about 5 MB at this size) and gain little over the hash table, while collecting the
/// hashes costs 8 bytes a key, charged to the query's memory pool, until the build completes.
pub(crate) const MAX_KEYS: usize = 4 << 20;
/// Filter bits per build key: a false-positive rate of about 1% for a split-block filter.
const BITS_PER_KEY: usize = 10;
/// The seed of the key hashes; DataFusion hashes join keys with other seeds, so a filter's
/// errors do not line up with the hash partitions of a partitioned join.
const SEED: u64 = 0x6a09_e667_f3bc_c908;

/// The bloom filters of the joins of one plan, by the expression id of each join's dynamic
/// filter.
pub(crate) type JoinKeySets = HashMap<u64, Arc<JoinKeySet>>;

/// The hashes of `keys`' rows (the columns of a composite key combined), in `hashes`.
fn hash_keys(keys: &[ArrayRef], hashes: &mut Vec<u64>) -> DfResult<()> {
    let rows = keys.first().map_or(0, |k| k.len());
    hashes.clear();
    hashes.resize(rows, 0);
    create_hashes(keys, &RandomState::with_seed(SEED), hashes)?;
    Ok(())
}

/// The rows where some key column is NULL: they never match an equality (and a join whose
/// NULLs match is not filtered out by them), so the bloom filter passes them.
fn any_null(keys: &[ArrayRef]) -> Option<NullBuffer> {
    keys.iter().fold(None, |acc, k| {
        NullBuffer::union(acc.as_ref(), k.logical_nulls().as_ref())
    })
}

/// A split-block bloom filter over 64-bit key hashes.
pub(crate) struct KeyBloom {
    blocks: Vec<[u32; 8]>,
}

/// The salts of a split-block bloom filter: one bit per 32-bit word of a block.
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

impl KeyBloom {
    fn with_hashes(hashes: &[u64]) -> Self {
        let blocks = (hashes.len().max(1) * BITS_PER_KEY).div_ceil(256);
        let mut bloom = Self {
            blocks: vec![[0; 8]; blocks],
        };
        for &hash in hashes {
            let block = bloom.block_of(hash);
            let mask = Self::mask(hash);
            for (word, bit) in bloom.blocks[block].iter_mut().zip(mask) {
                *word |= bit;
            }
        }
        bloom
    }

    /// The block of `hash`: its high half scaled to the block count.
    fn block_of(&self, hash: u64) -> usize {
        (((hash >> 32) * self.blocks.len() as u64) >> 32) as usize
    }

    /// The bit `hash` sets in each word of its block.
    fn mask(hash: u64) -> [u32; 8] {
        let key = hash as u32;
        SALT.map(|salt| 1 << (key.wrapping_mul(salt) >> 27))
    }

    fn contains(&self, hash: u64) -> bool {
        let block = &self.blocks[self.block_of(hash)];
        block
            .iter()
            .zip(Self::mask(hash))
            .all(|(word, bit)| word & bit != 0)
    }

    /// The bytes the filter holds.
    pub(crate) fn size(&self) -> usize {
        self.blocks.len() * 32
    }
}

/// The build keys of one hash join, collected by its [`CollectJoinKeysExec`] and, once all of
/// them are in, held as a [`KeyBloom`].
pub(crate) struct JoinKeySet {
    /// The data types of the key columns: a probe key of another type (which hashes
    /// differently) is not tested.
    types: Vec<DataType>,
    collecting: Mutex<Collecting>,
    /// Fewer keys build no filter (`strata.join_bloom_min_keys`).
    min_keys: usize,
    /// Set with [`Collecting::abandoned`], read without the lock: the build input then
    /// passes through without being hashed.
    abandoned: AtomicBool,
    bloom: OnceLock<KeyBloom>,
}

struct Collecting {
    hashes: Vec<u64>,
    /// The hashes' memory, charged to the query's memory pool from the first partition's
    /// opening; freed when the filter is built or abandoned.
    reservation: Option<MemoryReservation>,
    /// Which build partitions have been opened, and how many of them read to their end.
    opened: Vec<bool>,
    finished: usize,
    /// Set when the keys cannot make a complete filter: too many, a partition read twice or
    /// failed, the plan reset.
    abandoned: bool,
}

impl Collecting {
    /// Gives up on the filter and frees the keys collected so far.
    fn abandon(&mut self) {
        self.abandoned = true;
        self.hashes = Vec::new();
        self.reservation = None;
    }
}

impl fmt::Debug for JoinKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JoinKeySet({:?}, complete: {})",
            self.types,
            self.bloom.get().is_some()
        )
    }
}

impl JoinKeySet {
    /// The key set of a build side with `partitions` partitions and keys of `types`, which
    /// builds a filter if it gets at least `min_keys` keys.
    pub(crate) fn new(types: Vec<DataType>, partitions: usize, min_keys: usize) -> Self {
        Self {
            types,
            min_keys,
            collecting: Mutex::new(Collecting {
                hashes: Vec::new(),
                reservation: None,
                opened: vec![false; partitions],
                finished: 0,
                abandoned: partitions == 0,
            }),
            abandoned: AtomicBool::new(partitions == 0),
            bloom: OnceLock::new(),
        }
    }

    /// Whether the set will never be complete.
    fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    fn with_collecting(&self, f: impl FnOnce(&mut Collecting)) {
        // A poisoned lock only means a panic elsewhere: the filter is then never completed.
        if let Ok(mut collecting) = self.collecting.lock() {
            f(&mut collecting);
            if collecting.abandoned {
                self.abandoned.store(true, Ordering::Relaxed);
            }
        }
    }

    fn abandon(&self) {
        self.with_collecting(Collecting::abandon);
    }

    /// Notes that build partition `partition` starts, its keys charged to `pool`.
    fn open(&self, partition: usize, pool: &Arc<dyn MemoryPool>) {
        self.with_collecting(|c| match c.opened.get_mut(partition) {
            Some(opened) if !*opened => {
                *opened = true;
                if c.reservation.is_none() && !c.abandoned {
                    c.reservation = Some(MemoryConsumer::new("CollectJoinKeys").register(pool));
                }
            }
            _ => c.abandon(),
        });
    }

    fn add(&self, hashes: &[u64]) {
        self.with_collecting(|c| {
            if c.abandoned {
                return;
            }
            let charged = c
                .reservation
                .as_mut()
                .is_some_and(|r| r.try_grow(std::mem::size_of_val(hashes)).is_ok());
            if !charged || c.hashes.len() + hashes.len() > MAX_KEYS {
                // Too many keys, or no memory left for them: the join runs without a filter.
                c.abandon();
                return;
            }
            c.hashes.extend_from_slice(hashes);
        });
    }

    fn finish(&self) {
        self.with_collecting(|c| {
            c.finished += 1;
            if c.finished < c.opened.len() {
                return;
            }
            if !c.abandoned && c.hashes.len() >= self.min_keys {
                let _ = self.bloom.set(KeyBloom::with_hashes(&c.hashes));
            }
            c.hashes = Vec::new();
            c.reservation = None;
        });
    }

    /// The bloom filter, once every build key is in it.
    pub(crate) fn bloom(&self) -> Option<&KeyBloom> {
        self.bloom.get()
    }

    /// The rows of `keys` (a probe side's key columns) that may match a build key: a mask
    /// over all rows, limited to `selection` when given, with the number of rows it selects.
    /// `None` when the filter is not complete or the keys' types differ from the build keys'.
    pub(crate) fn mask(
        &self,
        keys: &[ArrayRef],
        selection: Option<(&BooleanArray, usize)>,
    ) -> DfResult<Option<BooleanArray>> {
        let Some(bloom) = self.bloom() else {
            return Ok(None);
        };
        if keys.len() != self.types.len()
            || keys
                .iter()
                .zip(&self.types)
                .any(|(k, t)| k.data_type() != t)
        {
            return Ok(None);
        }
        let rows = keys.first().map_or(0, |k| k.len());
        let mut hashes = Vec::new();
        let chosen = selection.filter(|(_, selected)| *selected < rows / 2);
        let Some((selection, _)) = chosen else {
            let selection = selection.map(|(s, _)| s);
            hash_keys(keys, &mut hashes)?;
            let nulls = any_null(keys);
            let passes = BooleanBuffer::collect_bool(rows, |i| {
                nulls.as_ref().is_some_and(|n| n.is_null(i)) || bloom.contains(hashes[i])
            });
            let passes = match selection {
                Some(selection) => &passes & selection.values(),
                None => passes,
            };
            return Ok(Some(BooleanArray::new(passes, None)));
        };
        // A sparse selection: hash only the selected rows.
        let at: UInt32Array = selection.values().set_indices().map(|i| i as u32).collect();
        let taken = keys
            .iter()
            .map(|k| take(k.as_ref(), &at, None))
            .collect::<Result<Vec<_>, _>>()?;
        hash_keys(&taken, &mut hashes)?;
        let nulls = any_null(&taken);
        let passes = BooleanArray::new(
            BooleanBuffer::collect_bool(at.len(), |j| {
                nulls.as_ref().is_some_and(|n| n.is_null(j)) || bloom.contains(hashes[j])
            }),
            None,
        );
        Ok(Some(scatter(rows, at.values(), &passes)))
    }
}

/// Passes a hash join's build input through unchanged, collecting its join keys into a
/// [`JoinKeySet`] (see the module doc).
#[derive(Debug)]
pub(crate) struct CollectJoinKeysExec {
    input: Arc<dyn ExecutionPlan>,
    /// The join's build-side key expressions, over the input's columns.
    keys: Vec<Arc<dyn PhysicalExpr>>,
    set: Arc<JoinKeySet>,
}

impl CollectJoinKeysExec {
    /// `input` collecting `keys` into a new key set; `None` when a key's type cannot be
    /// known.
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        min_keys: usize,
    ) -> Option<Self> {
        let schema = input.schema();
        let types = keys
            .iter()
            .map(|k| k.data_type(&schema).ok())
            .collect::<Option<Vec<_>>>()?;
        let partitions = input.output_partitioning().partition_count();
        Some(Self {
            set: Arc::new(JoinKeySet::new(types, partitions, min_keys)),
            input,
            keys,
        })
    }

    /// The key set the scans below the join test.
    pub(crate) fn set(&self) -> &Arc<JoinKeySet> {
        &self.set
    }

    /// The build input it passes through.
    pub(crate) fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for CollectJoinKeysExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CollectJoinKeysExec: keys=[")?;
        for (i, key) in self.keys.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{key}")?;
        }
        write!(f, "]")?;
        if let Some(bloom) = self.set.bloom() {
            // After execution (EXPLAIN ANALYZE): the filter it built.
            write!(f, ", bloom_bytes={}", bloom.size())?;
        }
        Ok(())
    }
}

impl ExecutionPlan for CollectJoinKeysExec {
    fn name(&self) -> &str {
        "CollectJoinKeysExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for key in &self.keys {
            if f(key)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        if input.output_partitioning().partition_count()
            != self.input.output_partitioning().partition_count()
        {
            // The set counts partitions to know when it is complete.
            self.set.abandon();
        }
        Ok(Arc::new(Self {
            input,
            keys: self.keys.clone(),
            set: Arc::clone(&self.set),
        }))
    }

    /// A plan run again (a recursive query's next round) may build other keys: its scans
    /// still hold this set, so it never completes.
    fn reset_state(self: Arc<Self>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.set.abandon();
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.set.open(partition, context.memory_pool());
        let input = match self.input.execute(partition, context) {
            Ok(input) => input,
            Err(e) => {
                self.set.abandon();
                return Err(e);
            }
        };
        Ok(Box::pin(CollectingStream {
            schema: input.schema(),
            input,
            keys: self.keys.clone(),
            set: Arc::clone(&self.set),
            hashes: Vec::new(),
            done: false,
        }))
    }
}

struct CollectingStream {
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    set: Arc<JoinKeySet>,
    hashes: Vec<u64>,
    done: bool,
}

impl CollectingStream {
    fn hash_batch(&mut self, batch: &RecordBatch) -> DfResult<()> {
        if self.set.is_abandoned() {
            return Ok(());
        }
        let keys = self
            .keys
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<DfResult<Vec<_>>>()?;
        hash_keys(&keys, &mut self.hashes)?;
        match any_null(&keys) {
            // A NULL key matches nothing: leave it out.
            Some(nulls) => {
                let valid: Vec<u64> = nulls.valid_indices().map(|i| self.hashes[i]).collect();
                self.set.add(&valid);
            }
            None => self.set.add(&self.hashes),
        }
        Ok(())
    }
}

impl Stream for CollectingStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.input.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => {
                if let Err(e) = self.hash_batch(batch) {
                    self.set.abandon();
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            Poll::Ready(Some(Err(_))) => self.set.abandon(),
            Poll::Ready(None) if !self.done => {
                self.done = true;
                self.set.finish();
            }
            _ => {}
        }
        polled
    }
}

impl RecordBatchStream for CollectingStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};

    use super::*;
    use crate::Warehouse;

    async fn run(session: &mut crate::Session, sql: &str) -> String {
        let result = session.sql(sql).await.expect(sql);
        let batches = &result.last().expect("a result").batches;
        arrow::util::pretty::pretty_format_batches(batches)
            .expect("format")
            .to_string()
    }

    /// Joins answer the same with the build keys' bloom filters as without any join filter:
    /// keys of several types, composite keys and NULL keys on both sides; inner, semi, anti
    /// and outer joins; build sides small enough for an IN list and large enough for a hash
    /// lookup, collected whole or in hash partitions; served by the Parquet reader and by
    /// the scan cache.
    #[tokio::test]
    async fn joins_answer_alike_with_and_without_bloom_filters() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE facts (i INT, b BIGINT, s VARCHAR, v BIGINT);
                 INSERT INTO facts SELECT CAST(value % 5000 AS INT), value % 3001,                    'k' || CAST(value % 4000 AS VARCHAR), value FROM generate_series(1, 20000);
                 INSERT INTO facts SELECT NULL AS i, NULL AS b, NULL AS s, value FROM generate_series(1, 50);
                 CREATE TABLE dims (i INT, b BIGINT, s VARCHAR, tag VARCHAR);
                 INSERT INTO dims SELECT CAST(value * 3 AS INT), value * 7,                    'k' || CAST(value * 5 AS VARCHAR), CASE WHEN value % 2 = 0 THEN 'even' END                    FROM generate_series(1, 1500);
                 INSERT INTO dims VALUES (NULL, NULL, NULL, 'null keys')",
            )
            .await
            .expect("setup");
        let queries = [
            "SELECT count(*), sum(f.v) FROM facts f JOIN dims d ON f.i = d.i WHERE d.tag = 'even'",
            "SELECT count(*), sum(f.v) FROM facts f JOIN dims d ON f.i = d.i WHERE d.i < 30",
            "SELECT count(*), sum(f.v) FROM facts f JOIN dims d ON f.b = d.b",
            "SELECT count(*), sum(f.v) FROM facts f JOIN dims d ON f.s = d.s WHERE d.tag IS NULL",
            "SELECT count(*), sum(f.v) FROM facts f JOIN dims d ON f.i = d.i AND f.s = d.s",
            "SELECT count(*), sum(v) FROM facts WHERE b IN (SELECT b FROM dims WHERE tag = 'even')",
            "SELECT count(*), sum(v) FROM facts f WHERE EXISTS                (SELECT 1 FROM dims d WHERE d.s = f.s AND d.i > 100)",
            "SELECT count(*), sum(v) FROM facts f WHERE NOT EXISTS                (SELECT 1 FROM dims d WHERE d.i = f.i)",
            "SELECT count(*), sum(v) FROM facts WHERE i NOT IN (SELECT i FROM dims WHERE i < 900)",
            "SELECT count(*), sum(f.v), count(d.tag) FROM facts f LEFT JOIN dims d ON f.i = d.i",
            "SELECT count(*), sum(f.v), count(d.tag) FROM dims d LEFT JOIN facts f ON f.i = d.i",
            "SELECT count(*), sum(f.v) FROM facts f JOIN dims d ON f.b = d.b                JOIN dims e ON f.s = e.s WHERE d.tag = 'even'",
        ];
        let mut want = Vec::new();
        session
            .sql("SET strata.late_materialization = false")
            .await
            .expect("set");
        for sql in queries {
            want.push(run(&mut session, sql).await);
        }
        session
            .sql(
                "SET strata.late_materialization = true; SET strata.join_bloom_filters = true; \
                 SET strata.join_bloom_min_keys = 1",
            )
            .await
            .expect("set");
        for partitioned in [false, true] {
            // Thresholds of 0: every join is built in hash partitions.
            let threshold = if partitioned { 0 } else { 1 << 20 };
            for setting in [
                format!("datafusion.optimizer.hash_join_single_partition_threshold = {threshold}"),
                format!(
                    "datafusion.optimizer.hash_join_single_partition_threshold_rows = {threshold}"
                ),
                "datafusion.execution.target_partitions = 4".to_string(),
            ] {
                session.sql(&format!("SET {setting}")).await.expect("set");
            }
            for cache in [false, true, true] {
                session
                    .sql(&format!("SET strata.scan_cache = {cache}"))
                    .await
                    .expect("set");
                for (sql, want) in queries.iter().zip(&want) {
                    let got = run(&mut session, sql).await;
                    assert_eq!(
                        &got, want,
                        "{sql} (partitioned {partitioned}, cache {cache})"
                    );
                }
            }
        }
        // The large build side got a bloom filter, and the scan kept only the matches.
        let plan = run(&mut session, &format!("EXPLAIN ANALYZE {}", queries[2])).await;
        assert!(plan.contains("CollectJoinKeysExec: keys=[b@"), "{plan}");
        assert!(plan.contains("bloom_bytes="), "{plan}");
    }

    fn pool() -> Arc<dyn MemoryPool> {
        Arc::new(datafusion::execution::memory_pool::UnboundedMemoryPool::default())
    }

    fn set_of(keys: &[ArrayRef]) -> JoinKeySet {
        let set = JoinKeySet::new(keys.iter().map(|k| k.data_type().clone()).collect(), 1, 1);
        set.open(0, &pool());
        let mut hashes = Vec::new();
        hash_keys(keys, &mut hashes).unwrap();
        set.add(&hashes);
        set.finish();
        set
    }

    #[test]
    fn the_bloom_filter_passes_every_build_key_and_few_others() {
        let build: ArrayRef = Arc::new(Int64Array::from_iter_values((0..100_000).map(|i| i * 7)));
        let set = set_of(&[build]);
        let probe: ArrayRef = Arc::new(Int64Array::from_iter_values(0..700_000));
        let mask = set.mask(&[probe], None).unwrap().unwrap();
        for i in (0..700_000).step_by(7) {
            assert!(mask.value(i), "build key {i} rejected");
        }
        let false_positives = mask.true_count() - 100_000;
        assert!(
            false_positives < 600_000 / 40,
            "{false_positives} false positives of 600,000"
        );
    }

    #[test]
    fn null_keys_pass_and_a_selection_limits_the_mask() {
        let build: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let set = set_of(&[build]);
        let probe: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            None,
            Some("zz"),
            Some("b"),
            Some("b"),
        ]));
        let all = set.mask(&[Arc::clone(&probe)], None).unwrap().unwrap();
        assert_eq!(
            all.value(0) as u8 + all.value(1) as u8 + all.value(3) as u8,
            3
        );
        // Sparse selections hash only their rows; dense ones hash all and intersect.
        for selection in [
            vec![false, true, false, false, true],
            vec![true, true, true, false, true],
        ] {
            let selection = BooleanArray::from(selection);
            let mask = set
                .mask(
                    &[Arc::clone(&probe)],
                    Some((&selection, selection.true_count())),
                )
                .unwrap()
                .unwrap();
            for i in 0..5 {
                assert_eq!(mask.value(i), selection.value(i) && all.value(i), "row {i}");
            }
        }
        // Another key type hashes differently: no mask.
        let other: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(set.mask(&[other], None).unwrap().is_none());
    }

    #[test]
    fn a_set_completes_only_after_each_partition_is_read_once() {
        let types = vec![DataType::Int64];
        let set = JoinKeySet::new(types.clone(), 2, 1);
        set.open(0, &pool());
        set.add(&[1, 2]);
        set.finish();
        assert!(set.bloom().is_none(), "one of two partitions read");
        set.open(1, &pool());
        set.finish();
        assert!(set.bloom().is_some());

        let twice = JoinKeySet::new(types.clone(), 2, 1);
        twice.open(0, &pool());
        twice.finish();
        twice.open(0, &pool());
        twice.finish();
        assert!(twice.bloom().is_none(), "a partition read twice");

        let too_many = JoinKeySet::new(types.clone(), 1, 1);
        too_many.open(0, &pool());
        too_many.add(&vec![7; MAX_KEYS + 1]);
        too_many.finish();
        assert!(too_many.bloom().is_none(), "over MAX_KEYS keys");

        // The hashes are charged to the query's pool: a pool without room abandons the set,
        // and a built or abandoned set gives the memory back.
        let small: Arc<dyn MemoryPool> = Arc::new(
            datafusion::execution::memory_pool::GreedyMemoryPool::new(64),
        );
        let no_room = JoinKeySet::new(types.clone(), 1, 1);
        no_room.open(0, &small);
        no_room.add(&[1; 9]);
        no_room.finish();
        assert!(no_room.bloom().is_none(), "no room in the pool");
        assert_eq!(small.reserved(), 0);
        let room = JoinKeySet::new(types.clone(), 1, 1);
        room.open(0, &small);
        room.add(&[1; 8]);
        assert_eq!(small.reserved(), 64);
        room.finish();
        assert!(room.bloom().is_some());
        assert_eq!(small.reserved(), 0);

        let too_few = JoinKeySet::new(types, 1, 3);
        too_few.open(0, &pool());
        too_few.add(&[1, 2]);
        too_few.finish();
        assert!(too_few.bloom().is_none(), "under the minimum");
    }
}
