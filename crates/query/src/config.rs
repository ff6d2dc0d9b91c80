//! Every setting of Strata in one place, typed.
//!
//! Two kinds: [`WarehouseOptions`], fixed when a warehouse opens (how files are written, the
//! memory limit, the scan cache budget), and [`StrataOptions`], the `SET strata.<name> = ...`
//! settings of a session, a DataFusion [`ConfigExtension`] so that `SET`, `SHOW` and
//! `information_schema.df_settings` handle them like DataFusion's own. Scans, the MV rewrite
//! and the statements read their switches from here, not from each other.

use std::time::Duration;

use datafusion::config::ConfigExtension;
use datafusion::prelude::SessionConfig;
use strata_storage::WriteOptions;

use crate::error::{Error, Result};

datafusion::common::extensions_options! {
    /// Strata's session settings: `SET strata.<name> = <value>`.
    pub struct StrataOptions {
        /// Answer queries from materialized views that hold their result.
        pub mv_rewrite: bool, default = true
        /// How far behind its sources a materialized view may be and still answer queries,
        /// e.g. '5 minutes'; '0 seconds' accepts only views with no unreflected change.
        pub max_staleness: String, default = "0 seconds".to_string()
        /// Scans below a hash join decode the join key first and the other columns only for
        /// the rows the join's filter keeps.
        pub late_materialization: bool, default = true
        /// With late materialization, a hash join also collects its build keys into a bloom
        /// filter, which the scans below test before they look a row up in the join's hash
        /// table. Off by default: so far it has measured slower (TPC-H SF 10 Q4, BENCHMARKS.md).
        pub join_bloom_filters: bool, default = false
        /// A join whose build side has fewer keys than this gets no bloom filter: its hash
        /// table is small enough to stay in the CPU cache.
        pub join_bloom_min_keys: usize, default = 32 * 1024
        /// A scan whose filters DataFusion cannot estimate from column statistics (LIKE,
        /// functions, lists of ORs) measures them on a sample of one data file, so that joins
        /// build their hash tables on the side that really is smaller.
        pub sample_filter_selectivity: bool, default = true
        /// Scans serve hot data files from the warehouse's cache of decoded columns
        /// (`WarehouseOptions::scan_cache_bytes`) and add the files they read to it.
        pub scan_cache: bool, default = true
        /// Interval partitions one statement may create; a statement that would create more
        /// fails and writes nothing (a wrong key, such as epoch milliseconds in a column
        /// partitioned by day, would otherwise make millions).
        pub max_partitions_per_statement: usize, default = strata_storage::DEFAULT_MAX_NEW_PARTITIONS
        /// Times a statement that lost a commit race to a concurrent writer runs again,
        /// planned on the newer snapshot, before it fails with the conflict (0: never).
        pub max_statement_retries: u32, default = 10
        /// VACUUM refuses a retention under 7 days (Delta's default): a shorter one deletes
        /// files that time travel to recent versions, and writers still running, need. Set to
        /// false to allow it.
        pub vacuum_retention_check: bool, default = true
        /// `strata serve` compacts a partition (an `OPTIMIZE` of it) once it holds this many
        /// small files (under 3/4 of the target file size); 0 turns automatic compaction off.
        pub auto_compact_min_files: u32, default = 16
        /// `UPDATE`, `DELETE`, `MERGE` and `APPLY CHANGES` rewrite a data file without its
        /// deleted rows when more than this share of them is deleted; below it they mark the
        /// rows in the file's deletion vector. 0 always rewrites (copy-on-write), 1 never.
        pub dml_rewrite_share: f64, default = 0.5
        /// With a cluster (`--cluster`), a query runs on it when its scans read at least this
        /// many data files after pruning; smaller ones run here, where they start faster.
        pub cluster_min_files: usize, default = 8
        /// How long a query on the cluster may run, e.g. '10 minutes'; past it the job is
        /// cancelled and the statement fails.
        pub cluster_job_timeout: String, default = "10 minutes".to_string()
        /// With a cluster, the bytes of data files one task of a scan reads (Spark's
        /// `maxPartitionBytes`): files are packed into tasks of about this size, each file (or
        /// range of a large one) in one task. Smaller tasks spread a scan over more executors
        /// and cost the scheduler more.
        pub cluster_task_bytes: usize, default = 128 * 1024 * 1024
        /// With a cluster, a hash join whose keys prune a scan's partitions or files (its
        /// table's partition or cluster column) and whose build side reads at most this many
        /// rows is evaluated here before the job leaves: its keys' bounds drop the files no
        /// key matches. 0 turns this off.
        pub cluster_join_filter_rows: u64, default = 1_000_000
    }
}

