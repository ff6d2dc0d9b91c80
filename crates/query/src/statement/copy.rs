//! `COPY INTO table FROM '<path | glob | url>' [CREDENTIALS = (AWS_KEY_ID = '..' ...)]
//! [FILES = (...)] [PATTERN = '...'] [FILE_FORMAT = (TYPE = CSV | JSON | PARQUET, ...)]
//! [ON_ERROR = ABORT_STATEMENT | CONTINUE | SKIP_FILE | SKIP_FILE_<n> | 'SKIP_FILE_<n>%']
//! [MAX_ERROR_RATIO = 0.05] [FORCE = TRUE]`, Snowflake style. Sources are local paths, globs,
//! `file://` and `s3://` URLs.
//!
//! All files of one statement are loaded in one commit. With `ABORT_STATEMENT` (the default)
//! the first bad record fails the statement and nothing is committed (the failure is recorded
//! in `system.load_history`). With `CONTINUE` bad records are left out and the rest commits;
//! with `SKIP_FILE` a file with bad records (at least n, or n%) is left out whole. Every record
//! left out is kept, with file, line, column, value and reason, in `system.load_errors`, and
//! `MAX_ERROR_RATIO` aborts the whole load when a larger share of the records is bad. Files
//! already loaded into the table (same path, size and modification time) are skipped unless
//! `FORCE = TRUE`, so re-running a load is safe.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::Utc;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use strata_storage::load::{
    self, ColumnMatch, Compression, FileFormat, OnRowError, RowError, SourceData, SourceFile,
};
use strata_storage::{
    ColumnDef, LoadErrors, LoadFailure, LoadedFile, Record, RejectedRow, TableWriter, Transaction,
    Uploads, run_cpu,
};

use super::file_formats;
use super::{load_transform, stages};
use crate::error::{Error, Result};
use crate::formats::{FormatSpec, boolean, key_values};
use crate::result::StatementResult;
use crate::session::Session;
use crate::table::constraints;
use crate::warehouse::Warehouse;

/// S3 settings from Snowflake's `CREDENTIALS = (AWS_KEY_ID = '..' AWS_SECRET_KEY = '..'
/// [AWS_TOKEN = '..'])` and `ENDPOINT = '..'`, or from a named secret: `CREDENTIALS = (SECRET =
/// name)` (see `CREATE SECRET`), which brings its own endpoint and region.
pub(crate) async fn s3_settings(
    session: &Session,
    credentials: &[(String, Vec<String>)],
    endpoint: Option<&str>,
) -> Result<Vec<(String, String)>> {
    if let Some((_, name)) = credentials.iter().find(|(key, _)| key == "SECRET") {
        if credentials.len() > 1 || endpoint.is_some() {
            return Err(Error::Plan(
                "CREDENTIALS = (SECRET = name) takes its keys, endpoint and region from the \
                 secret; name nothing else with it"
                    .to_string(),
            ));
        }
        return session.secret_settings(&name.concat()).await;
    }
    let mut settings = Vec::new();
    for (key, values) in credentials {
        let name = match key.as_str() {
            "AWS_KEY_ID" => "aws_access_key_id",
            "AWS_SECRET_KEY" => "aws_secret_access_key",
            "AWS_TOKEN" => "aws_session_token",
            other => {
                return Err(Error::Unsupported(format!(
                    "CREDENTIALS option {other} (use SECRET, or AWS_KEY_ID, AWS_SECRET_KEY, \
                     AWS_TOKEN)"
                )));
            }
        };
        settings.push((name.to_string(), values.concat()));
    }
    if let Some(endpoint) = endpoint {
        settings.push(("aws_endpoint".to_string(), endpoint.to_string()));
    }
    Ok(settings)
}

