//! `COPY INTO table FROM '<path | glob | url>' [CREDENTIALS = (AWS_KEY_ID = '..' ...)]
//! [FILES = (...)] [PATTERN = '...'] [FILE_FORMAT = (TYPE = CSV | JSON | PARQUET, ...)]
//! [FORCE = TRUE]`, Snowflake style. Sources are local paths, globs, `file://` and `s3://` URLs.
//!
//! All files of one statement are loaded in one commit: any bad file fails the statement and
//! nothing is committed (the failure is recorded in `system.load_history`). Files already
//! loaded into the table (same path, size and modification time) are skipped unless
//! `FORCE = TRUE`, so re-running a load is safe.

use chrono::Utc;
use datafusion::sql::sqlparser::ast::helpers::key_value_options::{
    KeyValueOptionKind, KeyValueOptions,
};
use datafusion::sql::sqlparser::ast::{Statement as SqlStatement, Value};
use strata_storage::load::{self, CsvOptions, FileFormat, SourceFile};
use strata_storage::{LoadedFile, TableWriter, Transaction, run_cpu, writer};

use crate::error::{Error, Result};
use crate::session::{Session, StatementResult, strings_result};
use crate::system::{LoadFailure, record_load_failure};

fn option_text(kind: &KeyValueOptionKind) -> Option<Vec<String>> {
    let text = |v: &Value| match v {
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
        Value::Number(n, _) => n.clone(),
        Value::Boolean(b) => b.to_string(),
        Value::Placeholder(p) => p.clone(),
        other => other.to_string(),
    };
    match kind {
        KeyValueOptionKind::Single(v) => Some(vec![text(&v.value)]),
        KeyValueOptionKind::Multi(vs) => Some(vs.iter().map(|v| text(&v.value)).collect()),
        KeyValueOptionKind::KeyValueOptions(_) => None,
    }
}

fn options(kv: &KeyValueOptions) -> Vec<(String, Vec<String>)> {
    kv.options
        .iter()
        .filter_map(|o| {
            option_text(&o.option_value).map(|v| (o.option_name.to_ascii_uppercase(), v))
        })
        .collect()
}

fn single_byte(name: &str, value: &str) -> Result<u8> {
    let unescaped = match value {
        "\\t" => "\t",
        other => other,
    };
    match unescaped.as_bytes() {
        [b] => Ok(*b),
        _ => Err(Error::Plan(format!(
            "{name} must be a single character, got '{value}'"
        ))),
    }
}