impl ConfigExtension for StrataOptions {
    const PREFIX: &'static str = "strata";
}

/// Fails on the first of `settings` that is not a known setting with a valid value.
pub(crate) fn check_settings(settings: &[(String, String)]) -> Result<()> {
    let mut config = SessionConfig::new().with_option_extension(StrataOptions::default());
    for (name, value) in settings {
        config
            .options_mut()
            .set(name, value)
            .map_err(|e| Error::Plan(format!("setting {name} = {value}: {e}")))?;
    }
    Ok(())
}

/// Parses a duration such as `5 minutes`, `1 hour`, `30 seconds`, `2 days`, `200 ms`
/// (singular or plural, `sec`, `min` and `milliseconds` too).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || {
        Error::Plan(format!(
            "'{text}' is not a duration such as '5 minutes' (milliseconds, seconds, minutes, \
             hours, days)"
        ))
    };
    let mut words = text.split_whitespace();
    let n: u64 = words.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let unit = words.next().ok_or_else(bad)?.to_ascii_lowercase();
    let millis = match unit.as_str() {
        "ms" | "msec" | "msecs" => 1,
        _ => match unit.trim_end_matches('s') {
            "millisecond" => 1,
            "second" | "sec" => 1_000,
            "minute" | "min" => 60_000,
            "hour" => 3_600_000,
            "day" => 86_400_000,
            _ => return Err(bad()),
        },
    };
    if words.next().is_some() {
        return Err(bad());
    }
    n.checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| Error::Plan(format!("'{text}' is too long a duration")))
}

/// Settings of an open warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseOptions {
    /// How data files are written.
    pub write: WriteOptions,
    /// Days of `system.query_log` kept; older days are deleted when the warehouse opens.
    pub query_log_retention_days: u32,
    /// Memory the warehouse may use, in bytes: running queries, the scan cache and the
    /// metadata caches together (see [`crate::memory`]); `None` for no limit. Operators that
    /// can spill (sort, hash aggregate, sort-merge join) spill to the OS temp directory when
    /// the pool is full and they hold their fair share, after the scan cache has given its
    /// memory back.
    pub memory_limit: Option<usize>,
    /// How many partitions (and so threads) a query runs on; `None` for one per CPU core.
    pub target_partitions: Option<usize>,
    /// Settings every session starts with, as if it ran `SET name = value` first
    /// (e.g. `datafusion.execution.batch_size`, `strata.late_materialization`).
    pub settings: Vec<(String, String)>,
    /// Memory for decoded columns of hot data files, in bytes, shared by all sessions (see
    /// [`crate::scan_cache`]); 0 turns the cache off. Under `memory_limit` it is part of the
    /// limit, at most three quarters of what queries may hold, and gives memory back to them.
    pub scan_cache_bytes: usize,
    /// The Ballista scheduler queries run on (`df://host:port`), when the warehouse is read
    /// through a cluster (see [`crate::cluster`]); `None` runs everything in this process.
    pub cluster: Option<String>,
}

/// The default budget of the scan cache: a quarter of the machine's memory (as Postgres
/// advises for its buffer cache), or 1 GiB where the memory cannot be read.
pub fn default_scan_cache_bytes() -> usize {
    machine_memory().map_or(1 << 30, |bytes| bytes / 4)
}

/// The default memory limit of `strata serve`: three quarters of the machine's memory, scan
/// cache included, or 4 GiB where the memory cannot be read. A server without a limit lets
/// one large query take the memory of every session.
pub fn default_server_memory_limit() -> usize {
    machine_memory().map_or(4 << 30, |bytes| bytes / 4 * 3)
}

/// The machine's memory, from `/proc/meminfo`.
fn machine_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Default for WarehouseOptions {
    fn default() -> Self {
        Self {
            write: WriteOptions::default(),
            query_log_retention_days: 30,
            memory_limit: None,
            target_partitions: None,
            settings: Vec::new(),
            scan_cache_bytes: default_scan_cache_bytes(),
            cluster: None,
        }
    }
}

/// Parses a byte size such as `2GiB`, `512 MiB`, `1.5GB` or `1048576` (binary and decimal
/// units are both read as powers of 1024, as memory limits usually mean).
pub fn parse_byte_size(text: &str) -> std::result::Result<usize, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as 2GiB or 512MiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit '{other}' in '{text}'")),
    };
    Ok((number * scale) as usize)
}