/// Refuses to load the warehouse's own secrets (`COPY INTO t FROM '<root>/_secrets'`).
async fn refuse_secrets_folder(warehouse: &Warehouse, sources: &[SourceFile]) -> Result<()> {
    let Some(root) = warehouse.local_root() else {
        return Ok(());
    };
    let secrets = root.join(strata_storage::secrets::SECRETS_DIR);
    let shown: Vec<String> = sources.iter().map(SourceFile::display).collect();
    // Resolving links blocks: off the async workers.
    let refused = tokio::task::spawn_blocking(move || {
        let secrets = std::fs::canonicalize(&secrets).unwrap_or(secrets);
        shown.into_iter().find(|shown| {
            let path = std::path::PathBuf::from(shown.strip_prefix("file://").unwrap_or(shown));
            std::fs::canonicalize(&path)
                .unwrap_or(path)
                .starts_with(&secrets)
        })
    })
    .await
    .map_err(|e| Error::Plan(format!("checking load sources: {e}")))?;
    match refused {
        Some(shown) => Err(Error::PermissionDenied(format!(
            "COPY INTO may not read the warehouse's secrets ({shown})"
        ))),
        None => Ok(()),
    }
}

/// What a load does with bad records (Snowflake's `ON_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum OnError {
    AbortStatement,
    Continue,
    /// Leave out a file with at least this many bad records, or more than this percentage.
    SkipFile(SkipLimit),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SkipLimit {
    Records(u64),
    Percent(f64),
}

impl OnError {
    fn parse(text: &str) -> Result<Self> {
        let upper = text.trim().to_ascii_uppercase();
        let bad = || {
            Error::Plan(format!(
                "ON_ERROR = {text}: use ABORT_STATEMENT, CONTINUE, SKIP_FILE, SKIP_FILE_<n> or \
                 'SKIP_FILE_<n>%'"
            ))
        };
        Ok(match upper.as_str() {
            "ABORT_STATEMENT" => OnError::AbortStatement,
            "CONTINUE" => OnError::Continue,
            "SKIP_FILE" => OnError::SkipFile(SkipLimit::Records(1)),
            other => {
                let limit = other.strip_prefix("SKIP_FILE_").ok_or_else(bad)?;
                OnError::SkipFile(match limit.strip_suffix('%') {
                    Some(p) => SkipLimit::Percent(p.parse().map_err(|_| bad())?),
                    None => SkipLimit::Records(limit.parse().map_err(|_| bad())?),
                })
            }
        })
    }

    /// Whether a file with `errors` bad records out of `records` is left out.
    fn skips(&self, errors: u64, records: u64) -> bool {
        match self {
            OnError::SkipFile(SkipLimit::Records(n)) => errors > 0 && errors >= *n,
            OnError::SkipFile(SkipLimit::Percent(p)) => {
                errors > 0 && 100.0 * errors as f64 / records.max(1) as f64 > *p
            }
            _ => false,
        }
    }
}

/// `0.05` or `'5%'`.
fn ratio(text: &str) -> Result<f64> {
    let bad = || {
        Error::Plan(format!(
            "MAX_ERROR_RATIO = {text}: use a fraction between 0 and 1, e.g. 0.05, or '5%'"
        ))
    };
    let value = match text.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => text.trim().parse::<f64>().map_err(|_| bad())?,
    };
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(bad())
    }
}

