//! SQL column types ↔ Arrow types, and log statistics ↔ DataFusion scalars.
//!
//! Strata accepts the type names warehouse users write (Postgres, MySQL, Snowflake spellings)
//! and stores a small set of Arrow types: strings are `Utf8`, timestamps are microseconds (as in
//! Postgres and Snowflake), JSON is `Utf8` marked with `strata.sql_type = JSON`.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    CharacterLength, DataType as SqlType, ExactNumberInfo, TimezoneInfo,
};
use strata_storage::StatValue;

use crate::error::{Error, Result};

/// Largest decimal precision Arrow's `Decimal128` holds.
const MAX_DECIMAL128_PRECISION: u64 = 38;

/// The Arrow type of a SQL column type, and the SQL spelling to remember when Arrow loses it.
pub(crate) fn arrow_type(sql: &SqlType, column: &str) -> Result<(DataType, Option<String>)> {
    let ts = |tz: &TimezoneInfo| match tz {
        TimezoneInfo::WithTimeZone | TimezoneInfo::Tz => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        _ => DataType::Timestamp(TimeUnit::Microsecond, None),
    };
    let t = match sql {
        SqlType::BigInt(_) | SqlType::Int8(_) | SqlType::Int64 => DataType::Int64,
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) | SqlType::Int32 => {
            DataType::Int32
        }
        SqlType::SmallInt(_) | SqlType::Int2(_) | SqlType::Int16 => DataType::Int16,
        SqlType::TinyInt(_) => DataType::Int8,
        SqlType::Decimal(info) | SqlType::Numeric(info) | SqlType::Dec(info) => {
            let (p, s) = match info {
                ExactNumberInfo::None => (38, 0),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            if p == 0 || p > MAX_DECIMAL128_PRECISION || s < 0 || s as u64 > p {
                return Err(Error::Unsupported(format!(
                    "column '{column}': DECIMAL({p},{s}) is out of range (precision 1 to 38, scale 0 to precision)"
                )));
            }
            DataType::Decimal128(p as u8, s as i8)
        }
        SqlType::Double(_)
        | SqlType::DoublePrecision
        | SqlType::Float8
        | SqlType::Float64
        | SqlType::Float(_) => DataType::Float64,
        SqlType::Real | SqlType::Float4 | SqlType::Float32 => DataType::Float32,
        SqlType::Varchar(len)
        | SqlType::CharVarying(len)
        | SqlType::CharacterVarying(len)
        | SqlType::Nvarchar(len) => {
            let spelled = match len {
                Some(CharacterLength::IntegerLength { length, .. }) => {
                    Some(format!("VARCHAR({length})"))
                }
                _ => None,
            };
            return Ok((DataType::Utf8, spelled));
        }
        SqlType::Char(_) | SqlType::Character(_) | SqlType::Text | SqlType::String(_) => {
            DataType::Utf8
        }
        SqlType::Boolean | SqlType::Bool => DataType::Boolean,
        SqlType::Date => DataType::Date32,
        SqlType::Timestamp(_, tz) => ts(tz),
        SqlType::TimestampNtz(_) | SqlType::Datetime(_) => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        SqlType::JSON | SqlType::JSONB => return Ok((DataType::Utf8, Some("JSON".to_string()))),
        other => {
            return Err(Error::Unsupported(format!(
                "column '{column}': type {other} is not supported (use BIGINT, INT, SMALLINT, DECIMAL(p,s), DOUBLE, FLOAT, VARCHAR(n), TEXT, BOOLEAN, DATE, TIMESTAMP or JSON)"
            )));
        }
    };
    Ok((t, None))
}

/// Refuses a type a table column cannot have (nested and binary values), naming the column.
pub(crate) fn check_storable(t: &DataType, column: &str) -> Result<()> {
    use DataType::*;
    match t {
        Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Float32
        | Float64
        | Decimal128(_, _)
        | Utf8
        | Boolean
        | Date32
        | Timestamp(TimeUnit::Microsecond, _) => Ok(()),
        other => Err(Error::Unsupported(format!(
            "column '{column}' holds {other} values, which a table column cannot hold; add it \
             yourself as JSON or VARCHAR (ALTER TABLE ... ADD COLUMN) and load it as text"
        ))),
    }
}