/// S3 settings from Snowflake's `CREDENTIALS = (AWS_KEY_ID = '..' AWS_SECRET_KEY = '..'
/// [AWS_TOKEN = '..'])` and `ENDPOINT = '..'`.
fn s3_settings(
    credentials: &KeyValueOptions,
    endpoint: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let mut settings = Vec::new();
    for (key, values) in options(credentials) {
        let name = match key.as_str() {
            "AWS_KEY_ID" => "aws_access_key_id",
            "AWS_SECRET_KEY" => "aws_secret_access_key",
            "AWS_TOKEN" => "aws_session_token",
            other => {
                return Err(Error::Unsupported(format!(
                    "CREDENTIALS option {other} (use AWS_KEY_ID, AWS_SECRET_KEY, AWS_TOKEN)"
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

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_uppercase().as_str(), "TRUE" | "1" | "YES")
}

/// Runs a `COPY INTO` statement.
pub(crate) async fn copy_into(
    session: &Session,
    statement: &SqlStatement,
) -> Result<StatementResult> {
    let SqlStatement::CopyIntoSnowflake {
        into,
        from_obj,
        files,
        pattern,
        file_format,
        copy_options,
        from_query,
        from_transformations,
        stage_params,
        ..
    } = statement
    else {
        return Err(Error::Plan("expected COPY INTO".to_string()));
    };
    if from_query.is_some() || from_transformations.is_some() {
        return Err(Error::Unsupported(
            "COPY INTO with a transforming query; load the files, then INSERT ... SELECT".into(),
        ));
    }
    let location = from_obj
        .as_ref()
        .and_then(|o| o.0.first())
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .ok_or_else(|| Error::Plan("COPY INTO needs FROM '<path>'".to_string()))?;
    if location.starts_with('@') {
        return Err(Error::Unsupported(format!(
            "stages ({location}); use a path, file:// or s3:// URL"
        )));
    }
    let s3_settings = s3_settings(&stage_params.credentials, stage_params.endpoint.as_deref())?;
    // Options.
    let mut format: Option<FileFormat> = None;
    let mut csv = CsvOptions::default();
    for (key, values) in options(file_format) {
        let v = values.first().cloned().unwrap_or_default();
        match key.as_str() {
            "TYPE" | "FORMAT" => {
                format = Some(match v.to_ascii_uppercase().as_str() {
                    "CSV" => FileFormat::Csv(CsvOptions::default()),
                    "JSON" | "NDJSON" => FileFormat::Json,
                    "PARQUET" => FileFormat::Parquet,
                    other => {
                        return Err(Error::Unsupported(format!(
                            "file format {other} (use CSV, JSON or PARQUET)"
                        )));
                    }
                })
            }
            "SKIP_HEADER" => {
                csv.skip_header = v
                    .parse()
                    .map_err(|_| Error::Plan(format!("SKIP_HEADER must be a number, got {v}")))?
            }
            "HEADER" | "PARSE_HEADER" => csv.skip_header = usize::from(truthy(&v)),
            "FIELD_DELIMITER" | "DELIMITER" => csv.delimiter = single_byte(&key, &v)?,
            "FIELD_OPTIONALLY_ENCLOSED_BY" | "QUOTE" => csv.quote = single_byte(&key, &v)?,
            "ESCAPE" | "ESCAPE_UNENCLOSED_FIELD" => {
                if !v.eq_ignore_ascii_case("NONE") {
                    csv.escape = Some(single_byte(&key, &v)?)
                }
            }
            "NULL_IF" => csv.null_if = values,
            "COMPRESSION" if v.eq_ignore_ascii_case("NONE") || v.eq_ignore_ascii_case("AUTO") => {}
            other => {
                return Err(Error::Unsupported(format!("FILE_FORMAT option {other}")));
            }
        }
    }
    let mut force = false;
    for (key, values) in options(copy_options) {
        let v = values.first().cloned().unwrap_or_default();
        match key.as_str() {
            "FORCE" => force = truthy(&v),
            "ON_ERROR" if v.eq_ignore_ascii_case("ABORT_STATEMENT") => {}
            "ON_ERROR" => {
                return Err(Error::Unsupported(format!(
                    "ON_ERROR = {v}: a load either commits every file or none (ABORT_STATEMENT)"
                )));
            }
            other => return Err(Error::Unsupported(format!("copy option {other}"))),
        }
    }

    // Files.
    let mut sources: Vec<SourceFile> = match files {
        Some(names) => {
            let base = location.trim_end_matches('/');
            let mut out = Vec::new();
            for n in names {
                out.extend(load::list_sources(&format!("{base}/{n}"), &s3_settings).await?);
            }
            out
        }
        None => load::list_sources(&location, &s3_settings).await?,
    };
    if let Some(p) = pattern {
        let re = regex::Regex::new(p).map_err(|e| Error::Plan(format!("bad PATTERN: {e}")))?;
        sources.retain(|s| re.is_match(&s.display()));
    }

    let (log, snapshot, table) = session.open_table(into).await?;
    let (db, schema_name, table_name) = session.qualify_table(into)?;
    let warehouse = session.warehouse().clone();
    let mut report: Vec<Vec<String>> = Vec::new();
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
            loaded_at: Utc::now(),
        };
        if !force && snapshot.loaded.contains_key(&loaded.key()) {
            report.push(vec![
                s.display(),
                "SKIPPED (already loaded)".into(),
                "0".into(),
            ]);
        } else {
            todo.push(s);
        }
    }

    let store = warehouse.object_store();
    let (check, exclusive) =
        crate::constraints::prepare(&warehouse, &table, &log, &snapshot, &[]).await?;
    let mut table_writer =
        TableWriter::new(&table, &snapshot, warehouse.options().write.clone()).with_check(check);
    let schema = table_writer.schema();
    let mut txn = Transaction::new("COPY INTO");
    txn.reject_loaded_twice = !force;
    txn.exclusive = exclusive;
    let mut total = 0u64;
    for source in todo {
        let fmt = format
            .clone()
            .map(|f| match f {
                FileFormat::Csv(_) => FileFormat::Csv(csv.clone()),
                other => other,
            })
            .unwrap_or_else(|| match FileFormat::from_extension(&source.display()) {
                FileFormat::Csv(_) => FileFormat::Csv(csv.clone()),
                other => other,
            });
        let src = source.clone();
        let schema = std::sync::Arc::clone(&schema);
        let skipped = match &fmt {
            FileFormat::Csv(o) => o.skip_header,
            _ => 0,
        };
        let result = match source.open().await {
            Ok(data) => {
                let (w, result) = run_cpu(move || {
                    let mut w = table_writer;
                    w.start_source(skipped);
                    let r = load::read_file(&src, data, &fmt, &schema, |batch| w.write(batch));
                    (w, r)
                })
                .await;
                table_writer = w;
                result
            }
            Err(e) => Err(e),
        };
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                let message = e.to_string();
                record_load_failure(
                    &warehouse,
                    &LoadFailure {
                        database: db.clone(),
                        schema: schema_name.clone(),
                        table: table_name.clone(),
                        file: source.display(),
                        size_bytes: source.size_bytes,
                        error: message.clone(),
                        at: Utc::now(),
                    },
                )
                .await;
                return Err(e.into());
            }
        };
        let finished = table_writer.take_finished();
        if !finished.is_empty() {
            txn.add
                .extend(writer::upload(&store, log.id(), finished).await?);
        }
        total += rows;
        txn.loads.push(LoadedFile {
            file: source.display(),
            size_bytes: source.size_bytes,
            modified: source.modified,
            rows,
            loaded_at: Utc::now(),
        });
        report.push(vec![source.display(), "LOADED".into(), rows.to_string()]);
    }
    if !txn.loads.is_empty() {
        let (files, created) = run_cpu(move || table_writer.finish()).await?;
        txn.add
            .extend(writer::upload(&store, log.id(), files).await?);
        txn.add_partitions = created;
        let s = log.commit(&snapshot, &txn).await?;
        warehouse.remember(log.id(), &s);
    }
    tracing::info!(table = %table, rows = total, "COPY INTO committed");
    Ok(strings_result(&["file", "status", "rows_loaded"], report))
}