/// Runs a `COPY INTO` statement.
pub(crate) async fn copy_into(
    session: &Session,
    statement: &SqlStatement,
) -> Result<StatementResult> {
    let SqlStatement::CopyIntoSnowflake {
        into,
        into_columns,
        from_obj,
        files,
        pattern,
        file_format,
        copy_options,
        from_transformations,
        stage_params,
        ..
    } = statement
    else {
        return Err(Error::Plan("expected COPY INTO".to_string()));
    };
    let location = from_obj
        .as_ref()
        .map(stages::reference_text)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Error::Plan("COPY INTO needs FROM '<path>' or FROM @stage".to_string()))?;
    let credentials = key_values(&stage_params.credentials);
    let mut format_options = file_formats::expand(session, key_values(file_format))?;
    // A stage brings its location, secret and file format; the statement's format options
    // override the stage's.
    let (location, s3_settings, from_stage) = if location.starts_with('@') {
        if !credentials.is_empty() || stage_params.endpoint.is_some() {
            return Err(Error::Plan(format!(
                "COPY INTO ... FROM {location}: the stage brings its credentials; name none here"
            )));
        }
        let stage = stages::resolve(session, &location).await?;
        format_options = file_formats::overlay(&stage.file_format, format_options);
        (stage.url, stage.settings, true)
    } else {
        let settings = s3_settings(session, &credentials, stage_params.endpoint.as_deref()).await?;
        (location, settings, false)
    };
    let spec = FormatSpec::parse(&format_options)?;
    if into_columns.is_some() && from_transformations.is_none() {
        return Err(Error::Unsupported(
            "COPY INTO t (columns) FROM files: name the columns with a transforming load, \
             COPY INTO t (a, b) FROM (SELECT $1, $2 FROM @stage)"
                .to_string(),
        ));
    }
    let mut force = false;
    let mut on_error = None;
    let mut max_error_ratio = None;
    let mut matching = ColumnMatch::Auto;
    let mut evolve = false;
    for (key, values) in key_values(copy_options) {
        let v = values.first().cloned().unwrap_or_default();
        match key.as_str() {
            "FORCE" => force = boolean(&key, &v)?,
            "MATCH_BY_COLUMN_NAME" => {
                matching = match v.to_ascii_uppercase().as_str() {
                    "CASE_SENSITIVE" => ColumnMatch::CaseSensitive,
                    "CASE_INSENSITIVE" => ColumnMatch::CaseInsensitive,
                    "NONE" => ColumnMatch::Auto,
                    _ => {
                        return Err(Error::Plan(format!(
                            "MATCH_BY_COLUMN_NAME must be CASE_SENSITIVE, CASE_INSENSITIVE or \
                             NONE, got {v}"
                        )));
                    }
                }
            }
            "ENABLE_SCHEMA_EVOLUTION" => evolve = boolean(&key, &v)?,
            "ON_ERROR" => on_error = Some(OnError::parse(&v)?),
            "MAX_ERROR_RATIO" => max_error_ratio = Some(ratio(&v)?),
            "ENDPOINT" => {
                return Err(Error::Plan(
                    "COPY INTO: write ENDPOINT = '...' before CREDENTIALS".to_string(),
                ));
            }
            other => return Err(Error::Unsupported(format!("copy option {other}"))),
        }
    }
    // A tolerated share of bad records means leaving them out, unless told otherwise.
    let on_error = match (on_error, max_error_ratio) {
        (Some(OnError::AbortStatement), Some(_)) => {
            return Err(Error::Plan(
                "MAX_ERROR_RATIO needs ON_ERROR = CONTINUE or SKIP_FILE: ABORT_STATEMENT \
                 tolerates no bad record"
                    .to_string(),
            ));
        }
        (Some(mode), _) => mode,
        (None, Some(_)) => OnError::Continue,
        (None, None) => OnError::AbortStatement,
    };

    // Files.
    let mut sources: Vec<SourceFile> = match files {
        Some(names) => {
            let base = location.trim_end_matches('/');
            let mut out = Vec::new();
            for n in names {
                // A file named under a stage stays under it.
                if from_stage
                    && (n.starts_with('/')
                        || n.contains("://")
                        || n.split(['/', '\\']).any(|segment| segment == ".."))
                {
                    return Err(Error::PermissionDenied(format!(
                        "FILES = ('{n}'): a file of a stage is named by its path under the stage"
                    )));
                }
                out.extend(load::list_sources(&format!("{base}/{n}"), &s3_settings).await?);
            }
            out
        }
        // A stage's files are everything under it, as in Snowflake.
        None if from_stage => load::list_tree(&location, &s3_settings).await?,
        None => load::list_sources(&location, &s3_settings).await?,
    };
    if let Some(p) = pattern {
        let re = regex::Regex::new(p).map_err(|e| Error::Plan(format!("bad PATTERN: {e}")))?;
        sources.retain(|s| re.is_match(&s.display()));
    }
    refuse_secrets_folder(session.warehouse(), &sources).await?;

    let (log, snapshot, table) = session.open_table_for_write(into).await?;
    let transform = match from_transformations {
        Some(_) if matching != ColumnMatch::Auto || evolve => {
            return Err(Error::Plan(
                "a transforming load names its columns itself: MATCH_BY_COLUMN_NAME and \
                 ENABLE_SCHEMA_EVOLUTION do not apply"
                    .to_string(),
            ));
        }
        Some(items) => Some(load_transform::Transform::new(
            items,
            into_columns.as_deref(),
            &snapshot.metadata.columns,
        )?),
        None => None,
    };
    let csv_source = sources
        .iter()
        .any(|s| matches!(spec.format_of(&s.display()), FileFormat::Csv(_)));
    if matching != ColumnMatch::Auto && csv_source {
        return Err(Error::Unsupported(
            "MATCH_BY_COLUMN_NAME applies to Parquet and JSON files; CSV columns are matched by \
             position"
                .to_string(),
        ));
    }
    let evolved = if evolve {
        if matching == ColumnMatch::Auto {
            return Err(Error::Plan(
                "ENABLE_SCHEMA_EVOLUTION = TRUE needs MATCH_BY_COLUMN_NAME = CASE_SENSITIVE or \
                 CASE_INSENSITIVE: new columns are found by name"
                    .to_string(),
            ));
        }
        let added = new_columns(&sources, &spec, &snapshot.metadata, matching).await?;
        if added.is_empty() {
            None
        } else {
            let mut metadata = snapshot.metadata.clone();
            metadata.columns.extend(added);
            metadata.assign_field_ids(Some(&snapshot.metadata));
            Some(metadata)
        }
    } else {
        None
    };
    let (db, schema_name, table_name) = session.qualify_table(into)?;
    let warehouse = session.warehouse().clone();
    let write_options = session.write_options();
    let mut report: Vec<FileReport> = Vec::new();
    let mut todo = Vec::new();
    // A file named twice (overlapping FILES or globs) is loaded once.
    let mut seen = std::collections::HashSet::new();
    sources.retain(|s| seen.insert(s.name.clone()));
    for s in sources {
        let loaded = LoadedFile {
            file: s.display(),
            size_bytes: s.size_bytes,
            modified: s.modified,
            rows: 0,
            rows_rejected: 0,
            loaded_at: Utc::now(),
        };
        if !force && snapshot.loaded.contains_key(&loaded.key()) {
            report.push(FileReport::new(s.display(), "SKIPPED (already loaded)"));
        } else {
            todo.push(s);
        }
    }

    let store = warehouse.object_store();
    // A load removes nothing, so it has no fences to commit.
    // Rows are written in the table's new columns, if the files bring some; the commit is
    // made on the snapshot read, with the new metadata in it.
    let mut writing = snapshot.clone();
    if let Some(metadata) = &evolved {
        writing.metadata = metadata.clone();
    }
    let prepared = constraints::prepare(&warehouse, &table, &log, &writing, &[], &[]).await?;
    let exclusive = prepared.exclusive;
    let mut table_writer =
        TableWriter::new(&table, &writing, write_options).with_check(prepared.check);
    let uploads = Uploads::begin(&store, log.id()).await?;
    let loaded = async {
        let mut txn = Transaction::new("COPY INTO");
        txn.reject_loaded_twice = !force;
        // The table's new columns commit with the rows that brought them.
        txn.replace_metadata = evolved.clone();
        if exclusive {
            txn.reads = strata_storage::Reads::Table;
        }
        let mut rejected: Vec<RejectedRow> = Vec::new();
        let failure = |source: &SourceFile, status: &str, error: String| LoadFailure {
            id: uuid::Uuid::new_v4().to_string(),
            database: db.clone(),
            schema: schema_name.clone(),
            table: table_name.clone(),
            file: source.display(),
            size_bytes: source.size_bytes,
            status: status.to_string(),
            error,
            at: Utc::now(),
        };
        let progress = session.progress();
        progress.load_planned(todo.len() as u64, todo.iter().map(|s| s.size_bytes).sum());
        let mut processed = Vec::new();
        for source in todo {
            let fmt = spec.format_of(&source.display());
            let codec = spec.compression_of(&source.display());
            let file_transform = match &transform {
                Some(t) => match t.for_file(session, &source, &fmt, codec).await {
                    Ok(t) => Some(t),
                    Err(e) => {
                        let failed = failure(&source, "LOAD_FAILED", e.to_string());
                        record(&warehouse, &failed).await;
                        return Err(e);
                    }
                },
                None => None,
            };
            let outcome = match source.open().await {
                Ok(data) => {
                    let data = match codec {
                        Compression::None => data,
                        codec => data.decompress(codec),
                    };
                    let src = source.clone();
                    let (w, outcome) = run_cpu(move || {
                        let mut w = table_writer;
                        let outcome = load_file(
                            &mut w,
                            &src,
                            data,
                            &fmt,
                            matching,
                            on_error,
                            file_transform.as_ref(),
                        );
                        (w, outcome)
                    })
                    .await?;
                    table_writer = w;
                    outcome
                }
                Err(e) if on_error == OnError::AbortStatement => Err(e.into()),
                Err(e) => Ok(FileLoad::unreadable(e.to_string())),
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    let failed = failure(&source, "LOAD_FAILED", e.to_string());
                    record(&warehouse, &failed).await;
                    return Err(e);
                }
            };
            let finished = table_writer.take_finished();
            if !finished.is_empty() {
                txn.add.extend(uploads.upload(finished).await?);
            }
            let file_report = outcome.report(source.display());
            if let Some(first) = outcome.errors.first() {
                if outcome.loaded == 0 {
                    let error = format!("{}: {first}", source.display());
                    let failed = failure(&source, &file_report.status, error);
                    record(&warehouse, &failed).await;
                }
                rejected.extend(outcome.errors.iter().map(|e| RejectedRow {
                    file: source.display(),
                    line: e.line,
                    column: e.column.clone(),
                    value: e.value.clone(),
                    error: e.reason.clone(),
                }));
            }
            if outcome.loaded > 0 || outcome.errors.is_empty() {
                txn.loads.push(LoadedFile {
                    file: source.display(),
                    size_bytes: source.size_bytes,
                    modified: source.modified,
                    rows: outcome.loaded,
                    rows_rejected: outcome.errors.len() as u64,
                    loaded_at: Utc::now(),
                });
            }
            report.push(file_report);
            progress.file_loaded(source.size_bytes, outcome.loaded);
            processed.push(source);
        }
        let parsed: u64 = report.iter().map(|r| r.parsed).sum();
        let bad: u64 = report.iter().map(|r| r.rejected).sum();
        let mut errors = LoadErrors {
            load_id: uuid::Uuid::new_v4().to_string(),
            database: db.clone(),
            schema: schema_name.clone(),
            table: table_name.clone(),
            load_status: "COMMITTED".to_string(),
            at: Utc::now(),
            rows: rejected,
        };
        if let Some(max_ratio) = max_error_ratio
            && bad as f64 > max_ratio * parsed as f64
        {
            let first = report
                .iter()
                .find_map(|r| r.first_error.as_ref().map(|e| format!("{}: {e}", r.file)))
                .unwrap_or_default();
            errors.load_status = "ABORTED".to_string();
            record(&warehouse, &errors).await;
            let error = Error::TooManyRejects {
                table,
                rejected: bad,
                parsed,
                max_ratio,
                first,
            };
            // Files not already recorded as failed or skipped.
            for (source, file) in processed
                .iter()
                .zip(report.iter().rev().take(processed.len()).rev())
            {
                if file.loaded > 0 || file.first_error.is_none() {
                    let failed = failure(source, "LOAD_FAILED", error.to_string());
                    record(&warehouse, &failed).await;
                }
            }
            return Err(error);
        }
        if !txn.loads.is_empty() {
            let (files, created) = run_cpu(move || table_writer.finish()).await??;
            txn.add.extend(uploads.upload(files).await?);
            txn.add_partitions = created;
            warehouse.commit(&table, &log, &snapshot, &txn).await?;
        } else {
            errors.load_status = "NOTHING_LOADED".to_string();
        }
        if !errors.rows.is_empty() {
            record(&warehouse, &errors).await;
        }
        tracing::info!(table = %table, rows = parsed - bad, rejected = bad, "COPY INTO committed");
        crate::telemetry::loaded(parsed.saturating_sub(bad), bad);
        if report.len() > 1 {
            let total = FileReport::total(&report);
            report.push(total);
        }
        report_result(&report)
    }
    .await;
    uploads.finish().await;
    loaded
}

