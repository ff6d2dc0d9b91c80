//! Star Schema Benchmark tables (O'Neil, O'Neil, Chen, rev. 3) derived from TPC-H rows the way
//! ssb-dbgen derives them, row for row the same as `../shared/bench/ssb_from_tpch.sql`:
//!
//! - `lineorder` is `lineitem ⋈ orders` in (orderkey, linenumber) order; dates are yyyymmdd
//!   integers, prices integer cents, discount and tax integer percent,
//!   `lo_revenue = extendedprice * (100 - discount) / 100` and
//!   `lo_supplycost = 6 * (extendedprice / quantity) / 10`, both divided in floating point and
//!   rounded half to even, which is what DuckDB makes of the shared SQL's `//` on decimals.
//! - `customer` / `supplier`: the city is the nation name cut or padded to 9 characters plus
//!   `key % 10` (so `'UNITED KI1'` exists); nation and region are names.
//! - `part`: `p_mfgr` `MFGR#M`, `p_category` `MFGR#MN` from TPC-H `Brand#MN`, `p_brand1` the
//!   category followed by `(partkey - 1) % 40 + 1` (1000 brands, e.g. `'MFGR#2221'`).
//! - `dwdate`: one row per day from 1992-01-01 to 1998-12-31 with the 17 SSB columns.
//!
//! Cardinalities stay TPC-H's (customer 150k×SF, supplier 10k×SF, part 200k×SF).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use anyhow::Context;
use arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, Days, NaiveDate};
use indicatif::MultiProgress;
use tpchgen::dates::TPCHDate;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    RegionGenerator, SupplierGenerator,
};

use super::{TableJob, TableSummary, part_count, write_table};

/// Rows per batch handed to the Parquet encoder.
const BATCH_ROWS: usize = 64 * 1024;

fn schema(columns: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, t)| Field::new(*name, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

use DataType::{Int32 as I, Utf8 as S};

static LINEORDER: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(&[
        ("lo_orderkey", I),
        ("lo_linenumber", I),
        ("lo_custkey", I),
        ("lo_partkey", I),
        ("lo_suppkey", I),
        ("lo_orderdate", I),
        ("lo_orderpriority", S),
        ("lo_shippriority", I),
        ("lo_quantity", I),
        ("lo_extendedprice", I),
        ("lo_ordtotalprice", I),
        ("lo_discount", I),
        ("lo_revenue", I),
        ("lo_supplycost", I),
        ("lo_tax", I),
        ("lo_commitdate", I),
        ("lo_shipmode", S),
    ])
});

static CUSTOMER: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(&[
        ("c_custkey", I),
        ("c_name", S),
        ("c_address", S),
        ("c_city", S),
        ("c_nation", S),
        ("c_region", S),
        ("c_phone", S),
        ("c_mktsegment", S),
    ])
});

static SUPPLIER: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(&[
        ("s_suppkey", I),
        ("s_name", S),
        ("s_address", S),
        ("s_city", S),
        ("s_nation", S),
        ("s_region", S),
        ("s_phone", S),
    ])
});

static PART: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(&[
        ("p_partkey", I),
        ("p_name", S),
        ("p_mfgr", S),
        ("p_category", S),
        ("p_brand1", S),
        ("p_color", S),
        ("p_type", S),
        ("p_size", I),
        ("p_container", S),
    ])
});

static DWDATE: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(&[
        ("d_datekey", I),
        ("d_date", S),
        ("d_dayofweek", S),
        ("d_month", S),
        ("d_year", I),
        ("d_yearmonthnum", I),
        ("d_yearmonth", S),
        ("d_daynuminweek", I),
        ("d_daynuminmonth", I),
        ("d_daynuminyear", I),
        ("d_monthnuminyear", I),
        ("d_weeknuminyear", I),
        ("d_sellingseason", S),
        ("d_lastdayinweekfl", I),
        ("d_lastdayinmonthfl", I),
        ("d_holidayfl", I),
        ("d_weekdayfl", I),
    ])
});

