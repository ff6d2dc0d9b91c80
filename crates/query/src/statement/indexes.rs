//! `CREATE INDEX`, `DROP INDEX` and `SHOW INDEXES`: indexes mapped onto what columnar files do
//! well (see [`strata_storage::Index`]).
//!
//! - `CREATE INDEX i ON t (a)` and a composite `(a, b)` (B-tree, the default) make `(a, b)` the
//!   table's sort key, unless a clustering key or an earlier B-tree index already is: data
//!   files are written sorted by it, so min/max statistics of files, row groups and pages skip
//!   what a lookup or range on `a` does not need.
//! - `USING HASH (a)` gives `a` a bloom filter in every row group: an equality lookup skips
//!   the row groups that cannot hold its value.
//! - `INCLUDE (x, y)` records the covered columns; every column keeps statistics, and a scan
//!   reads only the columns a query names.
//!
//! Creating an index rewrites the table's files under it in one commit (sorted by the key and
//! with the bloom filters), so it applies to the rows already there; a concurrent change to
//! the same files makes the statement run again on them. `CREATE INDEX CONCURRENTLY` (as in
//! PostgreSQL) commits only the definition: files written from then on follow it, and the
//! older ones, listed in the index as pending, are rewritten in the background by `OPTIMIZE`
//! (which `strata serve` runs on partitions with pending files); `system.indexes.status`
//! says how many are left. Dropping one changes no file: files
//! written after it simply lack its sort order and bloom filters.

use datafusion::sql::sqlparser::ast::{CreateIndex, Expr as SqlExpr, IndexType, ObjectName};
use strata_storage::{DataFile, Index, IndexKind, Transaction};

use crate::catalog::system::index_effect;
use crate::error::{Error, Result};
use crate::parser::{self, name_parts};
use crate::result::StatementResult;
use crate::session::Session;
use crate::statement::optimize::{files_word, rewrite};

