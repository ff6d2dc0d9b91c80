//! The functions people copy from Snowflake, MySQL and PostgreSQL, registered as DataFusion
//! scalar functions on every session (so the DataFrame API has them too).
//!
//! Date arithmetic first: `DATEADD(day, -30, CURRENT_DATE)` (Snowflake) and its alias
//! `TIMESTAMPADD`; `DATEDIFF(part, a, b)` (Snowflake: the number of `part` boundaries between
//! `a` and `b`) and `DATEDIFF(a, b)` (MySQL: days from `b` to `a`); `TIMESTAMPDIFF(part, a, b)`
//! (MySQL: whole `part`s elapsed). The parser turns a bare date part (`day`) into a string
//! (see [`crate::parser`]), so both spellings reach these functions as `'day'`.
//!
//! Values are computed as calendar dates and microsecond timestamps with checked arithmetic: a
//! result outside the timestamp range is an error naming the function and the value.
//!
//! Calendar: `LAST_DAY`, `ADD_MONTHS`, `NEXT_DAY`, `DAYOFWEEK` (0 = Sunday, as Snowflake),
//! `DAYOFYEAR`, `WEEKOFYEAR` (ISO weeks), `MONTHS_BETWEEN`.
//!
//! Strings: `REGEXP_SUBSTR`. `DECODE(x, search, result, ..., default)` is planned as a `CASE`
//! by the parser.
//!
//! Conditionals: `IFF(cond, a, b)` (Snowflake), `ZEROIFNULL(x)`, `NULLIFZERO(x)`.
//!
//! Windows: `TIME_BUCKET(interval, ts[, origin])` (TimescaleDB) is DataFusion's `date_bin`.
//!
//! Aggregates: `COUNT_IF(cond)`, `MODE(x)`; `APPROX_COUNT_DISTINCT` is DataFusion's `approx_distinct`
//! under Snowflake's name; `LISTAGG(x, sep) WITHIN GROUP (ORDER BY y)` is planned as
//! DataFusion's `string_agg(x, sep ORDER BY y)` (the parser rewrites it). DataFusion
//! already has `NVL`, `NVL2`, `IFNULL`, `GREATEST`, `LEAST`, `SPLIT_PART`, `LEFT`, `RIGHT`,
//! `INITCAP`, `ANY_VALUE`, `MEDIAN`, `DATE_PART`, `TO_DATE`, `QUALIFY` and `GROUP BY ALL`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Int64Array, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Date32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta, Timelike};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Registers the package on a session.
pub(crate) fn register(ctx: &SessionContext) {
    for function in [
        DateFunction::new(Kind::Add, "dateadd", &["timestampadd"]),
        DateFunction::new(Kind::Diff, "datediff", &[]),
        DateFunction::new(Kind::Elapsed, "timestampdiff", &[]),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(function));
    }
    for calendar in [
        Calendar::LastDay,
        Calendar::AddMonths,
        Calendar::NextDay,
        Calendar::DayOfWeek,
        Calendar::DayOfYear,
        Calendar::WeekOfYear,
        Calendar::MonthsBetween,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(CalendarFunction {
            calendar,
            signature: Signature::user_defined(Volatility::Immutable),
        }));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(RegexpSubstr {
        signature: Signature::user_defined(Volatility::Immutable),
    }));
    ctx.register_udaf(AggregateUDF::new_from_impl(Mode {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    ctx.register_udaf(AggregateUDF::new_from_impl(CountIf {
        signature: Signature::exact(vec![DataType::Boolean], Volatility::Immutable),
    }));
    // Snowflake's (and TimescaleDB's) names for functions DataFusion has under its own.
    for (theirs, ours) in [("approx_count_distinct", "approx_distinct")] {
        if let Ok(function) = ctx.udaf(ours) {
            ctx.register_udaf(function.as_ref().clone().with_aliases([theirs]));
        }
    }
    if let Ok(function) = ctx.udf("date_bin") {
        ctx.register_udf(function.as_ref().clone().with_aliases(["time_bucket"]));
    }
    for conditional in [
        Conditional::Iff,
        Conditional::ZeroIfNull,
        Conditional::NullIfZero,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(ConditionalFunction {
            conditional,
            signature: Signature::user_defined(Volatility::Immutable),
        }));
    }
}

/// The names of functions whose first argument is a date part, written bare (`day`) in
/// Snowflake and MySQL; the parser quotes it.
pub(crate) const DATE_PART_FIRST: &[&str] = &[
    "dateadd",
    "timestampadd",
    "datediff",
    "timestampdiff",
    "date_part",
    "datepart",
    "date_trunc",
];

/// Functions whose second argument is a format: Snowflake's (`'YYYY-MM-DD HH24:MI:SS'`) for
/// `TO_DATE`, `TO_TIMESTAMP` and `TO_CHAR`; MySQL's (`'%Y-%m-%d %H:%i:%s'`) for `STR_TO_DATE`
/// and `DATE_FORMAT`. The parser translates a constant format to chrono's, which DataFusion's
/// `to_date`, `to_timestamp` and `to_char` read, and plans `STR_TO_DATE` and `DATE_FORMAT` as
/// those.
pub(crate) fn chrono_format(function: &str, format: &str) -> Option<String> {
    match function {
        "str_to_date" | "date_format" => Some(from_mysql_format(format)),
        // A format already in chrono's words (DataFusion's own) is left as it is.
        "to_date" | "to_timestamp" | "to_char" if !format.contains('%') => {
            Some(from_snowflake_format(format))
        }
        _ => None,
    }
}

/// Whether a MySQL format has a time of day in it (then `STR_TO_DATE` returns a timestamp).
pub(crate) fn mysql_format_has_time(format: &str) -> bool {
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c == '%'
            && let Some(spec) = chars.next()
            && "HkhIlisSfpTr".contains(spec)
        {
            return true;
        }
    }
    false
}

