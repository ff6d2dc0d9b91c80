//! Range partitioning: the partition layout of a table and the vectorised router that sends each
//! row of a batch to its partition.
//!
//! A partitioned table has one key column of an integer, DATE or TIMESTAMP type. Every key is
//! mapped to an `i64` in the column's own unit (days since the epoch for DATE, the column's
//! time unit for TIMESTAMP), so bounds, routing and pruning all work on plain integers.
//!
//! Partitions are half-open ranges `[lower, upper)` kept sorted and non-overlapping; `None`
//! stands for MINVALUE / MAXVALUE. A table may also have an *interval*: when a row fits no
//! partition, a partition covering the calendar (or numeric) bucket of its key is created, clipped
//! to the gap between its neighbours. Routing is a binary search of the bounds per row over the
//! key column, a counting sort of the rows by partition, one `take` of the batch in that order,
//! and a zero-copy slice per touched partition.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How keys of the partition column map to integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// Any integer column; the key is the value.
    Integer,
    /// DATE: days since 1970-01-01.
    Date,
    /// TIMESTAMP: ticks of the column's unit since the epoch.
    Timestamp(TimeUnit),
}

impl KeyType {
    /// The key type for a column type, or `None` when the type cannot be range-partitioned.
    pub fn for_data_type(data_type: &DataType) -> Option<Self> {
        match data_type {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => Some(KeyType::Integer),
            DataType::Date32 => Some(KeyType::Date),
            DataType::Timestamp(unit, _) => Some(KeyType::Timestamp(*unit)),
            _ => None,
        }
    }

    fn ticks_per_second(unit: TimeUnit) -> i64 {
        match unit {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        }
    }

    /// Parses a bound written in SQL (`'2024-02-01'`, `100`, `'2024-02-01 10:00:00'`).
    pub fn parse(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        match self {
            KeyType::Integer => text.parse().ok(),
            KeyType::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(|d| i64::from((d - epoch_date()).num_days() as i32)),
            KeyType::Timestamp(unit) => {
                let dt = [
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M",
                ]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
                .or_else(|| {
                    NaiveDate::parse_from_str(text, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })?;
                let utc = dt.and_utc();
                let per_sec = Self::ticks_per_second(*unit);
                let sub = i64::from(utc.timestamp_subsec_nanos()) / (1_000_000_000 / per_sec);
                utc.timestamp().checked_mul(per_sec)?.checked_add(sub)
            }
        }
    }

    /// Formats a key the way a user writes it.
    pub fn format(&self, key: i64) -> String {
        match self {
            KeyType::Integer => key.to_string(),
            KeyType::Date => date_of_days(key)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| key.to_string()),
            KeyType::Timestamp(unit) => {
                let per_sec = Self::ticks_per_second(*unit);
                let secs = key.div_euclid(per_sec);
                let nanos = key.rem_euclid(per_sec) * (1_000_000_000 / per_sec);
                DateTime::from_timestamp(secs, nanos as u32)
                    .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| key.to_string())
            }
        }
    }
}

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a valid date")
}

/// The date `days` after the epoch, or `None` outside chrono's range (Date32 reaches further).
fn date_of_days(days: i64) -> Option<NaiveDate> {
    epoch_date().checked_add_signed(chrono::Duration::try_days(days)?)
}

fn months_since_epoch(date: NaiveDate) -> i64 {
    i64::from(date.year() - 1970) * 12 + i64::from(date.month0())
}

fn first_day_of_month_index(month: i64) -> Option<NaiveDate> {
    let year = i32::try_from(1970 + month.div_euclid(12)).ok()?;
    let month0 = month.rem_euclid(12);
    NaiveDate::from_ymd_opt(year, month0 as u32 + 1, 1)
}

/// The width of automatic partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interval {
    /// Calendar months (a year is 12) for DATE and TIMESTAMP keys.
    Months(u32),
    /// A fixed width in key units: days for DATE, ticks for TIMESTAMP, values for integers.
    Width(i64),
}

/// One partition: the half-open key range `[lower, upper)`. `None` is MINVALUE / MAXVALUE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// The partition's name.
    pub name: String,
    /// Inclusive lower bound, as the key type's integer.
    pub lower: Option<i64>,
    /// Exclusive upper bound.
    pub upper: Option<i64>,
}

impl Partition {
    fn contains(&self, key: i64) -> bool {
        self.lower.is_none_or(|l| key >= l) && self.upper.is_none_or(|u| key < u)
    }
}

