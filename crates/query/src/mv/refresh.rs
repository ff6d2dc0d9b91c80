//! Refreshing a materialized view: fold new rows in, recompute touched partitions, or recompute
//! everything, in one commit.
//!
//! A refresh plans the view's query against the sources' newest snapshots and compares each
//! source's version with the one the view reflects. If exactly one source changed, the files
//! it gained and lost since then (data files are immutable, so the difference of two
//! snapshots' file lists is the change) decide the strategy:
//!
//! - **fold** — the source only gained files (appends: `INSERT`, `COPY INTO`) and the query is
//!   select-project-join, optionally under one `GROUP BY` whose select list is group keys and
//!   `SUM`/`COUNT`/`MIN`/`MAX`/`AVG` (AVG through its hidden sum and count). The query runs
//!   over the new files only, and its rows are appended, or merged into the stored groups by
//!   re-aggregating stored ∪ new rows.
//! - **partitions** — the source is range-partitioned and an output column is its partition
//!   key `k`, or `date_trunc(unit, k)`. Any change (also `UPDATE`, `DELETE`, `MERGE`, dropped
//!   partitions) touches a set of partitions, hence a set of ranges of that output column;
//!   only those ranges are recomputed, from the partitions that can hold their rows, and the
//!   view's rows in them replaced. Whole groups are recomputed, so any aggregate works,
//!   `COUNT(DISTINCT)` and `HAVING` included.
//! - **full** — anything else (several sources changed, a dimension changed, outer joins on the
//!   wrong side, `LIMIT`, window functions, ...): the query runs again and replaces all rows.
//!
//! Joins are safe for the incremental strategies when the changed source is on the preserved
//! side (inner joins, the left side of a left join, ...) and appears once; other sources must
//! be unchanged. Every strategy writes the new rows and the new source versions in one
//! exclusive commit of the view's table, so a concurrent refresh fails instead of doubling
//! rows, and the result equals a full recomputation.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::Utc;
use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::{
    Expr, Filter, LogicalPlan, Operator, TableScan, binary_expr, cast, col, lit,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use strata_storage::{
    Action, DataFile, Partition, Reads, Snapshot, TableId, TableMetadata, Transaction,
};

use crate::catalog::materialized_view::{
    Definition, LastRefresh, MaterializedViewTable, RefreshMode, SourceVersion, avg_count_column,
    avg_sum_column, fingerprint,
};
use crate::catalog::views::parse_query;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::result::{Cell, StatementResult, count_of};
use crate::session::Session;
use crate::table::{StrataTable, write_batches};
use crate::types::{key_scalar, scalar};
use crate::warehouse::Warehouse;
use datafusion::sql::sqlparser::ast::ObjectName;

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Nothing had changed; nothing was written.
    UpToDate,
    Incremental,
    Full,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "up_to_date",
            Self::Incremental => "incremental",
            Self::Full => "full",
        }
    }
}

/// The result of a refresh.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub kind: Kind,
    /// How the refresh went about it, for people.
    pub detail: String,
    /// Rows in the view afterwards.
    pub rows: u64,
    /// Rows written by this refresh.
    pub rows_written: u64,
}

/// Refreshes view `name` (`[database, schema, table]`); `full` recomputes everything.
/// A failure is recorded on the view and leaves its rows as they were; a lost race with a
/// concurrent refresh is returned, not recorded.
pub(crate) async fn refresh(
    warehouse: &Warehouse,
    name: &[String; 3],
    full: bool,
    progress: &Progress,
) -> Result<Outcome> {
    let clock = Instant::now();
    let view = open(warehouse, name).await?;
    let definition = Definition::of(&view.snapshot().metadata)
        .ok_or_else(|| Error::Plan(format!("{} is not a materialized view", name.join("."))))?;
    let result = run(warehouse, &view, &definition, full, clock, progress).await;
    // A refresh that lost a race to another one did not fail the view: the winner's rows stand.
    if let Err(e) = &result
        && e.kind() != crate::error::ErrorKind::Conflict
    {
        record_failure(warehouse, name, clock, e).await;
    }
    result
}

async fn open(warehouse: &Warehouse, name: &[String; 3]) -> Result<StrataTable> {
    warehouse.refresh_catalog().await?;
    StrataTable::open(warehouse, &name[0], &name[1], &name[2])
        .await?
        .ok_or_else(|| {
            strata_storage::Error::TableNotFound {
                name: name.join("."),
            }
            .into()
        })
}

/// Records a failed refresh on the view (a metadata-only commit), best effort.
pub(crate) async fn record_failure(
    warehouse: &Warehouse,
    name: &[String; 3],
    clock: Instant,
    error: &Error,
) {
    let Ok(view) = open(warehouse, name).await else {
        return;
    };
    let snapshot = view.snapshot();
    let Some(mut definition) = Definition::of(&snapshot.metadata) else {
        return;
    };
    definition.last = Some(LastRefresh {
        at: Utc::now(),
        duration_ms: clock.elapsed().as_millis() as u64,
        kind: "failed".into(),
        detail: String::new(),
        error: Some(error.to_string()),
    });
    let mut metadata = snapshot.metadata.clone();
    definition.write_to(&mut metadata.properties);
    let mut txn = Transaction::new("REFRESH MATERIALIZED VIEW (failed)");
    txn.replace_metadata = Some(metadata);
    match view.log().commit(snapshot, &txn).await {
        Ok(s) => warehouse.remember(view.log().id(), &s),
        Err(e) => {
            tracing::warn!(view = %name.join("."), error = %e, "could not record a failed refresh")
        }
    }
}

/// A warehouse table the view's query reads.
struct Source {
    name: String,
    id: TableId,
    version: u64,
    /// Scans of it in the plan.
    scans: usize,
    /// A plain table at its newest version (not a view's table, not time travel): its new
    /// files can be read on their own.
    incremental: bool,
}

