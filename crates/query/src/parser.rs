//! Strata's SQL dialect: sqlparser plus the few statements no sqlparser dialect knows.
//!
//! A script is split into statements on `;` tokens (so semicolons in strings and comments are
//! safe, and Snowflake's `COPY INTO`, which swallows a trailing `;`, still ends where it should).
//! Each statement is parsed with the Snowflake dialect first (for `COPY INTO` and
//! `AT (VERSION => n)`), then Generic, MySQL and PostgreSQL, so SQL copied from their guides runs
//! as written. Three statements need Strata's own small parser on top of sqlparser's:
//!
//! - MySQL `PARTITION BY RANGE (c) (PARTITION p VALUES LESS THAN (...), ...)` and
//!   `INTERVAL (1 MONTH)` after `CREATE TABLE`: the clause is cut out of the token stream and
//!   the rest is parsed as a normal `CREATE TABLE`;
//! - `ALTER TABLE t ADD PARTITION (...)` / `DROP PARTITION p`;
//! - `VACUUM [t] [RETAIN n HOURS|DAYS]`;
//! - `APPLY CHANGES INTO dim FROM source KEY (k, ...) SEQUENCE BY c [APPLY AS DELETE WHEN e]`
//!   (SCD Type 2, see [`crate::scd`]).
//!
//! Time travel (`t AT (VERSION => 3)`, `AT (TIMESTAMP => '...')`, `FOR SYSTEM_TIME AS OF`) is
//! rewritten into a table name with a suffix, `t@v3`, `t@t<micros>` or `t@s<micros>`, that the
//! catalog resolves to the snapshot (or, for `FOR SYSTEM_TIME AS OF` on an SCD Type 2 table, to
//! the versions valid then); DataFusion's planner would otherwise ignore the clause.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart,
    Statement as SqlStatement, TableFactor, TableVersion, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::{
    Dialect, GenericDialect, MySqlDialect, PostgreSqlDialect, SnowflakeDialect,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use strata_storage::UpperBound;

use crate::error::{Error, Result};

mod alerts;
mod data_tests;
mod tags;
mod tasks;
mod tokens;
pub use alerts::{AlertStatement, CreateAlert};
pub use data_tests::{DataTestDef, DataTestStatement, GENERIC_TESTS, TestSpec, TestTarget};
pub use tags::TagChange;
pub use tasks::{CreateTask, TaskStatement};
pub use tokens::normalize;
use tokens::{Spans, byte_offset, expect_end, expect_word, is_word, line_starts, parser_for, perr};

/// A parsed statement and its source text (for the query log).
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    /// The statement's text as written.
    pub text: String,
    /// The parsed statement.
    pub statement: Statement,
}

/// A statement of Strata's dialect.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Anything sqlparser understands.
    Sql(Box<SqlStatement>),
    /// `CREATE TABLE | MATERIALIZED VIEW ... PARTITION BY RANGE ...`.
    CreatePartitioned {
        /// The `CREATE` without its partition clause.
        create: Box<SqlStatement>,
        /// The partition clause.
        partitioning: PartitionClause,
    },
    /// `ALTER TABLE t ADD PARTITION ...`.
    AddPartitions {
        /// The table.
        table: ObjectName,
        /// The partitions: name and exclusive upper bound.
        partitions: Vec<(String, UpperBound)>,
    },
    /// `ALTER TABLE t DROP PARTITION p, q`.
    DropPartitions {
        /// The table.
        table: ObjectName,
        /// The partitions.
        names: Vec<String>,
        /// `IF EXISTS`: a missing partition is no error.
        if_exists: bool,
    },
    /// `VACUUM [t] [RETAIN n HOURS]`.
    Vacuum {
        /// The table, or every table.
        table: Option<ObjectName>,
        /// `RETAIN n HOURS`; 7 days when absent.
        retain_hours: Option<f64>,
    },
    /// `APPLY CHANGES INTO target FROM source KEY (...) SEQUENCE BY c [APPLY AS DELETE WHEN e]`.
    ApplyChanges(Box<ApplyChanges>),
    /// `CREATE [OR REPLACE] SECRET [IF NOT EXISTS] name (TYPE = S3, KEY_ID = '..', ...)`.
    CreateSecret {
        /// The name.
        name: String,
        /// `OR REPLACE`.
        or_replace: bool,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// The options, names uppercase, in order.
        options: Vec<(String, String)>,
    },
    /// `DROP SECRET [IF EXISTS] name`.
    DropSecret {
        /// The name.
        name: String,
        /// `IF EXISTS`: a missing secret is no error.
        if_exists: bool,
    },
    /// `OPTIMIZE t [PARTITION p] TIERED`: size-tiered compaction of the table's small files.
    OptimizeTiered {
        /// The table.
        table: ObjectName,
        /// `PARTITION p`: that partition only.
        partition: Option<Box<datafusion::sql::sqlparser::ast::Partition>>,
    },
    /// `SUBSCRIBE [TO] mv`: the view's rows, then each row that changes, as commits land.
    Subscribe {
        /// The materialized view.
        view: ObjectName,
    },
    /// `REFRESH MATERIALIZED VIEW mv [FULL]`.
    Refresh {
        /// The view.
        view: ObjectName,
        /// `FULL`: recompute everything.
        full: bool,
    },
    /// `CREATE [OR REPLACE] FILE FORMAT [IF NOT EXISTS] name TYPE = CSV option = value ...`.
    CreateFileFormat {
        /// The name.
        name: ObjectName,
        /// `OR REPLACE`.
        or_replace: bool,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// The options (`COMMENT` among them), names upper case, in order.
        options: Vec<(String, Vec<String>)>,
    },
    /// `DROP FILE FORMAT [IF EXISTS] name`.
    DropFileFormat {
        /// The name.
        name: ObjectName,
        /// `IF EXISTS`: a missing format is no error.
        if_exists: bool,
    },
    /// `CREATE [OR REPLACE] EXTERNAL TABLE ...`.
    CreateExternalTable(Box<ExternalTable>),
    /// `ALTER TABLE t APPLY RETENTION`: drop the partitions its `partition_retention` expired.
    ApplyRetention {
        /// The table.
        table: ObjectName,
    },
    /// `SHOW INDEXES [ON | FROM | IN t]` (`SHOW INDEX`, `SHOW KEYS` too, as MySQL spells it).
    ShowIndexes {
        /// The table; every table of the current schema when absent.
        table: Option<ObjectName>,
    },
    /// `ALTER TABLE t ADD | DROP TEST`, `CREATE | DROP DATA TEST`, `RUN DATA TESTS`.
    DataTest(Box<DataTestStatement>),
    /// `CREATE | ALTER | EXECUTE | DROP TASK`, `SHOW TASKS`.
    Task(Box<TaskStatement>),
    /// `CREATE | ALTER | EXECUTE | DROP ALERT`, `SHOW ALERTS`.
    Alert(Box<AlertStatement>),
    /// `ALTER TABLE t [MODIFY COLUMN c] SET | UNSET TAG ...`.
    SetTags(Box<TagChange>),
}

/// `CREATE [OR REPLACE] EXTERNAL TABLE [IF NOT EXISTS] name [(column type, ...)]
/// [PARTITION BY (column, ...)] LOCATION = 'url' | @stage[/path] [FILE_FORMAT = (...)]
/// [CREDENTIALS = (SECRET = name)]`, Snowflake's form, or DataFusion's: `... STORED AS PARQUET
/// [PARTITIONED BY (...)] LOCATION 'url'`.
#[derive(Debug, Clone)]
pub struct ExternalTable {
    /// The table.
    pub name: ObjectName,
    /// `OR REPLACE`.
    pub or_replace: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// The declared columns; none: read from the files.
    pub columns: Vec<datafusion::sql::sqlparser::ast::ColumnDef>,
    /// The columns whose values are `key=value` folder names.
    pub partition_by: Vec<String>,
    /// A URL, a local directory, or `@stage[/path]`.
    pub location: String,
    /// `FILE_FORMAT = (...)` (or `STORED AS f`, as `TYPE = f`).
    pub file_format: Vec<(String, Vec<String>)>,
    /// `CREDENTIALS = (SECRET = name)`.
    pub credentials: Vec<(String, Vec<String>)>,
}

/// A change set applied to an SCD Type 2 table.
#[derive(Debug, Clone)]
pub struct ApplyChanges {
    /// The SCD Type 2 table.
    pub target: ObjectName,
    /// The change rows: a table, or a parenthesised query.
    pub source: Box<datafusion::sql::sqlparser::ast::Query>,
    /// `KEY (...)`: the natural key columns.
    pub keys: Vec<String>,
    /// `SEQUENCE BY`: the column that orders a key's changes.
    pub sequence_by: Expr,
    /// Change rows that close the key's version instead of setting values.
    pub delete_when: Option<Expr>,
}

/// `PARTITION BY RANGE (column) [INTERVAL (...)] [(PARTITION ... VALUES LESS THAN ...)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionClause {
    /// The partition key column.
    pub column: String,
    /// Named partitions: name and exclusive upper bound.
    pub partitions: Vec<(String, UpperBound)>,
    /// `INTERVAL (...)`: the width of partitions created as rows arrive.
    pub interval: Option<IntervalSpec>,
}

