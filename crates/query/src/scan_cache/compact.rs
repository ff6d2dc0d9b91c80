//! How the scan cache keeps a column small: cheap encodings whose decoding costs less than a
//! pass over the values.
//!
//! Decoded Parquet is wide: a `DECIMAL(15, 2)` is 16 bytes a value, a date key or a 64-bit id 8,
//! and a string of a few distinct values (a ship mode, a status flag) a 16-byte view per row.
//! Two encodings take most of that back:
//!
//! - **Narrow integers**: integers, dates and decimals of precision up to 18 whose values span
//!   less than 2^32 are kept as unsigned offsets from the column's minimum, in 1, 2 or 4 bytes.
//!   Serving adds the minimum back, a loop the compiler vectorizes.
//! - **Dictionary strings**: a string view column with at most 65,536 distinct values is kept
//!   as 1- or 2-byte keys into its distinct values. Serving gathers each key's ready-made
//!   16-byte view, which points into the one buffer of distinct values: no string is copied.
//!
//! Anything else (floats, high-cardinality strings, nested types) is kept as it was read.

use std::sync::Arc;

use ahash::AHashMap;
use arrow::array::{
    Array, ArrayAccessor, ArrayRef, ArrowPrimitiveType, AsArray, LargeStringArray, PrimitiveArray,
    StringArray, StringViewArray,
};
use arrow::buffer::ScalarBuffer;
use arrow::compute::FilterPredicate;
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type,
};
use arrow::error::ArrowError;

/// A cached column of one data file, in its compact form.
#[derive(Debug)]
pub(crate) enum CompactColumn {
    /// As read.
    Plain(ArrayRef),
    /// Integer-like values as offsets (`UInt8`/`UInt16`/`UInt32`) from `base`.
    Narrow {
        offsets: ArrayRef,
        base: i128,
        data_type: DataType,
    },
    /// A string column as keys (`UInt8`/`UInt16`) into its distinct `values` (of the
    /// column's type).
    Dictionary { keys: ArrayRef, values: ArrayRef },
}

/// Distinct values a dictionary column may have.
const MAX_DISTINCT: usize = 1 << 16;
/// The rows looked at before a dictionary is tried: a column with more distinct values than
/// [`SAMPLE_DISTINCT`] among them is taken to have too many.
const SAMPLE_ROWS: usize = 4096;
const SAMPLE_DISTINCT: usize = 1024;

impl CompactColumn {
    /// `array` in the most compact encoding that fits it.
    pub(crate) fn encode(array: &ArrayRef) -> Self {
        let compact = match array.data_type() {
            DataType::Int64 => narrow(array.as_primitive::<Int64Type>()),
            DataType::Int32 => narrow(array.as_primitive::<Int32Type>()),
            DataType::Int16 => narrow(array.as_primitive::<Int16Type>()),
            DataType::Date32 => narrow(array.as_primitive::<Date32Type>()),
            DataType::Decimal128(precision, _) if *precision <= 18 => {
                narrow(array.as_primitive::<Decimal128Type>())
            }
            DataType::Utf8View => dictionary(array.as_string_view(), array),
            DataType::Utf8 => dictionary(array.as_string::<i32>(), array),
            DataType::LargeUtf8 => dictionary(array.as_string::<i64>(), array),
            _ => None,
        };
        compact
            .filter(|c| c.memory_size() < array.get_array_memory_size())
            .unwrap_or_else(|| Self::Plain(Arc::clone(array)))
    }

    /// The bytes it holds.
    pub(crate) fn memory_size(&self) -> usize {
        match self {
            Self::Plain(a) => a.get_array_memory_size(),
            Self::Narrow { offsets, .. } => offsets.get_array_memory_size(),
            Self::Dictionary { keys, values } => {
                keys.get_array_memory_size() + values.get_array_memory_size()
            }
        }
    }

    /// Rows `offset..offset + len`, decoded.
    pub(crate) fn slice(&self, offset: usize, len: usize) -> Result<ArrayRef, ArrowError> {
        match self {
            Self::Plain(a) => Ok(a.slice(offset, len)),
            Self::Narrow { offsets, .. } => self.decoded(offsets.slice(offset, len)),
            Self::Dictionary { keys, .. } => self.decoded(keys.slice(offset, len)),
        }
    }