/// The warehouse tables `plan` reads, by table id.
fn sources(plan: &LogicalPlan) -> Result<BTreeMap<String, Source>> {
    let mut out: BTreeMap<String, Source> = BTreeMap::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let provider = source_as_provider(&scan.source)?;
            let (table, incremental) = if let Some(t) = provider.downcast_ref::<StrataTable>() {
                (Some(t), !t.is_historical())
            } else if let Some(v) = provider.downcast_ref::<MaterializedViewTable>() {
                (Some(v.storage()), false)
            } else {
                (None, false)
            };
            if let Some(t) = table {
                let entry = out.entry(t.log().id().0.clone()).or_insert_with(|| Source {
                    name: t.name().to_string(),
                    id: t.log().id().clone(),
                    version: t.snapshot().version.0,
                    scans: 0,
                    incremental,
                });
                entry.scans += 1;
                entry.incremental &= incremental;
                // Read at a past version too: the current version is the one that can change.
                if !t.is_historical() {
                    entry.version = t.snapshot().version.0;
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(out)
}

/// Why `plan` can only be recomputed, if it can: it reads the clock or random values (a
/// fold would keep rows a recomputation drops), or tables whose changes are not tracked
/// (system tables, table functions).
pub(crate) fn not_incremental(plan: &LogicalPlan) -> Option<String> {
    let mut why = None;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && provider.downcast_ref::<StrataTable>().is_none()
            && provider.downcast_ref::<MaterializedViewTable>().is_none()
        {
            why = Some(format!("it reads {}, whose changes are not tracked", scan.table_name));
            return Ok(TreeNodeRecursion::Stop);
        }
        let _ = node.apply_expressions(|e| {
            if e.exists(|e| Ok(matches!(e, Expr::ScalarFunction(f)
                if f.func.signature().volatility != datafusion::logical_expr::Volatility::Immutable)))?
            {
                why = Some("its query depends on the time or on random values".to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(if why.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    why
}

/// The versions of the warehouse tables `plan` reads, by name.
pub(crate) fn source_versions(plan: &LogicalPlan) -> Result<BTreeMap<String, SourceVersion>> {
    Ok(versions(sources(plan)?))
}

/// The versions of `sources`, by name, as a view's definition records them.
fn versions(sources: BTreeMap<String, Source>) -> BTreeMap<String, SourceVersion> {
    sources
        .into_values()
        .map(|s| {
            (
                s.name,
                SourceVersion {
                    id: s.id.0,
                    version: s.version,
                },
            )
        })
        .collect()
}

/// How a refresh goes about it.
enum Strategy {
    UpToDate,
    /// The changed source only gained the rows of `added`; fold them in.
    Fold {
        source: TableId,
        added: Vec<DataFile>,
        detail: String,
    },
    /// Recompute the view's rows in `ranges` of output column `key`.
    Partitions {
        source: TableId,
        key: usize,
        function: Expr,
        ranges: Vec<Range>,
        /// A touched partition has no lower bound, so it holds the rows whose key is NULL:
        /// their group (a NULL view key) is recomputed too.
        nulls: bool,
        /// Files of the source that can hold rows in `ranges`.
        files: HashSet<String>,
        detail: String,
    },
    /// Only metadata changed (partitions added, loads recorded): record the versions.
    Versions,
    Full(String),
}

/// The error of a refresh whose query no longer plans: a source column was dropped or
/// renamed, or a source table is gone.
fn no_longer_plans(view: &str, e: &Error) -> Error {
    Error::Plan(format!(
        "materialized view {view} cannot be refreshed: its query no longer plans against its \
         sources ({}); re-create it with CREATE OR REPLACE MATERIALIZED VIEW",
        crate::catalog::materialized_view::plan_problem(e)
    ))
}

async fn run(
    warehouse: &Warehouse,
    view: &StrataTable,
    definition: &Definition,
    full: bool,
    clock: Instant,
    progress: &Progress,
) -> Result<Outcome> {
    let mut session = warehouse.session();
    session.set_schema(&definition.database, &definition.schema)?;
    let plan = session
        .plan_raw(parse_query(&definition.storage_query)?, None)
        .await
        .map_err(|e| no_longer_plans(view.name(), &e))?;
    let storage = view.table_schema();
    if plan.schema().fields().len() != storage.fields().len() {
        return Err(Error::Plan(format!(
            "materialized view {}: its query now returns {} columns, the view has {}; \
             re-create it with CREATE OR REPLACE MATERIALIZED VIEW",
            view.name(),
            plan.schema().fields().len(),
            storage.fields().len()
        )));
    }
    let sources = sources(&plan)?;
    let fingerprint = fingerprint(&plan);
    let strategy = if full {
        Strategy::Full("FULL requested".into())
    } else if definition.fingerprint.as_deref() != Some(fingerprint.as_str()) {
        Strategy::Full("the query reads views whose definition changed".into())
    } else if let Some(why) = not_incremental(&plan) {
        Strategy::Full(why)
    } else {
        choose(warehouse, &session, &plan, view, definition, &sources).await?
    };
    let ctx = session.context();
    let all_files: Vec<DataFile> = view.snapshot().files.values().cloned().collect();
    let mut late_rows = 0u64;
    let (kind, detail, data, remove) = match strategy {
        Strategy::UpToDate => {
            return Ok(Outcome {
                kind: Kind::UpToDate,
                detail: "no source changed".into(),
                rows: view.snapshot().row_count(),
                rows_written: 0,
            });
        }
        Strategy::Versions => (
            Kind::Incremental,
            "sources changed no rows".to_string(),
            None,
            Vec::new(),
        ),
        Strategy::Full(reason) => {
            let df = ctx.execute_logical_plan(plan).await?;
            (Kind::Full, reason, Some(df), all_files)
        }
        Strategy::Fold {
            source,
            added,
            mut detail,
        } => {
            let watermark = match (definition.refresh, definition.watermark) {
                (RefreshMode::Continuous, Some(w)) => {
                    Watermark::of(ctx, &plan, view, &storage, &source, w).await?
                }
                _ => None,
            };
            let on_time = watermark.as_ref().map(|w| w.filter(false));
            let delta = replace_scan(
                plan.clone(),
                &source,
                |t| t.with_only_files(&added),
                on_time
                    .as_ref()
                    .map(|f| f as &dyn Fn(&TableReference) -> Expr),
            )?;
            if let Some(w) = &watermark {
                let late = w.late_rows(ctx, &plan, &source, &added).await?;
                if late > 0 {
                    late_rows = late;
                    detail.push_str(&format!(
                        "; {} behind the watermark left out",
                        count_of(late, "late row")
                    ));
                }
            }
            let delta = conform(ctx.execute_logical_plan(delta).await?, &storage)?;
            match fold_shape(&plan, &storage) {
                Some(Shape::Rows) => (Kind::Incremental, detail, Some(delta), Vec::new()),
                Some(Shape::Aggregate(roles)) => {
                    let (files, delta) =
                        files_for_groups(ctx, view, &storage, &roles, delta).await?;
                    let stored =
                        ctx.read_table(Arc::new(view.with_files(|f| files.contains(&f.path))))?;
                    let merged = merge(stored.union(delta)?, &storage, &roles)?;
                    let remove = all_files
                        .into_iter()
                        .filter(|f| files.contains(&f.path))
                        .collect();
                    (Kind::Incremental, detail, Some(merged), remove)
                }
                None => unreachable!("choose folds only foldable shapes"),
            }
        }
        Strategy::Partitions {
            source,
            key,
            function,
            ranges,
            nulls,
            files,
            detail,
        } => {
            let scan_filter = |qualifier: &TableReference| {
                let f = replace_column(
                    &function,
                    Expr::Column(Column::new(
                        Some(qualifier.clone()),
                        partition_column(&function),
                    )),
                );
                in_ranges(f, &ranges, nulls)
            };
            let recomputed = replace_scan(
                plan.clone(),
                &source,
                |t| t.with_files(|f| files.contains(&f.path)),
                Some(&scan_filter),
            )?;
            let recomputed = conform(ctx.execute_logical_plan(recomputed).await?, &storage)?;
            let key_field = storage.field(key);
            let overlapping: Vec<DataFile> = all_files
                .iter()
                .filter(|f| file_overlaps(f, &view.snapshot().metadata, key_field, &ranges, nulls))
                .cloned()
                .collect();
            let keep: HashSet<String> = overlapping.iter().map(|f| f.path.clone()).collect();
            let kept = ctx
                .read_table(Arc::new(view.with_files(|f| keep.contains(&f.path))))?
                .filter(
                    in_ranges(
                        Expr::Column(Column::new_unqualified(key_field.name())),
                        &ranges,
                        nulls,
                    )
                    .is_not_true(),
                )?;
            let kept = conform(kept, &storage)?;
            (
                Kind::Incremental,
                detail,
                Some(kept.union(recomputed)?),
                overlapping,
            )
        }
    };
    let stream = match data {
        Some(df) => progress.execute(df).await?,
        None => Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&storage),
            futures::stream::empty(),
        )),
    };
    let mut definition = definition.clone();
    definition.late_rows = definition.late_rows.saturating_add(late_rows);
    definition.late_rows_left_out = match kind {
        // A recomputation (of everything, or of ranges) reads the late rows in its ranges;
        // those outside are not told apart, so the count stands until a full one.
        Kind::Full => 0,
        _ => definition.late_rows_left_out.saturating_add(late_rows),
    };
    definition.sources = versions(sources);
    definition.fingerprint = Some(fingerprint);
    let now = Utc::now();
    definition.refreshed_at = Some(now);
    definition.last = Some(LastRefresh {
        at: now,
        duration_ms: clock.elapsed().as_millis() as u64,
        kind: kind.as_str().into(),
        detail: detail.clone(),
        error: None,
    });
    let mut metadata = view.snapshot().metadata.clone();
    definition.write_to(&mut metadata.properties);
    let mut txn = Transaction::new("REFRESH MATERIALIZED VIEW");
    txn.replace_metadata = Some(metadata);
    txn.remove = remove;
    // A concurrent refresh must not land on top of this one: both would add the same rows.
    txn.reads = Reads::Table;
    let (rows_written, snapshot) = write_batches(
        warehouse,
        warehouse.write_options(&Default::default()),
        view.name(),
        view.log(),
        view.snapshot(),
        stream,
        txn,
    )
    .await?;
    Ok(Outcome {
        kind,
        detail,
        rows: snapshot.row_count(),
        rows_written,
    })
}

/// What changed in a view's sources since its last refresh.
enum Change<'a> {
    /// Nothing: the view is up to date.
    Nothing,
    /// Exactly one source changed, from `old` to `new`.
    One {
        source: &'a Source,
        old: Box<Snapshot>,
        new: Box<Snapshot>,
    },
    /// Something only a full recomputation follows, and why.
    Other(String),
}

async fn change<'a>(
    warehouse: &Warehouse,
    definition: &Definition,
    sources: &'a BTreeMap<String, Source>,
) -> Result<Change<'a>> {
    if definition.sources.is_empty() {
        return Ok(Change::Other("first refresh".into()));
    }
    let reflected: BTreeSet<&str> = definition.sources.values().map(|s| s.id.as_str()).collect();
    let current: BTreeSet<&str> = sources.keys().map(String::as_str).collect();
    if reflected != current {
        return Ok(Change::Other(
            "the query now reads other tables than at the last refresh".into(),
        ));
    }
    let changed: Vec<&Source> = sources
        .values()
        .filter(|s| {
            definition
                .sources
                .get(&s.name)
                .is_none_or(|r| r.id != s.id.0 || r.version != s.version)
        })
        .collect();
    let source = match changed.as_slice() {
        [] => return Ok(Change::Nothing),
        [one] => *one,
        many => {
            let names: Vec<&str> = many.iter().map(|s| s.name.as_str()).collect();
            return Ok(Change::Other(format!(
                "{} sources changed: {}",
                many.len(),
                names.join(", ")
            )));
        }
    };
    if !source.incremental || source.scans != 1 {
        return Ok(Change::Other(format!(
            "{} changed and is not read once as a plain table",
            source.name
        )));
    }
    let Some(reflected) = definition.sources.get(&source.name) else {
        return Ok(Change::Other(format!("{} is a new source", source.name)));
    };
    let log = warehouse.table_log(&source.id, &source.name);
    let (Ok(old), Ok(new)) = (
        log.at_version(strata_storage::Version(reflected.version))
            .await,
        log.at_version(strata_storage::Version(source.version))
            .await,
    ) else {
        return Ok(Change::Other(format!(
            "version {} of {} is no longer readable",
            reflected.version, source.name
        )));
    };
    Ok(Change::One {
        source,
        old: Box::new(old),
        new: Box::new(new),
    })
}

/// What the commits of a source after the version a view reflects did to its files.
struct Since {
    /// Every commit only rewrote files (`OPTIMIZE`, `CREATE INDEX`, `CLUSTER BY`): the view's
    /// rows still follow from the source.
    rewrites_only: bool,
    /// The files appended, when each commit either only appended files or only rewrote them
    /// (a stream's group commits with the compactions between them): the view then gains
    /// exactly the rows of those files, read as they were added even where a compaction has
    /// merged them since (rewritten files stay stored until `VACUUM`, whose retention is
    /// days). `None` when a commit removed rows, or when not asked for.
    appended: Option<Vec<DataFile>>,
}

/// Reads the commits of `source` after version `old` up to `new`, each once, and stops as
/// soon as the answer is known: at the first commit that is not a rewrite unless `appends`
/// asks for the appended files too, else at the first that removes rows.
async fn commits_since(
    warehouse: &Warehouse,
    source: &Source,
    old: strata_storage::Version,
    new: strata_storage::Version,
    appends: bool,
) -> Result<Since> {
    let log = warehouse.table_log(&source.id, &source.name);
    let mut rewrites_only = true;
    let mut appended = Vec::new();
    for v in old.0 + 1..=new.0 {
        let Some(commit) = log.read_commit(strata_storage::Version(v)).await? else {
            return Ok(Since {
                rewrites_only: false,
                appended: None,
            });
        };
        if commit.rewrite_only {
            continue;
        }
        rewrites_only = false;
        if !appends {
            break;
        }
        for action in commit.actions {
            match action {
                Action::Add(file) => appended.push(file),
                Action::Remove { .. } => {
                    return Ok(Since {
                        rewrites_only,
                        appended: None,
                    });
                }
                _ => {}
            }
        }
    }
    Ok(Since {
        rewrites_only,
        appended: appends.then_some(appended),
    })
}

/// The files `new` has and `old` has not, and the reverse. A file whose deletion vector
/// changed is in both: its old version went, its new one (fewer rows) came.
fn file_diff<'a>(old: &'a Snapshot, new: &'a Snapshot) -> (Vec<&'a DataFile>, Vec<&'a DataFile>) {
    let changed = |f: &DataFile, other: &Snapshot| {
        other.files.get(&f.path).is_none_or(|o| !o.same_version(f))
    };
    let added = new.files.values().filter(|f| changed(f, old)).collect();
    let removed = old.files.values().filter(|f| changed(f, new)).collect();
    (added, removed)
}

