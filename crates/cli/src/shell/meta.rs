//! The shell's meta commands: psql's backslash commands, with the dot commands of the DuckDB
//! and SQLite shells as aliases. A meta command is one line and needs no `;`.

/// One meta command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Meta {
    /// `\d`, `\dt`, `.tables`: the tables and views of the current database.
    Tables,
    /// `\d name`, `.schema name`: the columns of a table or view.
    Describe(String),
    /// `\dn`, `.schemas`: databases and schemas.
    Schemas,
    /// `\timing [on|off]`, `.timer [on|off]`: show elapsed time after results.
    Timing(Option<bool>),
    /// `\format name`, `.mode name`: the output format; without a name, the current one.
    Format(Option<String>),
    /// `\o file`, `.output file`: results go to a file; without one, back to the terminal.
    Output(Option<String>),
    /// `\i file`, `.read file`: run the statements of a file.
    Include(String),
    /// `\x [on|off]`: expanded display, one field per line.
    Expanded(Option<bool>),
    /// `\?`, `.help`.
    Help,
    /// `\q`, `.quit`, `.exit`.
    Quit,
}

/// The commands with their aliases, for completion.
pub(crate) const COMMANDS: &[&str] = &[
    "\\d", "\\dt", "\\dn", "\\timing", "\\format", "\\o", "\\i", "\\x", "\\?", "\\q", ".tables",
    ".schema", ".schemas", ".timer", ".mode", ".output", ".read", ".help", ".quit", ".exit",
];

/// The help text of `\?`.
pub(crate) const HELP: &str = "\
SQL statements end with ';' and may span several lines. Tab completes keywords and names.
Ctrl-C cancels the running statement, Ctrl-D (or \\q) leaves the shell.

  \\d               .tables          tables and views of the current database
  \\d NAME          .schema NAME     columns of a table or view
  \\dn              .schemas         databases and schemas
  \\timing [on|off] .timer [on|off]  show the elapsed time after each result
  \\format FORMAT   .mode FORMAT     table, csv, tsv, json, ndjson or markdown
  \\x [on|off]                       expanded display: one field per line
  \\o [FILE]        .output [FILE]   results to FILE (FILE.parquet writes Parquet);
                                    no FILE: back to the terminal
  \\i FILE          .read FILE       run the statements of FILE
  \\?               .help            this help
  \\q               .quit            leave the shell
";

/// Whether `line` is a meta command rather than SQL.
pub(crate) fn is_meta(line: &str) -> bool {
    line.trim_start().starts_with(['\\', '.'])
}

fn on_off(word: Option<&str>) -> Result<Option<bool>, String> {
    match word.map(|w| w.to_ascii_lowercase()) {
        None => Ok(None),
        Some(w) if w == "on" => Ok(Some(true)),
        Some(w) if w == "off" => Ok(Some(false)),
        Some(w) => Err(format!("expected on or off, found '{w}'")),
    }
}

/// The meta command on `line`, or a message saying what is wrong with it.
pub(crate) fn parse(line: &str) -> Result<Meta, String> {
    let line = line.trim().trim_end_matches(';').trim();
    let (command, rest) = match line.split_once(char::is_whitespace) {
        Some((c, r)) => (c, r.trim()),
        None => (line, ""),
    };
    let argument = (!rest.is_empty()).then_some(rest);
    let required = |what: &str| {
        argument
            .map(str::to_string)
            .ok_or_else(|| format!("{command} needs {what}"))
    };
    Ok(match command {
        "\\d" | "\\dt" | ".tables" | ".schema" => match argument {
            Some(name) => Meta::Describe(name.to_string()),
            None => Meta::Tables,
        },
        "\\dn" | ".schemas" | ".databases" => Meta::Schemas,
        "\\timing" | ".timer" => Meta::Timing(on_off(argument)?),
        "\\format" | "\\pset" | ".mode" => Meta::Format(argument.map(|a| {
            // `\pset format csv` as in psql.
            a.strip_prefix("format")
                .map(str::trim)
                .unwrap_or(a)
                .to_string()
        })),
        "\\o" | "\\out" | ".output" | ".once" => Meta::Output(argument.map(str::to_string)),
        "\\i" | "\\include" | ".read" => Meta::Include(required("a file")?),
        "\\x" => Meta::Expanded(on_off(argument)?),
        "\\?" | "\\h" | "\\help" | ".help" => Meta::Help,
        "\\q" | "\\quit" | ".quit" | ".exit" => Meta::Quit,
        other => return Err(format!("unknown command {other}; \\? lists the commands")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_and_duckdb_spellings() {
        assert_eq!(parse("\\d"), Ok(Meta::Tables));
        assert_eq!(parse(".tables"), Ok(Meta::Tables));
        assert_eq!(parse("\\d sales"), Ok(Meta::Describe("sales".into())));
        assert_eq!(parse(".schema sales"), Ok(Meta::Describe("sales".into())));
        assert_eq!(parse("\\dn"), Ok(Meta::Schemas));
        assert_eq!(parse("\\timing off"), Ok(Meta::Timing(Some(false))));
        assert_eq!(parse("\\timing"), Ok(Meta::Timing(None)));
        assert_eq!(parse(".mode csv"), Ok(Meta::Format(Some("csv".into()))));
        assert_eq!(
            parse("\\pset format json"),
            Ok(Meta::Format(Some("json".into())))
        );
        assert_eq!(
            parse("\\o out.parquet"),
            Ok(Meta::Output(Some("out.parquet".into())))
        );
        assert_eq!(parse("\\o"), Ok(Meta::Output(None)));
        assert_eq!(parse("\\i load.sql;"), Ok(Meta::Include("load.sql".into())));
        assert_eq!(parse("\\x on"), Ok(Meta::Expanded(Some(true))));
        assert_eq!(parse(".exit"), Ok(Meta::Quit));
        assert!(parse("\\i").unwrap_err().contains("needs a file"));
        assert!(parse("\\timing maybe").unwrap_err().contains("on or off"));
        assert!(parse("\\zz").unwrap_err().contains("unknown command \\zz"));
    }
}
