//! What PostgreSQL clients say that is not Strata SQL, and the catalog they expect.
//!
//! Drivers and tools send PostgreSQL's session commands on connect and around every statement:
//! `SET extra_float_digits = 3`, `SHOW transaction isolation level`, `BEGIN`/`COMMIT`,
//! `DISCARD ALL`. [`parse`] tells those apart from Strata statements, which it leaves to
//! Strata's parser. Queries Strata's parser refuses (psql's `\d` uses `OPERATOR(pg_catalog.~)`
//! and `::regclass`) go through datafusion-pg-catalog's PostgreSQL parser and rewrites, whose
//! `pg_catalog` tables [`prepare_session`] adds to the connection's session.
//!
//! Strata commits each statement as it runs. `BEGIN` and `COMMIT` are accepted so that drivers
//! that wrap everything in a transaction work; a `ROLLBACK` after a write warns that the write
//! stayed (see `query`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use pgwire::api::auth::DefaultServerParameterProvider;
use strata_query::Session;
use strata_query::parser::{ParsedStatement, Statement};

use super::catalog;

/// PostgreSQL's fixed catalog rows (types, functions, operators), read once per process.
static STATIC_TABLES: OnceLock<Arc<PgCatalogStaticTables>> = OnceLock::new();

/// The PostgreSQL version clients see: tools pick their SQL by it (16: `pg_catalog` as
/// PostgreSQL 16 has it).
pub(crate) const SERVER_VERSION: &str = "16.6";

