//! Loading a suite into a warehouse and timing its queries through the embedded API.
//!
//! - **load**: the suite's `CREATE TABLE` statements, then one `COPY INTO` per table from the
//!   generated Parquet files; reports rows/s per table.
//! - **queries**: each query once on a freshly opened warehouse (cold: catalog, table log and
//!   file metadata are read again; the OS page cache stays warm), then `hot` more times in the
//!   same session; median of the hot runs, geometric mean over queries. Every answer is
//!   fingerprinted and checked against the reference answers; a wrong answer fails the run.
//! - **throughput**: `streams` concurrent sessions, each running every query once in its own
//!   seeded permutation (as TPC-H's throughput test); queries per hour.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use serde::Serialize;
use strata_query::{Session, Warehouse, WarehouseOptions};

use crate::Suite;
use crate::client::{Client, FlightTarget};
use crate::fingerprint::{ColumnPrint, fingerprint};
use crate::suite::{Answers, Query};

/// Runs `sql` (one statement or several) and returns the last statement's batches.
async fn run_sql(session: &mut Session, sql: &str) -> anyhow::Result<(usize, Vec<RecordBatch>)> {
    let mut results = session.sql(sql).await?;
    let last = results.pop().context("no statement to run")?;
    Ok((last.schema.fields().len(), last.batches))
}

async fn count_rows(session: &mut Session, table: &str) -> anyhow::Result<u64> {
    let (_, batches) = run_sql(session, &format!("SELECT count(*) FROM {table}")).await?;
    let batch = batches.first().context("count(*) returned nothing")?;
    Ok(batch.column(0).as_primitive::<Int64Type>().value(0) as u64)
}

/// Load figures of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableLoad {
    pub table: String,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
}

/// Creates the suite's tables in `warehouse` and loads them from `data_dir` with `COPY INTO`.
/// Tables that already hold the expected rows are kept unless `reload`.
pub async fn load(
    warehouse: &Warehouse,
    suite: Suite,
    data_dir: &Path,
    expected_rows: &[(String, u64)],
    reload: bool,
) -> anyhow::Result<Vec<TableLoad>> {
    let mut session = warehouse.session();
    let mut loaded = true;
    for (table, rows) in expected_rows {
        let have = count_rows(&mut session, table).await.ok();
        loaded &= have == Some(*rows);
    }
    if loaded && !reload {
        return Ok(Vec::new());
    }
    for table in suite.tables() {
        run_sql(&mut session, &format!("DROP TABLE IF EXISTS {table}")).await?;
    }
    run_sql(&mut session, suite.schema_sql()).await?;
    let mut figures = Vec::new();
    for table in suite.tables() {
        let file = data_dir.join(format!("{table}.parquet"));
        let file = file
            .canonicalize()
            .with_context(|| format!("{} is missing", file.display()))?;
        let started = Instant::now();
        run_sql(
            &mut session,
            &format!(
                "COPY INTO {table} FROM '{}' FILE_FORMAT = (TYPE = PARQUET)",
                file.display()
            ),
        )
        .await
        .with_context(|| format!("loading {table}"))?;
        let seconds = started.elapsed().as_secs_f64();
        let rows = count_rows(&mut session, table).await?;
        figures.push(TableLoad {
            table: table.to_string(),
            rows,
            seconds,
            rows_per_second: rows as f64 / seconds.max(1e-9),
        });
    }
    Ok(figures)
}

/// Timings and answer of one query.
#[derive(Debug, Clone, Serialize)]
pub struct QueryRun {
    pub query: String,
    /// Opening the warehouse and a session before the cold run.
    pub setup_s: f64,
    pub cold_s: f64,
    pub hot_s: Vec<f64>,
    pub median_hot_s: f64,
    pub rows: u64,
    pub fingerprint: Vec<ColumnPrint>,
    pub first_row: Vec<String>,
    /// `ok`, `unchecked` (no reference answer) or the way the answer is wrong.
    pub check: String,
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn geomean(values: &[f64]) -> f64 {
    let v: Vec<f64> = values.iter().copied().filter(|x| *x > 0.0).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

fn first_row(batches: &[RecordBatch]) -> anyhow::Result<Vec<String>> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    let options = arrow::util::display::FormatOptions::default();
    batch
        .columns()
        .iter()
        .map(|c| {
            let formatter = arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)?;
            Ok(formatter.value(0).to_string())
        })
        .collect()
}

/// Runs `queries` cold once and hot `hot` times each, checking answers against `answers`.
/// `progress` is told each query's result as it completes.
pub async fn run_queries(
    location: &str,
    options: &WarehouseOptions,
    queries: &[Query],
    hot: usize,
    answers: Option<&Answers>,
    mut progress: impl FnMut(&QueryRun),
) -> anyhow::Result<Vec<QueryRun>> {
    let mut runs = Vec::new();
    for query in queries {
        let started = Instant::now();
        let warehouse = Warehouse::open_with(location, options.clone()).await?;
        let mut session = warehouse.session();
        let setup_s = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let (mut columns, mut batches) = run_sql(&mut session, query.sql)
            .await
            .with_context(|| format!("query {}", query.name))?;
        let cold_s = started.elapsed().as_secs_f64();
        let mut hot_s = Vec::with_capacity(hot);
        for _ in 0..hot {
            let started = Instant::now();
            (columns, batches) = run_sql(&mut session, query.sql)
                .await
                .with_context(|| format!("query {}", query.name))?;
            hot_s.push(started.elapsed().as_secs_f64());
        }
        let answer = fingerprint(columns, &batches)?;
        let check = match answers.map(|a| a.queries.get(query.name)) {
            None | Some(None) => "unchecked".to_string(),
            Some(Some(expected)) => answer
                .mismatch(expected)
                .unwrap_or_else(|| "ok".to_string()),
        };
        let run = QueryRun {
            query: query.name.to_string(),
            setup_s,
            cold_s,
            median_hot_s: if hot_s.is_empty() {
                cold_s
            } else {
                median(&hot_s)
            },
            hot_s,
            rows: answer.rows,
            fingerprint: answer.fingerprint,
            first_row: first_row(&batches)?,
            check,
        };
        progress(&run);
        runs.push(run);
    }
    Ok(runs)
}

