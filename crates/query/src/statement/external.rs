//! `CREATE EXTERNAL TABLE` and `ALTER EXTERNAL TABLE ... REFRESH`: files of a lake read in
//! place (see [`crate::table::external`] for how they are scanned).
//!
//! Creating one lists its location, works out the format (declared, or by the first file's
//! extension) and the columns (declared, or read from the first Parquet or JSON file), and keeps
//! the listing in the catalog. Queries read that listing; `REFRESH` lists again. Files and
//! folders whose names start with `_` or `.` (`_SUCCESS`, `.tmp`) are not data, as in Hive and
//! Spark. Only admins create external tables: they read files the server can reach.

use chrono::Utc;
use datafusion::sql::sqlparser::ast::AlterTable;
use strata_storage::load::{self, FileFormat};
use strata_storage::{
    ColumnDef, Error as StorageError, ExternalFile, ExternalTableEntry, Location,
};

use super::{file_formats, stages};
use crate::error::{Error, Result};
use crate::formats::FormatSpec;
use crate::parser::{ExternalTable, normalize};
use crate::result::StatementResult;
use crate::session::Session;

/// Options an external table's format may have: those its readers apply.
const OPTIONS: [&str; 9] = [
    "TYPE",
    "FORMAT",
    "FIELD_DELIMITER",
    "DELIMITER",
    "SKIP_HEADER",
    "HEADER",
    "PARSE_HEADER",
    "FIELD_OPTIONALLY_ENCLOSED_BY",
    "COMPRESSION",
];