/// The stale part of a partition-aligned view: the ranges of its key column whose rows no
/// longer follow from the one source that changed. The view's other rows are current.
pub(crate) struct StaleRanges {
    pub source: TableId,
    /// The version of the source the ranges are computed against.
    pub version: u64,
    /// The view's key column and the function of the source's partition key it holds.
    pub key: usize,
    pub function: Expr,
    pub ranges: Vec<Range>,
    pub nulls: bool,
}

/// The [`StaleRanges`] of a view whose rows lag its sources, if they are known.
pub(crate) async fn stale_ranges(
    warehouse: &Warehouse,
    ctx: &SessionContext,
    plan: &LogicalPlan,
    definition: &Definition,
) -> Result<Option<StaleRanges>> {
    if not_incremental(plan).is_some()
        || definition.fingerprint.as_deref() != Some(fingerprint(plan).as_str())
    {
        return Ok(None);
    }
    let sources = sources(plan)?;
    let Change::One { source, old, new } = change(warehouse, definition, &sources).await? else {
        return Ok(None);
    };
    if !delta_safe(plan, &source.id) {
        return Ok(None);
    }
    let (added, removed) = file_diff(&old, &new);
    Ok(
        match partition_strategy(ctx, plan, source, &old, &new, &added, &removed).await? {
            Some(Strategy::Partitions {
                source,
                key,
                function,
                ranges,
                nulls,
                ..
            }) => Some(StaleRanges {
                source,
                version: new.version.0,
                key,
                function,
                ranges,
                nulls,
            }),
            _ => None,
        },
    )
}

