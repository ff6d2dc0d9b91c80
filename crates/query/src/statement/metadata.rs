//! Catalog metadata people search and BI tools show: comments, tags and owners.
//!
//! - `COMMENT ON TABLE | MATERIALIZED VIEW | COLUMN | VIEW | SCHEMA | DATABASE x IS '...' | NULL`
//!   (and `COMMENT = '...'` in `CREATE TABLE` / `CREATE VIEW`, `COMMENT '...'` on a column);
//! - `ALTER TABLE t SET TAG k = 'v'`, `UNSET TAG k`, and the same on a column after `MODIFY
//!   COLUMN c`: Snowflake's object tags (`domain = 'sales'`, `pii = 'email'`);
//! - `ALTER TABLE t OWNER TO user`: the owner is whoever created the table until then.
//!
//! A table's comment, owner and tags, and its columns', live in its metadata, so a change is a
//! commit like any other; a view's, schema's and database's comments live in the catalog.
//! `system.tables`, `system.columns` and `system.search(...)` read them.

use datafusion::sql::sqlparser::ast::{CommentObject, ObjectName, Owner};
use strata_storage::{Error as StorageError, Transaction};

use crate::error::{Error, Result};
use crate::parser::{TagChange, name_parts};
use crate::result::StatementResult;
use crate::session::Session;
use crate::table::{COMMENT_PROPERTY, OWNER_PROPERTY};

/// Runs `COMMENT ON ...`.
pub(crate) async fn comment_on(
    session: &Session,
    object: CommentObject,
    name: &ObjectName,
    comment: Option<&str>,
    if_exists: bool,
) -> Result<StatementResult> {
    let outcome = match object {
        CommentObject::Table | CommentObject::MaterializedView => {
            comment_on_table(session, name, None, comment).await
        }
        CommentObject::Column => {
            let parts = name_parts(name);
            let Some((column, table)) = parts.split_last().filter(|(_, t)| !t.is_empty()) else {
                return Err(Error::Plan(format!(
                    "COMMENT ON COLUMN {name}: name the column as table.column"
                )));
            };
            let table = ObjectName::from(
                table
                    .iter()
                    .map(|p| datafusion::sql::sqlparser::ast::Ident::with_quote('"', p))
                    .collect::<Vec<_>>(),
            );
            comment_on_table(session, &table, Some(column), comment).await
        }
        CommentObject::View => comment_on_view(session, name, comment).await,
        CommentObject::Schema | CommentObject::Database => {
            comment_on_namespace(session, object, name, comment).await
        }
        other => {
            return Err(Error::Unsupported(format!(
                "COMMENT ON {other}: comments go on tables, materialized views, columns, views, \
                 schemas and databases"
            )));
        }
    };
    match outcome {
        Err(e) if if_exists && e.kind() == crate::ErrorKind::NotFound => {
            Ok(StatementResult::status(format!("{name} does not exist")))
        }
        other => other,
    }
}

async fn comment_on_table(
    session: &Session,
    name: &ObjectName,
    column: Option<&String>,
    comment: Option<&str>,
) -> Result<StatementResult> {
    let (log, snapshot, qualified) = session.open_table(name).await?;
    let mut metadata = snapshot.metadata.clone();
    let what = match column {
        Some(column) => {
            let Some(c) = metadata.columns.iter_mut().find(|c| &c.name == column) else {
                return Err(Error::Plan(format!(
                    "COMMENT ON COLUMN: {qualified} has no column '{column}'"
                )));
            };
            c.comment = comment.map(str::to_string);
            format!("{qualified}.{column}")
        }
        None => {
            match comment {
                Some(text) => metadata
                    .properties
                    .insert(COMMENT_PROPERTY.to_string(), text.to_string()),
                None => metadata.properties.remove(COMMENT_PROPERTY),
            };
            qualified.clone()
        }
    };
    let mut txn = Transaction::new("COMMENT");
    txn.replace_metadata = Some(metadata);
    session
        .warehouse()
        .commit(&qualified, &log, &snapshot, &txn)
        .await?;
    Ok(StatementResult::status(format!(
        "comment on {what} {}",
        if comment.is_some() { "set" } else { "removed" }
    )))
}