/// What loading one file did.
#[derive(Debug, Default)]
struct FileLoad {
    /// Records read, good or bad.
    records: u64,
    /// Rows written (0 for a skipped file).
    loaded: u64,
    /// Bad records, by line; a problem of the whole file has no line.
    errors: Vec<RowError>,
    /// The file was left out (`SKIP_FILE`).
    skipped: bool,
}

impl FileLoad {
    fn unreadable(reason: String) -> Self {
        Self {
            errors: vec![RowError {
                line: None,
                column: None,
                value: None,
                reason,
            }],
            ..Default::default()
        }
    }

    fn report(&self, file: String) -> FileReport {
        let status = if self.skipped {
            "LOAD_SKIPPED"
        } else if self.errors.is_empty() {
            "LOADED"
        } else if self.loaded > 0 {
            "PARTIALLY_LOADED"
        } else {
            "LOAD_FAILED"
        };
        FileReport {
            file,
            status: status.to_string(),
            parsed: self.records,
            loaded: self.loaded,
            rejected: self.errors.len() as u64,
            first_error: self.errors.first().cloned(),
        }
    }
}

/// Loads one file into `writer`. Bad records are left out and reported unless `on_error` is
/// `AbortStatement`; an error ends the statement.
/// The columns of the files `sources` that the table does not have (`ENABLE_SCHEMA_EVOLUTION`),
/// as nullable columns in storage types, in the order the files first show them.
async fn new_columns(
    sources: &[SourceFile],
    spec: &FormatSpec,
    metadata: &strata_storage::TableMetadata,
    matching: ColumnMatch,
) -> Result<Vec<ColumnDef>> {
    let mut added: Vec<ColumnDef> = Vec::new();
    for source in sources {
        let fmt = spec.format_of(&source.display());
        let data = match spec.compression_of(&source.display()) {
            Compression::None => source.open().await?,
            codec => source.open().await?.decompress(codec),
        };
        let src = source.clone();
        let fields = run_cpu(move || load::file_columns(&src, data, &fmt)).await??;
        for field in fields {
            let known = metadata
                .columns
                .iter()
                .chain(&added)
                .find(|c| matching.matches(field.name(), &c.name));
            let data_type = crate::types::storage_type(field.data_type());
            match known {
                Some(c) if c.data_type == data_type || !added.iter().any(|a| a.name == c.name) => {}
                Some(c) => {
                    return Err(Error::Plan(format!(
                        "{}: new column '{}' is {} here and {} in another file",
                        source.display(),
                        field.name(),
                        strata_storage::sql_type_name(&data_type),
                        strata_storage::sql_type_name(&c.data_type)
                    )));
                }
                None => {
                    crate::types::check_storable(&data_type, field.name())
                        .map_err(|e| Error::Plan(format!("{}: {e}", source.display())))?;
                    // Unquoted names fold to lower case: a column found regardless of case
                    // gets the name a query would use for it.
                    let name = match matching {
                        ColumnMatch::CaseInsensitive => field.name().to_lowercase(),
                        _ => field.name().clone(),
                    };
                    added.push(ColumnDef::new(name, data_type, true));
                }
            }
        }
    }
    Ok(added)
}

