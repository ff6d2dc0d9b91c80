//! `ALTER TABLE`: schema evolution without rewriting data, and renaming or swapping tables.
//!
//! A column change is one commit of new metadata: data files are never rewritten, because
//! scans find a file's columns by field id (see [`crate::table::files`]). So:
//!
//! - `ADD COLUMN c T [DEFAULT v] [NOT NULL]` gives `c` a new field id; files written before
//!   read `v` (its initial default) or NULL, and INSERTs that leave `c` out write `v`;
//! - `DROP COLUMN` forgets the column (its values stay in old files, unreachable: a new column
//!   of the same name has another id);
//! - `RENAME COLUMN` changes a name, not an id; keys, checks and the partitioning follow it;
//! - `ALTER COLUMN c SET DATA TYPE` allows the widenings a reader can cast old files by
//!   (integers to larger integers, FLOAT to DOUBLE, a larger DECIMAL precision at the same
//!   scale, a longer VARCHAR);
//! - `SET / DROP DEFAULT`, `SET / DROP NOT NULL` (checked against the rows there are).
//!
//! `RENAME TO` and `SWAP WITH` change only the catalog, in one catalog commit, so readers see
//! the old names or the new ones, never a mix.

use std::collections::HashSet;

use arrow::array::Array;
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, ColumnDef as SqlColumnDef, ColumnOption,
    Expr as SqlExpr, Ident, ObjectName, RenameTableNameKind, Visit, Visitor, VisitorMut,
};
use strata_storage::{
    ColumnDef, Constraint, Error as StorageError, Reads, TableMetadata, Transaction,
};

use crate::catalog::materialized_view::Definition;
use crate::error::{Error, Result};
use crate::parser::{self, name_parts};
use crate::result::StatementResult;
use crate::session::Session;
use crate::table::scd::ScdSpec;
use crate::types::arrow_type;

/// Runs `ALTER TABLE`.
pub(crate) async fn alter_table(
    session: &mut Session,
    alter: &AlterTable,
) -> Result<StatementResult> {
    let (db, schema, table) = session.qualify_table(&alter.name)?;
    let qualified = format!("{db}.{schema}.{table}");
    if session
        .warehouse()
        .catalog()
        .table(&db, &schema, &table)
        .is_err()
    {
        if alter.if_exists {
            return Ok(StatementResult::status(format!(
                "{qualified} does not exist"
            )));
        }
        if session
            .warehouse()
            .catalog()
            .view(&db, &schema, &table)
            .is_some()
        {
            return Err(StorageError::WrongKind {
                name: qualified,
                is: "view",
                hint: "CREATE OR REPLACE VIEW",
            }
            .into());
        }
        return Err(StorageError::TableNotFound { name: qualified }.into());
    }
    let [operation] = alter.operations.as_slice() else {
        if alter.operations.iter().any(|op| {
            matches!(
                op,
                AlterTableOperation::RenameTable { .. } | AlterTableOperation::SwapWith { .. }
            )
        }) {
            return Err(Error::Unsupported(
                "RENAME TO and SWAP WITH cannot be combined with other changes".to_string(),
            ));
        }
        return alter_columns(session, &alter.name, &alter.operations).await;
    };
    match operation {
        AlterTableOperation::RenameTable { table_name } => {
            let target = match table_name {
                RenameTableNameKind::To(n) | RenameTableNameKind::As(n) => n,
            };
            rename_table(session, [db, schema, table], target).await
        }
        AlterTableOperation::SwapWith { table_name } => {
            swap_tables(session, [db, schema, table], table_name).await
        }
        AlterTableOperation::ClusterBy { exprs } => {
            Box::pin(crate::statement::optimize::cluster_by(
                session,
                &alter.name,
                Some(exprs),
            ))
            .await
        }
        AlterTableOperation::SetOptionsParens { options }
        | AlterTableOperation::SetTblProperties {
            table_properties: options,
        } => {
            Box::pin(crate::statement::maintenance::set_options(
                session,
                &alter.name,
                options,
            ))
            .await
        }
        AlterTableOperation::OwnerTo { new_owner } => {
            Box::pin(crate::statement::metadata::owner_to(
                session,
                &alter.name,
                new_owner,
            ))
            .await
        }
        AlterTableOperation::DropClusteringKey => {
            Box::pin(crate::statement::optimize::cluster_by(
                session,
                &alter.name,
                None,
            ))
            .await
        }
        _ => alter_columns(session, &alter.name, &alter.operations).await,
    }
}