/// The storage type for a column computed by a query (`CREATE TABLE AS`).
pub(crate) fn storage_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::Timestamp(
            TimeUnit::Nanosecond | TimeUnit::Millisecond | TimeUnit::Second,
            tz,
        ) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::Dictionary(_, v) => storage_type(v),
        DataType::Null => DataType::Utf8,
        other => other.clone(),
    }
}

/// Nullable columns for the fields of a query result or an Arrow stream, in storage types.
pub(crate) fn column_defs(fields: &arrow::datatypes::Fields) -> Vec<strata_storage::ColumnDef> {
    fields
        .iter()
        .map(|f| strata_storage::ColumnDef {
            name: f.name().clone(),
            data_type: storage_type(f.data_type()),
            nullable: true,
            sql_type: None,
            field_id: 0,
            default: None,
            initial_default: None,
            comment: None,
            tags: Default::default(),
        })
        .collect()
}

/// The SQL name of a column type, as `DESCRIBE` shows it: as the table spelled it, or from
/// its Arrow type.
pub(crate) fn sql_name(t: &DataType, spelled: Option<&str>) -> String {
    match spelled {
        Some(s) => s.to_string(),
        None => strata_storage::sql_type_name(t),
    }
}

/// A log statistic as a scalar of the column type; `None` if it does not fit.
pub(crate) fn scalar(value: &StatValue, t: &DataType) -> Option<ScalarValue> {
    Some(match (value, t) {
        (StatValue::Int(v), DataType::Int8) => ScalarValue::Int8(Some(i8::try_from(*v).ok()?)),
        (StatValue::Int(v), DataType::Int16) => ScalarValue::Int16(Some(i16::try_from(*v).ok()?)),
        (StatValue::Int(v), DataType::Int32) => ScalarValue::Int32(Some(i32::try_from(*v).ok()?)),
        (StatValue::Int(v), DataType::Int64) => ScalarValue::Int64(Some(*v)),
        (StatValue::UInt(v), DataType::UInt8) => ScalarValue::UInt8(Some(u8::try_from(*v).ok()?)),
        (StatValue::UInt(v), DataType::UInt16) => {
            ScalarValue::UInt16(Some(u16::try_from(*v).ok()?))
        }
        (StatValue::UInt(v), DataType::UInt32) => {
            ScalarValue::UInt32(Some(u32::try_from(*v).ok()?))
        }
        (StatValue::UInt(v), DataType::UInt64) => ScalarValue::UInt64(Some(*v)),
        (StatValue::Int(v), DataType::Date32) => ScalarValue::Date32(Some(i32::try_from(*v).ok()?)),
        (StatValue::Int(v), DataType::Timestamp(unit, tz)) => match unit {
            TimeUnit::Second => ScalarValue::TimestampSecond(Some(*v), tz.clone()),
            TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(*v), tz.clone()),
            TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(*v), tz.clone()),
            TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(*v), tz.clone()),
        },
        (StatValue::Float(v), DataType::Float64) => ScalarValue::Float64(Some(*v)),
        (StatValue::Float(v), DataType::Float32) => ScalarValue::Float32(Some(*v as f32)),
        (StatValue::Decimal(v), DataType::Decimal128(p, s)) => {
            ScalarValue::Decimal128(Some(v.parse().ok()?), *p, *s)
        }
        (StatValue::Str(v), DataType::Utf8) => ScalarValue::Utf8(Some(v.clone())),
        (StatValue::Bool(v), DataType::Boolean) => ScalarValue::Boolean(Some(*v)),
        _ => return None,
    })
}

/// A partition key (`i64` in the column unit) as a scalar of the column type.
pub(crate) fn key_scalar(key: i64, t: &DataType) -> Option<ScalarValue> {
    match t {
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => {
            scalar(&StatValue::UInt(u64::try_from(key).ok()?), t)
        }
        _ => scalar(&StatValue::Int(key), t),
    }
}
