//! The task statements, after Snowflake's:
//!
//! - `CREATE [OR REPLACE] TASK [IF NOT EXISTS] name [WAREHOUSE = w] [SCHEDULE = '...']
//!   [AFTER a [, ...]] [RETRIES = n] [RETRY_DELAY = '30 seconds'] [TIMEOUT = '1 hour']
//!   [COMMENT = '...'] [WHEN <condition>] AS <statement | BEGIN ... END>`;
//! - `ALTER TASK name RESUME | SUSPEND`, `EXECUTE TASK name`, `DROP TASK [IF EXISTS] name`,
//!   `SHOW TASKS`.
//!
//! A `BEGIN ... END` body holds `;`s, so a script is split into statements around it
//! ([`split_statements`]).

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::tokens::{
    Spans, expect_word, is_word, parse_named, parse_resume, parser_for, perr, string_option,
};
use crate::error::{Error, Result};

/// A task statement.
#[derive(Debug, Clone)]
pub enum TaskStatement {
    /// `CREATE TASK`.
    Create(CreateTask),
    /// `ALTER TASK name RESUME` (true) or `SUSPEND` (false).
    Resume {
        /// The task.
        name: ObjectName,
        /// RESUME or SUSPEND.
        resume: bool,
    },
    /// `EXECUTE TASK name`: run it now, with the tasks after it.
    Execute {
        /// The task.
        name: ObjectName,
    },
    /// `DROP TASK [IF EXISTS] name`.
    Drop {
        /// The task.
        name: ObjectName,
        /// A missing task is no error.
        if_exists: bool,
    },
    /// `SHOW TASKS`.
    Show,
}

/// `CREATE TASK` as written.
#[derive(Debug, Clone)]
pub struct CreateTask {
    /// The task.
    pub name: ObjectName,
    /// `OR REPLACE`.
    pub or_replace: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// `SCHEDULE = '...'`.
    pub schedule: Option<String>,
    /// `AFTER a, b`.
    pub after: Vec<ObjectName>,
    /// `RETRIES = n`.
    pub retries: Option<u32>,
    /// `RETRY_DELAY = '...'`.
    pub retry_delay: Option<String>,
    /// `TIMEOUT = '...'` (or Snowflake's `USER_TASK_TIMEOUT_MS = n`, as milliseconds).
    pub timeout: Option<String>,
    /// `COMMENT = '...'`.
    pub comment: Option<String>,
    /// `WHEN <condition>`, as SQL.
    pub condition: Option<String>,
    /// The statement or `BEGIN ... END` script, as written.
    pub body: String,
}

/// Whether `chunk` (a statement's tokens so far) starts `CREATE [OR REPLACE] TASK`.
fn starts_create_task(chunk: &[TokenWithSpan]) -> bool {
    let words: Vec<&TokenWithSpan> = chunk
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .take(4)
        .collect();
    let at = |i: usize, w: &str| words.get(i).is_some_and(|t| is_word(t, w));
    at(0, "CREATE") && (at(1, "TASK") || (at(1, "OR") && at(2, "REPLACE") && at(3, "TASK")))
}

/// Splits a script's tokens into statements on `;`, except inside the `BEGIN ... END` body of
/// a `CREATE TASK` (where `CASE ... END` nests).
pub(super) fn split_statements(tokens: &[TokenWithSpan]) -> Vec<&[TokenWithSpan]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        match &token.token {
            Token::SemiColon if depth == 0 => {
                out.push(&tokens[start..i]);
                start = i + 1;
            }
            Token::Word(w) if w.quote_style.is_none() => {
                let word = w.value.to_ascii_uppercase();
                let in_task = depth > 0 || starts_create_task(&tokens[start..i]);
                match word.as_str() {
                    "BEGIN" if in_task => depth += 1,
                    "CASE" if depth > 0 => depth += 1,
                    "END" if depth > 0 => depth -= 1,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    out.push(&tokens[start..]);
    out
}

/// Parses a task statement, or returns `None` if `words` (the first words, upper case) do not
/// start one.
pub(super) fn parse(
    words: &[String],
    text: &str,
    chunk: &[TokenWithSpan],
    spans: &Spans,
) -> Option<Result<TaskStatement>> {
    let word = |i: usize| words.get(i).map(String::as_str);
    match (word(0), word(1), word(2), word(3)) {
        (Some("CREATE"), Some("TASK"), ..)
        | (Some("CREATE"), Some("OR"), Some("REPLACE"), Some("TASK")) => {
            Some(parse_create(text, chunk, spans).map(TaskStatement::Create))
        }
        (Some("ALTER"), Some("TASK"), ..) => Some(
            parse_resume(chunk, "TASK")
                .map(|(name, resume)| TaskStatement::Resume { name, resume }),
        ),
        (Some("EXECUTE"), Some("TASK"), ..) => Some(
            parse_named(chunk, "EXECUTE", "TASK").map(|(name, _)| TaskStatement::Execute { name }),
        ),
        (Some("DROP"), Some("TASK"), ..) => Some(
            parse_named(chunk, "DROP", "TASK")
                .map(|(name, if_exists)| TaskStatement::Drop { name, if_exists }),
        ),
        (Some("SHOW"), Some("TASKS"), ..) => Some(Ok(TaskStatement::Show)),
        _ => None,
    }
}

fn parse_create(text: &str, chunk: &[TokenWithSpan], spans: &Spans) -> Result<CreateTask> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::CREATE).map_err(perr)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    expect_word(&mut p, "TASK")?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let mut task = CreateTask {
        name: p.parse_object_name(false).map_err(perr)?,
        or_replace,
        if_not_exists,
        schedule: None,
        after: Vec::new(),
        retries: None,
        retry_delay: None,
        timeout: None,
        comment: None,
        condition: None,
        body: String::new(),
    };
    loop {
        let next = p.next_token();
        let Token::Word(w) = &next.token else {
            return Err(Error::Parse(format!(
                "CREATE TASK {}: expected an option or AS, found {} at {}",
                task.name, next.token, next.span.start
            )));
        };
        match w.value.to_ascii_uppercase().as_str() {
            "AS" => {
                let body = text
                    .get(spans.range(&next).end..)
                    .unwrap_or_default()
                    .trim();
                if body.is_empty() {
                    return Err(Error::Parse(format!(
                        "CREATE TASK {}: AS needs a statement or a BEGIN ... END script",
                        task.name
                    )));
                }
                task.body = body.to_string();
                return Ok(task);
            }
            "AFTER" => {
                task.after = p
                    .parse_comma_separated(|p| p.parse_object_name(false))
                    .map_err(perr)?;
            }
            "WHEN" => task.condition = Some(p.parse_expr().map_err(perr)?.to_string()),
            "SCHEDULE" => task.schedule = Some(string_option(&mut p, "SCHEDULE")?),
            "RETRY_DELAY" => task.retry_delay = Some(string_option(&mut p, "RETRY_DELAY")?),
            "TIMEOUT" => task.timeout = Some(string_option(&mut p, "TIMEOUT")?),
            "COMMENT" => task.comment = Some(string_option(&mut p, "COMMENT")?),
            "USER_TASK_TIMEOUT_MS" => {
                task.timeout = Some(format!(
                    "{} seconds",
                    number_option(&mut p, "USER_TASK_TIMEOUT_MS")?.div_ceil(1000)
                ));
            }
            "RETRIES" | "TASK_AUTO_RETRY_ATTEMPTS" => {
                let n = number_option(&mut p, "RETRIES")?;
                task.retries = Some(
                    u32::try_from(n)
                        .ok()
                        .filter(|n| *n <= 100)
                        .ok_or_else(|| Error::Parse(format!("RETRIES = {n}: at most 100")))?,
                );
            }
            // Strata has no virtual warehouses: the task runs on the server's.
            "WAREHOUSE" | "USER_TASK_MANAGED_INITIAL_WAREHOUSE_SIZE" => {
                let _ = p.consume_token(&Token::Eq);
                p.next_token();
            }
            other => {
                return Err(Error::Parse(format!(
                    "CREATE TASK {}: unknown option {other} (SCHEDULE, AFTER, RETRIES, \
                     RETRY_DELAY, TIMEOUT, COMMENT, WHEN, then AS)",
                    task.name
                )));
            }
        }
    }
}

