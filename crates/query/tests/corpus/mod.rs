//! SQLite's sqllogictest corpus (select1–5, evidence, random aggregates and expressions), read
//! from `../shared/sqllogictest/test` next to the repository (never copied into it), run record
//! by record against a fresh in-memory warehouse per file.
//!
//! Results are formatted as SQLite's runner prints them (integers as they are, reals with three
//! decimals, NULL, `(empty)`), so the corpus's expected answers and hashes apply unchanged.
//! Records for other engines (`onlyif mysql`) are skipped, their alternatives (`skipif mysql`)
//! run. By default a fast subset runs; `STRATA_SLT_CORPUS=all` runs every file. The run fails
//! if the share of records that pass falls under [`FAST_FLOOR`] / [`ALL_FLOOR`], and prints the
//! failures by class (the first words of their errors).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType, Record};
use strata_query::{Session, Warehouse};

use super::SltError;

/// The share of records of the fast subset that must pass.
pub(crate) const FAST_FLOOR: f64 = 0.995;
/// The share of records of the whole corpus that must pass.
pub(crate) const ALL_FLOOR: f64 = 0.997;

/// The fast subset: files (or their first records) that together run in about a minute in a
/// debug build and cover every kind of statement the corpus has.
const FAST: &[(&str, usize)] = &[
    ("select1.test", usize::MAX),
    ("select4.test", 1000),
    ("select5.test", 300),
    ("evidence/in1.test", usize::MAX),
    ("evidence/in2.test", usize::MAX),
    ("evidence/slt_lang_aggfunc.test", usize::MAX),
    ("evidence/slt_lang_createview.test", usize::MAX),
    ("evidence/slt_lang_update.test", usize::MAX),
    ("random/aggregates/slt_good_0.test", 1000),
    ("random/expr/slt_good_0.test", 1000),
];

struct CorpusDb {
    session: Session,
}

/// A value as SQLite's runner prints it.
fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let mut columns = Vec::new();
        for column in batch.columns() {
            let text: Vec<String> = match column.data_type() {
                DataType::Float16
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(_, _) => {
                    let floats = arrow::compute::cast(column, &DataType::Float64)
                        .map_err(|e| SltError(e.to_string()))?;
                    let floats = floats.as_primitive::<Float64Type>();
                    (0..floats.len())
                        .map(|i| {
                            if floats.is_null(i) {
                                "NULL".to_string()
                            } else {
                                format!("{:.3}", floats.value(i))
                            }
                        })
                        .collect()
                }
                // SQLite has no booleans: a comparison is 1 or 0.
                DataType::Boolean => {
                    let b = column.as_boolean();
                    (0..b.len())
                        .map(|i| match b.is_null(i) {
                            true => "NULL".to_string(),
                            false => u8::from(b.value(i)).to_string(),
                        })
                        .collect()
                }
                _ => {
                    let f = ArrayFormatter::try_new(column.as_ref(), &options)
                        .map_err(|e| SltError(e.to_string()))?;
                    (0..column.len())
                        .map(|i| {
                            let v = f.value(i).to_string();
                            if v.is_empty() && !column.is_null(i) {
                                "(empty)".to_string()
                            } else {
                                v
                            }
                        })
                        .collect()
                }
            };
            columns.push(text);
        }
        for row in 0..batch.num_rows() {
            out.push(columns.iter().map(|c| c[row].clone()).collect());
        }
    }
    Ok(out)
}

#[async_trait]
impl sqllogictest::AsyncDB for CorpusDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let Some((last, names)) = super::last_result(&mut self.session, sql).await? else {
            return Ok(DBOutput::StatementComplete(0));
        };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        if matches!(names.as_slice(), ["status"] | ["count"])
            && !sql.trim_start().to_ascii_uppercase().starts_with("SELECT")
        {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; last.schema.fields().len()],
            rows: rows(&last.batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// SQLite's runner lists a result one value per line; a row per line is accepted too.
fn one_value_per_line(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let expected: Vec<String> = expected.iter().map(normalizer).collect();
    let values: Vec<String> = actual.iter().flatten().map(normalizer).collect();
    if values == expected {
        return true;
    }
    let rows: Vec<String> = actual.iter().map(|r| normalizer(&r.join(" "))).collect();
    rows == expected
}

/// Where the corpus is: `../shared/sqllogictest/test` beside the repository.
fn corpus_dir() -> Option<PathBuf> {
    let dir = super::manifest_dir().join("../../../shared/sqllogictest/test");
    dir.canonicalize().ok()
}

fn test_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            test_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "test") {
            out.push(path);
        }
    }
}