/// Applies column changes to the table's metadata and commits them at once.
async fn alter_columns(
    session: &mut Session,
    name: &ObjectName,
    operations: &[AlterTableOperation],
) -> Result<StatementResult> {
    let (log, snapshot, qualified) = session.open_table(name).await?;
    if Definition::of(&snapshot.metadata).is_some() {
        return Err(Error::Unsupported(format!(
            "{qualified} is a materialized view: change its query with CREATE OR REPLACE \
             MATERIALIZED VIEW"
        )));
    }
    if ScdSpec::of(&snapshot.metadata).is_some() {
        return Err(Error::Unsupported(format!(
            "{qualified} is an SCD Type 2 table: its columns follow its APPLY CHANGES source; \
             recreate it to change them"
        )));
    }
    let mut metadata = snapshot.metadata.clone();
    let mut done = Vec::new();
    // SET NOT NULL must hold for every row, including rows a concurrent commit adds.
    let mut reads_rows = false;
    for operation in operations {
        let note = match operation {
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def,
                column_position,
                ..
            } => {
                if column_position.is_some() {
                    return Err(Error::Unsupported(
                        "ADD COLUMN ... FIRST / AFTER: new columns come last".to_string(),
                    ));
                }
                let rows = snapshot.row_count();
                add_column(
                    session,
                    &qualified,
                    &mut metadata,
                    column_def,
                    *if_not_exists,
                    rows,
                )
                .await?
            }
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                ..
            } => {
                let mut notes = Vec::new();
                for column in column_names {
                    notes.push(drop_column(&qualified, &mut metadata, column, *if_exists)?);
                }
                notes.join(", ")
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                let referenced = referenced_columns(session, &qualified).await?;
                rename_column(
                    &qualified,
                    &mut metadata,
                    old_column_name,
                    new_column_name,
                    &referenced,
                )?
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                let column = existing(&qualified, &metadata, column_name)?;
                match op {
                    AlterColumnOperation::SetDataType {
                        data_type, using, ..
                    } => {
                        if using.is_some() {
                            return Err(Error::Unsupported(
                                "SET DATA TYPE ... USING: only widenings that need no \
                                 conversion are supported"
                                    .to_string(),
                            ));
                        }
                        set_data_type(&qualified, &mut metadata, &column, data_type)?
                    }
                    AlterColumnOperation::SetDefault { value } => {
                        let data_type = metadata.column(&column).expect("exists").data_type.clone();
                        let default = constant(session, &column, value, &data_type).await?;
                        column_mut(&mut metadata, &column).default = default;
                        format!("set the default of {column}")
                    }
                    AlterColumnOperation::DropDefault => {
                        column_mut(&mut metadata, &column).default = None;
                        format!("dropped the default of {column}")
                    }
                    AlterColumnOperation::SetNotNull => {
                        let nulls = count_nulls(session, name, &column).await?;
                        if nulls > 0 {
                            return Err(StorageError::ConstraintViolation {
                                table: qualified,
                                reason: format!(
                                    "cannot SET NOT NULL on column '{column}': {nulls} rows \
                                     hold NULL in it"
                                ),
                            }
                            .into());
                        }
                        reads_rows = true;
                        column_mut(&mut metadata, &column).nullable = false;
                        format!("{column} is NOT NULL")
                    }
                    AlterColumnOperation::DropNotNull => {
                        if let Some(pk) = metadata.constraints.iter().find(|c| {
                            matches!(c, Constraint::PrimaryKey { .. })
                                && c.columns().contains(&column)
                        }) {
                            return Err(Error::Plan(format!(
                                "column '{column}' of {qualified} is in PRIMARY KEY '{}': it \
                                 stays NOT NULL",
                                pk.name()
                            )));
                        }
                        column_mut(&mut metadata, &column).nullable = true;
                        format!("{column} allows NULL")
                    }
                    other => {
                        return Err(Error::Unsupported(format!("ALTER COLUMN ... {other}")));
                    }
                }
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "ALTER TABLE ... {other} (supported: ADD / DROP / RENAME COLUMN, ALTER \
                     COLUMN SET DATA TYPE / SET DEFAULT / DROP DEFAULT / SET NOT NULL / DROP \
                     NOT NULL, RENAME TO, SWAP WITH, ADD / DROP PARTITION)"
                )));
            }
        };
        if !note.is_empty() {
            done.push(note);
        }
    }
    if metadata == snapshot.metadata {
        return Ok(StatementResult::status(format!("{qualified} unchanged")));
    }
    let mut txn = Transaction::new("ALTER TABLE");
    txn.replace_metadata = Some(metadata);
    // A concurrent change of the definition conflicts (the log refuses new metadata over it)
    // and the statement runs again on it. SET NOT NULL also conflicts with rows added
    // meanwhile, which it did not check.
    txn.reads = if reads_rows {
        Reads::Table
    } else {
        Reads::Nothing
    };
    session
        .warehouse()
        .commit(&qualified, &log, &snapshot, &txn)
        .await?;
    Ok(StatementResult::status(format!(
        "altered table {qualified}: {}",
        done.join("; ")
    )))
}