/// The width of automatic partitions as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalSpec {
    /// `INTERVAL (n MONTH)`.
    Months(u32),
    /// `INTERVAL (n DAY)`.
    Days(i64),
    /// `INTERVAL (n HOUR)`.
    Hours(i64),
    /// A bare number: the width in key units (integer keys).
    Number(i64),
}

/// The Snowflake dialect with everything else as is; it alone parses `COPY INTO` and `AT (...)`.
fn dialects() -> [(&'static str, Box<dyn Dialect>); 4] {
    [
        ("snowflake", Box::new(SnowflakeDialect)),
        ("generic", Box::new(GenericDialect)),
        ("mysql", Box::new(MySqlDialect {})),
        ("postgres", Box::new(PostgreSqlDialect {})),
    ]
}

/// Parses a script of `;`-separated statements.
pub fn parse(sql: &str) -> Result<Vec<ParsedStatement>> {
    // A parse error quotes the text around it, which may be a secret.
    parse_statements(sql).map_err(|e| match e {
        Error::Parse(message) => Error::Parse(crate::redact::redact(&message)),
        other => other,
    })
}

fn parse_statements(sql: &str) -> Result<Vec<ParsedStatement>> {
    let tokens = Tokenizer::new(&GenericDialect, sql)
        .tokenize_with_location()
        .map_err(|e| Error::Parse(e.to_string()))?;
    let line_starts = line_starts(sql);
    let mut out = Vec::new();
    for chunk in tasks::split_statements(&tokens) {
        let significant: Vec<&TokenWithSpan> = chunk
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
            .collect();
        let (Some(first), Some(last)) = (significant.first(), significant.last()) else {
            continue;
        };
        let start = byte_offset(sql, &line_starts, first.span.start);
        let text = &sql[start..byte_offset(sql, &line_starts, last.span.end)];
        let spans = Spans {
            sql,
            line_starts: &line_starts,
            start,
        };
        let statement = parse_one(text, chunk, &spans)?;
        out.push(ParsedStatement {
            text: text.to_string(),
            statement,
        });
    }
    Ok(out)
}

fn parse_one(text: &str, chunk: &[TokenWithSpan], spans: &Spans) -> Result<Statement> {
    let words: Vec<String> = chunk
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .take(6)
        .map(|t| match &t.token {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            other => other.to_string(),
        })
        .collect();
    let first = words.first().map(String::as_str).unwrap_or_default();
    if let Some(task) = tasks::parse(&words, text, chunk, spans) {
        return task.map(|t| Statement::Task(Box::new(t)));
    }
    if let Some(alert) = alerts::parse(&words, text, chunk, spans) {
        return alert.map(|a| Statement::Alert(Box::new(a)));
    }
    if first == "VACUUM" {
        return parse_vacuum(chunk);
    }
    if first == "SHOW"
        && words
            .get(1)
            .is_some_and(|w| matches!(w.as_str(), "INDEXES" | "INDEX" | "KEYS"))
    {
        return parse_show_indexes(chunk);
    }
    if first == "APPLY" && words.get(1).is_some_and(|w| w == "CHANGES") {
        return parse_apply_changes(chunk);
    }
    if first == "REFRESH" {
        return parse_refresh(chunk);
    }
    if first == "SUBSCRIBE" {
        return parse_subscribe(chunk);
    }
    if first == "OPTIMIZE"
        && let Some(tiered) = parse_optimize_tiered(chunk)
    {
        return tiered;
    }
    if first == "RUN" && words.get(1).is_some_and(|w| w == "DATA") {
        return data_tests::parse_run_data_tests(chunk).map(|s| Statement::DataTest(Box::new(s)));
    }
    if first == "ALTER" && words.get(1).is_some_and(|w| w == "TABLE") && tags::is_tag_change(chunk)
    {
        return tags::parse_tag_change(chunk).map(|c| Statement::SetTags(Box::new(c)));
    }
    if first == "ALTER"
        && words.get(1).is_some_and(|w| w == "TABLE")
        && data_tests::is_alter_test(chunk)
    {
        return data_tests::parse_alter_test(chunk).map(|s| Statement::DataTest(Box::new(s)));
    }
    if first == "CREATE" && words.iter().skip(1).take(3).any(|w| w == "SECRET") {
        return parse_create_secret(chunk);
    }
    if first == "DROP" && words.get(1).is_some_and(|w| w == "SECRET") {
        return parse_drop_secret(chunk);
    }
    // The object a CREATE or DROP names, after `OR REPLACE`.
    let object_at = if words.get(1).is_some_and(|w| w == "OR") {
        3
    } else {
        1
    };
    let file_format = words.get(object_at).is_some_and(|w| w == "FILE")
        && words.get(object_at + 1).is_some_and(|w| w == "FORMAT");
    let data_test = words.get(object_at).is_some_and(|w| w == "DATA")
        && words.get(object_at + 1).is_some_and(|w| w == "TEST");
    if first == "CREATE" && data_test {
        return data_tests::parse_create_data_test(text, chunk, spans)
            .map(|s| Statement::DataTest(Box::new(s)));
    }
    if first == "DROP" && data_test {
        return data_tests::parse_drop_data_test(chunk).map(|s| Statement::DataTest(Box::new(s)));
    }
    if first == "CREATE" && file_format {
        return parse_create_file_format(chunk);
    }
    if first == "DROP" && file_format {
        return parse_drop_file_format(chunk);
    }
    if first == "CREATE" && words.get(object_at).is_some_and(|w| w == "EXTERNAL") {
        return parse_create_external_table(chunk);
    }
    if first == "DROP" && words.get(1).is_some_and(|w| w == "EXTERNAL") {
        // `DROP EXTERNAL TABLE t` is `DROP TABLE t`: the catalog knows what `t` is.
        let sig = significant(chunk);
        let rest: Vec<TokenWithSpan> = chunk
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != sig[1])
            .map(|(_, t)| t.clone())
            .collect();
        return Ok(Statement::Sql(Box::new(parse_tokens(rest)?)));
    }
    // `COPY INTO '/dir/' FROM (query)`: the Snowflake parser takes a quoted target for a
    // location only when it is a URL.
    let unload = if first == "COPY" {
        local_unload_target(text, chunk, spans)
    } else {
        None
    };
    let load_select = if first == "COPY" {
        load_select_items(text, chunk, spans)
    } else {
        None
    };
    let text = unload
        .as_deref()
        .or(load_select.as_ref().map(|(text, _)| text.as_str()))
        .unwrap_or(text);
    let last_words: Vec<String> = chunk
        .iter()
        .rev()
        .filter(|t| {
            !matches!(
                t.token,
                Token::Whitespace(_) | Token::SemiColon | Token::EOF
            )
        })
        .take(2)
        .map(|t| match &t.token {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            other => other.to_string(),
        })
        .collect();
    if first == "ALTER"
        && words.get(1).is_some_and(|w| w == "TABLE")
        && last_words == ["RETENTION", "APPLY"]
    {
        let mut p = parser_for(chunk);
        p.expect_keywords(&[Keyword::ALTER, Keyword::TABLE])
            .map_err(perr)?;
        let table = p.parse_object_name(false).map_err(perr)?;
        expect_word(&mut p, "APPLY")?;
        expect_word(&mut p, "RETENTION")?;
        expect_end(&mut p).map_err(perr)?;
        return Ok(Statement::ApplyRetention { table });
    }
    if first == "ALTER" && words.get(1).is_some_and(|w| w == "TABLE") && has_partition_op(chunk) {
        return parse_alter_partition(chunk);
    }
    if first == "CREATE"
        && let Some((start, end)) = find_partition_clause(chunk)
    {
        let clause = parse_partition_clause(&chunk[start..end])?;
        let mut rest: Vec<TokenWithSpan> = chunk[..start].to_vec();
        rest.extend_from_slice(&chunk[end..]);
        let mut create = parse_tokens(rest)?;
        let materialized_view = matches!(&create, SqlStatement::CreateView(v) if v.materialized);
        if !matches!(create, SqlStatement::CreateTable(_)) && !materialized_view {
            return Err(Error::Parse(
                "PARTITION BY RANGE is only valid in CREATE TABLE and CREATE MATERIALIZED VIEW"
                    .to_string(),
            ));
        }
        json_operator_precedence(&mut create);
        rewrite_time_travel(&mut create)?;
        refuse_count_distinct_star(&create)?;
        microsecond_timestamps(&mut create);
        quote_date_parts(&mut create);
        listagg_as_string_agg(&mut create);
        translate_date_formats(&mut create);
        decode_as_case(&mut create);
        return Ok(Statement::CreatePartitioned {
            create: Box::new(create),
            partitioning: clause,
        });
    }
    // On failure, report the error of the dialect the statement most likely targets.
    let preferred = if first == "COPY" {
        "snowflake"
    } else {
        "generic"
    };
    let mut preferred_error = None;
    for (name, dialect) in dialects() {
        match parse_text(dialect.as_ref(), text) {
            Ok(mut statement) => {
                if let (
                    Some((_, list)),
                    SqlStatement::CopyIntoSnowflake {
                        from_transformations: Some(items),
                        ..
                    },
                ) = (&load_select, &mut statement)
                {
                    use datafusion::sql::sqlparser::ast::helpers::stmt_data_loading::StageLoadSelectItemKind;
                    *items = list
                        .iter()
                        .cloned()
                        .map(StageLoadSelectItemKind::SelectItem)
                        .collect();
                }
                json_operator_precedence(&mut statement);
                name_literal_columns(&mut statement);
                unique_output_names(&mut statement);
                rewrite_time_travel(&mut statement)?;
                refuse_count_distinct_star(&statement)?;
                number_question_placeholders(&mut statement);
                microsecond_timestamps(&mut statement);
                quote_date_parts(&mut statement);
                listagg_as_string_agg(&mut statement);
                translate_date_formats(&mut statement);
                decode_as_case(&mut statement);
                return Ok(Statement::Sql(Box::new(statement)));
            }
            Err(e) if name == preferred => preferred_error = Some(e),
            Err(_) => {}
        }
    }
    Err(Error::Parse(
        preferred_error.map(|e| e.to_string()).unwrap_or_default(),
    ))
}

