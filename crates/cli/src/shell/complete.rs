//! Line editing support for the shell (rustyline's `Helper`): tab completion of SQL keywords,
//! meta commands, file names and the warehouse's databases, schemas, tables and columns, and
//! the check that lets a statement span lines until its closing `;`.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
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
    "TEST",
    "TESTS",
    "DATA",
    "RUN",
    "SEVERITY",
];

/// A table or view completion knows, with its columns.
#[derive(Debug, Default, Clone)]
pub(crate) struct TableNames {
    pub(crate) database: String,
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) columns: Vec<String>,
}

/// The names completion offers, refreshed by the shell after statements that may change them.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Every table and view of the warehouse.
    pub(crate) tables: Vec<TableNames>,
}

impl Names {
    fn databases(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.tables.iter().map(|t| t.database.as_str()).collect();
        out.sort();
        out.dedup();
        out
    }

    fn schemas(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.tables.iter().map(|t| t.schema.as_str()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The tables a name written in a statement may mean: `t`, `s.t` or `d.s.t`.
    fn resolve<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a TableNames> + 'a {
        let parts: Vec<String> = name.split('.').map(unquote).collect();
        self.tables.iter().filter(move |t| match parts.as_slice() {
            [n] => t.name == *n,
            [s, n] => t.schema == *s && t.name == *n,
            [d, s, n] => t.database == *d && t.schema == *s && t.name == *n,
            _ => false,
        })
    }

    /// What may follow `qualifier.`: the schemas of a database, the tables of a schema, or the
    /// columns of a table (or of the table an alias names).
    fn members(&self, qualifier: &str, aliases: &[(String, String)]) -> Vec<String> {
        let q = unquote(qualifier);
        let mut out = Vec::new();
        let table = aliases
            .iter()
            .find(|(_, alias)| *alias == q)
            .map_or(qualifier, |(table, _)| table.as_str());
        for t in self.resolve(table) {
            out.extend(t.columns.iter().cloned());
        }
        let parts: Vec<String> = qualifier.split('.').map(unquote).collect();
        for t in &self.tables {
            match parts.as_slice() {
                [d] if t.database == *d => out.push(t.schema.clone()),
                [s] if t.schema == *s => out.push(t.name.clone()),
                [d, s] if t.database == *d && t.schema == *s => out.push(t.name.clone()),
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out.into_iter()
            .map(|m| format!("{qualifier}.{m}"))
            .collect()
    }

    /// Names for `\d`: each table bare, with its schema, and fully qualified.
    fn describable(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .tables
            .iter()
            .flat_map(|t| {
                [
                    t.name.clone(),
                    format!("{}.{}", t.schema, t.name),
                    format!("{}.{}.{}", t.database, t.schema, t.name),
                ]
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A name part as SQL reads it: quoted parts as written, others lower-cased.
fn unquote(part: &str) -> String {
    let part = part.trim();
    match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => part.to_lowercase(),
    }
}

/// The shell's rustyline helper.
pub(crate) struct ShellHelper {
    names: Arc<RwLock<Names>>,
    /// The lines of a statement typed so far (before the current line), for context.
    pending: Arc<RwLock<String>>,
    files: FilenameCompleter,
}

impl ShellHelper {
    pub(crate) fn new(names: Arc<RwLock<Names>>, pending: Arc<RwLock<String>>) -> Self {
        Self {
            names,
            pending,
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

/// The words and punctuation of SQL text, without strings and comments: enough to see which
/// clause the cursor is in and which tables a statement reads.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                }
                out.push("'".to_string());
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == '"' => {
                let mut word = String::from(c);
                let mut quoted = c == '"';
                while let Some(&d) = chars.peek() {
                    if quoted || d.is_alphanumeric() || d == '_' || d == '.' || d == '"' {
                        if d == '"' {
                            quoted = !quoted;
                        }
                        word.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(word);
            }
            c if c.is_whitespace() => {}
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Keywords after which a table name comes.
const TABLE_CONTEXT: &[&str] = &[
    "FROM", "JOIN", "INTO", "UPDATE", "TABLE", "DESCRIBE", "DESC", "USING", "TRUNCATE", "VIEW",
];
/// Keywords after which a column or an expression comes.
const COLUMN_CONTEXT: &[&str] = &[
    "SELECT", "WHERE", "BY", "ON", "AND", "OR", "HAVING", "SET", "WHEN", "THEN", "ELSE", "CASE",
    "DISTINCT", "NOT", "QUALIFY",
];

/// Keywords that end a table reference (so they are not taken for its alias).
fn is_keyword(word: &str) -> bool {
    let upper = word.to_ascii_uppercase();
    KEYWORDS.contains(&upper.as_str()) || COLUMN_CONTEXT.contains(&upper.as_str())
}

/// The tables a statement names after FROM, JOIN, UPDATE, INTO or USING, each with its alias
/// (the table's own name when it has none).
fn statement_tables(tokens: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let upper = tokens[i].to_ascii_uppercase();
        if ["FROM", "JOIN", "UPDATE", "INTO", "USING"].contains(&upper.as_str()) {
            // `FROM a x, b AS y`: a list of references.
            loop {
                i += 1;
                let Some(name) = tokens.get(i) else { break };
                if name == "(" || is_keyword(name) {
                    break;
                }
                let mut alias = name.rsplit('.').next().unwrap_or(name).to_string();
                let mut next = i + 1;
                if tokens
                    .get(next)
                    .is_some_and(|t| t.eq_ignore_ascii_case("AS"))
                {
                    next += 1;
                }
                if let Some(a) = tokens.get(next)
                    && !is_keyword(a)
                    && a.chars()
                        .next()
                        .is_some_and(|c| c.is_alphabetic() || c == '_')
                {
                    alias = a.clone();
                    i = next;
                }
                out.push((name.clone(), unquote(&alias)));
                if tokens.get(i + 1).map(String::as_str) != Some(",") {
                    break;
                }
                i += 1;
            }
        }
        i += 1;
    }
    out
}

/// Where the cursor is: after a keyword that takes a table, one that takes a column, or
/// elsewhere.
#[derive(Debug, PartialEq, Eq)]
enum Clause {
    Table,
    Column,
    Other,
}

fn clause(before: &[String]) -> Clause {
    for token in before.iter().rev() {
        let upper = token.to_ascii_uppercase();
        if TABLE_CONTEXT.contains(&upper.as_str()) {
            return Clause::Table;
        }
        if COLUMN_CONTEXT.contains(&upper.as_str()) {
            return Clause::Column;
        }
        if upper == "(" || upper == ";" {
            // `count(` or a subquery's opening: an expression, unless a SELECT follows.
            return Clause::Column;
        }
    }
    Clause::Other
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
            .find(|(_, c)| {
                !(c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '\\' || *c == '"')
            })
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(0);
        let word = &before[start..];
        let pending = self.pending.read().expect("pending lock").clone();
        if pending.is_empty() && meta::is_meta(before) {
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
                    let describable = names.describable();
                    Ok((
                        start,
                        matching(describable.iter().map(String::as_str), word),
                    ))
                }
                _ => Ok((pos, Vec::new())),
            };
        }
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let names = self.names.read().expect("names lock");
        let statement = format!("{pending}{line}");
        let tables = statement_tables(&tokens(&statement));
        let context = tokens(&format!("{pending}{}", &before[..start]));
        let mut words: Vec<String> = Vec::new();
        let mut keywords = false;
        if let Some((qualifier, _)) = word.rsplit_once('.') {
            words = names.members(qualifier, &tables);
        } else {
            match clause(&context) {
                Clause::Table => {
                    words.extend(names.tables.iter().map(|t| t.name.clone()));
                    words.extend(names.schemas().into_iter().map(String::from));
                    words.extend(names.databases().into_iter().map(String::from));
                }
                Clause::Column => {
                    for (table, alias) in &tables {
                        for t in names.resolve(table) {
                            words.extend(t.columns.iter().cloned());
                        }
                        words.push(alias.clone());
                    }
                    if tables.is_empty() {
                        for t in &names.tables {
                            words.extend(t.columns.iter().cloned());
                        }
                    }
                    keywords = true;
                }
                Clause::Other => keywords = true,
            }
        }
        words.sort();
        words.dedup();
        let mut candidates = matching(words.iter().map(String::as_str), word);
        if keywords {
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

/// Lines are gathered into statements by the shell (with its continuation prompt), so
/// every line is complete as far as the editor is concerned.
impl Validator for ShellHelper {}

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

    fn table(database: &str, schema: &str, name: &str, columns: &[&str]) -> TableNames {
        TableNames {
            database: database.into(),
            schema: schema.into(),
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn helper() -> ShellHelper {
        let names = Names {
            tables: vec![
                table(
                    "main",
                    "public",
                    "lineorder",
                    &["lo_orderkey", "lo_revenue"],
                ),
                table(
                    "main",
                    "public",
                    "customer",
                    &["customer_id", "customer_name"],
                ),
                table("analytics", "production", "orders", &["order_id", "amount"]),
            ],
        };
        ShellHelper::new(Arc::new(RwLock::new(names)), Arc::default())
    }

    #[test]
    fn completes_keywords_names_and_meta_commands() {
        let helper = helper();
        assert_eq!(complete(&helper, "SEL"), vec!["SELECT"]);
        assert_eq!(complete(&helper, "sel"), vec!["select"]);
        assert_eq!(complete(&helper, "\\ti"), vec!["\\timing"]);
        assert_eq!(complete(&helper, "\\format nd"), vec!["ndjson"]);
        assert_eq!(complete(&helper, "\\d line"), vec!["lineorder"]);
    }

    #[test]
    fn completion_follows_the_clause_the_cursor_is_in() {
        let helper = helper();
        // After FROM: tables and schemas, not the columns that share the prefix.
        assert_eq!(complete(&helper, "SELECT * FROM cust"), vec!["customer"]);
        assert_eq!(complete(&helper, "SELECT * FROM pro"), vec!["production"]);
        assert_eq!(
            complete(&helper, "SELECT * FROM lineorder JOIN cus"),
            vec!["customer"]
        );
        // After SELECT, WHERE, GROUP BY, ON: the columns of the statement's tables.
        assert_eq!(
            complete(&helper, "SELECT cust"),
            vec!["customer_id", "customer_name"]
        );
        assert_eq!(complete(&helper, "SELECT lo_r"), vec!["lo_revenue"]);
        // The tables may come after the cursor.
        let line = "SELECT am FROM analytics.production.orders";
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (_, pairs) = helper.complete(line, "SELECT am".len(), &ctx).unwrap();
        let got: Vec<String> = pairs.into_iter().map(|p| p.replacement).collect();
        assert_eq!(got, vec!["amount"]);
        assert_eq!(
            complete(&helper, "SELECT * FROM customer c WHERE customer_n"),
            vec!["customer_name"]
        );
        // After a dot: a schema's tables, a database's schemas, a table's or alias's columns.
        assert_eq!(
            complete(&helper, "SELECT * FROM analytics.pro"),
            vec!["analytics.production"]
        );
        assert_eq!(
            complete(&helper, "SELECT * FROM analytics.production."),
            vec!["analytics.production.orders"]
        );
        assert_eq!(
            complete(&helper, "SELECT * FROM lineorder l JOIN customer c ON c.cu"),
            vec!["c.customer_id", "c.customer_name"]
        );
        assert_eq!(
            complete(&helper, "SELECT lineorder.lo_o"),
            vec!["lineorder.lo_orderkey"]
        );
    }

    #[test]
    fn earlier_lines_of_a_statement_give_the_context() {
        let helper = helper();
        *helper.pending.write().unwrap() = "SELECT *\nFROM customer\n".to_string();
        assert_eq!(complete(&helper, "WHERE customer_n"), vec!["customer_name"]);
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
