//! The README runs as written: every ```sql block of README.md, in order, against one fresh
//! warehouse, through the `strata` binary, from a directory holding `testdata/readme` (the files
//! the examples load).
//!
//! A statement whose text carries `-- error: TEXT` must fail with a message containing TEXT;
//! every other statement must succeed. Blocks fenced as ```sql no-run (S3 examples that need a
//! bucket) are only counted.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One statement of the README: its text and the line it starts on.
struct Statement {
    text: String,
    line: usize,
}

impl Statement {
    fn expected_error(&self) -> Option<&str> {
        let at = self.text.find("-- error:")?;
        let rest = &self.text[at + "-- error:".len()..];
        Some(rest.lines().next().unwrap_or("").trim())
    }
}

/// The ```sql blocks of a Markdown text: (first line number, body, runs).
fn sql_blocks(markdown: &str) -> Vec<(usize, String, bool)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, bool)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut open {
            None if trimmed.starts_with("```sql") => {
                let runs = !trimmed.contains("no-run");
                open = Some((i + 2, String::new(), runs));
            }
            None => {}
            Some(_) if trimmed.starts_with("```") => blocks.push(open.take().unwrap()),
            Some((_, body, _)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(open.is_none(), "README.md: an unclosed ```sql block");
    blocks
}

/// Splits a block into statements at `;` outside quotes and comments. A comment on the line
/// of a statement's `;`, and an `-- error:` line right below it, belong to that statement.
fn statements(first_line: usize, body: &str) -> Vec<Statement> {
    let chars: Vec<char> = body.chars().collect();
    let mut out = Vec::new();
    let (mut start, mut start_line, mut line) = (0, first_line, first_line);
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\n' => line += 1,
            '\'' | '"' => {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i + 1 < chars.len() && chars[i + 1] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
                i += 1;
            }
            ';' => {
                let mut end = i + 1;
                let rest: String = chars[end..].iter().take_while(|c| **c != '\n').collect();
                if rest.trim_start().starts_with("--") || rest.trim().is_empty() {
                    end += rest.chars().count();
                    // An `-- error:` marker may also stand alone on the next line.
                    let next: String = chars[end..]
                        .iter()
                        .skip(1)
                        .take_while(|c| **c != '\n')
                        .collect();
                    if next.trim_start().starts_with("-- error:") {
                        end += 1 + next.chars().count();
                        line += 1;
                    }
                }
                push_statement(&mut out, &chars[start..end], start_line);
                i = end;
                start = end;
                start_line = line;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    push_statement(&mut out, &chars[start.min(chars.len())..], start_line);
    out
}

fn push_statement(out: &mut Vec<Statement>, chars: &[char], first_line: usize) {
    let text: String = chars.iter().collect();
    // The statement starts at its first line that is not blank or a comment.
    let mut line = first_line;
    let mut code = false;
    for l in text.lines() {
        let t = l.trim();
        if !t.is_empty() && !t.starts_with("--") {
            code = true;
            break;
        }
        line += 1;
    }
    if code {
        out.push(Statement {
            text: text.trim().to_string(),
            line,
        });
    }
}

fn run(dir: &Path, script: &str) -> std::process::Output {
    let file = dir.join("statement.sql");
    std::fs::write(&file, script).unwrap();
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(dir)
        .args([
            "--warehouse",
            "warehouse",
            "--format",
            "csv",
            "-f",
            "statement.sql",
        ])
        .env_remove("STRATA_WAREHOUSE")
        .output()
        .expect("strata runs")
}

#[test]
fn every_sql_example_of_the_readme_runs_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    super::conflict_matrix::copy_dir(&root.join("testdata/readme"), dir.path());

    let blocks = sql_blocks(&readme);
    let (mut ran, mut failed_as_documented, mut not_run) = (0, 0, 0);
    for (first_line, body, runs) in &blocks {
        if !runs {
            not_run += 1;
            continue;
        }
        // Statements that succeed run together (a block keeps its USE); one expected to fail
        // runs alone.
        let mut pending: Vec<&Statement> = Vec::new();
        let statements = statements(*first_line, body);
        assert!(
            !statements.is_empty(),
            "README.md line {first_line}: empty block"
        );
        let flush = |pending: &mut Vec<&Statement>| {
            if pending.is_empty() {
                return;
            }
            let script: String = pending.iter().map(|s| format!("{}\n", s.text)).collect();
            let o = run(dir.path(), &script);
            assert!(
                o.status.success(),
                "README.md lines {}..: the example failed:\n{script}\n{}",
                pending[0].line,
                String::from_utf8_lossy(&o.stderr)
            );
            pending.clear();
        };
        for statement in &statements {
            ran += 1;
            let Some(expected) = statement.expected_error() else {
                pending.push(statement);
                continue;
            };
            flush(&mut pending);
            let o = run(dir.path(), &statement.text);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                !o.status.success() && stderr.contains(expected),
                "README.md line {}: expected an error containing {expected:?}, got {}:\n{}\n{stderr}",
                statement.line,
                if o.status.success() {
                    "success"
                } else {
                    "another error"
                },
                statement.text,
            );
            failed_as_documented += 1;
        }
        flush(&mut pending);
    }
    eprintln!(
        "README.md: {} sql blocks, {ran} statements ran ({failed_as_documented} failed as \
         documented), {not_run} blocks marked no-run",
        blocks.len()
    );
    assert!(ran > 100, "only {ran} statements found in README.md");
    assert!(not_run <= 2, "{not_run} README blocks are marked no-run");
}

#[test]
fn the_readme_splitter_keeps_quotes_comments_and_markers() {
    let s = statements(
        10,
        "-- a comment\nSELECT ';' AS x; -- error: y\nSELECT 1;\n  -- error: z\n/* ; */ SELECT\n 2",
    );
    let texts: Vec<&str> = s.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "-- a comment\nSELECT ';' AS x; -- error: y",
            "SELECT 1;\n  -- error: z",
            "/* ; */ SELECT\n 2"
        ]
    );
    assert_eq!(s[0].line, 11);
    assert_eq!(s[0].expected_error(), Some("y"));
    assert_eq!(s[1].line, 12);
    assert_eq!(s[1].expected_error(), Some("z"));
    assert_eq!(s[2].line, 14);
    assert_eq!(s[2].expected_error(), None);
}