/// `NAME = n`.
fn number_option(p: &mut Parser, name: &str) -> Result<u64> {
    let _ = p.consume_token(&Token::Eq);
    let next = p.next_token();
    match &next.token {
        Token::Number(n, _) => n.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Error::Parse(format!(
            "{name} = n: expected a whole number, found {} at {}",
            next.token, next.span.start
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Statement, parse as parse_script};

    fn task(sql: &str) -> TaskStatement {
        let mut parsed = parse_script(sql).unwrap();
        assert_eq!(parsed.len(), 1, "{sql}");
        match parsed.remove(0).statement {
            Statement::Task(t) => *t,
            other => panic!("not a task statement: {other:?}"),
        }
    }

    #[test]
    fn a_script_body_keeps_its_semicolons() {
        let sql = "CREATE OR REPLACE TASK load SCHEDULE = 'USING CRON 0 2 * * * UTC' RETRIES = 2 \
                   RETRY_DELAY = '30 seconds' TIMEOUT = '1 hour' WHEN (SELECT count(*) FROM s) > 0 AS \
                   BEGIN INSERT INTO t SELECT CASE WHEN x > 0 THEN x END FROM s; DELETE FROM s; END;\
                   SELECT 1";
        let parsed = parse_script(sql).unwrap();
        assert_eq!(parsed.len(), 2);
        let Statement::Task(t) = &parsed[0].statement else {
            panic!("not a task");
        };
        let TaskStatement::Create(create) = t.as_ref() else {
            panic!("not CREATE TASK");
        };
        assert!(create.or_replace);
        assert_eq!(create.retries, Some(2));
        assert_eq!(create.schedule.as_deref(), Some("USING CRON 0 2 * * * UTC"));
        assert_eq!(
            create.condition.as_deref(),
            Some("(SELECT count(*) FROM s) > 0")
        );
        assert_eq!(
            create.body,
            "BEGIN INSERT INTO t SELECT CASE WHEN x > 0 THEN x END FROM s; DELETE FROM s; END"
        );
    }

    #[test]
    fn after_lists_and_simple_statements() {
        let TaskStatement::Create(create) =
            task("CREATE TASK t2 AFTER t1, other.t0 AS REFRESH MATERIALIZED VIEW mv")
        else {
            panic!("not CREATE TASK");
        };
        assert_eq!(create.after.len(), 2);
        assert_eq!(create.body, "REFRESH MATERIALIZED VIEW mv");
        assert!(matches!(
            task("ALTER TASK t2 SUSPEND"),
            TaskStatement::Resume { resume: false, .. }
        ));
        assert!(matches!(
            task("EXECUTE TASK t2"),
            TaskStatement::Execute { .. }
        ));
        assert!(matches!(
            task("DROP TASK IF EXISTS t2"),
            TaskStatement::Drop {
                if_exists: true,
                ..
            }
        ));
        assert!(matches!(task("SHOW TASKS"), TaskStatement::Show));
        assert!(parse_script("CREATE TASK t3 FREQUENTLY AS SELECT 1").is_err());
        assert!(parse_script("ALTER TASK t3 EXPLODE").is_err());
    }
}
