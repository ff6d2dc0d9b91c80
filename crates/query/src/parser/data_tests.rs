//! The data-test statements, which no sqlparser dialect knows:
//!
//! - `ALTER TABLE t ADD TEST [IF NOT EXISTS] [name] unique(c, ...) | not_null(c) | accepted_values(c, (v, ...))
//!   | relationships(c, other(c)) | freshness(c, '1 day') | row_count(> 0) [SEVERITY = ERROR |
//!   WARN]`, after dbt's generic tests;
//! - `ALTER TABLE t DROP TEST [IF EXISTS] name`;
//! - `CREATE [OR REPLACE] DATA TEST [IF NOT EXISTS] name ON t [SEVERITY = ERROR | WARN] AS
//!   <query returning the failing rows>`, a singular test;
//! - `DROP DATA TEST [IF EXISTS] name [ON t]`;
//! - `RUN DATA TESTS [ON t | name]`.

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};
use strata_storage::Severity;

use super::tokens::{Spans, expect_end, expect_word, is_word, normalize, parser_for, perr};
use crate::error::{Error, Result};

/// The generic tests, by the name a statement gives them.
pub const GENERIC_TESTS: [&str; 6] = [
    "unique",
    "not_null",
    "accepted_values",
    "relationships",
    "freshness",
    "row_count",
];

/// A data test as a statement defines it (names not yet resolved).
#[derive(Debug, Clone, PartialEq)]
pub enum TestSpec {
    /// `unique(c, ...)`.
    Unique(Vec<String>),
    /// `not_null(c)`.
    NotNull(String),
    /// `accepted_values(c, (v, ...))`: the values as SQL literals.
    AcceptedValues {
        /// The column.
        column: String,
        /// The accepted values, as SQL literals.
        values: Vec<String>,
    },
    /// `relationships(c, other(c2))`.
    Relationships {
        /// The column.
        column: String,
        /// The referenced table, as written.
        references: ObjectName,
        /// The referenced column.
        referenced_column: String,
    },
    /// `freshness(c, '1 day')`.
    Freshness {
        /// The column.
        column: String,
        /// The largest age, an interval as text.
        max_age: String,
    },
    /// `row_count(> 0)`.
    RowCount {
        /// The comparison.
        op: String,
        /// The bound.
        value: i64,
    },
    /// `CREATE DATA TEST ... AS query`: the query, as written.
    Query(String),
}

/// `ALTER TABLE t ADD TEST ...` or `CREATE DATA TEST ...`.
#[derive(Debug, Clone)]
pub struct DataTestDef {
    /// The tested table.
    pub table: ObjectName,
    /// The test's name; generic tests are named after their kind, table and columns when none
    /// is given.
    pub name: Option<String>,
    /// What it checks.
    pub spec: TestSpec,
    /// `SEVERITY = ...`; ERROR when absent.
    pub severity: Severity,
    /// `OR REPLACE`.
    pub or_replace: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
}

/// A data-test statement.
#[derive(Debug, Clone)]
pub enum DataTestStatement {
    /// `ALTER TABLE t ADD TEST ...` or `CREATE DATA TEST name ON t ... AS query`.
    Add(DataTestDef),
    /// `ALTER TABLE t DROP TEST name` or `DROP DATA TEST name [ON t]`.
    Drop {
        /// The table, when the statement names it.
        table: Option<ObjectName>,
        /// The test.
        name: String,
        /// `IF EXISTS`: a missing test is no error.
        if_exists: bool,
    },
    /// `RUN DATA TESTS [ON t | name]`.
    Run {
        /// Which tests.
        target: TestTarget,
    },
}

/// What `RUN DATA TESTS` runs.
#[derive(Debug, Clone, PartialEq)]
pub enum TestTarget {
    /// Every test of every table the user can see.
    All,
    /// `ON t`: the tests of one table.
    Table(ObjectName),
    /// `name`: one test, found among the tables of the current schema (or `t.name`).
    Test(ObjectName),
}

