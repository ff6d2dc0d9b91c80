//! Table upkeep: partition retention and automatic compaction, on demand and inside
//! `strata serve`.
//!
//! - `ALTER TABLE t SET (partition_retention = '13 months')` keeps a time-partitioned table's
//!   partitions for that long after their upper bound; `ALTER TABLE t APPLY RETENTION` drops
//!   the ones that expired, in one commit (`APPLY RETENTION` in `system.table_versions`), and
//!   `system.partitions.expires_at` shows when each will.
//! - [`run_maintenance`], started by `strata serve`, applies retention and compacts every
//!   partition that gathered `strata.auto_compact_min_files` small files of like size, whose
//!   deletion vectors mark over a fifth of its rows, or that holds files a `CREATE INDEX
//!   CONCURRENTLY` has still to rewrite (an `OPTIMIZE ... TIERED` of that partition, which
//!   merges like sizes only), each inside the server's query slots. Several
//!   servers on one warehouse may do the same at once: the commits conflict, the loser runs
//!   again and finds nothing left to do.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ObjectName, SqlOption, Value};
use strata_storage::{DataFile, Retention, Snapshot, Transaction};

use crate::catalog::materialized_view::Definition;
use crate::error::{Error, Result};
use crate::parser;
use crate::result::StatementResult;
use crate::session::Session;
use crate::statement::optimize::{SMALL_FILE_SHARE, tiered_small_files};
use crate::table::{COMMIT_INTERVAL_PROPERTY, FRESHNESS_SLA_PROPERTY, MAX_COMMIT_INTERVAL};
use crate::warehouse::{TEST_ON_LOAD, Warehouse};

/// Runs `ALTER TABLE t SET (option = value, ...)`: the table options that can change after
/// creation (`partition_retention`, `NONE` removes it; `freshness_sla = '1 hour'`;
/// `test_on_load = true | false`, the data-test gate of [`crate::statement::data_tests`];
/// `ingest_commit_interval = '200 ms'`, the group commit of [`crate::statement::channels`]).
pub(crate) async fn set_options(
    session: &Session,
    name: &ObjectName,
    options: &[SqlOption],
) -> Result<StatementResult> {
    let (log, snapshot, qualified) = session.open_table_for_write(name).await?;
    let mut metadata = snapshot.metadata.clone();
    let mut notes = Vec::new();
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(Error::Unsupported(format!(
                "ALTER TABLE ... SET ({option})"
            )));
        };
        let key = parser::normalize(key);
        if ![
            Retention::PROPERTY,
            TEST_ON_LOAD,
            FRESHNESS_SLA_PROPERTY,
            COMMIT_INTERVAL_PROPERTY,
        ]
        .contains(&key.as_str())
        {
            return Err(Error::Unsupported(format!(
                "ALTER TABLE ... SET ({key} = ...): the options that can change are \
                 partition_retention, test_on_load, freshness_sla and ingest_commit_interval"
            )));
        }
        let text = match value {
            SqlExpr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                Value::Null => "none".to_string(),
                other => other.to_string(),
            },
            SqlExpr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        };
        if key == TEST_ON_LOAD {
            let on = match text.to_ascii_lowercase().as_str() {
                "true" | "on" | "1" => true,
                "false" | "off" | "0" | "none" => false,
                _ => {
                    return Err(Error::Plan(format!(
                        "test_on_load = {text}: expected true or false"
                    )));
                }
            };
            if on {
                metadata
                    .properties
                    .insert(TEST_ON_LOAD.to_string(), "true".to_string());
            } else {
                metadata.properties.remove(TEST_ON_LOAD);
            }
            notes.push(format!("test_on_load {on}"));
            continue;
        }
        if key == COMMIT_INTERVAL_PROPERTY {
            if text.eq_ignore_ascii_case("none") {
                metadata.properties.remove(COMMIT_INTERVAL_PROPERTY);
                notes.push("default ingest commit interval".to_string());
                continue;
            }
            let interval = crate::config::parse_duration(&text)?;
            if interval > MAX_COMMIT_INTERVAL {
                return Err(Error::Plan(format!(
                    "ingest_commit_interval = '{text}': at most {} seconds",
                    MAX_COMMIT_INTERVAL.as_secs()
                )));
            }
            metadata
                .properties
                .insert(COMMIT_INTERVAL_PROPERTY.to_string(), text.clone());
            notes.push(format!("ingest commit interval {text}"));
            continue;
        }
        if key == FRESHNESS_SLA_PROPERTY {
            if text.eq_ignore_ascii_case("none") {
                metadata.properties.remove(FRESHNESS_SLA_PROPERTY);
                notes.push("no freshness SLA".to_string());
                continue;
            }
            let sla = crate::config::parse_duration(&text)?;
            if sla.is_zero() {
                return Err(Error::Plan(format!(
                    "freshness_sla = '{text}': the SLA must be longer than zero"
                )));
            }
            metadata
                .properties
                .insert(FRESHNESS_SLA_PROPERTY.to_string(), text.clone());
            notes.push(format!("freshness SLA {text}"));
            continue;
        }
        if text.eq_ignore_ascii_case("none") {
            metadata.properties.remove(Retention::PROPERTY);
            notes.push("no partition retention".to_string());
            continue;
        }
        let retention = Retention::parse(&text)?;
        let Some(layout) = &metadata.partitioning else {
            return Err(Error::Plan(format!(
                "{qualified} is not partitioned: partition_retention needs a table partitioned \
                 by a DATE or TIMESTAMP column"
            )));
        };
        if matches!(layout.key_type, strata_storage::KeyType::Integer) {
            return Err(Error::Plan(format!(
                "{qualified} is partitioned by the number '{}': partition_retention needs a \
                 DATE or TIMESTAMP partition key",
                layout.column
            )));
        }
        metadata
            .properties
            .insert(Retention::PROPERTY.to_string(), retention.to_string());
        notes.push(format!("partition retention {retention}"));
    }
    if metadata == snapshot.metadata {
        return Ok(StatementResult::status(format!("{qualified} unchanged")));
    }
    let mut txn = Transaction::new("ALTER TABLE");
    txn.replace_metadata = Some(metadata);
    session
        .warehouse()
        .commit(&qualified, &log, &snapshot, &txn)
        .await?;
    Ok(StatementResult::status(format!(
        "altered table {qualified}: {}",
        notes.join(", ")
    )))
}

