//! The order of rows inside a data file: by a sort key, or along a Z-order curve.
//!
//! A table with a B-tree index or a clustering key writes each data file sorted, so the
//! min/max statistics of its row groups and pages (and, after `OPTIMIZE`, of its files) cover
//! narrow ranges of the key and a lookup skips the rest. One key column, or a composite index,
//! sorts lexicographically: only the leading column prunes well. `CLUSTER BY (a, b)` on several
//! columns sorts by their Z-order instead (Delta's `ZORDER BY`, Snowflake's clustering): each
//! column's rank in the rows, its bits interleaved with the others', so a filter on any one of
//! them skips a similar share of the data.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, rank, take_record_batch};

use crate::error::Result;

/// `batch` sorted by the columns at `key` (ascending, NULLs last), or by their Z-order when
/// `curve` holds and there are several.
pub fn sort_rows(batch: &RecordBatch, key: &[usize], curve: bool) -> Result<RecordBatch> {
    if key.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let options = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let indices: UInt32Array = if curve && key.len() > 1 {
        let z = z_values(batch, key, options)?;
        let column: ArrayRef = Arc::new(arrow::array::UInt64Array::from(z));
        lexsort_to_indices(
            &[SortColumn {
                values: column,
                options: Some(options),
            }],
            None,
        )?
    } else {
        let columns: Vec<SortColumn> = key
            .iter()
            .map(|&i| SortColumn {
                values: Arc::clone(batch.column(i)),
                options: Some(options),
            })
            .collect();
        lexsort_to_indices(&columns, None)?
    };
    Ok(take_record_batch(batch, &indices)?)
}

/// Each row's position on the Z-order curve of the columns at `key`: the bits of the row's
/// rank in each column (scaled to the same width), interleaved.
fn z_values(batch: &RecordBatch, key: &[usize], options: SortOptions) -> Result<Vec<u64>> {
    let rows = batch.num_rows();
    let bits = z_bits(key.len());
    let mut scaled: Vec<Vec<u64>> = Vec::with_capacity(key.len());
    for &i in key {
        let ranks = rank(batch.column(i).as_ref(), Some(options))?;
        // Ranks run from 1 to `rows`; spread them over `bits` bits.
        let span = (rows as u128).max(1);
        scaled.push(
            ranks
                .iter()
                .map(|&r| ((u128::from(r.saturating_sub(1)) << bits) / span) as u64)
                .collect(),
        );
    }
    Ok(interleave(&scaled, bits))
}

/// Bits per column of a Z-order over `columns` columns: 64 shared out, at most 32 each.
pub fn z_bits(columns: usize) -> u32 {
    (64 / columns.max(1)).min(32) as u32
}

/// The Z-order value of each row: the low `bits` bits of each column's value, interleaved
/// from the most significant down (column 0's bit first).
pub fn interleave(columns: &[Vec<u64>], bits: u32) -> Vec<u64> {
    let rows = columns.first().map_or(0, Vec::len);
    let mut z = vec![0u64; rows];
    for (row, value) in z.iter_mut().enumerate() {
        for bit in (0..bits).rev() {
            for column in columns {
                *value = (*value << 1) | ((column[row] >> bit) & 1);
            }
        }
    }
    z
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use super::*;

    fn batch(a: Vec<Option<i32>>, b: Vec<&str>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(a)),
                Arc::new(StringArray::from(b)),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn sorts_by_the_key_with_nulls_last() {
        let rows = batch(
            vec![Some(3), None, Some(1), Some(3)],
            vec!["x", "y", "z", "a"],
        );
        let sorted = sort_rows(&rows, &[0, 1], false).expect("sort");
        let a: Vec<Option<i32>> = sorted
            .column(0)
            .as_primitive::<Int32Type>()
            .iter()
            .collect();
        let b: Vec<&str> = sorted
            .column(1)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(a, vec![Some(1), Some(3), Some(3), None]);
        assert_eq!(b, vec!["z", "a", "x", "y"]);
    }

    /// On a 16 x 16 grid, the Z-order keeps each quadrant's rows together: the first quarter
    /// of the sorted rows is the low quadrant of both columns.
    #[test]
    fn z_order_groups_quadrants() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..16 {
            for j in 0..16 {
                a.push(Some(15 - i));
                b.push(["p", "q", "r", "s", "t", "u", "v", "w"][(j / 2) as usize]);
            }
        }
        let rows = batch(a, b);
        let sorted = sort_rows(&rows, &[0, 1], true).expect("sort");
        assert_eq!(sorted.num_rows(), 256);
        let first: Vec<(i32, String)> = (0..64)
            .map(|r| {
                (
                    sorted.column(0).as_primitive::<Int32Type>().value(r),
                    sorted.column(1).as_string::<i32>().value(r).to_string(),
                )
            })
            .collect();
        assert!(
            first.iter().all(|(a, b)| *a < 8 && b.as_str() < "t"),
            "{first:?}"
        );
    }
}