/// One SQL expression, as stored in metadata (a CHECK constraint).
pub(crate) fn parse_expr(text: &str) -> Result<Expr> {
    let mut parser = Parser::new(&GenericDialect)
        .try_with_sql(text)
        .map_err(|e| Error::Plan(format!("cannot parse expression {text}: {e}")))?;
    let expr = parser
        .parse_expr()
        .map_err(|e| Error::Plan(format!("cannot parse expression {text}: {e}")))?;
    expect_end(&mut parser)
        .map_err(|e| Error::Plan(format!("cannot parse expression {text}: {e}")))?;
    Ok(expr)
}

fn parse_text(dialect: &dyn Dialect, text: &str) -> Result<SqlStatement, ParserError> {
    let mut parser = Parser::new(dialect).try_with_sql(text)?;
    let statement = parser.parse_statement()?;
    expect_end(&mut parser)?;
    Ok(statement)
}

fn parse_tokens(tokens: Vec<TokenWithSpan>) -> Result<SqlStatement> {
    let mut first_error = None;
    for dialect in [
        Box::new(GenericDialect) as Box<dyn Dialect>,
        Box::new(MySqlDialect {}),
        Box::new(PostgreSqlDialect {}),
    ] {
        let mut parser = Parser::new(dialect.as_ref()).with_tokens_with_locations(tokens.clone());
        let result = parser
            .parse_statement()
            .and_then(|s| expect_end(&mut parser).map(|_| s));
        match result {
            Ok(s) => return Ok(s),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(Error::Parse(
        first_error.map(|e| e.to_string()).unwrap_or_default(),
    ))
}

/// Significant token indices of a chunk.
fn significant(chunk: &[TokenWithSpan]) -> Vec<usize> {
    (0..chunk.len())
        .filter(|i| !matches!(chunk[*i].token, Token::Whitespace(_) | Token::EOF))
        .collect()
}

/// Finds `PARTITION BY RANGE ...` at parenthesis depth 0: the token range of the clause.
fn find_partition_clause(chunk: &[TokenWithSpan]) -> Option<(usize, usize)> {
    let sig = significant(chunk);
    let mut depth = 0i32;
    let mut start = None;
    for (k, &i) in sig.iter().enumerate() {
        match chunk[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0
            && start.is_none()
            && is_word(&chunk[i], "PARTITION")
            && sig.get(k + 1).is_some_and(|&j| is_word(&chunk[j], "BY"))
            && sig.get(k + 2).is_some_and(|&j| is_word(&chunk[j], "RANGE"))
        {
            start = Some(i);
        } else if depth == 0
            && start.is_some()
            && (is_word(&chunk[i], "AS") || is_word(&chunk[i], "WITH"))
        {
            return start.map(|s| (s, i));
        }
    }
    start.map(|s| (s, chunk.len()))
}

fn has_partition_op(chunk: &[TokenWithSpan]) -> bool {
    let sig = significant(chunk);
    sig.windows(2).any(|w| {
        (is_word(&chunk[w[0]], "ADD") || is_word(&chunk[w[0]], "DROP"))
            && is_word(&chunk[w[1]], "PARTITION")
    })
}

fn parse_partition_clause(tokens: &[TokenWithSpan]) -> Result<PartitionClause> {
    let mut p = parser_for(tokens);
    p.expect_keywords(&[Keyword::PARTITION, Keyword::BY, Keyword::RANGE])
        .map_err(perr)?;
    let _ = p.parse_keyword(Keyword::COLUMNS);
    p.expect_token(&Token::LParen).map_err(perr)?;
    let column = p.parse_identifier().map_err(perr)?;
    p.expect_token(&Token::RParen).map_err(perr)?;
    let mut clause = PartitionClause {
        column: normalize(&column),
        partitions: Vec::new(),
        interval: None,
    };
    loop {
        if p.parse_keyword(Keyword::INTERVAL) {
            clause.interval = Some(parse_interval(&mut p)?);
        } else if p.peek_token().token == Token::LParen {
            p.expect_token(&Token::LParen).map_err(perr)?;
            clause.partitions = p
                .parse_comma_separated(|p| {
                    parse_partition_def(p).map_err(|e| ParserError::ParserError(e.to_string()))
                })
                .map_err(perr)?;
            p.expect_token(&Token::RParen).map_err(perr)?;
        } else {
            break;
        }
    }
    expect_end(&mut p).map_err(perr)?;
    Ok(clause)
}

/// `INTERVAL (1 MONTH)`, `INTERVAL 1 MONTH`, `INTERVAL '1 month'`, `INTERVAL (1000)`.
fn parse_interval(p: &mut Parser) -> Result<IntervalSpec> {
    let parens = p.consume_token(&Token::LParen);
    let (amount, unit) = match p.next_token().token {
        Token::SingleQuotedString(s) => {
            let mut parts = s.split_whitespace();
            let amount = parts.next().and_then(|a| a.parse::<i64>().ok());
            let unit = parts.next().map(str::to_ascii_uppercase);
            match amount {
                Some(a) => (a, unit),
                None => return Err(Error::Parse(format!("bad INTERVAL '{s}'"))),
            }
        }
        Token::Number(n, _) => {
            let amount = n
                .parse::<i64>()
                .map_err(|_| Error::Parse(format!("bad INTERVAL width {n}")))?;
            let unit = match p.peek_token().token {
                Token::Word(w) if w.quote_style.is_none() => {
                    p.next_token();
                    Some(w.value.to_ascii_uppercase())
                }
                _ => None,
            };
            (amount, unit)
        }
        other => {
            return Err(Error::Parse(format!(
                "expected an INTERVAL width, found {other}"
            )));
        }
    };
    if parens {
        p.expect_token(&Token::RParen).map_err(perr)?;
    }
    if amount <= 0 {
        return Err(Error::Parse("the INTERVAL must be positive".to_string()));
    }
    let unit = unit.as_deref().map(|u| u.trim_end_matches('S'));
    let too_wide = || {
        Error::Parse(format!(
            "INTERVAL {amount} {} is too wide",
            unit.unwrap_or("")
        ))
    };
    let months = |per: u32| {
        u32::try_from(amount)
            .ok()
            .and_then(|a| a.checked_mul(per))
            .map(IntervalSpec::Months)
            .ok_or_else(too_wide)
    };
    Ok(match unit {
        None => IntervalSpec::Number(amount),
        Some("MONTH") => months(1)?,
        Some("YEAR") => months(12)?,
        Some("QUARTER") => months(3)?,
        Some("DAY") => IntervalSpec::Days(amount),
        Some("WEEK") => IntervalSpec::Days(amount.checked_mul(7).ok_or_else(too_wide)?),
        Some("HOUR") => IntervalSpec::Hours(amount),
        Some(other) => {
            return Err(Error::Parse(format!(
                "unknown INTERVAL unit {other} (use DAY, WEEK, MONTH, QUARTER, YEAR, HOUR or a number)"
            )));
        }
    })
}

/// `PARTITION p VALUES LESS THAN (value | MAXVALUE)`.
fn parse_partition_def(p: &mut Parser) -> Result<(String, UpperBound)> {
    p.expect_keyword(Keyword::PARTITION).map_err(perr)?;
    let name = normalize(&p.parse_identifier().map_err(perr)?);
    p.expect_keyword(Keyword::VALUES).map_err(perr)?;
    expect_word(p, "LESS")?;
    expect_word(p, "THAN")?;
    let parens = p.consume_token(&Token::LParen);
    let bound = if p.parse_keyword(Keyword::MAXVALUE) {
        UpperBound::MaxValue
    } else {
        // DATE '2024-01-01' / TIMESTAMP '...' are literals too.
        let _ = p.parse_one_of_keywords(&[Keyword::DATE, Keyword::TIMESTAMP]);
        let negative = p.consume_token(&Token::Minus);
        let value = match p.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Number(n, _) => n,
            other => {
                return Err(Error::Parse(format!(
                    "partition '{name}': expected a literal or MAXVALUE, found {other}"
                )));
            }
        };
        UpperBound::Value(if negative { format!("-{value}") } else { value })
    };
    if parens {
        p.expect_token(&Token::RParen).map_err(perr)?;
    }
    Ok((name, bound))
}

fn parse_alter_partition(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    p.expect_keywords(&[Keyword::ALTER, Keyword::TABLE])
        .map_err(perr)?;
    let table = p.parse_object_name(false).map_err(perr)?;
    let statement = if p.parse_keywords(&[Keyword::ADD, Keyword::PARTITION]) {
        let partitions = if p.consume_token(&Token::LParen) {
            let defs = p
                .parse_comma_separated(|p| {
                    parse_partition_def(p).map_err(|e| ParserError::ParserError(e.to_string()))
                })
                .map_err(perr)?;
            p.expect_token(&Token::RParen).map_err(perr)?;
            defs
        } else {
            // Oracle style: ADD PARTITION p VALUES LESS THAN (...)
            let name = normalize(&p.parse_identifier().map_err(perr)?);
            p.expect_keyword(Keyword::VALUES).map_err(perr)?;
            let rest: Vec<TokenWithSpan> = vec![
                TokenWithSpan::wrap(Token::make_keyword("PARTITION")),
                TokenWithSpan::wrap(Token::make_word(&name, Some('"'))),
                TokenWithSpan::wrap(Token::make_keyword("VALUES")),
            ];
            let mut tail = rest;
            while p.peek_token().token != Token::EOF {
                tail.push(p.next_token());
            }
            let mut q = parser_for(&tail);
            let def = parse_partition_def(&mut q)?;
            expect_end(&mut q).map_err(perr)?;
            vec![def]
        };
        Statement::AddPartitions { table, partitions }
    } else if p.parse_keywords(&[Keyword::DROP, Keyword::PARTITION]) {
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = p
            .parse_comma_separated(|p| p.parse_identifier())
            .map_err(perr)?
            .iter()
            .map(normalize)
            .collect();
        Statement::DropPartitions {
            table,
            names,
            if_exists,
        }
    } else {
        return Err(Error::Parse(
            "expected ADD PARTITION or DROP PARTITION".to_string(),
        ));
    };
    expect_end(&mut p).map_err(perr)?;
    Ok(statement)
}

fn parse_vacuum(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::VACUUM).map_err(perr)?;
    let _ = p.parse_keyword(Keyword::TABLE);
    let table = match p.peek_token().token {
        Token::Word(w) if w.keyword != Keyword::RETAIN => {
            Some(p.parse_object_name(false).map_err(perr)?)
        }
        _ => None,
    };
    let retain_hours = if p.parse_keyword(Keyword::RETAIN) {
        let n: f64 = match p.next_token().token {
            Token::Number(n, _) => n
                .parse()
                .map_err(|_| Error::Parse(format!("bad RETAIN value {n}")))?,
            other => {
                return Err(Error::Parse(format!(
                    "expected a number after RETAIN, found {other}"
                )));
            }
        };
        let unit =
            p.parse_one_of_keywords(&[Keyword::HOURS, Keyword::HOUR, Keyword::DAYS, Keyword::DAY]);
        Some(match unit {
            Some(Keyword::DAYS | Keyword::DAY) => n * 24.0,
            _ => n,
        })
    } else {
        None
    };
    expect_end(&mut p).map_err(perr)?;
    Ok(Statement::Vacuum {
        table,
        retain_hours,
    })
}

fn parse_refresh(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    p.expect_keywords(&[Keyword::REFRESH, Keyword::MATERIALIZED, Keyword::VIEW])
        .map_err(perr)?;
    let view = p.parse_object_name(false).map_err(perr)?;
    let full = p.parse_keyword(Keyword::FULL);
    expect_end(&mut p).map_err(perr)?;
    Ok(Statement::Refresh { view, full })
}

/// `OPTIMIZE t [PARTITION p] TIERED`, or `None` when the statement does not end in `TIERED`
/// (an `OPTIMIZE` DataFusion's parser takes).
fn parse_optimize_tiered(chunk: &[TokenWithSpan]) -> Option<Result<Statement>> {
    let sig = significant(chunk);
    let last = *sig
        .iter()
        .rev()
        .find(|&&i| !matches!(chunk[i].token, Token::SemiColon))?;
    if !matches!(&chunk[last].token, Token::Word(w) if w.value.eq_ignore_ascii_case("TIERED")) {
        return None;
    }
    let rest: Vec<TokenWithSpan> = chunk
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != last)
        .map(|(_, t)| t.clone())
        .collect();
    Some(match parse_tokens(rest) {
        Ok(SqlStatement::OptimizeTable {
            name,
            partition,
            on_cluster: None,
            include_final: false,
            deduplicate: None,
            predicate: None,
            zorder: None,
            ..
        }) => Ok(Statement::OptimizeTiered {
            table: name,
            partition: partition.map(Box::new),
        }),
        Ok(_) => Err(Error::Parse(
            "OPTIMIZE t [PARTITION p] TIERED takes no other clause".to_string(),
        )),
        Err(e) => Err(e),
    })
}

