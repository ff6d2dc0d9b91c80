//! `strata demo`: a small star-schema warehouse to explore, built in a few seconds.
//!
//! A newcomer should see what Strata is for before writing any DDL: a fact table
//! range-partitioned by month, product and date dimensions with keys, a customer dimension
//! that keeps history (SCD Type 2), and a materialized view a dashboard would read. The data
//! comes from SQL over `generate_series` with fixed arithmetic instead of random numbers, so
//! every demo warehouse holds the same rows and the example queries give the same answers.

use strata_query::Warehouse;

/// SQL choosing one of `values` by `index` (an integer expression from 0).
fn pick(index: &str, values: &[&str]) -> String {
    let arms: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!(" WHEN {i} THEN '{v}'"))
        .collect();
    format!("CASE {index}{arms} END")
}

/// The statements that build the demo, in order, with what each one shows.
fn statements() -> Vec<(&'static str, String)> {
    let categories = ["Books", "Electronics", "Garden", "Grocery", "Toys"];
    let cities = ["Lisbon", "Oslo", "Quito", "Osaka", "Denver", "Nairobi"];
    let segments = ["consumer", "consumer", "small business", "enterprise"];
    vec![
    (
        "date dimension",
        "CREATE TABLE dim_date (date_id INT PRIMARY KEY, date DATE, year INT, quarter INT, \
         month INT, month_name VARCHAR, year_month VARCHAR, day_name VARCHAR, is_weekend BOOLEAN) \
         AS SELECT date_id, date, year, quarter, month, month_name, year_month, day_name, is_weekend \
         FROM date_dimension('2023-01-01', '2024-12-31')"
            .to_string(),
    ),
    (
        "product dimension",
        format!("CREATE TABLE dim_product (product_id INT PRIMARY KEY, product_name VARCHAR NOT NULL, \
         category VARCHAR NOT NULL, brand VARCHAR NOT NULL, unit_price DECIMAL(10,2) NOT NULL) \
         AS SELECT CAST(value AS INT), 'Product ' || value, \
         {}, \
         'Brand ' || chr(CAST(65 + (value * 7) % 8 AS INT)), \
         CAST(4.99 + (value * 37) % 180 AS DECIMAL(10,2)) \
         FROM generate_series(1, 60)", pick("value % 5", &categories)),
    ),
    (
        "customer dimension (SCD Type 2)",
        "CREATE TABLE dim_customer (customer_id INT, name VARCHAR, city VARCHAR, segment VARCHAR, \
         effective_date DATE, end_date DATE) \
         WITH (scd = 2, natural_key = 'customer_id', tracked = 'city, segment')"
            .to_string(),
    ),
    (
        "customers as of 2023",
        format!("APPLY CHANGES INTO dim_customer FROM (\
         SELECT CAST(value AS INT) AS customer_id, 'Customer ' || value AS name, \
         {} AS city, \
         {} AS segment, DATE '2023-01-01' AS changed_on FROM generate_series(1, 300)) \
         KEY (customer_id) SEQUENCE BY changed_on", pick("value % 6", &cities), pick("(value * 3) % 4", &segments)),
    ),
    (
        "customer changes in 2024 (history kept)",
        format!("APPLY CHANGES INTO dim_customer FROM (\
         SELECT CAST(value AS INT) AS customer_id, 'Customer ' || value AS name, \
         {} AS city, {} AS segment, \
         DATE '2024-01-01' + CAST(value % 300 AS INT) AS changed_on \
         FROM generate_series(1, 300) WHERE value % 5 = 0) \
         KEY (customer_id) SEQUENCE BY changed_on", pick("(value + 1) % 6", &cities), pick("value % 2", &segments[2..])),
    ),
    (
        "sales fact, partitioned by month",
        "CREATE TABLE sales (sale_id BIGINT PRIMARY KEY, sale_date DATE NOT NULL, \
         date_id INT REFERENCES dim_date, customer_id INT NOT NULL, \
         product_id INT REFERENCES dim_product, quantity INT NOT NULL, \
         amount DECIMAL(12,2) NOT NULL) \
         PARTITION BY RANGE (sale_date) INTERVAL (1 MONTH)"
            .to_string(),
    ),
    // The customer is a function of `value % 300`; the product and quantity also depend on
    // `value / 300` and a square, so each customer buys many products in varied quantities.
    (
        "200,000 sales over 2023-2024",
        "INSERT INTO sales \
         SELECT s.value, d, CAST(to_char(d, '%Y%m%d') AS INT), \
         CAST((s.value * 7919) % 300 + 1 AS INT), CAST(p AS INT), CAST(q AS INT), \
         CAST(q * (4.99 + (p * 37) % 180) AS DECIMAL(12,2)) \
         FROM (SELECT value, DATE '2023-01-01' + CAST((value * 104729) % 731 AS INT) AS d, \
         (value * 31337 + (value / 300) * 7 + (value * value) % 97) % 60 + 1 AS p, \
         ((value / 300) * 3 + (value * value) % 11 + value / 7) % 5 + 1 AS q \
         FROM generate_series(1, 200000)) s"
            .to_string(),
    ),
    (
        "monthly revenue by category (materialized view)",
        "CREATE MATERIALIZED VIEW monthly_revenue AS \
         SELECT d.year_month, p.category, sum(s.amount) AS revenue, count(*) AS sales \
         FROM sales s JOIN dim_date d ON s.date_id = d.date_id \
         JOIN dim_product p ON s.product_id = p.product_id \
         GROUP BY d.year_month, p.category".to_string(),
    ),
    ]
}