/// The partition layout of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partitioning {
    /// The key column.
    pub column: String,
    /// How the key column's values map to integers.
    pub key_type: KeyType,
    /// Automatic partitions, if any.
    pub interval: Option<Interval>,
    /// Sorted by bounds, never overlapping.
    pub partitions: Vec<Partition>,
}

/// A bound as written in `VALUES LESS THAN (...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpperBound {
    /// A value of the key column, as SQL text.
    Value(String),
    /// `MAXVALUE`: no upper bound.
    MaxValue,
}

/// How long a time-partitioned table keeps a partition: `partition_retention = '13 months'`.
/// A partition expires once the retention has passed since its upper bound (its newest
/// possible row); `ALTER TABLE ... APPLY RETENTION`, and `strata serve` on its own, drop the
/// partitions that have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    amount: u32,
    unit: RetentionUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetentionUnit {
    Hours,
    Days,
    Months,
    Years,
}

impl Retention {
    /// The table property that holds a retention.
    pub const PROPERTY: &'static str = "partition_retention";

    /// Parses `'13 months'`, `'90 days'`, `'2 years'`, `'36 hours'` (singular too).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(format!(
                "partition_retention '{text}' is not a period such as '13 months' (hours, days, \
                 weeks, months, years)"
            ))
        };
        let mut words = text.split_whitespace();
        let amount: u32 = words.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let unit = words.next().ok_or_else(bad)?.to_ascii_lowercase();
        if words.next().is_some() || amount == 0 {
            return Err(bad());
        }
        let (amount, unit) = match unit.trim_end_matches('s') {
            "hour" => (amount, RetentionUnit::Hours),
            "day" => (amount, RetentionUnit::Days),
            "week" => (amount.checked_mul(7).ok_or_else(bad)?, RetentionUnit::Days),
            "month" => (amount, RetentionUnit::Months),
            "year" => (amount, RetentionUnit::Years),
            _ => return Err(bad()),
        };
        Ok(Self { amount, unit })
    }

    /// `time` moved forward (`forward`) or back by the retention; `None` out of range.
    fn shift(&self, time: DateTime<chrono::Utc>, forward: bool) -> Option<DateTime<chrono::Utc>> {
        let n = self.amount;
        match self.unit {
            RetentionUnit::Hours | RetentionUnit::Days => {
                let hours = if self.unit == RetentionUnit::Days {
                    i64::from(n).checked_mul(24)?
                } else {
                    i64::from(n)
                };
                let delta = chrono::Duration::try_hours(hours)?;
                if forward {
                    time.checked_add_signed(delta)
                } else {
                    time.checked_sub_signed(delta)
                }
            }
            RetentionUnit::Months | RetentionUnit::Years => {
                let months = if self.unit == RetentionUnit::Years {
                    n.checked_mul(12)?
                } else {
                    n
                };
                let months = chrono::Months::new(months);
                if forward {
                    time.checked_add_months(months)
                } else {
                    time.checked_sub_months(months)
                }
            }
        }
    }

    /// When a partition of `layout` whose exclusive upper bound is `upper` expires: the
    /// retention after that bound. `None` for a partition without an upper bound, or a key
    /// that is not a date or time.
    pub fn expires_at(
        &self,
        layout: &Partitioning,
        upper: Option<i64>,
    ) -> Option<DateTime<chrono::Utc>> {
        let upper = upper?;
        let bound = match layout.key_type {
            KeyType::Integer => return None,
            KeyType::Date => date_of_days(upper)?.and_hms_opt(0, 0, 0)?.and_utc(),
            KeyType::Timestamp(unit) => {
                let per_sec = KeyType::ticks_per_second(unit);
                let secs = upper.div_euclid(per_sec);
                let nanos = upper.rem_euclid(per_sec) * (1_000_000_000 / per_sec);
                DateTime::from_timestamp(secs, u32::try_from(nanos).ok()?)?
            }
        };
        self.shift(bound, true)
    }

    /// The partitions of `layout` expired at `now`.
    pub fn expired<'a>(
        &self,
        layout: &'a Partitioning,
        now: DateTime<chrono::Utc>,
    ) -> Vec<&'a Partition> {
        layout
            .partitions
            .iter()
            .filter(|p| self.expires_at(layout, p.upper).is_some_and(|at| at <= now))
            .collect()
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.unit {
            RetentionUnit::Hours => "hour",
            RetentionUnit::Days => "day",
            RetentionUnit::Months => "month",
            RetentionUnit::Years => "year",
        };
        let s = if self.amount == 1 { "" } else { "s" };
        write!(f, "{} {unit}{s}", self.amount)
    }
}