/// The normalised name of an existing column, or an error naming the table's columns.
fn existing(table: &str, metadata: &TableMetadata, name: &Ident) -> Result<String> {
    let column = parser::normalize(name);
    if metadata.column(&column).is_none() {
        return Err(no_such_column(table, metadata, &column));
    }
    Ok(column)
}

fn no_such_column(table: &str, metadata: &TableMetadata, column: &str) -> Error {
    let names: Vec<&str> = metadata.columns.iter().map(|c| c.name.as_str()).collect();
    Error::Plan(format!(
        "{table} has no column '{column}' (columns: {})",
        names.join(", ")
    ))
}

/// A column named `""` could not be written back in SQL: refused.
fn refuse_empty(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::Plan("a column name cannot be empty".to_string()));
    }
    Ok(())
}

fn column_mut<'a>(metadata: &'a mut TableMetadata, name: &str) -> &'a mut ColumnDef {
    metadata
        .columns
        .iter_mut()
        .find(|c| c.name == name)
        .expect("the column was checked to exist")
}

async fn add_column(
    session: &Session,
    table: &str,
    metadata: &mut TableMetadata,
    def: &SqlColumnDef,
    if_not_exists: bool,
    rows: u64,
) -> Result<String> {
    let name = parser::normalize(&def.name);
    refuse_empty(&name)?;
    if metadata.column(&name).is_some() {
        if if_not_exists {
            return Ok(String::new());
        }
        return Err(Error::Plan(format!(
            "column '{name}' already exists in {table}"
        )));
    }
    let (data_type, sql_type) = arrow_type(&def.data_type, &name)?;
    let mut column = ColumnDef::new(&name, data_type.clone(), true);
    column.sql_type = sql_type;
    for option in &def.options {
        match &option.option {
            ColumnOption::NotNull => column.nullable = false,
            ColumnOption::Null => column.nullable = true,
            ColumnOption::Default(value) => {
                column.default = constant(session, &name, value, &data_type).await?;
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "ADD COLUMN ... {other}: a new column takes a type, DEFAULT and NOT NULL \
                     (keys are declared with the table)"
                )));
            }
        }
    }
    if !column.nullable && column.default.is_none() && rows > 0 {
        return Err(StorageError::ConstraintViolation {
            table: table.to_string(),
            reason: format!(
                "cannot add NOT NULL column '{name}' without a DEFAULT: the table's {rows} rows \
                 would have none"
            ),
        }
        .into());
    }
    // Rows already there read the default as it is now, whatever it becomes later.
    column.initial_default = column.default.clone();
    metadata.columns.push(column);
    Ok(format!("added column {name}"))
}