fn from_mysql_format(format: &str) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            out.push_str("%%");
            break;
        };
        out.push_str(match spec {
            'Y' => "%Y",
            'y' => "%y",
            'm' => "%m",
            'c' => "%-m",
            'd' => "%d",
            'e' => "%-d",
            'H' => "%H",
            'k' => "%-H",
            'h' | 'I' => "%I",
            'l' => "%-I",
            'i' => "%M",
            's' | 'S' => "%S",
            'f' => "%6f",
            'p' => "%p",
            'b' => "%b",
            'M' => "%B",
            'a' => "%a",
            'W' => "%A",
            'j' => "%j",
            'T' => "%H:%M:%S",
            'r' => "%I:%M:%S %p",
            '%' => "%%",
            other => {
                out.push(other);
                continue;
            }
        });
    }
    out
}

fn from_snowflake_format(format: &str) -> String {
    // Longest tokens first, matched without regard to case.
    const TOKENS: &[(&str, &str)] = &[
        ("YYYY", "%Y"),
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("MMMM", "%B"),
        ("TZH:TZM", "%:z"),
        ("FF9", "%9f"),
        ("FF6", "%6f"),
        ("FF3", "%3f"),
        ("MON", "%b"),
        ("YY", "%y"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("DY", "%a"),
        ("HH", "%H"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("FF", "%f"),
        ("AM", "%p"),
        ("PM", "%p"),
    ];
    let mut out = String::new();
    let mut rest = format;
    'outer: while let Some(c) = rest.chars().next() {
        if c == '"' {
            // "literal text", copied as it is.
            let body = &rest[1..];
            let (literal, after) = match body.find('"') {
                Some(i) => (&body[..i], &body[i + 1..]),
                None => (body, ""),
            };
            out.push_str(&literal.replace('%', "%%"));
            rest = after;
            continue;
        }
        for (token, chrono) in TOKENS {
            if rest.len() >= token.len()
                && rest.is_char_boundary(token.len())
                && rest[..token.len()].eq_ignore_ascii_case(token)
            {
                out.push_str(chrono);
                rest = &rest[token.len()..];
                continue 'outer;
            }
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A unit of date arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
}

impl Part {
    /// A part by any of Snowflake's and MySQL's names for it.
    fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "year" | "years" | "y" | "yy" | "yyy" | "yyyy" | "yr" | "yrs" => Part::Year,
            "quarter" | "quarters" | "q" | "qtr" | "qtrs" => Part::Quarter,
            "month" | "months" | "mm" | "mon" | "mons" => Part::Month,
            "week" | "weeks" | "w" | "wk" | "weekofyear" | "woy" | "wy" => Part::Week,
            "day" | "days" | "d" | "dd" | "dayofmonth" => Part::Day,
            "hour" | "hours" | "h" | "hh" | "hr" | "hrs" => Part::Hour,
            "minute" | "minutes" | "m" | "mi" | "min" | "mins" => Part::Minute,
            "second" | "seconds" | "s" | "sec" | "secs" => Part::Second,
            "millisecond" | "milliseconds" | "ms" | "msec" => Part::Millisecond,
            "microsecond" | "microseconds" | "us" | "usec" => Part::Microsecond,
            _ => return None,
        })
    }

    /// The part's name, as errors show it.
    fn name(self) -> &'static str {
        match self {
            Part::Year => "year",
            Part::Quarter => "quarter",
            Part::Month => "month",
            Part::Week => "week",
            Part::Day => "day",
            Part::Hour => "hour",
            Part::Minute => "minute",
            Part::Second => "second",
            Part::Millisecond => "millisecond",
            Part::Microsecond => "microsecond",
        }
    }

    /// Whole days or more: adding one to a DATE gives a DATE.
    fn is_calendar(self) -> bool {
        matches!(
            self,
            Part::Year | Part::Quarter | Part::Month | Part::Week | Part::Day
        )
    }

    /// Microseconds in one unit of a fixed-length part.
    fn micros(self) -> Option<i64> {
        Some(match self {
            Part::Week => 7 * 86_400_000_000,
            Part::Day => 86_400_000_000,
            Part::Hour => 3_600_000_000,
            Part::Minute => 60_000_000,
            Part::Second => 1_000_000,
            Part::Millisecond => 1_000,
            Part::Microsecond => 1,
            Part::Year | Part::Quarter | Part::Month => return None,
        })
    }

    /// Months in one unit of a calendar part.
    fn months(self) -> Option<i64> {
        match self {
            Part::Year => Some(12),
            Part::Quarter => Some(3),
            Part::Month => Some(1),
            _ => None,
        }
    }
}

