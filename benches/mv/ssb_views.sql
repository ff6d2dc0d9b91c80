-- A small set of materialized views for the Star Schema Benchmark: one per query flight, at the
-- grain its queries filter and group on. With them, 11 of the 13 queries are answered from a
-- view (q3.4 needs months of city pairs, q4.3 supplier cities by brand: both left to the base
-- tables). Used by benches/mv/mv_bench.sh.

-- Flight 1: revenue by date attributes, discount and quantity.
CREATE MATERIALIZED VIEW mv_ssb_flight1 AS
SELECT d_year, d_yearmonthnum, d_weeknuminyear, lo_discount, lo_quantity,
       sum(lo_extendedprice * lo_discount) AS revenue
FROM lineorder, dwdate
WHERE lo_orderdate = d_datekey
GROUP BY d_year, d_yearmonthnum, d_weeknuminyear, lo_discount, lo_quantity;

-- Flight 2: revenue by year, brand and supplier region.
CREATE MATERIALIZED VIEW mv_ssb_flight2 AS
SELECT d_year, p_category, p_brand1, s_region, sum(lo_revenue) AS revenue
FROM lineorder, dwdate, part, supplier
WHERE lo_orderdate = d_datekey AND lo_partkey = p_partkey AND lo_suppkey = s_suppkey
GROUP BY d_year, p_category, p_brand1, s_region;

-- Flight 3: revenue by customer and supplier city, per year.
CREATE MATERIALIZED VIEW mv_ssb_flight3 AS
SELECT c_region, c_nation, c_city, s_region, s_nation, s_city, d_year, sum(lo_revenue) AS revenue
FROM customer, lineorder, supplier, dwdate
WHERE lo_custkey = c_custkey AND lo_suppkey = s_suppkey AND lo_orderdate = d_datekey
GROUP BY c_region, c_nation, c_city, s_region, s_nation, s_city, d_year;

-- Flight 4: profit by year, customer and supplier nation, part category.
CREATE MATERIALIZED VIEW mv_ssb_flight4 AS
SELECT d_year, c_region, c_nation, s_region, s_nation, p_mfgr, p_category,
       sum(lo_revenue - lo_supplycost) AS profit
FROM dwdate, customer, supplier, part, lineorder
WHERE lo_custkey = c_custkey AND lo_suppkey = s_suppkey AND lo_partkey = p_partkey
  AND lo_orderdate = d_datekey
GROUP BY d_year, c_region, c_nation, s_region, s_nation, p_mfgr, p_category;