fn drop_column(
    table: &str,
    metadata: &mut TableMetadata,
    name: &Ident,
    if_exists: bool,
) -> Result<String> {
    let column = parser::normalize(name);
    if metadata.column(&column).is_none() {
        if if_exists {
            return Ok(String::new());
        }
        return Err(no_such_column(table, metadata, &column));
    }
    if metadata
        .partitioning
        .as_ref()
        .is_some_and(|p| p.column == column)
    {
        return Err(Error::Plan(format!(
            "cannot drop column '{column}': {table} is partitioned by it"
        )));
    }
    for c in &metadata.constraints {
        if c.columns().contains(&column) || check_mentions(c, &column) {
            return Err(Error::Plan(format!(
                "cannot drop column '{column}': {} constraint '{}' of {table} uses it",
                c.kind(),
                c.name()
            )));
        }
    }
    if metadata.columns.len() == 1 {
        return Err(Error::Plan(format!(
            "cannot drop column '{column}': it is the only column of {table}"
        )));
    }
    if metadata.cluster_by.contains(&column) {
        return Err(Error::Plan(format!(
            "cannot drop column '{column}': {table} is clustered by it (ALTER TABLE ... DROP              CLUSTERING KEY first)"
        )));
    }
    metadata.columns.retain(|c| c.name != column);
    let indexes = metadata.drop_indexes_on(&column);
    if indexes.is_empty() {
        Ok(format!("dropped column {column}"))
    } else {
        Ok(format!(
            "dropped column {column} and its indexes {}",
            indexes.join(", ")
        ))
    }
}

/// Whether a CHECK constraint's expression reads `column`.
fn check_mentions(constraint: &Constraint, column: &str) -> bool {
    let Constraint::Check { expr, .. } = constraint else {
        return false;
    };
    let Ok(parsed) = parser::parse_expr(expr) else {
        return true;
    };
    struct Finds<'a>(&'a str, bool);
    impl Visitor for Finds<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &SqlExpr) -> std::ops::ControlFlow<()> {
            let hit = match e {
                SqlExpr::Identifier(i) => parser::normalize(i) == self.0,
                SqlExpr::CompoundIdentifier(parts) => {
                    parts.last().is_some_and(|i| parser::normalize(i) == self.0)
                }
                _ => false,
            };
            self.1 |= hit;
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut finds = Finds(column, false);
    let _ = parsed.visit(&mut finds);
    finds.1
}

/// The columns of `table` that foreign keys of other tables reference.
async fn referenced_columns(
    session: &Session,
    table: &str,
) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for (child, constraints) in session.warehouse().constraints().await? {
        for c in constraints {
            if let Constraint::ForeignKey {
                name,
                references,
                referenced_columns,
                ..
            } = c
                && references.join(".") == table
                && child.join(".") != table
            {
                for column in referenced_columns {
                    out.push((column, name.clone(), child.join(".")));
                }
            }
        }
    }
    Ok(out)
}

fn rename_column(
    table: &str,
    metadata: &mut TableMetadata,
    old: &Ident,
    new: &Ident,
    referenced: &[(String, String, String)],
) -> Result<String> {
    let old = existing(table, metadata, old)?;
    let new = parser::normalize(new);
    refuse_empty(&new)?;
    if metadata.column(&new).is_some() {
        return Err(Error::Plan(format!(
            "column '{new}' already exists in {table}"
        )));
    }
    if let Some((_, constraint, child)) = referenced.iter().find(|(c, _, _)| *c == old) {
        return Err(Error::Plan(format!(
            "cannot rename column '{old}': FOREIGN KEY constraint '{constraint}' of {child} \
             references it"
        )));
    }
    column_mut(metadata, &old).name = new.clone();
    metadata.rename_in_layout(&old, &new);
    if let Some(p) = metadata.partitioning.as_mut()
        && p.column == old
    {
        p.column = new.clone();
    }
    for c in &mut metadata.constraints {
        match c {
            Constraint::PrimaryKey { columns, .. }
            | Constraint::Unique { columns, .. }
            | Constraint::ForeignKey { columns, .. } => {
                for column in columns.iter_mut() {
                    if *column == old {
                        *column = new.clone();
                    }
                }
            }
            Constraint::Check { expr, .. } => {
                *expr = rename_in_expr(expr, &old, &new)?;
            }
        }
    }
    Ok(format!("renamed column {old} to {new}"))
}

