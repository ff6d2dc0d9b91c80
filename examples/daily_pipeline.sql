-- A daily pipeline inside the warehouse: four tasks linked with AFTER, the work an Airflow DAG
-- of COPY, dbt run, dbt test and a refresh would do.
--
--   extract ─► transform ─► test ─► refresh
--
-- Set it up:      strata -w ./warehouse -f examples/daily_pipeline.sql
-- Run it now:     strata -w ./warehouse -c "EXECUTE TASK extract"
-- Run it daily:   strata serve -w ./warehouse     (02:00 UTC; see system.task_runs)
--
-- The landing files are CSV with a header: order_id,customer_id,status,amount,updated_at.

CREATE STAGE IF NOT EXISTS landing URL = 'landing/' FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1);

CREATE TABLE IF NOT EXISTS staging_orders (
  order_id BIGINT, customer_id INT, status VARCHAR, amount DECIMAL(12,2), updated_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS orders (
  order_id BIGINT PRIMARY KEY, customer_id INT, status VARCHAR, amount DECIMAL(12,2),
  updated_at TIMESTAMP
);
CREATE MATERIALIZED VIEW IF NOT EXISTS daily_revenue AS
  SELECT CAST(updated_at AS DATE) AS day, sum(amount) AS revenue, count(*) AS orders
  FROM orders GROUP BY 1;

-- What the data must look like. ERROR tests gate every write to orders (test_on_load); the
-- WARN test only reports.
ALTER TABLE orders ADD TEST IF NOT EXISTS not_null(customer_id);
ALTER TABLE orders ADD TEST IF NOT EXISTS accepted_values(status, ('placed', 'shipped', 'returned'));
ALTER TABLE orders ADD TEST IF NOT EXISTS big_orders row_count(< 1000000000) SEVERITY = WARN;
ALTER TABLE orders SET (test_on_load = true);

-- 1. Extract: the new landing files (files loaded before are skipped by COPY's load history).
CREATE OR REPLACE TASK extract
  SCHEDULE = 'USING CRON 0 2 * * * UTC'
  RETRIES = 2 RETRY_DELAY = '1 minute'
  COMMENT = 'new landing files into staging'
AS COPY INTO staging_orders FROM @landing PATTERN = '.*orders.*[.]csv';

-- 2. Transform: the latest version of each order into orders, then an empty staging table.
--    A row that breaks a test makes the MERGE commit nothing: the task fails, and the tasks
--    after it are skipped.
CREATE OR REPLACE TASK transform AFTER extract RETRIES = 1 TIMEOUT = '30 minutes' AS
BEGIN
  MERGE INTO orders o
  USING (
    SELECT order_id, customer_id, status, amount, updated_at FROM (
      SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC) AS newest
      FROM staging_orders
    ) WHERE newest = 1
  ) s ON o.order_id = s.order_id
  WHEN MATCHED THEN UPDATE SET customer_id = s.customer_id, status = s.status,
    amount = s.amount, updated_at = s.updated_at
  WHEN NOT MATCHED THEN INSERT VALUES (s.order_id, s.customer_id, s.status, s.amount, s.updated_at);
  TRUNCATE TABLE staging_orders;
END;

-- 3. Test: every test of orders; in a task, a failing ERROR test fails the task.
CREATE OR REPLACE TASK test AFTER transform AS RUN DATA TESTS ON orders;

-- 4. Refresh what dashboards read.
CREATE OR REPLACE TASK refresh AFTER test AS REFRESH MATERIALIZED VIEW daily_revenue;

ALTER TASK extract RESUME;
