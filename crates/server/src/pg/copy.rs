//! `COPY table FROM STDIN` and `COPY ... TO STDOUT`, as `psql \copy` and drivers' bulk loads
//! and extracts send them: their options, the temporary file rows coming in are spooled to
//! (see `load` for the loading), and the writer of rows going out.

use std::path::PathBuf;
#[cfg(test)]
use std::sync::Arc;

use datafusion::sql::sqlparser::tokenizer::Token;

/// The data format options of a `COPY` (PostgreSQL's, both directions).
#[derive(Debug, Clone, Default)]
pub(crate) struct CopyOptions {
    /// `FORMAT csv` (otherwise PostgreSQL's text format: tab-separated, `\N` for NULL).
    csv: bool,
    /// `FORMAT binary`: refused (PostgreSQL's binary COPY format is not spoken).
    pub(crate) binary: bool,
    header: bool,
    delimiter: Option<String>,
    null: Option<String>,
    quote: Option<String>,
}

/// What a `COPY ... FROM STDIN` asks for.
#[derive(Debug, Clone)]
pub(crate) struct CopySpec {
    /// The table, as written.
    pub(crate) table: String,
    pub(crate) options: CopyOptions,
    /// `COPY t (a, b) FROM STDIN`: not supported (columns load in the table's order).
    pub(crate) column_list: bool,
}

/// What a `COPY (query) TO STDOUT` or `COPY table [(columns)] TO STDOUT` asks for.
#[derive(Debug, Clone)]
pub(crate) struct CopyOutSpec {
    /// The query whose rows go out (`SELECT ... FROM table` for the table form).
    pub(crate) query: String,
    pub(crate) options: CopyOptions,
}

/// A table's name from its tokens (up to a `(`), each part quoted: nothing the client wrote
/// can become more of a generated statement than a name. `None` unless 1 to 3 parts.
fn quoted_name(tokens: &[Token]) -> Option<String> {
    let mut parts = Vec::new();
    for token in tokens.iter().take_while(|t| !matches!(t, Token::LParen)) {
        match token {
            Token::Word(w) => parts.push(quote_ident(w)),
            Token::Period => {}
            _ => return None,
        }
    }
    (!parts.is_empty() && parts.len() <= 3).then(|| parts.join("."))
}

/// A word as a quoted identifier: as written when it was quoted, in lower case otherwise.
fn quote_ident(w: &datafusion::sql::sqlparser::tokenizer::Word) -> String {
    let name = if w.quote_style.is_some() {
        w.value.clone()
    } else {
        w.value.to_ascii_lowercase()
    };
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl CopyOptions {
    /// Reads `[WITH] (FORMAT csv, HEADER, DELIMITER ';', NULL '', QUOTE '"')` or the legacy
    /// `CSV HEADER DELIMITER AS ';'` from the tokens after `STDIN`/`STDOUT`.
    fn parse(tokens: &[Token]) -> Self {
        let mut spec = CopyOptions::default();
        let options: Vec<&Token> = tokens
            .iter()
            .filter(|t| !matches!(t, Token::LParen | Token::RParen | Token::Comma))
            .collect();
        let mut i = 0;
        let value = |i: usize| -> Option<String> {
            let mut j = i + 1;
            if matches!(options.get(j), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("AS"))
            {
                j += 1;
            }
            match options.get(j) {
                Some(Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s)) => {
                    Some(s.clone())
                }
                Some(Token::Word(w)) => Some(w.value.clone()),
                Some(other) => Some(other.to_string()),
                None => None,
            }
        };
        while i < options.len() {
            let Token::Word(w) = options[i] else {
                i += 1;
                continue;
            };
            match w.value.to_ascii_uppercase().as_str() {
                "CSV" => spec.csv = true,
                "FORMAT" => {
                    let format = value(i).unwrap_or_default();
                    spec.csv = format.eq_ignore_ascii_case("csv");
                    spec.binary = format.eq_ignore_ascii_case("binary");
                    i += 1;
                }
                "BINARY" => spec.binary = true,
                "HEADER" => {
                    // HEADER alone, or with a boolean as PostgreSQL spells them (or MATCH).
                    let flag = match options.get(i + 1) {
                        Some(Token::Word(v)) => Some(v.value.to_ascii_lowercase()),
                        Some(Token::Number(n, _)) => Some(n.clone()),
                        Some(Token::SingleQuotedString(v)) => Some(v.to_ascii_lowercase()),
                        _ => None,
                    };
                    match flag.as_deref() {
                        Some("false" | "off" | "0") => i += 1,
                        Some("true" | "on" | "1" | "match") => {
                            spec.header = true;
                            i += 1;
                        }
                        _ => spec.header = true,
                    }
                }
                "DELIMITER" => {
                    spec.delimiter = value(i);
                    i += 1;
                }
                "NULL" => {
                    spec.null = value(i);
                    i += 1;
                }
                "QUOTE" => {
                    spec.quote = value(i);
                    i += 1;
                }
                _ => {}
            }
            i += 1;
        }
        spec
    }

    fn delimiter(&self) -> String {
        self.delimiter
            .clone()
            .unwrap_or_else(|| if self.csv { "," } else { "\t" }.to_string())
    }

    fn null(&self) -> String {
        self.null
            .clone()
            .unwrap_or_else(|| if self.csv { "" } else { "\\N" }.to_string())
    }

    fn quote(&self) -> String {
        self.quote.clone().unwrap_or_else(|| "\"".to_string())
    }
}