impl Partitioning {
    /// Builds a layout from MySQL-style `PARTITION p VALUES LESS THAN (...)` clauses, in order.
    pub fn new(
        table: &str,
        column: &str,
        data_type: &DataType,
        clauses: &[(String, UpperBound)],
        interval: Option<Interval>,
    ) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidPartitioning {
            table: table.to_string(),
            reason,
        };
        let key_type = KeyType::for_data_type(data_type).ok_or_else(|| {
            invalid(format!(
                "column '{column}' has type {data_type}; range partitioning needs an integer, DATE or TIMESTAMP column"
            ))
        })?;
        match (interval, key_type) {
            (Some(Interval::Months(_)), KeyType::Integer) => {
                return Err(invalid(format!(
                    "a calendar interval needs a DATE or TIMESTAMP column, '{column}' is {data_type}"
                )));
            }
            (Some(Interval::Width(w)), _) if w <= 0 => {
                return Err(invalid("the interval must be positive".to_string()));
            }
            (Some(Interval::Months(0)), _) => {
                return Err(invalid("the interval must be positive".to_string()));
            }
            _ => {}
        }
        let mut partitions: Vec<Partition> = Vec::with_capacity(clauses.len());
        let mut lower = None;
        for (name, bound) in clauses {
            if partitions.iter().any(|p| p.name == *name) {
                return Err(invalid(format!("partition name '{name}' is used twice")));
            }
            if partitions.last().is_some_and(|p| p.upper.is_none()) {
                return Err(invalid(format!(
                    "partition '{name}' follows a MAXVALUE partition"
                )));
            }
            let upper = match bound {
                UpperBound::MaxValue => None,
                UpperBound::Value(text) => Some(key_type.parse(text).ok_or_else(|| {
                    invalid(format!(
                        "bound '{text}' of partition '{name}' is not a valid {data_type}"
                    ))
                })?),
            };
            if let (Some(l), Some(u)) = (lower, upper)
                && u <= l
            {
                return Err(invalid(format!(
                    "VALUES LESS THAN must be strictly increasing; partition '{name}' ends at {} which is not above {}",
                    key_type.format(u),
                    key_type.format(l)
                )));
            }
            partitions.push(Partition {
                name: name.clone(),
                lower,
                upper,
            });
            lower = upper;
        }
        if partitions.is_empty() && interval.is_none() {
            return Err(invalid(
                "PARTITION BY RANGE needs partition definitions or an INTERVAL".to_string(),
            ));
        }
        Ok(Self {
            column: column.to_string(),
            key_type,
            interval,
            partitions,
        })
    }

    /// The partition named `name`.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// Adds partitions after the last one (`ALTER TABLE ... ADD PARTITION`).
    pub fn add(&mut self, table: &str, clauses: &[(String, UpperBound)]) -> Result<()> {
        for (name, bound) in clauses {
            if self.partition(name).is_some() {
                return Err(Error::PartitionExists {
                    table: table.to_string(),
                    partition: name.clone(),
                });
            }
            let upper =
                match bound {
                    UpperBound::MaxValue => None,
                    UpperBound::Value(text) => {
                        Some(self.key_type.parse(text).ok_or_else(|| {
                            Error::InvalidPartitioning {
                                table: table.to_string(),
                                reason: format!(
                                    "bound '{text}' of partition '{name}' is not valid"
                                ),
                            }
                        })?)
                    }
                };
            let last = self.partitions.last();
            if last.is_some_and(|p| p.upper.is_none()) {
                return Err(Error::InvalidPartitioning {
                    table: table.to_string(),
                    reason: format!(
                        "cannot add partition '{name}' after the MAXVALUE partition '{}'",
                        last.map(|p| p.name.as_str()).unwrap_or_default()
                    ),
                });
            }
            let lower = last.and_then(|p| p.upper);
            if let (Some(l), Some(u)) = (lower, upper)
                && u <= l
            {
                return Err(Error::InvalidPartitioning {
                    table: table.to_string(),
                    reason: format!(
                        "VALUES LESS THAN must be above the last partition's bound {}",
                        self.key_type.format(l)
                    ),
                });
            }
            self.partitions.push(Partition {
                name: name.clone(),
                lower,
                upper,
            });
        }
        Ok(())
    }

    /// Removes a partition from the layout; its range is no longer accepted.
    pub fn drop_partition(&mut self, table: &str, name: &str) -> Result<Partition> {
        let pos = self
            .partitions
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| Error::PartitionNotFound {
                table: table.to_string(),
                partition: name.to_string(),
            })?;
        Ok(self.partitions.remove(pos))
    }

    /// Inserts a partition created by the interval, keeping the order. Idempotent: a partition
    /// with the same name and bounds is left alone (two writers may both create it).
    pub fn ensure(&mut self, partition: &Partition) -> Result<(), String> {
        if let Some(existing) = self.partition(&partition.name) {
            return if existing == partition {
                Ok(())
            } else {
                Err(format!(
                    "partition '{}' was redefined concurrently",
                    partition.name
                ))
            };
        }
        if self.partitions.iter().any(|p| overlaps(p, partition)) {
            return Err(format!(
                "partition '{}' overlaps a partition created concurrently",
                partition.name
            ));
        }
        let pos = self.partitions.partition_point(|p| {
            p.upper
                .is_some_and(|u| partition.lower.is_some_and(|l| u <= l))
        });
        self.partitions.insert(pos, partition.clone());
        Ok(())
    }

    fn index_of(&self, key: i64) -> Option<usize> {
        let i = self
            .partitions
            .partition_point(|p| p.upper.is_some_and(|u| u <= key));
        (i < self.partitions.len() && self.partitions[i].contains(key)).then_some(i)
    }

    /// The interval partition that would hold `key`, clipped to the gap it falls in.
    /// The partition NULL keys of an interval table go to: `p_min`, from MINVALUE to the
    /// first partition (or, on an empty table, to the start of the bucket holding the
    /// epoch), so that NULL keys, like every key below the first bucket, have a place.
    fn minvalue_partition(&self) -> Option<Partition> {
        self.interval?;
        let upper = match self.partitions.first() {
            Some(first) => first.lower?,
            None => self.interval_partition(0)?.lower.unwrap_or(0),
        };
        Some(Partition {
            name: "p_min".to_string(),
            lower: None,
            upper: Some(upper),
        })
    }

    fn interval_partition(&self, key: i64) -> Option<Partition> {
        let interval = self.interval?;
        let (start, end, name) = match (interval, self.key_type) {
            (Interval::Months(n), KeyType::Date) => {
                let (s, e, name) = month_bucket(date_of_days(key)?, n)?;
                (
                    Some((s - epoch_date()).num_days()),
                    Some((e - epoch_date()).num_days()),
                    name,
                )
            }
            (Interval::Months(n), KeyType::Timestamp(unit)) => {
                let per_day = KeyType::ticks_per_second(unit) * 86_400;
                let (s, e, name) = month_bucket(date_of_days(key.div_euclid(per_day))?, n)?;
                // A bucket reaching past the type's range is open on that side.
                (
                    (s - epoch_date()).num_days().checked_mul(per_day),
                    (e - epoch_date()).num_days().checked_mul(per_day),
                    name,
                )
            }
            (Interval::Width(w), key_type) => {
                // Near the ends of BIGINT the bucket's bounds do not exist: it is open there.
                let bucket = key.div_euclid(w);
                let start = bucket.checked_mul(w);
                let end = bucket.checked_add(1).and_then(|b| b.checked_mul(w));
                let at = start.unwrap_or(key);
                let name = match key_type {
                    KeyType::Integer if at < 0 => format!("p_neg{}", at.unsigned_abs()),
                    KeyType::Integer => format!("p_{at}"),
                    KeyType::Date => format!("p_{}", date_of_days(at)?.format("%Y_%m_%d")),
                    KeyType::Timestamp(unit) => {
                        let text = KeyType::Timestamp(unit).format(at);
                        format!("p_{}", text.replace(['-', ' ', ':'], "_"))
                    }
                };
                (start, end, name)
            }
            (Interval::Months(_), KeyType::Integer) => return None,
        };
        // Clip to the gap between the neighbours.
        let next = self
            .partitions
            .iter()
            .find(|p| p.lower.is_some_and(|l| l > key));
        let prev = self
            .partitions
            .iter()
            .rev()
            .find(|p| p.upper.is_some_and(|u| u <= key));
        let lower = match (prev.and_then(|p| p.upper), start) {
            (Some(u), Some(s)) => Some(u.max(s)),
            (u, s) => u.or(s),
        };
        let upper = match (next.and_then(|p| p.lower), end) {
            (Some(l), Some(e)) => Some(l.min(e)),
            (l, e) => l.or(e),
        };
        let mut name = name;
        if self.partition(&name).is_some() {
            let at = lower.unwrap_or(key);
            name = format!(
                "{name}_{}",
                self.key_type.format(at).replace(['-', ' ', ':'], "_")
            );
        }
        let partition = Partition { name, lower, upper };
        // Never a partition that would not hold the key it is made for.
        partition.contains(key).then_some(partition)
    }

    /// Converts a key column to `i64` keys.
    pub fn keys(&self, column: &ArrayRef) -> Result<Int64Array> {
        let as_int = match column.data_type() {
            DataType::Date32 => cast(&cast(column, &DataType::Int32)?, &DataType::Int64)?,
            DataType::Timestamp(_, _) => cast(column, &DataType::Int64)?,
            _ => cast(column, &DataType::Int64)?,
        };
        Ok(as_int
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to Int64 yields an Int64Array")
            .clone())
    }
}

