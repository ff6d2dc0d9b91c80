//! TPC-H tables from `tpchgen-arrow`, the Rust port of dbgen (same rows as `tpchgen-cli`).

use std::path::Path;

use arrow::array::RecordBatch;
use indicatif::MultiProgress;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use super::{TableJob, TableSummary, part_count, write_table};

/// Rows per batch handed to the Parquet encoder.
const BATCH_ROWS: usize = 64 * 1024;

/// Generates the eight TPC-H tables at scale factor `sf` into `dir`.
pub(crate) fn generate(
    dir: &Path,
    sf: f64,
    progress: &MultiProgress,
) -> anyhow::Result<Vec<TableSummary>> {
    // Rows per unit of scale factor; nation and region are fixed.
    macro_rules! job {
        ($name:literal, $rows_per_sf:expr, $generator:ident, $arrow:ident) => {{
            let parts = part_count($rows_per_sf, sf);
            TableJob {
                name: $name,
                schema: $arrow::schema_ref(),
                parts,
                rows_estimate: ($rows_per_sf * sf) as u64,
                make_part: Box::new(move |part| {
                    $arrow::new($generator::new(sf, part, parts))
                        .with_batch_size(BATCH_ROWS)
                        .collect::<Result<Vec<RecordBatch>, _>>()
                        .map_err(anyhow::Error::from)
                }),
            }
        }};
    }
    let jobs = vec![
        job!("nation", 25.0 / sf, NationGenerator, NationArrow),
        job!("region", 5.0 / sf, RegionGenerator, RegionArrow),
        job!("part", 200_000.0, PartGenerator, PartArrow),
        job!("supplier", 10_000.0, SupplierGenerator, SupplierArrow),
        job!("partsupp", 800_000.0, PartSuppGenerator, PartSuppArrow),
        job!("customer", 150_000.0, CustomerGenerator, CustomerArrow),
        job!("orders", 1_500_000.0, OrderGenerator, OrderArrow),
        job!("lineitem", 6_000_000.0, LineItemGenerator, LineItemArrow),
    ];
    jobs.into_iter()
        .map(|job| write_table(dir, job, progress))
        .collect()
}