    /// The rows of `offset..offset + len` that `keep` selects, decoded: the encoded values
    /// are filtered first, so rows a filter drops are never decoded.
    pub(crate) fn filter(
        &self,
        offset: usize,
        len: usize,
        keep: &FilterPredicate,
    ) -> Result<ArrayRef, ArrowError> {
        match self {
            Self::Plain(a) => keep.filter(&a.slice(offset, len)),
            Self::Narrow { offsets, .. } => self.decoded(keep.filter(&offsets.slice(offset, len))?),
            Self::Dictionary { keys, .. } => self.decoded(keep.filter(&keys.slice(offset, len))?),
        }
    }

    /// `encoded`, some of this column's offsets or keys, decoded.
    fn decoded(&self, encoded: ArrayRef) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Self::Plain(_) => encoded,
            Self::Narrow {
                base, data_type, ..
            } => match encoded.data_type() {
                DataType::UInt8 => widen::<UInt8Type>(&encoded, *base, data_type)?,
                DataType::UInt16 => widen::<UInt16Type>(&encoded, *base, data_type)?,
                _ => widen::<UInt32Type>(&encoded, *base, data_type)?,
            },
            Self::Dictionary { values, .. } => match (encoded.data_type(), values.data_type()) {
                (DataType::UInt8, DataType::Utf8View) => {
                    gather_views(encoded.as_primitive::<UInt8Type>(), values.as_string_view())
                }
                (_, DataType::Utf8View) => gather_views(
                    encoded.as_primitive::<UInt16Type>(),
                    values.as_string_view(),
                ),
                // Offsets and bytes are copied: `take` does it as well as anything.
                _ => arrow::compute::take(values, &encoded, None)?,
            },
        })
    }
}

/// The values of `array` as offsets from their minimum, in the narrowest unsigned type that
/// holds their span; `None` when the span needs more than 32 bits or there are no values.
fn narrow<T>(array: &PrimitiveArray<T>) -> Option<CompactColumn>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i128>,
{
    let min: i128 = arrow::compute::min(array)?.into();
    let max: i128 = arrow::compute::max(array)?.into();
    // Decoding adds in 64 bits: a decimal past its precision stays as it is.
    i64::try_from(min).ok()?;
    i64::try_from(max).ok()?;
    let span = max.checked_sub(min)?;
    // Null slots hold any value: their offsets wrap, and stay null.
    let offset = |v: T::Native| -> i128 { v.into().wrapping_sub(min) };
    let offsets: ArrayRef = if span <= i128::from(u8::MAX) {
        Arc::new(array.unary::<_, UInt8Type>(|v| offset(v) as u8))
    } else if span <= i128::from(u16::MAX) {
        Arc::new(array.unary::<_, UInt16Type>(|v| offset(v) as u16))
    } else if span <= i128::from(u32::MAX) {
        Arc::new(array.unary::<_, UInt32Type>(|v| offset(v) as u32))
    } else {
        return None;
    };
    Some(CompactColumn::Narrow {
        offsets,
        base: min,
        data_type: array.data_type().clone(),
    })
}

/// `offsets` (of type `N`) plus `base`, as an array of `data_type`.
fn widen<N>(offsets: &ArrayRef, base: i128, data_type: &DataType) -> Result<ArrayRef, ArrowError>
where
    N: ArrowPrimitiveType,
    N::Native: Into<i64>,
{
    let offsets = offsets.as_primitive::<N>();
    // Every value was `base + offset` of the target type, so the sums cannot overflow it.
    Ok(match data_type {
        DataType::Int64 => {
            let base = base as i64;
            Arc::new(offsets.unary::<_, Int64Type>(|v| base.wrapping_add(v.into())))
        }
        DataType::Int32 => {
            let base = base as i32;
            Arc::new(offsets.unary::<_, Int32Type>(|v| base.wrapping_add(v.into() as i32)))
        }
        DataType::Int16 => {
            let base = base as i16;
            Arc::new(offsets.unary::<_, Int16Type>(|v| base.wrapping_add(v.into() as i16)))
        }
        DataType::Date32 => {
            let base = base as i32;
            Arc::new(offsets.unary::<_, Date32Type>(|v| base.wrapping_add(v.into() as i32)))
        }
        DataType::Decimal128(precision, scale) => {
            let base = base as i64;
            let values = offsets
                .unary::<_, Decimal128Type>(|v| i128::from(base.wrapping_add(v.into())))
                .with_precision_and_scale(*precision, *scale)?;
            Arc::new(values)
        }
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a cached column of type {other} is not narrowed"
            )));
        }
    })
}