fn overlaps(a: &Partition, b: &Partition) -> bool {
    let a_before_b = a.upper.is_some_and(|u| b.lower.is_some_and(|l| u <= l));
    let b_before_a = b.upper.is_some_and(|u| a.lower.is_some_and(|l| u <= l));
    !(a_before_b || b_before_a)
}

fn month_bucket(date: NaiveDate, months: u32) -> Option<(NaiveDate, NaiveDate, String)> {
    let n = i64::from(months);
    let start = months_since_epoch(date).div_euclid(n).checked_mul(n)?;
    let s = first_day_of_month_index(start)?;
    let e = first_day_of_month_index(start.checked_add(n)?)?;
    let name = if months.is_multiple_of(12) {
        format!("p_{}", s.format("%Y"))
    } else {
        format!("p_{}", s.format("%Y_%m"))
    };
    Some((s, e, name))
}

/// The rows of one batch, split by partition.
#[derive(Debug)]
pub struct RoutedBatch {
    /// Partition name and its rows, in partition order.
    pub parts: Vec<(String, RecordBatch)>,
    /// Interval partitions this batch created.
    pub created: Vec<Partition>,
}

/// Routes the rows of `batch` to partitions of `layout`, creating interval partitions as needed
/// (they are added to `layout`). `row_offset` numbers rows in error messages.
///
/// At most `max_new` partitions are created; one more fails with
/// [`Error::TooManyPartitions`]. Every round of the routing loop either routes all rows or
/// creates a partition that holds the row it missed, so the loop ends.
pub fn route(
    table: &str,
    layout: &mut Partitioning,
    batch: &RecordBatch,
    row_offset: usize,
    max_new: usize,
) -> Result<RoutedBatch> {
    let column_index =
        batch
            .schema()
            .index_of(&layout.column)
            .map_err(|_| Error::SchemaMismatch {
                table: table.to_string(),
                reason: format!("partition column '{}' is missing", layout.column),
            })?;
    let column = Arc::clone(batch.column(column_index));
    let keys = layout.keys(&column)?;
    let mut created = Vec::new();
    // Route; on a miss with an interval, create the partition and route again.
    let assignment: Vec<u32> = loop {
        let null_partition = layout
            .partitions
            .first()
            .filter(|p| p.lower.is_none())
            .map(|_| 0usize);
        let mut out = Vec::with_capacity(keys.len());
        let mut miss = None;
        for (row, key) in keys.iter().enumerate() {
            let index = match key {
                Some(k) => layout.index_of(k),
                None => null_partition,
            };
            match index {
                Some(i) => out.push(i as u32),
                None => {
                    miss = Some((row, key));
                    break;
                }
            }
        }
        match miss {
            None => break out,
            Some((row, key)) => {
                let new = match key {
                    Some(k) => layout.interval_partition(k),
                    None => layout.minvalue_partition(),
                };
                match new {
                    Some(_) if created.len() >= max_new => {
                        return Err(Error::TooManyPartitions {
                            table: table.to_string(),
                            max: max_new,
                        });
                    }
                    Some(p) => {
                        layout
                            .ensure(&p)
                            .map_err(|reason| Error::InvalidPartitioning {
                                table: table.to_string(),
                                reason,
                            })?;
                        created.push(p);
                    }
                    None => {
                        return Err(Error::NoPartitionForValue {
                            table: table.to_string(),
                            column: layout.column.clone(),
                            value: key.map_or("NULL".to_string(), |k| {
                                format!("'{}'", layout.key_type.format(k))
                            }),
                            row: row_offset + row + 1,
                        });
                    }
                }
            }
        }
    };
    // Counting sort of row indices by partition (input order kept within a partition), one
    // `take` of the whole batch in that order, then a zero-copy slice per partition.
    let partitions = layout.partitions.len();
    let mut starts = vec![0usize; partitions + 1];
    for p in &assignment {
        starts[*p as usize + 1] += 1;
    }
    for i in 0..partitions {
        starts[i + 1] += starts[i];
    }
    let used: Vec<usize> = (0..partitions)
        .filter(|&p| starts[p + 1] > starts[p])
        .collect();
    let sorted = if used.len() <= 1 {
        batch.clone()
    } else {
        let mut next = starts.clone();
        let mut order = vec![0u32; assignment.len()];
        for (row, p) in assignment.iter().enumerate() {
            let slot = &mut next[*p as usize];
            order[*slot] = row as u32;
            *slot += 1;
        }
        take_record_batch(batch, &UInt32Array::from(order))?
    };
    let parts = used
        .into_iter()
        .map(|p| {
            let name = layout.partitions[p].name.clone();
            (name, sorted.slice(starts[p], starts[p + 1] - starts[p]))
        })
        .collect();
    Ok(RoutedBatch { parts, created })
}

