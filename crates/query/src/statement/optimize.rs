//! `OPTIMIZE t [PARTITION p] [ZORDER BY (a, b) | TIERED]` and `ALTER TABLE t CLUSTER BY (a, b)`:
//! rewriting a table's files into fewer, ordered ones, without changing a row.
//!
//! Small inserts, streaming and deletes leave many small files; each costs an object-store
//! request and a footer to read. `OPTIMIZE` rewrites every partition's small files (under
//! [`SMALL_FILE_SHARE`] of the target file size) into files of the target size, sorted by the
//! table's key, in one commit, and rewrites every file with deleted rows without them (folding
//! its deletion vector away); `ZORDER BY` lays all of a partition's rows along the Z-order of
//! the columns given instead (once, as Delta's `OPTIMIZE ... ZORDER BY`). `CLUSTER BY` makes a
//! key the table's own (Snowflake's clustering key): rewritten now, kept by every later write
//! (a Z-order for several columns).
//!
//! `TIERED` is the cheap, incremental form that automatic compaction runs (size-tiered
//! compaction, as LSM stores do): it merges only small files of like size, once
//! `strata.auto_compact_min_files` of one size gathered, so a stream's many small files become
//! medium ones and medium ones full-size ones, each row rewritten about once per tier.
//!
//! A rewrite reads nothing it could conflict over: concurrent appends go on, and a concurrent
//! statement that removed one of the files being rewritten, or deleted rows of it (a DELETE),
//! makes the commit fail and the statement run again on the newer files.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ObjectName, Partition};
use strata_storage::{DataFile, Reads, Snapshot, TableLog, TableMetadata, Transaction};

use crate::error::{Error, Result};
use crate::parser;
use crate::result::StatementResult;
use crate::session::Session;
use crate::table::clustering::ordered;
use crate::table::provider::StrataTable;
use crate::table::write::write_batches;

/// A file under this share of the target file size is small: `OPTIMIZE` compacts it.
pub(crate) const SMALL_FILE_SHARE: f64 = 0.75;

/// Files of one size tier that `OPTIMIZE ... TIERED` merges when automatic compaction is off
/// (`strata.auto_compact_min_files = 0`), its default.
const DEFAULT_TIER_FILES: usize = 16;

/// Size ratio between the tiers of `OPTIMIZE ... TIERED`: tier 0 holds the small files of at
/// least 1/16 of the small-file bound, tier 1 those of at least 1/256, and so on.
const TIER_RATIO: u64 = 16;

/// `OPTIMIZE ... TIERED` rewrites the small files of every tier but the largest together
/// once this many times `min_files` have gathered across the tiers (a bound on small files).
const TIERED_ALL_FACTOR: usize = 4;

/// The size tier of a small file of `size` bytes: 0 for the largest small files, one more for
/// each [`TIER_RATIO`] smaller.
fn size_tier(size: u64, small: u64) -> u32 {
    let mut tier = 0;
    let mut bound = small / TIER_RATIO;
    while size < bound {
        tier += 1;
        bound /= TIER_RATIO;
    }
    tier
}

/// The small files (under `small` bytes) of one partition that size-tiered compaction
/// rewrites: those of every size tier that holds `min_files` of them; and once
/// [`TIERED_ALL_FACTOR`] times `min_files` small files have gathered (spread over tiers, as
/// when compaction lags a burst), those of every tier but the largest as well. Merging like
/// sizes keeps each row's rewrites to about one per tier: merging every small file each time
/// would rewrite the partition's biggest small files again and again while a stream keeps
/// adding small ones.
pub(crate) fn tiered_small_files<'a>(
    files: &[&'a DataFile],
    small: u64,
    min_files: usize,
) -> Vec<&'a DataFile> {
    let min_files = min_files.max(2);
    let smalls: Vec<&DataFile> = files
        .iter()
        .copied()
        .filter(|f| f.size_bytes < small)
        .collect();
    let mut per_tier: BTreeMap<u32, usize> = BTreeMap::new();
    for file in &smalls {
        *per_tier
            .entry(size_tier(file.size_bytes, small))
            .or_default() += 1;
    }
    let largest = per_tier.keys().next().copied().unwrap_or_default();
    let too_many = smalls.len() >= min_files.saturating_mul(TIERED_ALL_FACTOR);
    let chosen: Vec<&DataFile> = smalls
        .iter()
        .copied()
        .filter(|f| {
            let tier = size_tier(f.size_bytes, small);
            per_tier[&tier] >= min_files || (too_many && tier != largest)
        })
        .collect();
    if chosen.len() < 2 && too_many {
        return smalls;
    }
    chosen
}