/// Runs `CREATE INDEX`.
pub(crate) async fn create(session: &Session, create: &CreateIndex) -> Result<StatementResult> {
    let (log, snapshot, qualified) = session.open_table_for_write(&create.table_name).await?;
    if create.unique {
        return Err(Error::Unsupported(
            "CREATE UNIQUE INDEX: declare a UNIQUE constraint with the table, which every \
             write checks"
                .to_string(),
        ));
    }
    if create.predicate.is_some() {
        return Err(Error::Unsupported(
            "CREATE INDEX ... WHERE: a partial index".to_string(),
        ));
    }
    if !create.with.is_empty() || !create.index_options.is_empty() {
        return Err(Error::Unsupported(
            "CREATE INDEX ... WITH (...): index options".to_string(),
        ));
    }
    let kind = match &create.using {
        None | Some(IndexType::BTree) => IndexKind::BTree,
        Some(IndexType::Hash) | Some(IndexType::Bloom) => IndexKind::Hash,
        Some(other) => {
            return Err(Error::Unsupported(format!(
                "CREATE INDEX ... USING {other} (supported: BTREE, the default, and HASH)"
            )));
        }
    };
    let metadata = &snapshot.metadata;
    let known = |name: String| -> Result<String> {
        if metadata.column(&name).is_none() {
            let names: Vec<&str> = metadata.columns.iter().map(|c| c.name.as_str()).collect();
            return Err(Error::Plan(format!(
                "{qualified} has no column '{name}' (columns: {})",
                names.join(", ")
            )));
        }
        Ok(name)
    };
    let mut columns = Vec::with_capacity(create.columns.len());
    for column in &create.columns {
        let name = match &column.column.expr {
            SqlExpr::Identifier(ident) => parser::normalize(ident),
            other => {
                return Err(Error::Unsupported(format!(
                    "an index on the expression {other}: index columns"
                )));
            }
        };
        let name = known(name)?;
        if columns.contains(&name) {
            return Err(Error::Plan(format!(
                "column '{name}' appears twice in the index"
            )));
        }
        columns.push(name);
    }
    let include = create
        .include
        .iter()
        .map(|i| known(parser::normalize(i)))
        .collect::<Result<Vec<_>>>()?;
    let table = name_parts(&create.table_name).pop().unwrap_or_default();
    let name = match &create.name {
        Some(n) => name_parts(n).pop().unwrap_or_default(),
        None => format!("{table}_{}_idx", columns.join("_")),
    };
    if let Some(existing) = metadata.index(&name) {
        if create.if_not_exists {
            return Ok(StatementResult::status(format!(
                "index {} already exists on {qualified}",
                existing.name
            )));
        }
        return Err(Error::Plan(format!(
            "index '{}' already exists on {qualified}",
            existing.name
        )));
    }
    let mut index = Index {
        name: name.clone(),
        columns,
        include,
        kind,
        pending: Vec::new(),
    };
    let mut changed = metadata.clone();
    changed.indexes.push(index.clone());
    let effect = index_effect(&changed, &index);
    let relayout = changed.sort_key() != metadata.sort_key()
        || changed.bloom_filter_columns() != metadata.bloom_filter_columns();
    let mut files: Vec<DataFile> = if relayout {
        snapshot.files.values().cloned().collect()
    } else {
        Vec::new()
    };
    if create.concurrently && !files.is_empty() {
        // Only the definition now; the files are rewritten in the background (OPTIMIZE, or
        // `strata serve`'s upkeep), partition by partition.
        index.pending = files.iter().map(|f| f.path.clone()).collect();
        changed.indexes.pop();
        changed.indexes.push(index);
        let pending = files.len();
        files.clear();
        rewrite(
            session,
            &qualified,
            &log,
            &snapshot,
            changed,
            files,
            None,
            "CREATE INDEX",
        )
        .await?;
        return Ok(StatementResult::status(format!(
            "created index {name} on {qualified}: {effect}; building in the background: \
             {} to rewrite (OPTIMIZE {qualified} finishes it now; system.indexes shows the \
             status)",
            files_word(pending)
        )));
    }
    let (rows, written) = rewrite(
        session,
        &qualified,
        &log,
        &snapshot,
        changed,
        files.clone(),
        None,
        "CREATE INDEX",
    )
    .await?;
    let rewrote = if files.is_empty() {
        String::new()
    } else {
        format!(
            "; rewrote {} ({rows} rows) into {}",
            files_word(files.len()),
            files_word(written)
        )
    };
    Ok(StatementResult::status(format!(
        "created index {name} on {qualified}: {effect}{rewrote}"
    )))
}

/// Runs `DROP INDEX [IF EXISTS] name [, ...] [ON t]`: without a table, the index is looked
/// for among the tables of its schema (the current one unless named `schema.index`).
pub(crate) async fn drop(
    session: &Session,
    names: &[ObjectName],
    table: Option<&ObjectName>,
    if_exists: bool,
) -> Result<StatementResult> {
    let mut notes = Vec::new();
    for name in names {
        let mut parts = name_parts(name);
        let index = parts.pop().unwrap_or_default();
        let target = match table {
            Some(t) => Some(t.clone()),
            None => find_table_of(session, &parts, &index).await?,
        };
        let Some(target) = target else {
            if if_exists {
                notes.push(format!("index {index} does not exist"));
                continue;
            }
            return Err(Error::Plan(format!("index '{index}' does not exist")));
        };
        let (log, snapshot, qualified) = session.open_table(&target).await?;
        let Some(found) = snapshot.metadata.index(&index).cloned() else {
            if if_exists {
                notes.push(format!("index {index} does not exist on {qualified}"));
                continue;
            }
            return Err(Error::Plan(format!(
                "index '{index}' does not exist on {qualified}"
            )));
        };
        let mut metadata = snapshot.metadata.clone();
        metadata.indexes.retain(|i| i.name != found.name);
        let mut txn = Transaction::new("DROP INDEX");
        txn.replace_metadata = Some(metadata);
        session
            .warehouse()
            .commit(&qualified, &log, &snapshot, &txn)
            .await?;
        notes.push(format!("dropped index {} on {qualified}", found.name));
    }
    Ok(StatementResult::status(notes.join("; ")))
}