/// Whether an `ALTER TABLE` is `ADD TEST kind(` / `ADD TEST name kind(` or `DROP TEST [IF
/// EXISTS] name` (and not `ADD test INT`, a column named `test`).
pub(super) fn is_alter_test(chunk: &[TokenWithSpan]) -> bool {
    let sig: Vec<&TokenWithSpan> = chunk
        .iter()
        .filter(|t| {
            !matches!(
                t.token,
                Token::Whitespace(_) | Token::EOF | Token::SemiColon
            )
        })
        .collect();
    let at = |i: usize| sig.get(i).map(|t| &t.token);
    let kind_call = |i: usize| {
        matches!(at(i), Some(Token::Word(w)) if GENERIC_TESTS.contains(&w.value.to_ascii_lowercase().as_str()))
            && matches!(at(i + 1), Some(Token::LParen))
    };
    (0..sig.len()).any(|i| {
        let op = |word: &str| {
            is_word(sig[i], word) && sig.get(i + 1).is_some_and(|t| is_word(t, "TEST"))
        };
        if op("ADD") {
            let mut j = i + 2;
            let if_not_exists = ["IF", "NOT", "EXISTS"]
                .iter()
                .enumerate()
                .all(|(k, w)| sig.get(j + k).is_some_and(|t| is_word(t, w)));
            if if_not_exists {
                j += 3;
            }
            kind_call(j) || (matches!(at(j), Some(Token::Word(_))) && kind_call(j + 1))
        } else if op("DROP") {
            // DROP TEST name, DROP TEST IF EXISTS name: the statement ends there.
            let rest = sig.len() - (i + 2);
            (rest == 1 || (rest == 3 && sig.get(i + 2).is_some_and(|t| is_word(t, "IF"))))
                && matches!(at(sig.len() - 1), Some(Token::Word(_)))
        } else {
            false
        }
    })
}

/// `ALTER TABLE t ADD TEST ...` / `ALTER TABLE t DROP TEST ...`.
pub(super) fn parse_alter_test(chunk: &[TokenWithSpan]) -> Result<DataTestStatement> {
    let mut p = parser_for(chunk);
    p.expect_keywords(&[Keyword::ALTER, Keyword::TABLE])
        .map_err(perr)?;
    let table = p.parse_object_name(false).map_err(perr)?;
    if p.parse_keyword(Keyword::DROP) {
        expect_word(&mut p, "TEST")?;
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = normalize(&p.parse_identifier().map_err(perr)?);
        expect_end(&mut p).map_err(perr)?;
        return Ok(DataTestStatement::Drop {
            table: Some(table),
            name,
            if_exists,
        });
    }
    p.expect_keyword(Keyword::ADD).map_err(perr)?;
    expect_word(&mut p, "TEST")?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = match p.peek_nth_token(1).token {
        Token::LParen => None,
        _ => Some(normalize(&p.parse_identifier().map_err(perr)?)),
    };
    let spec = parse_generic(&mut p)?;
    let severity = parse_severity(&mut p)?.unwrap_or(Severity::Error);
    expect_end(&mut p).map_err(perr)?;
    Ok(DataTestStatement::Add(DataTestDef {
        table,
        name,
        spec,
        severity,
        or_replace: false,
        if_not_exists,
    }))
}

/// `kind(arguments)` of a generic test.
fn parse_generic(p: &mut Parser) -> Result<TestSpec> {
    let kind = p
        .parse_identifier()
        .map_err(perr)?
        .value
        .to_ascii_lowercase();
    p.expect_token(&Token::LParen).map_err(perr)?;
    let column =
        |p: &mut Parser| -> Result<String> { Ok(normalize(&p.parse_identifier().map_err(perr)?)) };
    let spec = match kind.as_str() {
        "unique" => TestSpec::Unique(
            p.parse_comma_separated(|p| p.parse_identifier())
                .map_err(perr)?
                .iter()
                .map(normalize)
                .collect(),
        ),
        "not_null" => TestSpec::NotNull(column(p)?),
        "accepted_values" => {
            let column = column(p)?;
            p.expect_token(&Token::Comma).map_err(perr)?;
            p.expect_token(&Token::LParen).map_err(perr)?;
            let values = p
                .parse_comma_separated(|p| p.parse_expr())
                .map_err(perr)?
                .iter()
                .map(|e| e.to_string())
                .collect();
            p.expect_token(&Token::RParen).map_err(perr)?;
            TestSpec::AcceptedValues { column, values }
        }
        "relationships" => {
            let column = column(p)?;
            p.expect_token(&Token::Comma).map_err(perr)?;
            let references = p.parse_object_name(false).map_err(perr)?;
            p.expect_token(&Token::LParen).map_err(perr)?;
            let referenced_column = normalize(&p.parse_identifier().map_err(perr)?);
            p.expect_token(&Token::RParen).map_err(perr)?;
            TestSpec::Relationships {
                column,
                references,
                referenced_column,
            }
        }
        "freshness" => {
            let column = column(p)?;
            p.expect_token(&Token::Comma).map_err(perr)?;
            let next = p.next_token();
            let Token::SingleQuotedString(max_age) = next.token else {
                return Err(Error::Parse(format!(
                    "freshness(column, 'interval'): expected an interval such as '1 day', \
                     found {} at {}",
                    next.token, next.span.start
                )));
            };
            TestSpec::Freshness { column, max_age }
        }
        "row_count" => {
            let next = p.next_token();
            let op = match next.token {
                Token::Gt => ">",
                Token::GtEq => ">=",
                Token::Lt => "<",
                Token::LtEq => "<=",
                Token::Eq => "=",
                Token::Neq => "!=",
                other => {
                    return Err(Error::Parse(format!(
                        "row_count(op n): expected one of > >= < <= = !=, found {other} at {}",
                        next.span.start
                    )));
                }
            };
            let negative = p.consume_token(&Token::Minus);
            let next = p.next_token();
            let value = match &next.token {
                Token::Number(n, _) => n.parse::<i64>().ok(),
                _ => None,
            }
            .ok_or_else(|| {
                Error::Parse(format!(
                    "row_count({op} n): expected a whole number, found {} at {}",
                    next.token, next.span.start
                ))
            })?;
            TestSpec::RowCount {
                op: op.to_string(),
                value: if negative { -value } else { value },
            }
        }
        other => {
            return Err(Error::Parse(format!(
                "unknown data test '{other}': the generic tests are {}; write any other test as \
                 CREATE DATA TEST name ON table AS <query returning the failing rows>",
                GENERIC_TESTS.join(", ")
            )));
        }
    };
    p.expect_token(&Token::RParen).map_err(perr)?;
    Ok(spec)
}

