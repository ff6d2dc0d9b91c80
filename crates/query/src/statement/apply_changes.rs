//! `APPLY CHANGES INTO`: the one statement that maintains an SCD Type 2 dimension (a table that
//! keeps every version of a row; see [`crate::table::scd`]).
//!
//! ```sql
//! CREATE TABLE dim_users (user_id INT, email VARCHAR, tier VARCHAR, name VARCHAR)
//! WITH (scd = 2, natural_key = 'user_id', tracked = 'email, tier');
//!
//! APPLY CHANGES INTO dim_users FROM staging_users KEY (user_id) SEQUENCE BY updated_at
//! APPLY AS DELETE WHEN op = 'D';
//! ```
//!
//! The table gets four columns Strata manages: a surrogate key (`surrogate_key BIGINT`, the
//! primary key, so facts can reference a version), `effective_date` and `end_date` (TIMESTAMP, or
//! DATE when the DDL declares them so; `end_date` is 9999-12-31 while the version is open) and
//! `is_current`. A change of a tracked column closes the open version and opens a new one; a
//! change of an untracked column overwrites the version in place (Type 1).
//!
//! `APPLY CHANGES` is a fold. For every key of the change set, the key's history (its versions
//! and the gaps deletes left) and its changes become one list of events ordered by the sequence
//! column, and the history is folded again from them. So a change that arrives late lands where
//! its sequence puts it, a change equal to the version it falls in does nothing, and applying the
//! same change set twice gives the same history as applying it once. Keys whose history comes
//! out the same are not touched; the files holding the others are rewritten in one commit, as a
//! `MERGE` would.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::compute::{cast, cast_with_options, concat, concat_batches, take};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{JoinType, LogicalPlanBuilder, col};
use strata_storage::Transaction;

use crate::error::{Error, Result};
use crate::parser::ApplyChanges;
use crate::result::StatementResult;
use crate::session::Session;
use crate::table::deletes::{RowDeletes, plan_file_changes};
use crate::table::provider::{FILE_COLUMN, ROW_COLUMN, StrataTable};
use crate::table::scd::{Layout, NEXT_KEY, STRICT, ScdSpec};
use crate::table::write::TableWrite;

/// Runs `APPLY CHANGES INTO`.
pub(crate) async fn apply_changes(
    session: &Session,
    apply: &ApplyChanges,
) -> Result<StatementResult> {
    let (log, snapshot, name) = session.open_table_for_write(&apply.target).await?;
    let spec = ScdSpec::of(&snapshot.metadata).ok_or_else(|| {
        Error::Plan(format!(
            "APPLY CHANGES INTO {name}: not an SCD Type 2 table (create it WITH (scd = 2, \
             natural_key = '...'))"
        ))
    })?;
    let given: Vec<String> = apply.keys.iter().map(|k| k.to_ascii_lowercase()).collect();
    let expected: Vec<String> = spec
        .natural_key
        .iter()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    if given != expected {
        return Err(Error::Plan(format!(
            "APPLY CHANGES INTO {name}: KEY ({}) must be the table's natural key ({})",
            apply.keys.join(", "),
            spec.natural_key.join(", ")
        )));
    }
    let layout = Layout::new(&spec, snapshot.metadata.schema())?;
    let changes = read_changes(session, apply, &layout, &name).await?;
    if changes.num_rows() == 0 {
        return Ok(result(0, 0, 0));
    }
    let table = StrataTable::new(
        session.warehouse().clone(),
        name.clone(),
        log.clone(),
        snapshot.clone(),
        true,
    );
    let (history, highest) = read_history(session, &table, &layout, &changes).await?;
    // Surrogate keys are never handed out twice, even after the version holding the highest
    // one was merged away: the table remembers the next one.
    let remembered = snapshot
        .metadata
        .properties
        .get(NEXT_KEY)
        .and_then(|k| k.parse::<i64>().ok())
        .unwrap_or(1);
    let folded = fold(&layout, &history, &changes, remembered.max(highest + 1))?;
    let counts = (folded.inserted, folded.updated, folded.deleted);
    if folded.replaced.is_empty() && folded.rows.num_rows() == 0 {
        return Ok(result(counts.0, counts.1, counts.2));
    }
    // The replaced versions leave their files (deletion vectors, or rewrites by the cost
    // rule); the new versions go to new files.
    let mut deletes = RowDeletes::default();
    let replaced_files = StringArray::from_iter_values(folded.replaced.iter().map(|(f, _)| f));
    let replaced_rows = Int64Array::from_iter_values(folded.replaced.iter().map(|(_, r)| *r));
    if deletes.add(&replaced_files, &replaced_rows, None)?.is_err() {
        return Err(Error::Plan(format!(
            "APPLY CHANGES INTO {name}: a version was replaced twice"
        )));
    }
    let warehouse = session.warehouse();
    let share = session.strata_options().dml_rewrite_share;
    let changes = plan_file_changes(warehouse, &snapshot, deletes, share).await?;
    let mut txn = Transaction::new("APPLY CHANGES");
    // The current versions it closed, and the surrogate keys it numbered, were read from the
    // whole table.
    txn.reads = strata_storage::Reads::Table;
    let mut metadata = snapshot.metadata.clone();
    metadata
        .properties
        .insert(NEXT_KEY.to_string(), folded.next_key.to_string());
    txn.replace_metadata = Some(metadata);
    let stream = session
        .context()
        .execute_logical_plan(memory_plan(folded.rows)?.build()?)
        .await?
        .execute_stream()
        .await?;
    let mut write = TableWrite::begin(
        warehouse,
        session.write_options(),
        &name,
        &log,
        &snapshot,
        txn,
        Some(&changes),
    )
    .await?;
    let written = async {
        write.write(stream).await?;
        write.apply(changes).await
    }
    .await;
    match written {
        Ok(()) => {
            write.commit().await?;
        }
        Err(e) => {
            write.abort().await;
            return Err(e);
        }
    }
    Ok(result(counts.0, counts.1, counts.2))
}