/// `CREATE [OR REPLACE] EXTERNAL TABLE ...`.
pub(crate) async fn create(session: &Session, def: &ExternalTable) -> Result<StatementResult> {
    session.require_admin("CREATE EXTERNAL TABLE")?;
    let (db, schema, name) = session.qualify_table(&def.name)?;
    let qualified = format!("{db}.{schema}.{name}");
    let existing = session
        .warehouse()
        .catalog()
        .schema(&db, &schema)?
        .kind_of(&name);
    match existing {
        Some(_) if def.if_not_exists => {
            return Ok(StatementResult::status(format!(
                "{qualified} already exists"
            )));
        }
        Some("external table") if def.or_replace => {}
        Some(kind) => {
            return Err(StorageError::NameTaken {
                name: qualified,
                kind,
            }
            .into());
        }
        None => {}
    }
    // Where the files are, and how to read them.
    let (url, secret, stage_format) = if def.location.starts_with('@') {
        if !def.credentials.is_empty() {
            return Err(Error::Plan(format!(
                "LOCATION = {}: the stage brings its credentials; name none here",
                def.location
            )));
        }
        let stage = stages::resolve(session, &def.location).await?;
        (stage.url, stage.secret, stage.file_format)
    } else {
        let secret = match def.credentials.as_slice() {
            [] => None,
            [(key, value)] if key == "SECRET" => Some(value.concat().to_ascii_lowercase()),
            _ => {
                return Err(Error::Plan(
                    "an external table keeps no keys: name a secret, CREDENTIALS = (SECRET = \
                     name)"
                        .to_string(),
                ));
            }
        };
        (def.location.clone(), secret, Vec::new())
    };
    let settings = match &secret {
        Some(secret) => session.secret_settings(secret).await?,
        None => Vec::new(),
    };
    let mut options = file_formats::overlay(
        &stage_format,
        file_formats::expand(session, def.file_format.clone())?,
    );
    if let Some((key, _)) = options.iter().find(|(k, _)| !OPTIONS.contains(&k.as_str())) {
        return Err(Error::Unsupported(format!(
            "FILE_FORMAT option {key} on an external table (it takes {})",
            OPTIONS.join(", ")
        )));
    }
    let spec = FormatSpec::parse(&options)?;
    if spec.csv.skip_header > 1 {
        return Err(Error::Unsupported(
            "SKIP_HEADER above 1 on an external table".to_string(),
        ));
    }
    let location = Location::open(&url, &settings)?;
    session
        .warehouse()
        .refuse_overlap(&location, "an external table")
        .await?;
    let files = list(&location).await?;
    // The format: declared, or the first file's.
    let format = match &spec.format {
        Some(format) => format.clone(),
        None => {
            let first = files.first().ok_or_else(|| {
                Error::Plan(format!(
                    "'{url}' holds no files: declare FILE_FORMAT = (TYPE = PARQUET | CSV | JSON)"
                ))
            })?;
            let format = FileFormat::from_extension(&location.object_path(&first.path));
            options.push(("TYPE".to_string(), vec![type_name(&format).to_string()]));
            format
        }
    };
    if spec.compression.is_none() && !matches!(format, FileFormat::Parquet) {
        let codec = files
            .first()
            .map(|f| spec.compression_of(&location.object_path(&f.path)))
            .unwrap_or(load::Compression::None);
        if codec != load::Compression::None {
            options.push(("COMPRESSION".to_string(), vec![format!("{codec:?}")]));
        }
    }
    // The columns: declared, or the first file's.
    let mut columns: Vec<ColumnDef> = def
        .columns
        .iter()
        .map(|c| {
            let name = normalize(&c.name);
            let (data_type, sql_type) = crate::types::arrow_type(&c.data_type, &name)?;
            let mut column = ColumnDef::new(name, data_type, true);
            column.sql_type = sql_type;
            Ok(column)
        })
        .collect::<Result<_>>()?;
    if columns.is_empty() {
        columns = infer_columns(&location, &files, &format, &settings).await?;
        columns.retain(|c| !def.partition_by.contains(&c.name));
    }
    // Partition columns come from folder names, after the file columns.
    for partition in &def.partition_by {
        let column = match columns.iter().position(|c| c.name == *partition) {
            Some(i) => columns.remove(i),
            None => ColumnDef::new(partition.clone(), arrow::datatypes::DataType::Utf8, true),
        };
        columns.push(column);
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = columns.iter().find(|c| !seen.insert(c.name.clone())) {
        return Err(Error::Plan(format!(
            "external table {qualified}: column '{}' is named twice",
            twice.name
        )));
    }
    // A local directory is kept absolute: the table means the same from any directory.
    let stored_location = if strata_storage::store::is_s3(&url) {
        url.clone()
    } else {
        location.url_of(&location.prefix)
    };
    let entry = ExternalTableEntry {
        location: stored_location,
        secret,
        file_format: options,
        columns,
        partition_columns: def.partition_by.clone(),
        files,
        refreshed_at: Utc::now(),
        created_by: session.user_name(),
        created_at: Utc::now(),
    };
    // The options as stored must give a readable format.
    crate::table::external::ExternalFormat::from_options(&entry.file_format)?;
    let files_listed = entry.files.len();
    let or_replace = def.or_replace;
    session
        .warehouse()
        .update_catalog(|c| {
            let s = c.schema_mut(&db, &schema)?;
            match s.kind_of(&name) {
                Some("external table") if or_replace => {}
                Some(kind) => {
                    return Err(StorageError::NameTaken {
                        name: qualified.clone(),
                        kind,
                    });
                }
                None => {}
            }
            s.external_tables.insert(name.clone(), entry.clone());
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(format!(
        "created external table {qualified} over {files_listed} files"
    )))
}

/// `ALTER EXTERNAL TABLE t REFRESH`: lists the location again; queries read the new listing.
pub(crate) async fn refresh(session: &Session, alter: &AlterTable) -> Result<StatementResult> {
    let (db, schema, name) = session.qualify_table(&alter.name)?;
    let qualified = format!("{db}.{schema}.{name}");
    let entry = session
        .warehouse()
        .catalog()
        .schema(&db, &schema)?
        .external_tables
        .get(&name)
        .cloned();
    let Some(entry) = entry else {
        if alter.if_exists {
            return Ok(StatementResult::status(format!(
                "external table {qualified} does not exist"
            )));
        }
        return Err(StorageError::ObjectNotFound {
            kind: "external table",
            name: qualified,
        }
        .into());
    };
    let settings = match &entry.secret {
        Some(secret) => session.secret_settings(secret).await?,
        None => Vec::new(),
    };
    let location = Location::open(&entry.location, &settings)?;
    let files = list(&location).await?;
    let before: std::collections::HashSet<&str> =
        entry.files.iter().map(|f| f.path.as_str()).collect();
    let added = files
        .iter()
        .filter(|f| !before.contains(f.path.as_str()))
        .count();
    let removed = entry.files.len() + added - files.len();
    let total = files.len();
    session
        .warehouse()
        .update_catalog(|c| {
            let e = c
                .schema_mut(&db, &schema)?
                .external_tables
                .get_mut(&name)
                .ok_or_else(|| StorageError::ObjectNotFound {
                    kind: "external table",
                    name: qualified.clone(),
                })?;
            // Replaced meanwhile (CREATE OR REPLACE): this listing is not of that table.
            if e.location != entry.location || e.created_at != entry.created_at {
                return Err(StorageError::InvalidArgument(format!(
                    "external table {qualified} was replaced while it was refreshed; refresh it \
                     again"
                )));
            }
            e.files = files.clone();
            e.refreshed_at = Utc::now();
            Ok(())
        })
        .await?;
    Ok(StatementResult::status(format!(
        "refreshed external table {qualified}: {total} files ({added} added, {removed} removed)"
    )))
}

/// The data files under `location`, paths relative to it; names starting with `_` or `.` at
/// any level are not data.
async fn list(location: &Location) -> Result<Vec<ExternalFile>> {
    let prefix = location.prefix.as_ref();
    Ok(location
        .list()
        .await?
        .into_iter()
        .filter_map(|o| {
            let path = o.location.as_ref();
            let relative = if prefix.is_empty() {
                path
            } else if path == prefix {
                // The location is this one file.
                ""
            } else {
                path.strip_prefix(prefix)?.strip_prefix('/')?
            };
            let hidden = relative
                .split('/')
                .any(|s| s.starts_with('_') || s.starts_with('.'));
            (!hidden).then(|| ExternalFile {
                path: relative.to_string(),
                size_bytes: o.size,
                modified: o.last_modified,
            })
        })
        .collect())
}

/// The columns of the first file (Parquet's schema, or JSON's inferred one).
async fn infer_columns(
    location: &Location,
    files: &[ExternalFile],
    format: &FileFormat,
    settings: &[(String, String)],
) -> Result<Vec<ColumnDef>> {
    if matches!(format, FileFormat::Csv(_)) {
        return Err(Error::Plan(
            "declare the columns of a CSV external table: CREATE EXTERNAL TABLE t (a INT, ...)"
                .to_string(),
        ));
    }
    let first = files.first().ok_or_else(|| {
        Error::Plan(format!(
            "'{}' holds no files to read the columns from: declare them",
            location.shown
        ))
    })?;
    let url = location.url_of(&object_store::path::Path::from(
        location.object_path(&first.path),
    ));
    let source = load::list_sources(&url, settings)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Plan(format!("cannot read {url}")))?;
    let data = match load::Compression::from_extension(&url) {
        load::Compression::None => source.open().await?,
        codec => source.open().await?.decompress(codec),
    };
    let fmt = format.clone();
    let fields = strata_storage::run_cpu(move || load::file_columns(&source, data, &fmt)).await??;
    fields
        .iter()
        .map(|f| {
            let data_type = crate::types::storage_type(f.data_type());
            crate::types::check_storable(&data_type, f.name())?;
            Ok(ColumnDef::new(f.name().clone(), data_type, true))
        })
        .collect()
}

fn type_name(format: &FileFormat) -> &'static str {
    match format {
        FileFormat::Csv(_) => "CSV",
        FileFormat::Json => "JSON",
        FileFormat::Parquet => "PARQUET",
    }
}