/// Picks the cheapest strategy that gives the same rows as a full recomputation.
async fn choose(
    warehouse: &Warehouse,
    session: &Session,
    plan: &LogicalPlan,
    view: &StrataTable,
    definition: &Definition,
    sources: &BTreeMap<String, Source>,
) -> Result<Strategy> {
    let (source, old, new) = match change(warehouse, definition, sources).await? {
        Change::Nothing => return Ok(Strategy::UpToDate),
        Change::Other(why) => return Ok(Strategy::Full(why)),
        Change::One { source, old, new } => (source, old, new),
    };
    let (added, removed) = file_diff(&old, &new);
    if added.is_empty() && removed.is_empty() {
        return Ok(Strategy::Versions);
    }
    let safe = delta_safe(plan, &source.id);
    let foldable = safe && fold_shape(plan, &view.table_schema()).is_some();
    // Files went: the appended ones are only known from the commits, read in the same pass.
    let since = Box::pin(commits_since(
        warehouse,
        source,
        old.version,
        new.version,
        foldable && !removed.is_empty(),
    ))
    .await?;
    if since.rewrites_only {
        return Ok(Strategy::Versions);
    }
    if foldable {
        let appended = if removed.is_empty() {
            Some(added.iter().map(|&f| f.clone()).collect())
        } else {
            since.appended
        };
        if let Some(appended) = appended {
            let rows: u64 = appended.iter().map(|f| f.live_rows()).sum();
            let detail = format!(
                "folded in {} ({}) of {}",
                count_of(rows, "new row"),
                count_of(appended.len() as u64, "file"),
                source.name
            );
            return Ok(Strategy::Fold {
                source: source.id.clone(),
                added: appended,
                detail,
            });
        }
    }
    if safe
        && let Some(s) = partition_strategy(
            session.context(),
            plan,
            source,
            &old,
            &new,
            &added,
            &removed,
        )
        .await?
    {
        return Ok(s);
    }
    let why = if !safe {
        "the view's query does not pass its rows through one by one"
    } else if removed.is_empty() {
        "the view's query cannot fold new rows in"
    } else {
        "rows were updated or deleted, and the view is not aligned with its partitions"
    };
    Ok(Strategy::Full(format!(
        "{} changed ({} files added, {} removed): {why}",
        source.name,
        added.len(),
        removed.len()
    )))
}

/// A continuous view's watermark, as a bound on its source's rows: the view's window key (a
/// group key computed by `date_bin`, `time_bucket` or `date_trunc` of a source column) and
/// the lowest window still open, the newest window stored less the watermark. A new row whose
/// window is below it is late: the fold leaves it out and counts it.
struct Watermark {
    /// The window, over the source's columns.
    window: Expr,
    /// The window's type as the view stores it.
    data_type: DataType,
    /// The lowest open window.
    low: ScalarValue,
    /// The watermark.
    lag: ScalarValue,
}

impl Watermark {
    /// The watermark of a fold of `source` into `view`, or `None` when the view has no window
    /// key or no rows yet.
    async fn of(
        ctx: &SessionContext,
        plan: &LogicalPlan,
        view: &StrataTable,
        storage: &Schema,
        source: &TableId,
        lag: std::time::Duration,
    ) -> Result<Option<Self>> {
        let top = strip_sort(plan);
        let qualifiers = scan_qualifiers(plan, source);
        for i in 0..top.schema().fields().len() {
            let column = Expr::Column(Column::from(top.schema().qualified_field(i)));
            let Some(window) = resolve(top, column).filter(|e| is_window(e, &qualifiers)) else {
                continue;
            };
            // Times of day wrap at midnight: only timestamps order the newest window.
            if !matches!(storage.field(i).data_type(), DataType::Timestamp(..)) {
                continue;
            }
            let name = storage.field(i).name();
            let newest = ctx
                .read_table(Arc::new(view.with_files(|_| true)))?
                .aggregate(
                    vec![],
                    vec![max(Expr::Column(Column::new_unqualified(name)))],
                )?
                .collect()
                .await?;
            let Some(batch) = newest.first().filter(|b| b.num_rows() == 1) else {
                return Ok(None);
            };
            let low = ScalarValue::try_from_array(batch.column(0), 0)?;
            if low.is_null() {
                return Ok(None);
            }
            let nanos = i64::try_from(lag.as_nanos())
                .map_err(|_| Error::Plan(format!("watermark {lag:?} is too long")))?;
            return Ok(Some(Self {
                window,
                data_type: storage.field(i).data_type().clone(),
                low,
                lag: ScalarValue::new_interval_mdn(0, 0, nanos),
            }));
        }
        Ok(None)
    }

    /// A filter over the source's scan (known as `qualifier`) keeping the late rows, or
    /// (`late` false) every other row, rows without a window among them.
    fn filter(&self, late: bool) -> impl Fn(&TableReference) -> Expr + '_ {
        move |qualifier: &TableReference| {
            let window = replace_column(
                &self.window,
                Expr::Column(Column::new(
                    Some(qualifier.clone()),
                    partition_column(&self.window),
                )),
            );
            let low = binary_expr(
                lit(self.low.clone()),
                Operator::Minus,
                lit(self.lag.clone()),
            );
            let before = cast(window, self.data_type.clone()).lt(cast(low, self.data_type.clone()));
            if late {
                before.is_true()
            } else {
                before.is_not_true()
            }
        }
    }

    /// The rows of `added` (files of `source`) the view's query would aggregate that are late.
    async fn late_rows(
        &self,
        ctx: &SessionContext,
        plan: &LogicalPlan,
        source: &TableId,
        added: &[DataFile],
    ) -> Result<u64> {
        // The rows the query aggregates, or (no aggregate) the rows it returns.
        let top = strip_sort(plan);
        let rows = match top {
            LogicalPlan::Projection(p) => match p.input.as_ref() {
                LogicalPlan::Aggregate(a) => a.input.as_ref().clone(),
                _ => top.clone(),
            },
            _ => top.clone(),
        };
        let late = self.filter(true);
        let rows = replace_scan(rows, source, |t| t.with_only_files(added), Some(&late))?;
        let n = ctx.execute_logical_plan(rows).await?.count().await?;
        Ok(n as u64)
    }
}

