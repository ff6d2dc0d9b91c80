//! SCD Type 2 tables: how a table keeps every version of a row, as its metadata says.
//!
//! `CREATE TABLE ... WITH (scd = 2, natural_key = '...', tracked = '...')` declares one
//! ([`declare`]); [`ScdSpec`] reads the declaration back from the table's properties and
//! [`Layout`] finds the managed columns (surrogate key, `effective_date`, `end_date`,
//! `is_current`) in its schema. `APPLY CHANGES` maintains the history (in the statement layer)
//! and `FOR SYSTEM_TIME AS OF` reads it (in the catalog).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, TimestampMicrosecondArray};
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{DataType, Date32Type, Int64Type, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::ast::{
    CreateTable, CreateTableOptions, Expr as SqlExpr, SqlOption,
};
use strata_storage::{ColumnDef, Constraint, TableMetadata};

use crate::error::{Error, Result};

/// The managed columns.
pub(crate) const EFFECTIVE_DATE: &str = "effective_date";
pub(crate) const END_DATE: &str = "end_date";
pub(crate) const IS_CURRENT: &str = "is_current";
const DEFAULT_SURROGATE_KEY: &str = "surrogate_key";
/// The table property holding the next surrogate key.
pub(crate) const NEXT_KEY: &str = "scd.next_key";

/// Casts that fail on a value that does not convert, instead of making it NULL.
pub(crate) const STRICT: CastOptions = CastOptions {
    safe: false,
    format_options: arrow::util::display::FormatOptions::new(),
};

/// Days from 1970-01-01 to 9999-12-31: the `end_date` of an open version.
pub(crate) const OPEN_DAYS: i64 = 2_932_896;
pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How a table keeps its history, from its properties.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScdSpec {
    pub natural_key: Vec<String>,
    /// Columns whose change opens a new version; the other attributes change in place.
    pub tracked: Vec<String>,
    pub surrogate_key: String,
}

impl ScdSpec {
    /// The spec of an SCD Type 2 table; `None` for any other table.
    pub(crate) fn of(metadata: &TableMetadata) -> Option<Self> {
        let p = &metadata.properties;
        (p.get("scd").map(String::as_str) == Some("2")).then(|| Self {
            natural_key: names(p.get("scd.natural_key").map_or("", String::as_str)),
            tracked: names(p.get("scd.tracked").map_or("", String::as_str)),
            surrogate_key: p
                .get("scd.surrogate_key")
                .cloned()
                .unwrap_or_else(|| DEFAULT_SURROGATE_KEY.to_string()),
        })
    }

    fn properties(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("scd".to_string(), "2".to_string()),
            ("scd.natural_key".to_string(), self.natural_key.join(", ")),
            ("scd.tracked".to_string(), self.tracked.join(", ")),
            ("scd.surrogate_key".to_string(), self.surrogate_key.clone()),
        ])
    }
}

