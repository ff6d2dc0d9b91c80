//! Benchmark data: TPC-H from `tpchgen` and the Star Schema Benchmark derived from it, written
//! as one Parquet file per table so that Strata and the peer engines read exactly the same rows.
//!
//! The layout is the one `../shared/bench/peers.py` reads:
//!
//! ```text
//! <data>/tpch/sf<SF>/{lineitem,orders,customer,supplier,part,partsupp,nation,region}.parquet
//! <data>/ssb/sf<SF>/{lineorder,customer,supplier,part,dwdate}.parquet
//! ```
//!
//! Generation is deterministic (the same scale factor always gives the same bytes of data,
//! whatever the number of threads) and parallel: a table is cut into *parts* (tpchgen's own
//! partitioning, which yields identical rows for any part count), each part is generated and
//! encoded into one Parquet row group on a rayon worker, and the row groups are appended to
//! the file in part order.

pub mod ssb;
pub mod tpch;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, compute_leaves};
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Suite;

/// Rows of the largest table in one part (and so one Parquet row group).
const ROWS_PER_PART: f64 = 1_000_000.0;

/// What `gen` wrote, saved as `manifest.json` beside the tables once every table is complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub suite: String,
    pub scale_factor: f64,
    pub generator: String,
    pub tables: Vec<TableSummary>,
}

/// One generated table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableSummary {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// The directory holding `suite` data at scale factor `sf` under `root`.
pub fn data_dir(root: &Path, suite: Suite, sf: f64) -> PathBuf {
    root.join(suite.name()).join(format!("sf{sf}"))
}

/// The manifest of complete data, if `dir` has one.
pub fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Generates `suite` at scale factor `sf` under `root` unless complete data is already there
/// (or `force`). SSB is derived from TPC-H rows in memory; it does not need the TPC-H files.
pub fn generate(root: &Path, suite: Suite, sf: f64, force: bool) -> anyhow::Result<Manifest> {
    anyhow::ensure!(
        sf > 0.0 && sf.is_finite(),
        "the scale factor must be positive, got {sf}"
    );
    let dir = data_dir(root, suite, sf);
    if !force && let Some(manifest) = read_manifest(&dir) {
        return Ok(manifest);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("manifest.json"));
    let progress = MultiProgress::new();
    let tables = match suite {
        Suite::Tpch => tpch::generate(&dir, sf, &progress)?,
        Suite::Ssb => ssb::generate(&dir, sf, &progress)?,
    };
    let manifest = Manifest {
        suite: suite.name().to_string(),
        scale_factor: sf,
        generator: format!(
            "tpchgen 4 ({})",
            match suite {
                Suite::Tpch => "TPC-H tables as generated",
                Suite::Ssb => "SSB derived from TPC-H like ../shared/bench/ssb_from_tpch.sql",
            }
        ),
        tables,
    };
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

/// How many parts a table of about `rows_per_sf * sf` rows is cut into.
pub(crate) fn part_count(rows_per_sf: f64, sf: f64) -> i32 {
    ((rows_per_sf * sf / ROWS_PER_PART).ceil() as i32).max(1)
}

/// A table to write: its schema, its part count, and how to make the rows of one part
/// (`part` counts from 1, as in tpchgen).
pub(crate) struct TableJob<'a> {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub parts: i32,
    pub rows_estimate: u64,
    pub make_part: Box<dyn Fn(i32) -> anyhow::Result<Vec<RecordBatch>> + Sync + 'a>,
}

/// Writes `job` to `<dir>/<name>.parquet`, one row group per part, encoding parts in parallel.
/// The file is written under a temporary name and renamed when complete.
pub(crate) fn write_table(
    dir: &Path,
    job: TableJob<'_>,
    progress: &MultiProgress,
) -> anyhow::Result<TableSummary> {
    let started = std::time::Instant::now();
    let path = dir.join(format!("{}.parquet", job.name));
    let tmp = dir.join(format!(".{}.parquet.tmp", job.name));
    let bar = progress.add(ProgressBar::new(job.rows_estimate));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} {bar:30} {human_pos:>12} rows {elapsed}")
            .expect("valid template"),
    );
    bar.set_prefix(job.name);

    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(None)
        .build();
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let writer = ArrowWriter::try_new(file, Arc::clone(&job.schema), Some(props))?;
    let (mut file_writer, row_groups) = writer.into_serialized_writer()?;

    // Parts are encoded a window at a time so that memory stays bounded by the window.
    let window = (rayon::current_num_threads() * 2) as i32;
    let mut rows = 0u64;
    let mut start = 1;
    while start <= job.parts {
        let end = (start + window - 1).min(job.parts);
        let writers = (start..=end)
            .map(|part| row_groups.create_column_writers(part as usize - 1))
            .collect::<Result<Vec<_>, _>>()?;
        let encoded = writers
            .into_par_iter()
            .zip((start..=end).collect::<Vec<i32>>())
            .map(
                |(mut columns, part)| -> anyhow::Result<(Vec<ArrowColumnChunk>, u64)> {
                    let batches = (job.make_part)(part)
                        .with_context(|| format!("generating {} part {part}", job.name))?;
                    let mut n = 0u64;
                    for batch in &batches {
                        let mut column = columns.iter_mut();
                        for (field, array) in job.schema.fields().iter().zip(batch.columns()) {
                            for leaf in compute_leaves(field, array)? {
                                column
                                    .next()
                                    .context("more leaves than column writers")?
                                    .write(&leaf)?;
                            }
                        }
                        n += batch.num_rows() as u64;
                    }
                    bar.inc(n);
                    let chunks = columns
                        .into_iter()
                        .map(|c| c.close())
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((chunks, n))
                },
            )
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (chunks, n) in encoded {
            if n == 0 {
                continue;
            }
            let mut row_group = file_writer.next_row_group()?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut row_group)?;
            }
            row_group.close()?;
            rows += n;
        }
        start = end + 1;
    }
    file_writer.close()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    bar.set_length(rows);
    bar.finish();
    Ok(TableSummary {
        name: job.name.to_string(),
        rows,
        bytes: std::fs::metadata(&path)?.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
