//! Line editing support for the shell (rustyline's `Helper`): tab completion of SQL keywords,
//! meta commands, file names and the warehouse's databases, schemas, tables and columns, and
//! the check that lets a statement span lines until its closing `;`.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::meta;
use crate::render::Format;

/// Keywords offered by completion: the statements and clauses data engineers type, not every
/// word the parser knows.
const KEYWORDS: &[&str] = &[
    "ALTER",
    "AND",
    "APPLY",
    "AS",
    "ASC",
    "BETWEEN",
    "BIGINT",
    "BOOLEAN",
    "BY",
    "CASE",
    "CAST",
    "CHANGES",
    "COPY",
    "COUNT",
    "CREATE",
    "CROSS",
    "CURRENT_DATE",
    "DATABASE",
    "DATE",
    "DATEADD",
    "DATE_TRUNC",
    "DECIMAL",
    "DELETE",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "DOUBLE",
    "DROP",
    "ELSE",
    "END",
    "EXISTS",
    "EXPLAIN",
    "ANALYZE",
    "FALSE",
    "FILE_FORMAT",
    "FOREIGN",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INNER",
    "INSERT",
    "INT",
    "INTEGER",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATCHED",
    "MATERIALIZED",
    "MAX",
    "MERGE",
    "MIN",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PRIMARY",
    "RANGE",
    "REFERENCES",
    "REFRESH",
    "REPLACE",
    "RIGHT",
    "SCHEMA",
    "SELECT",
    "SET",
    "SHOW",
    "SUM",
    "AVG",
    "TABLE",
    "THEN",
    "TIMESTAMP",
    "TRUE",
    "TRUNCATE",
    "UNION",
    "UPDATE",
    "USING",
    "VALUES",
    "VARCHAR",
    "VIEW",
    "WHEN",
    "WHERE",
    "WITH",
    "CREDENTIALS",
    "STAGE",
    "PARTITIONS",
];

/// The names completion offers, refreshed by the shell after statements that may change them.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Databases, schemas, tables (bare and qualified) and columns, sorted, without repeats.
    pub(crate) words: Vec<String>,
    /// Tables and views (bare and qualified), for `\d`.
    pub(crate) tables: Vec<String>,
}

/// The shell's rustyline helper.
pub(crate) struct ShellHelper {
    names: Arc<RwLock<Names>>,
    files: FilenameCompleter,
}

impl ShellHelper {
    pub(crate) fn new(names: Arc<RwLock<Names>>) -> Self {
        Self {
            names,
            files: FilenameCompleter::new(),
        }
    }
}

/// Candidates from `words` starting with `prefix`, ignoring case.
fn matching<'a>(words: impl IntoIterator<Item = &'a str>, prefix: &str) -> Vec<Pair> {
    let lower = prefix.to_lowercase();
    let mut found: Vec<Pair> = words
        .into_iter()
        .filter(|w| w.to_lowercase().starts_with(&lower))
        .map(|w| Pair {
            display: w.to_string(),
            replacement: w.to_string(),
        })
        .collect();
    found.dedup_by(|a, b| a.replacement == b.replacement);
    found
}

/// A keyword in the case the user started typing it in.
fn keyword_like(keyword: &str, typed: &str) -> String {
    if typed.chars().next().is_some_and(char::is_lowercase) {
        keyword.to_lowercase()
    } else {
        keyword.to_string()
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        // The word under the cursor: a name, possibly qualified with dots.
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '\\'))
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(0);
        let word = &before[start..];
        if meta::is_meta(before) {
            let first_word_end = before.trim_start().find(char::is_whitespace);
            let Some(end) = first_word_end else {
                let offset = before.len() - before.trim_start().len();
                return Ok((offset, matching(meta::COMMANDS.iter().copied(), word)));
            };
            let command = &before.trim_start()[..end];
            return match command {
                "\\i" | "\\o" | ".read" | ".output" => self.files.complete(line, pos, ctx),
                "\\format" | ".mode" => {
                    let formats = Format::names();
                    Ok((start, matching(formats.split('|'), word)))
                }
                "\\d" | ".schema" => {
                    let names = self.names.read().expect("names lock");
                    Ok((
                        start,
                        matching(names.tables.iter().map(String::as_str), word),
                    ))
                }
                _ => Ok((pos, Vec::new())),
            };
        }
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let names = self.names.read().expect("names lock");
        let mut candidates = matching(names.words.iter().map(String::as_str), word);
        if !word.contains('.') {
            let keywords: Vec<String> = KEYWORDS.iter().map(|k| keyword_like(k, word)).collect();
            candidates.extend(matching(keywords.iter().map(String::as_str), word));
        }
        candidates.sort_by(|a, b| a.replacement.cmp(&b.replacement));
        candidates.dedup_by(|a, b| a.replacement == b.replacement);
        Ok((start, candidates))
    }
}

/// Whether `text` ends with a `;` that is not inside a string, a quoted name or a comment.
pub(crate) fn ends_statement(text: &str) -> bool {
    let mut last = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // A quoted string or name; '' inside is an escaped quote.
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
                last = Some(c);
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut star = false;
                for d in chars.by_ref() {
                    if star && d == '/' {
                        break;
                    }
                    star = d == '*';
                }
            }
            c if c.is_whitespace() => {}
            c => last = Some(c),
        }
    }
    last == Some(';')
}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.trim().is_empty() || meta::is_meta(input) || ends_statement(input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use rustyline::history::DefaultHistory;

    use super::*;

    fn complete(helper: &ShellHelper, line: &str) -> Vec<String> {
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (_, pairs) = helper.complete(line, line.len(), &ctx).expect("complete");
        pairs.into_iter().map(|p| p.replacement).collect()
    }

    #[test]
    fn completes_keywords_names_and_meta_commands() {
        let names = Names {
            words: vec![
                "lineorder".into(),
                "lo_revenue".into(),
                "public".into(),
                "public.lineorder".into(),
            ],
            tables: vec!["lineorder".into(), "public.lineorder".into()],
        };
        let helper = ShellHelper::new(Arc::new(RwLock::new(names)));
        assert_eq!(complete(&helper, "SEL"), vec!["SELECT"]);
        assert_eq!(complete(&helper, "sel"), vec!["select"]);
        assert_eq!(complete(&helper, "SELECT lo_r"), vec!["lo_revenue"]);
        assert_eq!(
            complete(&helper, "SELECT * FROM public.li"),
            vec!["public.lineorder"]
        );
        assert_eq!(complete(&helper, "\\ti"), vec!["\\timing"]);
        assert_eq!(complete(&helper, "\\format nd"), vec!["ndjson"]);
        assert_eq!(complete(&helper, "\\d line"), vec!["lineorder"]);
    }

    #[test]
    fn a_statement_ends_at_a_semicolon_outside_quotes_and_comments() {
        assert!(ends_statement("SELECT 1;"));
        assert!(ends_statement("SELECT 1;  -- done\n"));
        assert!(!ends_statement("SELECT 1"));
        assert!(!ends_statement("SELECT ';"));
        assert!(!ends_statement("SELECT 1 -- ;"));
        assert!(!ends_statement("SELECT 1 /* ; */"));
        assert!(ends_statement("SELECT 'a;b' /* x */ ;"));
    }
}