fn load_file(
    writer: &mut TableWriter,
    source: &SourceFile,
    data: SourceData,
    format: &FileFormat,
    matching: ColumnMatch,
    on_error: OnError,
    transform: Option<&load_transform::FileTransform>,
) -> Result<FileLoad> {
    let schema = writer.schema();
    // A transforming load reads the file in its own columns, then computes the table's.
    let read_schema =
        transform.map_or_else(|| Arc::clone(&schema), |t| Arc::clone(&t.source_schema));
    let read_format = match (transform, format) {
        (Some(t), FileFormat::Csv(_)) => FileFormat::Csv(t.csv.clone()),
        _ => format.clone(),
    };
    let table = writer.table().to_string();
    let skipping = matches!(on_error, OnError::SkipFile(_));
    let read_mode = match on_error {
        OnError::AbortStatement => OnRowError::Fail,
        _ => OnRowError::Collect,
    };
    writer.start_source(match format {
        FileFormat::Csv(o) => o.skip_header,
        _ => 0,
    });
    // Only a file that may be left out needs its keys journaled (see `BatchCheck::savepoint`).
    if skipping {
        writer.savepoint();
    }
    let mut outcome = FileLoad::default();
    let mut held = Vec::new();
    // An error of the writer (not of the file) ends the statement whatever `on_error` says.
    let mut fatal = false;
    let mut seen = 0u64;
    let mut transform_error = None;
    let read = load::read_file(
        source,
        data,
        &read_format,
        matching,
        &read_schema,
        read_mode,
        |batch| {
            seen += (batch.rows.num_rows() + batch.errors.len()) as u64;
            let batch = match transform {
                Some(t) => {
                    let batch = t.apply(batch, &schema)?;
                    if read_mode == OnRowError::Fail
                        && let Some(first) = batch.errors.first()
                    {
                        fatal = true;
                        transform_error = Some(first.to_string());
                        return Err(strata_storage::Error::Load {
                            file: source.display(),
                            reason: first.to_string(),
                        });
                    }
                    batch
                }
                None => batch,
            };
            outcome.errors.extend(batch.errors);
            let rows = batch.rows;
            let rejected = writer.screen(&rows).inspect_err(|_| fatal = true)?;
            let rows = if rejected.is_empty() {
                rows
            } else {
                if on_error == OnError::AbortStatement {
                    let (row, error) = &rejected[0];
                    fatal = true;
                    return Err(strata_storage::Error::ConstraintViolation {
                        table: table.clone(),
                        reason: format!("line {} {}", batch.lines[*row], error.reason),
                    });
                }
                let mut keep = vec![true; rows.num_rows()];
                for (row, mut error) in rejected {
                    keep[row] = false;
                    error.line = Some(batch.lines[row]);
                    outcome.errors.push(error);
                }
                outcome.errors.sort_by_key(|e| e.line);
                arrow::compute::filter_record_batch(&rows, &BooleanArray::from(keep))?
            };
            outcome.loaded += rows.num_rows() as u64;
            if skipping {
                held.push(rows);
                Ok(())
            } else {
                writer.write_screened(rows).inspect_err(|_| fatal = true)
            }
        },
    );
    if let Some(reason) = transform_error {
        // The reader would name the file a second time.
        return Err(strata_storage::Error::Load {
            file: source.display(),
            reason,
        }
        .into());
    }
    match read {
        Ok(records) => outcome.records = records,
        Err(e) if fatal || on_error == OnError::AbortStatement => return Err(e.into()),
        // A problem of the whole file, maybe after some of its rows were read.
        Err(e) => {
            outcome.records = seen;
            outcome.errors.push(RowError {
                line: None,
                column: None,
                value: None,
                reason: e.to_string(),
            })
        }
    }
    if skipping {
        let errors = outcome.errors.len() as u64;
        if on_error.skips(errors, outcome.records)
            || outcome.errors.iter().any(|e| e.line.is_none())
        {
            writer.rollback();
            outcome.loaded = 0;
            outcome.skipped = true;
        } else {
            for rows in held {
                writer.write_screened(rows)?;
            }
        }
    }
    Ok(outcome)
}