async fn comment_on_view(
    session: &Session,
    name: &ObjectName,
    comment: Option<&str>,
) -> Result<StatementResult> {
    let (db, schema, view) = session.qualify_table(name)?;
    let qualified = format!("{db}.{schema}.{view}");
    session
        .warehouse()
        .update_catalog(|c| {
            let entry = c
                .schema_mut(&db, &schema)?
                .views
                .get_mut(&view)
                .ok_or_else(|| StorageError::ViewNotFound {
                    name: qualified.clone(),
                })?;
            entry.comment = comment.map(str::to_string);
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(format!(
        "comment on {qualified} {}",
        if comment.is_some() { "set" } else { "removed" }
    )))
}

async fn comment_on_namespace(
    session: &Session,
    object: CommentObject,
    name: &ObjectName,
    comment: Option<&str>,
) -> Result<StatementResult> {
    let text = comment.map(str::to_string);
    let what = match object {
        CommentObject::Database => {
            let [db] = name_parts(name)
                .try_into()
                .map_err(|_| Error::Plan(format!("COMMENT ON DATABASE {name}: one name")))?;
            session
                .warehouse()
                .update_catalog(|c| {
                    let entry = c
                        .databases
                        .get_mut(&db)
                        .ok_or_else(|| StorageError::DatabaseNotFound { name: db.clone() })?;
                    entry.comment = text.clone();
                    Ok(())
                })
                .await?;
            db
        }
        _ => {
            let (db, schema) = session.qualify_schema(name)?;
            session
                .warehouse()
                .update_catalog(|c| {
                    c.schema_mut(&db, &schema)?.comment = text.clone();
                    Ok(())
                })
                .await?;
            format!("{db}.{schema}")
        }
    };
    Ok(StatementResult::status(format!(
        "comment on {what} {}",
        if comment.is_some() { "set" } else { "removed" }
    )))
}

/// Runs `ALTER TABLE t [MODIFY COLUMN c] SET | UNSET TAG ...`.
pub(crate) async fn set_tags(session: &Session, change: &TagChange) -> Result<StatementResult> {
    let (log, snapshot, qualified) = session.open_table(&change.table).await?;
    let mut metadata = snapshot.metadata.clone();
    let (tags, what) = match &change.column {
        Some(column) => {
            let Some(c) = metadata.columns.iter_mut().find(|c| &c.name == column) else {
                return Err(Error::Plan(format!("{qualified} has no column '{column}'")));
            };
            (&mut c.tags, format!("{qualified}.{column}"))
        }
        None => (&mut metadata.tags, qualified.clone()),
    };
    for (name, value) in &change.set {
        tags.insert(name.clone(), value.clone());
    }
    for name in &change.unset {
        tags.remove(name);
    }
    let mut txn = Transaction::new("SET TAG");
    txn.replace_metadata = Some(metadata);
    session
        .warehouse()
        .commit(&qualified, &log, &snapshot, &txn)
        .await?;
    Ok(StatementResult::status(format!("tags of {what} changed")))
}

/// Runs `ALTER TABLE t OWNER TO user`: admins and the table's owner may.
pub(crate) async fn owner_to(
    session: &Session,
    name: &ObjectName,
    owner: &Owner,
) -> Result<StatementResult> {
    let (log, snapshot, qualified) = session.open_table(name).await?;
    let new_owner = match owner {
        Owner::Ident(ident) => ident.value.clone(),
        Owner::CurrentUser | Owner::SessionUser | Owner::CurrentRole => session.user_name(),
    };
    let current = snapshot.metadata.properties.get(OWNER_PROPERTY);
    if !session.is_admin() && current.is_none_or(|o| *o != session.user_name()) {
        return Err(Error::PermissionDenied(format!(
            "only an admin or the owner of {qualified} can give it to another user"
        )));
    }
    let mut metadata = snapshot.metadata.clone();
    metadata
        .properties
        .insert(OWNER_PROPERTY.to_string(), new_owner.clone());
    let mut txn = Transaction::new("ALTER TABLE");
    txn.replace_metadata = Some(metadata);
    session
        .warehouse()
        .commit(&qualified, &log, &snapshot, &txn)
        .await?;
    Ok(StatementResult::status(format!(
        "{qualified} is owned by {new_owner}"
    )))
}
