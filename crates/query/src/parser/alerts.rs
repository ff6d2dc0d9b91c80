//! The alert statements, after Snowflake's:
//!
//! - `CREATE [OR REPLACE] ALERT [IF NOT EXISTS] name [WAREHOUSE = w] SCHEDULE = '...'
//!   [COMMENT = '...'] IF (EXISTS (<query>)) THEN <action>`, where the action is
//!   `NOTIFY WEBHOOK 'http://...'` or any statement (`EXECUTE TASK t`, `INSERT INTO ...`);
//! - `ALTER ALERT name RESUME | SUSPEND`, `EXECUTE ALERT name`, `DROP ALERT [IF EXISTS] name`,
//!   `SHOW ALERTS`.

use datafusion::sql::sqlparser::ast::{Expr, ObjectName};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::tokens::{
    Spans, expect_word, is_word, parse_named, parse_resume, parser_for, perr, string_option,
};
use crate::error::{Error, Result};

/// An alert statement.
#[derive(Debug, Clone)]
pub enum AlertStatement {
    /// `CREATE ALERT`.
    Create(CreateAlert),
    /// `ALTER ALERT name RESUME` (true) or `SUSPEND` (false).
    Resume {
        /// The alert.
        name: ObjectName,
        /// RESUME or SUSPEND.
        resume: bool,
    },
    /// `EXECUTE ALERT name`: check it now.
    Execute {
        /// The alert.
        name: ObjectName,
    },
    /// `DROP ALERT [IF EXISTS] name`.
    Drop {
        /// The alert.
        name: ObjectName,
        /// A missing alert is no error.
        if_exists: bool,
    },
    /// `SHOW ALERTS`.
    Show,
}

/// `CREATE ALERT` as written.
#[derive(Debug, Clone)]
pub struct CreateAlert {
    /// The alert.
    pub name: ObjectName,
    /// `OR REPLACE`.
    pub or_replace: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// `SCHEDULE = '...'`.
    pub schedule: String,
    /// `COMMENT = '...'`.
    pub comment: Option<String>,
    /// The query inside `IF (EXISTS (...))`.
    pub condition: String,
    /// What follows `THEN`, as written.
    pub action: String,
}

/// Parses an alert statement, or returns `None` if `words` (the first words, upper case) do
/// not start one.
pub(super) fn parse(
    words: &[String],
    text: &str,
    chunk: &[TokenWithSpan],
    spans: &Spans,
) -> Option<Result<AlertStatement>> {
    let word = |i: usize| words.get(i).map(String::as_str);
    match (word(0), word(1), word(2), word(3)) {
        (Some("CREATE"), Some("ALERT"), ..)
        | (Some("CREATE"), Some("OR"), Some("REPLACE"), Some("ALERT")) => {
            Some(parse_create(text, chunk, spans).map(AlertStatement::Create))
        }
        (Some("ALTER"), Some("ALERT"), ..) => Some(
            parse_resume(chunk, "ALERT")
                .map(|(name, resume)| AlertStatement::Resume { name, resume }),
        ),
        (Some("EXECUTE"), Some("ALERT"), ..) => Some(
            parse_named(chunk, "EXECUTE", "ALERT")
                .map(|(name, _)| AlertStatement::Execute { name }),
        ),
        (Some("DROP"), Some("ALERT"), ..) => Some(
            parse_named(chunk, "DROP", "ALERT")
                .map(|(name, if_exists)| AlertStatement::Drop { name, if_exists }),
        ),
        (Some("SHOW"), Some("ALERTS"), ..) => Some(Ok(AlertStatement::Show)),
        _ => None,
    }
}

