//! Table constraints: declared in `CREATE TABLE`, enforced on every write.
//!
//! `PRIMARY KEY`, `UNIQUE`, `CHECK (...)` and `FOREIGN KEY (...) REFERENCES dim (...)`, at column
//! or table level, are kept in the table's metadata ([`Constraint`]); `NOT NULL` is a column
//! property the writer enforces (primary-key columns are NOT NULL). Before a statement writes,
//! [`prepare`] builds a [`ConstraintCheck`] for its table: the CHECK expressions compiled
//! against the table's schema, the keys of each unique constraint already in the table (without
//! the files the statement replaces), and the keys of every referenced table. The table writer
//! runs it on each batch before encoding, on every write path (INSERT, COPY INTO, UPDATE,
//! MERGE, bulk ingest), so a violation fails the statement naming the constraint, the columns,
//! the value and the row (the file and line for COPY INTO), and nothing is committed.
//!
//! A statement on a table with unique keys commits exclusively: if another commit changed the
//! table meanwhile, it fails with a conflict instead of committing keys it did not check.
//! Referenced tables are read as of the statement's start.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, Expr as SqlExpr, Ident, IndexColumn, ObjectName, TableConstraint,
};
use strata_storage::load::RowError;
use strata_storage::{
    Action, BatchCheck, ColumnDef, Constraint, DataFile, FENCE_TTL_SECONDS, Fence, Reads, Snapshot,
    TableLog, Transaction,
};

use crate::error::{Error, Result};
use crate::parser::{self, name_parts};
use crate::table::files::{
    balanced_groups, deleted_rows_of, parquet_scan, partitioned_file, read_schema,
};
use crate::warehouse::Warehouse;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::physical_plan::collect;

/// Keys in arrow's row format, hashed with ahash (SipHash was most of a big key check).
type EncodedKeys = HashSet<Vec<u8>, ahash::RandomState>;

/// The constraints `create` declares for table `db.schema.name` with `columns`, validated;
/// marks primary-key columns NOT NULL. `qualify` resolves a referenced table's name.
pub(crate) async fn declared(
    create: &CreateTable,
    table: &[String; 3],
    columns: &mut [ColumnDef],
    qualify: impl Fn(&ObjectName) -> Result<[String; 3]>,
    warehouse: &Warehouse,
) -> Result<Vec<Constraint>> {
    let short = &table[2];
    let mut out: Vec<Constraint> = Vec::new();
    let unique_name =
        |cols: &[String], suffix: &str| format!("{short}_{}_{suffix}", cols.join("_"));
    let named = |given: &Option<Ident>, default: String| {
        given.as_ref().map(parser::normalize).unwrap_or(default)
    };
    let foreign = |name: &Option<Ident>,
                   cols: Vec<String>,
                   target: &ObjectName,
                   referred: &[Ident]|
     -> Result<Constraint> {
        Ok(Constraint::ForeignKey {
            name: named(name, unique_name(&cols, "fkey")),
            columns: cols,
            references: qualify(target)?,
            referenced_columns: referred.iter().map(parser::normalize).collect(),
        })
    };
    for column in &create.columns {
        let col = vec![parser::normalize(&column.name)];
        for option in &column.options {
            out.push(match &option.option {
                ColumnOption::PrimaryKey(pk) => Constraint::PrimaryKey {
                    name: named(
                        &pk.name.clone().or(option.name.clone()),
                        format!("{short}_pkey"),
                    ),
                    columns: col.clone(),
                },
                ColumnOption::Unique(u) => Constraint::Unique {
                    name: named(
                        &u.name.clone().or(option.name.clone()),
                        unique_name(&col, "key"),
                    ),
                    columns: col.clone(),
                },
                ColumnOption::ForeignKey(fk) => foreign(
                    &fk.name.clone().or(option.name.clone()),
                    col.clone(),
                    &fk.foreign_table,
                    &fk.referred_columns,
                )?,
                ColumnOption::Check(c) => Constraint::Check {
                    name: named(
                        &c.name.clone().or(option.name.clone()),
                        unique_name(&col, "check"),
                    ),
                    expr: c.expr.to_string(),
                },
                _ => continue,
            });
        }
    }
    for constraint in &create.constraints {
        out.push(match constraint {
            TableConstraint::PrimaryKey(pk) => Constraint::PrimaryKey {
                name: named(&pk.name, format!("{short}_pkey")),
                columns: index_columns(&pk.columns)?,
            },
            TableConstraint::Unique(u) => {
                let cols = index_columns(&u.columns)?;
                Constraint::Unique {
                    name: named(&u.name, unique_name(&cols, "key")),
                    columns: cols,
                }
            }
            TableConstraint::ForeignKey(fk) => foreign(
                &fk.name,
                fk.columns.iter().map(parser::normalize).collect(),
                &fk.foreign_table,
                &fk.referred_columns,
            )?,
            TableConstraint::Check(c) => Constraint::Check {
                name: named(&c.name, format!("{short}_check")),
                expr: c.expr.to_string(),
            },
            other => {
                return Err(Error::Unsupported(format!("table constraint {other}")));
            }
        });
    }
    validate(&mut out, table, columns, warehouse).await?;
    Ok(out)
}