/// A CHECK expression with column `old` renamed `new`.
fn rename_in_expr(expr: &str, old: &str, new: &str) -> Result<String> {
    let mut parsed = parser::parse_expr(expr)?;
    struct Renames<'a>(&'a str, &'a str);
    impl VisitorMut for Renames<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> std::ops::ControlFlow<()> {
            let ident = match e {
                SqlExpr::Identifier(i) => Some(i),
                SqlExpr::CompoundIdentifier(parts) => parts.last_mut(),
                _ => None,
            };
            if let Some(i) = ident
                && parser::normalize(i) == self.0
            {
                *i = Ident::with_quote('"', self.1);
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(&mut parsed, &mut Renames(old, new));
    Ok(parsed.to_string())
}

/// Whether values of `from` can be read as `to` by casting, without loss: the widenings
/// `SET DATA TYPE` allows.
fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let rank = |t: &DataType| match t {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    match (from, to) {
        (a, b) if a == b => true,
        (Float32, Float64) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => s1 == s2 && p2 >= p1,
        _ => matches!((rank(from), rank(to)), (Some(a), Some(b)) if b >= a),
    }
}

/// The declared length of a `VARCHAR(n)` column.
fn varchar_length(sql_type: Option<&str>) -> Option<u64> {
    let t = sql_type?;
    t.strip_prefix("VARCHAR(")?.strip_suffix(')')?.parse().ok()
}

fn set_data_type(
    table: &str,
    metadata: &mut TableMetadata,
    column: &str,
    data_type: &datafusion::sql::sqlparser::ast::DataType,
) -> Result<String> {
    let (to, sql_type) = arrow_type(data_type, column)?;
    let current = metadata.column(column).expect("exists").clone();
    let from_name = current
        .sql_type
        .clone()
        .unwrap_or_else(|| strata_storage::sql_type_name(&current.data_type));
    let to_name = sql_type
        .clone()
        .unwrap_or_else(|| strata_storage::sql_type_name(&to));
    if metadata
        .partitioning
        .as_ref()
        .is_some_and(|p| p.column == column)
    {
        return Err(Error::Plan(format!(
            "cannot change the type of column '{column}': {table} is partitioned by it"
        )));
    }
    if current.sql_type.as_deref() == Some("JSON") || sql_type.as_deref() == Some("JSON") {
        if current.sql_type == sql_type {
            return Ok(String::new());
        }
        return Err(not_a_widening(column, &from_name, &to_name));
    }
    if !widens(&current.data_type, &to) {
        return Err(not_a_widening(column, &from_name, &to_name));
    }
    if current.data_type == to {
        // VARCHAR(n) to VARCHAR(m): longer, or unbounded.
        let (old_len, new_len) = (
            varchar_length(current.sql_type.as_deref()),
            varchar_length(sql_type.as_deref()),
        );
        match (old_len, new_len) {
            (Some(a), Some(b)) if b < a => {
                return Err(not_a_widening(column, &from_name, &to_name));
            }
            (None, Some(_)) if to == DataType::Utf8 => {
                return Err(not_a_widening(column, &from_name, &to_name));
            }
            _ => {}
        }
        if current.sql_type == sql_type {
            return Ok(String::new());
        }
    }
    if let Some(key) = metadata
        .constraints
        .iter()
        .find(|c| !matches!(c, Constraint::Check { .. }) && c.columns().iter().any(|k| k == column))
    {
        return Err(Error::Plan(format!(
            "cannot change the type of column '{column}': {} constraint '{}' of {table} uses it",
            key.kind(),
            key.name()
        )));
    }
    let def = column_mut(metadata, column);
    def.data_type = to;
    def.sql_type = sql_type;
    Ok(format!("{column} is {to_name}"))
}

fn not_a_widening(column: &str, from: &str, to: &str) -> Error {
    Error::Plan(format!(
        "cannot change column '{column}' from {from} to {to}: only widenings that keep every \
         value are allowed (TINYINT < SMALLINT < INT < BIGINT, FLOAT to DOUBLE, a larger \
         DECIMAL precision at the same scale, a longer VARCHAR)"
    ))
}

/// The value of a constant expression, cast to `data_type`, as the text the column stores
/// (`None` for NULL). Column references and subqueries are refused.
pub(crate) async fn constant(
    session: &Session,
    column: &str,
    value: &SqlExpr,
    data_type: &DataType,
) -> Result<Option<String>> {
    let sql = format!("SELECT {value}");
    let failed = |reason: String| {
        Error::Plan(format!(
            "DEFAULT {value} of column '{column}' is not a constant of type {}: {reason}",
            strata_storage::sql_type_name(data_type)
        ))
    };
    let batches = async { session.context().sql(&sql).await?.collect().await }
        .await
        .map_err(|e| failed(Error::from(e).to_string()))?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Err(failed("it has no value".to_string()));
    };
    let array =
        arrow::compute::cast(batch.column(0), data_type).map_err(|e| failed(e.to_string()))?;
    if array.is_null(0) {
        if batch.column(0).is_null(0) {
            return Ok(None);
        }
        return Err(failed("it does not fit the type".to_string()));
    }
    let value = ScalarValue::try_from_array(&array, 0)?;
    let text = arrow::compute::cast(&array.slice(0, 1), &DataType::Utf8)?;
    let text = ScalarValue::try_from_array(&text, 0)?.to_string();
    let back = ScalarValue::Utf8(Some(text.clone()))
        .cast_to(data_type)
        .ok();
    if back.as_ref() != Some(&value) {
        return Err(failed(format!(
            "{text} does not read back as the same value"
        )));
    }
    Ok(Some(text))
}

/// Rows of `table` whose `column` is NULL (read through the DataFrame API: no SQL text to
/// quote names into).
async fn count_nulls(session: &Session, name: &ObjectName, column: &str) -> Result<u64> {
    let (db, schema, table) = session.qualify_table(name)?;
    let rows = session
        .context()
        .table(datafusion::common::TableReference::full(db, schema, table))
        .await?
        .filter(datafusion::prelude::col(datafusion::common::Column::from_name(column)).is_null())?
        .count()
        .await?;
    Ok(rows as u64)
}

/// Refuses to rename or swap a table other tables' foreign keys name.
async fn refuse_referenced(session: &Session, table: &[String; 3], what: &str) -> Result<()> {
    for (child, constraints) in session.warehouse().constraints().await? {
        if &child == table {
            continue;
        }
        for c in constraints {
            if let Constraint::ForeignKey {
                name, references, ..
            } = &c
                && references == table
            {
                return Err(Error::Plan(format!(
                    "cannot {what} {}: FOREIGN KEY constraint '{name}' of {} references it by \
                     name",
                    table.join("."),
                    child.join(".")
                )));
            }
        }
    }
    Ok(())
}

/// `ALTER TABLE t RENAME TO u`: one catalog commit.
async fn rename_table(
    session: &mut Session,
    from: [String; 3],
    to: &ObjectName,
) -> Result<StatementResult> {
    let target = match name_parts(to).as_slice() {
        [t] => [from[0].clone(), from[1].clone(), t.clone()],
        [s, t] => [from[0].clone(), s.clone(), t.clone()],
        [d, s, t] => [d.clone(), s.clone(), t.clone()],
        _ => return Err(Error::Plan(format!("invalid table name {to}"))),
    };
    refuse_referenced(session, &from, "rename").await?;
    let [d, s, t] = &from;
    let [nd, ns, nt] = &target;
    session
        .warehouse()
        .update_catalog(|c| {
            let entry = c.table(d, s, t)?.clone();
            let into = c.schema(nd, ns)?;
            if into.contains(nt) {
                return Err(StorageError::TableExists {
                    name: target.join("."),
                });
            }
            c.schema_mut(d, s)?.tables.remove(t);
            c.schema_mut(nd, ns)?.tables.insert(nt.clone(), entry);
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(format!(
        "renamed table {} to {}",
        from.join("."),
        target.join(".")
    )))
}

/// `ALTER TABLE a SWAP WITH b` (Snowflake): the two names exchange their tables in one
/// catalog commit.
async fn swap_tables(
    session: &mut Session,
    a: [String; 3],
    other: &ObjectName,
) -> Result<StatementResult> {
    let (d, s, t) = session.qualify_table(other)?;
    let b = [d, s, t];
    if a == b {
        return Err(Error::Plan(format!(
            "cannot swap {} with itself",
            a.join(".")
        )));
    }
    refuse_referenced(session, &a, "swap").await?;
    refuse_referenced(session, &b, "swap").await?;
    let mut kinds = HashSet::new();
    for name in [&a, &b] {
        let catalog = session.warehouse().catalog();
        if catalog.view(&name[0], &name[1], &name[2]).is_some() {
            return Err(StorageError::WrongKind {
                name: name.join("."),
                is: "view",
                hint: "CREATE OR REPLACE VIEW",
            }
            .into());
        }
        let entry = catalog.table(&name[0], &name[1], &name[2])?;
        let log = session.warehouse().table_log(&entry.id, &name.join("."));
        let snapshot = session.warehouse().snapshot(&log).await?;
        kinds.insert(Definition::of(&snapshot.metadata).is_some());
    }
    if kinds.len() > 1 {
        return Err(Error::Plan(format!(
            "cannot swap {} with {}: one is a materialized view",
            a.join("."),
            b.join(".")
        )));
    }
    session
        .warehouse()
        .update_catalog(|c| {
            let first = c.table(&a[0], &a[1], &a[2])?.clone();
            let second = c.table(&b[0], &b[1], &b[2])?.clone();
            c.schema_mut(&a[0], &a[1])?
                .tables
                .insert(a[2].clone(), second);
            c.schema_mut(&b[0], &b[1])?
                .tables
                .insert(b[2].clone(), first);
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(format!(
        "swapped {} with {}",
        a.join("."),
        b.join(".")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widenings_keep_every_value() {
        assert!(widens(&DataType::Int32, &DataType::Int64));
        assert!(widens(&DataType::Int8, &DataType::Int32));
        assert!(!widens(&DataType::Int64, &DataType::Int32));
        assert!(widens(&DataType::Float32, &DataType::Float64));
        assert!(!widens(&DataType::Float64, &DataType::Float32));
        assert!(!widens(&DataType::Int64, &DataType::Float64));
        assert!(widens(
            &DataType::Decimal128(10, 2),
            &DataType::Decimal128(12, 2)
        ));
        assert!(!widens(
            &DataType::Decimal128(10, 2),
            &DataType::Decimal128(12, 3)
        ));
        assert!(!widens(
            &DataType::Decimal128(12, 2),
            &DataType::Decimal128(10, 2)
        ));
        assert!(!widens(&DataType::Utf8, &DataType::Int64));
    }

    #[test]
    fn check_expressions_follow_a_rename() {
        let renamed =
            rename_in_expr("amount > 0 AND t.amount < limit_", "amount", "total").unwrap();
        assert_eq!(renamed, "\"total\" > 0 AND t.\"total\" < limit_");
        let check = Constraint::Check {
            name: "c".into(),
            expr: "amount > 0".into(),
        };
        assert!(check_mentions(&check, "amount"));
        assert!(!check_mentions(&check, "other"));
    }
}