/// Runs `ALTER TABLE t APPLY RETENTION`.
pub(crate) async fn apply_retention(
    session: &Session,
    name: &ObjectName,
) -> Result<StatementResult> {
    let (_, snapshot, qualified) = session.open_table_for_write(name).await?;
    let metadata = &snapshot.metadata;
    let Some(text) = metadata.properties.get(Retention::PROPERTY) else {
        return Err(Error::Plan(format!(
            "{qualified} has no partition_retention (ALTER TABLE ... SET (partition_retention \
             = '13 months'))"
        )));
    };
    let retention = Retention::parse(text)?;
    let Some(layout) = &metadata.partitioning else {
        return Err(Error::Plan(format!("{qualified} is not partitioned")));
    };
    let expired: Vec<String> = retention
        .expired(layout, Utc::now())
        .into_iter()
        .map(|p| p.name.clone())
        .collect();
    if expired.is_empty() {
        return Ok(StatementResult::status(format!(
            "no partition of {qualified} has expired (retention {retention})"
        )));
    }
    session
        .drop_partitions(name, &expired, true, "APPLY RETENTION")
        .await
}

/// `strata serve` rewrites a partition (an `OPTIMIZE` of it) once deletion vectors mark more
/// than this share of its rows: every scan of it reads them for nothing.
const FOLD_DELETED_SHARE: f64 = 0.2;

/// Applies partition retention and compacts partitions with many small files, on every table,
/// every `tick`, until the task is dropped (`strata serve` runs it). Each piece of work is one
/// statement run inside `slots`; failures are logged and tried again at the next tick.
pub async fn run_maintenance(
    warehouse: Warehouse,
    tick: Duration,
    slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
) {
    loop {
        tokio::time::sleep(tick).await;
        if let Err(e) = maintain(&warehouse, slots.as_ref()).await {
            tracing::warn!(error = %e, "table maintenance failed");
        }
    }
}

/// The partitions of a table that maintenance compacts: those where `min_files` small files
/// (under `small` bytes) of like size gathered (none when `min_files` is 0; see
/// [`tiered_small_files`]), or whose deletion vectors mark a large share of their rows, or with
/// files a background index build has still to rewrite.
pub(crate) fn partitions_to_compact(
    snapshot: &Snapshot,
    min_files: u32,
    small: u64,
) -> Vec<String> {
    if min_files == 0 {
        return Vec::new();
    }
    let metadata = &snapshot.metadata;
    let pending = metadata.pending_files(|p| snapshot.files.contains_key(p));
    let mut by_partition: BTreeMap<&str, Vec<&DataFile>> = BTreeMap::new();
    for file in snapshot.files.values() {
        by_partition.entry(&file.partition).or_default().push(file);
    }
    by_partition
        .into_iter()
        .filter(|(_, files)| {
            let rows: u64 = files.iter().map(|f| f.rows).sum();
            let deleted: u64 = files.iter().map(|f| f.deleted_rows()).sum();
            tiered_small_files(files, small, min_files as usize).len() > 1
                || deleted as f64 > FOLD_DELETED_SHARE * rows as f64
                || files.iter().any(|f| pending.contains(f.path.as_str()))
        })
        .map(|(partition, _)| partition.to_string())
        .collect()
}

/// The size-tiered `OPTIMIZE` of one partition of `table` (quoted), or of the table when it
/// is unpartitioned.
pub(crate) fn optimize_statement(table: &str, partition: &str) -> String {
    if partition.is_empty() {
        format!("OPTIMIZE {table} TIERED")
    } else {
        format!("OPTIMIZE {table} PARTITION {} TIERED", quote(partition))
    }
}

