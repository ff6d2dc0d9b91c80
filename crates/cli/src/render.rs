//! Query results as text: the aligned table people read in a terminal, and CSV, TSV, JSON,
//! NDJSON and Markdown for other programs. `strata -c` and the interactive shell share it.
//!
//! The table fits the terminal: columns wider than their share of the width are cut with `…`,
//! numbers are right-aligned, NULL is spelled out, and a result with more rows than the shell
//! shows ends with "showing 40 of 10,000,000 rows".

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use clap::ValueEnum;

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned table for humans.
    Table,
    /// CSV with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// One JSON array of row objects.
    Json,
    /// Newline-delimited JSON: one object per row.
    Ndjson,
    /// A Markdown table.
    Markdown,
}

impl Format {
    /// The format named `name` (`table`, `csv`, `tsv`, `json`, `ndjson`, `markdown`).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        <Self as ValueEnum>::from_str(name, true).ok()
    }

    /// The names of all formats, for help and errors.
    pub(crate) fn names() -> String {
        Self::value_variants()
            .iter()
            .filter_map(|f| f.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// What NULL looks like in text output.
const NULL: &str = "NULL";
/// A column is never cut narrower than this to fit the terminal.
const MIN_COLUMN_WIDTH: usize = 6;

/// Rows an aligned table or a Markdown table written by [`ResultWriter`] holds at most: both
/// need every row before the first line (for the column widths), so a larger result is cut
/// with a note; CSV, TSV, JSON and NDJSON stream every row.
pub(crate) const MAX_TABLE_ROWS: usize = 100_000;

/// Writes a result batch by batch as it arrives, so that printing a result never holds it
/// whole: CSV, TSV, JSON and NDJSON are written as each batch comes; an aligned or Markdown
/// table keeps its first [`MAX_TABLE_ROWS`] rows and counts the rest.
pub(crate) struct ResultWriter<'a> {
    schema: SchemaRef,
    sink: Sink<'a>,
}

enum Sink<'a> {
    Csv {
        writer: Box<arrow::csv::Writer<Box<dyn Write + 'a>>>,
        wrote: bool,
    },
    Json(arrow::json::ArrayWriter<Box<dyn Write + 'a>>),
    Ndjson(arrow::json::LineDelimitedWriter<Box<dyn Write + 'a>>),
    Table {
        out: Box<dyn Write + 'a>,
        markdown: bool,
        kept: Vec<RecordBatch>,
        kept_rows: usize,
        rows: usize,
    },
}

impl<'a> ResultWriter<'a> {
    /// A writer of a result with `schema` in `format` to `out`.
    pub(crate) fn new(format: Format, schema: &SchemaRef, out: Box<dyn Write + 'a>) -> Self {
        let sink = match format {
            Format::Csv | Format::Tsv => Sink::Csv {
                writer: Box::new(
                    arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .with_delimiter(if format == Format::Csv { b',' } else { b'\t' })
                        .build(out),
                ),
                wrote: false,
            },
            // Keys whose value is NULL are kept, as `null`.
            Format::Json => Sink::Json(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(out),
            ),
            Format::Ndjson => Sink::Ndjson(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(out),
            ),
            Format::Table | Format::Markdown => Sink::Table {
                out,
                markdown: format == Format::Markdown,
                kept: Vec::new(),
                kept_rows: 0,
                rows: 0,
            },
        };
        Self {
            schema: std::sync::Arc::clone(schema),
            sink,
        }
    }

    /// Writes (or, for a table, keeps) one batch.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        match &mut self.sink {
            Sink::Csv { writer, wrote } => {
                writer.write(batch)?;
                *wrote = true;
            }
            Sink::Json(writer) => writer.write(batch)?,
            Sink::Ndjson(writer) => writer.write(batch)?,
            Sink::Table {
                kept,
                kept_rows,
                rows,
                ..
            } => {
                *rows += batch.num_rows();
                if *kept_rows < MAX_TABLE_ROWS {
                    let take = batch.num_rows().min(MAX_TABLE_ROWS - *kept_rows);
                    kept.push(batch.slice(0, take));
                    *kept_rows += take;
                }
            }
        }
        Ok(())
    }

    /// Ends the result: a CSV header for no rows, JSON's closing bracket, or the table.
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        match self.sink {
            Sink::Csv { mut writer, wrote } => {
                if !wrote {
                    writer.write(&RecordBatch::new_empty(self.schema))?;
                }
            }
            Sink::Json(mut writer) => {
                writer.finish()?;
                writeln!(writer.into_inner())?;
            }
            Sink::Ndjson(mut writer) => writer.finish()?,
            Sink::Table {
                out,
                markdown,
                kept,
                kept_rows,
                rows,
            } => {
                if markdown {
                    let mut out = out;
                    out.write_all(markdown_table(&self.schema, &kept)?.as_bytes())?;
                    out.write_all(cut_note(kept_rows, rows).as_bytes())?;
                } else {
                    let mut out = out;
                    out.write_all(table(&self.schema, &kept, rows, None).as_bytes())?;
                }
            }
        }
        Ok(())
    }
}