/// One row of the statement's result.
#[derive(Debug)]
struct FileReport {
    file: String,
    status: String,
    parsed: u64,
    loaded: u64,
    rejected: u64,
    first_error: Option<RowError>,
}

impl FileReport {
    fn new(file: String, status: &str) -> Self {
        Self {
            file,
            status: status.to_string(),
            parsed: 0,
            loaded: 0,
            rejected: 0,
            first_error: None,
        }
    }

    /// The `TOTAL` row of a load of several files.
    fn total(files: &[FileReport]) -> Self {
        let mut total = FileReport::new("TOTAL".to_string(), "");
        for f in files {
            total.parsed += f.parsed;
            total.loaded += f.loaded;
            total.rejected += f.rejected;
        }
        total.first_error = files.iter().find_map(|f| {
            f.first_error.clone().map(|e| RowError {
                reason: format!("{}: {}", f.file, e.reason),
                ..e
            })
        });
        total.status = if total.rejected == 0 && total.loaded == 0 {
            "SKIPPED"
        } else if total.rejected == 0 {
            "LOADED"
        } else if total.loaded > 0 {
            "PARTIALLY_LOADED"
        } else {
            "LOAD_FAILED"
        }
        .to_string();
        total
    }
}

/// The result of `COPY INTO`: a row per file (and a `TOTAL` row for several), as Snowflake
/// reports it, with the share of records that passed validation.
fn report_result(report: &[FileReport]) -> Result<StatementResult> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows_parsed", DataType::Int64, false),
        Field::new("rows_loaded", DataType::Int64, false),
        Field::new("rows_rejected", DataType::Int64, false),
        Field::new("validation_rate", DataType::Float64, true),
        Field::new("first_error", DataType::Utf8, true),
        Field::new("first_error_line", DataType::Int64, true),
        Field::new("first_error_column", DataType::Utf8, true),
    ]));
    let count = |f: &dyn Fn(&FileReport) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            report.iter().map(|r| f(r) as i64),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            report.iter().map(|r| &r.file),
        )),
        Arc::new(StringArray::from_iter_values(
            report.iter().map(|r| &r.status),
        )),
        count(&|r| r.parsed),
        count(&|r| r.loaded),
        count(&|r| r.rejected),
        Arc::new(Float64Array::from_iter(report.iter().map(|r| {
            (r.parsed > 0).then(|| (r.parsed.saturating_sub(r.rejected)) as f64 / r.parsed as f64)
        }))),
        Arc::new(StringArray::from_iter(
            report
                .iter()
                .map(|r| r.first_error.as_ref().map(|e| &e.reason)),
        )),
        Arc::new(Int64Array::from_iter(report.iter().map(|r| {
            r.first_error
                .as_ref()
                .and_then(|e| e.line)
                .map(|l| l as i64)
        }))),
        Arc::new(StringArray::from_iter(report.iter().map(|r| {
            r.first_error.as_ref().and_then(|e| e.column.as_deref())
        }))),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(StatementResult {
        schema,
        batches: vec![batch],
    })
}

/// Records a failed load or a load's rejected rows. Failure to record is logged, never fatal:
/// the load's own outcome stands.
async fn record<R: Record>(warehouse: &Warehouse, record: &R) {
    if let Err(e) = warehouse.records().put(record).await {
        tracing::warn!(error = %e, kind = R::KIND, "load record not written");
    }
}