/// `array` (`original`) as keys into its distinct values, when it has few enough.
fn dictionary<'a, A>(array: A, original: &ArrayRef) -> Option<CompactColumn>
where
    A: ArrayAccessor<Item = &'a str>,
{
    let mut seen = ahash::AHashSet::new();
    for i in 0..array.len().min(SAMPLE_ROWS) {
        if array.is_valid(i) {
            seen.insert(array.value(i));
            if seen.len() > SAMPLE_DISTINCT {
                return None;
            }
        }
    }
    let mut ids: AHashMap<&str, u16> = AHashMap::new();
    let mut distinct: Vec<&str> = Vec::new();
    let mut keys: Vec<u16> = Vec::with_capacity(array.len());
    for i in 0..array.len() {
        if array.is_null(i) {
            keys.push(0);
            continue;
        }
        let value = array.value(i);
        let id = match ids.get(value) {
            Some(&id) => id,
            None => {
                if distinct.len() == MAX_DISTINCT {
                    return None;
                }
                let id = distinct.len() as u16;
                ids.insert(value, id);
                distinct.push(value);
                id
            }
        };
        keys.push(id);
    }
    let nulls = array.nulls().cloned();
    let keys: ArrayRef = if distinct.len() <= 256 {
        let narrow: Vec<u8> = keys.iter().map(|&k| k as u8).collect();
        Arc::new(PrimitiveArray::<UInt8Type>::new(narrow.into(), nulls))
    } else {
        Arc::new(PrimitiveArray::<UInt16Type>::new(keys.into(), nulls))
    };
    // One buffer of the distinct values, of the column's own type.
    let values: ArrayRef = match original.data_type() {
        DataType::Utf8View => Arc::new(StringViewArray::from_iter_values(distinct)),
        DataType::LargeUtf8 => Arc::new(LargeStringArray::from_iter_values(distinct)),
        _ => Arc::new(StringArray::from_iter_values(distinct)),
    };
    Some(CompactColumn::Dictionary { keys, values })
}

/// The views of `values` at `keys`: a string view array sharing `values`' buffers.
fn gather_views<K>(keys: &PrimitiveArray<K>, values: &StringViewArray) -> ArrayRef
where
    K: ArrowPrimitiveType,
    K::Native: Into<u16>,
{
    let table = values.views();
    // Null slots hold key 0, a valid index (a column of nulls only has no values: view 0).
    let views: ScalarBuffer<u128> = keys
        .values()
        .iter()
        .map(|&k| table.get(usize::from(k.into())).copied().unwrap_or(0))
        .collect();
    // SAFETY: each view is one of `values`' views, valid for its buffers; the null buffer has
    // the keys' length.
    let array = unsafe {
        StringViewArray::new_unchecked(views, values.data_buffers().to_vec(), keys.nulls().cloned())
    };
    Arc::new(array)
}

#[cfg(test)]
mod tests {
    use arrow::array::{BooleanArray, Decimal128Array, Float64Array, Int32Array, Int64Array};
    use arrow::compute::FilterBuilder;

    use super::*;

    fn round_trip(array: ArrayRef) -> CompactColumn {
        let column = CompactColumn::encode(&array);
        for (offset, len) in [(0, array.len()), (1, array.len() - 1), (2, array.len() - 3)] {
            let expected = array.slice(offset, len);
            assert_eq!(
                column.slice(offset, len).expect("decoded").as_ref(),
                expected.as_ref(),
                "{offset}+{len} of {array:?}"
            );
            // One row in three, and none (`0`).
            for every in [3, 0] {
                let mask: BooleanArray = (0..len)
                    .map(|i| Some(every > 0 && i % every == 1))
                    .collect();
                let keep = FilterBuilder::new(&mask).optimize().build();
                assert_eq!(
                    column.filter(offset, len, &keep).expect("decoded").as_ref(),
                    arrow::compute::filter(&expected, &mask)
                        .expect("filtered")
                        .as_ref(),
                    "{offset}+{len} of {array:?}, one row in {every}"
                );
            }
        }
        column
    }