/// The records of a corpus file. SQLite's runner allows a comment after a condition
/// (`onlyif sqlite # empty RHS`), which the sqllogictest crate does not: it is dropped.
fn read_records(file: &Path) -> Result<Vec<Record<DefaultColumnType>>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let text: String = text
        .lines()
        .map(|line| {
            let condition = line.starts_with("onlyif ") || line.starts_with("skipif ");
            match line.split_once(" #") {
                Some((before, _)) if condition => before.trim_end(),
                _ => line,
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let name = file.display().to_string();
    sqllogictest::parse_with_name(&text, name).map_err(|e| e.to_string())
}

/// The class of a failure: its error's first words, numbers and names blanked.
fn class(error: &str) -> String {
    let first = error
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let words: Vec<&str> = first.split_whitespace().take(8).collect();
    let text = words.join(" ");
    let digits = regex::Regex::new(r"[0-9]+").expect("regex");
    digits.replace_all(&text, "N").to_string()
}

/// Runs the corpus; returns false if it passed under its floor.
pub(crate) async fn run(all: bool) -> bool {
    let Some(dir) = corpus_dir() else {
        println!("sqllogictest corpus: ../shared/sqllogictest not found; skipped");
        return true;
    };
    let mut files = Vec::new();
    test_files(&dir, &mut files);
    files.sort();
    let plan: Vec<(PathBuf, usize)> = if all {
        files.into_iter().map(|f| (f, usize::MAX)).collect()
    } else {
        FAST.iter().map(|(name, n)| (dir.join(name), *n)).collect()
    };
    let started = Instant::now();
    let (mut passed, mut total) = (0usize, 0usize);
    let mut classes: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (file, limit) in plan {
        let name = file
            .strip_prefix(&dir)
            .unwrap_or(&file)
            .display()
            .to_string();
        let records = match read_records(&file) {
            Ok(r) => r,
            Err(e) => {
                println!("corpus {name}: cannot parse: {e}");
                return false;
            }
        };
        let warehouse = match Warehouse::open("memory://").await {
            Ok(w) => w,
            Err(e) => {
                println!("corpus {name}: {e}");
                return false;
            }
        };
        let session = warehouse.session();
        let mut db = Some(CorpusDb { session });
        let mut runner = sqllogictest::Runner::new(move || {
            let db = db.take();
            async move { db.ok_or_else(|| SltError("one connection per file".to_string())) }
        });
        // The corpus was written with SQLite's runner hashing results of more than 8 values.
        runner.with_hash_threshold(8);
        runner.with_validator(one_value_per_line);
        let (mut file_passed, mut file_total) = (0usize, 0usize);
        // The conditions written before a record: the crate's parser also hands a record the
        // conditions of a `halt` before it, so they are tracked here.
        let mut pending: Vec<sqllogictest::Condition> = Vec::new();
        let skipped = |conditions: &[sqllogictest::Condition]| {
            conditions.iter().any(|c| match c {
                sqllogictest::Condition::OnlyIf { label } => label != "strata",
                sqllogictest::Condition::SkipIf { label } => label == "strata",
            })
        };
        for mut record in records {
            let (counted, skip, sql) = match &mut record {
                Record::Condition(c) => {
                    pending.push(c.clone());
                    continue;
                }
                Record::Halt { .. } => {
                    if skipped(&std::mem::take(&mut pending)) {
                        continue;
                    }
                    break;
                }
                Record::Statement {
                    conditions, sql, ..
                }
                | Record::Query {
                    conditions, sql, ..
                } => {
                    conditions.clear();
                    (true, skipped(&std::mem::take(&mut pending)), sql.clone())
                }
                _ => (false, false, String::new()),
            };
            if skip {
                continue;
            }
            if counted {
                if file_total >= limit {
                    break;
                }
                file_total += 1;
            }
            match runner.run_async(record).await {
                Ok(_) if counted => file_passed += 1,
                Ok(_) => {}
                Err(e) if counted => {
                    let text = e.to_string();
                    if std::env::var("STRATA_SLT_CORPUS_VERBOSE").is_ok() {
                        println!("FAILED {name}: {text}\n");
                    }
                    let entry = classes.entry(class(&text)).or_insert((0, sql));
                    entry.0 += 1;
                }
                Err(_) => {}
            }
        }
        println!(
            "corpus {name}: {file_passed}/{file_total} ({:.1}%)",
            100.0 * file_passed as f64 / file_total.max(1) as f64
        );
        passed += file_passed;
        total += file_total;
    }
    let share = passed as f64 / total.max(1) as f64;
    let mut by_count: Vec<(String, (usize, String))> = classes.into_iter().collect();
    by_count.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    println!("corpus failures by class (count, class, first example):");
    for (class, (n, example)) in by_count.iter().take(25) {
        let example: String = example.split_whitespace().collect::<Vec<_>>().join(" ");
        let example: String = example.chars().take(160).collect();
        println!("  {n:6}  {class}\n          e.g. {example}");
    }
    let floor = if all { ALL_FLOOR } else { FAST_FLOOR };
    println!(
        "sqllogictest corpus ({}): {passed} of {total} records pass ({:.2}%) in {:.0} s; floor {:.2}%",
        if all { "all" } else { "fast subset" },
        100.0 * share,
        started.elapsed().as_secs_f64(),
        100.0 * floor
    );
    share >= floor
}