/// The cells of `batches` as text, row by row. A cell keeps its line breaks (an `EXPLAIN`
/// plan is a tree of lines); each format decides how to show them.
fn cells(batches: &[RecordBatch]) -> anyhow::Result<Vec<Vec<String>>> {
    // Timestamps as people write them, `2024-01-01 10:00:00`, with fractions only when present.
    let options = FormatOptions::default()
        .with_null(NULL)
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"));
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string().replace(['\r', '\t'], " "))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// A cell on one line: line breaks and tabs become spaces.
fn one_line(text: &str) -> String {
    if text.contains(['\n', '\r', '\t']) {
        text.replace(['\n', '\r', '\t'], " ")
    } else {
        text.to_string()
    }
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// The width of a cell's widest line.
fn cell_width(text: &str) -> usize {
    text.lines().map(width).max().unwrap_or(0)
}

/// `text` cut to `max` characters, the last one `…` when something was cut.
fn cut(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The rows of `batches` as an aligned table. `total_rows` is how many rows the result has
/// (more than `batches` hold when the caller kept only the first ones); `max_width` is the
/// terminal's width, which the table is made to fit.
pub(crate) fn table(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    total_rows: usize,
    max_width: Option<usize>,
) -> String {
    // A statement with no result columns (SET, USE) prints nothing.
    if schema.fields().is_empty() {
        return String::new();
    }
    let rows = match cells(batches) {
        Ok(rows) => rows,
        Err(e) => return format!("cannot format the result: {e}\n"),
    };
    let headers: Vec<String> = schema.fields().iter().map(|f| one_line(f.name())).collect();
    let right: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell_width(cell));
        }
    }
    if let Some(max) = max_width {
        // Borders: "| " before each column, " |" after the last, " | " between.
        let frame = 3 * widths.len() + 1;
        while widths.iter().sum::<usize>() + frame > max {
            let Some((widest, w)) = widths.iter().copied().enumerate().max_by_key(|&(_, w)| w)
            else {
                break;
            };
            if w <= MIN_COLUMN_WIDTH {
                break;
            }
            widths[widest] -= 1;
        }
    }
    let mut out = String::new();
    let rule = |out: &mut String| {
        out.push('+');
        for w in &widths {
            out.push_str(&"-".repeat(w + 2));
            out.push('+');
        }
        out.push('\n');
    };
    // A row as tall as its cell with the most lines; each line cut to its column's width.
    let line = |out: &mut String, cells: &[String], align_right: &[bool]| {
        let height = cells
            .iter()
            .map(|c| c.lines().count())
            .max()
            .unwrap_or(0)
            .max(1);
        for i in 0..height {
            out.push('|');
            for ((cell, w), right) in cells.iter().zip(&widths).zip(align_right) {
                let text = cut(cell.lines().nth(i).unwrap_or(""), *w);
                let pad = " ".repeat(w - width(&text));
                if *right {
                    out.push_str(&format!(" {pad}{text} |"));
                } else {
                    out.push_str(&format!(" {text}{pad} |"));
                }
            }
            out.push('\n');
        }
    };
    rule(&mut out);
    line(&mut out, &headers, &vec![false; headers.len()]);
    rule(&mut out);
    for row in &rows {
        line(&mut out, row, &right);
    }
    if !rows.is_empty() {
        rule(&mut out);
    }
    out.push_str(&cut_note(rows.len(), total_rows));
    out
}

