//! `date_dimension(start, end)`: the date dimension of a star schema, one row per day.
//!
//! Every warehouse needs one and every team writes it by hand; this table function produces the
//! classic columns for any range of dates, so a dimension is one statement:
//!
//! ```sql
//! CREATE TABLE dim_date AS SELECT * FROM date_dimension('2020-01-01', '2030-12-31');
//! ```
//!
//! Weeks are ISO 8601 (Monday first, week 1 holds the year's first Thursday), day-of-week is
//! 1 (Monday) to 7 (Sunday), names are English.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Date32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, NaiveDate, Weekday};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;

/// The most days one call produces (about 270 years).
const MAX_DAYS: i64 = 100_000;

/// The `date_dimension` table function.
#[derive(Debug, Default)]
pub(crate) struct DateDimension;

impl TableFunctionImpl for DateDimension {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [start, end] = args.exprs() else {
            return plan_err!(
                "date_dimension takes two dates: date_dimension('2020-01-01', '2030-12-31')"
            );
        };
        let (start, end) = (date_argument(start)?, date_argument(end)?);
        let days = (end - start).num_days() + 1;
        if days < 1 {
            return plan_err!("date_dimension: the end date {end} is before the start {start}");
        }
        if days > MAX_DAYS {
            return plan_err!("date_dimension: {days} days is more than the {MAX_DAYS} allowed");
        }
        let batch = days_batch(start, days as usize)?;
        Ok(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?))
    }
}

/// A date given as `'2024-01-31'` or `DATE '2024-01-31'`.
fn date_argument(expr: &Expr) -> Result<NaiveDate> {
    let text = match expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => s.clone(),
        Expr::Literal(ScalarValue::Date32(Some(d)), _) => {
            return NaiveDate::from_num_days_from_ce_opt(d + 719_163).ok_or_else(|| {
                DataFusionError::Plan(format!("date_dimension: day {d} is out of range"))
            });
        }
        Expr::Cast(c) => return date_argument(&c.expr),
        other => {
            return plan_err!("date_dimension takes literal dates, got {other}");
        }
    };
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|e| {
        DataFusionError::Plan(format!(
            "date_dimension: '{text}' is not a date (YYYY-MM-DD): {e}"
        ))
    })
}

/// The columns of the dimension.
fn schema() -> SchemaRef {
    let int = |n: &str| Field::new(n, DataType::Int32, false);
    let text = |n: &str| Field::new(n, DataType::Utf8, false);
    let date = |n: &str| Field::new(n, DataType::Date32, false);
    let flag = |n: &str| Field::new(n, DataType::Boolean, false);
    Arc::new(Schema::new(vec![
        int("date_id"),
        date("date"),
        int("year"),
        int("quarter"),
        text("quarter_name"),
        int("month"),
        text("month_name"),
        text("month_short"),
        text("year_month"),
        int("day_of_month"),
        int("day_of_year"),
        int("day_of_week"),
        text("day_name"),
        text("day_short"),
        int("week_of_year"),
        int("iso_year"),
        flag("is_weekend"),
        flag("is_month_start"),
        flag("is_month_end"),
        date("first_day_of_month"),
        date("last_day_of_month"),
    ]))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Days since 1970-01-01, as Arrow's Date32 counts them.
fn epoch_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

fn last_day_of_month(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).expect("first of a month exists") - chrono::Duration::days(1)
}

fn day_name(d: NaiveDate) -> &'static str {
    match d.weekday() {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

fn days_batch(start: NaiveDate, days: usize) -> Result<RecordBatch> {
    let all: Vec<NaiveDate> = start.iter_days().take(days).collect();
    let int = |f: &dyn Fn(NaiveDate) -> i32| -> ArrayRef {
        Arc::new(Int32Array::from_iter_values(all.iter().map(|d| f(*d))))
    };
    let text = |f: &dyn Fn(NaiveDate) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(all.iter().map(|d| f(*d))))
    };
    let date = |f: &dyn Fn(NaiveDate) -> NaiveDate| -> ArrayRef {
        Arc::new(Date32Array::from_iter_values(
            all.iter().map(|d| epoch_days(f(*d))),
        ))
    };
    let flag = |f: &dyn Fn(NaiveDate) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from_iter(all.iter().map(|d| Some(f(*d)))))
    };
    let quarter = |d: NaiveDate| d.month0() / 3 + 1;
    let month_name = |d: NaiveDate| MONTHS[d.month0() as usize];
    // In the order of `schema()`.
    let columns = vec![
        int(&|d| d.year() * 10_000 + d.month() as i32 * 100 + d.day() as i32),
        date(&|d| d),
        int(&|d| d.year()),
        int(&|d| quarter(d) as i32),
        text(&|d| format!("Q{}", quarter(d))),
        int(&|d| d.month() as i32),
        text(&|d| month_name(d).to_string()),
        text(&|d| month_name(d)[..3].to_string()),
        text(&|d| format!("{:04}-{:02}", d.year(), d.month())),
        int(&|d| d.day() as i32),
        int(&|d| d.ordinal() as i32),
        int(&|d| d.weekday().number_from_monday() as i32),
        text(&|d| day_name(d).to_string()),
        text(&|d| day_name(d)[..3].to_string()),
        int(&|d| d.iso_week().week() as i32),
        int(&|d| d.iso_week().year()),
        flag(&|d| matches!(d.weekday(), Weekday::Sat | Weekday::Sun)),
        flag(&|d| d.day() == 1),
        flag(&|d| d == last_day_of_month(d)),
        date(&|d| d.with_day(1).expect("day 1 exists")),
        date(&last_day_of_month),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}
