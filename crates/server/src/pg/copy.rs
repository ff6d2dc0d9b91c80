//! `COPY table FROM STDIN`, as `psql \copy` and drivers' bulk loads send it: its options, and
//! the temporary file its rows are spooled to (see `load` for the loading).

use std::path::PathBuf;

use datafusion::sql::sqlparser::tokenizer::Token;

/// What a `COPY ... FROM STDIN` asks for.
#[derive(Debug, Clone)]
pub(crate) struct CopySpec {
    /// The table, as written.
    pub(crate) table: String,
    /// `FORMAT csv` (otherwise PostgreSQL's text format: tab-separated, `\N` for NULL).
    csv: bool,
    header: bool,
    delimiter: Option<String>,
    null: Option<String>,
    quote: Option<String>,
    /// `COPY t (a, b) FROM STDIN`: not supported (columns load in the table's order).
    pub(crate) column_list: bool,
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
        // The table, rebuilt from its name's parts only, each quoted: nothing the client
        // wrote can become more of the generated statement than a name.
        let mut parts = Vec::new();
        for token in target.iter().take_while(|t| !matches!(t, Token::LParen)) {
            match token {
                Token::Word(w) if w.quote_style.is_some() => {
                    parts.push(format!("\"{}\"", w.value.replace('"', "\"\"")));
                }
                Token::Word(w) => parts.push(format!(
                    "\"{}\"",
                    w.value.to_ascii_lowercase().replace('"', "\"\"")
                )),
                Token::Period => {}
                _ => return None,
            }
        }
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        let table = parts.join(".");
        let mut spec = CopySpec {
            table,
            csv: false,
            header: false,
            delimiter: None,
            null: None,
            quote: None,
            column_list: false,
        };
        spec.column_list = target.iter().any(|t| matches!(t, Token::LParen));
        let options: Vec<&Token> = tokens[from + 2..]
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
                Some(Token::SingleQuotedString(s)) => Some(s.clone()),
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
                    spec.csv = value(i).is_some_and(|v| v.eq_ignore_ascii_case("csv"));
                    i += 1;
                }
                "HEADER" => {
                    // HEADER, HEADER true, HEADER false
                    match options.get(i + 1) {
                        Some(Token::Word(v)) if v.value.eq_ignore_ascii_case("false") => {
                            i += 1;
                        }
                        Some(Token::Word(v))
                            if v.value.eq_ignore_ascii_case("true")
                                || v.value.eq_ignore_ascii_case("match") =>
                        {
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
        Some(spec)
    }

    /// The `COPY INTO` that loads the spooled file at `path`.
    pub(crate) fn copy_into(&self, path: &std::path::Path) -> String {
        // Strata reads string literals with backslash escapes: double both.
        let quote = |s: &str| s.replace('\\', "\\\\").replace('\'', "''");
        let mut format = vec!["TYPE = CSV".to_string()];
        if self.header {
            format.push("SKIP_HEADER = 1".to_string());
        }
        let delimiter = self
            .delimiter
            .clone()
            .unwrap_or_else(|| if self.csv { "," } else { "\t" }.to_string());
        format.push(format!("FIELD_DELIMITER = '{}'", quote(&delimiter)));
        let null = self
            .null
            .clone()
            .unwrap_or_else(|| if self.csv { "" } else { "\\N" }.to_string());
        format.push(format!("NULL_IF = ('{}')", quote(&null)));
        if self.csv {
            let enclosure = self.quote.clone().unwrap_or_else(|| "\"".to_string());
            format.push(format!(
                "FIELD_OPTIONALLY_ENCLOSED_BY = '{}'",
                quote(&enclosure)
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

    fn spec(sql: &str) -> Option<CopySpec> {
        let tokens: Vec<Token> = datafusion::sql::sqlparser::tokenizer::Tokenizer::new(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .tokenize()
        .unwrap()
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .collect();
        CopySpec::parse(&tokens)
    }

    #[test]
    fn psql_and_driver_forms_of_copy_from_stdin() {
        let s =
            spec("COPY public.t FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')").unwrap();
        assert_eq!(s.table, "\"public\".\"t\"");
        assert!(s.csv && s.header);
        assert_eq!(s.delimiter.as_deref(), Some(";"));
        // psql's \copy t from 'f.csv' csv header
        let s = spec("COPY  t FROM STDIN csv header").unwrap();
        assert!(s.csv && s.header);
        let sql = s.copy_into(std::path::Path::new("/tmp/x'.csv"));
        assert!(
            sql.contains("'/tmp/x''.csv'") && sql.contains("SKIP_HEADER = 1"),
            "{sql}"
        );
        let s = spec("COPY t FROM STDIN").unwrap();
        assert!(!s.csv);
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
}