/// Whether `expr` is a window of one column of the source known as one of `qualifiers`:
/// `date_bin(interval, column[, origin])` (`time_bucket` too) or `date_trunc(unit, column)`.
fn is_window(expr: &Expr, qualifiers: &[TableReference]) -> bool {
    let Expr::ScalarFunction(f) = expr else {
        return false;
    };
    if !matches!(f.name(), "date_bin" | "date_trunc") {
        return false;
    }
    let columns: Vec<&Column> = f
        .args
        .iter()
        .filter_map(|a| match a {
            Expr::Column(c) => Some(c),
            _ => None,
        })
        .collect();
    let literals = f
        .args
        .iter()
        .filter(|a| matches!(a, Expr::Literal(..)))
        .count();
    columns.len() == 1
        && literals + 1 == f.args.len()
        && columns[0]
            .relation
            .as_ref()
            .is_none_or(|r| qualifiers.contains(r))
}

/// Whether one of `plan`'s output columns is a window (see [`is_window`]) of a TIMESTAMP
/// column of a table it scans: what a watermark needs.
pub(crate) fn has_window(plan: &LogicalPlan) -> bool {
    let top = strip_sort(plan);
    let mut qualifiers = Vec::new();
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::TableScan(scan) => qualifiers.push(scan.table_name.clone()),
            LogicalPlan::SubqueryAlias(a) => qualifiers.push(a.alias.clone()),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (0..top.schema().fields().len()).any(|i| {
        let (qualifier, field) = top.schema().qualified_field(i);
        matches!(field.data_type(), DataType::Timestamp(..))
            && resolve(top, Expr::Column(Column::from((qualifier, field))))
                .is_some_and(|e| is_window(&e, &qualifiers))
    })
}

/// Whether new rows can be folded into a view of `plan` (what `refresh = 'continuous'`
/// needs): a select-project-join, or one `GROUP BY` of it with mergeable aggregates.
pub(crate) fn folds(plan: &LogicalPlan) -> bool {
    not_incremental(plan).is_none() && fold_shape(plan, plan.schema().as_arrow()).is_some()
}

/// How each stored column of a foldable aggregate view merges.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Key,
    /// Summed when merging (`SUM`, `COUNT`, the hidden state of `AVG`).
    Sum,
    Min,
    Max,
    /// `AVG`, recomputed from its hidden sum and count columns.
    Avg {
        sum: usize,
        count: usize,
    },
}

enum Shape {
    /// Select-project-join: new source rows give new view rows.
    Rows,
    /// One `GROUP BY` over select-project-join, with mergeable aggregates.
    Aggregate(Vec<Role>),
}

/// The shape of `plan` if new rows can be folded into the stored ones.
fn fold_shape(plan: &LogicalPlan, storage: &Schema) -> Option<Shape> {
    let plan = strip_sort(plan);
    if is_select_project_join(plan) {
        return Some(Shape::Rows);
    }
    let LogicalPlan::Projection(projection) = plan else {
        return None;
    };
    let LogicalPlan::Aggregate(aggregate) = projection.input.as_ref() else {
        return None;
    };
    if !is_select_project_join(&aggregate.input)
        || aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return None;
    }
    let groups = aggregate.group_expr.len();
    let mut keys_seen = HashSet::new();
    let mut roles = Vec::with_capacity(projection.expr.len());
    for (i, expr) in projection.expr.iter().enumerate() {
        let Expr::Column(c) = expr.clone().unalias_nested().data else {
            return None;
        };
        let idx = aggregate.schema.index_of_column(&c).ok()?;
        if idx < groups {
            keys_seen.insert(idx);
            roles.push(Role::Key);
            continue;
        }
        let Expr::AggregateFunction(f) = aggregate.aggr_expr[idx - groups]
            .clone()
            .unalias_nested()
            .data
        else {
            return None;
        };
        if f.params.distinct || f.params.filter.is_some() || !f.params.order_by.is_empty() {
            return None;
        }
        roles.push(match f.func.name() {
            "sum" | "count" => Role::Sum,
            "min" => Role::Min,
            "max" => Role::Max,
            "avg" if storage.field(i).data_type() == &DataType::Float64 => Role::Avg {
                sum: storage.index_of(&avg_sum_column(i)).ok()?,
                count: storage.index_of(&avg_count_column(i)).ok()?,
            },
            _ => return None,
        });
    }
    (keys_seen.len() == groups).then_some(Shape::Aggregate(roles))
}

fn strip_sort(plan: &LogicalPlan) -> &LogicalPlan {
    match plan {
        LogicalPlan::Sort(s) if s.fetch.is_none() => strip_sort(&s.input),
        other => other,
    }
}

/// Projections, filters, aliases, joins and scans, without subqueries.
fn is_select_project_join(plan: &LogicalPlan) -> bool {
    let no_subquery = |e: &Expr| {
        !e.exists(|e| {
            Ok(matches!(
                e,
                Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
            ))
        })
        .unwrap_or(true)
    };
    match plan {
        LogicalPlan::TableScan(_) | LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => true,
        LogicalPlan::Projection(p) => {
            p.expr.iter().all(no_subquery) && is_select_project_join(&p.input)
        }
        LogicalPlan::Filter(f) => no_subquery(&f.predicate) && is_select_project_join(&f.input),
        LogicalPlan::SubqueryAlias(a) => is_select_project_join(&a.input),
        LogicalPlan::Join(j) => {
            j.filter.as_ref().is_none_or(no_subquery)
                && is_select_project_join(&j.left)
                && is_select_project_join(&j.right)
        }
        _ => false,
    }
}

/// True when the rows of table `id` flow through `plan` one by one: restricting them to a
/// subset restricts the result to the rows they produce. Outer joins are safe only with the
/// table on their preserved side.
fn delta_safe(plan: &LogicalPlan, id: &TableId) -> bool {
    use datafusion::logical_expr::JoinType;
    match plan {
        LogicalPlan::Projection(p) => delta_safe(&p.input, id),
        LogicalPlan::Filter(f) => delta_safe(&f.input, id),
        LogicalPlan::Sort(s) if s.fetch.is_none() => delta_safe(&s.input, id),
        LogicalPlan::SubqueryAlias(a) => delta_safe(&a.input, id),
        LogicalPlan::Aggregate(a) => delta_safe(&a.input, id),
        LogicalPlan::Join(j) => {
            let (left, right) = (reads(&j.left, id), reads(&j.right, id));
            let side_ok = match j.join_type {
                JoinType::Inner => true,
                JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti => !right,
                JoinType::Right | JoinType::RightSemi | JoinType::RightAnti => !left,
                _ => !left && !right,
            };
            side_ok && delta_safe(&j.left, id) && delta_safe(&j.right, id)
        }
        LogicalPlan::TableScan(_) | LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => true,
        other => !reads(other, id),
    }
}

/// True when `plan` scans table `id`.
fn reads(plan: &LogicalPlan, id: &TableId) -> bool {
    plan.exists(|node| Ok(scan_id(node).as_ref() == Some(id)))
        .unwrap_or(true)
}

fn scan_id(node: &LogicalPlan) -> Option<TableId> {
    let LogicalPlan::TableScan(scan) = node else {
        return None;
    };
    let provider = source_as_provider(&scan.source).ok()?;
    provider
        .downcast_ref::<StrataTable>()
        .map(|t| t.log().id().clone())
}