/// Result of a throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub streams: usize,
    pub queries_completed: usize,
    pub elapsed_s: f64,
    pub queries_per_hour: f64,
    /// One serial pass over every query before the streams start (also a warm-up).
    pub single_stream_pass_s: f64,
    pub permutations: Vec<Vec<String>>,
    pub per_query: Vec<StreamQuery>,
}

/// One query of one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamQuery {
    pub stream: usize,
    pub query: String,
    pub s: f64,
}

/// The order stream `stream` runs `n` queries in: a Fisher-Yates shuffle driven by a
/// SplitMix64 generator seeded with the stream number, so runs are repeatable.
pub fn permutation(n: usize, stream: usize) -> Vec<usize> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(stream as u64 + 1);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Runs `streams` concurrent query streams over one shared warehouse, embedded or through a
/// Flight SQL server (`flight`), after one serial pass that warms caches.
pub async fn throughput(
    location: &str,
    options: &WarehouseOptions,
    queries: &[Query],
    streams: usize,
    flight: Option<&FlightTarget>,
) -> anyhow::Result<Throughput> {
    let warehouse = Warehouse::open_with(location, options.clone()).await?;
    let started = Instant::now();
    let mut client = Client::connect(&warehouse, flight).await?;
    for query in queries {
        client
            .query(query.sql)
            .await
            .with_context(|| format!("query {}", query.name))?;
    }
    let single_stream_pass_s = started.elapsed().as_secs_f64();

    let orders: Vec<Vec<usize>> = (0..streams)
        .map(|s| permutation(queries.len(), s))
        .collect();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (stream, order) in orders.iter().enumerate() {
        let mut client = Client::connect(&warehouse, flight).await?;
        let stream_queries: Vec<Query> = order.iter().map(|&i| queries[i]).collect();
        tasks.spawn(async move {
            let mut done = Vec::new();
            for query in stream_queries {
                let started = Instant::now();
                client
                    .query(query.sql)
                    .await
                    .with_context(|| format!("stream {stream} query {}", query.name))?;
                done.push(StreamQuery {
                    stream,
                    query: query.name.to_string(),
                    s: started.elapsed().as_secs_f64(),
                });
            }
            anyhow::Ok(done)
        });
    }
    let mut per_query = Vec::new();
    while let Some(done) = tasks.join_next().await {
        per_query.extend(done??);
    }
    let elapsed = started
        .elapsed()
        .max(Duration::from_micros(1))
        .as_secs_f64();
    Ok(Throughput {
        streams,
        queries_completed: per_query.len(),
        elapsed_s: elapsed,
        queries_per_hour: per_query.len() as f64 * 3600.0 / elapsed,
        single_stream_pass_s,
        permutations: orders
            .iter()
            .map(|o| o.iter().map(|&i| queries[i].name.to_string()).collect())
            .collect(),
        per_query,
    })
}

/// Streams the rows of `sql` through [`Session::execute_stream`] once cold and `hot` times,
/// printing rows/s and MB/s (Arrow buffer bytes) of each run and the median of the hot runs.
/// Returns the rows of the last run.
pub async fn stream(warehouse: &Warehouse, sql: &str, hot: usize) -> anyhow::Result<usize> {
    use futures::StreamExt;
    let statement = strata_query::parser::parse(sql)?
        .into_iter()
        .next()
        .context("no statement in --sql")?;
    let mut session = warehouse.session();
    println!(
        "{:6} {:>12} {:>10} {:>9} {:>14} {:>9}",
        "run", "rows", "MB", "s", "rows/s", "MB/s"
    );
    let mut hot_rates = Vec::new();
    let mut rows = 0;
    for run in 0..=hot {
        let started = Instant::now();
        let mut batches = session.execute_stream(&statement, None).await?;
        let mut bytes = 0usize;
        rows = 0;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            bytes += batch.get_array_memory_size();
        }
        let seconds = started.elapsed().as_secs_f64();
        let name = if run == 0 {
            "cold".to_string()
        } else {
            format!("hot{run}")
        };
        println!(
            "{name:6} {rows:>12} {:>10.1} {seconds:>9.3} {:>14.0} {:>9.1}",
            bytes as f64 / 1e6,
            rows as f64 / seconds,
            bytes as f64 / 1e6 / seconds
        );
        if run > 0 {
            hot_rates.push((rows as f64 / seconds, bytes as f64 / 1e6 / seconds));
        }
    }
    if !hot_rates.is_empty() {
        hot_rates.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (r, m) = hot_rates[hot_rates.len() / 2];
        println!("median hot: {r:.0} rows/s, {m:.1} MB/s");
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_repeatable_and_complete() {
        let a = permutation(13, 2);
        assert_eq!(a, permutation(13, 2));
        assert_ne!(a, permutation(13, 3));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..13).collect::<Vec<_>>());
    }

    #[test]
    fn median_and_geomean() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!((geomean(&[1.0, 4.0]) - 2.0).abs() < 1e-12);
    }
}