fn parse_subscribe(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    let word = p.next_token();
    if !matches!(&word.token, Token::Word(w) if w.value.eq_ignore_ascii_case("SUBSCRIBE")) {
        return Err(Error::Parse(format!("expected SUBSCRIBE, found {word}")));
    }
    let _ = p.parse_keyword(Keyword::TO);
    let view = p.parse_object_name(false).map_err(perr)?;
    expect_end(&mut p).map_err(perr)?;
    Ok(Statement::Subscribe { view })
}

/// `CREATE [OR REPLACE] [PERSISTENT] SECRET [IF NOT EXISTS] name (NAME [=] value [,] ...)`: the
/// Strata form with `=`, and DuckDB's without. Errors never quote a value: it may be a key.
fn parse_create_secret(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::CREATE).map_err(perr)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    let _ = p.parse_keyword(Keyword::PERSISTENT);
    p.expect_keyword(Keyword::SECRET).map_err(perr)?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_identifier().map_err(perr)?.value;
    p.expect_token(&Token::LParen).map_err(perr)?;
    let mut options: Vec<(String, String)> = Vec::new();
    loop {
        if p.consume_token(&Token::RParen) {
            break;
        }
        let key = match p.next_token().token {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            _ => {
                return Err(Error::Parse(
                    "CREATE SECRET: expected an option name such as TYPE, KEY_ID or SECRET"
                        .to_string(),
                ));
            }
        };
        let _ = p.consume_token(&Token::Eq);
        let value = match p.next_token().token {
            Token::SingleQuotedString(v) | Token::DoubleQuotedString(v) => v,
            Token::Word(w) => w.value,
            Token::Number(n, _) => n,
            _ => {
                return Err(Error::Parse(format!(
                    "CREATE SECRET: option {key} needs a value ('text' or a word)"
                )));
            }
        };
        if options.iter().any(|(k, _)| *k == key) {
            return Err(Error::Parse(format!(
                "CREATE SECRET: option {key} is given twice"
            )));
        }
        options.push((key, value));
        let _ = p.consume_token(&Token::Comma);
    }
    expect_end(&mut p).map_err(|_| {
        Error::Parse("CREATE SECRET: unexpected text after the options".to_string())
    })?;
    Ok(Statement::CreateSecret {
        name,
        or_replace,
        if_not_exists,
        options,
    })
}

fn parse_drop_secret(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    p.expect_keywords(&[Keyword::DROP, Keyword::SECRET])
        .map_err(perr)?;
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = p.parse_identifier().map_err(perr)?.value;
    expect_end(&mut p).map_err(perr)?;
    Ok(Statement::DropSecret { name, if_exists })
}