/// `t` plus `n` parts, or `None` past the range of timestamps.
fn add(part: Part, n: i64, t: NaiveDateTime) -> Option<NaiveDateTime> {
    if let Some(per) = part.months() {
        // Month arithmetic keeps the day, or the month's last day (Jan 31 + 1 month = Feb 29).
        let months = n.checked_mul(per)?;
        let m = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
        return if months >= 0 {
            t.checked_add_months(m)
        } else {
            t.checked_sub_months(m)
        };
    }
    let micros = n.checked_mul(part.micros()?)?;
    t.checked_add_signed(TimeDelta::microseconds(micros))
}

/// Months since year 0 of `t`'s month.
fn month_number(t: NaiveDateTime) -> i64 {
    i64::from(t.year()) * 12 + i64::from(t.month0())
}

/// Snowflake's `DATEDIFF`: how many `part` boundaries lie between `a` and `b` (negative when
/// `b` is earlier). Weeks start on Monday.
fn boundaries(part: Part, a: NaiveDateTime, b: NaiveDateTime) -> i64 {
    let floor = |t: NaiveDateTime, unit: i64| t.and_utc().timestamp_micros().div_euclid(unit);
    match part {
        Part::Year => i64::from(b.year()) - i64::from(a.year()),
        Part::Quarter => month_number(b).div_euclid(3) - month_number(a).div_euclid(3),
        Part::Month => month_number(b) - month_number(a),
        Part::Week => {
            let monday = |t: NaiveDateTime| {
                t.date() - TimeDelta::days(t.weekday().num_days_from_monday().into())
            };
            (monday(b) - monday(a)).num_days().div_euclid(7)
        }
        Part::Day => (b.date() - a.date()).num_days(),
        fixed => {
            let unit = fixed.micros().unwrap_or(1);
            floor(b, unit) - floor(a, unit)
        }
    }
}

/// MySQL's `TIMESTAMPDIFF`: how many whole `part`s have elapsed from `a` to `b` (negative when
/// `b` is earlier).
fn elapsed(part: Part, a: NaiveDateTime, b: NaiveDateTime) -> i64 {
    if let Some(per) = part.months() {
        let mut months = month_number(b) - month_number(a);
        // A month is complete once the day and time of day have come round again.
        let rest = |t: NaiveDateTime| (t.day(), t.num_seconds_from_midnight(), t.nanosecond());
        if months > 0 && rest(b) < rest(a) {
            months -= 1;
        } else if months < 0 && rest(b) > rest(a) {
            months += 1;
        }
        return months / per;
    }
    // In i128: the span between two timestamps may not fit in i64 microseconds.
    let micros = |t: NaiveDateTime| i128::from(t.and_utc().timestamp_micros());
    let units = (micros(b) - micros(a)) / i128::from(part.micros().unwrap_or(1));
    i64::try_from(units).unwrap_or(if units < 0 { i64::MIN } else { i64::MAX })
}

/// Which function a [`DateFunction`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `DATEADD(part, n, value)`.
    Add,
    /// `DATEDIFF(part, a, b)` (boundaries) or `DATEDIFF(a, b)` (days).
    Diff,
    /// `TIMESTAMPDIFF(part, a, b)` (whole units elapsed).
    Elapsed,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFunction {
    kind: Kind,
    name: &'static str,
    aliases: Vec<String>,
    signature: Signature,
}