/// `'a, b'` as names.
fn names(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The table options of `CREATE TABLE ... WITH (...)`, as table properties. `scd = 2` adds the
/// managed columns to `columns` and the surrogate primary key to `constraints`.
pub(crate) fn declare(
    create: &CreateTable,
    table: &str,
    columns: &mut Vec<ColumnDef>,
    constraints: &mut Vec<Constraint>,
) -> Result<BTreeMap<String, String>> {
    let options: &[SqlOption] = match &create.table_options {
        CreateTableOptions::None => &[],
        CreateTableOptions::With(options) => options,
        // `COMMENT = '...'`, which the statement layer reads.
        CreateTableOptions::Plain(options)
            if options.iter().all(|o| matches!(o, SqlOption::Comment(_))) =>
        {
            &[]
        }
        other => {
            return Err(Error::Unsupported(format!(
                "table options {other}; Strata takes WITH (scd = 2, natural_key = '...', ...)"
            )));
        }
    };
    let mut given = BTreeMap::new();
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(Error::Unsupported(format!("table option {option}")));
        };
        let text = match value {
            SqlExpr::Value(v) => match &v.value {
                datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s)
                | datafusion::sql::sqlparser::ast::Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            other => other.to_string(),
        };
        given.insert(key.value.to_ascii_lowercase(), text);
    }
    if given.is_empty() {
        return Ok(BTreeMap::new());
    }
    let known = ["scd", "natural_key", "tracked", "surrogate_key"];
    if let Some(unknown) = given.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::Unsupported(format!(
            "table option '{unknown}' (Strata knows {})",
            known.join(", ")
        )));
    }
    match given.get("scd").map(String::as_str) {
        Some("2") => {}
        Some(other) => {
            return Err(Error::Unsupported(format!(
                "scd = {other}: Strata keeps SCD Type 2 (scd = 2); Type 1 is a plain table \
                 updated with MERGE"
            )));
        }
        None => {
            return Err(Error::Plan(
                "natural_key, tracked and surrogate_key need scd = 2".to_string(),
            ));
        }
    }
    if create.query.is_some() {
        return Err(Error::Unsupported(format!(
            "CREATE TABLE {table} ... AS SELECT with scd = 2; create the table, then APPLY \
             CHANGES INTO it"
        )));
    }
    if constraints
        .iter()
        .any(|c| matches!(c, Constraint::PrimaryKey { .. }))
    {
        return Err(Error::Plan(format!(
            "{table}: the primary key of an SCD Type 2 table is its surrogate key; name the \
             business key with natural_key = '...'"
        )));
    }
    let find = |columns: &[ColumnDef], option: &str, name: &str| -> Result<usize> {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::Plan(format!(
                    "{table}: {option} names column '{name}', which the table does not have"
                ))
            })
    };
    let managed = [EFFECTIVE_DATE, END_DATE, IS_CURRENT];
    let mut natural_key = Vec::new();
    for name in names(given.get("natural_key").map_or("", String::as_str)) {
        let i = find(columns, "natural_key", &name)?;
        columns[i].nullable = false;
        natural_key.push(columns[i].name.clone());
    }
    if natural_key.is_empty() {
        return Err(Error::Plan(format!(
            "{table}: an SCD Type 2 table needs natural_key = 'column[, column]'"
        )));
    }
    let mut tracked = Vec::new();
    for name in names(given.get("tracked").map_or("", String::as_str)) {
        let column = columns[find(columns, "tracked", &name)?].name.clone();
        if natural_key.contains(&column) || managed.contains(&column.as_str()) {
            return Err(Error::Plan(format!(
                "{table}: tracked column '{column}' is a key or a column Strata manages"
            )));
        }
        tracked.push(column);
    }
    let surrogate_key = given
        .get("surrogate_key")
        .cloned()
        .unwrap_or_else(|| DEFAULT_SURROGATE_KEY.to_string());
    if columns
        .iter()
        .any(|c| c.name.eq_ignore_ascii_case(&surrogate_key))
    {
        return Err(Error::Plan(format!(
            "{table}: column '{surrogate_key}' is the surrogate key Strata adds; name another \
             with surrogate_key = '...'"
        )));
    }
    // The validity columns, as declared (DATE or TIMESTAMP) or added as TIMESTAMP.
    for name in [EFFECTIVE_DATE, END_DATE] {
        match columns.iter_mut().find(|c| c.name == name) {
            Some(c)
                if matches!(
                    c.data_type,
                    DataType::Date32 | DataType::Timestamp(TimeUnit::Microsecond, _)
                ) =>
            {
                c.nullable = false
            }
            Some(c) => {
                return Err(Error::Plan(format!(
                    "{table}: {name} must be DATE or TIMESTAMP, not {}",
                    c.data_type
                )));
            }
            None => columns.push(ColumnDef {
                name: name.to_string(),
                data_type: DataType::Timestamp(TimeUnit::Microsecond, None),
                nullable: false,
                sql_type: None,
                field_id: 0,
                default: None,
                initial_default: None,
                comment: None,
                tags: Default::default(),
            }),
        }
    }
    let validity: Vec<&DataType> = columns
        .iter()
        .filter(|c| c.name == EFFECTIVE_DATE || c.name == END_DATE)
        .map(|c| &c.data_type)
        .collect();
    if validity[0] != validity[1] {
        return Err(Error::Plan(format!(
            "{table}: {EFFECTIVE_DATE} and {END_DATE} must have the same type"
        )));
    }
    match columns.iter_mut().find(|c| c.name == IS_CURRENT) {
        Some(c) if c.data_type == DataType::Boolean => c.nullable = false,
        Some(_) => {
            return Err(Error::Plan(format!(
                "{table}: {IS_CURRENT} must be BOOLEAN"
            )));
        }
        None => columns.push(ColumnDef {
            name: IS_CURRENT.to_string(),
            data_type: DataType::Boolean,
            nullable: false,
            sql_type: None,
            field_id: 0,
            default: None,
            initial_default: None,
            comment: None,
            tags: Default::default(),
        }),
    }
    columns.insert(
        0,
        ColumnDef {
            name: surrogate_key.clone(),
            data_type: DataType::Int64,
            nullable: false,
            sql_type: None,
            field_id: 0,
            default: None,
            initial_default: None,
            comment: None,
            tags: Default::default(),
        },
    );
    let short = table.rsplit('.').next().unwrap_or(table);
    constraints.push(Constraint::PrimaryKey {
        name: format!("{short}_pkey"),
        columns: vec![surrogate_key.clone()],
    });
    Ok(ScdSpec {
        natural_key,
        tracked,
        surrogate_key,
    }
    .properties())
}