/// The select list of a transforming load (`COPY INTO t FROM (SELECT $1::INT * 10, ... FROM
/// @stage)`) parsed as ordinary select items, and the statement's text with that list replaced
/// by bare `$1`s: Snowflake's parser takes an item that starts with `$n` to be a bare file
/// column and fails on what follows. `None` when the list does not parse so (`$1:name`, which
/// Snowflake's parser alone reads).
fn load_select_items(
    text: &str,
    chunk: &[TokenWithSpan],
    spans: &Spans,
) -> Option<(String, Vec<datafusion::sql::sqlparser::ast::SelectItem>)> {
    let sig = significant(chunk);
    // Only a load: `COPY INTO table`, not `COPY INTO @stage` or `'location'` (an unload).
    if !matches!(&chunk.get(*sig.get(2)?)?.token, Token::Word(w) if !w.value.starts_with('@')) {
        return None;
    }
    let k = sig.windows(3).position(|w| {
        is_word(&chunk[w[0]], "FROM")
            && chunk[w[1]].token == Token::LParen
            && is_word(&chunk[w[2]], "SELECT")
    })?;
    let start = sig[k + 2] + 1;
    let mut depth = 0i32;
    let mut end = None;
    for (i, t) in chunk.iter().enumerate().skip(start) {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0 && is_word(t, "FROM") => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end?;
    let mut p = parser_for(&chunk[start..end]);
    let items = p.parse_comma_separated(Parser::parse_select_item).ok()?;
    expect_end(&mut p).ok()?;
    // Spliced into the text as written: every other token stays as it was.
    let (from, to) = (
        spans.range(&chunk[start]).start,
        spans.range(&chunk[end]).start,
    );
    let bare = vec!["$1"; items.len()].join(", ");
    let text = format!("{} {bare} {}", text.get(..from)?, text.get(to..)?);
    Some((text, items))
}

/// `COPY INTO 'dir/' ...` with a local directory as the target: the statement's text with the
/// target written as a `file://` URL (spliced into the text as written, so every other token,
/// quotes and all, stays as it was).
fn local_unload_target(text: &str, chunk: &[TokenWithSpan], spans: &Spans) -> Option<String> {
    let sig = significant(chunk);
    let target = &chunk[*sig.get(2)?];
    if !is_word(&chunk[*sig.get(1)?], "INTO") {
        return None;
    }
    let Token::SingleQuotedString(path) = &target.token else {
        return None;
    };
    if path.contains("://") {
        return None;
    }
    let range = spans.range(target);
    let url = format!("'file://{}'", path.replace('\'', "''"));
    Some(format!(
        "{}{url}{}",
        text.get(..range.start)?,
        text.get(range.end..)?
    ))
}

/// `name = value` options until the end, or inside parentheses: values are words, strings,
/// numbers, or parenthesised lists of them (`NULL_IF = ('', 'NA')`).
fn parse_options(p: &mut Parser, parenthesized: bool) -> Result<Vec<(String, Vec<String>)>> {
    if parenthesized {
        p.expect_token(&Token::LParen).map_err(perr)?;
    }
    let mut options = Vec::new();
    loop {
        let next = p.next_token();
        let key = match next.token {
            Token::RParen if parenthesized => break,
            Token::EOF | Token::SemiColon if !parenthesized => break,
            Token::Comma => continue,
            Token::Word(w) => w.value.to_ascii_uppercase(),
            other => {
                return Err(Error::Parse(format!(
                    "expected an option name, found: {other} at {}",
                    next.span.start
                )));
            }
        };
        p.expect_token(&Token::Eq).map_err(perr)?;
        let mut values = Vec::new();
        if p.consume_token(&Token::LParen) {
            while !p.consume_token(&Token::RParen) {
                values.push(option_value(p)?);
                let _ = p.consume_token(&Token::Comma);
            }
        } else {
            values.push(option_value(p)?);
        }
        options.push((key, values));
    }
    Ok(options)
}

fn option_value(p: &mut Parser) -> Result<String> {
    let next = p.next_token();
    match next.token {
        Token::SingleQuotedString(v) | Token::DoubleQuotedString(v) => Ok(v),
        Token::Word(w) => Ok(w.value),
        Token::Number(n, _) => Ok(n),
        Token::Minus => match p.next_token().token {
            Token::Number(n, _) => Ok(format!("-{n}")),
            other => Err(Error::Parse(format!(
                "expected a number after -, found {other}"
            ))),
        },
        other => Err(Error::Parse(format!(
            "expected an option value, found: {other} at {}",
            next.span.start
        ))),
    }
}

fn parse_create_file_format(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::CREATE).map_err(perr)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    expect_word(&mut p, "FILE")?;
    expect_word(&mut p, "FORMAT")?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(perr)?;
    let options = parse_options(&mut p, false)?;
    Ok(Statement::CreateFileFormat {
        name,
        or_replace,
        if_not_exists,
        options,
    })
}

fn parse_show_indexes(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::SHOW).map_err(perr)?;
    p.next_token();
    let table = if p
        .parse_one_of_keywords(&[Keyword::ON, Keyword::FROM, Keyword::IN])
        .is_some()
    {
        Some(p.parse_object_name(false).map_err(perr)?)
    } else {
        None
    };
    expect_end(&mut p).map_err(perr)?;
    Ok(Statement::ShowIndexes { table })
}

fn parse_drop_file_format(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::DROP).map_err(perr)?;
    expect_word(&mut p, "FILE")?;
    expect_word(&mut p, "FORMAT")?;
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(perr)?;
    expect_end(&mut p).map_err(perr)?;
    Ok(Statement::DropFileFormat { name, if_exists })
}

/// A stage reference as one string: `@landing/2024/` or `@raw.landing/x`.
fn stage_reference(p: &mut Parser) -> Result<String> {
    let mut text = String::new();
    loop {
        let next = p.next_token_no_skip().cloned();
        match next.map(|t| t.token) {
            Some(Token::AtSign) => text.push('@'),
            Some(Token::Word(w)) => text.push_str(&w.value),
            Some(Token::Number(n, _)) => text.push_str(&n),
            Some(Token::Div) => text.push('/'),
            Some(Token::Period) => text.push('.'),
            Some(Token::Minus) => text.push('-'),
            Some(Token::Eq) => text.push('='),
            // Consumed, not put back: putting back skips whitespace and would land before the
            // reference.
            Some(Token::Whitespace(_)) if text.is_empty() => {}
            Some(Token::Whitespace(_)) => break,
            Some(_) => {
                p.prev_token();
                break;
            }
            None => break,
        }
    }
    Ok(text)
}

fn parse_create_external_table(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::CREATE).map_err(perr)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    p.expect_keywords(&[Keyword::EXTERNAL, Keyword::TABLE])
        .map_err(perr)?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(perr)?;
    let (columns, constraints) = if p.peek_token().token == Token::LParen {
        p.parse_columns().map_err(perr)?
    } else {
        (Vec::new(), Vec::new())
    };
    if !constraints.is_empty() {
        return Err(Error::Unsupported(
            "constraints on an external table: its files are not checked".to_string(),
        ));
    }
    let mut table = ExternalTable {
        name,
        or_replace,
        if_not_exists,
        columns,
        partition_by: Vec::new(),
        location: String::new(),
        file_format: Vec::new(),
        credentials: Vec::new(),
    };
    loop {
        if p.parse_keywords(&[Keyword::PARTITION, Keyword::BY])
            || p.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY])
        {
            p.expect_token(&Token::LParen).map_err(perr)?;
            let names = p
                .parse_comma_separated(|p| p.parse_identifier())
                .map_err(perr)?;
            p.expect_token(&Token::RParen).map_err(perr)?;
            table.partition_by = names.iter().map(normalize).collect();
        } else if p.parse_keyword(Keyword::LOCATION) {
            let _ = p.consume_token(&Token::Eq);
            table.location = match p.peek_token().token {
                Token::AtSign => stage_reference(&mut p)?,
                Token::Word(w) if w.value.starts_with('@') => stage_reference(&mut p)?,
                _ => p.parse_literal_string().map_err(perr)?,
            };
        } else if p.parse_keyword(Keyword::FILE_FORMAT) {
            p.expect_token(&Token::Eq).map_err(perr)?;
            table.file_format = parse_options(&mut p, true)?;
        } else if p.parse_keywords(&[Keyword::STORED, Keyword::AS]) {
            let format = p.parse_identifier().map_err(perr)?.value;
            table.file_format.push(("TYPE".to_string(), vec![format]));
        } else if p.parse_keyword(Keyword::CREDENTIALS) {
            p.expect_token(&Token::Eq).map_err(perr)?;
            table.credentials = parse_options(&mut p, true)?;
        } else {
            break;
        }
    }
    expect_end(&mut p).map_err(perr)?;
    if table.location.is_empty() {
        return Err(Error::Parse(
            "CREATE EXTERNAL TABLE needs LOCATION = 's3://...' | '/dir' | @stage".to_string(),
        ));
    }
    Ok(Statement::CreateExternalTable(Box::new(table)))
}

