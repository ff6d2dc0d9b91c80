//! Named file formats: `CREATE FILE FORMAT csv_pipe TYPE = CSV FIELD_DELIMITER = '|'`, used as
//! `FILE_FORMAT = (FORMAT_NAME = csv_pipe)` wherever a format is given, and `DROP FILE FORMAT`.
//! What the options mean is [`crate::formats`].

use chrono::Utc;
use datafusion::sql::sqlparser::ast::ObjectName;
use std::collections::BTreeMap;

use strata_storage::{Error as StorageError, FileFormatEntry, FormatOptions, SchemaEntry};

use crate::error::{Error, Result};
use crate::formats::FormatSpec;
use crate::result::StatementResult;
use crate::session::Session;

/// `options` with `FORMAT_NAME = f` replaced by the options of the named format `f`; options
/// written after it override the format's.
pub(crate) fn expand(session: &Session, options: FormatOptions) -> Result<FormatOptions> {
    let mut out: FormatOptions = Vec::new();
    for (key, values) in options {
        if key == "FORMAT_NAME" {
            let name = values.concat();
            let object = ObjectName::from(
                name.split('.')
                    .map(datafusion::sql::sqlparser::ast::Ident::new)
                    .collect::<Vec<_>>(),
            );
            let (db, schema, name) = session.qualify_table(&object)?;
            let catalog = session.warehouse().catalog();
            let format = catalog
                .schema(&db, &schema)?
                .file_formats
                .get(&name)
                .ok_or_else(|| {
                    Error::Storage(StorageError::ObjectNotFound {
                        kind: "file format",
                        name: format!("{db}.{schema}.{name}"),
                    })
                })?;
            out.extend(format.options.iter().cloned());
        } else {
            out.retain(|(k, _)| *k != key);
            out.push((key, values));
        }
    }
    Ok(out)
}

/// Options of `base` overridden by those of `over` (a stage's format, then a statement's). A
/// statement that names a format (`TYPE` or `FORMAT_NAME`) replaces the stage's whole, as in
/// Snowflake; other options override one by one.
pub(crate) fn overlay(base: &[(String, Vec<String>)], over: FormatOptions) -> FormatOptions {
    if over.iter().any(|(k, _)| k == "TYPE" || k == "FORMAT") {
        return over;
    }
    let mut out: FormatOptions = base
        .iter()
        .filter(|(k, _)| !over.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    out.extend(over);
    out
}

/// `CREATE [OR REPLACE] FILE FORMAT [IF NOT EXISTS] name TYPE = ... [COMMENT = '...']`.
pub(crate) async fn create(
    session: &Session,
    name: &ObjectName,
    or_replace: bool,
    if_not_exists: bool,
    options: &[(String, Vec<String>)],
) -> Result<StatementResult> {
    let (db, schema, name) = session.qualify_table(name)?;
    let qualified = format!("{db}.{schema}.{name}");
    let comment = options
        .iter()
        .find(|(k, _)| k == "COMMENT")
        .map(|(_, v)| v.concat());
    let options: FormatOptions = options
        .iter()
        .filter(|(k, _)| k != "COMMENT")
        .cloned()
        .collect();
    if !options.iter().any(|(k, _)| k == "TYPE" || k == "FORMAT") {
        return Err(Error::Plan(format!(
            "file format {qualified} needs TYPE = CSV | JSON | PARQUET"
        )));
    }
    FormatSpec::parse(&options)?;
    let entry = FileFormatEntry {
        options,
        comment,
        created_at: Utc::now(),
    };
    let target = (db, schema, name);
    enter(
        session,
        target,
        "file format",
        |s| &mut s.file_formats,
        entry,
        or_replace,
        if_not_exists,
    )
    .await
}

/// Enters `entry` as the `kind` called `target` in its schema's map that `map` picks (stages,
/// file formats), in one catalog commit: `IF NOT EXISTS` keeps an existing one, `OR REPLACE`
/// replaces it, and otherwise its name is taken.
pub(super) async fn enter<T: Clone>(
    session: &Session,
    (db, schema, name): (String, String, String),
    kind: &'static str,
    map: fn(&mut SchemaEntry) -> &mut BTreeMap<String, T>,
    entry: T,
    or_replace: bool,
    if_not_exists: bool,
) -> Result<StatementResult> {
    let qualified = format!("{db}.{schema}.{name}");
    let mut existed = false;
    session
        .warehouse()
        .update_catalog(|c| {
            let objects = map(c.schema_mut(&db, &schema)?);
            existed = objects.contains_key(&name);
            if existed && if_not_exists {
                return Ok(());
            }
            if existed && !or_replace {
                return Err(StorageError::NameTaken {
                    name: qualified.clone(),
                    kind,
                });
            }
            objects.insert(name.clone(), entry.clone());
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(if existed && if_not_exists {
        format!("{kind} {qualified} already exists")
    } else {
        format!("created {kind} {qualified}")
    }))
}

/// `DROP FILE FORMAT [IF EXISTS] name`. Stages keep their own copy of options, so dropping a
/// format changes no stage.
pub(crate) async fn drop(
    session: &Session,
    name: &ObjectName,
    if_exists: bool,
) -> Result<StatementResult> {
    let (db, schema, name) = session.qualify_table(name)?;
    let qualified = format!("{db}.{schema}.{name}");
    let mut dropped = false;
    session
        .warehouse()
        .update_catalog(|c| {
            dropped = c
                .schema_mut(&db, &schema)?
                .file_formats
                .remove(&name)
                .is_some();
            if !dropped && !if_exists {
                return Err(StorageError::ObjectNotFound {
                    kind: "file format",
                    name: qualified.clone(),
                });
            }
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(if dropped {
        format!("dropped file format {qualified}")
    } else {
        "nothing to drop".to_string()
    }))
}