/// What `SELECT version()` answers: SQLAlchemy, Metabase and JDBC parse the number after
/// "PostgreSQL".
pub(crate) fn version_text() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Strata {}) on {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// One statement of a PostgreSQL client.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// A Strata statement.
    Strata(ParsedStatement),
    /// `SET name = value` of a PostgreSQL parameter.
    Set { name: String, value: String },
    /// `SHOW name` of a PostgreSQL parameter.
    Show(String),
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK`, `ABORT`.
    Rollback,
    /// A session command with nothing to do here (`DISCARD ALL`, `SAVEPOINT`); its tag.
    Accept(&'static str),
    /// `COPY table [(columns)] FROM STDIN [options]`.
    CopyIn(super::copy::CopySpec),
    /// `COPY (query) TO STDOUT [options]`, `COPY table [(columns)] TO STDOUT [options]`.
    CopyOut(super::copy::CopyOutSpec),
    /// `DECLARE name CURSOR FOR query`: what psycopg's server-side cursors send.
    Declare {
        name: String,
        query: Box<ParsedStatement>,
    },
    /// `FETCH [FORWARD] [n | ALL] FROM name` (`None`: all).
    Fetch { name: String, count: Option<usize> },
    /// `CLOSE name`, or `CLOSE ALL` (`None`).
    Close(Option<String>),
}

/// PostgreSQL's parameters of one connection, and the transaction its client believes open.
#[derive(Debug)]
pub(crate) struct Settings {
    parameters: BTreeMap<String, String>,
    /// `Some(wrote)` between `BEGIN` and `COMMIT`/`ROLLBACK`: whether a statement changed data.
    pub(crate) transaction: Option<bool>,
}

/// Parameters as PostgreSQL names them, with the values a fresh session has.
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("lc_messages", "C"),
    ("max_identifier_length", "63"),
    ("max_index_keys", "32"),
    ("server_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

impl Settings {
    pub(crate) fn new(session: &Session) -> Self {
        let mut parameters: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parameters.insert("server_version".into(), SERVER_VERSION.into());
        parameters.insert("search_path".into(), session.current_schema().1.to_string());
        parameters.insert(
            "is_superuser".into(),
            if session.is_admin() { "on" } else { "off" }.into(),
        );
        Self {
            parameters,
            transaction: None,
        }
    }

    /// What the client is told at sign-in.
    pub(crate) fn server_parameters(&self, session: &Session) -> DefaultServerParameterProvider {
        let mut p = DefaultServerParameterProvider::default();
        p.server_version = SERVER_VERSION.to_string();
        p.search_path = session.current_schema().1.to_string();
        p.time_zone = self.show("timezone").unwrap_or_default();
        p.is_superuser = session.is_admin();
        p
    }

    /// A parameter's value (`SHOW name`).
    pub(crate) fn show(&self, name: &str) -> Option<String> {
        self.parameters.get(&canonical(name)).cloned()
    }

    /// Every parameter (`SHOW ALL`).
    pub(crate) fn all(&self) -> Vec<(String, String)> {
        self.parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(crate) fn set(&mut self, name: &str, value: String) {
        self.parameters.insert(canonical(name), value);
    }
}

/// A parameter's name as stored: lower case, `TIME ZONE` as `timezone`.
fn canonical(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "time zone" => "timezone".to_string(),
        "transaction isolation level" => "transaction_isolation".to_string(),
        _ => lower,
    }
}

/// Sets a PostgreSQL connection's session up: the database the client named (when it exists),
/// `pg_catalog` and PostgreSQL's functions.
pub(crate) async fn prepare_session(
    session: &mut Session,
    database: Option<&str>,
) -> strata_query::Result<()> {
    let catalog = session.warehouse().refresh_catalog().await?;
    if let Some(database) = database
        && catalog.databases.contains_key(database)
    {
        let schema = session.current_schema().1.to_string();
        session.set_schema(database, &schema)?;
    }
    let current = session.current_schema().0.to_string();
    datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
        session.context(),
        &current,
        EmptyContextProvider,
    )
    .map_err(|e| strata_query::Error::from(*e))?;
    // The same catalog, seeing this database alone, with Strata's keys and comments.
    let static_tables = match STATIC_TABLES.get() {
        Some(tables) => Arc::clone(tables),
        None => {
            let tables =
                Arc::new(PgCatalogStaticTables::try_new().map_err(strata_query::Error::from)?);
            Arc::clone(STATIC_TABLES.get_or_init(|| tables))
        }
    };
    let list = Arc::clone(session.context().state().catalog_list());
    let tables = catalog::DatabaseOnly::new(list, &current);
    let pg_catalog =
        PgCatalogSchemaProvider::try_new(tables.clone(), static_tables, EmptyContextProvider)
            .map_err(strata_query::Error::from)?;
    let oids = Arc::new(Mutex::new(catalog::ConstraintOids::default()));
    let with_keys = catalog::StrataPgCatalog::new(
        Arc::new(pg_catalog),
        tables,
        session.warehouse().clone(),
        Arc::clone(&oids),
        DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("server_version".to_string(), SERVER_VERSION.to_string())])
            .collect(),
    );
    if let Some(catalog) = session.context().catalog(&current) {
        catalog
            .register_schema("pg_catalog", Arc::new(with_keys))
            .map_err(strata_query::Error::from)?;
    }
    session
        .context()
        .register_udf(catalog::constraintdef_udf(oids));
    session.context().register_udf(version_udf());
    session.context().register_udf(to_regtype_udf());
    session
        .context()
        .register_udf(ScalarUDF::new_from_impl(JsonBuildObject::default()));
    // Every object a client can name is visible: Strata has no search-path shadowing of types,
    // collations or functions.
    for name in [
        "pg_collation_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_opclass_is_visible",
        "pg_conversion_is_visible",
    ] {
        session.context().register_udf(create_udf(
            name,
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
            }),
        ));
    }
    // Strata has no sequences: no column is serial.
    session.context().register_udf(create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
    Ok(())
}

/// `to_regtype(name)`: the oid of a built-in type, NULL for any other (psycopg and SQLAlchemy
/// look `hstore` up this way on connect; Strata has no extension types).
fn to_regtype_udf() -> ScalarUDF {
    use arrow::array::{Array, AsArray, Int32Array};
    use pgwire::api::Type;
    const TYPES: &[Type] = &[
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::DATE,
        Type::TIME,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::INTERVAL,
        Type::JSON,
        Type::JSONB,
        Type::BYTEA,
        Type::UUID,
        Type::OID,
    ];
    let oid = |name: &str| -> Option<i32> {
        let name = name.trim().trim_start_matches("pg_catalog.");
        TYPES
            .iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
            .and_then(|t| i32::try_from(t.oid()).ok())
    };
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let Some(arg) = args.first() else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Int32(None)));
            };
            match arg {
                ColumnarValue::Scalar(value) => {
                    let name = match value {
                        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => Some(s),
                        ScalarValue::Utf8View(Some(s)) => Some(s),
                        _ => None,
                    };
                    Ok(ColumnarValue::Scalar(ScalarValue::Int32(
                        name.and_then(|n| oid(n)),
                    )))
                }
                ColumnarValue::Array(array) => {
                    let array = arrow::compute::cast(array, &DataType::Utf8)?;
                    let names = array.as_string::<i32>();
                    let oids: Int32Array = (0..names.len())
                        .map(|i| (!names.is_null(i)).then(|| oid(names.value(i))).flatten())
                        .collect();
                    Ok(ColumnarValue::Array(Arc::new(oids)))
                }
            }
        }),
    )
}

/// `version()`, as PostgreSQL words it.
fn version_udf() -> ScalarUDF {
    let text = version_text();
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))
        }),
    )
}

/// The words of a statement's text, upper case, and its tokens without whitespace.
fn tokens(text: &str) -> Option<Vec<Token>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .ok()?;
    Some(
        tokens
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon | Token::EOF))
            .collect(),
    )
}

fn word(token: Option<&Token>) -> String {
    match token {
        Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
        _ => String::new(),
    }
}

/// A value as `SET` gives it: a string's contents, a word or number as written, a list joined
/// with ", ".
fn set_value(tokens: &[Token]) -> String {
    tokens
        .iter()
        .filter(|t| !matches!(t, Token::Comma))
        .map(|t| match t {
            Token::SingleQuotedString(s) => s.clone(),
            Token::Word(w) => w.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A PostgreSQL session command, from a statement's text; `None` for anything Strata runs.
fn session_command(text: &str) -> Option<Command> {
    let tokens = tokens(text)?;
    let first = word(tokens.first());
    let second = word(tokens.get(1));
    match first.as_str() {
        "BEGIN" | "START" if first == "BEGIN" || second == "TRANSACTION" => Some(Command::Begin),
        "COMMIT" | "END" => Some(Command::Commit),
        "ROLLBACK" | "ABORT" if !tokens.iter().any(|t| word(Some(t)) == "SAVEPOINT") => {
            Some(Command::Rollback)
        }
        "ROLLBACK" => Some(Command::Accept("ROLLBACK")),
        "SAVEPOINT" => Some(Command::Accept("SAVEPOINT")),
        "RELEASE" => Some(Command::Accept("RELEASE")),
        "DISCARD" => Some(Command::Accept("DISCARD ALL")),
        "DEALLOCATE" => Some(Command::Accept("DEALLOCATE")),
        "UNLISTEN" => Some(Command::Accept("UNLISTEN")),
        "RESET" => Some(Command::Accept("RESET")),
        "SET" => set_command(&tokens[1..]),
        "SHOW" => show_command(&tokens[1..]),
        "COPY" => super::copy::CopySpec::parse(&tokens)
            .map(Command::CopyIn)
            .or_else(|| super::copy::CopyOutSpec::parse(text, &tokens).map(Command::CopyOut)),
        "DECLARE" => declare(text),
        "FETCH" => fetch(&tokens[1..]),
        "CLOSE" => match tokens.get(1) {
            Some(Token::Word(w))
                if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("ALL") =>
            {
                Some(Command::Close(None))
            }
            Some(Token::Word(w)) => Some(Command::Close(Some(w.value.clone()))),
            _ => None,
        },
        _ => None,
    }
}

/// `DECLARE name [BINARY] [NO SCROLL] CURSOR [WITH[OUT] HOLD] FOR query`.
fn declare(text: &str) -> Option<Command> {
    let tokens = tokens(text)?;
    let Some(Token::Word(name)) = tokens.get(1) else {
        return None;
    };
    // The query is the text after the first FOR following CURSOR.
    let upper = text.to_ascii_uppercase();
    let cursor = upper.find("CURSOR")?;
    let words: Vec<(usize, &str)> = upper[cursor..]
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - upper.as_ptr() as usize, w))
        .collect();
    let (at, _) = words.iter().find(|(_, w)| *w == "FOR")?;
    let query_text = text[at + 3..].trim();
    let mut statements = strata_query::parser::parse(query_text).ok()?;
    if statements.len() != 1 {
        return None;
    }
    Some(Command::Declare {
        name: name.value.clone(),
        query: Box::new(statements.remove(0)),
    })
}

/// `FETCH [FORWARD | NEXT] [n | ALL] [FROM | IN] name`.
fn fetch(tokens: &[Token]) -> Option<Command> {
    let mut count = Some(1);
    let mut name = None;
    for token in tokens {
        match token {
            Token::Number(n, _) => count = Some(n.parse().ok()?),
            Token::Word(w) if w.quote_style.is_some() => name = Some(w.value.clone()),
            Token::Word(w) => match w.value.to_ascii_uppercase().as_str() {
                "FORWARD" | "NEXT" | "FROM" | "IN" => {}
                "ALL" => count = None,
                _ => name = Some(w.value.clone()),
            },
            _ => return None,
        }
    }
    Some(Command::Fetch { name: name?, count })
}

fn set_command(tokens: &[Token]) -> Option<Command> {
    let mut rest = tokens;
    if matches!(word(rest.first()).as_str(), "SESSION" | "LOCAL") {
        rest = &rest[1..];
    }
    match word(rest.first()).as_str() {
        // SET SESSION CHARACTERISTICS AS TRANSACTION ..., SET TRANSACTION ...
        "CHARACTERISTICS" | "TRANSACTION" => return Some(Command::Accept("SET")),
        "TIME" if word(rest.get(1)) == "ZONE" => {
            return Some(Command::Set {
                name: "timezone".into(),
                value: set_value(&rest[2..]),
            });
        }
        "NAMES" => {
            return Some(Command::Set {
                name: "client_encoding".into(),
                value: set_value(&rest[1..]),
            });
        }
        _ => {}
    }
    // name [. name]* (= | TO) value
    let split = rest
        .iter()
        .position(|t| matches!(t, Token::Eq) || word(Some(t)) == "TO")?;
    let name: String = rest[..split].iter().map(|t| t.to_string()).collect();
    let lower = name.to_ascii_lowercase();
    // Strata's and DataFusion's options are Strata's to set.
    if lower.starts_with("strata.") || lower.starts_with("datafusion.") {
        return None;
    }
    Some(Command::Set {
        name: lower,
        value: set_value(&rest[split + 1..]),
    })
}

fn show_command(tokens: &[Token]) -> Option<Command> {
    let name: String = tokens
        .iter()
        .map(|t| match t {
            Token::Word(w) => w.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let canonical = canonical(&name);
    let known = canonical == "all"
        || canonical == "search_path"
        || canonical == "server_version"
        || canonical == "is_superuser"
        || DEFAULTS.iter().any(|(k, _)| *k == canonical);
    known.then_some(Command::Show(canonical))
}

/// The statements of `sql`, as a PostgreSQL client sent them.
///
/// Catalog queries (they name `pg_` tables or functions) are PostgreSQL's dialect through and
/// through, so they go to datafusion-pg-catalog's parser first; everything else to Strata's.
pub(crate) fn parse(
    sql: &str,
    compat: &PostgresCompatibilityParser,
) -> strata_query::Result<Vec<Command>> {
    if !names_pg_catalog(sql)
        && let Ok(statements) = strata_query::parser::parse(sql)
    {
        return Ok(statements.into_iter().map(|s| command(s, compat)).collect());
    }
    // One statement at a time: session commands Strata's parser does not know, and the
    // PostgreSQL-only syntax of catalog queries.
    let mut commands = Vec::new();
    for text in split(sql) {
        if let Some(command) = session_command(&text) {
            commands.push(command);
            continue;
        }
        let postgres = || {
            compat.parse(&text).map(|parsed| {
                parsed.into_iter().map(|s| {
                    Command::Strata(ParsedStatement {
                        text: text.clone(),
                        statement: Statement::Sql(Box::new(with_subscripts_unnested(
                            with_aggregated_lookups(s),
                        ))),
                    })
                })
            })
        };
        if names_pg_catalog(&text)
            && let Ok(parsed) = postgres()
        {
            commands.extend(parsed);
            continue;
        }
        match strata_query::parser::parse(&text) {
            Ok(statements) => commands.extend(statements.into_iter().map(|s| command(s, compat))),
            Err(strata_error) => commands.extend(postgres().map_err(|_| strata_error)?),
        }
    }
    Ok(commands)
}

/// `statement` with each scalar subquery's one value taken through `max(...)`. Catalog
/// queries look one row up by its oid inside a correlated scalar subquery (SQLAlchemy's column
/// inspection does, for defaults, identities and collations), which DataFusion plans only when
/// aggregated; such a lookup finds at most one row, so `max` changes nothing.
fn with_aggregated_lookups(
    mut statement: datafusion::sql::sqlparser::ast::Statement,
) -> datafusion::sql::sqlparser::ast::Statement {
    use datafusion::sql::sqlparser::ast::{
        Expr, GroupByExpr, SelectItem, SetExpr, visit_expressions_mut,
    };
    use datafusion::sql::sqlparser::parser::Parser;
    let _ = visit_expressions_mut(&mut statement, |expr| {
        if let Expr::Subquery(query) = expr
            && query.limit_clause.is_none()
            && let SetExpr::Select(select) = query.body.as_mut()
            && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
            && let [item] = select.projection.as_mut_slice()
        {
            let (inner, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e.clone(), None),
                SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
                _ => return std::ops::ControlFlow::<()>::Continue(()),
            };
            let text = inner.to_string();
            let aggregated = text.to_ascii_lowercase().starts_with("max(")
                || text.to_ascii_lowercase().starts_with("count(");
            if !aggregated
                && let Ok(wrapped) = Parser::new(&PostgreSqlDialect {})
                    .try_with_sql(&format!("max({text})"))
                    .and_then(|mut p| p.parse_expr())
            {
                *item = match alias {
                    Some(alias) => SelectItem::ExprWithAlias {
                        expr: wrapped,
                        alias,
                    },
                    None => SelectItem::UnnamedExpr(wrapped),
                };
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    statement
}

/// `statement` with each `generate_subscripts(a, dim)` as `unnest(generate_series(1,
/// array_length(a, dim)))`: SQLAlchemy numbers a key's columns with it beside
/// `unnest(indkey)`, and DataFusion, which has no `generate_subscripts`, unnests both lists in
/// step.
fn with_subscripts_unnested(
    mut statement: datafusion::sql::sqlparser::ast::Statement,
) -> datafusion::sql::sqlparser::ast::Statement {
    use datafusion::sql::sqlparser::ast::{Expr, FunctionArguments, visit_expressions_mut};
    use datafusion::sql::sqlparser::parser::Parser;
    let _ = visit_expressions_mut(&mut statement, |expr| {
        if let Expr::Function(function) = expr
            && function
                .name
                .to_string()
                .eq_ignore_ascii_case("generate_subscripts")
            && let FunctionArguments::List(list) = &function.args
            && let [array, dimension] = list.args.as_slice()
            && let Ok(unnested) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&format!(
                    "unnest(generate_series(1, CAST(array_length({array}, {dimension}) AS BIGINT)))"
                ))
                .and_then(|mut p| p.parse_expr())
        {
            *expr = unnested;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    statement
}

/// Whether a statement names PostgreSQL's catalog (`pg_class`, `pg_catalog.format_type`).
fn names_pg_catalog(sql: &str) -> bool {
    sql.to_ascii_lowercase().contains("pg_")
}

/// A statement Strata's parser read: a session command, or a Strata statement whose queries
/// get datafusion-pg-catalog's rewrites (`pg_catalog.` function names, `::regclass`).
fn command(statement: ParsedStatement, compat: &PostgresCompatibilityParser) -> Command {
    if let Some(command) = session_command(&statement.text) {
        return command;
    }
    let ParsedStatement { text, statement } = statement;
    let statement = match statement {
        Statement::Sql(s)
            if matches!(
                s.as_ref(),
                datafusion::sql::sqlparser::ast::Statement::Query(_)
            ) =>
        {
            Statement::Sql(Box::new(compat.rewrite(*s)))
        }
        other => other,
    };
    Command::Strata(ParsedStatement { text, statement })
}

/// `sql` cut at its top-level semicolons (strings, quoted names and comments respected): the
/// original text of each statement, never its tokens printed back (which would undo escapes).
fn split(sql: &str) -> Vec<String> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
        return vec![sql.to_string()];
    };
    // Byte offsets of each line's start; a location's column counts characters from 1.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |line: u64, column: u64| -> usize {
        let start = usize::try_from(line)
            .ok()
            .and_then(|l| l.checked_sub(1))
            .and_then(|l| line_starts.get(l))
            .copied()
            .unwrap_or(sql.len());
        let skip = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
        sql[start..]
            .char_indices()
            .nth(skip)
            .map_or(sql.len(), |(i, _)| start + i)
    };
    let mut out = Vec::new();
    let mut begin = 0;
    for token in &tokens {
        if matches!(token.token, Token::SemiColon) {
            let at = offset(token.span.start.line, token.span.start.column);
            let text = sql.get(begin..at).unwrap_or_default().trim();
            if !text.is_empty() {
                out.push(text.to_string());
            }
            begin = at.saturating_add(1).min(sql.len());
        }
    }
    let rest = sql.get(begin..).unwrap_or_default().trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Command {
        let compat = PostgresCompatibilityParser::new();
        let mut commands = parse(sql, &compat).unwrap();
        assert_eq!(commands.len(), 1, "{sql}");
        commands.remove(0)
    }

    #[test]
    fn session_commands_are_told_from_strata_statements() {
        assert!(matches!(one("BEGIN"), Command::Begin));
        assert!(matches!(
            one("start transaction isolation level read committed"),
            Command::Begin
        ));
        assert!(matches!(one("COMMIT"), Command::Commit));
        assert!(matches!(one("ROLLBACK"), Command::Rollback));
        assert!(matches!(
            one("ROLLBACK TO SAVEPOINT a"),
            Command::Accept("ROLLBACK")
        ));
        assert!(matches!(one("DISCARD ALL"), Command::Accept(_)));
        let Command::Set { name, value } = one("SET extra_float_digits = 3") else {
            panic!()
        };
        assert_eq!((name.as_str(), value.as_str()), ("extra_float_digits", "3"));
        let Command::Set { name, value } = one("SET TIME ZONE 'Europe/Paris'") else {
            panic!()
        };
        assert_eq!(
            (name.as_str(), value.as_str()),
            ("timezone", "Europe/Paris")
        );
        let Command::Set { name, value } = one("set search_path to sales, public") else {
            panic!()
        };
        assert_eq!(
            (name.as_str(), value.as_str()),
            ("search_path", "sales, public")
        );
        assert!(matches!(
            one("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
            Command::Accept("SET")
        ));
        assert!(
            matches!(one("SHOW transaction isolation level"), Command::Show(n) if n == "transaction_isolation")
        );
        assert!(matches!(
            one("SET strata.scan_cache = false"),
            Command::Strata(_)
        ));
        assert!(matches!(one("SHOW TABLES"), Command::Strata(_)));
        assert!(matches!(one("SELECT 1"), Command::Strata(_)));
        let Command::Declare { name, query } =
            one(r#"DECLARE "big" NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1 AS for_x"#)
        else {
            panic!()
        };
        assert_eq!(
            (name.as_str(), query.text.as_str()),
            ("big", "SELECT 1 AS for_x")
        );
        assert!(
            matches!(one(r#"FETCH FORWARD 2 FROM "big""#), Command::Fetch { name, count: Some(2) } if name == "big")
        );
        assert!(matches!(
            one("FETCH ALL FROM c"),
            Command::Fetch { count: None, .. }
        ));
        assert!(matches!(one(r#"CLOSE "big""#), Command::Close(Some(n)) if n == "big"));
    }

    #[test]
    fn postgresql_only_syntax_falls_back_to_the_compatibility_parser() {
        let sql = "SELECT c.oid FROM pg_catalog.pg_class c \
                   WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default";
        assert!(matches!(one(sql), Command::Strata(_)));
        assert!(parse("SELEC 1", &PostgresCompatibilityParser::new()).is_err());
        let compat = PostgresCompatibilityParser::new();
        assert_eq!(
            parse("SET a = 1; DISCARD ALL; SELECT 1", &compat)
                .unwrap()
                .len(),
            3
        );
    }
}

/// `json_build_object(key, value, ...)`: PostgreSQL's, which SQLAlchemy's column inspection
/// plans (for identity columns, which Strata does not have).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: datafusion::logical_expr::Signature,
}

impl Default for JsonBuildObject {
    fn default() -> Self {
        Self {
            signature: datafusion::logical_expr::Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        use arrow::array::StringBuilder;
        if !args.args.len().is_multiple_of(2) {
            return Err(datafusion::error::DataFusionError::Plan(
                "json_build_object needs key, value pairs".to_string(),
            ));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = StringBuilder::new();
        for row in 0..args.number_rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                object.insert(scalar_text(&key).unwrap_or_default(), scalar_json(&value));
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn scalar_text(value: &ScalarValue) -> Option<String> {
    (!value.is_null()).then(|| value.to_string())
}

fn scalar_json(value: &ScalarValue) -> serde_json::Value {
    match value {
        v if v.is_null() => serde_json::Value::Null,
        ScalarValue::Boolean(Some(b)) => serde_json::Value::Bool(*b),
        ScalarValue::Int8(Some(n)) => (*n).into(),
        ScalarValue::Int16(Some(n)) => (*n).into(),
        ScalarValue::Int32(Some(n)) => (*n).into(),
        ScalarValue::Int64(Some(n)) => (*n).into(),
        ScalarValue::UInt8(Some(n)) => (*n).into(),
        ScalarValue::UInt16(Some(n)) => (*n).into(),
        ScalarValue::UInt32(Some(n)) => (*n).into(),
        ScalarValue::UInt64(Some(n)) => (*n).into(),
        ScalarValue::Float64(Some(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        other => serde_json::Value::String(other.to_string()),
    }
}