impl CopySpec {
    /// Reads `COPY table [(columns)] FROM STDIN [[WITH] (options) | legacy options]` from a
    /// statement's tokens (whitespace dropped); `None` for any other COPY.
    pub(crate) fn parse(tokens: &[Token]) -> Option<Self> {
        let from = tokens
            .iter()
            .position(|t| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case("FROM")))?;
        let stdin = matches!(tokens.get(from + 1), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("STDIN"));
        if !stdin {
            return None;
        }
        let target = &tokens[1..from];
        Some(CopySpec {
            table: quoted_name(target)?,
            options: CopyOptions::parse(tokens.get(from + 2..).unwrap_or_default()),
            column_list: target.iter().any(|t| matches!(t, Token::LParen)),
        })
    }

    /// The `COPY INTO` that loads the spooled file at `path`.
    pub(crate) fn copy_into(&self, path: &std::path::Path) -> String {
        // Strata reads string literals with backslash escapes: double both.
        let quote = |s: &str| s.replace('\\', "\\\\").replace('\'', "''");
        let options = &self.options;
        let mut format = vec!["TYPE = CSV".to_string()];
        if options.header {
            format.push("SKIP_HEADER = 1".to_string());
        }
        format.push(format!(
            "FIELD_DELIMITER = '{}'",
            quote(&options.delimiter())
        ));
        format.push(format!("NULL_IF = ('{}')", quote(&options.null())));
        if options.csv {
            format.push(format!(
                "FIELD_OPTIONALLY_ENCLOSED_BY = '{}'",
                quote(&options.quote())
            ));
        }
        format!(
            "COPY INTO {} FROM '{}' FILE_FORMAT = ({})",
            self.table,
            quote(&path.display().to_string()),
            format.join(" ")
        )
    }
}

impl CopyOutSpec {
    /// Reads `COPY (query) TO STDOUT [options]` or `COPY table [(columns)] TO STDOUT
    /// [options]` (`psql \copy ... to 'file'` sends these); `None` for any other COPY. `tokens`
    /// are `text`'s, whitespace dropped.
    pub(crate) fn parse(text: &str, tokens: &[Token]) -> Option<Self> {
        let is_word = |t: Option<&Token>, word: &str| matches!(t, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
        let to = tokens
            .iter()
            .enumerate()
            .rposition(|(i, t)| is_word(Some(t), "TO") && is_word(tokens.get(i + 1), "STDOUT"))?;
        let options = CopyOptions::parse(tokens.get(to + 2..).unwrap_or_default());
        if matches!(tokens.get(1), Some(Token::LParen)) {
            // The query is the text between the `(` after COPY and the `)` before TO STDOUT;
            // of the candidates, the one that parses as a single query.
            let open = text.find('(')?;
            let upper = text.to_ascii_uppercase();
            let query = upper
                .match_indices(')')
                .rev()
                .filter(|(close, _)| {
                    let rest = upper[close + 1..].trim_start();
                    rest.strip_prefix("TO")
                        .is_some_and(|r| r.trim_start().starts_with("STDOUT"))
                })
                .filter_map(|(close, _)| text.get(open + 1..close))
                // Each candidate is parsed: a few, so that text made of `) TO STDOUT` repeated
                // costs no more than a few parses.
                .take(4)
                .find(|q| {
                    strata_query::parser::parse(q)
                        .is_ok_and(|s| s.len() == 1 && strata_query::Session::is_streamed(&s[0]))
                })?;
            return Some(Self {
                query: query.trim().to_string(),
                options,
            });
        }
        let target = &tokens[1..to];
        let table = quoted_name(target)?;
        let columns = match target.iter().position(|t| matches!(t, Token::LParen)) {
            None => "*".to_string(),
            Some(open) => {
                let mut names = Vec::new();
                for t in &target[open + 1..] {
                    match t {
                        Token::Word(w) => names.push(quote_ident(w)),
                        Token::Comma => {}
                        Token::RParen => break,
                        _ => return None,
                    }
                }
                if names.is_empty() {
                    return None;
                }
                names.join(", ")
            }
        };
        Some(Self {
            query: format!("SELECT {columns} FROM {table}"),
            options,
        })
    }
}

/// Writes rows in PostgreSQL's COPY formats: text (tab-separated, `\N` for NULL, backslash
/// escapes) or CSV (quoted where needed, NULL as an unquoted empty field). Values print as
/// PostgreSQL prints them: `t`/`f`, `2024-01-31 12:00:00`.
pub(crate) struct CopyWriter {
    options: CopyOptions,
    delimiter: String,
    null: String,
    quote: String,
}

impl CopyWriter {
    pub(crate) fn new(options: &CopyOptions) -> Self {
        Self {
            delimiter: options.delimiter(),
            null: options.null(),
            quote: options.quote(),
            options: options.clone(),
        }
    }