/// The table of the schema named by `schema_parts` (or the current one) that has index
/// `index`; an error when several do.
async fn find_table_of(
    session: &Session,
    schema_parts: &[String],
    index: &str,
) -> Result<Option<ObjectName>> {
    let (db, schema) = match schema_parts {
        [] => {
            let (d, s) = session.current_schema();
            (d.to_string(), s.to_string())
        }
        [s] => (session.current_schema().0.to_string(), s.clone()),
        [d, s] => (d.clone(), s.clone()),
        _ => return Err(Error::Plan(format!("invalid index name {index}"))),
    };
    let warehouse = session.warehouse();
    let entry = warehouse.catalog().schema(&db, &schema)?.clone();
    let mut found = Vec::new();
    for (table, t) in &entry.tables {
        let log = warehouse.table_log(&t.id, table);
        if warehouse
            .snapshot(&log)
            .await?
            .metadata
            .index(index)
            .is_some()
        {
            found.push(table.clone());
        }
    }
    match found.as_slice() {
        [] => Ok(None),
        [table] => Ok(Some(ObjectName::from(vec![
            datafusion::sql::sqlparser::ast::Ident::with_quote('"', db),
            datafusion::sql::sqlparser::ast::Ident::with_quote('"', schema),
            datafusion::sql::sqlparser::ast::Ident::with_quote('"', table.clone()),
        ]))),
        several => Err(Error::Plan(format!(
            "tables {} each have an index '{index}': name the table (DROP INDEX {index} ON t)",
            several.join(", ")
        ))),
    }
}

/// Runs `SHOW INDEXES [ON | FROM | IN t]`: the indexes of `t`, or of the current schema.
pub(crate) async fn show(session: &Session, table: Option<&ObjectName>) -> Result<StatementResult> {
    let (db, schema, only) = match table {
        Some(t) => {
            session.open_table(t).await?;
            let (d, s, t) = session.qualify_table(t)?;
            (d, s, Some(t))
        }
        None => {
            let (d, s) = session.current_schema();
            (d.to_string(), s.to_string(), None)
        }
    };
    let warehouse = session.warehouse();
    let entry = warehouse.catalog().schema(&db, &schema)?.clone();
    let mut rows = Vec::new();
    for (table, t) in &entry.tables {
        if only.as_ref().is_some_and(|o| o != table) {
            continue;
        }
        let log = warehouse.table_log(&t.id, table);
        let metadata = warehouse.snapshot(&log).await?.metadata;
        for index in &metadata.indexes {
            rows.push(vec![
                table.clone(),
                index.name.clone(),
                index.kind.sql_name().to_string(),
                index.columns.join(", "),
                index.include.join(", "),
                index_effect(&metadata, index),
            ]);
        }
    }
    Ok(StatementResult::strings(
        &[
            "table_name",
            "index_name",
            "index_type",
            "columns",
            "include_columns",
            "effect",
        ],
        rows,
    ))
}

#[cfg(test)]
mod tests {
    use arrow::util::display::array_value_to_string;

    use crate::Warehouse;