/// Where each part of an SCD table is in its schema.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) schema: SchemaRef,
    pub(crate) surrogate_key: usize,
    /// The business columns (natural key and attributes), in table order.
    pub(crate) attributes: Vec<usize>,
    /// Indices into `attributes`.
    pub(crate) key: Vec<usize>,
    pub(crate) tracked: Vec<usize>,
    pub(crate) untracked: Vec<usize>,
    pub(crate) effective: usize,
    pub(crate) end: usize,
    pub(crate) current: usize,
}

impl Layout {
    pub(crate) fn new(spec: &ScdSpec, schema: SchemaRef) -> Result<Self> {
        let position = |name: &str| {
            schema
                .index_of(name)
                .map_err(|_| Error::Plan(format!("the SCD table has no column '{name}'")))
        };
        let surrogate_key = position(&spec.surrogate_key)?;
        let (effective, end, current) = (
            position(EFFECTIVE_DATE)?,
            position(END_DATE)?,
            position(IS_CURRENT)?,
        );
        let attributes: Vec<usize> = (0..schema.fields().len())
            .filter(|i| ![surrogate_key, effective, end, current].contains(i))
            .collect();
        let name_of = |a: usize| schema.field(attributes[a]).name().clone();
        let key: Vec<usize> = (0..attributes.len())
            .filter(|a| spec.natural_key.contains(&name_of(*a)))
            .collect();
        let tracked: Vec<usize> = (0..attributes.len())
            .filter(|a| {
                !key.contains(a) && (spec.tracked.is_empty() || spec.tracked.contains(&name_of(*a)))
            })
            .collect();
        let untracked = (0..attributes.len())
            .filter(|a| !key.contains(a) && !tracked.contains(a))
            .collect();
        Ok(Self {
            surrogate_key,
            attributes,
            key,
            tracked,
            untracked,
            effective,
            end,
            current,
            schema,
        })
    }

    pub(crate) fn validity_type(&self) -> &DataType {
        self.schema.field(self.effective).data_type()
    }

    /// 9999-12-31 in the validity columns' unit.
    pub(crate) fn open(&self) -> i64 {
        match self.validity_type() {
            DataType::Date32 => OPEN_DAYS,
            _ => OPEN_DAYS * MICROS_PER_DAY,
        }
    }

    pub(crate) fn attribute_name(&self, a: usize) -> &str {
        self.schema.field(self.attributes[a]).name()
    }

    /// Validity values (DATE or TIMESTAMP) as days or microseconds.
    pub(crate) fn ticks(&self, column: &ArrayRef) -> Result<Vec<i64>> {
        let typed = cast_with_options(column, self.validity_type(), &STRICT)?;
        Ok(match typed.data_type() {
            DataType::Date32 => typed
                .as_primitive::<Date32Type>()
                .values()
                .iter()
                .map(|d| i64::from(*d))
                .collect(),
            _ => cast(&typed, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
        })
    }

    /// Days or microseconds as a validity column.
    pub(crate) fn validity_column(&self, ticks: Vec<i64>) -> ArrayRef {
        match self.validity_type() {
            DataType::Date32 => Arc::new(Date32Array::from_iter_values(
                ticks.into_iter().map(|d| d as i32),
            )),
            DataType::Timestamp(_, tz) => {
                Arc::new(TimestampMicrosecondArray::from(ticks).with_timezone_opt(tz.clone()))
            }
            other => unreachable!("validity columns are DATE or TIMESTAMP, not {other}"),
        }
    }
}