/// Runs `OPTIMIZE`.
pub(crate) async fn optimize(
    session: &Session,
    name: &ObjectName,
    partition: Option<&Partition>,
    zorder: Option<&[SqlExpr]>,
    tiered: bool,
) -> Result<StatementResult> {
    if tiered && zorder.is_some() {
        return Err(Error::Unsupported(
            "OPTIMIZE ... ZORDER BY rewrites whole partitions; it cannot be TIERED".to_string(),
        ));
    }
    let (log, snapshot, qualified) = session.open_table_for_write(name).await?;
    let metadata = &snapshot.metadata;
    let only = match partition {
        None => None,
        Some(Partition::Identifier(ident)) => Some(parser::normalize(ident)),
        Some(Partition::Expr(SqlExpr::Identifier(ident))) => Some(parser::normalize(ident)),
        Some(Partition::Expr(SqlExpr::Value(v))) => {
            Some(v.to_string().trim_matches('\'').to_string())
        }
        Some(other) => {
            return Err(Error::Unsupported(format!(
                "OPTIMIZE ... PARTITION {other}: name one partition"
            )));
        }
    };
    if let Some(p) = &only {
        let known = metadata
            .partitioning
            .as_ref()
            .is_some_and(|layout| layout.partition(p).is_some());
        if !known {
            return Err(Error::Plan(format!(
                "{qualified} has no partition '{p}' (see system.partitions)"
            )));
        }
    }
    let zorder = match zorder {
        None => None,
        Some(exprs) => Some(column_names(&qualified, metadata, exprs)?),
    };
    let target = session.write_options().target_file_size_bytes;
    let small = (target as f64 * SMALL_FILE_SHARE) as u64;
    let min_files = match session.strata_options().auto_compact_min_files {
        0 => DEFAULT_TIER_FILES,
        n => n as usize,
    };
    let mut by_partition: BTreeMap<&str, Vec<&DataFile>> = BTreeMap::new();
    for file in snapshot.files.values() {
        if only.as_ref().is_none_or(|p| *p == file.partition) {
            by_partition.entry(&file.partition).or_default().push(file);
        }
    }
    let pending = metadata.pending_files(|p| snapshot.files.contains_key(p));
    let mut files = Vec::new();
    let mut partitions = 0;
    for group in by_partition.values() {
        // Small files, files with deleted rows (their deletion vectors fold away), and files a
        // background index build has still to rewrite.
        let must = |f: &DataFile| f.deletion_vector.is_some() || pending.contains(f.path.as_str());
        let chosen: Vec<&DataFile> = if zorder.is_some() {
            group.clone()
        } else if tiered {
            let mut chosen = tiered_small_files(group, small, min_files);
            let taken: HashSet<&str> = chosen.iter().map(|f| f.path.as_str()).collect();
            let also: Vec<&DataFile> = group
                .iter()
                .copied()
                .filter(|f| must(f) && !taken.contains(f.path.as_str()))
                .collect();
            chosen.extend(also);
            chosen
        } else {
            group
                .iter()
                .copied()
                .filter(|f| f.size_bytes < small || must(f))
                .collect()
        };
        let needed = chosen.iter().any(|f| must(f));
        if chosen.len() > 1 || ((zorder.is_some() || needed) && !chosen.is_empty()) {
            partitions += 1;
            files.extend(chosen.into_iter().cloned());
        }
    }
    if files.is_empty() && tiered {
        return Ok(StatementResult::status(format!(
            "{qualified} needs no tiered compaction: no partition has {min_files} small files \
             of like size, and no file has deleted rows"
        )));
    }
    if files.is_empty() {
        return Ok(StatementResult::status(format!(
            "{qualified} is already optimized: no partition has more than one small file, \
             and no file has deleted rows"
        )));
    }
    let removed = files.len();
    let order = zorder.as_deref().map(|columns| (columns, true));
    let mut after = metadata.clone();
    let rewritten = files.iter().map(|f| f.path.as_str()).collect();
    after.rewrote(&rewritten, |p| snapshot.files.contains_key(p));
    let (rows, written) = rewrite(
        session, &qualified, &log, &snapshot, after, files, order, "OPTIMIZE",
    )
    .await?;
    Ok(StatementResult::status(format!(
        "optimized {qualified}: {} ({rows} rows) in {} rewritten into {}",
        files_word(removed),
        plural(partitions, "partition"),
        files_word(written)
    )))
}