/// Five queries to start from, printed when the demo opens.
pub(crate) const EXAMPLES: &str = "\
-- 1. Revenue by year and category (a star join; the fact table is pruned by month)
SELECT d.year, p.category, sum(s.amount) AS revenue
FROM sales s JOIN dim_date d ON s.date_id = d.date_id
JOIN dim_product p ON s.product_id = p.product_id
WHERE d.year = 2024 GROUP BY 1, 2 ORDER BY revenue DESC;

-- 2. Revenue by the segment each customer was in on the day of the sale (SCD Type 2)
SELECT c.segment, count(*) AS sales, sum(s.amount) AS revenue
FROM sales s JOIN dim_customer c ON s.customer_id = c.customer_id
  AND s.sale_date >= c.effective_date AND s.sale_date < c.end_date
GROUP BY 1 ORDER BY 1;

-- 3. A customer's history
SELECT * FROM dim_customer WHERE customer_id = 15 ORDER BY effective_date;

-- 4. The dashboard query: answered from the materialized view monthly_revenue
SELECT d.year_month, sum(s.amount) AS revenue
FROM sales s JOIN dim_date d ON s.date_id = d.date_id
JOIN dim_product p ON s.product_id = p.product_id
WHERE p.category = 'Books' GROUP BY 1 ORDER BY 1 LIMIT 6;

-- 5. How the fact table is stored: one partition per month
SELECT partition_name, row_count, file_count FROM system.partitions
WHERE table_name = 'sales' ORDER BY 1 LIMIT 6;
";

/// Builds the demo warehouse at `warehouse` unless it holds the demo already; says what it
/// does on stderr.
pub(crate) async fn build(warehouse: &Warehouse) -> anyhow::Result<()> {
    let mut session = warehouse.session();
    let existing = session
        .sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'sales'")
        .await?;
    let has_sales = existing
        .first()
        .and_then(|r| r.batches.first())
        .map(|b| {
            arrow::array::cast::as_primitive_array::<arrow::datatypes::Int64Type>(b.column(0))
                .value(0)
        })
        .unwrap_or(0)
        > 0;
    if has_sales {
        eprintln!(
            "The demo warehouse at {} exists; opening it.",
            warehouse.location()
        );
        return Ok(());
    }
    eprintln!("Building the demo warehouse at {}", warehouse.location());
    for (what, sql) in statements() {
        let clock = std::time::Instant::now();
        session
            .sql(&sql)
            .await
            .map_err(|e| anyhow::anyhow!("building the demo ({what}): {e}"))?;
        eprintln!("  {what} ({:.1} s)", clock.elapsed().as_secs_f64());
    }
    Ok(())
}