fn index_columns(columns: &[IndexColumn]) -> Result<Vec<String>> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            SqlExpr::Identifier(i) => Ok(parser::normalize(i)),
            other => Err(Error::Unsupported(format!(
                "key on the expression {other}; keys are columns"
            ))),
        })
        .collect()
}

/// Checks names, columns and references; fills in the referenced columns of a bare
/// `REFERENCES dim` (its primary key); makes primary-key columns NOT NULL.
async fn validate(
    constraints: &mut [Constraint],
    table: &[String; 3],
    columns: &mut [ColumnDef],
    warehouse: &Warehouse,
) -> Result<()> {
    let qualified = table.join(".");
    let mut names = HashSet::new();
    let mut keys: Vec<Vec<String>> = Vec::new();
    let mut primary = 0;
    for c in constraints.iter() {
        if !names.insert(c.name().to_string()) {
            return Err(Error::Plan(format!(
                "constraint '{}' is declared twice on {qualified}",
                c.name()
            )));
        }
        for col in c.columns() {
            if !columns.iter().any(|d| &d.name == col) {
                return Err(Error::Plan(format!(
                    "constraint '{}' names column '{col}', which {qualified} does not have",
                    c.name()
                )));
            }
        }
        match c {
            Constraint::PrimaryKey { columns: cols, .. } => {
                primary += 1;
                keys.push(cols.clone());
                for d in columns.iter_mut().filter(|d| cols.contains(&d.name)) {
                    d.nullable = false;
                }
            }
            Constraint::Unique { columns: cols, .. } => keys.push(cols.clone()),
            _ => {}
        }
    }
    if primary > 1 {
        return Err(Error::Plan(format!(
            "{qualified} declares more than one PRIMARY KEY"
        )));
    }
    // CHECK expressions must plan against the columns.
    let schema = strata_storage::TableMetadata {
        columns: columns.to_vec(),
        partitioning: None,
        properties: Default::default(),
        constraints: Vec::new(),
        last_field_id: 0,
        name_mapping: Default::default(),
        indexes: Vec::new(),
        cluster_by: Vec::new(),
        tests: Vec::new(),
        tags: Default::default(),
    }
    .schema();
    let df_schema = DFSchema::try_from(schema)?;
    let ctx = SessionContext::new();
    for c in constraints.iter() {
        if let Constraint::Check { name, expr } = c {
            ctx.parse_sql_expr(expr, &df_schema)
                .and_then(|e| ctx.create_physical_expr(e, &df_schema))
                .map_err(|e| Error::Plan(format!("CHECK constraint '{name}' ({expr}): {e}")))?;
        }
    }
    let catalog = warehouse.catalog();
    for c in constraints.iter_mut() {
        let Constraint::ForeignKey {
            name,
            columns: cols,
            references,
            referenced_columns,
        } = c
        else {
            continue;
        };
        // The referenced table's keys: this table's own for a self-reference.
        let parent_keys: Vec<Vec<String>> = if references == table {
            keys.clone()
        } else {
            let entry = catalog.table(&references[0], &references[1], &references[2])?;
            let log = warehouse.table_log(&entry.id, &references.join("."));
            let snapshot = warehouse.snapshot(&log).await?;
            snapshot
                .metadata
                .constraints
                .iter()
                .filter(|k| matches!(k, Constraint::PrimaryKey { .. } | Constraint::Unique { .. }))
                .map(|k| k.columns().to_vec())
                .collect()
        };
        if referenced_columns.is_empty() {
            *referenced_columns = parent_keys.first().cloned().ok_or_else(|| {
                Error::Plan(format!(
                    "foreign key '{name}': {} has no primary key to reference",
                    references.join(".")
                ))
            })?;
        }
        if referenced_columns.len() != cols.len() {
            return Err(Error::Plan(format!(
                "foreign key '{name}' has {} columns but references {}",
                cols.len(),
                referenced_columns.len()
            )));
        }
        if !parent_keys.iter().any(|k| k == referenced_columns) {
            return Err(Error::Plan(format!(
                "foreign key '{name}': ({}) is not the primary key or a unique key of {}",
                referenced_columns.join(", "),
                references.join(".")
            )));
        }
    }
    Ok(())
}