/// Runs `ALTER TABLE t CLUSTER BY (a, b)` (`columns`), or `DROP CLUSTERING KEY` (none).
pub(crate) async fn cluster_by(
    session: &Session,
    name: &ObjectName,
    columns: Option<&[SqlExpr]>,
) -> Result<StatementResult> {
    let (log, snapshot, qualified) = session.open_table_for_write(name).await?;
    let mut metadata = snapshot.metadata.clone();
    let Some(exprs) = columns else {
        if metadata.cluster_by.is_empty() {
            return Ok(StatementResult::status(format!(
                "{qualified} has no clustering key"
            )));
        }
        metadata.cluster_by.clear();
        let mut txn = Transaction::new("ALTER TABLE");
        txn.replace_metadata = Some(metadata);
        session
            .warehouse()
            .commit(&qualified, &log, &snapshot, &txn)
            .await?;
        return Ok(StatementResult::status(format!(
            "dropped the clustering key of {qualified}"
        )));
    };
    metadata.cluster_by = column_names(&qualified, &metadata, exprs)?;
    let key = metadata.cluster_by.join(", ");
    let files: Vec<DataFile> = snapshot.files.values().cloned().collect();
    let count = files.len();
    let (rows, written) = rewrite(
        session,
        &qualified,
        &log,
        &snapshot,
        metadata,
        files,
        None,
        "CLUSTER BY",
    )
    .await?;
    let how = if exprs.len() > 1 { "Z-order of " } else { "" };
    Ok(StatementResult::status(format!(
        "{qualified} is clustered by the {how}({key}): rewrote {} ({rows} rows) into {}",
        files_word(count),
        files_word(written)
    )))
}

/// The table columns `exprs` name, each once.
fn column_names(table: &str, metadata: &TableMetadata, exprs: &[SqlExpr]) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(exprs.len());
    for expr in exprs {
        let SqlExpr::Identifier(ident) = expr else {
            return Err(Error::Unsupported(format!(
                "clustering by the expression {expr}: name columns"
            )));
        };
        let name = parser::normalize(ident);
        if metadata.column(&name).is_none() {
            return Err(Error::Plan(format!("{table} has no column '{name}'")));
        }
        if names.contains(&name) {
            return Err(Error::Plan(format!("column '{name}' is named twice")));
        }
        names.push(name);
    }
    if names.is_empty() {
        return Err(Error::Plan("name at least one column".to_string()));
    }
    Ok(names)
}