/// `plan` with its scan of table `id` reading `restrict(table)` instead, under `filter` (made
/// for the scan's qualifier) when given.
pub(crate) fn replace_scan(
    plan: LogicalPlan,
    id: &TableId,
    restrict: impl Fn(&StrataTable) -> StrataTable,
    filter: Option<&dyn Fn(&TableReference) -> Expr>,
) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up(|node| {
            if scan_id(&node).as_ref() != Some(id) {
                return Ok(Transformed::no(node));
            }
            let LogicalPlan::TableScan(scan) = node else {
                unreachable!("scan_id matched a scan")
            };
            let provider = source_as_provider(&scan.source)?;
            let table = provider
                .downcast_ref::<StrataTable>()
                .expect("scan_id matched a Strata table");
            let restricted: Arc<dyn TableProvider> = Arc::new(restrict(table));
            let qualifier = scan.table_name.clone();
            let scan = TableScan {
                source: provider_as_source(restricted),
                ..scan
            };
            let node = LogicalPlan::TableScan(scan);
            Ok(Transformed::yes(match filter {
                Some(f) => LogicalPlan::Filter(Filter::try_new(f(&qualifier), Arc::new(node))?),
                None => node,
            }))
        })?
        .data)
}

/// `df`'s columns cast to the view's stored types and named as stored (by position).
fn conform(df: DataFrame, storage: &Schema) -> Result<DataFrame> {
    let exprs: Vec<Expr> = df
        .schema()
        .columns()
        .into_iter()
        .zip(storage.fields())
        .map(|(c, f)| cast(Expr::Column(c), f.data_type().clone()).alias(f.name()))
        .collect();
    Ok(df.select(exprs)?)
}

/// Stored ∪ new rows of an aggregate view, re-aggregated per group into the stored layout.
fn merge(rows: DataFrame, storage: &Schema, roles: &[Role]) -> Result<DataFrame> {
    let column = |i: usize| Expr::Column(Column::new_unqualified(storage.field(i).name()));
    let mut groups = Vec::new();
    let mut aggregates = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let name = storage.field(i).name();
        match role {
            Role::Key => groups.push(column(i)),
            Role::Sum => aggregates.push(sum(column(i)).alias(name)),
            Role::Min => aggregates.push(min(column(i)).alias(name)),
            Role::Max => aggregates.push(max(column(i)).alias(name)),
            Role::Avg { .. } => {}
        }
    }
    let merged = rows.aggregate(groups, aggregates)?;
    let select: Vec<Expr> = storage
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let value = match roles.get(i) {
                Some(Role::Avg { sum, count }) => binary_expr(
                    cast(column(*sum), DataType::Float64),
                    Operator::Divide,
                    cast(column(*count), DataType::Float64),
                ),
                _ => column(i),
            };
            cast(value, f.data_type().clone()).alias(f.name())
        })
        .collect();
    Ok(merged.select(select)?)
}

/// The view's files that can hold the groups of `delta` (new rows in the view's layout), and
/// `delta` itself: when the view is range-partitioned on a group key, only the partitions the
/// new groups fall in; otherwise every file.
async fn files_for_groups(
    ctx: &SessionContext,
    view: &StrataTable,
    storage: &Schema,
    roles: &[Role],
    delta: DataFrame,
) -> Result<(HashSet<String>, DataFrame)> {
    let snapshot = view.snapshot();
    let all: HashSet<String> = snapshot.files.keys().cloned().collect();
    let Some(layout) = &snapshot.metadata.partitioning else {
        return Ok((all, delta));
    };
    let Some(key) = storage
        .index_of(&layout.column)
        .ok()
        .filter(|k| roles.get(*k) == Some(&Role::Key))
    else {
        return Ok((all, delta));
    };
    let batches = delta.collect().await?;
    let mut touched = HashSet::new();
    for batch in &batches {
        let keys = layout.keys(batch.column(key))?;
        if keys.null_count() > 0 {
            return Ok((all, ctx.read_batches(batches)?));
        }
        for k in keys.values().iter() {
            let holder = layout
                .partitions
                .iter()
                .find(|p| p.lower.is_none_or(|l| l <= *k) && p.upper.is_none_or(|u| *k < u));
            if let Some(p) = holder {
                touched.insert(p.name.clone());
            }
        }
    }
    let files = snapshot
        .files
        .values()
        .filter(|f| touched.contains(&f.partition))
        .map(|f| f.path.clone())
        .collect();
    let delta = if batches.is_empty() {
        ctx.read_batch(RecordBatch::new_empty(Arc::new(storage.clone())))?
    } else {
        ctx.read_batches(batches)?
    };
    Ok((files, delta))
}

/// An inclusive range of an output column's values; `None` is unbounded.
#[derive(Debug, Clone)]
pub(crate) struct Range {
    low: Option<ScalarValue>,
    high: Option<ScalarValue>,
}

impl Range {
    fn overlaps(&self, low: Option<&ScalarValue>, high: Option<&ScalarValue>) -> bool {
        let below = matches!((high, &self.low), (Some(h), Some(l)) if h.partial_cmp(l) == Some(std::cmp::Ordering::Less));
        let above = matches!((low, &self.high), (Some(l), Some(h)) if l.partial_cmp(h) == Some(std::cmp::Ordering::Greater));
        !below && !above
    }
}

/// `value` lies in one of `ranges` (or, with `nulls`, is NULL).
pub(crate) fn in_ranges(value: Expr, ranges: &[Range], nulls: bool) -> Expr {
    let null = nulls.then(|| value.clone().is_null());
    ranges
        .iter()
        .map(|r| {
            let mut e = lit(true);
            if let Some(l) = &r.low {
                e = e.and(value.clone().gt_eq(lit(l.clone())));
            }
            if let Some(h) = &r.high {
                e = e.and(value.clone().lt_eq(lit(h.clone())));
            }
            e
        })
        .chain(null)
        .reduce(Expr::or)
        .unwrap_or(lit(false))
}

/// True unless the file's statistics show it holds no value of `field` in `ranges` (and, with
/// `nulls`, no NULL).
fn file_overlaps(
    file: &DataFile,
    metadata: &TableMetadata,
    field: &Field,
    ranges: &[Range],
    nulls: bool,
) -> bool {
    let Some(stats) = metadata.stats_of(file, field.name()) else {
        return true;
    };
    if nulls && stats.null_count > 0 {
        return true;
    }
    let (Some(low), Some(high)) = (
        stats
            .min
            .as_ref()
            .and_then(|v| scalar(v, field.data_type())),
        stats
            .max
            .as_ref()
            .and_then(|v| scalar(v, field.data_type())),
    ) else {
        return true;
    };
    ranges.iter().any(|r| r.overlaps(Some(&low), Some(&high)))
}