    #[test]
    fn columns_come_back_as_they_were() {
        let ids = round_trip(Arc::new(Int64Array::from(vec![
            Some(1_000_000_000_000),
            None,
            Some(1_000_000_000_200),
            Some(1_000_000_000_000 + 70_000),
            Some(1_000_000_000_005),
        ])));
        assert!(matches!(ids, CompactColumn::Narrow { .. }));
        let prices = Decimal128Array::from(vec![
            Some(-12_345),
            Some(99_999_999),
            None,
            Some(0),
            Some(1),
        ])
        .with_precision_and_scale(15, 2)
        .unwrap();
        assert!(matches!(
            round_trip(Arc::new(prices)),
            CompactColumn::Narrow { .. }
        ));
        // A span of 2^32 - 1 in 64-bit values, and one that gains nothing in 32-bit ones.
        let extremes = Int64Array::from(vec![i64::from(i32::MIN), i64::from(i32::MAX), 0, 1, -1]);
        assert!(matches!(
            round_trip(Arc::new(extremes)),
            CompactColumn::Narrow { .. }
        ));
        let extremes = Int32Array::from(vec![i32::MIN, i32::MAX, 0, 1, -1]);
        assert!(matches!(
            round_trip(Arc::new(extremes)),
            CompactColumn::Plain(_)
        ));
        let wide = Int64Array::from(vec![i64::MIN, i64::MAX, 0, 1, 2]);
        assert!(matches!(
            round_trip(Arc::new(wide)),
            CompactColumn::Plain(_)
        ));
        let floats = Float64Array::from(vec![1.5, 2.5, 3.5, 4.5]);
        assert!(matches!(
            round_trip(Arc::new(floats)),
            CompactColumn::Plain(_)
        ));
        let nulls = Int64Array::from(vec![None, None, None, None]);
        round_trip(Arc::new(nulls));

        let modes: Vec<Option<&str>> = (0..5000)
            .map(|i| match i % 4 {
                0 => Some("TRUCK"),
                1 => None,
                2 => Some("a much longer ship mode than twelve bytes"),
                _ => Some(""),
            })
            .collect();
        let modes = round_trip(Arc::new(StringViewArray::from(modes)));
        assert!(matches!(modes, CompactColumn::Dictionary { .. }));
        let plain: Vec<Option<&str>> = (0..5000)
            .map(|i| [Some("A"), None, Some("R")][i % 3])
            .collect();
        let plain = round_trip(Arc::new(StringArray::from(plain.clone())));
        assert!(matches!(plain, CompactColumn::Dictionary { .. }));
        let unique: Vec<String> = (0..5000).map(|i| format!("comment number {i}")).collect();
        let unique = StringViewArray::from_iter_values(unique.iter());
        assert!(matches!(
            round_trip(Arc::new(unique)),
            CompactColumn::Plain(_)
        ));
    }

    #[test]
    fn compact_columns_are_smaller() {
        let keys: Vec<i64> = (0..100_000).map(|i| 5_000_000 + i % 60_000).collect();
        let keys: ArrayRef = Arc::new(Int64Array::from(keys));
        let column = CompactColumn::encode(&keys);
        assert!(column.memory_size() * 3 <= keys.get_array_memory_size());
        let flags: Vec<&str> = (0..100_000).map(|i| ["A", "N", "R"][i % 3]).collect();
        let views: ArrayRef = Arc::new(StringViewArray::from_iter_values(flags.iter()));
        let column = CompactColumn::encode(&views);
        assert!(column.memory_size() * 10 <= views.get_array_memory_size());
        let strings: ArrayRef = Arc::new(StringArray::from_iter_values(flags));
        let column = CompactColumn::encode(&strings);
        assert!(column.memory_size() * 4 <= strings.get_array_memory_size());
    }
}
