//! `PARTITION BY RANGE (column) [INTERVAL (...)] (PARTITION p VALUES LESS THAN (...), ...)` as
//! a table's partition layout, checked against its columns.

use strata_storage::{ColumnDef, Interval, KeyType, Partitioning};

use crate::error::{Error, Result};
use crate::parser::{IntervalSpec, PartitionClause};
use crate::types::sql_name;

/// The partition layout `clause` declares for table `table` with `columns`.
pub(crate) fn partition_layout(
    table: &str,
    clause: &PartitionClause,
    columns: &[ColumnDef],
) -> Result<Partitioning> {
    let column = columns
        .iter()
        .find(|c| c.name == clause.column)
        .ok_or_else(|| {
            Error::Plan(format!(
                "PARTITION BY RANGE ({}): table {table} has no such column",
                clause.column
            ))
        })?;
    let key = KeyType::for_data_type(&column.data_type);
    let too_wide = |spec: IntervalSpec| {
        Error::Plan(format!(
            "INTERVAL {spec:?} is wider than column '{}' can count",
            column.name
        ))
    };
    let ticks = |n: i64, seconds: i64, u| {
        n.checked_mul(seconds)
            .and_then(|s| s.checked_mul(ticks_per_second(u)))
    };
    let interval = clause
        .interval
        .map(|i| match (i, key) {
            (IntervalSpec::Months(n), _) => Ok(Interval::Months(n)),
            (IntervalSpec::Days(n), Some(KeyType::Date)) => Ok(Interval::Width(n)),
            (IntervalSpec::Days(n), Some(KeyType::Timestamp(u))) => ticks(n, 86_400, u)
                .map(Interval::Width)
                .ok_or_else(|| too_wide(i)),
            (IntervalSpec::Hours(n), Some(KeyType::Timestamp(u))) => ticks(n, 3_600, u)
                .map(Interval::Width)
                .ok_or_else(|| too_wide(i)),
            (IntervalSpec::Number(n), Some(KeyType::Integer)) => Ok(Interval::Width(n)),
            (spec, _) => Err(Error::Plan(format!(
                "INTERVAL {spec:?} does not fit column '{}' of type {}",
                column.name,
                sql_name(&column.data_type, None)
            ))),
        })
        .transpose()?;
    Ok(Partitioning::new(
        table,
        &column.name,
        &column.data_type,
        &clause.partitions,
        interval,
    )?)
}

fn ticks_per_second(unit: arrow::datatypes::TimeUnit) -> i64 {
    match unit {
        arrow::datatypes::TimeUnit::Second => 1,
        arrow::datatypes::TimeUnit::Millisecond => 1_000,
        arrow::datatypes::TimeUnit::Microsecond => 1_000_000,
        arrow::datatypes::TimeUnit::Nanosecond => 1_000_000_000,
    }
}