fn memory_plan(batch: RecordBatch) -> Result<LogicalPlanBuilder> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
    Ok(LogicalPlanBuilder::scan(
        "__strata_changes",
        provider_as_source(Arc::new(table) as Arc<dyn TableProvider>),
        None,
    )?)
}

/// The change set: the table's business columns (cast to their types), then the sequence
/// value (as validity ticks, `Int64`) and whether the row is a delete.
async fn read_changes(
    session: &Session,
    apply: &ApplyChanges,
    layout: &Layout,
    name: &str,
) -> Result<RecordBatch> {
    let source = session
        .context()
        .sql(&format!(
            "SELECT * FROM ({}) AS __changes LIMIT 0",
            apply.source
        ))
        .await?;
    let available: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut select = Vec::new();
    for a in 0..layout.attributes.len() {
        let column = layout.attribute_name(a);
        let found = available
            .iter()
            .find(|c| c.eq_ignore_ascii_case(column))
            .ok_or_else(|| {
                Error::Plan(format!(
                    "APPLY CHANGES INTO {name}: the change set has no column '{column}' (it has {})",
                    available.join(", ")
                ))
            })?;
        select.push(format!("\"{}\"", found.replace('"', "\"\"")));
    }
    select.push(format!("{} AS __strata_sequence", apply.sequence_by));
    select.push(match &apply.delete_when {
        Some(e) => format!("coalesce({e}, false) AS __strata_delete"),
        None => "false AS __strata_delete".to_string(),
    });
    let query = format!(
        "SELECT {} FROM ({}) AS __changes",
        select.join(", "),
        apply.source
    );
    let batches = session.context().sql(&query).await?.collect().await?;
    let Some(first) = batches.first() else {
        return Ok(RecordBatch::new_empty(Arc::new(Schema::empty())));
    };
    let raw = concat_batches(&first.schema(), &batches)?;
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (a, &i) in layout.attributes.iter().enumerate() {
        let field = layout.schema.field(i);
        let column = cast_with_options(raw.column(a), field.data_type(), &STRICT).map_err(|e| {
            Error::Plan(format!(
                "APPLY CHANGES INTO {name}: column '{}' of the change set does not convert to {}: {e}",
                field.name(),
                field.data_type()
            ))
        })?;
        if layout.key.contains(&a) && column.null_count() > 0 {
            let row = (0..column.len()).find(|r| column.is_null(*r)).unwrap_or(0);
            return Err(Error::Plan(format!(
                "APPLY CHANGES INTO {name}: change row {} has NULL in key column '{}'",
                row + 1,
                field.name()
            )));
        }
        fields.push(Field::new(field.name(), field.data_type().clone(), true));
        columns.push(column);
    }
    let n = layout.attributes.len();
    let sequence = raw.column(n);
    if sequence.null_count() > 0 {
        let row = (0..sequence.len())
            .find(|r| sequence.is_null(*r))
            .unwrap_or(0);
        return Err(Error::Plan(format!(
            "APPLY CHANGES INTO {name}: change row {} has a NULL sequence ({})",
            row + 1,
            apply.sequence_by
        )));
    }
    if !matches!(
        sequence.data_type(),
        DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(..)
            | DataType::Utf8
            | DataType::Utf8View
            | DataType::LargeUtf8
    ) {
        return Err(Error::Plan(format!(
            "APPLY CHANGES INTO {name}: SEQUENCE BY {} is {}; it must be a DATE or TIMESTAMP \
             (the versions' effective and end dates come from it)",
            apply.sequence_by,
            sequence.data_type()
        )));
    }
    let ticks = layout.ticks(sequence).map_err(|e| {
        Error::Plan(format!(
            "APPLY CHANGES INTO {name}: SEQUENCE BY {} must be a date or timestamp: {e}",
            apply.sequence_by
        ))
    })?;
    fields.push(Field::new("__strata_sequence", DataType::Int64, false));
    columns.push(Arc::new(Int64Array::from(ticks)));
    fields.push(Field::new("__strata_delete", DataType::Boolean, false));
    columns.push(cast(raw.column(n + 1), &DataType::Boolean)?);
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The versions of the keys in `changes`, with their file and row, and the highest surrogate
/// key in the table (0 if none).
async fn read_history(
    session: &Session,
    table: &StrataTable,
    layout: &Layout,
    changes: &RecordBatch,
) -> Result<(RecordBatch, i64)> {
    let key_names: Vec<String> = layout
        .key
        .iter()
        .map(|a| layout.attribute_name(*a).to_string())
        .collect();
    let keys = RecordBatch::try_new(
        Arc::new(Schema::new(
            layout
                .key
                .iter()
                .enumerate()
                .map(|(k, a)| {
                    Field::new(
                        format!("__key_{k}"),
                        changes.schema().field(*a).data_type().clone(),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        )),
        layout
            .key
            .iter()
            .map(|a| Arc::clone(changes.column(*a)))
            .collect(),
    )?;
    let name = table.name().to_string();
    let plan = LogicalPlanBuilder::scan(
        name.as_str(),
        provider_as_source(Arc::new(table.with_row_ids(None))),
        None,
    )?
    .join(
        memory_plan(keys)?.distinct()?.build()?,
        JoinType::LeftSemi,
        (
            key_names
                .iter()
                .map(|k| Column::new(Some(name.as_str()), k))
                .collect::<Vec<_>>(),
            (0..key_names.len())
                .map(|k| Column::from_name(format!("__key_{k}")))
                .collect::<Vec<_>>(),
        ),
        None,
    )?
    .build()?;
    let df = session.context().execute_logical_plan(plan).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let history = concat_batches(&schema, &df.collect().await?)?;
    let surrogate_key = layout.schema.field(layout.surrogate_key).name();
    // The plain table: without deleted rows in its files, file statistics answer this.
    let highest = session
        .context()
        .read_table(Arc::new(table.with_files(|_| true)))?
        .aggregate(
            vec![],
            vec![max(col(format!("\"{surrogate_key}\""))).alias("m")],
        )?
        .collect()
        .await?;
    let next = highest
        .first()
        .map(|b| b.column(0).as_primitive::<Int64Type>())
        .filter(|c| c.is_valid(0))
        .map_or(0, |c| c.value(0));
    Ok((history, next))
}

/// What a change set does to the table.
#[derive(Debug)]
struct Folded {
    /// The versions of the changed keys, in the table's schema.
    rows: RecordBatch,
    /// The rows (file, row number) they replace: every version of the changed keys.
    replaced: Vec<(String, i64)>,
    /// The next free surrogate key.
    next_key: i64,
    inserted: u64,
    updated: u64,
    deleted: u64,
}

/// One step of a key's history.
#[derive(Debug, Clone, Copy)]
struct Event {
    sequence: i64,
    /// `None` closes the open version.
    values: Option<usize>,
    /// The surrogate key of the version an existing event started.
    surrogate_key: Option<i64>,
    from_change: bool,
}

/// A version of a key, as folded.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Version {
    start: i64,
    end: i64,
    /// Where its key and tracked values come from (an index into the combined attributes).
    tracked: usize,
    /// Where its untracked values come from.
    untracked: usize,
    surrogate_key: Option<i64>,
}

/// Folds the change set into the history of each of its keys (see the module docs).
fn fold(
    layout: &Layout,
    history: &RecordBatch,
    changes: &RecordBatch,
    mut next_key: i64,
) -> Result<Folded> {
    let existing = history.num_rows();
    // The business columns of the history rows, then of the change rows.
    let attributes: Vec<ArrayRef> = layout
        .attributes
        .iter()
        .enumerate()
        .map(|(a, &i)| concat(&[history.column(i).as_ref(), changes.column(a).as_ref()]))
        .collect::<Result<_, _>>()?;
    let encode = |which: &[usize]| -> Result<Option<Rows>> {
        if which.is_empty() {
            return Ok(None);
        }
        let converter = RowConverter::new(
            which
                .iter()
                .map(|a| SortField::new(attributes[*a].data_type().clone()))
                .collect(),
        )?;
        let columns: Vec<ArrayRef> = which.iter().map(|a| Arc::clone(&attributes[*a])).collect();
        Ok(Some(converter.convert_columns(&columns)?))
    };
    let keys = encode(&layout.key)?.expect("an SCD table has a natural key");
    let tracked = encode(&layout.tracked)?;
    let untracked = encode(&layout.untracked)?;

    let surrogate = history
        .column(layout.surrogate_key)
        .as_primitive::<Int64Type>();
    let effective = layout.ticks(history.column(layout.effective))?;
    let end = layout.ticks(history.column(layout.end))?;
    let files = history
        .column_by_name(FILE_COLUMN)
        .ok_or_else(|| Error::Plan("history without file names".to_string()))?;
    let files = cast(files, &DataType::Utf8)?;
    let files = files.as_string::<i32>();
    let row_numbers = history
        .column_by_name(ROW_COLUMN)
        .ok_or_else(|| Error::Plan("history without row numbers".to_string()))?
        .as_primitive::<Int64Type>();
    let n = layout.attributes.len();
    let sequence = changes.column(n).as_primitive::<Int64Type>();
    let deletes = changes.column(n + 1).as_boolean();
    let open = layout.open();

    // Rows of each key, in change-set order.
    let mut groups: HashMap<&[u8], (Vec<usize>, Vec<usize>), ahash::RandomState> =
        HashMap::default();
    let mut order = Vec::new();
    for j in 0..changes.num_rows() {
        let entry = groups.entry(keys.row(existing + j).data()).or_default();
        if entry.1.is_empty() {
            order.push(keys.row(existing + j).data());
        }
        entry.1.push(j);
    }
    for i in 0..existing {
        if let Some(entry) = groups.get_mut(keys.row(i).data()) {
            entry.0.push(i);
        }
    }

    let mut out: Vec<Version> = Vec::new();
    let mut folded = Folded {
        rows: RecordBatch::new_empty(Arc::clone(&layout.schema)),
        replaced: Vec::new(),
        next_key: 0,
        inserted: 0,
        updated: 0,
        deleted: 0,
    };
    for key in order {
        let (mut old, new) = groups.remove(key).expect("grouped above");
        old.sort_by_key(|i| effective[*i]);
        let mut events = Vec::with_capacity(old.len() * 2 + new.len());
        for (n, &i) in old.iter().enumerate() {
            events.push(Event {
                sequence: effective[i],
                values: Some(i),
                surrogate_key: Some(surrogate.value(i)),
                from_change: false,
            });
            // A version that ends where the next starts was closed by a delete when both hold
            // the same values (a delete and a re-insert at one instant).
            let next = old.get(n + 1);
            let contiguous = next.is_some_and(|k| effective[*k] == end[i]);
            let reinserted = next.is_some_and(|k| same(&tracked, i, *k));
            if end[i] != open && (!contiguous || reinserted) {
                events.push(Event {
                    sequence: end[i],
                    values: None,
                    surrogate_key: None,
                    from_change: false,
                });
            }
        }
        for &j in &new {
            events.push(Event {
                sequence: sequence.value(j),
                values: (!deletes.value(j)).then_some(existing + j),
                surrogate_key: None,
                from_change: true,
            });
        }
        // By sequence; at one sequence a delete comes before a new version, and the stored
        // history before the change set.
        events.sort_by_key(|e| (e.sequence, e.values.is_some(), e.from_change));
        let describe = |row: usize| {
            layout
                .key
                .iter()
                .map(|a| {
                    let value = arrow::util::display::ArrayFormatter::try_new(
                        attributes[*a].as_ref(),
                        &Default::default(),
                    )
                    .map(|f| f.value(row).to_string())
                    .unwrap_or_default();
                    format!("{} = {value}", layout.attribute_name(*a))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let events = resolve(events, &tracked, &untracked, &describe)?;

        let mut versions: Vec<Version> = Vec::new();
        let mut current: Option<usize> = None;
        for e in events {
            match (e.values, current) {
                (None, Some(c)) => {
                    versions[c].end = e.sequence;
                    current = None;
                }
                (None, None) => {}
                (Some(v), Some(c)) if same(&tracked, versions[c].tracked, v) => {
                    // An untracked change: overwrite the open version (Type 1). A stored
                    // version it absorbs (after a late change) lends it its surrogate key,
                    // which facts may reference.
                    versions[c].untracked = v;
                    if versions[c].surrogate_key.is_none() {
                        versions[c].surrogate_key = e.surrogate_key;
                    }
                }
                (Some(v), _) => {
                    if let Some(c) = current {
                        versions[c].end = e.sequence;
                    }
                    versions.push(Version {
                        start: e.sequence,
                        end: open,
                        tracked: v,
                        untracked: v,
                        surrogate_key: e.surrogate_key,
                    });
                    current = Some(versions.len() - 1);
                }
            }
        }
        let before: Vec<Version> = old
            .iter()
            .map(|&i| Version {
                start: effective[i],
                end: end[i],
                tracked: i,
                untracked: i,
                surrogate_key: Some(surrogate.value(i)),
            })
            .collect();
        // The same validity and values (surrogate keys aside).
        let equal = |b: &Version, v: &Version| {
            b.start == v.start
                && b.end == v.end
                && same(&tracked, b.tracked, v.tracked)
                && same(&untracked, b.untracked, v.untracked)
        };
        let unchanged = before.len() == versions.len()
            && before
                .iter()
                .zip(&versions)
                .all(|(b, v)| b.surrogate_key == v.surrogate_key && equal(b, v));
        if unchanged {
            continue;
        }
        for v in &mut versions {
            match v.surrogate_key {
                Some(k) => {
                    let was = before.iter().find(|b| b.surrogate_key == Some(k));
                    let kept = was.is_some_and(|b| equal(b, v));
                    if !kept {
                        folded.updated += 1;
                    }
                }
                None => {
                    v.surrogate_key = Some(next_key);
                    next_key += 1;
                    folded.inserted += 1;
                }
            }
        }
        folded.deleted += before
            .iter()
            .filter(|b| !versions.iter().any(|v| v.surrogate_key == b.surrogate_key))
            .count() as u64;
        folded.replaced.extend(
            old.iter()
                .map(|&i| (files.value(i).to_string(), row_numbers.value(i))),
        );
        out.extend(versions);
    }

    // The new versions in the table's schema.
    let mut columns: Vec<Option<ArrayRef>> = vec![None; layout.schema.fields().len()];
    columns[layout.surrogate_key] = Some(Arc::new(Int64Array::from_iter_values(
        out.iter().map(|v| v.surrogate_key.expect("assigned above")),
    )));
    for (a, &i) in layout.attributes.iter().enumerate() {
        let from_untracked = layout.untracked.contains(&a);
        let indices = UInt64Array::from_iter_values(out.iter().map(|v| {
            (if from_untracked {
                v.untracked
            } else {
                v.tracked
            }) as u64
        }));
        columns[i] = Some(take(attributes[a].as_ref(), &indices, None)?);
    }
    columns[layout.effective] = Some(layout.validity_column(out.iter().map(|v| v.start).collect()));
    columns[layout.end] = Some(layout.validity_column(out.iter().map(|v| v.end).collect()));
    columns[layout.current] = Some(Arc::new(BooleanArray::from_iter(
        out.iter().map(|v| Some(v.end == open)),
    )));
    folded.next_key = next_key;
    folded.rows = RecordBatch::try_new(
        Arc::clone(&layout.schema),
        columns
            .into_iter()
            .map(|c| c.expect("every column set"))
            .collect(),
    )?;
    Ok(folded)
}

/// Whether rows `a` and `b` hold the same values in the columns `rows` encodes (true when it
/// encodes none).
fn same(rows: &Option<Rows>, a: usize, b: usize) -> bool {
    rows.as_ref().is_none_or(|r| r.row(a) == r.row(b))
}

/// Keeps one event per sequence and kind: a change replaces the stored event it repeats
/// (keeping its surrogate key); two different changes at one sequence are an error.
fn resolve(
    events: Vec<Event>,
    tracked: &Option<Rows>,
    untracked: &Option<Rows>,
    describe: &dyn Fn(usize) -> String,
) -> Result<Vec<Event>> {
    for at in events.chunk_by(|a, b| a.sequence == b.sequence) {
        let delete = at.iter().find(|e| e.from_change && e.values.is_none());
        let set = at.iter().find_map(|e| e.values.filter(|_| e.from_change));
        if let (Some(_), Some(v)) = (delete, set) {
            return Err(Error::Plan(format!(
                "APPLY CHANGES: key ({}) has a delete and a change with the same sequence value; \
                 the sequence must order them",
                describe(v)
            )));
        }
    }
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    for e in events {
        let Some(last) = out.last_mut() else {
            out.push(e);
            continue;
        };
        if last.sequence != e.sequence || last.values.is_some() != e.values.is_some() {
            out.push(e);
            continue;
        }
        match (last.values, e.values) {
            (Some(a), Some(b))
                if last.from_change && !(same(tracked, a, b) && same(untracked, a, b)) =>
            {
                return Err(Error::Plan(format!(
                    "APPLY CHANGES: two changes of key ({}) have the same sequence value and \
                     different values; the sequence must order them",
                    describe(b)
                )));
            }
            // The change set repeats or corrects a stored version (stored events sort first).
            (Some(_), Some(b)) if !last.from_change => {
                last.values = Some(b);
                last.from_change = true;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The statement's result, shaped like MERGE's: versions opened, versions changed (closed or
/// overwritten), versions removed (merged into an earlier one by a late change).
fn result(inserted: u64, updated: u64, deleted: u64) -> StatementResult {
    let schema = Arc::new(Schema::new(vec![
        Field::new("rows_inserted", DataType::UInt64, false),
        Field::new("rows_updated", DataType::UInt64, false),
        Field::new("rows_deleted", DataType::UInt64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(UInt64Array::from(vec![inserted])),
            Arc::new(UInt64Array::from(vec![updated])),
            Arc::new(UInt64Array::from(vec![deleted])),
        ],
    )
    .expect("result batch matches its schema");
    StatementResult {
        schema,
        batches: vec![batch],
    }
}

#[cfg(test)]
mod tests {
    use crate::{Session, Warehouse};

    async fn text(session: &mut Session, sql: &str) -> String {
        let results = session.sql(sql).await.unwrap();
        let batches = &results.last().unwrap().batches;
        arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string()
    }

    /// The hand-written SCD Type 2 MERGE of data-engineering guides: close the current version
    /// of a changed or deleted key, insert the new version.
    const HAND_WRITTEN_MERGE: &str = "
        MERGE INTO hand d
        USING (
          SELECT c.user_id AS merge_key, c.* FROM changes c
          UNION ALL
          SELECT NULL AS merge_key, c.* FROM changes c
          JOIN hand h ON c.user_id = h.user_id AND h.is_current
          WHERE c.op <> 'D' AND ((c.email IS DISTINCT FROM h.email) OR (c.tier IS DISTINCT FROM h.tier))
        ) s
        ON d.user_id = s.merge_key AND d.is_current
        WHEN MATCHED AND s.op = 'D' THEN
          UPDATE SET end_date = s.updated_at, is_current = false
        WHEN MATCHED AND ((d.email IS DISTINCT FROM s.email) OR (d.tier IS DISTINCT FROM s.tier)) THEN
          UPDATE SET end_date = s.updated_at, is_current = false
        WHEN NOT MATCHED AND s.op <> 'D' THEN
          INSERT (user_id, email, tier, effective_date, end_date, is_current)
          VALUES (s.user_id, s.email, s.tier, s.updated_at, TIMESTAMP '9999-12-31 00:00:00', true)";

    /// Random sequences of change sets (inserts, tracked changes, repeats of the current
    /// values, deletes, keys coming back) give the same history through APPLY CHANGES as
    /// through the hand-written MERGE.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn apply_changes_matches_the_hand_written_merge() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();
        for seed in 1..=6u64 {
            session
                .sql(
                    "CREATE OR REPLACE TABLE dim (user_id INT, email VARCHAR, tier VARCHAR)
                       WITH (scd = 2, natural_key = 'user_id', tracked = 'email, tier');
                     CREATE OR REPLACE TABLE hand (user_id INT, email VARCHAR, tier VARCHAR,
                       effective_date TIMESTAMP, end_date TIMESTAMP, is_current BOOLEAN);",
                )
                .await
                .unwrap();
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = move |n: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % n
            };
            for round in 0..5 {
                let mut rows = Vec::new();
                for user in 1..=6 {
                    if next(3) == 0 {
                        continue;
                    }
                    let op = if next(5) == 0 { "D" } else { "U" };
                    let email = ["a@x", "b@x"][next(2) as usize];
                    let tier = ["free", "pro", "team"][next(3) as usize];
                    rows.push(format!(
                        "({user}, '{email}', '{tier}', TIMESTAMP '2024-01-{:02} 00:00:00', '{op}')",
                        round + 1
                    ));
                }
                if rows.is_empty() {
                    continue;
                }
                session
                    .sql(&format!(
                        "CREATE OR REPLACE TABLE changes AS SELECT * FROM (VALUES {}) AS c(user_id, email, tier, updated_at, op)",
                        rows.join(", ")
                    ))
                    .await
                    .unwrap();
                session
                    .sql(
                        "APPLY CHANGES INTO dim FROM changes KEY (user_id) SEQUENCE BY updated_at
                         APPLY AS DELETE WHEN op = 'D'",
                    )
                    .await
                    .unwrap();
                session.sql(HAND_WRITTEN_MERGE).await.unwrap();
                let history = "SELECT user_id, email, tier, effective_date, end_date, is_current
                               FROM {} ORDER BY user_id, effective_date";
                let applied = text(&mut session, &history.replace("{}", "dim")).await;
                let merged = text(&mut session, &history.replace("{}", "hand")).await;
                assert_eq!(applied, merged, "seed {seed}, round {round}");
            }
        }
    }

    /// Facts joined to the dimension version valid at their date: a hash join on the key with
    /// the date range as its filter, not a nested loop.
    #[tokio::test]
    async fn a_point_in_time_join_is_a_hash_join() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();
        session
            .sql(
                "CREATE TABLE d (user_id INT, tier VARCHAR) WITH (scd = 2, natural_key = 'user_id');
                 CREATE TABLE f (user_id INT, order_date DATE, amount INT);
                 INSERT INTO f VALUES (1, DATE '2024-01-01', 5);
                 SET datafusion.explain.physical_plan_only = true;",
            )
            .await
            .unwrap();
        let plan = text(
            &mut session,
            "EXPLAIN SELECT d.tier, sum(f.amount) FROM f JOIN d
               ON f.user_id = d.user_id AND f.order_date >= d.effective_date
              AND f.order_date < d.end_date GROUP BY d.tier",
        )
        .await;
        assert!(plan.contains("HashJoinExec"), "{plan}");
        assert!(plan.contains("filter="), "{plan}");
        assert!(!plan.contains("NestedLoopJoinExec"), "{plan}");
    }
}