/// Rewrites `files` of the table under `metadata` and commits the new files, the removal of
/// `files` and `metadata` at once. Rows are ordered by `order` (columns, and whether by their
/// Z-order), else by `metadata`'s key, over all the rewritten rows, so consecutive files hold
/// consecutive ranges. Returns the rows and the number of files written.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn rewrite(
    session: &Session,
    qualified: &str,
    log: &TableLog,
    snapshot: &Snapshot,
    metadata: TableMetadata,
    files: Vec<DataFile>,
    order: Option<(&[String], bool)>,
    operation: &str,
) -> Result<(u64, usize)> {
    let keep: HashSet<String> = files.iter().map(|f| f.path.clone()).collect();
    let table = StrataTable::new(
        session.warehouse().clone(),
        qualified.to_string(),
        log.clone(),
        snapshot.clone(),
        false,
    )
    .with_files(|f| keep.contains(&f.path));
    let columns: Vec<String> = snapshot
        .metadata
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let (key, curve) = match order {
        Some((key, curve)) => (key.to_vec(), curve),
        None => (metadata.sort_key().to_vec(), metadata.sorts_by_curve()),
    };
    let plan = LogicalPlanBuilder::scan(qualified, provider_as_source(Arc::new(table)), None)?;
    let rows = files.iter().map(|f| f.live_rows()).sum();
    let plan = ordered(plan, &columns, &key, curve, rows)?.build()?;
    let stream = session
        .context()
        .execute_logical_plan(plan)
        .await?
        .execute_stream()
        .await?;
    let mut txn = Transaction::new(operation);
    if metadata != snapshot.metadata {
        txn.replace_metadata = Some(metadata);
    }
    txn.remove = files;
    txn.reads = Reads::Nothing;
    txn.rewrite_only = true;
    let mut options = session.write_options();
    options.presorted = true;
    let (rows, committed) = write_batches(
        session.warehouse(),
        options,
        qualified,
        log,
        snapshot,
        stream,
        txn,
    )
    .await?;
    let written = committed
        .files
        .keys()
        .filter(|path| !snapshot.files.contains_key(*path))
        .count();
    Ok((rows, written))
}

