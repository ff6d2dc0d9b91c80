//! Snowflake's tag statements, which sqlparser does not parse:
//!
//! - `ALTER TABLE t SET TAG name = 'value' [, ...]` and `ALTER TABLE t UNSET TAG name [, ...]`;
//! - `ALTER TABLE t MODIFY | ALTER [COLUMN] c SET TAG name = 'value' [, ...]` and `... UNSET
//!   TAG name [, ...]`.

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::tokens::{expect_end, expect_word, is_word, normalize, parser_for, perr};
use crate::error::{Error, Result};

/// A change to the tags of a table or of one of its columns.
#[derive(Debug, Clone, PartialEq)]
pub struct TagChange {
    /// The table.
    pub table: ObjectName,
    /// The column, for `MODIFY COLUMN c ...`.
    pub column: Option<String>,
    /// `SET TAG`: names (lower case unless quoted) and values.
    pub set: Vec<(String, String)>,
    /// `UNSET TAG`: names.
    pub unset: Vec<String>,
}

/// Whether an `ALTER TABLE` sets or unsets tags: `SET TAG` or `UNSET TAG` at the top level.
pub(super) fn is_tag_change(chunk: &[TokenWithSpan]) -> bool {
    let sig: Vec<&TokenWithSpan> = chunk
        .iter()
        .filter(|t| {
            !matches!(
                t.token,
                Token::Whitespace(_) | Token::EOF | Token::SemiColon
            )
        })
        .collect();
    sig.windows(2)
        .any(|w| (is_word(w[0], "SET") || is_word(w[0], "UNSET")) && is_word(w[1], "TAG"))
}

/// Parses an `ALTER TABLE ... SET | UNSET TAG ...`.
pub(super) fn parse_tag_change(chunk: &[TokenWithSpan]) -> Result<TagChange> {
    let mut p = parser_for(chunk);
    p.expect_keywords(&[Keyword::ALTER, Keyword::TABLE])
        .map_err(perr)?;
    let table = p.parse_object_name(false).map_err(perr)?;
    let column = if p.parse_keyword(Keyword::MODIFY) || p.parse_keyword(Keyword::ALTER) {
        let _ = p.parse_keyword(Keyword::COLUMN);
        Some(normalize(&p.parse_identifier().map_err(perr)?))
    } else {
        None
    };
    let mut change = TagChange {
        table,
        column,
        set: Vec::new(),
        unset: Vec::new(),
    };
    if p.parse_keyword(Keyword::SET) {
        expect_word(&mut p, "TAG")?;
        loop {
            let name = normalize(&p.parse_identifier().map_err(perr)?);
            p.expect_token(&Token::Eq).map_err(perr)?;
            let next = p.next_token();
            let Token::SingleQuotedString(value) = next.token else {
                return Err(Error::Parse(format!(
                    "SET TAG {name} = '...': a tag's value is a quoted string, found {} at {}",
                    next.token, next.span.start
                )));
            };
            change.set.push((name, value));
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
    } else {
        expect_word(&mut p, "UNSET")?;
        expect_word(&mut p, "TAG")?;
        change.unset = p
            .parse_comma_separated(|p| p.parse_identifier())
            .map_err(perr)?
            .iter()
            .map(normalize)
            .collect();
    }
    expect_end(&mut p).map_err(perr)?;
    Ok(change)
}

#[cfg(test)]
mod tests {
    use crate::parser::{Statement, parse};

    #[test]
    fn table_and_column_tags() {
        let Statement::SetTags(change) =
            parse("ALTER TABLE sales SET TAG domain = 'sales', Tier = 'gold'")
                .unwrap()
                .remove(0)
                .statement
        else {
            panic!("not a tag change");
        };
        assert_eq!(change.column, None);
        assert_eq!(
            change.set,
            [
                ("domain".to_string(), "sales".to_string()),
                ("tier".to_string(), "gold".to_string())
            ]
        );
        let Statement::SetTags(change) =
            parse("ALTER TABLE users MODIFY COLUMN email UNSET TAG pii")
                .unwrap()
                .remove(0)
                .statement
        else {
            panic!("not a tag change");
        };
        assert_eq!(change.column.as_deref(), Some("email"));
        assert_eq!(change.unset, ["pii"]);
        assert!(parse("ALTER TABLE t SET TAG a = 1").is_err());
    }
}