#[cfg(test)]
mod tests {
    /// Monthly partitions expire the retention after their upper bound, calendar months and
    /// all; a partition without an upper bound never does.
    #[test]
    fn retention_expires_partitions_after_their_upper_bound() {
        use chrono::TimeZone;
        let retention = Retention::parse("13 months").expect("parses");
        assert_eq!(retention.to_string(), "13 months");
        assert_eq!(
            Retention::parse("2 weeks").expect("parses").to_string(),
            "14 days"
        );
        for bad in ["", "13", "0 days", "3 fortnights", "1 day ago", "-1 days"] {
            assert!(Retention::parse(bad).is_err(), "{bad}");
        }
        let layout = Partitioning {
            column: "at".into(),
            key_type: KeyType::Date,
            interval: None,
            partitions: vec![
                Partition {
                    name: "jan".into(),
                    lower: None,
                    upper: KeyType::Date.parse("2024-02-01"),
                },
                Partition {
                    name: "feb".into(),
                    lower: KeyType::Date.parse("2024-02-01"),
                    upper: KeyType::Date.parse("2024-03-01"),
                },
                Partition {
                    name: "rest".into(),
                    lower: KeyType::Date.parse("2024-03-01"),
                    upper: None,
                },
            ],
        };
        let at = |y, m, d| chrono::Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
        assert_eq!(
            retention.expires_at(&layout, layout.partitions[0].upper),
            Some(at(2025, 3, 1))
        );
        let names = |now| -> Vec<String> {
            retention
                .expired(&layout, now)
                .into_iter()
                .map(|p| p.name.clone())
                .collect()
        };
        assert!(names(at(2025, 2, 28)).is_empty());
        assert_eq!(names(at(2025, 3, 1)), ["jan"]);
        assert_eq!(names(at(2099, 1, 1)), ["jan", "feb"]);
    }