    /// The header line, when the options ask for one.
    pub(crate) fn header(&self, schema: &arrow::datatypes::Schema) -> Option<Vec<u8>> {
        if !self.options.header {
            return None;
        }
        let mut line = String::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if i > 0 {
                line.push_str(&self.delimiter);
            }
            self.push_value(&mut line, field.name());
        }
        line.push('\n');
        Some(line.into_bytes())
    }

    /// One line per row of `batch`.
    pub(crate) fn rows(&self, batch: &arrow::array::RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        use arrow::array::Array;
        use arrow::util::display::{ArrayFormatter, FormatOptions};
        let formats = FormatOptions::default()
            .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
            .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"));
        let columns = batch.columns();
        let formatters = columns
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &formats))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut lines = Vec::with_capacity(batch.num_rows());
        let mut value = String::new();
        for row in 0..batch.num_rows() {
            let mut line = String::new();
            for (i, (column, formatter)) in columns.iter().zip(&formatters).enumerate() {
                if i > 0 {
                    line.push_str(&self.delimiter);
                }
                if column.is_null(row) {
                    line.push_str(&self.null);
                    continue;
                }
                value.clear();
                if let Some(b) = column.as_any().downcast_ref::<arrow::array::BooleanArray>() {
                    value.push(if b.value(row) { 't' } else { 'f' });
                } else {
                    use std::fmt::Write;
                    write!(value, "{}", formatter.value(row)).map_err(|e| e.to_string())?;
                }
                self.push_value(&mut line, &value);
            }
            line.push('\n');
            lines.push(line.into_bytes());
        }
        Ok(lines)
    }

    /// A non-NULL value, quoted (CSV) or escaped (text) as PostgreSQL writes it.
    fn push_value(&self, line: &mut String, value: &str) {
        if self.options.csv {
            let needs_quotes = value.is_empty() && self.null.is_empty()
                || value == self.null
                || value.contains(self.delimiter.as_str())
                || value.contains(self.quote.as_str())
                || value.contains(['\n', '\r']);
            if needs_quotes {
                line.push_str(&self.quote);
                line.push_str(&value.replace(self.quote.as_str(), &format!("{0}{0}", self.quote)));
                line.push_str(&self.quote);
            } else {
                line.push_str(value);
            }
            return;
        }
        for c in value.chars() {
            match c {
                '\\' => line.push_str("\\\\"),
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                '\t' => line.push_str("\\t"),
                c if self.delimiter.starts_with(c) => {
                    line.push('\\');
                    line.push(c);
                }
                c => line.push(c),
            }
        }
    }
}

/// The data of a running `COPY FROM STDIN`, spooled to a file removed on drop.
pub(crate) struct Spool {
    pub(crate) spec: CopySpec,
    pub(crate) path: PathBuf,
    pub(crate) file: std::io::BufWriter<std::fs::File>,
}

