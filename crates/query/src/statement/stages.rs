//! Named stages: `CREATE STAGE landing URL = 's3://bucket/in/' [CREDENTIALS = (SECRET = s)]
//! [FILE_FORMAT = (...)]`, `LIST @landing [PATTERN = '...']`, `DROP STAGE landing`, and
//! `@landing/2024/` wherever files are named (`COPY INTO t FROM @landing/2024/`,
//! `CREATE EXTERNAL TABLE ... LOCATION = @landing/events/`).
//!
//! A stage is catalog metadata: a location, the secret that reaches it and the default format
//! of its files. It holds no keys. Only admins create or drop one; anyone may load through one,
//! which is how an admin gives the users of a server a place to load from.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::Utc;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, Statement as SqlStatement};
use strata_storage::{Error as StorageError, FormatOptions, StageEntry};

use super::file_formats;
use crate::error::{Error, Result};
use crate::formats::{FormatSpec, key_values};
use crate::result::StatementResult;
use crate::session::Session;

/// Where `@stage/path` points, and how to read it.
#[derive(Debug, Clone)]
pub(crate) struct StageFiles {
    /// The stage's URL joined with the path.
    pub(crate) url: String,
    /// The secret that reaches `url`, if the stage names one.
    pub(crate) secret: Option<String>,
    /// The secret's S3 settings.
    pub(crate) settings: Vec<(String, String)>,
    /// The stage's format options.
    pub(crate) file_format: FormatOptions,
}

/// The text of a stage reference as sqlparser splits it (`@raw`, `landing/2024/`).
pub(crate) fn reference_text(name: &ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.clone()))
        .collect::<Vec<_>>()
        .join(".")
}

/// Splits `@db.schema.name/path` into the stage's name and the path under it.
fn split_reference(reference: &str) -> Result<(ObjectName, String)> {
    let rest = reference.strip_prefix('@').ok_or_else(|| {
        Error::Plan(format!(
            "'{reference}' is not a stage reference (@stage/path)"
        ))
    })?;
    let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() {
        return Err(Error::Plan(format!("'{reference}' names no stage")));
    }
    let name = ObjectName::from(name.split('.').map(Ident::new).collect::<Vec<_>>());
    Ok((name, path.to_string()))
}

/// Resolves `@stage[/path]` to the files' location, settings and format.
pub(crate) async fn resolve(session: &Session, reference: &str) -> Result<StageFiles> {
    let (name, path) = split_reference(reference)?;
    let (db, schema, stage) = session.qualify_table(&name)?;
    let entry = session
        .warehouse()
        .catalog()
        .schema(&db, &schema)?
        .stages
        .get(&stage)
        .cloned()
        .ok_or_else(|| {
            Error::Storage(StorageError::ObjectNotFound {
                kind: "stage",
                name: format!("{db}.{schema}.{stage}"),
            })
        })?;
    if path.split('/').any(|segment| segment == "..") {
        return Err(Error::PermissionDenied(format!(
            "'{reference}': a stage path may not leave the stage (..)"
        )));
    }
    let url = if path.is_empty() {
        entry.url.clone()
    } else {
        format!("{}/{path}", entry.url.trim_end_matches('/'))
    };
    let settings = match &entry.secret {
        Some(secret) => session.secret_settings(secret).await?,
        None => Vec::new(),
    };
    Ok(StageFiles {
        url,
        secret: entry.secret,
        settings,
        file_format: entry.file_format,
    })
}