/// Column builders of one batch, in schema order.
struct Columns {
    schema: SchemaRef,
    ints: Vec<Int32Builder>,
    strings: Vec<StringBuilder>,
    rows: usize,
}

/// One value of a row under construction.
enum Value<'a> {
    I(i64),
    S(&'a str),
}

impl Columns {
    fn new(schema: &SchemaRef) -> Self {
        let count = |t: &DataType| {
            schema
                .fields()
                .iter()
                .filter(|f| f.data_type() == t)
                .count()
        };
        Self {
            schema: Arc::clone(schema),
            ints: (0..count(&I)).map(|_| Int32Builder::new()).collect(),
            strings: (0..count(&S)).map(|_| StringBuilder::new()).collect(),
            rows: 0,
        }
    }

    /// Appends one row; the values follow the schema's column order.
    fn push(&mut self, row: &[Value<'_>]) -> anyhow::Result<()> {
        let (mut i, mut s) = (0, 0);
        for value in row {
            match value {
                Value::I(v) => {
                    let v = i32::try_from(*v).with_context(|| {
                        format!("{v} does not fit the INTEGER column it is generated for")
                    })?;
                    self.ints[i].append_value(v);
                    i += 1;
                }
                Value::S(v) => {
                    self.strings[s].append_value(v);
                    s += 1;
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<RecordBatch> {
        let (mut i, mut s) = (0, 0);
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                if f.data_type() == &I {
                    i += 1;
                    Arc::new(self.ints[i - 1].finish()) as ArrayRef
                } else {
                    s += 1;
                    Arc::new(self.strings[s - 1].finish()) as ArrayRef
                }
            })
            .collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Collects the rows of `fill` into batches of at most [`BATCH_ROWS`] rows.
    fn collect(
        schema: &SchemaRef,
        fill: impl FnOnce(&mut dyn FnMut(&[Value<'_>]) -> anyhow::Result<()>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<RecordBatch>> {
        let mut columns = Columns::new(schema);
        let mut batches = Vec::new();
        fill(&mut |row| {
            columns.push(row)?;
            if columns.rows == BATCH_ROWS {
                batches.push(columns.finish()?);
            }
            Ok(())
        })?;
        if columns.rows > 0 {
            batches.push(columns.finish()?);
        }
        Ok(batches)
    }
}

/// A TPC-H date as a yyyymmdd integer.
fn yyyymmdd(date: TPCHDate) -> i64 {
    let day = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")
        + Days::new(date.to_unix_epoch() as u64);
    i64::from(day.year() * 10000 + day.month() as i32 * 100 + day.day() as i32)
}

/// Nation key → (nation name, region name).
fn nations() -> HashMap<i64, (String, String)> {
    let regions: HashMap<i64, String> = RegionGenerator::new(1.0, 1, 1)
        .iter()
        .map(|r| (r.r_regionkey, r.r_name.to_string()))
        .collect();
    NationGenerator::new(1.0, 1, 1)
        .iter()
        .map(|n| {
            let region = regions.get(&n.n_regionkey).cloned().unwrap_or_default();
            (n.n_nationkey, (n.n_name.to_string(), region))
        })
        .collect()
}

/// SSB city: the nation name cut or padded to 9 characters, then `key % 10`.
fn city(nation: &str, key: i64) -> String {
    let mut city: String = nation.chars().take(9).collect();
    while city.chars().count() < 9 {
        city.push(' ');
    }
    city.push_str(&(key % 10).to_string());
    city
}

/// Generates the five SSB tables at scale factor `sf` into `dir`.
pub(crate) fn generate(
    dir: &Path,
    sf: f64,
    progress: &MultiProgress,
) -> anyhow::Result<Vec<TableSummary>> {
    let nations = nations();
    let nation = |key: i64| -> anyhow::Result<&(String, String)> {
        nations
            .get(&key)
            .with_context(|| format!("unknown nation key {key}"))
    };
    let lineorder_parts = part_count(6_000_000.0, sf);
    let jobs = vec![
        TableJob {
            name: "dwdate",
            schema: Arc::clone(&DWDATE),
            parts: 1,
            rows_estimate: 2557,
            make_part: Box::new(|_| dwdate()),
        },
        TableJob {
            name: "supplier",
            schema: Arc::clone(&SUPPLIER),
            parts: part_count(10_000.0, sf),
            rows_estimate: (10_000.0 * sf) as u64,
            make_part: Box::new(|part| {
                let parts = part_count(10_000.0, sf);
                Columns::collect(&SUPPLIER, |push| {
                    for s in SupplierGenerator::new(sf, part, parts).iter() {
                        let (n, r) = nation(s.s_nationkey)?;
                        push(&[
                            Value::I(s.s_suppkey),
                            Value::S(&s.s_name.to_string()),
                            Value::S(&s.s_address.to_string()),
                            Value::S(&city(n, s.s_suppkey)),
                            Value::S(n),
                            Value::S(r),
                            Value::S(&s.s_phone.to_string()),
                        ])?;
                    }
                    Ok(())
                })
            }),
        },
        TableJob {
            name: "customer",
            schema: Arc::clone(&CUSTOMER),
            parts: part_count(150_000.0, sf),
            rows_estimate: (150_000.0 * sf) as u64,
            make_part: Box::new(|part| {
                let parts = part_count(150_000.0, sf);
                Columns::collect(&CUSTOMER, |push| {
                    for c in CustomerGenerator::new(sf, part, parts).iter() {
                        let (n, r) = nation(c.c_nationkey)?;
                        push(&[
                            Value::I(c.c_custkey),
                            Value::S(&c.c_name.to_string()),
                            Value::S(&c.c_address.to_string()),
                            Value::S(&city(n, c.c_custkey)),
                            Value::S(n),
                            Value::S(r),
                            Value::S(&c.c_phone.to_string()),
                            Value::S(c.c_mktsegment),
                        ])?;
                    }
                    Ok(())
                })
            }),
        },
        TableJob {
            name: "part",
            schema: Arc::clone(&PART),
            parts: part_count(200_000.0, sf),
            rows_estimate: (200_000.0 * sf) as u64,
            make_part: Box::new(|part| {
                let parts = part_count(200_000.0, sf);
                Columns::collect(&PART, |push| {
                    for p in PartGenerator::new(sf, part, parts).iter() {
                        let name = p.p_name.to_string();
                        let mut words = name.split(' ');
                        let color = words.next().unwrap_or_default();
                        let short_name = format!("{color} {}", words.next().unwrap_or_default());
                        let mfgr = p.p_mfgr.to_string();
                        let brand = p.p_brand.to_string();
                        let category = format!("MFGR#{}", &brand[brand.len() - 2..]);
                        push(&[
                            Value::I(p.p_partkey),
                            Value::S(&short_name),
                            Value::S(&format!("MFGR#{}", &mfgr[mfgr.len() - 1..])),
                            Value::S(&category),
                            Value::S(&format!("{category}{}", (p.p_partkey - 1) % 40 + 1)),
                            Value::S(color),
                            Value::S(p.p_type),
                            Value::I(i64::from(p.p_size)),
                            Value::S(p.p_container),
                        ])?;
                    }
                    Ok(())
                })
            }),
        },
        TableJob {
            name: "lineorder",
            schema: Arc::clone(&LINEORDER),
            parts: lineorder_parts,
            rows_estimate: (6_000_000.0 * sf) as u64,
            make_part: Box::new(move |part| lineorder(sf, part, lineorder_parts)),
        },
    ];
    jobs.into_iter()
        .map(|job| write_table(dir, job, progress))
        .collect()
}

/// One part of `lineorder`: the lineitems of one tpchgen part joined to the orders of the same
/// part (both come in orderkey order, so the join is a merge).
fn lineorder(sf: f64, part: i32, parts: i32) -> anyhow::Result<Vec<RecordBatch>> {
    let orders = OrderGenerator::new(sf, part, parts);
    let lineitems = LineItemGenerator::new(sf, part, parts);
    let mut orders = orders.iter().peekable();
    Columns::collect(&LINEORDER, |push| {
        for l in lineitems.iter() {
            while orders.peek().is_some_and(|o| o.o_orderkey < l.l_orderkey) {
                orders.next();
            }
            let o = orders
                .peek()
                .filter(|o| o.o_orderkey == l.l_orderkey)
                .with_context(|| format!("lineitem of order {} has no order", l.l_orderkey))?;
            let price = l.l_extendedprice.into_inner();
            let discount = l.l_discount.into_inner();
            push(&[
                Value::I(l.l_orderkey),
                Value::I(i64::from(l.l_linenumber)),
                Value::I(o.o_custkey),
                Value::I(l.l_partkey),
                Value::I(l.l_suppkey),
                Value::I(yyyymmdd(o.o_orderdate)),
                Value::S(o.o_orderpriority),
                Value::I(i64::from(o.o_shippriority)),
                Value::I(l.l_quantity),
                Value::I(price),
                Value::I(o.o_totalprice.into_inner()),
                Value::I(discount),
                Value::I(((price * (100 - discount)) as f64 / 100.0).round_ties_even() as i64),
                Value::I(
                    (6.0 * (price as f64 / l.l_quantity as f64) / 10.0).round_ties_even() as i64,
                ),
                Value::I(l.l_tax.into_inner()),
                Value::I(yyyymmdd(l.l_commitdate)),
                Value::S(l.l_shipmode),
            ])?;
        }
        Ok(())
    })
}

/// The date dimension: 1992-01-01 to 1998-12-31.
fn dwdate() -> anyhow::Result<Vec<RecordBatch>> {
    let first = NaiveDate::from_ymd_opt(1992, 1, 1).expect("valid date");
    let last = NaiveDate::from_ymd_opt(1998, 12, 31).expect("valid date");
    Columns::collect(&DWDATE, |push| {
        for d in first.iter_days().take_while(|d| *d <= last) {
            let (y, m, day) = (d.year(), d.month() as i32, d.day() as i32);
            // Sunday = 0 .. Saturday = 6, as DuckDB's dayofweek.
            let dow = d.weekday().num_days_from_sunday() as i32;
            let season = match m {
                12 => "Christmas",
                1 | 2 => "Winter",
                3..=5 => "Spring",
                6..=8 => "Summer",
                _ => "Fall",
            };
            let last_in_month = (d + Days::new(1)).month() != d.month();
            let holiday = matches!(
                (m, day),
                (1, 1) | (7, 4) | (11, 11) | (12, 24) | (12, 25) | (12, 31)
            );
            push(&[
                Value::I(i64::from(y * 10000 + m * 100 + day)),
                Value::S(&d.format("%B %-d, %Y").to_string()),
                Value::S(&d.format("%A").to_string()),
                Value::S(&d.format("%B").to_string()),
                Value::I(i64::from(y)),
                Value::I(i64::from(y * 100 + m)),
                Value::S(&d.format("%b%Y").to_string()),
                Value::I(i64::from(dow + 1)),
                Value::I(i64::from(day)),
                Value::I(i64::from(d.ordinal() as i32)),
                Value::I(i64::from(m)),
                Value::I(i64::from((d.ordinal() as i32 - 1) / 7 + 1)),
                Value::S(season),
                Value::I(i64::from(dow == 6)),
                Value::I(i64::from(last_in_month)),
                Value::I(i64::from(holiday)),
                Value::I(i64::from((1..=5).contains(&dow))),
            ])?;
        }
        Ok(())
    })
}