/// What [`prepare`] sets up for a write: the check its rows pass, whether it must commit
/// exclusively, and the fences it commits before it if it removes referenced keys.
pub(crate) struct Prepared {
    pub(crate) check: Option<Box<dyn BatchCheck>>,
    pub(crate) exclusive: bool,
    pub(crate) fences: Fences,
}

/// The check for writes to `snapshot` of table `name` (whose log is `log`) that replace the
/// files `removed`, some of them by the versions `marked` (the same files with more rows
/// deleted, their deletion vectors in memory), whether the write must commit exclusively, and
/// its fences.
pub(crate) async fn prepare(
    warehouse: &Warehouse,
    name: &str,
    log: &TableLog,
    snapshot: &Snapshot,
    removed: &[DataFile],
    marked: &[DataFile],
) -> Result<Prepared> {
    let constraints = &snapshot.metadata.constraints;
    let fences = Fences::default();
    if constraints.is_empty() {
        return Ok(Prepared {
            check: None,
            exclusive: false,
            fences,
        });
    }
    let schema = snapshot.metadata.schema();
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), warehouse.runtime());
    let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
    let position = |col: &str| -> Result<usize> {
        schema
            .index_of(col)
            .map_err(|_| Error::Plan(format!("table {name} has no column '{col}'")))
    };
    // The table as the statement leaves it, before its own rows are added.
    let mut remaining = snapshot.clone();
    for f in removed {
        remaining.files.remove(&f.path);
    }
    for f in marked {
        remaining.files.insert(f.path.clone(), f.clone());
    }
    let mut check = ConstraintCheck {
        checks: Vec::new(),
        keys: Vec::new(),
        restricts: Vec::new(),
        removable: Vec::new(),
        fences: fences.clone(),
    };
    for c in constraints {
        match c {
            Constraint::Check { name: n, expr } => {
                let logical = ctx.parse_sql_expr(expr, &df_schema)?;
                let physical = ctx.create_physical_expr(logical, &df_schema)?;
                let shown = collect_columns(&physical)
                    .iter()
                    .map(|c| c.index())
                    .collect::<Vec<_>>();
                check.checks.push(CheckExpr {
                    name: n.clone(),
                    text: expr.clone(),
                    expr: physical,
                    shown,
                });
            }
            Constraint::PrimaryKey { .. } | Constraint::Unique { .. } => {
                let types = column_types(snapshot, name, c.columns())?;
                let set =
                    KeySet::of(warehouse, &ctx, remaining.clone(), c.columns(), &types).await?;
                check
                    .keys
                    .push(KeyCheck::new(c, KeyRule::Unique, set, &position)?);
            }
            Constraint::ForeignKey {
                references,
                referenced_columns,
                ..
            } => {
                let parent_name = references.join(".");
                let catalog = warehouse.catalog();
                let entry = catalog.table(&references[0], &references[1], &references[2])?;
                let parent_log = warehouse.table_log(&entry.id, &parent_name);
                let parent = if parent_log.id() == log.id() {
                    remaining.clone()
                } else {
                    parent_after_fences(warehouse, snapshot, &parent_log).await?
                };
                let types = column_types(&parent, &parent_name, referenced_columns)?;
                let set = KeySet::of(warehouse, &ctx, parent, referenced_columns, &types).await?;
                let rule = KeyRule::References {
                    table: parent_name,
                    columns: referenced_columns.clone(),
                };
                check.keys.push(KeyCheck::new(c, rule, set, &position)?);
            }
        }
    }
    if !removed.is_empty() {
        let gone = gone_rows(warehouse, snapshot, removed, marked).await?;
        restrict_removals(&ctx, warehouse, name, log, snapshot, gone, &mut check).await?;
    }
    let exclusive = check.keys.iter().any(|k| matches!(k.rule, KeyRule::Unique));
    Ok(Prepared {
        check: Some(Box::new(check)),
        exclusive,
        fences,
    })
}