/// `name` as a double-quoted identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One pass of [`run_maintenance`]: each piece of work is a statement (`ALTER TABLE ...
/// APPLY RETENTION`, `OPTIMIZE ... PARTITION p`), so it is retried after a lost commit race
/// and recorded in the query log like any other.
pub(crate) async fn maintain(
    warehouse: &Warehouse,
    slots: Option<&std::sync::Arc<tokio::sync::Semaphore>>,
) -> Result<()> {
    warehouse.refresh_catalog().await?;
    let session = warehouse.session();
    let min_files = session.strata_options().auto_compact_min_files;
    let target = session.write_options().target_file_size_bytes;
    let small = (target as f64 * SMALL_FILE_SHARE) as u64;
    let mut work = Vec::new();
    let catalog = warehouse.catalog();
    for (db, d) in &catalog.databases {
        for (schema, s) in &d.schemas {
            for (table, t) in &s.tables {
                let log = warehouse.table_log(&t.id, table);
                let Ok(snapshot) = warehouse.snapshot(&log).await else {
                    continue;
                };
                let metadata = &snapshot.metadata;
                let name = format!("{}.{}.{}", quote(db), quote(schema), quote(table));
                if let (Some(text), Some(layout)) = (
                    metadata.properties.get(Retention::PROPERTY),
                    &metadata.partitioning,
                ) && Retention::parse(text)
                    .is_ok_and(|r| !r.expired(layout, Utc::now()).is_empty())
                {
                    work.push(format!("ALTER TABLE {name} APPLY RETENTION"));
                }
                if Definition::of(metadata).is_some() {
                    continue;
                }
                work.extend(
                    partitions_to_compact(&snapshot, min_files, small)
                        .iter()
                        .map(|p| optimize_statement(&name, p)),
                );
            }
        }
    }
    for sql in work {
        let _slot = match slots {
            Some(s) => Some(s.acquire().await),
            None => None,
        };
        let mut session = warehouse.session();
        match session.sql(&sql).await {
            Ok(_) => tracing::info!(statement = %sql, "table maintenance"),
            Err(e) => tracing::warn!(statement = %sql, error = %e, "table maintenance failed"),
        }
    }
    Ok(())
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

    /// A pass of maintenance drops expired partitions and compacts a partition once it holds
    /// `auto_compact_min_files` small files, and leaves one with fewer alone; the work shows as
    /// commits of its own.
    #[tokio::test]
    async fn a_pass_applies_retention_and_compacts_partitions_with_many_small_files() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE ev (at DATE, v INT) PARTITION BY RANGE (at) INTERVAL (1 MONTH);
                 ALTER TABLE ev SET (partition_retention = '2 years');
                 INSERT INTO ev VALUES (DATE '2001-03-04', 0)",
            )
            .await
            .expect("setup");
        for i in 0..16 {
            session
                .sql(&format!("INSERT INTO ev VALUES (CURRENT_DATE, {i})"))
                .await
                .expect("insert");
        }
        for i in 0..3 {
            session
                .sql(&format!(
                    "INSERT INTO ev VALUES (CURRENT_DATE - INTERVAL '40 days', {i})"
                ))
                .await
                .expect("insert");
        }
        super::maintain(&warehouse, None).await.expect("maintain");
        let files = "SELECT file_count FROM system.partitions WHERE table_name = 'ev' \
                     ORDER BY partition_name";
        let left = text(&mut session, files).await;
        let counts: Vec<&str> = left
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("file_count"))
            .collect();
        assert_eq!(counts, ["| 3          |", "| 1          |"], "{left}");
        let answer = text(&mut session, "SELECT count(*) AS n, sum(v) AS s FROM ev").await;
        assert!(answer.contains("| 19 | 123 |"), "{answer}");
        let ops = text(
            &mut session,
            "SELECT operation FROM system.table_versions WHERE table_name = 'ev' \
             AND operation IN ('APPLY RETENTION', 'OPTIMIZE') ORDER BY version",
        )
        .await;
        assert!(
            ops.contains("APPLY RETENTION") && ops.contains("OPTIMIZE"),
            "{ops}"
        );
        // With the setting at 0, nothing is compacted.
        let quiet = Warehouse::open_with(
            "memory://",
            crate::config::WarehouseOptions {
                settings: vec![("strata.auto_compact_min_files".into(), "0".into())],
                ..Default::default()
            },
        )
        .await
        .expect("warehouse");
        let mut session = quiet.session();
        session.sql("CREATE TABLE t (v INT)").await.expect("create");
        for i in 0..20 {
            session
                .sql(&format!("INSERT INTO t VALUES ({i})"))
                .await
                .expect("insert");
        }
        super::maintain(&quiet, None).await.expect("maintain");
        let left = text(
            &mut session,
            "SELECT file_count FROM system.partitions WHERE table_name = 't'",
        )
        .await;
        assert!(left.contains("| 20 "), "{left}");
    }
}