    /// The rows `sql` returns, each as text, sorted.
    async fn rows(session: &mut crate::Session, sql: &str) -> Vec<String> {
        let result = session
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut lines = Vec::new();
        for batch in &result.last().expect("a result").batches {
            for row in 0..batch.num_rows() {
                let cells: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, row).expect("format"))
                    .collect();
                lines.push(cells.join(" | "));
            }
        }
        lines.sort();
        lines
    }

    /// An index never changes an answer: every index form, on a partitioned table of several
    /// files, before and after more writes (sorted on write) and changes, gives the answers of
    /// the same table without indexes, for lookups, ranges, IN lists, NULLs, aggregates and
    /// joins; and the lookups use the index.
    #[tokio::test]
    async fn indexes_never_change_answers() {
        let warehouse = Warehouse::open("memory://").await.expect("warehouse");
        let mut session = warehouse.session();
        let load = |table: &str, from: i64, to: i64| {
            format!(
                "INSERT INTO {table} SELECT CAST(value % 97 AS INT), \
                 'k' || CAST(value * 7919 % 1009 AS VARCHAR), \
                 DATE '2024-01-01' + CAST(value % 200 AS INT), \
                 CASE WHEN value % 11 = 0 THEN NULL ELSE CAST(value % 50 AS DECIMAL(10,2)) END \
                 FROM generate_series({from}, {to})"
            )
        };
        let forms = [
            "CREATE INDEX i ON {t}(k)",
            "CREATE INDEX i ON {t} USING HASH (k)",
            "CREATE INDEX i ON {t}(u, d)",
            "CREATE INDEX i ON {t}(u) INCLUDE (d, x)",
            "CREATE INDEX i ON {t} USING HASH (u, k)",
        ];
        let queries = [
            "SELECT * FROM {t} WHERE k = 'k7919'",
            "SELECT * FROM {t} WHERE k IN ('k1', 'k500', 'nope')",
            "SELECT u, d, x FROM {t} WHERE u = 42",
            "SELECT count(*), sum(x) FROM {t} WHERE u BETWEEN 10 AND 20",
            "SELECT * FROM {t} WHERE u = 5 AND d >= DATE '2024-03-01'",
            "SELECT count(*) FROM {t} WHERE x IS NULL",
            "SELECT u, count(*), min(k), max(d) FROM {t} GROUP BY u",
            "SELECT a.u, count(*) FROM {t} a JOIN {t} b ON a.k = b.k WHERE a.u < 3 GROUP BY a.u",
            "SELECT * FROM {t} WHERE k > 'k990' AND u < 50",
        ];
        for (n, form) in forms.iter().enumerate() {
            let plain = format!("plain{n}");
            let indexed = format!("indexed{n}");
            for t in [&plain, &indexed] {
                session
                    .sql(&format!(
                        "CREATE TABLE {t} (u INT, k VARCHAR, d DATE, x DECIMAL(10,2)) \
                         PARTITION BY RANGE (d) INTERVAL (1 MONTH)"
                    ))
                    .await
                    .expect("create");
                for (from, to) in [(1, 3000), (3001, 5000)] {
                    session.sql(&load(t, from, to)).await.expect("load");
                }
            }
            session
                .sql(&form.replace("{t}", &indexed))
                .await
                .expect("create index");
            for step in ["indexed", "written after", "changed"] {
                for query in queries {
                    let want = rows(&mut session, &query.replace("{t}", &plain)).await;
                    let got = rows(&mut session, &query.replace("{t}", &indexed)).await;
                    assert_eq!(got, want, "{form}, {step}: {query}");
                }
                match step {
                    "indexed" => {
                        for t in [&plain, &indexed] {
                            session.sql(&load(t, 5001, 6000)).await.expect("load");
                        }
                    }
                    "written after" => {
                        for t in [&plain, &indexed] {
                            session
                                .sql(&format!(
                                    "DELETE FROM {t} WHERE u = 7; UPDATE {t} SET x = x + 1 WHERE u = 42"
                                ))
                                .await
                                .expect("change");
                        }
                    }
                    _ => {}
                }
            }
            let plan = rows(
                &mut session,
                &format!(
                    "EXPLAIN {}",
                    queries[if n == 2 || n == 3 { 2 } else { 0 }].replace("{t}", &indexed)
                ),
            )
            .await
            .join("\n");
            assert!(plan.contains("index=i"), "{form}: {plan}");
        }
    }
}