fn parse_apply_changes(chunk: &[TokenWithSpan]) -> Result<Statement> {
    let mut p = parser_for(chunk);
    expect_word(&mut p, "APPLY")?;
    expect_word(&mut p, "CHANGES")?;
    p.expect_keyword(Keyword::INTO).map_err(perr)?;
    let target = p.parse_object_name(false).map_err(perr)?;
    p.expect_keyword(Keyword::FROM).map_err(perr)?;
    let source = if p.consume_token(&Token::LParen) {
        let query = p.parse_query().map_err(perr)?;
        p.expect_token(&Token::RParen).map_err(perr)?;
        query
    } else {
        let name = p.parse_object_name(false).map_err(perr)?;
        let mut q = Parser::new(&GenericDialect)
            .try_with_sql(&format!("SELECT * FROM {name}"))
            .map_err(perr)?;
        q.parse_query().map_err(perr)?
    };
    // KEY (a, b), or Databricks' KEYS (a, b).
    match p.next_token().token {
        Token::Word(w) if matches!(w.value.to_ascii_uppercase().as_str(), "KEY" | "KEYS") => {}
        other => return Err(Error::Parse(format!("expected KEY (...), found {other}"))),
    }
    p.expect_token(&Token::LParen).map_err(perr)?;
    let keys = p
        .parse_comma_separated(|p| p.parse_identifier())
        .map_err(perr)?
        .iter()
        .map(normalize)
        .collect();
    p.expect_token(&Token::RParen).map_err(perr)?;
    expect_word(&mut p, "SEQUENCE")?;
    p.expect_keyword(Keyword::BY).map_err(perr)?;
    let sequence_by = p.parse_expr().map_err(perr)?;
    let delete_when = if p.parse_keyword(Keyword::APPLY) {
        p.expect_keyword(Keyword::AS).map_err(perr)?;
        p.expect_keyword(Keyword::DELETE).map_err(perr)?;
        p.expect_keyword(Keyword::WHEN).map_err(perr)?;
        Some(p.parse_expr().map_err(perr)?)
    } else {
        None
    };
    expect_end(&mut p).map_err(perr)?;
    // The source gets the rewrites every query gets (time travel, microsecond timestamps).
    let mut query = SqlStatement::Query(source);
    rewrite_time_travel(&mut query)?;
    refuse_count_distinct_star(&query)?;
    microsecond_timestamps(&mut query);
    quote_date_parts(&mut query);
    listagg_as_string_agg(&mut query);
    translate_date_formats(&mut query);
    decode_as_case(&mut query);
    let SqlStatement::Query(source) = query else {
        unreachable!("a query stays a query");
    };
    Ok(Statement::ApplyChanges(Box::new(ApplyChanges {
        target,
        source,
        keys,
        sequence_by,
        delete_when,
    })))
}

/// The parts of an object name, normalised.
pub fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(ObjectNamePart::as_ident)
        .map(normalize)
        .collect()
}

/// Separator between a table name and its time-travel suffix.
pub const TIME_TRAVEL_SEPARATOR: char = '@';

/// Which snapshot a time-travel name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// `AT (VERSION => n)`.
    Version(u64),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    /// `FOR SYSTEM_TIME AS OF`: on an SCD Type 2 table, the versions valid at that time
    /// (microseconds since the epoch); on any other table, the same as `Timestamp`.
    ValidAt(i64),
}

/// Splits `orders@v3` / `orders@t1714557600000000` into the table name and the snapshot.
pub fn split_time_travel(name: &str) -> (&str, Option<AsOf>) {
    let Some((base, suffix)) = name.rsplit_once(TIME_TRAVEL_SEPARATOR) else {
        return (name, None);
    };
    let as_of = if let Some(v) = suffix.strip_prefix('v') {
        v.parse().ok().map(AsOf::Version)
    } else if let Some(t) = suffix.strip_prefix('t') {
        t.parse().ok().map(AsOf::Timestamp)
    } else if let Some(t) = suffix.strip_prefix('s') {
        t.parse().ok().map(AsOf::ValidAt)
    } else {
        None
    };
    match as_of {
        Some(a) => (base, Some(a)),
        None => (name, None),
    }
}

struct TimeTravelRewriter {
    error: Option<Error>,
}

impl VisitorMut for TimeTravelRewriter {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            version,
            args,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        // `system.search('x')`: DataFusion names a table function by its first part only.
        if args.is_some() && name_parts(name) == ["system", "search"] {
            name.0.remove(0);
        }
        let Some(v) = version.take() else {
            return ControlFlow::Continue(());
        };
        match as_of(&v) {
            Ok(as_of) => {
                let suffix = match as_of {
                    AsOf::Version(n) => format!("v{n}"),
                    AsOf::Timestamp(t) => format!("t{t}"),
                    AsOf::ValidAt(t) => format!("s{t}"),
                };
                if let Some(ObjectNamePart::Identifier(last)) = name.0.last_mut() {
                    let base = normalize(last);
                    *last =
                        Ident::with_quote('"', format!("{base}{TIME_TRAVEL_SEPARATOR}{suffix}"));
                }
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

fn literal_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.clone()),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::TypedString(t) => match &t.value.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => literal_text(expr),
        _ => None,
    }
}

fn parse_timestamp(text: &str) -> Result<AsOf> {
    let formats = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ];
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(AsOf::Timestamp(t.timestamp_micros()));
    }
    if let Ok(t) = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Ok(AsOf::Timestamp(t.timestamp_micros()));
    }
    let naive = formats
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| Error::Parse(format!("time travel: '{text}' is not a timestamp")))?;
    Ok(AsOf::Timestamp(naive.and_utc().timestamp_micros()))
}