/// The rows of `batches` one field per line, as psql's expanded display (`\x`).
pub(crate) fn expanded(schema: &SchemaRef, batches: &[RecordBatch], total_rows: usize) -> String {
    let rows = match cells(batches) {
        Ok(rows) => rows,
        Err(e) => return format!("cannot format the result: {e}\n"),
    };
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    let name_width = names.iter().map(|n| width(n)).max().unwrap_or(0);
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&format!(
            "-[ RECORD {} ]{}\n",
            i + 1,
            "-".repeat(name_width)
        ));
        for (name, value) in names.iter().zip(row) {
            let pad = " ".repeat(name_width - width(name));
            // Later lines of a value (a plan) line up under its first.
            let mut lines = value.lines();
            out.push_str(&format!("{name}{pad} | {}\n", lines.next().unwrap_or("")));
            for more in lines {
                out.push_str(&format!("{} | {more}\n", " ".repeat(name_width)));
            }
        }
    }
    out.push_str(&cut_note(rows.len(), total_rows));
    out
}

fn markdown_table(schema: &SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<String> {
    let escape = |s: &str| s.replace('|', "\\|");
    let headers: Vec<String> = schema.fields().iter().map(|f| escape(f.name())).collect();
    let mut out = format!("| {} |\n", headers.join(" | "));
    let rules: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.data_type().is_numeric() {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    out.push_str(&format!("| {} |\n", rules.join(" | ")));
    for row in cells(batches)? {
        let row: Vec<String> = row.iter().map(|c| escape(&one_line(c))).collect();
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    Ok(out)
}

/// "showing 40 of 10,000,000 rows" when a result was cut, else nothing.
fn cut_note(shown: usize, total: usize) -> String {
    if shown < total {
        format!(
            "showing {} of {} rows\n",
            group_digits(shown),
            group_digits(total)
        )
    } else {
        String::new()
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn sample() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("comment", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 200])),
                Arc::new(StringArray::from(vec![
                    Some("a rather long comment that will not fit"),
                    None,
                ])),
            ],
        )
        .expect("batch");
        (schema, vec![batch])
    }

    #[test]
    fn table_fits_the_width_and_spells_out_null() {
        let (schema, batches) = sample();
        let text = table(&schema, &batches, 2, Some(30));
        for line in text.lines() {
            assert!(width(line) <= 30, "{line:?} is wider than 30:\n{text}");
        }
        assert!(text.contains("| NULL "), "{text}");
        assert!(text.contains("a rather long"), "{text}");
        assert!(text.contains('…'), "{text}");
        // Numbers are right-aligned.
        assert!(text.contains("|   1 |"), "{text}");
    }

    #[test]
    fn a_plan_prints_as_indented_lines_in_table_and_expanded_display() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("plan_type", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["logical_plan"])),
                Arc::new(StringArray::from(vec![
                    "Aggregate: groupBy=[[t.k]]\n  TableScan: t projection=[k]",
                ])),
            ],
        )
        .expect("batch");
        let text = table(&schema, std::slice::from_ref(&batch), 1, None);
        assert!(
            text.contains("| logical_plan | Aggregate: groupBy=[[t.k]]    |\n")
                && text.contains("|              |   TableScan: t projection=[k] |\n"),
            "{text}"
        );
        let x = expanded(&schema, &[batch], 1);
        assert!(
            x.contains("plan      | Aggregate: groupBy=[[t.k]]\n          |   TableScan: t"),
            "{x}"
        );
        // A statement without result columns prints nothing.
        let empty = Arc::new(Schema::empty());
        assert_eq!(table(&empty, &[], 0, None), "");
    }

    #[test]
    fn a_cut_result_says_how_many_rows_it_has() {
        let (schema, batches) = sample();
        let text = table(&schema, &[batches[0].slice(0, 1)], 10_000_000, None);
        assert!(text.ends_with("showing 1 of 10,000,000 rows\n"), "{text}");
    }

    #[test]
    fn timestamps_read_as_people_write_them() {
        use arrow::array::{Array, TimestampMicrosecondArray};
        let array =
            TimestampMicrosecondArray::from(vec![1_704_103_200_000_000, 1_704_103_200_250_000]);
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("at", array.data_type().clone(), false),
        ]));
        let batch = RecordBatch::try_new(
            std::sync::Arc::clone(&schema),
            vec![std::sync::Arc::new(array)],
        )
        .unwrap();
        let text = table(&schema, &[batch], 2, None);
        assert!(text.contains("| 2024-01-01 10:00:00     |"), "{text}");
        assert!(text.contains("| 2024-01-01 10:00:00.250 |"), "{text}");
    }

    #[test]
    fn other_formats() {
        let (schema, batches) = sample();
        let render = |format| {
            let mut out = Vec::new();
            let mut writer = ResultWriter::new(format, &schema, Box::new(&mut out));
            for b in &batches {
                writer.write(b).expect("write");
            }
            writer.finish().expect("finish");
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(
            render(Format::Tsv),
            "id\tcomment\n1\ta rather long comment that will not fit\n200\t\n"
        );
        assert_eq!(
            render(Format::Markdown),
            "| id | comment |\n| ---: | --- |\n| 1 | a rather long comment that will not fit |\n| 200 | NULL |\n"
        );
        assert_eq!(
            render(Format::Json),
            "[{\"id\":1,\"comment\":\"a rather long comment that will not fit\"},{\"id\":200,\"comment\":null}]\n"
        );
        assert_eq!(
            render(Format::Ndjson),
            "{\"id\":1,\"comment\":\"a rather long comment that will not fit\"}\n{\"id\":200,\"comment\":null}\n"
        );
        let x = expanded(&schema, &batches, 2);
        assert!(x.starts_with("-[ RECORD 1 ]"), "{x}");
        assert!(x.contains("comment | NULL\n"), "{x}");
    }
}

/// An error and the errors under it, each said once: a cause whose text the message above it
/// already contains (an error that embeds its source, or a DataFusion diagnostic that wraps its
/// own error) is left out.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if message.is_empty() || text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

#[cfg(test)]
mod error_tests {
    use super::error_text;

    const MESSAGE: &str = "Error during planning: table 'x' not found";

    #[derive(Debug)]
    struct Planning;

    impl std::fmt::Display for Planning {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(MESSAGE)
        }
    }

    impl std::error::Error for Planning {}

    /// Says what its source says, as DataFusion's `Diagnostic` does.
    #[derive(Debug)]
    struct Diagnostic(Planning);

    impl std::fmt::Display for Diagnostic {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }

    impl std::error::Error for Diagnostic {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_message_is_said_once() {
        let e = anyhow::Error::new(Diagnostic(Planning));
        assert_eq!(error_text(&e), "Error during planning: table 'x' not found");
        let e = anyhow::Error::new(Diagnostic(Planning)).context("running script.sql");
        assert_eq!(
            error_text(&e),
            "running script.sql: Error during planning: table 'x' not found"
        );
    }
}