/// The rows of `snapshot` that a write removing `removed` (some replaced by their `marked`
/// versions) takes away: `snapshot` with only those files, a marked one reading as just the
/// rows its new deletion vector adds.
async fn gone_rows(
    warehouse: &Warehouse,
    snapshot: &Snapshot,
    removed: &[DataFile],
    marked: &[DataFile],
) -> Result<Snapshot> {
    let mut gone = snapshot.clone();
    gone.files
        .retain(|path, _| removed.iter().any(|f| &f.path == path));
    for new in marked {
        let Some(old) = gone.files.get_mut(&new.path) else {
            continue;
        };
        let before = warehouse.deleted_rows(old).await?;
        let after = warehouse.deleted_rows(new).await?;
        let rows = u32::try_from(old.rows)
            .map_err(|_| Error::Plan(format!("data file {} has too many rows", old.path)))?;
        // Every row but those deleted now: the rows deleted before, and the rows kept.
        let mut hidden = roaring::RoaringBitmap::new();
        hidden.insert_range(0..rows);
        if let Some(after) = after {
            hidden -= after.as_ref();
        }
        if let Some(before) = before {
            hidden |= before.as_ref();
        }
        old.deletion_vector = Some(strata_storage::DeletionVector::in_memory(hidden));
    }
    Ok(gone)
}

/// Adds to `check` the keys in the `gone` rows of table `name` that other tables reference.
async fn restrict_removals(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    name: &str,
    log: &TableLog,
    snapshot: &Snapshot,
    gone: Snapshot,
    check: &mut ConstraintCheck,
) -> Result<()> {
    let this: Vec<&str> = name.split('.').collect();
    for (child, constraints) in warehouse.constraints().await? {
        for c in constraints {
            let Constraint::ForeignKey {
                name: constraint,
                columns,
                references,
                referenced_columns,
            } = c
            else {
                continue;
            };
            if !references
                .iter()
                .map(String::as_str)
                .eq(this.iter().copied())
            {
                continue;
            }
            let Some(unique) = check
                .keys
                .iter()
                .position(|k| matches!(k.rule, KeyRule::Unique) && k.columns == referenced_columns)
            else {
                continue;
            };
            let types = column_types(snapshot, name, &referenced_columns)?;
            let candidates =
                KeySet::of(warehouse, ctx, gone.clone(), &referenced_columns, &types).await?;
            if candidates.keys.is_empty() {
                continue;
            }
            let child_name = child.join(".");
            let catalog = warehouse.catalog();
            let entry = catalog.table(&child[0], &child[1], &child[2])?;
            let child_log = warehouse.table_log(&entry.id, &child_name);
            let child_snapshot = warehouse.snapshot(&child_log).await?;
            if child_log.id() != log.id() {
                check.fences.add_target(&child_log, &child_snapshot);
            }
            let referencing = KeySet::of(warehouse, ctx, child_snapshot, &columns, &types).await?;
            let keys: EncodedKeys = candidates
                .keys
                .intersection(&referencing.keys)
                .cloned()
                .collect();
            check.removable.push((unique, candidates.keys));
            if !keys.is_empty() {
                check.restricts.push(Restrict {
                    constraint,
                    child: child_name,
                    child_columns: columns,
                    unique,
                    keys,
                });
            }
        }
    }
    Ok(())
}

/// Refuses to remove `removed` files of table `name` (TRUNCATE, DROP PARTITION) while other
/// tables reference keys in them; returns the fences to commit before the removal.
pub(crate) async fn refuse_orphans(
    warehouse: &Warehouse,
    name: &str,
    log: &TableLog,
    snapshot: &Snapshot,
    removed: &[DataFile],
) -> Result<Fences> {
    let prepared = prepare(warehouse, name, log, snapshot, removed, &[]).await?;
    if let Some(mut check) = prepared.check {
        check.finish().map_err(|reason| {
            Error::Storage(strata_storage::Error::ConstraintViolation {
                table: name.to_string(),
                reason,
            })
        })?;
    }
    Ok(prepared.fences)
}