/// The partition-aligned strategy, if the view has an output column that is the changed
/// source's partition key or `date_trunc` of it.
async fn partition_strategy(
    ctx: &SessionContext,
    plan: &LogicalPlan,
    source: &Source,
    old: &Snapshot,
    new: &Snapshot,
    added: &[&DataFile],
    removed: &[&DataFile],
) -> Result<Option<Strategy>> {
    let Some(layout) = &new.metadata.partitioning else {
        return Ok(None);
    };
    let top = strip_sort(plan);
    let aggregate_ok = match top {
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Aggregate(a) => is_select_project_join(&a.input),
            LogicalPlan::Filter(f) => matches!(f.input.as_ref(),
                LogicalPlan::Aggregate(a) if is_select_project_join(&a.input)),
            _ => false,
        },
        _ => false,
    };
    if !aggregate_ok && !is_select_project_join(top) {
        return Ok(None);
    }
    let qualifiers = scan_qualifiers(plan, &source.id);
    let mut found = None;
    for i in 0..top.schema().fields().len() {
        let column = Expr::Column(Column::from(top.schema().qualified_field(i)));
        if let Some(base) = resolve(top, column)
            && let Some(f) = partition_function(&base, &qualifiers, &layout.column)
        {
            found = Some((i, f));
            break;
        }
    }
    let Some((key, function)) = found else {
        return Ok(None);
    };
    // Touched partitions, with their bounds from the layout that had them.
    let mut touched: Vec<Partition> = Vec::new();
    for file in added.iter().chain(removed) {
        let partition = new
            .metadata
            .partitioning
            .as_ref()
            .and_then(|l| l.partition(&file.partition))
            .or_else(|| {
                old.metadata
                    .partitioning
                    .as_ref()
                    .and_then(|l| l.partition(&file.partition))
            });
        let Some(p) = partition else {
            return Ok(None);
        };
        if !touched.iter().any(|t| t.name == p.name) {
            touched.push(p.clone());
        }
    }
    let key_type = new
        .metadata
        .columns
        .iter()
        .find(|c| c.name == layout.column)
        .map(|c| c.data_type.clone())
        .ok_or_else(|| Error::Plan(format!("partition column {} is missing", layout.column)))?;
    let bounds = |p: &Partition| (p.lower, p.upper.map(|u| u - 1));
    let mut points: Vec<i64> = Vec::new();
    for p in touched.iter().chain(&layout.partitions) {
        let (l, h) = bounds(p);
        points.extend(l);
        points.extend(h);
    }
    points.sort_unstable();
    points.dedup();
    let mapped = evaluate(ctx, &function, &key_type, &points)?;
    let at = |k: Option<i64>| k.and_then(|k| mapped.get(&k).cloned());
    let ranges: Vec<Range> = touched
        .iter()
        .map(|p| {
            let (l, h) = bounds(p);
            Range {
                low: at(l),
                high: at(h),
            }
        })
        .collect();
    let partitions: HashSet<&str> = layout
        .partitions
        .iter()
        .filter(|p| {
            let (l, h) = bounds(p);
            let (l, h) = (at(l), at(h));
            ranges.iter().any(|r| r.overlaps(l.as_ref(), h.as_ref()))
        })
        .map(|p| p.name.as_str())
        .collect();
    let files: HashSet<String> = new
        .files
        .values()
        .filter(|f| partitions.contains(f.partition.as_str()))
        .map(|f| f.path.clone())
        .collect();
    let detail = format!(
        "recomputed {} of {} partitions of {} ({} touched)",
        partitions.len(),
        layout.partitions.len(),
        source.name,
        touched.len()
    );
    Ok(Some(Strategy::Partitions {
        source: source.id.clone(),
        key,
        function,
        nulls: touched.iter().any(|p| p.lower.is_none()),
        ranges,
        files,
        detail,
    }))
}