/// `SEVERITY = ERROR | WARN`, if present.
fn parse_severity(p: &mut Parser) -> Result<Option<Severity>> {
    if !is_word(&p.peek_token(), "SEVERITY") {
        return Ok(None);
    }
    p.next_token();
    let _ = p.consume_token(&Token::Eq);
    let next = p.next_token();
    match &next.token {
        Token::Word(w) if w.value.eq_ignore_ascii_case("ERROR") => Ok(Some(Severity::Error)),
        Token::Word(w)
            if w.value.eq_ignore_ascii_case("WARN") || w.value.eq_ignore_ascii_case("WARNING") =>
        {
            Ok(Some(Severity::Warn))
        }
        other => Err(Error::Parse(format!(
            "SEVERITY = ERROR | WARN, found {other} at {}",
            next.span.start
        ))),
    }
}

/// `CREATE [OR REPLACE] DATA TEST [IF NOT EXISTS] name ON t [SEVERITY = ...] AS query`.
pub(super) fn parse_create_data_test(
    text: &str,
    chunk: &[TokenWithSpan],
    spans: &Spans,
) -> Result<DataTestStatement> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::CREATE).map_err(perr)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    expect_word(&mut p, "DATA")?;
    expect_word(&mut p, "TEST")?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = normalize(&p.parse_identifier().map_err(perr)?);
    p.expect_keyword(Keyword::ON).map_err(perr)?;
    let table = p.parse_object_name(false).map_err(perr)?;
    let severity = parse_severity(&mut p)?.unwrap_or(Severity::Error);
    let as_token = p.next_token();
    if !is_word(&as_token, "AS") {
        return Err(Error::Parse(format!(
            "CREATE DATA TEST {name} ON {table}: expected AS <query returning the failing rows>, \
             found {} at {}",
            as_token.token, as_token.span.start
        )));
    }
    // The query is kept as written (it is planned again at each run, like a view's); the
    // statement layer checks that it is one query when it plans it.
    let start = spans.range(&as_token).end;
    let query = text.get(start..).unwrap_or_default().trim();
    Ok(DataTestStatement::Add(DataTestDef {
        table,
        name: Some(name),
        spec: TestSpec::Query(query.to_string()),
        severity,
        or_replace,
        if_not_exists,
    }))
}

/// `DROP DATA TEST [IF EXISTS] name [ON t]`.
pub(super) fn parse_drop_data_test(chunk: &[TokenWithSpan]) -> Result<DataTestStatement> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::DROP).map_err(perr)?;
    expect_word(&mut p, "DATA")?;
    expect_word(&mut p, "TEST")?;
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = normalize(&p.parse_identifier().map_err(perr)?);
    let table = if p.parse_keyword(Keyword::ON) {
        Some(p.parse_object_name(false).map_err(perr)?)
    } else {
        None
    };
    expect_end(&mut p).map_err(perr)?;
    Ok(DataTestStatement::Drop {
        table,
        name,
        if_exists,
    })
}