/// `CREATE [OR REPLACE] STAGE [IF NOT EXISTS] name URL = '...' [CREDENTIALS = (SECRET = s)]
/// [FILE_FORMAT = (...)] [COMMENT = '...']`.
pub(crate) async fn create(session: &Session, statement: &SqlStatement) -> Result<StatementResult> {
    let SqlStatement::CreateStage {
        or_replace,
        if_not_exists,
        name,
        stage_params,
        file_format,
        copy_options,
        comment,
        ..
    } = statement
    else {
        return Err(Error::Plan("expected CREATE STAGE".to_string()));
    };
    session.require_admin("CREATE STAGE")?;
    let (db, schema, name) = session.qualify_table(name)?;
    let qualified = format!("{db}.{schema}.{name}");
    let url = stage_params.url.clone().ok_or_else(|| {
        Error::Plan(format!(
            "stage {qualified} needs URL = 's3://bucket/prefix/' or a local directory"
        ))
    })?;
    if !copy_options.options.is_empty() || stage_params.endpoint.is_some() {
        return Err(Error::Unsupported(
            "COPY_OPTIONS and ENDPOINT on a stage: give copy options with COPY INTO, and the \
             endpoint with the secret (CREATE SECRET ... ENDPOINT = '...')"
                .to_string(),
        ));
    }
    let credentials = key_values(&stage_params.credentials);
    let secret = match credentials.as_slice() {
        [] => None,
        [(key, value)] if key == "SECRET" => Some(value.concat().to_ascii_lowercase()),
        _ => {
            return Err(Error::Plan(
                "a stage keeps no keys: name a secret, CREDENTIALS = (SECRET = name) (see \
                 CREATE SECRET)"
                    .to_string(),
            ));
        }
    };
    if let Some(secret) = &secret {
        // The secret must exist now; its keys are read when the stage is used.
        session.secret_settings(secret).await?;
    }
    let location = strata_storage::Location::open(&url, &[])?;
    session
        .warehouse()
        .refuse_overlap(&location, "a stage")
        .await?;
    let url = if strata_storage::store::is_s3(&url) {
        url
    } else {
        // A local directory is kept absolute: the stage means the same from any directory.
        location.url_of(&location.prefix)
    };
    let file_format = file_formats::expand(session, key_values(file_format))?;
    FormatSpec::parse(&file_format)?;
    let entry = StageEntry {
        url,
        secret,
        file_format,
        comment: comment.clone(),
        created_by: session.user_name(),
        created_at: Utc::now(),
    };
    let target = (db, schema, name);
    let kind = "stage";
    file_formats::enter(
        session,
        target,
        kind,
        |s| &mut s.stages,
        entry,
        *or_replace,
        *if_not_exists,
    )
    .await
}

/// `DROP STAGE [IF EXISTS] a, b`: the stages go; their files stay.
pub(crate) async fn drop(
    session: &Session,
    names: &[ObjectName],
    if_exists: bool,
) -> Result<StatementResult> {
    session.require_admin("DROP STAGE")?;
    let targets: Vec<(String, String, String)> = names
        .iter()
        .map(|n| session.qualify_table(n))
        .collect::<Result<_>>()?;
    let mut dropped = Vec::new();
    session
        .warehouse()
        .update_catalog(|c| {
            dropped.clear();
            for (db, schema, name) in &targets {
                let qualified = format!("{db}.{schema}.{name}");
                if c.schema_mut(db, schema)?.stages.remove(name).is_some() {
                    dropped.push(qualified);
                } else if !if_exists {
                    return Err(StorageError::ObjectNotFound {
                        kind: "stage",
                        name: qualified.clone(),
                    });
                }
            }
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(if dropped.is_empty() {
        "nothing to drop".to_string()
    } else {
        format!("dropped stage {}", dropped.join(", "))
    }))
}

/// `LIST @stage[/path] [PATTERN = 'regex']`: a row per file under the stage, with its size and
/// modification time.
pub(crate) async fn list(
    session: &Session,
    stage: &ObjectName,
    pattern: Option<&str>,
) -> Result<StatementResult> {
    let files = resolve(session, &reference_text(stage)).await?;
    let pattern = pattern
        .map(|p| regex::Regex::new(p).map_err(|e| Error::Plan(format!("bad PATTERN: {e}"))))
        .transpose()?;
    let location = strata_storage::Location::open(&files.url, &files.settings)?;
    let objects: Vec<_> = location
        .list()
        .await?
        .into_iter()
        .map(|o| (location.url_of(&o.location), o))
        .filter(|(name, _)| pattern.as_ref().is_none_or(|p| p.is_match(name)))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("size", DataType::Int64, false),
        Field::new(
            "last_modified",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            objects.iter().map(|(n, _)| n.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            objects.iter().map(|(_, o)| o.size as i64),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                objects
                    .iter()
                    .map(|(_, o)| o.last_modified.timestamp_micros()),
            )
            .with_timezone("UTC"),
        ),
    ];
    Ok(StatementResult {
        batches: vec![RecordBatch::try_new(Arc::clone(&schema), columns)?],
        schema,
    })
}
