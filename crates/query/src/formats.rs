//! File format options: what `FILE_FORMAT = (TYPE = CSV FIELD_DELIMITER = '|' ...)` means
//! wherever files are read or written (`COPY INTO`, stages, external tables, unloads).
//!
//! Options are kept as written ([`strata_storage::FormatOptions`]) in the catalog and checked by
//! [`FormatSpec::parse`] when the object that keeps them is created, so a misspelt option fails
//! `CREATE STAGE`, not a load a week later.

use datafusion::sql::sqlparser::ast::Value;
use datafusion::sql::sqlparser::ast::helpers::key_value_options::{
    KeyValueOptionKind, KeyValueOptions,
};
use strata_storage::FormatOptions;
use strata_storage::load::{Compression, CsvOptions, FileFormat};

use crate::error::{Error, Result};

/// What a set of format options says about files.
#[derive(Debug, Clone, Default)]
pub(crate) struct FormatSpec {
    /// `TYPE = ...`; `None`: each file's extension decides.
    pub(crate) format: Option<FileFormat>,
    /// The CSV options (used by CSV files, whatever decided their format).
    pub(crate) csv: CsvOptions,
    /// `COMPRESSION = ...`; `None`: each file's extension decides.
    pub(crate) compression: Option<Compression>,
}

impl FormatSpec {
    /// Checks and reads `options`; an unknown option or a bad value is an error naming it.
    pub(crate) fn parse(options: &[(String, Vec<String>)]) -> Result<Self> {
        let mut spec = FormatSpec::default();
        let csv = &mut spec.csv;
        for (key, values) in options {
            let v = values.first().cloned().unwrap_or_default();
            match key.as_str() {
                "TYPE" | "FORMAT" => {
                    spec.format = Some(match v.to_ascii_uppercase().as_str() {
                        "CSV" => FileFormat::Csv(CsvOptions::default()),
                        "JSON" | "NDJSON" => FileFormat::Json,
                        "PARQUET" => FileFormat::Parquet,
                        other => {
                            return Err(Error::Unsupported(format!(
                                "file format {other} (use CSV, JSON or PARQUET)"
                            )));
                        }
                    })
                }
                "SKIP_HEADER" => {
                    csv.skip_header = v.parse().map_err(|_| {
                        Error::Plan(format!("SKIP_HEADER must be a number, got {v}"))
                    })?
                }
                "HEADER" | "PARSE_HEADER" => csv.skip_header = usize::from(boolean(key, &v)?),
                "FIELD_DELIMITER" | "DELIMITER" => csv.delimiter = single_byte(key, &v)?,
                "FIELD_OPTIONALLY_ENCLOSED_BY" | "QUOTE" => csv.quote = single_byte(key, &v)?,
                "ESCAPE" | "ESCAPE_UNENCLOSED_FIELD" => {
                    if !v.eq_ignore_ascii_case("NONE") {
                        csv.escape = Some(single_byte(key, &v)?)
                    }
                }
                "NULL_IF" => csv.null_if = values.clone(),
                "EMPTY_FIELD_AS_NULL" => csv.empty_field_as_null = boolean(key, &v)?,
                "TRIM_SPACE" => csv.trim_space = boolean(key, &v)?,
                "DATE_FORMAT" | "TIMESTAMP_FORMAT" => {
                    // Snowflake's words (`DD/MM/YYYY`) or chrono's (`%d/%m/%Y`); AUTO is ISO 8601.
                    let format = (!v.eq_ignore_ascii_case("AUTO")).then(|| {
                        crate::functions::chrono_format("to_date", &v).unwrap_or_else(|| v.clone())
                    });
                    if key == "DATE_FORMAT" {
                        csv.date_format = format;
                    } else {
                        csv.timestamp_format = format;
                    }
                }
                "ERROR_ON_COLUMN_COUNT_MISMATCH" => {
                    csv.error_on_column_count_mismatch = boolean(key, &v)?
                }
                // The CSV reader always skips blank lines.
                "SKIP_BLANK_LINES" if boolean(key, &v)? => {}
                "SKIP_BLANK_LINES" => {
                    return Err(Error::Unsupported(
                        "SKIP_BLANK_LINES = FALSE: blank lines are always skipped".to_string(),
                    ));
                }
                "ENCODING" if ["UTF8", "UTF-8"].contains(&v.to_ascii_uppercase().as_str()) => {}
                "ENCODING" => {
                    return Err(Error::Unsupported(format!(
                        "ENCODING = {v}: files are read as UTF-8 (convert them first, for \
                         example with iconv)"
                    )));
                }
                "COMPRESSION" => {
                    spec.compression = Compression::parse(&v).map_err(Error::Unsupported)?
                }
                "FORMAT_NAME" => {
                    return Err(Error::Plan(
                        "FORMAT_NAME names a file format; it cannot be used inside one".to_string(),
                    ));
                }
                other => {
                    return Err(Error::Unsupported(format!("FILE_FORMAT option {other}")));
                }
            }
        }
        Ok(spec)
    }

    /// The format of the file `name`: the declared one, else by its extension; CSV with the
    /// CSV options.
    pub(crate) fn format_of(&self, name: &str) -> FileFormat {
        match self
            .format
            .clone()
            .unwrap_or_else(|| FileFormat::from_extension(name))
        {
            FileFormat::Csv(_) => FileFormat::Csv(self.csv.clone()),
            other => other,
        }
    }

    /// How the file `name` is compressed: as declared, else by its extension.
    pub(crate) fn compression_of(&self, name: &str) -> Compression {
        self.compression
            .unwrap_or_else(|| Compression::from_extension(name))
    }
}

/// The options of a parsed `(NAME = value ...)` list, names upper case, in order.
pub(crate) fn key_values(kv: &KeyValueOptions) -> FormatOptions {
    let text = |v: &Value| match v {
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
        Value::Number(n, _) => n.clone(),
        Value::Boolean(b) => b.to_string(),
        Value::Placeholder(p) => p.clone(),
        other => other.to_string(),
    };
    kv.options
        .iter()
        .filter_map(|o| {
            let values = match &o.option_value {
                KeyValueOptionKind::Single(v) => vec![text(&v.value)],
                KeyValueOptionKind::Multi(vs) => vs.iter().map(|v| text(&v.value)).collect(),
                KeyValueOptionKind::KeyValueOptions(_) => return None,
            };
            Some((o.option_name.to_ascii_uppercase(), values))
        })
        .collect()
}

fn single_byte(name: &str, value: &str) -> Result<u8> {
    let unescaped = match value {
        "\\t" => "\t",
        other => other,
    };
    match unescaped.as_bytes() {
        [b] => Ok(*b),
        _ => Err(Error::Plan(format!(
            "{name} must be a single character, got '{value}'"
        ))),
    }
}

/// A TRUE/FALSE option, strictly: a misspelt value is an error, not FALSE.
pub(crate) fn boolean(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_uppercase().as_str() {
        "TRUE" | "1" | "YES" => Ok(true),
        "FALSE" | "0" | "NO" => Ok(false),
        _ => Err(Error::Plan(format!("{key} must be TRUE or FALSE, got {v}"))),
    }
}
