//! Token-level helpers of Strata's own statement parsers: where a token is in the text, and
//! the small steps (`expect_word`, `expect_end`) sqlparser's `Parser` lacks.

use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::error::{Error, Result};

/// Where a statement's tokens are in its text.
pub(super) struct Spans<'a> {
    pub(super) sql: &'a str,
    pub(super) line_starts: &'a [usize],
    /// The statement's first byte in `sql`.
    pub(super) start: usize,
}

impl Spans<'_> {
    /// The byte range of `token` in the statement's text.
    pub(super) fn range(&self, token: &TokenWithSpan) -> std::ops::Range<usize> {
        let at =
            |l: Location| byte_offset(self.sql, self.line_starts, l).saturating_sub(self.start);
        at(token.span.start)..at(token.span.end)
    }
}

pub(super) fn expect_end(parser: &mut Parser) -> Result<(), ParserError> {
    let _ = parser.consume_token(&Token::SemiColon);
    let next = parser.peek_token();
    if next.token == Token::EOF {
        Ok(())
    } else {
        Err(ParserError::ParserError(format!(
            "expected end of statement, found: {} at {}",
            next.token, next.span.start
        )))
    }
}

pub(super) fn line_starts(sql: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    v
}

pub(super) fn byte_offset(sql: &str, line_starts: &[usize], loc: Location) -> usize {
    let Some(start) = line_starts.get((loc.line.max(1) - 1) as usize) else {
        return sql.len();
    };
    sql[*start..]
        .char_indices()
        .nth((loc.column.max(1) - 1) as usize)
        .map(|(i, _)| start + i)
        .unwrap_or(sql.len())
}

pub(super) fn is_word(t: &TokenWithSpan, word: &str) -> bool {
    matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

pub(super) fn parser_for(tokens: &[TokenWithSpan]) -> Parser<'static> {
    static DIALECT: GenericDialect = GenericDialect;
    Parser::new(&DIALECT).with_tokens_with_locations(tokens.to_vec())
}

pub(super) fn expect_word(parser: &mut Parser, word: &str) -> Result<()> {
    let t = parser.next_token();
    if is_word(&t, word) {
        Ok(())
    } else {
        Err(Error::Parse(format!(
            "expected {word}, found: {} at {}",
            t.token, t.span.start
        )))
    }
}

/// `NAME = 'text'` (the `=` optional), after NAME.
pub(super) fn string_option(p: &mut Parser, name: &str) -> Result<String> {
    let _ = p.consume_token(&Token::Eq);
    let next = p.next_token();
    match next.token {
        Token::SingleQuotedString(s) => Ok(s),
        other => Err(Error::Parse(format!(
            "{name} = '...': expected a quoted string, found {other} at {}",
            next.span.start
        ))),
    }
}

/// `ALTER <kind> [IF EXISTS] name RESUME | SUSPEND` (tasks, alerts): the name, and whether
/// it resumes.
pub(super) fn parse_resume(chunk: &[TokenWithSpan], kind: &str) -> Result<(ObjectName, bool)> {
    let mut p = parser_for(chunk);
    p.expect_keyword(Keyword::ALTER).map_err(perr)?;
    expect_word(&mut p, kind)?;
    let _ = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(perr)?;
    let next = p.next_token();
    let resume = if is_word(&next, "RESUME") {
        true
    } else if is_word(&next, "SUSPEND") {
        false
    } else {
        return Err(Error::Parse(format!(
            "ALTER {kind} {name}: expected RESUME or SUSPEND, found {} at {}",
            next.token, next.span.start
        )));
    };
    expect_end(&mut p).map_err(perr)?;
    Ok((name, resume))
}

/// `<verb> <kind> [IF EXISTS] name` (`DROP TASK`, `EXECUTE ALERT`): the name, and whether
/// `IF EXISTS` was written.
pub(super) fn parse_named(
    chunk: &[TokenWithSpan],
    verb: &str,
    kind: &str,
) -> Result<(ObjectName, bool)> {
    let mut p = parser_for(chunk);
    expect_word(&mut p, verb)?;
    expect_word(&mut p, kind)?;
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(perr)?;
    expect_end(&mut p).map_err(perr)?;
    Ok((name, if_exists))
}

pub(super) fn perr(e: ParserError) -> Error {
    Error::Parse(e.to_string())
}

/// An identifier as DataFusion resolves it: unquoted names are lower-cased.
pub fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}