/// How long a child write waits for a fenced removal to show in its parent's log before it
/// reports a conflict (and its statement runs again).
const FENCE_WAIT: Duration = Duration::from_secs(3);

/// The fences a statement that removes keys of its table commits, one to the log of each table
/// that references it, before its own commit (see [`Fence`]): so a child row inserted
/// concurrently either is seen by the statement's check, or sees the removal in its own.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fences {
    inner: Arc<FencesInner>,
}

#[derive(Debug, Default)]
struct FencesInner {
    /// The referencing tables, with the snapshots whose references the statement checked.
    targets: Mutex<Vec<(TableLog, Snapshot)>>,
    /// Set when the statement's check finished and found keys it removes.
    needed: AtomicBool,
}

impl Fences {
    fn add_target(&self, log: &TableLog, snapshot: &Snapshot) {
        let mut targets = self.inner.targets.lock().unwrap_or_else(|e| e.into_inner());
        if !targets.iter().any(|(l, _)| l.id() == log.id()) {
            targets.push((log.clone(), snapshot.clone()));
        }
    }

    fn set_needed(&self, needed: bool) {
        self.inner.needed.store(needed, Ordering::SeqCst);
    }

    /// Commits a fence to every referencing table, if the statement removes keys of table
    /// `parent` (whose log is at `parent_version`), and returns its id for the statement's own
    /// commit ([`Transaction::fenced`]). A referencing table that changed since its
    /// references were checked fails this with a conflict, and the statement runs again.
    pub(crate) async fn commit(
        &self,
        warehouse: &Warehouse,
        parent: &TableLog,
        parent_version: strata_storage::Version,
    ) -> Result<Option<FencedRemoval>> {
        if !self.inner.needed.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let targets = self
            .inner
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if targets.is_empty() {
            return Ok(None);
        }
        let fence = Fence {
            id: uuid::Uuid::new_v4().to_string(),
            parent: parent.id().0.clone(),
            parent_version,
            at: chrono::Utc::now(),
        };
        let started = Instant::now();
        for (log, snapshot) in targets {
            let mut txn = Transaction::new("FENCE");
            txn.reads = Reads::Table;
            txn.fence = Some(fence.clone());
            let name = log.name().to_string();
            warehouse.commit(&name, &log, &snapshot, &txn).await?;
        }
        Ok(Some(FencedRemoval {
            id: fence.id,
            started,
            base: parent_version,
        }))
    }
}

/// A removal whose fences are committed: its own commit carries `id`, and must land while the
/// fences hold.
pub(crate) struct FencedRemoval {
    id: String,
    started: Instant,
    /// The version of the table the removal is based on.
    base: strata_storage::Version,
}

impl FencedRemoval {
    /// Marks `txn` as the removal the fences announced; fails if the fences are about to expire
    /// (the statement took too long between them and its commit).
    pub(crate) fn seal(self, table: &str, txn: &mut Transaction) -> Result<()> {
        let limit = Duration::from_secs(FENCE_TTL_SECONDS as u64 / 2);
        if self.started.elapsed() > limit {
            return Err(Error::Storage(strata_storage::Error::CommitConflict {
                table: table.to_string(),
                version: self.base,
                reason: format!(
                    "the statement took more than {} s between announcing the removal of \
                     referenced keys and committing it",
                    limit.as_secs()
                ),
            }));
        }
        txn.fenced = Some(self.id);
        Ok(())
    }
}