fn as_of(version: &TableVersion) -> Result<AsOf> {
    let bad = || {
        Error::Parse(format!(
            "unsupported time travel clause {version}; use AT (VERSION => n) or AT (TIMESTAMP => '...')"
        ))
    };
    match version {
        TableVersion::VersionAsOf(e) => literal_text(e)
            .and_then(|t| t.parse().ok())
            .map(AsOf::Version)
            .ok_or_else(bad),
        TableVersion::ForSystemTimeAsOf(e) => {
            match parse_timestamp(&literal_text(e).ok_or_else(bad)?)? {
                AsOf::Timestamp(t) => Ok(AsOf::ValidAt(t)),
                other => Ok(other),
            }
        }
        TableVersion::TimestampAsOf(e) => parse_timestamp(&literal_text(e).ok_or_else(bad)?),
        TableVersion::Function(Expr::Function(f)) => {
            let fname = f.name.to_string().to_ascii_uppercase();
            if fname != "AT" {
                return Err(bad());
            }
            let FunctionArguments::List(list) = &f.args else {
                return Err(bad());
            };
            let [
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(arg),
                    ..
                },
            ] = list.args.as_slice()
            else {
                return Err(bad());
            };
            let text = literal_text(arg).ok_or_else(bad)?;
            match name.value.to_ascii_uppercase().as_str() {
                "VERSION" => text.parse().map(AsOf::Version).map_err(|_| bad()),
                "TIMESTAMP" => parse_timestamp(&text),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// Numbers JDBC/ODBC-style `?` placeholders as `$1, $2, ...` in order of appearance, the form
/// DataFusion binds parameters to.
fn number_question_placeholders(statement: &mut SqlStatement) {
    let mut next = 0;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expr| {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &mut v.value
            && p == "?"
        {
            next += 1;
            *p = format!("${next}");
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Makes `TIMESTAMP '...'` and `CAST(x AS TIMESTAMP)` microseconds, as Strata stores
/// timestamps (and as Postgres and DuckDB keep them), instead of DataFusion's nanoseconds,
/// which end in 2262: `TIMESTAMP '9999-12-31'`, the open end of every SCD Type 2 version,
/// would not fit.
fn microsecond_timestamps(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::DataType as SqlType;
    let micros = |t: &mut SqlType| {
        if let SqlType::Timestamp(precision @ None, _) = t {
            *precision = Some(6);
        }
    };
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expr| {
        match expr {
            Expr::Cast { data_type, .. } => micros(data_type),
            Expr::TypedString(t) => micros(&mut t.data_type),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Translates the constant format of `TO_DATE`, `TO_TIMESTAMP`, `TO_CHAR` (Snowflake's words)
/// and `STR_TO_DATE`, `DATE_FORMAT` (MySQL's) to chrono's, and plans the MySQL functions as
/// DataFusion's `to_timestamp` (cast to DATE when the format has no time of day) and `to_char`
/// (see [`crate::functions::chrono_format`]).
fn translate_date_formats(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{
        CastKind, DataType as SqlType, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
        ObjectNamePart,
    };
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expr| {
        let Expr::Function(f) = expr else {
            return ControlFlow::<()>::Continue(());
        };
        let name = f.name.to_string().to_lowercase();
        let FunctionArguments::List(list) = &mut f.args else {
            return ControlFlow::Continue(());
        };
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(format)))) =
            list.args.get_mut(1)
        else {
            return ControlFlow::Continue(());
        };
        let Value::SingleQuotedString(text) = &mut format.value else {
            return ControlFlow::Continue(());
        };
        let Some(chrono) = crate::functions::chrono_format(&name, text) else {
            return ControlFlow::Continue(());
        };
        let date_only = name == "str_to_date" && !crate::functions::mysql_format_has_time(text);
        *text = chrono;
        let planned_as = match name.as_str() {
            "str_to_date" => "to_timestamp",
            "date_format" => "to_char",
            _ => return ControlFlow::Continue(()),
        };
        f.name.0 = vec![ObjectNamePart::Identifier(Ident::new(planned_as))];
        if date_only {
            let call = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            *expr = Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(call),
                data_type: SqlType::Date,
                array: false,
                format: None,
            };
        }
        ControlFlow::Continue(())
    });
}

/// Plans Snowflake's and Oracle's `DECODE(x, search1, result1, ..., default)` as `CASE`, where
/// a NULL search matches a NULL `x` (`IS NOT DISTINCT FROM`). `DECODE(bytes, 'hex')` with two
/// arguments stays DataFusion's.
fn decode_as_case(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
    use datafusion::sql::sqlparser::ast::{
        CaseWhen, FunctionArg, FunctionArgExpr, FunctionArguments,
    };
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expr| {
        let Expr::Function(f) = expr else {
            return ControlFlow::<()>::Continue(());
        };
        if !f.name.to_string().eq_ignore_ascii_case("decode") {
            return ControlFlow::Continue(());
        }
        let FunctionArguments::List(list) = &f.args else {
            return ControlFlow::Continue(());
        };
        let args: Option<Vec<Expr>> = list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                _ => None,
            })
            .collect();
        let Some(args) = args.filter(|a| a.len() >= 3) else {
            return ControlFlow::Continue(());
        };
        let subject = args[0].clone();
        let pairs = &args[1..];
        let conditions = pairs
            .chunks(2)
            .filter(|pair| pair.len() == 2)
            .map(|pair| CaseWhen {
                condition: Expr::IsNotDistinctFrom(
                    Box::new(subject.clone()),
                    Box::new(pair[0].clone()),
                ),
                result: pair[1].clone(),
            })
            .collect();
        let else_result = (pairs.len() % 2 == 1).then(|| Box::new(pairs[pairs.len() - 1].clone()));
        *expr = Expr::Case {
            case_token: AttachedToken::empty(),
            end_token: AttachedToken::empty(),
            operand: None,
            conditions,
            else_result,
        };
        ControlFlow::Continue(())
    });
}

/// Refuses `count(DISTINCT *)`, which DataFusion answers with 1; PostgreSQL, DuckDB and
/// Snowflake reject it.
fn refuse_count_distinct_star(statement: &SqlStatement) -> Result<()> {
    use datafusion::sql::sqlparser::ast::{
        DuplicateTreatment, FunctionArg, FunctionArgExpr, FunctionArguments,
    };
    let found = datafusion::sql::sqlparser::ast::visit_expressions(statement, |expr| {
        if let Expr::Function(f) = expr
            && f.name.to_string().eq_ignore_ascii_case("count")
            && let FunctionArguments::List(list) = &f.args
            && list.duplicate_treatment == Some(DuplicateTreatment::Distinct)
            && list.args.iter().any(|a| {
                matches!(
                    a,
                    FunctionArg::Unnamed(
                        FunctionArgExpr::Wildcard | FunctionArgExpr::QualifiedWildcard(_)
                    )
                )
            })
        {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if found.is_break() {
        return Err(Error::Parse(
            "count(DISTINCT *) is not valid SQL: name the columns, count(DISTINCT a, b), or \
             count the rows, count(*)"
                .to_string(),
        ));
    }
    Ok(())
}

/// Quotes the bare date part that Snowflake and MySQL write as the first argument of date
/// functions, `DATEADD(day, -30, d)` or `DATE_TRUNC(month, d)`, so that it reaches the
/// function as the string `'day'` instead of naming a column. (The two-argument MySQL
/// `DATEDIFF(a, b)` has no part and is left alone.)
fn quote_date_parts(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expr| {
        if let Expr::Function(f) = expr
            && let Some(name) = f.name.0.last().and_then(|p| p.as_ident())
            && crate::functions::DATE_PART_FIRST.contains(&name.value.to_lowercase().as_str())
            && let FunctionArguments::List(list) = &mut f.args
            && (list.args.len() == 3 || !name.value.eq_ignore_ascii_case("datediff"))
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut()
            && let Expr::Identifier(part) = first
            && part.quote_style.is_none()
        {
            *first = Expr::Value(Value::SingleQuotedString(part.value.to_lowercase()).into());
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Plans Snowflake's `LISTAGG(x [, sep]) WITHIN GROUP (ORDER BY y)` as DataFusion's
/// `string_agg(x, sep ORDER BY y)`; the separator defaults to `''`, as in Snowflake.
fn listagg_as_string_agg(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{
        FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments, Ident,
        ObjectNamePart,
    };
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expr| {
        if let Expr::Function(f) = expr
            && f.name.0.len() == 1
            && f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("listagg"))
            && let FunctionArguments::List(list) = &mut f.args
        {
            f.name.0 = vec![ObjectNamePart::Identifier(Ident::new("string_agg"))];
            if list.args.len() == 1 {
                list.args
                    .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(
                        Value::SingleQuotedString(String::new()).into(),
                    ))));
            }
            // DataFusion's DISTINCT string_agg ignores ORDER BY: the WITHIN GROUP clause is
            // left in place, and DataFusion refuses it, rather than return another order.
            if list.duplicate_treatment.is_none() {
                let order = std::mem::take(&mut f.within_group);
                if !order.is_empty() {
                    list.clauses.push(FunctionArgumentClause::OrderBy(order));
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Gives the JSON operators `->`, `->>`, `#>` and `#>>` PostgreSQL's precedence: above
/// comparison, `LIKE`, `IS`, `BETWEEN` and `IN`. sqlparser ranks them below those, so
/// `profile ->> 'tier' = 'gold'` parsed as `profile ->> ('tier' = 'gold')`. Each such tree is
/// rotated back: the arrow takes the comparison's left operand.
fn json_operator_precedence(statement: &mut SqlStatement) {
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expr| {
        rotate_json_arrow(expr);
        ControlFlow::<()>::Continue(())
    });
}

fn rotate_json_arrow(expr: &mut Expr) {
    use datafusion::sql::sqlparser::ast::BinaryOperator as Op;
    let Expr::BinaryOp { op, right, .. } = expr else {
        return;
    };
    let arrow = matches!(
        op,
        Op::Arrow | Op::LongArrow | Op::HashArrow | Op::HashLongArrow
    );
    if !arrow || looser_operand(right).is_none() {
        return;
    }
    // expr = L arrow (A cmp B)  becomes  (L arrow A) cmp B.
    let null = || Expr::Value(Value::Null.into());
    let Expr::BinaryOp { left, op, right } = std::mem::replace(expr, null()) else {
        unreachable!("matched above");
    };
    let mut looser = *right;
    let operand = looser_operand(&mut looser).expect("checked above");
    let a = std::mem::replace(operand.as_mut(), null());
    let mut arrow = Expr::BinaryOp {
        left,
        op,
        right: Box::new(a),
    };
    rotate_json_arrow(&mut arrow);
    **operand = arrow;
    *expr = looser;
}

/// The left operand of an expression that binds looser than the JSON arrows (comparison,
/// `IS`, `LIKE`, `BETWEEN`, `IN`).
fn looser_operand(expr: &mut Expr) -> Option<&mut Box<Expr>> {
    use datafusion::sql::sqlparser::ast::BinaryOperator as Op;
    match expr {
        Expr::BinaryOp {
            left,
            op: Op::Eq | Op::NotEq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq | Op::Spaceship,
            ..
        } => Some(left),
        Expr::IsNull(inner)
        | Expr::IsNotNull(inner)
        | Expr::IsTrue(inner)
        | Expr::IsNotTrue(inner)
        | Expr::IsFalse(inner)
        | Expr::IsNotFalse(inner)
        | Expr::IsUnknown(inner)
        | Expr::IsNotUnknown(inner)
        | Expr::IsDistinctFrom(inner, _)
        | Expr::IsNotDistinctFrom(inner, _) => Some(inner),
        Expr::Like { expr, .. }
        | Expr::ILike { expr, .. }
        | Expr::SimilarTo { expr, .. }
        | Expr::Between { expr, .. }
        | Expr::InList { expr, .. } => Some(expr),
        _ => None,
    }
}

/// Names each literal select item by its SQL text, as DuckDB and MySQL do: `SELECT 1` has a
/// column `1`, where DataFusion would call it after its Arrow value, `Int64(1)`.
fn name_literal_columns(statement: &mut SqlStatement) {
    struct Namer;
    impl VisitorMut for Namer {
        type Break = ();
        fn pre_visit_query(
            &mut self,
            query: &mut datafusion::sql::sqlparser::ast::Query,
        ) -> ControlFlow<()> {
            name_literals_in(&mut query.body);
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(statement, &mut Namer);
}

fn name_literals_in(body: &mut datafusion::sql::sqlparser::ast::SetExpr) {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, UnaryOperator};
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                let SelectItem::UnnamedExpr(expr) = item else {
                    continue;
                };
                let literal = match expr {
                    Expr::Value(_) => true,
                    Expr::UnaryOp {
                        op: UnaryOperator::Minus | UnaryOperator::Plus,
                        expr,
                    } => matches!(expr.as_ref(), Expr::Value(_)),
                    _ => false,
                };
                if literal {
                    let alias = Ident::with_quote('"', expr.to_string());
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias,
                    };
                }
            }
        }
        // The first branch of a set operation names its columns.
        SetExpr::SetOperation { left, .. } => name_literals_in(left),
        _ => {}
    }
}

/// Marks a select item renamed to keep the output names of a query unique; [`visible_name`]
/// takes the mark off the result's column names.
pub(crate) const RENAMED_MARK: char = '\u{1}';

/// A result column's name as the query wrote it: without the mark [`unique_output_names`] adds.
pub(crate) fn visible_name(name: &str) -> &str {
    name.split(RENAMED_MARK).next().unwrap_or(name)
}

/// Gives repeated output names of a query's select lists a unique alias, marked so that the
/// result shows the name as written: `SELECT 1, 1`, `SELECT a AS x, b AS x` and `SELECT b AS a,
/// a` are valid SQL (SQLite, PostgreSQL and DuckDB run them), which DataFusion's planner refuses
/// ("Projections require unique expression names", "ambiguous"). Only a top-level query is
/// rewritten: a view or a table made from a query keeps DataFusion's check, since its columns
/// need names of their own.
fn unique_output_names(statement: &mut SqlStatement) {
    // The result's select lists only: a derived table's names are referenced, and a repeated
    // one there stays ambiguous.
    if let SqlStatement::Query(query) = statement {
        rename_repeated_in(&mut query.body);
    }
}

/// `expr` with each subquery replaced by a placeholder name, as DataFusion names it.
fn subqueries_unnamed(expr: &Expr) -> Expr {
    let mut expr = expr.clone();
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut expr, |e| {
        if matches!(e, Expr::Subquery(_)) {
            *e = Expr::Identifier(Ident::new("<subquery>"));
        }
        ControlFlow::<()>::Continue(())
    });
    expr
}

fn rename_repeated_in(body: &mut datafusion::sql::sqlparser::ast::SetExpr) {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr};
    match body {
        SetExpr::Select(select) => {
            let mut seen = std::collections::HashSet::new();
            for (n, item) in select.projection.iter_mut().enumerate() {
                let (key, shown, expr) = match item {
                    SelectItem::ExprWithAlias { expr, alias } => {
                        (normalize(alias), alias.value.clone(), expr.clone())
                    }
                    SelectItem::UnnamedExpr(expr) => {
                        let key = match &*expr {
                            Expr::Identifier(i) => normalize(i),
                            Expr::CompoundIdentifier(parts) => {
                                parts.last().map(normalize).unwrap_or_default()
                            }
                            // DataFusion names every scalar subquery `(<subquery>)`.
                            other => subqueries_unnamed(other)
                                .to_string()
                                .chars()
                                // DataFusion drops parentheses and unary plus from names; dropping every `+`
                                // only renames a few more than needed.
                                .filter(|c| !matches!(c, '(' | ')' | ' ' | '+'))
                                .collect::<String>()
                                .to_lowercase(),
                        };
                        let shown = match &*expr {
                            Expr::Identifier(i) => i.value.clone(),
                            Expr::CompoundIdentifier(parts) => {
                                parts.last().map(|i| i.value.clone()).unwrap_or_default()
                            }
                            other => other.to_string(),
                        };
                        (key, shown, expr.clone())
                    }
                    _ => continue,
                };
                if !seen.insert(key) {
                    *item = SelectItem::ExprWithAlias {
                        expr,
                        alias: Ident::with_quote('"', format!("{shown}{RENAMED_MARK}{n}")),
                    };
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            rename_repeated_in(left);
            rename_repeated_in(right);
        }
        SetExpr::Query(q) => rename_repeated_in(&mut q.body),
        _ => {}
    }
}

/// Replaces time-travel clauses with suffixed table names (see the module docs).
fn rewrite_time_travel(statement: &mut SqlStatement) -> Result<()> {
    let mut rewriter = TimeTravelRewriter { error: None };
    let _ = VisitMut::visit(statement, &mut rewriter);
    match rewriter.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_columns_are_named_by_their_text() {
        let parsed = parse(
            "SELECT 1, -2, 'a', x, 3 AS three FROM t UNION ALL SELECT 4, 5, 'b', y, 6 FROM u",
        )
        .unwrap();
        let Statement::Sql(statement) = &parsed[0].statement else {
            panic!("a query");
        };
        assert_eq!(
            statement.to_string(),
            "SELECT 1 AS \"1\", -2 AS \"-2\", 'a' AS \"'a'\", x, 3 AS three FROM t \
             UNION ALL SELECT 4, 5, 'b', y, 6 FROM u"
        );
    }

    #[test]
    fn json_arrows_bind_tighter_than_comparisons() {
        for (sql, expected) in [
            (
                "SELECT x FROM t WHERE p ->> 'tier' = 'gold'",
                "SELECT x FROM t WHERE p ->> 'tier' = 'gold'",
            ),
            (
                "SELECT p -> 'a' ->> 'b' IS NULL, p ->> 'n' BETWEEN '1' AND '2' FROM t",
                "SELECT p -> 'a' ->> 'b' IS NULL, p ->> 'n' BETWEEN '1' AND '2' FROM t",
            ),
            (
                "SELECT p ->> 'k' LIKE 'a%' AND p ->> 'j' IN ('x') FROM t",
                "SELECT p ->> 'k' LIKE 'a%' AND p ->> 'j' IN ('x') FROM t",
            ),
        ] {
            let parsed = parse(sql).unwrap();
            let Statement::Sql(statement) = &parsed[0].statement else {
                panic!("{sql}");
            };
            assert_eq!(statement.to_string(), expected);
            // The tree, not just the text: the comparison is the root.
            let _ = datafusion::sql::sqlparser::ast::visit_expressions(statement.as_ref(), |e| {
                if let Expr::BinaryOp { op, right, .. } = e {
                    use datafusion::sql::sqlparser::ast::BinaryOperator as Op;
                    if matches!(op, Op::Arrow | Op::LongArrow) {
                        assert!(
                            !matches!(
                                right.as_ref(),
                                Expr::BinaryOp { op: Op::Eq, .. }
                                    | Expr::IsNull(_)
                                    | Expr::Like { .. }
                                    | Expr::Between { .. }
                                    | Expr::InList { .. }
                            ),
                            "{sql}: {e:?}"
                        );
                    }
                }
                ControlFlow::<()>::Continue(())
            });
        }
    }

    #[test]
    fn semicolons_in_strings_and_comments_do_not_split() {
        let s = parse("SELECT ';' -- a; comment\n; /* ; */ SELECT 2;").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].text, "SELECT ';'");
    }

    #[test]
    fn mysql_range_partitions_are_parsed() {
        let s = parse(
            "CREATE TABLE events (id INT, event_date DATE) PARTITION BY RANGE (event_date) (
               PARTITION p1 VALUES LESS THAN ('2024-02-01'),
               PARTITION p_max VALUES LESS THAN (MAXVALUE))",
        )
        .unwrap();
        let Statement::CreatePartitioned { partitioning, .. } = &s[0].statement else {
            panic!("not partitioned: {:?}", s[0].statement)
        };
        assert_eq!(partitioning.column, "event_date");
        assert_eq!(
            partitioning.partitions,
            vec![
                ("p1".to_string(), UpperBound::Value("2024-02-01".into())),
                ("p_max".to_string(), UpperBound::MaxValue)
            ]
        );
    }

    #[test]
    fn interval_partitioning_and_ctas() {
        let s = parse("CREATE TABLE t PARTITION BY RANGE (d) INTERVAL (1 MONTH) AS SELECT 1 AS d")
            .unwrap();
        let Statement::CreatePartitioned {
            partitioning,
            create,
        } = &s[0].statement
        else {
            panic!()
        };
        assert_eq!(partitioning.interval, Some(IntervalSpec::Months(1)));
        assert!(matches!(create.as_ref(), SqlStatement::CreateTable(c) if c.query.is_some()));
    }

    #[test]
    fn copy_into_followed_by_another_statement() {
        let s =
            parse("COPY INTO t FROM '/tmp/x.csv' FILE_FORMAT = (TYPE = CSV); SELECT 1").unwrap();
        assert_eq!(s.len(), 2);
        assert!(
            matches!(&s[0].statement, Statement::Sql(b) if matches!(b.as_ref(), SqlStatement::CopyIntoSnowflake { .. }))
        );
    }

    #[test]
    fn time_travel_becomes_a_suffixed_name() {
        let s = parse("SELECT * FROM t AT (VERSION => 3) JOIN u AT (TIMESTAMP => '1970-01-01 00:00:01') ON true").unwrap();
        let text = match &s[0].statement {
            Statement::Sql(b) => b.to_string(),
            _ => panic!(),
        };
        assert!(
            text.contains("\"t@v3\"") && text.contains("\"u@t1000000\""),
            "{text}"
        );
        assert_eq!(split_time_travel("t@v3"), ("t", Some(AsOf::Version(3))));
    }

    #[test]
    fn alter_table_partitions() {
        let s = parse("ALTER TABLE e ADD PARTITION (PARTITION p3 VALUES LESS THAN ('2024-04-01')); ALTER TABLE e DROP PARTITION p1, p2").unwrap();
        assert!(
            matches!(&s[0].statement, Statement::AddPartitions { partitions, .. } if partitions.len() == 1)
        );
        assert!(
            matches!(&s[1].statement, Statement::DropPartitions { names, .. } if names == &vec!["p1".to_string(), "p2".to_string()])
        );
    }
}
