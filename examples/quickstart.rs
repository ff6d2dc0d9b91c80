//! Strata embedded in a Rust program: open a warehouse, declare a star schema, load Arrow
//! batches and a CSV file, and query with SQL and with DataFusion's DataFrame API.
//!
//! ```sh
//! cargo run -p strata --example quickstart               # an in-memory warehouse
//! cargo run -p strata --example quickstart -- ./warehouse # a directory (kept afterwards)
//! ```

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use datafusion::prelude::{col, lit};
use futures::StreamExt;
use strata::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use strata::arrow::datatypes::{DataType, Field, Schema};
use strata::arrow::util::pretty::pretty_format_batches;
use strata::{CopyOptions, Warehouse};

/// Runs the walk-through on the warehouse at `location`, reading the CSV it writes into
/// `scratch`; returns the cities with revenue above 95.
async fn quickstart(location: &str, scratch: &Path) -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    // 1. Open (or create) the warehouse: queries together may hold 1 GiB, each uses 2 threads.
    let warehouse = Warehouse::builder()
        .memory_limit(1 << 30)
        .threads(2)
        .open(location)
        .await?;
    let mut session = warehouse.session();

    // 2. A star schema: a store dimension and a fact table range-partitioned by month.
    session
        .execute(
            "CREATE TABLE IF NOT EXISTS stores (store_id BIGINT PRIMARY KEY, city VARCHAR);
             CREATE TABLE IF NOT EXISTS sales (
               sale_date DATE NOT NULL,
               store_id BIGINT REFERENCES stores,
               amount DOUBLE
             ) PARTITION BY RANGE (sale_date) INTERVAL (1 MONTH);",
        )
        .await?;

    // 3. Load Arrow batches built in the program: one commit.
    let stores = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("store_id", DataType::Int64, false),
            Field::new("city", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["Lisbon", "Oslo", "Quito"])),
        ],
    )?;
    session.load_batches("stores", [stores]).await?;

    let sales = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            // Columns are matched by name and cast to the table's types: text becomes DATE.
            Field::new("sale_date", DataType::Utf8, false),
            Field::new("store_id", DataType::Int64, true),
            Field::new("amount", DataType::Float64, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec![
                "2024-01-05",
                "2024-01-20",
                "2024-02-11",
            ])),
            Arc::new(Int64Array::from(vec![1, 2, 1])),
            Arc::new(Float64Array::from(vec![120.0, 80.5, 42.0])),
        ],
    )?;
    session.load_batches("sales", [sales]).await?;

    // 4. Load a CSV file with COPY INTO (bad rows fail the load and change nothing).
    let csv = scratch.join("sales_2024_03.csv");
    std::fs::write(
        &csv,
        "sale_date,store_id,amount\n2024-03-01,3,99.5\n2024-03-02,2,10.0\n",
    )?;
    let report = session
        .copy_into(
            "sales",
            &csv.display().to_string(),
            &CopyOptions::csv().skip_header(1),
        )
        .await?;
    println!("{}", pretty_format_batches(&report.batches)?);

    // 5. SQL gives a DataFrame: refine it, then run it.
    let revenue = session
        .sql(
            "SELECT city, sum(amount) AS revenue
             FROM sales JOIN stores USING (store_id)
             WHERE sale_date >= DATE '2024-01-01'
             GROUP BY city",
        )
        .await?
        .filter(col("revenue").gt(lit(95.0)))?
        .sort(vec![col("city").sort(true, false)])?
        .collect()
        .await?;
    println!("{}", pretty_format_batches(&revenue)?);

    // 6. Or stream a big result batch by batch.
    let mut stream = session
        .query("SELECT * FROM sales WHERE sale_date < DATE '2024-02-01'")
        .await?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows();
    }
    println!("{rows} sales in January");
    Ok(revenue)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let location = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://".to_string());
    let scratch = tempfile::tempdir()?;
    quickstart(&location, scratch.path()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn quickstart_runs_on_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("warehouse").display().to_string();
        let revenue = quickstart(&location, dir.path()).await.unwrap();
        assert_eq!(
            pretty_format_batches(&revenue).unwrap().to_string(),
            "+--------+---------+\n\
             | city   | revenue |\n\
             +--------+---------+\n\
             | Lisbon | 162.0   |\n\
             | Quito  | 99.5    |\n\
             +--------+---------+"
        );
    }
}