impl DateFunction {
    fn new(kind: Kind, name: &'static str, aliases: &[&str]) -> Self {
        Self {
            kind,
            name,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// What the function is called in errors, as users write it.
    fn shown(&self) -> String {
        self.name.to_ascii_uppercase()
    }

    /// The date part of argument `i`: a constant string naming a part.
    fn part(&self, value: Option<&ScalarValue>) -> Result<Part> {
        let text = match value {
            Some(ScalarValue::Utf8(Some(t)))
            | Some(ScalarValue::LargeUtf8(Some(t)))
            | Some(ScalarValue::Utf8View(Some(t))) => t.clone(),
            _ => {
                return plan_err!(
                    "{}: the first argument is a date part such as day, month or hour",
                    self.shown()
                );
            }
        };
        match Part::parse(&text) {
            Some(part) => Ok(part),
            None => plan_err!(
                "{}: unknown date part '{text}'; use year, quarter, month, week, day, hour, \
                 minute, second, millisecond or microsecond",
                self.shown()
            ),
        }
    }

    /// The type a date or timestamp argument is computed in.
    fn temporal(&self, t: &DataType, keep_dates: bool) -> Result<DataType> {
        Ok(match t {
            DataType::Date32 | DataType::Date64 if keep_dates => DataType::Date32,
            DataType::Date32 | DataType::Date64 | DataType::Null => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            other => {
                return plan_err!(
                    "{}: expected a date or timestamp, got {other}",
                    self.shown()
                );
            }
        })
    }
}

/// A function's arguments as columns of the batch's length (constants repeated).
fn arrays(args: &ScalarFunctionArgs) -> Result<Vec<ArrayRef>> {
    args.args
        .iter()
        .map(|a| a.to_array(args.number_rows))
        .collect()
}

/// A column of timestamps (or dates, at midnight) as microseconds.
fn micros_of(array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    Ok(match array.data_type() {
        DataType::Date32 => array
            .as_primitive::<Date32Type>()
            .iter()
            .map(|d| match d {
                None => Ok(None),
                Some(d) => match i64::from(d).checked_mul(86_400_000_000) {
                    Some(micros) => Ok(Some(micros)),
                    None => exec_err!(
                        "date {d} days from 1970-01-01 is outside the range of timestamps"
                    ),
                },
            })
            .collect::<Result<_>>()?,
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        other => return exec_err!("date arithmetic on {other}"),
    })
}

fn datetime(micros: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc())
}

impl ScalarUDFImpl for DateFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match (self.kind, args) {
            (Kind::Add, [_, _, value]) => Ok(vec![
                DataType::Utf8,
                DataType::Int64,
                self.temporal(value, true)?,
            ]),
            (Kind::Diff, [a, b]) => {
                // MySQL's form counts days between the dates, ignoring the time of day.
                self.temporal(a, true)?;
                self.temporal(b, true)?;
                Ok(vec![DataType::Date32, DataType::Date32])
            }
            (Kind::Diff | Kind::Elapsed, [_, a, b]) => {
                self.temporal(a, false)?;
                self.temporal(b, false)?;
                let naive = DataType::Timestamp(TimeUnit::Microsecond, None);
                Ok(vec![DataType::Utf8, naive.clone(), naive])
            }
            (Kind::Add, _) => plan_err!("DATEADD(part, n, value) takes three arguments"),
            (Kind::Diff, _) => {
                plan_err!("DATEDIFF takes (part, start, end) or, as MySQL, (end, start)")
            }
            (Kind::Elapsed, _) => {
                plan_err!("TIMESTAMPDIFF(part, start, end) takes three arguments")
            }
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        // The type depends on the date part: see `return_field_from_args`.
        Ok(DataType::Int64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<arrow::datatypes::FieldRef> {
        let field = |t: DataType| Arc::new(arrow::datatypes::Field::new(self.name, t, true));
        if self.kind != Kind::Add {
            return Ok(field(DataType::Int64));
        }
        let part = self.part(args.scalar_arguments.first().copied().flatten())?;
        let value = args.arg_fields.get(2).map(|f| f.data_type().clone());
        Ok(field(match value {
            Some(DataType::Date32) if part.is_calendar() => DataType::Date32,
            Some(DataType::Timestamp(_, tz)) => DataType::Timestamp(TimeUnit::Microsecond, tz),
            _ => DataType::Timestamp(TimeUnit::Microsecond, None),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = arrays(&args)?;
        let part = |i: usize| match &args.args[i] {
            ColumnarValue::Scalar(s) => self.part(Some(s)),
            ColumnarValue::Array(_) => self.part(None),
        };
        let out: ArrayRef = match (self.kind, arrays.as_slice()) {
            (Kind::Add, [_, n, value]) => {
                let part = part(0)?;
                let n = n.as_primitive::<Int64Type>();
                let values = micros_of(value)?;
                let mut sums = Vec::with_capacity(rows);
                for (n, t) in n.iter().zip(values) {
                    let (Some(n), Some(t)) = (n, t) else {
                        sums.push(None);
                        continue;
                    };
                    let sum = datetime(t).and_then(|t| add(part, n, t));
                    match sum {
                        Some(sum) => sums.push(Some(sum)),
                        None => {
                            return exec_err!(
                                "DATEADD({}, {n}, ...) is outside the range of timestamps",
                                part.name()
                            );
                        }
                    }
                }
                match args.return_field.data_type() {
                    DataType::Date32 => {
                        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
                        Arc::new(Date32Array::from_iter(sums.into_iter().map(|s| {
                            s.and_then(|s| i32::try_from((s.date() - epoch).num_days()).ok())
                        })))
                    }
                    DataType::Timestamp(_, tz) => Arc::new(
                        TimestampMicrosecondArray::from_iter(
                            sums.into_iter()
                                .map(|s| s.map(|s| s.and_utc().timestamp_micros())),
                        )
                        .with_timezone_opt(tz.clone()),
                    ),
                    other => return exec_err!("DATEADD returning {other}"),
                }
            }
            (Kind::Diff, [a, b]) => {
                let a = a.as_primitive::<Date32Type>();
                let b = b.as_primitive::<Date32Type>();
                Arc::new(Int64Array::from_iter(
                    a.iter()
                        .zip(b.iter())
                        .map(|(a, b)| Some(i64::from(a?) - i64::from(b?))),
                ))
            }
            (kind, [_, a, b]) => {
                let part = part(0)?;
                let a = micros_of(a)?;
                let b = micros_of(b)?;
                Arc::new(Int64Array::from_iter(a.into_iter().zip(b).map(|(a, b)| {
                    let (a, b) = (datetime(a?)?, datetime(b?)?);
                    Some(match kind {
                        Kind::Elapsed => elapsed(part, a, b),
                        _ => boundaries(part, a, b),
                    })
                })))
            }
            _ => return exec_err!("{}: wrong number of arguments", self.shown()),
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Functions of a calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Calendar {
    /// `LAST_DAY(d)`: the last day of `d`'s month.
    LastDay,
    /// `ADD_MONTHS(d, n)`: as Snowflake, the last day of a month maps to the last day of the
    /// result's month (Feb 29 + 1 month = Mar 31); other days clamp to the month's end.
    AddMonths,
    /// `NEXT_DAY(d, 'monday')`: the first such weekday after `d`.
    NextDay,
    /// `DAYOFWEEK(d)`: 0 (Sunday) to 6, as Snowflake.
    DayOfWeek,
    /// `DAYOFYEAR(d)`: 1 to 366.
    DayOfYear,
    /// `WEEKOFYEAR(d)`: the ISO week, 1 to 53.
    WeekOfYear,
    /// `MONTHS_BETWEEN(a, b)`: months from `b` to `a`, whole when both are the same day of the
    /// month or both month ends, else with the day difference in 31sts (Snowflake, Oracle).
    MonthsBetween,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CalendarFunction {
    calendar: Calendar,
    signature: Signature,
}

impl CalendarFunction {
    fn shown(&self) -> String {
        self.name().to_uppercase()
    }
}

/// `d` as a day number of Arrow's Date32, or `None` out of its range.
fn day_number(d: NaiveDate) -> Option<i32> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((d - epoch).num_days()).ok()
}

fn date_of(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(TimeDelta::days(days.into()))
}

fn last_day(d: NaiveDate) -> Option<NaiveDate> {
    let first = d.with_day(1)?;
    first.checked_add_months(Months::new(1))?.pred_opt()
}

fn add_months(d: NaiveDate, n: i64) -> Option<NaiveDate> {
    let m = Months::new(u32::try_from(n.unsigned_abs()).ok()?);
    let moved = if n >= 0 {
        d.checked_add_months(m)?
    } else {
        d.checked_sub_months(m)?
    };
    if last_day(d)? == d {
        last_day(moved)
    } else {
        Some(moved)
    }
}

fn months_between(a: NaiveDate, b: NaiveDate) -> f64 {
    let month = |d: NaiveDate| i64::from(d.year()) * 12 + i64::from(d.month0());
    let whole = (month(a) - month(b)) as f64;
    let month_ends = last_day(a) == Some(a) && last_day(b) == Some(b);
    if a.day() == b.day() || month_ends {
        whole
    } else {
        whole + (f64::from(a.day()) - f64::from(b.day())) / 31.0
    }
}

fn weekday(name: &str) -> Option<chrono::Weekday> {
    let lower = name.trim().to_ascii_lowercase();
    let days = [
        ("mo", chrono::Weekday::Mon),
        ("tu", chrono::Weekday::Tue),
        ("we", chrono::Weekday::Wed),
        ("th", chrono::Weekday::Thu),
        ("fr", chrono::Weekday::Fri),
        ("sa", chrono::Weekday::Sat),
        ("su", chrono::Weekday::Sun),
    ];
    days.iter()
        .find(|(prefix, _)| lower.starts_with(prefix))
        .map(|(_, day)| *day)
}

impl ScalarUDFImpl for CalendarFunction {
    fn name(&self) -> &str {
        match self.calendar {
            Calendar::LastDay => "last_day",
            Calendar::AddMonths => "add_months",
            Calendar::NextDay => "next_day",
            Calendar::DayOfWeek => "dayofweek",
            Calendar::DayOfYear => "dayofyear",
            Calendar::WeekOfYear => "weekofyear",
            Calendar::MonthsBetween => "months_between",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let date = |t: &DataType| match t {
            DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Null => Ok(DataType::Date32),
            other => plan_err!("{}: expected a date, got {other}", self.shown()),
        };
        match (self.calendar, args) {
            (Calendar::AddMonths, [d, _]) => Ok(vec![date(d)?, DataType::Int64]),
            (Calendar::NextDay, [d, _]) => Ok(vec![date(d)?, DataType::Utf8]),
            (Calendar::MonthsBetween, [a, b]) => Ok(vec![date(a)?, date(b)?]),
            (Calendar::MonthsBetween, _) => {
                plan_err!("MONTHS_BETWEEN(date, date) takes two arguments")
            }
            (Calendar::AddMonths, _) => plan_err!("ADD_MONTHS(date, months) takes two arguments"),
            (Calendar::NextDay, _) => plan_err!("NEXT_DAY(date, 'weekday') takes two arguments"),
            (_, [d]) => Ok(vec![date(d)?]),
            _ => plan_err!("{} takes one argument", self.shown()),
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.calendar {
            Calendar::LastDay | Calendar::AddMonths | Calendar::NextDay => DataType::Date32,
            Calendar::MonthsBetween => DataType::Float64,
            _ => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let Some(first) = arrays.first() else {
            return exec_err!("{}: missing argument", self.shown());
        };
        let dates = first.as_primitive::<Date32Type>();
        let out: ArrayRef = match self.calendar {
            Calendar::LastDay => Arc::new(Date32Array::from_iter(
                dates.iter().map(|d| day_number(last_day(date_of(d?)?)?)),
            )),
            Calendar::AddMonths => {
                let months = arrays[1].as_primitive::<Int64Type>();
                let mut out = Vec::with_capacity(dates.len());
                for (d, n) in dates.iter().zip(months.iter()) {
                    let (Some(d), Some(n)) = (d, n) else {
                        out.push(None);
                        continue;
                    };
                    match date_of(d)
                        .and_then(|d| add_months(d, n))
                        .and_then(day_number)
                    {
                        Some(day) => out.push(Some(day)),
                        None => {
                            return exec_err!("ADD_MONTHS(..., {n}) is outside the range of dates");
                        }
                    }
                }
                Arc::new(Date32Array::from(out))
            }
            Calendar::NextDay => {
                let names = arrays[1].as_string::<i32>();
                let mut out = Vec::with_capacity(dates.len());
                for (d, name) in dates.iter().zip(names.iter()) {
                    let (Some(d), Some(name)) = (d, name) else {
                        out.push(None);
                        continue;
                    };
                    let Some(target) = weekday(name) else {
                        return exec_err!("NEXT_DAY: '{name}' is not a day of the week");
                    };
                    let next = date_of(d).and_then(|d| {
                        let ahead = (7 + target.num_days_from_monday()
                            - d.weekday().num_days_from_monday())
                            % 7;
                        let ahead = if ahead == 0 { 7 } else { ahead };
                        d.checked_add_signed(TimeDelta::days(ahead.into()))
                    });
                    out.push(next.and_then(day_number));
                }
                Arc::new(Date32Array::from(out))
            }
            Calendar::MonthsBetween => {
                let other = arrays[1].as_primitive::<Date32Type>();
                Arc::new(arrow::array::Float64Array::from_iter(
                    dates.iter().zip(other.iter()).map(|(a, b)| {
                        let (a, b) = (date_of(a?)?, date_of(b?)?);
                        Some(months_between(a, b))
                    }),
                ))
            }
            Calendar::DayOfWeek | Calendar::DayOfYear | Calendar::WeekOfYear => {
                Arc::new(Int64Array::from_iter(dates.iter().map(|d| {
                    let d = date_of(d?)?;
                    Some(i64::from(match self.calendar {
                        Calendar::DayOfWeek => d.weekday().num_days_from_sunday(),
                        Calendar::DayOfYear => d.ordinal(),
                        _ => d.iso_week().week(),
                    }))
                })))
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Snowflake's `REGEXP_SUBSTR(subject, pattern [, position [, occurrence [, parameters
/// [, group]]]])`: the `occurrence`-th match of `pattern` in `subject` from character
/// `position` (both from 1), or its `group`-th capture group; NULL when there is none.
/// Parameters: `c` case-sensitive (default), `i` case-insensitive, `m` multi-line, `s` `.`
/// matches newlines, `e` extract the first group. Patterns use the `regex` crate, which runs
/// in linear time, so a hostile pattern cannot hang a query.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpSubstr {
    signature: Signature,
}

impl RegexpSubstr {
    fn compile(pattern: &str, parameters: &str) -> Result<regex::Regex> {
        let mut builder = regex::RegexBuilder::new(pattern);
        for flag in parameters.chars() {
            match flag {
                'c' => builder.case_insensitive(false),
                'i' => builder.case_insensitive(true),
                'm' => builder.multi_line(true),
                's' => builder.dot_matches_new_line(true),
                'e' => &mut builder,
                other => {
                    return plan_err!(
                        "REGEXP_SUBSTR: unknown parameter '{other}'; use c, i, m, s or e"
                    );
                }
            };
        }
        match builder.build() {
            Ok(regex) => Ok(regex),
            Err(e) => plan_err!("REGEXP_SUBSTR: invalid pattern '{pattern}': {e}"),
        }
    }
}

impl ScalarUDFImpl for RegexpSubstr {
    fn name(&self) -> &str {
        "regexp_substr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        const TYPES: [DataType; 6] = [
            DataType::Utf8,
            DataType::Utf8,
            DataType::Int64,
            DataType::Int64,
            DataType::Utf8,
            DataType::Int64,
        ];
        if !(2..=6).contains(&args.len()) {
            return plan_err!(
                "REGEXP_SUBSTR(subject, pattern [, position [, occurrence [, parameters [, \
                 group]]]]) takes 2 to 6 arguments"
            );
        }
        Ok(TYPES[..args.len()].to_vec())
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let text = |i: usize| arrays.get(i).map(|a| a.as_string::<i32>());
        let number = |i: usize| arrays.get(i).map(|a| a.as_primitive::<Int64Type>());
        let (Some(subjects), Some(patterns)) = (text(0), text(1)) else {
            return exec_err!("REGEXP_SUBSTR takes a subject and a pattern");
        };
        let (positions, occurrences, parameters, groups) =
            (number(2), number(3), text(4), number(5));
        let mut compiled: Option<(String, String, regex::Regex)> = None;
        let mut out = Vec::with_capacity(subjects.len());
        for row in 0..subjects.len() {
            let value = |a: Option<&Int64Array>, default: i64| {
                a.map_or(Some(default), |a| a.is_valid(row).then(|| a.value(row)))
            };
            let (Some(subject), Some(pattern)) = (
                subjects.is_valid(row).then(|| subjects.value(row)),
                patterns.is_valid(row).then(|| patterns.value(row)),
            ) else {
                out.push(None);
                continue;
            };
            let flags = match parameters {
                Some(p) if p.is_valid(row) => p.value(row),
                Some(_) => {
                    out.push(None);
                    continue;
                }
                None => "c",
            };
            let (Some(position), Some(occurrence)) = (value(positions, 1), value(occurrences, 1))
            else {
                out.push(None);
                continue;
            };
            let group = value(groups, i64::from(flags.contains('e')));
            if position < 1 || occurrence < 1 || group.is_some_and(|g| g < 0) {
                return exec_err!(
                    "REGEXP_SUBSTR: position and occurrence count from 1, and group from 0"
                );
            }
            if compiled
                .as_ref()
                .is_none_or(|(p, f, _)| p != pattern || f != flags)
            {
                compiled = Some((
                    pattern.to_string(),
                    flags.to_string(),
                    Self::compile(pattern, flags)?,
                ));
            }
            let Some((_, _, regex)) = &compiled else {
                continue;
            };
            // Position counts characters; the regex works on byte offsets.
            let skip = usize::try_from(position - 1).unwrap_or(usize::MAX);
            let start = subject
                .char_indices()
                .nth(skip)
                .map_or(subject.len(), |(i, _)| i);
            let nth = usize::try_from(occurrence - 1).unwrap_or(usize::MAX);
            let group = usize::try_from(group.unwrap_or(0)).unwrap_or(usize::MAX);
            let found = regex
                .captures_iter(&subject[start..])
                .nth(nth)
                .and_then(|c| c.get(group).map(|m| m.as_str().to_string()));
            out.push(found);
        }
        Ok(ColumnarValue::Array(Arc::new(
            arrow::array::StringArray::from(out),
        )))
    }
}

/// `MODE(x)`: the most frequent non-NULL value (Snowflake, DuckDB); the smallest of those tied,
/// so the answer does not depend on the order rows arrive in.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Mode {
    signature: Signature,
}

impl AggregateUDFImpl for Mode {
    fn name(&self) -> &str {
        "mode"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args.first() {
            Some(t) => Ok(t.clone()),
            None => plan_err!("MODE takes one argument"),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Frequencies {
            data_type: args.return_field.data_type().clone(),
            counts: std::collections::HashMap::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<arrow::datatypes::FieldRef>> {
        let value = args.return_field.data_type().clone();
        let list = |t: DataType| {
            DataType::List(Arc::new(arrow::datatypes::Field::new_list_field(t, true)))
        };
        Ok(vec![
            Arc::new(arrow::datatypes::Field::new(
                format_state_name(args.name, "values"),
                list(value),
                true,
            )),
            Arc::new(arrow::datatypes::Field::new(
                format_state_name(args.name, "counts"),
                list(DataType::Int64),
                true,
            )),
        ])
    }
}

/// How often [`Mode`] has seen each value.
#[derive(Debug)]
struct Frequencies {
    data_type: DataType,
    counts: std::collections::HashMap<ScalarValue, i64>,
}

impl Accumulator for Frequencies {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        for row in 0..values.len() {
            if values.is_valid(row) {
                let value = ScalarValue::try_from_array(values, row)?;
                *self.counts.entry(value).or_insert(0) += 1;
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(values), Some(counts)) = (states.first(), states.get(1)) else {
            return Ok(());
        };
        let (values, counts) = (values.as_list::<i32>(), counts.as_list::<i32>());
        for row in 0..values.len() {
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let (v, c) = (values.value(row), counts.value(row));
            let c = c.as_primitive::<Int64Type>();
            for i in 0..v.len() {
                let value = ScalarValue::try_from_array(&v, i)?;
                let count = self.counts.entry(value).or_insert(0);
                *count = count.saturating_add(c.value(i));
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (values, counts): (Vec<ScalarValue>, Vec<ScalarValue>) = self
            .counts
            .iter()
            .map(|(v, c)| (v.clone(), ScalarValue::Int64(Some(*c))))
            .unzip();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.data_type)),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let best = self
            .counts
            .iter()
            .max_by(|(va, ca), (vb, cb)| {
                ca.cmp(cb)
                    .then_with(|| vb.partial_cmp(va).unwrap_or(std::cmp::Ordering::Equal))
            })
            .map(|(v, _)| v.clone());
        match best {
            Some(value) => Ok(value),
            None => ScalarValue::try_from(&self.data_type),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .counts
                .keys()
                .map(|k| k.size() + std::mem::size_of::<i64>())
                .sum::<usize>()
    }
}

/// `COUNT_IF(condition)`: the rows where the condition is true (Snowflake, DuckDB).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CountIf {
    signature: Signature,
}

impl AggregateUDFImpl for CountIf {
    fn name(&self) -> &str {
        "count_if"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(TrueCount(0)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<arrow::datatypes::FieldRef>> {
        Ok(vec![Arc::new(arrow::datatypes::Field::new(
            format_state_name(args.name, "count"),
            DataType::Int64,
            false,
        ))])
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }
}

/// How many true values [`CountIf`] has seen.
#[derive(Debug)]
struct TrueCount(i64);

impl Accumulator for TrueCount {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if let Some(conditions) = values.first() {
            // True among the valid slots: a NULL condition does not count.
            let count = conditions.as_boolean().true_count();
            self.0 = self
                .0
                .saturating_add(i64::try_from(count).unwrap_or(i64::MAX));
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if let Some(counts) = states.first() {
            for count in counts.as_primitive::<Int64Type>().iter().flatten() {
                self.0 = self.0.saturating_add(count);
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.0))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

/// Snowflake's small conditionals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Conditional {
    /// `IFF(cond, a, b)`: `a` where `cond` is true, else `b` (also where it is NULL).
    Iff,
    /// `ZEROIFNULL(x)`: 0 where `x` is NULL.
    ZeroIfNull,
    /// `NULLIFZERO(x)`: NULL where `x` is 0.
    NullIfZero,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ConditionalFunction {
    conditional: Conditional,
    signature: Signature,
}

impl ScalarUDFImpl for ConditionalFunction {
    fn name(&self) -> &str {
        match self.conditional {
            Conditional::Iff => "iff",
            Conditional::ZeroIfNull => "zeroifnull",
            Conditional::NullIfZero => "nullifzero",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        use datafusion::logical_expr::type_coercion::binary::type_union_resolution;
        match (self.conditional, args) {
            (Conditional::Iff, [_, a, b]) => match type_union_resolution(&[a.clone(), b.clone()]) {
                Some(t) => Ok(vec![DataType::Boolean, t.clone(), t]),
                None => plan_err!("IFF: the two results have no common type ({a} and {b})"),
            },
            (Conditional::Iff, _) => plan_err!("IFF(condition, then, else) takes three arguments"),
            (_, [DataType::Null]) => Ok(vec![DataType::Int64]),
            (_, [x]) if x.is_numeric() => Ok(vec![x.clone()]),
            (_, [x]) => plan_err!("{}: expected a number, got {x}", self.name().to_uppercase()),
            _ => plan_err!("{} takes one argument", self.name().to_uppercase()),
        }
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let value = if self.conditional == Conditional::Iff {
            1
        } else {
            0
        };
        match args.get(value) {
            Some(t) => Ok(t.clone()),
            None => plan_err!("{}: missing argument", self.name().to_uppercase()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use arrow::compute::kernels::{cmp, nullif, zip};
        let rows = args.number_rows;
        let arrays = arrays(&args)?;
        let out = match (self.conditional, arrays.as_slice()) {
            (Conditional::Iff, [cond, a, b]) => {
                // A NULL condition takes the ELSE branch, as CASE WHEN does.
                let cond = cond.as_boolean();
                let mask = match cond.nulls() {
                    Some(_) => arrow::compute::prep_null_mask_filter(cond),
                    None => cond.clone(),
                };
                zip::zip(&mask, a, b)?
            }
            (Conditional::ZeroIfNull, [x]) => {
                let zero = ScalarValue::new_zero(x.data_type())?.to_array_of_size(rows)?;
                let present = arrow::compute::is_not_null(x)?;
                zip::zip(&present, x, &zero)?
            }
            (Conditional::NullIfZero, [x]) => {
                let zero = ScalarValue::new_zero(x.data_type())?.to_array_of_size(rows)?;
                let is_zero = cmp::eq(x, &zero)?;
                nullif::nullif(x, &is_zero)?
            }
            _ => return exec_err!("{}: wrong number of arguments", self.name()),
        };
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn formats_translate_to_chrono() {
        assert_eq!(
            chrono_format("to_timestamp", "YYYY-MM-DD HH24:MI:SS").as_deref(),
            Some("%Y-%m-%d %H:%M:%S")
        );
        assert_eq!(
            chrono_format("to_date", "dd/mm/yyyy").as_deref(),
            Some("%d/%m/%Y")
        );
        assert_eq!(
            chrono_format("to_char", "MON DD, YYYY \"at\" HH12 AM").as_deref(),
            Some("%b %d, %Y at %I %p")
        );
        assert_eq!(chrono_format("to_date", "%Y-%m-%d"), None);
        assert_eq!(
            chrono_format("str_to_date", "%d/%m/%Y %H:%i:%s").as_deref(),
            Some("%d/%m/%Y %H:%M:%S")
        );
        assert!(mysql_format_has_time("%Y-%m-%d %H:%i"));
        assert!(!mysql_format_has_time("%Y-%m-%d"));
    }

    #[test]
    fn month_arithmetic_keeps_the_last_day_of_the_month() {
        assert_eq!(
            add(Part::Month, 1, at("2024-01-31 10:00:00")),
            Some(at("2024-02-29 10:00:00"))
        );
        assert_eq!(
            add(Part::Year, -1, at("2024-02-29 00:00:00")),
            Some(at("2023-02-28 00:00:00"))
        );
        assert_eq!(add(Part::Day, i64::MAX, at("2024-01-01 00:00:00")), None);
    }

    #[test]
    fn snowflake_counts_boundaries_and_mysql_counts_whole_units() {
        let (a, b) = (at("2023-12-31 23:59:00"), at("2024-01-01 00:01:00"));
        assert_eq!(boundaries(Part::Year, a, b), 1);
        assert_eq!(elapsed(Part::Year, a, b), 0);
        assert_eq!(boundaries(Part::Hour, a, b), 1);
        assert_eq!(elapsed(Part::Minute, a, b), 2);
        assert_eq!(boundaries(Part::Month, b, a), -1);
        let (a, b) = (at("2024-01-31 00:00:00"), at("2024-03-30 00:00:00"));
        assert_eq!(elapsed(Part::Month, a, b), 1);
        assert_eq!(boundaries(Part::Month, a, b), 2);
        // 2024-01-07 is a Sunday, 2024-01-08 a Monday.
        assert_eq!(
            boundaries(
                Part::Week,
                at("2024-01-07 00:00:00"),
                at("2024-01-08 00:00:00")
            ),
            1
        );
    }
}