impl Spool {
    pub(crate) fn create(spec: CopySpec) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "strata-pg-copy-{}.csv",
            uuid::Uuid::new_v4().simple()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        // Only the server's user may read the rows being loaded.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        Ok(Self {
            spec,
            path,
            file: std::io::BufWriter::with_capacity(1 << 20, file),
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sql`'s tokens as `compat` hands them over: whitespace dropped.
    fn tokens(sql: &str) -> Vec<Token> {
        datafusion::sql::sqlparser::tokenizer::Tokenizer::new(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .tokenize()
        .unwrap()
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .collect()
    }

    fn spec(sql: &str) -> Option<CopySpec> {
        CopySpec::parse(&tokens(sql))
    }

    #[test]
    fn psql_and_driver_forms_of_copy_from_stdin() {
        let s =
            spec("COPY public.t FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')").unwrap();
        assert_eq!(s.table, "\"public\".\"t\"");
        assert!(s.options.csv && s.options.header);
        assert_eq!(s.options.delimiter.as_deref(), Some(";"));
        // psql's \copy t from 'f.csv' csv header
        let s = spec("COPY  t FROM STDIN csv header").unwrap();
        assert!(s.options.csv && s.options.header);
        let sql = s.copy_into(std::path::Path::new("/tmp/x'.csv"));
        assert!(
            sql.contains("'/tmp/x''.csv'") && sql.contains("SKIP_HEADER = 1"),
            "{sql}"
        );
        let s = spec("COPY t FROM STDIN").unwrap();
        assert!(!s.options.csv);
        assert!(
            s.copy_into(std::path::Path::new("/f"))
                .contains(r"NULL_IF = ('\\N')")
        );
        assert!(spec("COPY t TO STDOUT").is_none());
        // A quoted name cannot end early: it stays one name, its quote doubled.
        let s = spec(r#"COPY "t"" FROM '/etc/passwd' --" FROM STDIN"#).unwrap();
        assert!(
            s.copy_into(std::path::Path::new("/f"))
                .starts_with(r#"COPY INTO "t"" FROM '/etc/passwd' --" FROM '/f' "#),
            "{}",
            s.copy_into(std::path::Path::new("/f"))
        );
        assert!(spec("COPY t; DROP TABLE x FROM STDIN").is_none());
        assert!(spec("COPY INTO t FROM 'f.csv'").is_none());
    }

    fn out(sql: &str) -> Option<CopyOutSpec> {
        CopyOutSpec::parse(sql, &tokens(sql))
    }

    #[test]
    fn psql_forms_of_copy_to_stdout() {
        let s = out("COPY ( SELECT a, ')' AS p FROM t ) TO STDOUT csv header").unwrap();
        assert_eq!(s.query, "SELECT a, ')' AS p FROM t");
        assert!(s.options.csv && s.options.header);
        let s = out(r#"COPY public."T" (a, "B") TO STDOUT"#).unwrap();
        assert_eq!(s.query, r#"SELECT "a", "B" FROM "public"."T""#);
        assert!(!s.options.csv);
        assert!(
            out("COPY t TO STDOUT (FORMAT binary)")
                .unwrap()
                .options
                .binary
        );
        assert!(spec("COPY t FROM STDIN BINARY").unwrap().options.binary);
        assert!(
            !out("COPY t TO STDOUT (FORMAT csv, HEADER off)")
                .unwrap()
                .options
                .header
        );
        assert!(
            !spec("COPY t FROM STDIN (FORMAT csv, HEADER 0)")
                .unwrap()
                .options
                .header
        );
        assert!(
            spec("COPY t FROM STDIN (FORMAT csv, HEADER on)")
                .unwrap()
                .options
                .header
        );
        let tab = spec(r"COPY t FROM STDIN (FORMAT csv, DELIMITER E'\t')").unwrap();
        assert_eq!(tab.options.delimiter.as_deref(), Some("\t"));
        assert!(out("COPY t TO '/tmp/x'").is_none());
        assert!(out("COPY t; DROP TABLE x TO STDOUT").is_none());
        assert!(out("COPY (DROP TABLE t) TO STDOUT").is_none());
    }

    #[test]
    fn rows_are_written_as_postgresql_writes_them() {
        use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray};
        let batch = arrow::array::RecordBatch::try_from_iter([
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a,\"b\"\tc\\"), Some("")])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])) as ArrayRef,
            ),
        ])
        .unwrap();
        let text = CopyWriter::new(&CopyOptions::default());
        let lines: Vec<String> = text
            .rows(&batch)
            .unwrap()
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect();
        assert_eq!(lines, ["1\ta,\"b\"\\tc\\\\\tt\n", "\\N\t\tf\n"]);
        let csv = CopyWriter::new(&CopyOptions {
            csv: true,
            header: true,
            ..CopyOptions::default()
        });
        assert_eq!(csv.header(&batch.schema()).unwrap(), b"n,s,b\n");
        let lines: Vec<String> = csv
            .rows(&batch)
            .unwrap()
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect();
        assert_eq!(lines, ["1,\"a,\"\"b\"\"\tc\\\",t\n", ",\"\",f\n"]);
    }
}