fn parse_create(text: &str, chunk: &[TokenWithSpan], spans: &Spans) -> Result<CreateAlert> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::CREATE).map_err(perr)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    expect_word(&mut p, "ALERT")?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(perr)?;
    let mut schedule = None;
    let mut comment = None;
    let condition = loop {
        let next = p.next_token();
        let Token::Word(w) = &next.token else {
            return Err(Error::Parse(format!(
                "CREATE ALERT {name}: expected SCHEDULE, COMMENT or IF, found {} at {}",
                next.token, next.span.start
            )));
        };
        match w.value.to_ascii_uppercase().as_str() {
            "SCHEDULE" => schedule = Some(string_option(&mut p, "SCHEDULE")?),
            "COMMENT" => comment = Some(string_option(&mut p, "COMMENT")?),
            // Strata has no virtual warehouses: the alert runs on the server's.
            "WAREHOUSE" => {
                let _ = p.consume_token(&Token::Eq);
                p.next_token();
            }
            "IF" => break p.parse_expr().map_err(perr)?,
            other => {
                return Err(Error::Parse(format!(
                    "CREATE ALERT {name}: unknown option {other} (SCHEDULE, COMMENT, then IF \
                     (EXISTS (<query>)) THEN <action>)"
                )));
            }
        }
    };
    let mut condition = &condition;
    while let Expr::Nested(inner) = condition {
        condition = inner;
    }
    let Expr::Exists {
        subquery,
        negated: false,
    } = condition
    else {
        return Err(Error::Parse(format!(
            "CREATE ALERT {name}: the condition is IF (EXISTS (<query>)), found IF ({condition})"
        )));
    };
    let then = p.next_token();
    if !is_word(&then, "THEN") {
        return Err(Error::Parse(format!(
            "CREATE ALERT {name}: expected THEN <action>, found {} at {}",
            then.token, then.span.start
        )));
    }
    let action = text
        .get(spans.range(&then).end..)
        .unwrap_or_default()
        .trim()
        .trim_end_matches(';')
        .trim_end();
    if action.is_empty() {
        return Err(Error::Parse(format!(
            "CREATE ALERT {name}: THEN needs an action: NOTIFY WEBHOOK 'url', or a statement"
        )));
    }
    let Some(schedule) = schedule else {
        return Err(Error::Parse(format!(
            "CREATE ALERT {name}: an alert needs SCHEDULE = '1 minute' (or 'USING CRON ...')"
        )));
    };
    Ok(CreateAlert {
        name,
        or_replace,
        if_not_exists,
        schedule,
        comment,
        condition: subquery.to_string(),
        action: action.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Statement, parse as parse_script};

    fn alert(sql: &str) -> AlertStatement {
        let mut parsed = parse_script(sql).unwrap();
        assert_eq!(parsed.len(), 1, "{sql}");
        match parsed.remove(0).statement {
            Statement::Alert(a) => *a,
            other => panic!("not an alert statement: {other:?}"),
        }
    }

    #[test]
    fn snowflakes_shape_with_a_webhook_or_a_statement() {
        let AlertStatement::Create(create) = alert(
            "CREATE OR REPLACE ALERT late_orders WAREHOUSE = wh SCHEDULE = '1 MINUTE' \
             IF (EXISTS (SELECT * FROM orders WHERE amount < 0)) \
             THEN NOTIFY WEBHOOK 'http://localhost:9000/hook';",
        ) else {
            panic!("not CREATE ALERT");
        };
        assert!(create.or_replace);
        assert_eq!(create.schedule, "1 MINUTE");
        assert_eq!(create.condition, "SELECT * FROM orders WHERE amount < 0");
        assert_eq!(create.action, "NOTIFY WEBHOOK 'http://localhost:9000/hook'");
        let AlertStatement::Create(create) = alert(
            "CREATE ALERT a SCHEDULE = '5 minutes' IF (EXISTS (SELECT 1)) THEN EXECUTE TASK t",
        ) else {
            panic!("not CREATE ALERT");
        };
        assert_eq!(create.action, "EXECUTE TASK t");
        assert!(matches!(alert("SHOW ALERTS"), AlertStatement::Show));
        assert!(matches!(
            alert("ALTER ALERT a RESUME"),
            AlertStatement::Resume { resume: true, .. }
        ));
        assert!(matches!(
            alert("EXECUTE ALERT a"),
            AlertStatement::Execute { .. }
        ));
        assert!(matches!(
            alert("DROP ALERT IF EXISTS a"),
            AlertStatement::Drop {
                if_exists: true,
                ..
            }
        ));
    }

    #[test]
    fn malformed_alerts_are_refused_with_the_reason() {
        for (sql, reason) in [
            (
                "CREATE ALERT a IF (EXISTS (SELECT 1)) THEN SELECT 1",
                "needs SCHEDULE",
            ),
            (
                "CREATE ALERT a SCHEDULE = '1 minute' IF (1 = 1) THEN SELECT 1",
                "IF (EXISTS (<query>))",
            ),
            (
                "CREATE ALERT a SCHEDULE = '1 minute' IF (EXISTS (SELECT 1))",
                "expected THEN",
            ),
            (
                "CREATE ALERT a SCHEDULE = '1 minute' IF (EXISTS (SELECT 1)) THEN",
                "THEN needs an action",
            ),
            (
                "CREATE ALERT a OFTEN IF (EXISTS (SELECT 1)) THEN SELECT 1",
                "unknown option",
            ),
            ("ALTER ALERT a EXPLODE", "expected RESUME or SUSPEND"),
        ] {
            let error = parse_script(sql).unwrap_err().to_string();
            assert!(error.contains(reason), "{sql}: {error}");
        }
    }
}