    use super::*;
    use arrow::array::{Date32Array, Int64Array};
    use arrow::datatypes::{Field, Schema, TimeUnit};

    fn monthly() -> Partitioning {
        Partitioning::new(
            "events",
            "d",
            &DataType::Date32,
            &[
                ("p1".into(), UpperBound::Value("2024-02-01".into())),
                ("p2".into(), UpperBound::Value("2024-03-01".into())),
            ],
            None,
        )
        .unwrap()
    }

    fn batch(days: Vec<Option<i32>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Date32Array::from(days))]).unwrap()
    }

    fn day(text: &str) -> i32 {
        KeyType::Date.parse(text).unwrap() as i32
    }

    #[test]
    fn rows_go_to_the_partition_whose_range_holds_them() {
        let mut layout = monthly();
        let b = batch(vec![
            Some(day("2024-02-15")),
            Some(day("2024-01-31")),
            Some(day("2024-02-01")),
        ]);
        let routed = route("events", &mut layout, &b, 0, usize::MAX).unwrap();
        let names: Vec<_> = routed
            .parts
            .iter()
            .map(|(n, b)| (n.as_str(), b.num_rows()))
            .collect();
        assert_eq!(names, vec![("p1", 1), ("p2", 2)]);
    }

    #[test]
    fn a_row_above_the_last_bound_fails_naming_column_and_value() {
        let mut layout = monthly();
        let b = batch(vec![Some(day("2024-01-02")), Some(day("2024-03-01"))]);
        let err = route("events", &mut layout, &b, 10, usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("events") && err.contains("d = '2024-03-01'") && err.contains("row 12"),
            "{err}"
        );
    }

    #[test]
    fn interval_creates_calendar_month_partitions_clipped_to_gaps() {
        let mut layout = monthly();
        layout.interval = Some(Interval::Months(1));
        let b = batch(vec![Some(day("2024-05-20")), Some(day("2023-12-31"))]);
        let routed = route("events", &mut layout, &b, 0, usize::MAX).unwrap();
        let created: Vec<_> = routed.created.iter().map(|p| p.name.as_str()).collect();
        // p1 starts at MINVALUE, so December 2023 needs no new partition.
        assert_eq!(created, vec!["p_2024_05"]);
        let may = layout.partition("p_2024_05").unwrap();
        assert_eq!(KeyType::Date.format(may.lower.unwrap()), "2024-05-01");
        assert_eq!(KeyType::Date.format(may.upper.unwrap()), "2024-06-01");
        let names: Vec<_> = routed.parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["p1", "p_2024_05"]);
    }

    #[test]
    fn interval_partitions_are_clipped_to_the_gap_between_neighbours() {
        let mut layout =
            Partitioning::new("t", "d", &DataType::Date32, &[], Some(Interval::Months(1))).unwrap();
        layout
            .ensure(&Partition {
                name: "p_fixed".into(),
                lower: Some(i64::from(day("2024-05-10"))),
                upper: Some(i64::from(day("2024-05-20"))),
            })
            .unwrap();
        route(
            "t",
            &mut layout,
            &batch(vec![Some(day("2024-05-25"))]),
            0,
            usize::MAX,
        )
        .unwrap();
        let p = layout.partitions.last().unwrap();
        assert_eq!(KeyType::Date.format(p.lower.unwrap()), "2024-05-20");
        assert_eq!(KeyType::Date.format(p.upper.unwrap()), "2024-06-01");
    }

    #[test]
    fn integer_width_interval_names_by_lower_bound() {
        let mut layout =
            Partitioning::new("t", "k", &DataType::Int64, &[], Some(Interval::Width(100))).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![5, 150, -3, 199]))],
        )
        .unwrap();
        let routed = route("t", &mut layout, &b, 0, usize::MAX).unwrap();
        let names: Vec<_> = layout.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["p_neg100", "p_0", "p_100"]);
        assert_eq!(routed.parts.len(), 3);
    }

    #[test]
    fn null_keys_go_to_a_minvalue_partition_or_fail() {
        let mut layout = monthly();
        let routed = route("events", &mut layout, &batch(vec![None]), 0, usize::MAX).unwrap();
        assert_eq!(routed.parts[0].0, "p1");
        // An interval table makes a partition from MINVALUE for them.
        let mut interval_only =
            Partitioning::new("e", "d", &DataType::Date32, &[], Some(Interval::Months(1))).unwrap();
        let routed = route("e", &mut interval_only, &batch(vec![None]), 0, usize::MAX).unwrap();
        assert_eq!(routed.parts[0].0, "p_min");
        let p_min = interval_only.partition("p_min").unwrap();
        assert_eq!((p_min.lower, p_min.upper), (None, Some(0)));
        // Later, rows below the first month land there too, and NULLs keep going there.
        route(
            "e",
            &mut interval_only,
            &batch(vec![Some(day("2024-05-25")), None]),
            0,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(interval_only.partitions.len(), 2);
        // With partitions already there, p_min ends where the first one starts.
        let mut later =
            Partitioning::new("e", "d", &DataType::Date32, &[], Some(Interval::Months(1))).unwrap();
        route(
            "e",
            &mut later,
            &batch(vec![Some(day("2024-05-25"))]),
            0,
            usize::MAX,
        )
        .unwrap();
        route("e", &mut later, &batch(vec![None]), 0, usize::MAX).unwrap();
        let p_min = later.partition("p_min").unwrap();
        assert_eq!(p_min.upper, Some(i64::from(day("2024-05-01"))));
    }

    #[test]
    fn bounds_must_increase() {
        let err = Partitioning::new(
            "t",
            "d",
            &DataType::Date32,
            &[
                ("a".into(), UpperBound::Value("2024-02-01".into())),
                ("b".into(), UpperBound::Value("2024-01-01".into())),
            ],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("strictly increasing"));
    }

    fn integers(keys: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(keys))]).unwrap()
    }

    fn by_width(width: i64) -> Partitioning {
        Partitioning::new(
            "t",
            "k",
            &DataType::Int64,
            &[],
            Some(Interval::Width(width)),
        )
        .unwrap()
    }

    /// Every key of BIGINT, at both ends and around zero, lands in exactly one partition that
    /// holds it, for widths that divide and that do not divide the range.
    #[test]
    fn interval_routing_holds_the_extremes_of_bigint() {
        let keys = [
            i64::MIN,
            i64::MIN + 1,
            -11,
            -10,
            -1,
            0,
            9,
            i64::MAX - 1,
            i64::MAX,
        ];
        for width in [1, 3, 7, 10, i64::MAX / 2, i64::MAX] {
            let mut layout = by_width(width);
            let b = integers(keys.iter().copied().map(Some).collect());
            let routed = route("t", &mut layout, &b, 0, usize::MAX).unwrap();
            let rows: usize = routed.parts.iter().map(|(_, r)| r.num_rows()).sum();
            assert_eq!(rows, keys.len(), "width {width}");
            for k in keys {
                let holders = layout.partitions.iter().filter(|p| p.contains(k)).count();
                assert_eq!(
                    holders, 1,
                    "width {width}, key {k}: {:?}",
                    layout.partitions
                );
            }
            for p in &layout.partitions {
                let lower = p.lower.map_or(i128::from(i64::MIN), i128::from);
                let upper = p.upper.map_or(i128::from(i64::MAX) + 1, i128::from);
                assert!(upper - lower <= i128::from(width), "width {width}: {p:?}");
            }
        }
    }

    #[test]
    fn calendar_intervals_at_the_ends_of_date_and_timestamp_fail_or_hold_the_key() {
        for (data_type, keys) in [
            (
                DataType::Date32,
                vec![i64::from(i32::MIN), -1, 0, i64::from(i32::MAX)],
            ),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                vec![i64::MIN, -1, 0, i64::MAX],
            ),
        ] {
            let mut layout =
                Partitioning::new("t", "k", &data_type, &[], Some(Interval::Months(1))).unwrap();
            for k in keys {
                if let Some(p) = layout.interval_partition(k) {
                    assert!(p.contains(k), "{data_type} {k}: {p:?}");
                    layout.ensure(&p).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_statement_creates_at_most_its_cap_of_partitions() {
        let mut layout = by_width(1);
        let b = integers((0..50).map(Some).collect());
        let err = route("t", &mut layout, &b, 0, 20).unwrap_err();
        assert!(
            matches!(err, Error::TooManyPartitions { max: 20, .. }),
            "{err}"
        );
    }

    proptest::proptest! {
        /// Any keys under any width: routing ends, and every row lands in a partition that
        /// holds its key.
        #[test]
        fn interval_routing_puts_every_key_in_a_partition_that_holds_it(
            keys in proptest::collection::vec(proptest::option::of(proptest::num::i64::ANY), 1..50),
            width in 1i64..=i64::MAX,
        ) {
            let mut layout = by_width(width);
            let b = integers(keys.clone());
            match route("t", &mut layout, &b, 0, usize::MAX) {
                Ok(routed) => {
                    for (name, rows) in &routed.parts {
                        let p = layout.partition(name).unwrap();
                        let column = rows.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                        for k in column.iter().flatten() {
                            proptest::prop_assert!(p.contains(k), "{k} in {p:?}");
                        }
                        // No wider than the interval, counting an open end as the type's end;
                        // the partition from MINVALUE that NULL keys made is open below.
                        if p.name == "p_min" {
                            continue;
                        }
                        let lower = p.lower.map_or(i128::from(i64::MIN), i128::from);
                        let upper = p.upper.map_or(i128::from(i64::MAX) + 1, i128::from);
                        proptest::prop_assert!(upper - lower <= i128::from(width), "{p:?}");
                    }
                }
                // NULL keys too have a place: nothing fails.
                Err(e) => proptest::prop_assert!(false, "{e}"),
            }
        }
    }
}