/// The parent table of a foreign key as a child write must check against: its newest snapshot,
/// and, when the child's snapshot holds a fresh fence from that parent, not older than the
/// fenced removal. Waits up to [`FENCE_WAIT`] for the removal to land; then reports a conflict.
async fn parent_after_fences(
    warehouse: &Warehouse,
    child: &Snapshot,
    parent: &TableLog,
) -> Result<Snapshot> {
    let mut latest = warehouse.snapshot(parent).await?;
    let Some(fence) = child.fences.get(&parent.id().0) else {
        return Ok(latest);
    };
    if chrono::Utc::now() - fence.at > chrono::Duration::seconds(FENCE_TTL_SECONDS) {
        return Ok(latest);
    }
    let deadline = Instant::now() + FENCE_WAIT;
    let mut scanned = fence.parent_version.0;
    loop {
        while scanned < latest.version.0 {
            scanned += 1;
            let commit = parent.read_commit(strata_storage::Version(scanned)).await?;
            let fenced = commit.is_some_and(|c| {
                c.actions
                    .iter()
                    .any(|a| matches!(a, Action::Fenced(id) if *id == fence.id))
            });
            if fenced {
                return Ok(latest);
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Storage(strata_storage::Error::CommitConflict {
                table: parent.name().to_string(),
                version: latest.version,
                reason: "a concurrent statement is removing keys of this table, which a foreign \
                         key references; try again when it has finished"
                    .to_string(),
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        latest = warehouse.snapshot(parent).await?;
    }
}

/// Refuses to drop table `name` while another table's foreign key references it.
pub(crate) async fn refuse_drop(warehouse: &Warehouse, name: &[String; 3]) -> Result<()> {
    for (child, constraints) in warehouse.constraints().await? {
        if &child == name {
            continue;
        }
        for c in constraints {
            if let Constraint::ForeignKey {
                name: constraint,
                references,
                ..
            } = &c
                && references == name
            {
                return Err(strata_storage::Error::ConstraintViolation {
                    table: name.join("."),
                    reason: format!(
                        "cannot drop {}: FOREIGN KEY constraint '{constraint}' of {} references \
                         it; drop {} first",
                        name.join("."),
                        child.join("."),
                        child.join(".")
                    ),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// The types of `columns` of table `name`.
fn column_types(snapshot: &Snapshot, name: &str, columns: &[String]) -> Result<Vec<DataType>> {
    let schema = snapshot.metadata.schema();
    columns
        .iter()
        .map(|c| {
            schema
                .field_with_name(c)
                .map(|f| f.data_type().clone())
                .map_err(|_| Error::Plan(format!("{name} has no column '{c}'")))
        })
        .collect()
}

/// Checks batches against a table's constraints (see the module docs).
#[derive(Debug)]
struct ConstraintCheck {
    checks: Vec<CheckExpr>,
    keys: Vec<KeyCheck>,
    restricts: Vec<Restrict>,
    /// Keys in the files the statement replaces that other tables may reference, by index in
    /// `keys` of the unique key they belong to: if one is gone at the end, fences are due.
    removable: Vec<(usize, EncodedKeys)>,
    fences: Fences,
}

/// Keys of this table, in files the statement replaces, that rows of another table reference:
/// each must still be in the table when the statement ends.
#[derive(Debug)]
struct Restrict {
    /// The referencing constraint and its table.
    constraint: String,
    child: String,
    child_columns: Vec<String>,
    /// Index in `keys` of this table's unique key on the referenced columns.
    unique: usize,
    keys: EncodedKeys,
}

#[derive(Debug)]
struct CheckExpr {
    name: String,
    text: String,
    expr: Arc<dyn PhysicalExpr>,
    /// Columns the expression reads, shown in messages.
    shown: Vec<usize>,
}

#[derive(Debug)]
struct KeyCheck {
    name: String,
    kind: &'static str,
    columns: Vec<String>,
    positions: Vec<usize>,
    rule: KeyRule,
    set: KeySet,
    /// Keys added since the last savepoint, once there is one.
    since_savepoint: Option<Vec<Vec<u8>>>,
}

impl KeyCheck {
    fn new(
        constraint: &Constraint,
        rule: KeyRule,
        set: KeySet,
        position: &dyn Fn(&str) -> Result<usize>,
    ) -> Result<Self> {
        let columns = constraint.columns().to_vec();
        Ok(Self {
            name: constraint.name().to_string(),
            kind: constraint.kind(),
            positions: columns.iter().map(|c| position(c)).collect::<Result<_>>()?,
            columns,
            rule,
            set,
            since_savepoint: None,
        })
    }
}

#[derive(Debug)]
enum KeyRule {
    /// No key twice (the set holds the keys seen so far).
    Unique,
    /// Every key in the set (the referenced table's keys).
    References { table: String, columns: Vec<String> },
}

/// Keys as bytes in Arrow's row format, so any column types compare as one value.
#[derive(Debug)]
struct KeySet {
    types: Vec<DataType>,
    converter: RowConverter,
    keys: EncodedKeys,
}

impl KeySet {
    /// The keys `columns` of every row of `snapshot` of table `name`, cast to `types` (the
    /// columns' own types, or a referenced table's to compare with its keys).
    async fn of(
        warehouse: &Warehouse,
        ctx: &SessionContext,
        snapshot: Snapshot,
        columns: &[String],
        types: &[DataType],
    ) -> Result<Self> {
        let mut set = KeySet::new(types)?;
        set.load(warehouse, ctx, &snapshot, columns).await?;
        Ok(set)
    }

    fn new(types: &[DataType]) -> Result<Self> {
        let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
        Ok(Self {
            types: types.to_vec(),
            converter: RowConverter::new(fields)?,
            keys: EncodedKeys::default(),
        })
    }

    /// Adds the keys `columns` of every row of `snapshot`, read straight from its data files.
    async fn load(
        &mut self,
        warehouse: &Warehouse,
        ctx: &SessionContext,
        snapshot: &Snapshot,
        columns: &[String],
    ) -> Result<()> {
        let schema = read_schema(&snapshot.metadata);
        let projection = columns
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<Result<Vec<_>, _>>()?;
        let data: Vec<&DataFile> = snapshot.files.values().collect();
        let deleted = deleted_rows_of(warehouse, &data).await?;
        let files: Vec<PartitionedFile> = data
            .iter()
            .map(|f| partitioned_file(f, deleted.get(&f.path)))
            .collect();
        let state = ctx.state();
        let options = state.config_options();
        let groups = balanced_groups(files, options.execution.target_partitions);
        let scan = parquet_scan(
            &state,
            &snapshot.metadata,
            TableSchema::builder(schema).build(),
            groups,
            Some(&projection),
            None,
            None,
        )?;
        let batches = collect(scan, ctx.task_ctx()).await?;
        for batch in batches {
            let rows = self.rows(batch.columns())?;
            for i in 0..batch.num_rows() {
                if batch.columns().iter().all(|c| c.is_valid(i)) {
                    self.keys.insert(rows.row(i).as_ref().to_vec());
                }
            }
        }
        Ok(())
    }

    fn rows(&self, columns: &[ArrayRef]) -> Result<arrow::row::Rows> {
        let cast = columns
            .iter()
            .zip(&self.types)
            .map(|(c, t)| arrow::compute::cast(c, t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.converter.convert_columns(&cast)?)
    }
}

impl BatchCheck for ConstraintCheck {
    fn screen(&mut self, batch: &RecordBatch) -> Result<Vec<(usize, RowError)>, String> {
        let rows = batch.num_rows();
        let mut rejected: Vec<Option<RowError>> = vec![None; rows];
        for c in &self.checks {
            let value = c
                .expr
                .evaluate(batch)
                .and_then(|v| v.into_array(rows))
                .map_err(|e| format!("CHECK constraint '{}' ({}): {e}", c.name, c.text))?;
            let Some(verdicts) = value.as_boolean_opt() else {
                return Err(format!(
                    "CHECK constraint '{}' ({}) is not a boolean expression",
                    c.name, c.text
                ));
            };
            let names: Vec<String> = c
                .shown
                .iter()
                .map(|i| batch.schema().field(*i).name().clone())
                .collect();
            let columns: Vec<ArrayRef> = c
                .shown
                .iter()
                .map(|i| Arc::clone(batch.column(*i)))
                .collect();
            for (row, verdict) in rejected.iter_mut().enumerate() {
                if verdict.is_none() && verdicts.is_valid(row) && !verdicts.value(row) {
                    let values = values(&columns, row);
                    *verdict = Some(RowError {
                        line: None,
                        column: Some(names.join(", ")),
                        reason: format!(
                            "violates CHECK constraint '{}' ({}): ({}) = ({values})",
                            c.name,
                            c.text,
                            names.join(", ")
                        ),
                        value: Some(values),
                    });
                }
            }
        }
        let mut keys = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            let columns: Vec<ArrayRef> = k
                .positions
                .iter()
                .map(|i| Arc::clone(batch.column(*i)))
                .collect();
            let encoded = k.set.rows(&columns).map_err(|e| e.to_string())?;
            keys.push((columns, encoded));
        }
        // Row by row, so that a key repeated within the batch is caught, and a row rejected by
        // one constraint adds no key to another.
        for (row, verdict) in rejected.iter_mut().enumerate() {
            if verdict.is_some() {
                continue;
            }
            for (k, (columns, encoded)) in self.keys.iter().zip(&keys) {
                if columns.iter().any(|c| c.is_null(row)) {
                    continue;
                }
                let key = encoded.row(row);
                let broken = match &k.rule {
                    KeyRule::Unique => k.set.keys.contains(key.as_ref()),
                    KeyRule::References { .. } => !k.set.keys.contains(key.as_ref()),
                };
                if !broken {
                    continue;
                }
                let values = values(columns, row);
                let shown = format!("({}) = ({values})", k.columns.join(", "));
                *verdict = Some(RowError {
                    line: None,
                    column: Some(k.columns.join(", ")),
                    value: Some(values),
                    reason: match &k.rule {
                        KeyRule::Unique => format!(
                            "violates {} constraint '{}': duplicate key {shown}",
                            k.kind, k.name
                        ),
                        KeyRule::References { table, columns } => format!(
                            "violates FOREIGN KEY constraint '{}': {shown} is not present in \
                             {table} ({})",
                            k.name,
                            columns.join(", ")
                        ),
                    },
                });
                break;
            }
            if verdict.is_some() {
                continue;
            }
            for (k, (columns, encoded)) in self.keys.iter_mut().zip(&keys) {
                if !matches!(k.rule, KeyRule::Unique) || columns.iter().any(|c| c.is_null(row)) {
                    continue;
                }
                let key = encoded.row(row).as_ref().to_vec();
                if let Some(added) = &mut k.since_savepoint {
                    added.push(key.clone());
                }
                k.set.keys.insert(key);
            }
        }
        Ok(rejected
            .into_iter()
            .enumerate()
            .filter_map(|(row, e)| e.map(|e| (row, e)))
            .collect())
    }

    fn savepoint(&mut self) {
        for k in &mut self.keys {
            k.since_savepoint = Some(Vec::new());
        }
    }

    fn rollback(&mut self) {
        for k in &mut self.keys {
            for key in k.since_savepoint.iter_mut().flat_map(std::mem::take) {
                k.set.keys.remove(&key);
            }
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        let removes_keys = self.removable.iter().any(|(unique, keys)| {
            keys.iter()
                .any(|k| !self.keys[*unique].set.keys.contains(k))
        });
        self.fences.set_needed(removes_keys);
        for r in &self.restricts {
            let kept = &self.keys[r.unique];
            if let Some(orphaned) = r.keys.iter().find(|k| !kept.set.keys.contains(*k)) {
                let parser = kept.set.converter.parser();
                let rows = kept
                    .set
                    .converter
                    .convert_rows([parser.parse(orphaned)])
                    .map_err(|e| e.to_string())?;
                return Err(format!(
                    "{} {} is still referenced by {} through FOREIGN KEY constraint '{}' ({})",
                    if kept.kind == "PRIMARY KEY" {
                        "key"
                    } else {
                        "unique key"
                    },
                    describe(&kept.columns, &rows, 0),
                    r.child,
                    r.constraint,
                    r.child_columns.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// `(a, b) = (1, 'x')` for row `row` of `columns` named `names`.
fn describe(names: &[String], columns: &[ArrayRef], row: usize) -> String {
    format!("({}) = ({})", names.join(", "), values(columns, row))
}

/// `1, 'x'`: the values of row `row` of `columns`, strings quoted.
fn values(columns: &[ArrayRef], row: usize) -> String {
    let options = FormatOptions::default().with_null("NULL");
    let values: Vec<String> = columns
        .iter()
        .map(|c| {
            ArrayFormatter::try_new(c.as_ref(), &options)
                .map(|f| {
                    let v = f.value(row).to_string();
                    if matches!(
                        c.data_type(),
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    ) && c.is_valid(row)
                    {
                        format!("'{v}'")
                    } else {
                        v
                    }
                })
                .unwrap_or_else(|_| "?".to_string())
        })
        .collect();
    values.join(", ")
}

/// The database, schema and table of `name` in the session's current database and schema.
pub(crate) fn qualify(name: &ObjectName, database: &str, schema: &str) -> Result<[String; 3]> {
    let parts = name_parts(name);
    match parts.as_slice() {
        [t] => Ok([database.to_string(), schema.to_string(), t.clone()]),
        [s, t] => Ok([database.to_string(), s.clone(), t.clone()]),
        [d, s, t] => Ok([d.clone(), s.clone(), t.clone()]),
        _ => Err(Error::Plan(format!("invalid table name {name}"))),
    }
}