/// The names `plan` gives table `id`'s columns: the scan's, and aliases directly over it.
fn scan_qualifiers(plan: &LogicalPlan, id: &TableId) -> Vec<TableReference> {
    let mut out = Vec::new();
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::TableScan(scan) if scan_id(node).as_ref() == Some(id) => {
                out.push(scan.table_name.clone());
            }
            LogicalPlan::SubqueryAlias(a) if scan_id(&a.input).as_ref() == Some(id) => {
                out.push(a.alias.clone());
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// `expr` over `plan`'s output, rewritten down through projections, filters, aliases and
/// group keys to an expression over the columns of the joins and scans below; `None` when it
/// depends on an aggregate.
fn resolve(plan: &LogicalPlan, expr: Expr) -> Option<Expr> {
    match plan {
        LogicalPlan::Projection(p) => resolve(
            &p.input,
            substitute(expr, &p.schema, |i| {
                Some(p.expr[i].clone().unalias_nested().data)
            })?,
        ),
        LogicalPlan::Filter(f) => resolve(&f.input, expr),
        LogicalPlan::Sort(s) => resolve(&s.input, expr),
        LogicalPlan::SubqueryAlias(a) => resolve(
            &a.input,
            substitute(expr, &a.schema, |i| {
                Some(Expr::Column(Column::from(
                    a.input.schema().qualified_field(i),
                )))
            })?,
        ),
        LogicalPlan::Aggregate(a) => {
            let groups = a.group_expr.len();
            resolve(
                &a.input,
                substitute(expr, &a.schema, |i| {
                    (i < groups).then(|| a.group_expr[i].clone().unalias_nested().data)
                })?,
            )
        }
        _ => Some(expr),
    }
}

/// `expr` with each column of `schema` replaced by `by(its index)`; `None` if one has none.
fn substitute(expr: Expr, schema: &DFSchema, by: impl Fn(usize) -> Option<Expr>) -> Option<Expr> {
    let mut complete = true;
    let out = expr
        .transform_up(|e| {
            let Expr::Column(c) = &e else {
                return Ok(Transformed::no(e));
            };
            match schema.index_of_column(c).ok().and_then(&by) {
                Some(r) => Ok(Transformed::yes(r)),
                None => {
                    complete = false;
                    Ok(Transformed::no(e))
                }
            }
        })
        .ok()?
        .data;
    complete.then_some(out)
}

/// `expr` if it is `column` or `date_trunc('<unit>', column)` of the table known as one of
/// `qualifiers`: functions that never decrease and never exceed their argument.
fn partition_function(expr: &Expr, qualifiers: &[TableReference], column: &str) -> Option<Expr> {
    let is_key = |e: &Expr| {
        matches!(e, Expr::Column(c)
            if c.name == column
                && c.relation.as_ref().is_none_or(|r| qualifiers.contains(r)))
    };
    if is_key(expr) {
        return Some(expr.clone());
    }
    if let Expr::ScalarFunction(f) = expr
        && f.name() == "date_trunc"
        && f.args.len() == 2
        && matches!(&f.args[0], Expr::Literal(ScalarValue::Utf8(Some(_)), _))
        && is_key(&f.args[1])
    {
        return Some(expr.clone());
    }
    None
}

/// The name of the column inside a [`partition_function`].
pub(crate) fn partition_column(function: &Expr) -> String {
    let mut name = String::new();
    let _ = function.apply(|e| {
        if let Expr::Column(c) = e {
            name = c.name.clone();
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    name
}

/// `function` with its column replaced by `by`.
pub(crate) fn replace_column(function: &Expr, by: Expr) -> Expr {
    function
        .clone()
        .transform_up(|e| {
            Ok(if matches!(e, Expr::Column(_)) {
                Transformed::yes(by.clone())
            } else {
                Transformed::no(e)
            })
        })
        .expect("replacing a column cannot fail")
        .data
}

/// `function` evaluated at each partition key in `keys` (keys in the partition column's
/// unit, of type `key_type`).
fn evaluate(
    ctx: &SessionContext,
    function: &Expr,
    key_type: &DataType,
    keys: &[i64],
) -> Result<BTreeMap<i64, ScalarValue>> {
    if keys.is_empty() {
        return Ok(BTreeMap::new());
    }
    let values: Vec<ScalarValue> = keys
        .iter()
        .map(|k| {
            key_scalar(*k, key_type)
                .ok_or_else(|| Error::Plan(format!("partition key {k} is not a {key_type}")))
        })
        .collect::<Result<_>>()?;
    let schema = Arc::new(Schema::new(vec![Field::new("key", key_type.clone(), true)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![ScalarValue::iter_to_array(values)?],
    )?;
    let expr = replace_column(function, col("key"));
    let physical = ctx.create_physical_expr(expr, &DFSchema::try_from(schema)?)?;
    let out = physical.evaluate(&batch)?.into_array(keys.len())?;
    keys.iter()
        .enumerate()
        .map(|(i, k)| Ok((*k, ScalarValue::try_from_array(&out, i)?)))
        .collect()
}

/// `REFRESH MATERIALIZED VIEW mv [FULL]`.
pub(crate) async fn refresh_statement(
    session: &Session,
    view: &ObjectName,
    full: bool,
) -> Result<StatementResult> {
    let (db, schema, name) = session.qualify_table(view)?;
    let outcome = refresh(
        session.warehouse(),
        &[db.clone(), schema.clone(), name.clone()],
        full,
        &session.progress(),
    )
    .await?;
    Ok(StatementResult::row(vec![
        (
            "materialized_view",
            Cell::Text(format!("{db}.{schema}.{name}")),
        ),
        (
            "refresh_kind",
            Cell::Text(outcome.kind.as_str().to_string()),
        ),
        ("rows", Cell::Count(outcome.rows as u64)),
        ("rows_written", Cell::Count(outcome.rows_written as u64)),
        ("detail", Cell::Text(outcome.detail)),
    ]))
}

#[cfg(test)]
mod tests {
    use crate::{Session, Warehouse};

    /// The rows of a query as text lines, sorted.
    async fn sorted_rows(session: &mut Session, sql: &str) -> Vec<String> {
        let results = session.sql(sql).await.unwrap();
        let batches = &results.last().unwrap().batches;
        let text = arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    }

    /// View name and query: partition-aligned (day and month grain, COUNT DISTINCT, HAVING),
    /// foldable (by user, with AVG; select-project-join; star join; scalar), and not
    /// incremental at all (LIMIT).
    const VIEWS: [(&str, &str); 8] = [
        (
            "daily",
            "SELECT DATE_TRUNC('day', order_date) AS day, COUNT(DISTINCT user_id) AS users, \
             SUM(amount) AS amount, AVG(amount) AS avg_amount FROM orders GROUP BY 1",
        ),
        (
            "monthly_big",
            "SELECT DATE_TRUNC('month', order_date) AS month, user_id, COUNT(*) AS n FROM orders \
             GROUP BY 1, 2 HAVING COUNT(*) > 1",
        ),
        (
            "by_user",
            "SELECT user_id, SUM(amount) AS amount, COUNT(*) AS n, MIN(order_date) AS first, \
             MAX(amount) AS biggest, AVG(amount) AS avg_amount FROM orders GROUP BY user_id",
        ),
        (
            "large",
            "SELECT order_id, user_id, amount FROM orders WHERE amount >= 50",
        ),
        (
            "by_segment",
            "SELECT u.segment, SUM(o.amount) AS amount, COUNT(*) AS n FROM orders o \
             JOIN users u ON o.user_id = u.user_id GROUP BY u.segment",
        ),
        (
            "total",
            "SELECT COUNT(*) AS n, SUM(amount) AS amount, MAX(order_date) AS last FROM orders",
        ),
        (
            "raw_days",
            "SELECT order_date, order_id FROM orders WHERE user_id < 5",
        ),
        (
            "top3",
            "SELECT order_id, amount FROM orders ORDER BY amount DESC, order_id LIMIT 3",
        ),
    ];

    /// Random sequences of inserts, updates, deletes, merges, dropped partitions and dimension
    /// changes: after every incremental refresh each view holds exactly what its query returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn incremental_refresh_equals_recomputation() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 1..=3u64 {
            session
                .sql(
                    "CREATE OR REPLACE TABLE orders (order_id BIGINT, user_id INT, \
                       order_date TIMESTAMP, amount BIGINT) \
                       PARTITION BY RANGE (order_date) INTERVAL (7 DAYS);
                     CREATE OR REPLACE TABLE users (user_id INT, segment VARCHAR);
                     INSERT INTO users SELECT value, CASE WHEN value % 3 = 0 THEN 'a' ELSE 'b' END
                       FROM generate_series(0, 9);",
                )
                .await
                .unwrap();
            for (name, query) in VIEWS {
                // The daily view is itself partitioned: folds rewrite only its touched weeks.
                let layout = if name == "daily" {
                    "PARTITION BY RANGE (day) INTERVAL (7 DAYS)"
                } else {
                    ""
                };
                session
                    .sql(&format!(
                        "CREATE OR REPLACE MATERIALIZED VIEW {name} {layout} AS {query}"
                    ))
                    .await
                    .unwrap();
            }
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = move |n: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % n
            };
            let mut order_id = 0;
            for round in 0..8 {
                let statement = match next(7) {
                    0..=2 => {
                        let rows: Vec<String> = (0..1 + next(6))
                            .map(|_| {
                                order_id += 1;
                                format!(
                                    "({order_id}, {}, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL '{} hours', {})",
                                    next(10),
                                    next(24 * 60),
                                    next(100)
                                )
                            })
                            .collect();
                        format!("INSERT INTO orders VALUES {}", rows.join(", "))
                    }
                    3 => format!(
                        "UPDATE orders SET amount = amount + 7 WHERE user_id = {}",
                        next(10)
                    ),
                    4 => format!("DELETE FROM orders WHERE order_id % 5 = {}", next(5)),
                    5 => format!(
                        "MERGE INTO orders o USING (SELECT {} AS id, 99 AS amount) s ON o.order_id = s.id \
                         WHEN MATCHED THEN UPDATE SET amount = s.amount",
                        next(order_id.max(1) + 1)
                    ),
                    _ => format!(
                        "UPDATE users SET segment = CASE WHEN segment = 'a' THEN 'b' ELSE 'a' END \
                         WHERE user_id = {}",
                        next(10)
                    ),
                };
                session.sql(&statement).await.unwrap();
                for (name, query) in VIEWS {
                    let result = session
                        .sql(&format!("REFRESH MATERIALIZED VIEW {name}"))
                        .await
                        .unwrap();
                    let kind = arrow::util::display::array_value_to_string(
                        result[0].batches[0].column(1),
                        0,
                    )
                    .unwrap();
                    kinds.insert(format!("{name}: {kind}"));
                    let stored = sorted_rows(&mut session, &format!("SELECT * FROM {name}")).await;
                    let fresh =
                        sorted_rows(&mut session, &format!("SELECT * FROM ({query})")).await;
                    assert_eq!(
                        stored, fresh,
                        "seed {seed}, round {round}, {name} after {statement}"
                    );
                }
            }
        }
        // Every strategy was exercised.
        for expected in [
            "daily: incremental",
            "monthly_big: incremental",
            "raw_days: incremental",
            "total: incremental",
            "by_user: incremental",
            "by_user: full",
            "large: incremental",
            "by_segment: full",
            "top3: full",
        ] {
            assert!(kinds.contains(expected), "{expected} not in {kinds:?}");
        }
    }
}
