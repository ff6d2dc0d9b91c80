//! Runs every `testdata/sql/**/*.slt` file against a fresh warehouse on local disk.
//!
//! Each file gets its own warehouse directory and session. In SQL, `${TESTDATA}` is the
//! repository's `testdata/` directory, `${FIXTURES}` a directory of generated Parquet fixtures
//! and `${WAREHOUSE}` the file's warehouse directory (`${WAREHOUSE}_out` is free for unloads).
//! Pass a substring as the first argument to run only matching files, and `--complete` to
//! rewrite the expected results from actual ones (review the diff).

mod corpus;

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType};
use strata_query::{Session, StatementResult, Warehouse};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SltError(String);

struct StrataDb {
    session: Session,
    testdata: String,
    fixtures: String,
    warehouse_dir: String,
    file_path: regex::Regex,
    unload_id: regex::Regex,
    byte_counts: regex::Regex,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SltError(e.to_string()))?;
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, c)| {
                        let text = f.value(row).to_string().trim_end().to_string();
                        if text.is_empty() && !c.is_null(row) {
                            "(empty)".to_string()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// Runs `sql`; its last result and the names of that result's columns (`None`: no result).
pub(crate) async fn last_result(
    session: &mut Session,
    sql: &str,
) -> Result<Option<(StatementResult, Vec<String>)>, SltError> {
    let results = session
        .sql(sql)
        .await
        .map_err(|e| SltError(e.to_string()))?;
    Ok(results.into_iter().last().map(|last| {
        let names = last
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        (last, names)
    }))
}

#[async_trait]
impl sqllogictest::AsyncDB for StrataDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let sql = sql
            .replace("${TESTDATA}", &self.testdata)
            .replace("${FIXTURES}", &self.fixtures)
            .replace("${WAREHOUSE}", &self.warehouse_dir);
        let Some((last, names)) = last_result(&mut self.session, &sql).await? else {
            return Ok(DBOutput::StatementComplete(0));
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match names.as_slice() {
            ["status"] => Ok(DBOutput::StatementComplete(0)),
            ["count"] => {
                let n = rows(&last.batches)?
                    .first()
                    .and_then(|r| r[0].parse().ok())
                    .unwrap_or(0);
                Ok(DBOutput::StatementComplete(n))
            }
            // Plans: one row per line, indentation shown as '-' (as DataFusion's own tests do).
            ["plan_type", "plan"] => {
                let mut out = Vec::new();
                for row in rows(&last.batches)? {
                    out.push(vec![row[0].clone()]);
                    for line in row[1].lines() {
                        let text = line.trim_start();
                        let indent = "-".repeat(line.len() - text.len());
                        let text = self.file_path.replace_all(text, "<file>");
                        let text = self.byte_counts.replace_all(&text, "bytes=<n>");
                        // Files outside the warehouse (external tables) by the variable.
                        let text = text
                            .replace(self.warehouse_dir.trim_start_matches('/'), "${WAREHOUSE}");
                        let text = self.unload_id.replace_all(&text, "data_<id>_");
                        out.push(vec![format!("{indent}{text}")]);
                    }
                }
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Text],
                    rows: out,
                })
            }
            _ => Ok(DBOutput::Rows {
                types: last
                    .schema
                    .fields()
                    .iter()
                    .map(|f| column_type(f.data_type()))
                    .collect(),
                // Paths in results are shown as the variables the test wrote.
                rows: rows(&last.batches)?
                    .into_iter()
                    .map(|row| {
                        row.into_iter()
                            .map(|v| {
                                let v = v
                                    .replace(&self.testdata, "${TESTDATA}")
                                    .replace(&self.fixtures, "${FIXTURES}")
                                    .replace(&self.warehouse_dir, "${WAREHOUSE}");
                                // Unloaded files carry the statement's random id.
                                self.unload_id.replace_all(&v, "data_<id>_").into_owned()
                            })
                            .collect()
                    })
                    .collect(),
            }),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// Writes the Parquet fixtures (generated, not committed): `sales.parquet` with three rows and
/// `truncated.parquet`, its first half.
fn write_parquet_fixtures(dir: &Path) {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("sale_date", DataType::Date32, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    // 2024-05-01 is day 19844 since the epoch.
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(vec![30, 31, 32])),
            Arc::new(Date32Array::from(vec![19844, 19845, 19875])),
            Arc::new(StringArray::from(vec![Some("EMEA"), Some("APAC"), None])),
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])),
        ],
    )
    .expect("fixture batch");
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).expect("parquet writer");
    writer.write(&batch).expect("write fixture");
    writer.close().expect("close fixture");
    std::fs::write(dir.join("sales.parquet"), &bytes).expect("write sales.parquet");
    std::fs::write(dir.join("truncated.parquet"), &bytes[..bytes.len() / 2])
        .expect("write truncated.parquet");

    // Schema drift: a day's file with upper-case names, and a later one with two more columns.
    let drifted = |fields: Vec<(&str, arrow::array::ArrayRef)>, name: &str| {
        let schema = Arc::new(Schema::new(
            fields
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            fields.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("drift batch");
        let mut bytes = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).expect("writer");
        writer.write(&batch).expect("write drift");
        writer.close().expect("close drift");
        std::fs::create_dir_all(dir.join("drift")).expect("drift dir");
        std::fs::write(dir.join("drift").join(name), &bytes).expect("write drift");
    };
    drifted(
        vec![
            ("ID", Arc::new(Int64Array::from(vec![1, 2]))),
            ("Name", Arc::new(StringArray::from(vec!["ann", "bob"]))),
        ],
        "day1.parquet",
    );
    drifted(
        vec![
            ("name", Arc::new(StringArray::from(vec!["cy"]))),
            ("id", Arc::new(Int64Array::from(vec![3]))),
            ("score", Arc::new(Float64Array::from(vec![1.5]))),
            ("Tier", Arc::new(StringArray::from(vec!["gold"]))),
        ],
        "day2.parquet",
    );
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

/// This package's directory. Read when the test runs (cargo sets it then), so that a test
/// binary built by another clone sharing the target directory still finds this clone's files.
pub(crate) fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let root = manifest_dir().join("../../testdata");
    let root = root.canonicalize().expect("testdata directory exists");
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let complete = std::env::args().any(|a| a == "--complete");
    let fixtures = tempfile::tempdir().expect("temp dir");
    write_parquet_fixtures(fixtures.path());
    let fixtures_dir = fixtures.path().display().to_string();
    let file_path =
        regex::Regex::new(r"tables/[0-9a-f-]+/data/[^ \],]+[.]parquet").expect("valid regex");
    let byte_counts = regex::Regex::new(r"bytes=\d+/\d+").expect("valid regex");
    let unload_id = regex::Regex::new(r"data_[0-9a-f]{8}_").expect("valid regex");
    let mut files = Vec::new();
    slt_files(&root.join("sql"), &mut files);
    files.sort();
    let (mut passed, mut failed) = (0, 0);
    for file in files {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let warehouse_dir = dir.path().join("warehouse");
        let location = warehouse_dir.display().to_string();
        let testdata = root.display().to_string();
        let fixtures_dir = fixtures_dir.clone();
        let (file_path, byte_counts) = (file_path.clone(), byte_counts.clone());
        let unload_id = unload_id.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let location = location.clone();
            let testdata = testdata.clone();
            let fixtures = fixtures_dir.clone();
            let file_path = file_path.clone();
            let byte_counts = byte_counts.clone();
            let unload_id = unload_id.clone();
            async move {
                let warehouse = Warehouse::open(&location)
                    .await
                    .map_err(|e| SltError(e.to_string()))?;
                Ok(StrataDb {
                    session: warehouse.session(),
                    testdata,
                    fixtures,
                    warehouse_dir: location,
                    file_path,
                    unload_id,
                    byte_counts,
                })
            }
        });
        if complete {
            // Rewrites the file with actual results; review the diff before committing.
            let outcome = runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await;
            println!("COMPLETED {name}: {outcome:?}");
            continue;
        }
        match runner.run_file_async(&file).await {
            Ok(()) => {
                println!("PASS {name}");
                passed += 1;
            }
            Err(e) => {
                println!("FAIL {name}\n{e}\n");
                failed += 1;
            }
        }
    }
    println!("sqllogictest: {passed} passed, {failed} failed");
    // SQLite's corpus: a fast subset by default, all of it with STRATA_SLT_CORPUS=all; not
    // when running chosen files.
    let corpus = std::env::var("STRATA_SLT_CORPUS").unwrap_or_default();
    let corpus_ok = match (filter.is_some() || complete, corpus.as_str()) {
        (_, "all") => corpus::run(true).await,
        (true, _) | (_, "off") => true,
        _ => corpus::run(false).await,
    };
    if failed == 0 && passed > 0 && corpus_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