/// `RUN DATA TESTS [ON t | name]` (`RUN DATA TEST name` too).
pub(super) fn parse_run_data_tests(chunk: &[TokenWithSpan]) -> Result<DataTestStatement> {
    let mut p = parser_for(chunk);
    expect_word(&mut p, "RUN")?;
    expect_word(&mut p, "DATA")?;
    let next = p.next_token();
    if !is_word(&next, "TESTS") && !is_word(&next, "TEST") {
        return Err(Error::Parse(format!(
            "expected RUN DATA TESTS [ON table | name], found {} at {}",
            next.token, next.span.start
        )));
    }
    let target = if p.peek_token().token == Token::EOF {
        TestTarget::All
    } else if p.parse_keyword(Keyword::ON) {
        TestTarget::Table(p.parse_object_name(false).map_err(perr)?)
    } else {
        TestTarget::Test(p.parse_object_name(false).map_err(perr)?)
    };
    expect_end(&mut p).map_err(perr)?;
    Ok(DataTestStatement::Run { target })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Statement, parse};

    fn one(sql: &str) -> DataTestStatement {
        match parse(sql).unwrap().remove(0).statement {
            Statement::DataTest(statement) => *statement,
            other => panic!("not a data-test statement: {other:?}"),
        }
    }

    fn test_def(sql: &str) -> DataTestDef {
        match one(sql) {
            DataTestStatement::Add(def) => def,
            other => panic!("not a new data test: {other:?}"),
        }
    }

    #[test]
    fn generic_tests_parse_with_and_without_names() {
        let def = test_def(
            "ALTER TABLE orders ADD TEST accepted_values(Status, ('a', 'b')) SEVERITY = WARN",
        );
        assert_eq!(def.name, None);
        assert_eq!(def.severity, Severity::Warn);
        assert_eq!(
            def.spec,
            TestSpec::AcceptedValues {
                column: "status".into(),
                values: vec!["'a'".into(), "'b'".into()]
            }
        );
        let def = test_def("ALTER TABLE s.orders ADD TEST positive row_count(>= -1)");
        assert_eq!(def.name.as_deref(), Some("positive"));
        assert_eq!(
            def.spec,
            TestSpec::RowCount {
                op: ">=".into(),
                value: -1
            }
        );
        let def = test_def("alter table o add test relationships(cust, main.public.customers(id))");
        assert!(matches!(
            def.spec,
            TestSpec::Relationships { ref referenced_column, .. } if referenced_column == "id"
        ));
        let def = test_def("ALTER TABLE o ADD TEST IF NOT EXISTS n not_null(c)");
        assert!(def.if_not_exists);
        assert_eq!(def.name.as_deref(), Some("n"));
    }

    #[test]
    fn columns_named_test_are_still_columns() {
        for sql in [
            "ALTER TABLE t ADD test INT",
            "ALTER TABLE t ADD COLUMN test INT",
        ] {
            let parsed = parse(sql).unwrap().remove(0).statement;
            assert!(matches!(parsed, Statement::Sql(_)), "{sql}");
        }
        assert!(matches!(
            one("ALTER TABLE t DROP TEST IF EXISTS x"),
            DataTestStatement::Drop {
                if_exists: true,
                ..
            }
        ));
    }

    #[test]
    fn singular_tests_keep_their_query_as_written() {
        let def = test_def(
            "CREATE OR REPLACE DATA TEST no_refunds ON orders SEVERITY = WARN AS\n  SELECT * \
             FROM orders WHERE amount < 0",
        );
        assert!(def.or_replace);
        assert_eq!(
            def.spec,
            TestSpec::Query("SELECT * FROM orders WHERE amount < 0".into())
        );
    }

    #[test]
    fn run_targets() {
        assert!(matches!(
            one("RUN DATA TESTS"),
            DataTestStatement::Run {
                target: TestTarget::All
            }
        ));
        assert!(matches!(
            one("run data tests on orders"),
            DataTestStatement::Run {
                target: TestTarget::Table(_)
            }
        ));
        assert!(matches!(
            one("RUN DATA TESTS unique_orders_id"),
            DataTestStatement::Run {
                target: TestTarget::Test(_)
            }
        ));
    }

    #[test]
    fn a_wrong_severity_is_named_in_the_error() {
        let err = parse("ALTER TABLE t ADD TEST unique(x) SEVERITY = LOUD").unwrap_err();
        assert!(err.to_string().contains("SEVERITY"), "{err}");
    }
}