/// "1 file", "3 files".
pub(crate) fn files_word(n: usize) -> String {
    plural(n, "file")
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use arrow::util::pretty::pretty_format_batches;

    use crate::Warehouse;

    async fn text(session: &mut crate::Session, sql: &str) -> String {
        let result = session
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pretty_format_batches(&result.last().expect("a result").batches)
            .expect("format")
            .to_string()
    }

    fn file(name: &str, size_bytes: u64) -> strata_storage::DataFile {
        strata_storage::DataFile {
            path: name.to_string(),
            partition: String::new(),
            rows: 1,
            size_bytes,
            stats: Default::default(),
            field_ids: Default::default(),
            deletion_vector: None,
        }
    }

    /// Tiered compaction merges only files of like size: a stream's small files, not the medium
    /// file they were merged into last time, until enough medium files gather; and everything
    /// small once the small files grow past four times the bound.
    #[test]
    fn tiered_compaction_merges_like_sizes() {
        use super::{size_tier, tiered_small_files};
        let small = 96 << 20;
        assert_eq!(size_tier(50 << 20, small), 0);
        assert_eq!(size_tier(6 << 20, small), 0);
        assert_eq!(size_tier((6 << 20) - 1, small), 1);
        assert_eq!(size_tier(2 << 20, small), 1);
        assert_eq!(size_tier(0, small), size_tier(1, small));
        let merged = file("merged", 32 << 20);
        let full = file("full", 128 << 20);
        let fresh: Vec<_> = (0..4).map(|i| file(&format!("f{i}"), 2 << 20)).collect();
        let mut files: Vec<&strata_storage::DataFile> = vec![&merged, &full];
        files.extend(fresh.iter().take(3));
        let names = |chosen: Vec<&strata_storage::DataFile>| -> Vec<String> {
            chosen.iter().map(|f| f.path.clone()).collect()
        };
        assert!(tiered_small_files(&files, small, 4).is_empty());
        files.push(&fresh[3]);
        assert_eq!(
            names(tiered_small_files(&files, small, 4)),
            ["f0", "f1", "f2", "f3"]
        );
        // Sixteen small files or more, spread over tiers (4 × 4): all but the largest tier's.
        let tiny: Vec<_> = (0..12)
            .map(|i| file(&format!("t{i}"), 1000 + i * 300_000))
            .collect();
        files.extend(tiny.iter());
        let chosen = names(tiered_small_files(&files, small, 4));
        assert_eq!(chosen.len(), 16, "{chosen:?}");
        assert!(!chosen.contains(&"merged".to_string()), "{chosen:?}");
        // All in one tier but too many: all of them.
        let same: Vec<_> = (0..16).map(|i| file(&format!("s{i}"), 7 << 20)).collect();
        let same: Vec<&strata_storage::DataFile> = same.iter().collect();
        assert_eq!(tiered_small_files(&same, small, 4).len(), 16);
    }

    /// Hundreds of one-row inserts leave one file each; OPTIMIZE leaves one file per partition,
    /// the same answers, and the versions before it readable.
    #[tokio::test]
    async fn small_files_compact_into_one_per_partition() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql("CREATE TABLE t (id INT, at DATE, v DOUBLE) PARTITION BY RANGE (at) INTERVAL (1 MONTH)")
            .await
            .expect("create");
        let inserts = 300;
        for i in 0..inserts {
            session
                .sql(&format!(
                    "INSERT INTO t VALUES ({i}, DATE '2024-01-01' + {}, {i}.5)",
                    (i * 7) % 90
                ))
                .await
                .expect("insert");
        }
        let answers = "SELECT date_trunc('month', at) AS m, count(*) AS n, sum(v) AS s, \
                       min(id) AS lo, max(id) AS hi FROM t GROUP BY 1 ORDER BY 1";
        let before = text(&mut session, answers).await;
        let files = "SELECT sum(file_count) AS files, max(file_count) AS most \
                     FROM system.partitions WHERE table_name = 't'";
        assert!(
            text(&mut session, files)
                .await
                .contains(&format!("| {inserts}"))
        );
        session.sql("OPTIMIZE t").await.expect("optimize");
        assert!(
            text(&mut session, files).await.contains("| 3     | 1    |"),
            "{}",
            text(&mut session, files).await
        );
        assert_eq!(text(&mut session, answers).await, before);
        let old = text(
            &mut session,
            &format!("SELECT count(*) AS n FROM t AT (VERSION => {inserts})"),
        )
        .await;
        assert!(old.contains(&format!("| {inserts} |")), "{old}");
    }

    /// A rewrite orders each partition's file by the key, however the rows are spread over
    /// the days of a month: read back file by file, every partition's keys ascend.
    #[tokio::test]
    async fn rewritten_files_are_sorted_within_each_partition() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "SET datafusion.execution.target_partitions = 1;
                 SET strata.scan_cache = false;
                 CREATE TABLE t (at DATE, k INT) PARTITION BY RANGE (at) INTERVAL (1 MONTH);
                 INSERT INTO t SELECT DATE '2024-01-01' + CAST(value % 90 AS INT),
                   CAST(value * 7919 % 10007 AS INT) FROM generate_series(1, 9000);
                 CREATE INDEX k_idx ON t (k)",
            )
            .await
            .expect("setup");
        for month in ["2024-01-01", "2024-02-01", "2024-03-01"] {
            let result = session
                .sql(&format!(
                    "SELECT k FROM t WHERE at >= DATE '{month}' AND at < DATE '{month}' + INTERVAL '1 month'"
                ))
                .await
                .expect("read");
            let keys: Vec<i32> = result[0]
                .batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<arrow::array::Int32Array>()
                        .expect("ints")
                        .values()
                        .to_vec()
                })
                .collect();
            assert!(keys.len() > 2000, "{month}: {} rows", keys.len());
            assert!(
                keys.windows(2).all(|w| w[0] <= w[1]),
                "{month} is not sorted by k"
            );
        }
    }
}
