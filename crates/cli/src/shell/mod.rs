//! The interactive SQL shell (`strata` with no arguments on a terminal).
//!
//! What data engineers expect from psql and the DuckDB CLI: line editing with persistent
//! history (`~/.strata_history`), statements spanning lines until `;`, tab completion of
//! keywords and of the warehouse's names, Ctrl-C cancelling the running statement (not the
//! shell), Ctrl-D leaving, and meta commands ([`meta`]). Results are rendered by
//! [`crate::render`]: a table that fits the terminal, cut after [`MAX_ROWS`] rows with a note.
//!
//! Statements run on one [`Backend`]: a session on an embedded warehouse, or a `strata serve`
//! server (`--remote`), so `USE`, `SET` and the current schema carry over from one statement
//! to the next. A query streams: the shell keeps the rows it shows and counts the rest, so
//! `SELECT *` of a big table does not fill memory.

mod complete;
mod meta;
mod progress;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};
use strata_query::{CommitGate, Session};
use tokio::runtime::Runtime;

use crate::backend::Backend;
use crate::render::{self, Format};
use complete::{Names, ShellHelper, TableNames};
use meta::Meta;

/// The prompt for a statement's first line.
const PROMPT: &str = "strata> ";
/// The prompt for its later lines (as wide as [`PROMPT`], so the lines align).
const CONTINUATION_PROMPT: &str = "   ...> ";

/// Rows a table on the terminal shows; the rest are counted.
const MAX_ROWS: usize = 40;

/// Set by the SIGINT handler while a statement runs (at the prompt, the terminal is in raw
/// mode and Ctrl-C reaches rustyline as a key instead).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Wakes [`interrupted`] when Ctrl-C was pressed.
static INTERRUPT: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

/// Makes Ctrl-C set [`INTERRUPTED`] instead of ending the process, and starts the watcher: a
/// plain thread, not a tokio timer, because timers do not fire while every worker is busy in
/// an operator that does not yield, and Ctrl-C must reach the shell then most of all.
fn catch_ctrl_c() -> anyhow::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGINT, &action) }?;
    std::thread::Builder::new()
        .name("ctrl-c watcher".to_string())
        .spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(20));
                if INTERRUPTED.load(Ordering::SeqCst) {
                    INTERRUPT.notify_waiters();
                }
            }
        })?;
    Ok(())
}

/// Completes once Ctrl-C was pressed. Woken by the watcher thread, which needs no runtime
/// worker: the shell's `block_on` runs on the main thread.
async fn interrupted() {
    loop {
        let notified = INTERRUPT.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if INTERRUPTED.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

/// Where results go: the terminal, or a file chosen with `\o`.
enum Output {
    Terminal,
    File { path: PathBuf, parquet: bool },
}

/// The shell's state: where statements run, and the display settings.
pub(crate) struct Shell {
    backend: Backend,
    format: Format,
    timing: bool,
    expanded: bool,
    output: Output,
    names: Arc<RwLock<Names>>,
    /// The lines of a statement typed so far, until its `;`.
    pending: Arc<RwLock<String>>,
    /// Rows of the running statement received so far, for the progress line.
    received: Arc<AtomicU64>,
}

/// What the shell does after a line.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Quit,
}

/// Where the rows of a running statement go.
enum Sink {
    /// Kept (the first [`MAX_ROWS`]) for the terminal's table.
    Keep,
    /// Written as text as they arrive.
    Text(render::ResultWriter<'static>),
    /// Written to a Parquet file as they arrive.
    Parquet(parquet::arrow::ArrowWriter<File>),
}

/// A statement's result as the shell keeps it: the rows to show and how many there were.
struct Collected {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
}

/// The history file: `$STRATA_HISTORY`, else `~/.strata_history`.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STRATA_HISTORY") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".strata_history"))
}

/// Runs the shell on `backend` until `\q` or Ctrl-D.
pub(crate) fn run(runtime: &Runtime, backend: Backend) -> anyhow::Result<()> {
    let mut shell = Shell {
        backend,
        format: Format::Table,
        timing: true,
        expanded: false,
        output: Output::Terminal,
        names: Arc::new(RwLock::new(Names::default())),
        pending: Arc::default(),
        received: Arc::new(AtomicU64::new(0)),
    };
    runtime.block_on(shell.refresh_names());
    catch_ctrl_c()?;
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .max_history_size(10_000)?
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ShellHelper::new(
        Arc::clone(&shell.names),
        Arc::clone(&shell.pending),
    )));
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is a first run, not an error.
        let _ = editor.load_history(path);
    }
    println!(
        "Strata {} on {}. Statements end with ';'. \\? for help, \\q to quit.",
        env!("CARGO_PKG_VERSION"),
        shell.backend.describe()
    );
    loop {
        // A statement spans lines until its `;`; later lines get the continuation prompt.
        let prompt = if shell.pending().is_empty() {
            PROMPT
        } else {
            CONTINUATION_PROMPT
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let Some(text) = shell.gather(&line) else {
                    continue;
                };
                editor.add_history_entry(text.as_str())?;
                if let Some(path) = &history
                    && let Err(e) = editor.append_history(path)
                {
                    eprintln!("warning: cannot save history to {}: {e}", path.display());
                }
                if shell.line(runtime, &text) == Next::Quit {
                    break;
                }
            }
            // Ctrl-C at the prompt drops the statement being typed.
            Err(ReadlineError::Interrupted) => shell.pending.write().expect("lock").clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Shell {
    /// The lines of the statement typed so far.
    fn pending(&self) -> String {
        self.pending.read().expect("pending lock").clone()
    }

    /// Adds a typed line to the statement being typed: the whole text once it is complete (a
    /// meta command, or SQL ending with `;`), else `None` and the shell prompts for more.
    fn gather(&mut self, line: &str) -> Option<String> {
        let mut pending = self.pending.write().expect("pending lock");
        if pending.is_empty() && (line.trim().is_empty() || meta::is_meta(line)) {
            return (!line.trim().is_empty()).then(|| line.to_string());
        }
        pending.push_str(line);
        if complete::ends_statement(&pending) {
            return Some(std::mem::take(&mut *pending));
        }
        pending.push('\n');
        None
    }

    /// Handles one line (or several, for a multi-line statement) typed at the prompt.
    fn line(&mut self, runtime: &Runtime, text: &str) -> Next {
        if meta::is_meta(text) {
            return match meta::parse(text) {
                Ok(command) => self.meta(runtime, command),
                Err(message) => {
                    eprintln!("error: {message}");
                    Next::Continue
                }
            };
        }
        if let Err(e) = self.sql(runtime, text) {
            eprintln!("error: {}", crate::render::error_text(&e));
        }
        Next::Continue
    }

    /// Runs the statements of `text` one by one; the first failure stops the rest.
    fn sql(&mut self, runtime: &Runtime, text: &str) -> anyhow::Result<()> {
        let statements = strata_query::parser::parse(text)?;
        for statement in &statements {
            let clock = Instant::now();
            INTERRUPTED.store(false, Ordering::SeqCst);
            self.received.store(0, Ordering::Relaxed);
            let shown = progress::show(self.backend.progress(), Arc::clone(&self.received));
            // Ctrl-C and the statement's commit race on a gate: a statement whose commit has
            // started is let finish, and its result is shown.
            let gate = CommitGate::new();
            let outcome = runtime.block_on(async {
                let mut run = std::pin::pin!(gate.run(self.collect(statement)));
                tokio::select! {
                    result = &mut run => Some(result),
                    _ = interrupted() => {
                        if gate.cancel() {
                            None
                        } else {
                            eprintln!("the statement is committing; letting it finish");
                            Some(run.await)
                        }
                    }
                    _ = shown => unreachable!("the progress line runs until the statement ends"),
                }
            });
            let Some(result) = outcome else {
                // The statement's future was dropped before any commit: its query stopped.
                eprintln!("cancelled; nothing was committed");
                return Ok(());
            };
            self.show(result?, clock.elapsed())?;
            if !Session::is_query(statement) {
                runtime.block_on(self.refresh_names());
            }
        }
        Ok(())
    }

    /// Runs one statement. A result for the terminal's table (or expanded display) keeps its
    /// first [`MAX_ROWS`] rows for [`Self::show`]; any other output is written as the rows
    /// stream in, so no result is ever held whole.
    async fn collect(
        &mut self,
        statement: &strata_query::parser::ParsedStatement,
    ) -> anyhow::Result<Collected> {
        let (schema, mut stream) = self.backend.run(statement).await?;
        let mut sink = self.sink(&schema)?;
        // A subscription never ends: its changes are shown as they arrive, a table each.
        let live = matches!(
            statement.statement,
            strata_query::parser::Statement::Subscribe { .. }
        );
        let mut batches = Vec::new();
        let mut kept = 0;
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            self.received.store(rows as u64, Ordering::Relaxed);
            match &mut sink {
                Sink::Keep if live => {
                    let width = terminal_size::terminal_size()
                        .map(|(w, _)| w.0 as usize)
                        .filter(|w| *w >= 20);
                    let shown = batch.num_rows();
                    let text = render::table(&schema, &[batch], shown, width);
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes())?;
                    out.flush()?;
                }
                Sink::Keep => {
                    if kept < MAX_ROWS {
                        let batch = batch.slice(0, batch.num_rows().min(MAX_ROWS - kept));
                        kept += batch.num_rows();
                        batches.push(batch);
                    }
                }
                Sink::Text(writer) => writer.write(&batch)?,
                Sink::Parquet(writer) => writer.write(&batch)?,
            }
        }
        match sink {
            Sink::Keep => {}
            Sink::Text(writer) => writer.finish()?,
            Sink::Parquet(writer) => {
                writer.close()?;
            }
        }
        Ok(Collected {
            schema,
            batches,
            rows,
        })
    }

    /// Where a result's rows go as they arrive.
    fn sink(&self, schema: &SchemaRef) -> anyhow::Result<Sink> {
        Ok(match &self.output {
            Output::Terminal if self.format == Format::Table || self.expanded => Sink::Keep,
            Output::Terminal => Sink::Text(render::ResultWriter::new(
                self.format,
                schema,
                Box::new(std::io::stdout()),
            )),
            Output::File {
                path,
                parquet: true,
            } => {
                let file =
                    File::create(path).with_context(|| format!("creating {}", path.display()))?;
                Sink::Parquet(parquet::arrow::ArrowWriter::try_new(
                    file,
                    Arc::clone(schema),
                    None,
                )?)
            }
            Output::File { path, .. } => {
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                Sink::Text(render::ResultWriter::new(
                    self.format,
                    schema,
                    Box::new(std::io::BufWriter::new(file)),
                ))
            }
        })
    }

    fn output_is_terminal(&self) -> bool {
        matches!(self.output, Output::Terminal)
    }

    /// Shows a result where the output goes, with its row count and time.
    fn show(&self, result: Collected, elapsed: Duration) -> anyhow::Result<()> {
        // One footer: how many rows (and how many of them shown), and the time.
        let shown: usize = result.batches.iter().map(|b| b.num_rows()).sum();
        let footer = {
            let rows = match result.rows {
                1 => "1 row".to_string(),
                n if shown < n && self.output_is_terminal() => format!(
                    "showing {} of {} rows",
                    render::group_digits(shown),
                    render::group_digits(n)
                ),
                n => format!("{} rows", render::group_digits(n)),
            };
            if self.timing {
                format!("{rows} ({:.3} s)", elapsed.as_secs_f64())
            } else {
                rows
            }
        };
        match &self.output {
            Output::Terminal => {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                if self.expanded {
                    out.write_all(
                        render::expanded(&result.schema, &result.batches, shown).as_bytes(),
                    )?;
                } else if self.format == Format::Table {
                    // A pseudo-terminal may report no width at all.
                    let width = terminal_size::terminal_size()
                        .map(|(w, _)| w.0 as usize)
                        .filter(|w| *w >= 20);
                    out.write_all(
                        render::table(&result.schema, &result.batches, shown, width).as_bytes(),
                    )?;
                }
                // Other formats were written as the rows came.
                if self.format == Format::Table || self.expanded {
                    writeln!(out, "{footer}")?;
                }
                out.flush()?;
            }
            Output::File { path, .. } => {
                eprintln!("{footer} written to {}", path.display());
            }
        }
        Ok(())
    }

    /// Runs a query of the shell's own (listing tables, describing one) and shows its result.
    fn internal_query(&mut self, runtime: &Runtime, sql: &str) -> anyhow::Result<usize> {
        let statements = strata_query::parser::parse(sql)?;
        let clock = Instant::now();
        let result = runtime.block_on(self.collect(&statements[0]))?;
        let rows = result.rows;
        if rows > 0 {
            self.show(result, clock.elapsed())?;
        }
        Ok(rows)
    }

    fn meta(&mut self, runtime: &Runtime, command: Meta) -> Next {
        self.try_meta(runtime, command).unwrap_or_else(|e| {
            eprintln!("error: {}", crate::render::error_text(&e));
            Next::Continue
        })
    }

    fn try_meta(&mut self, runtime: &Runtime, command: Meta) -> anyhow::Result<Next> {
        match command {
            Meta::Quit => return Ok(Next::Quit),
            Meta::Help => print!("{}", meta::HELP),
            Meta::Tables => {
                if self.internal_query(runtime, "SHOW TABLES IN DATABASE")? == 0 {
                    println!(
                        "no tables yet: CREATE TABLE, or `strata demo` for a sample warehouse"
                    );
                }
            }
            Meta::Schemas => {
                self.internal_query(
                    runtime,
                    "SELECT catalog_name AS database, schema_name AS schema \
                     FROM information_schema.schemata ORDER BY 1, 2",
                )?;
            }
            Meta::Describe(name) => self.describe(runtime, &name)?,
            Meta::Timing(on) => {
                self.timing = on.unwrap_or(!self.timing);
                println!("timing is {}", if self.timing { "on" } else { "off" });
            }
            Meta::Expanded(on) => {
                self.expanded = on.unwrap_or(!self.expanded);
                println!(
                    "expanded display is {}",
                    if self.expanded { "on" } else { "off" }
                );
            }
            Meta::Format(None) => println!("format is {:?}", self.format),
            Meta::Format(Some(name)) => {
                self.format = Format::parse(&name).with_context(|| {
                    format!("unknown format '{name}'; one of {}", Format::names())
                })?;
                println!("format is {name}");
            }
            Meta::Output(None) => {
                self.output = Output::Terminal;
                println!("results go to the terminal");
            }
            Meta::Output(Some(file)) => {
                let path = PathBuf::from(&file);
                let parquet = path.extension().is_some_and(|e| e == "parquet");
                if !parquet {
                    // Start the file afresh; each result is appended.
                    File::create(&path).with_context(|| format!("creating {file}"))?;
                }
                self.output = Output::File { path, parquet };
                if parquet {
                    println!("results go to {file} as Parquet (each result replaces the file)");
                } else {
                    println!("results go to {file}");
                }
            }
            Meta::Include(file) => {
                let text =
                    std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
                self.sql(runtime, &text)
                    .with_context(|| format!("in {file}"))?;
            }
        }
        Ok(Next::Continue)
    }

    /// `\d NAME`: the object NAME means in SQL (resolved as a statement would), its columns
    /// with their SQL types and keys, then its keys, checks, partitioning and definition.
    fn describe(&mut self, runtime: &Runtime, name: &str) -> anyhow::Result<()> {
        let statements = strata_query::parser::parse(&format!("DESCRIBE EXTENDED {name}"))?;
        let (_, batches) = runtime.block_on(self.backend.collect(&statements[0]))?;
        let mut properties = Vec::new();
        for batch in &batches {
            let text = |i: usize| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .cloned()
            };
            let (Some(property), Some(value)) = (text(0), text(1)) else {
                continue;
            };
            for row in 0..batch.num_rows() {
                properties.push((
                    property.value(row).to_string(),
                    value.value(row).to_string(),
                ));
            }
        }
        let get = |p: &str| {
            properties
                .iter()
                .find(|(name, _)| name == p)
                .map_or("", |(_, v)| v.as_str())
        };
        println!("{} {}", get("kind"), get("name"));
        self.internal_query(runtime, &format!("DESCRIBE {name}"))?;
        for (property, value) in &properties {
            if property != "name" && property != "kind" {
                println!("{property}: {value}");
            }
        }
        Ok(())
    }

    /// Reloads the names completion offers from `information_schema`.
    async fn refresh_names(&mut self) {
        let sql = "SELECT table_catalog, table_schema, table_name, column_name \
                   FROM information_schema.columns \
                   ORDER BY table_catalog, table_schema, table_name, ordinal_position";
        let Ok(statements) = strata_query::parser::parse(sql) else {
            return;
        };
        let Ok((_, batches)) = self.backend.collect(&statements[0]).await else {
            return;
        };
        let mut tables: Vec<TableNames> = Vec::new();
        for batch in &batches {
            let text = |i: usize| {
                arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8).map(|a| {
                    a.as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .cloned()
                })
            };
            let (Ok(Some(db)), Ok(Some(schema)), Ok(Some(table)), Ok(Some(column))) =
                (text(0), text(1), text(2), text(3))
            else {
                continue;
            };
            for row in 0..batch.num_rows() {
                let (d, s, t) = (db.value(row), schema.value(row), table.value(row));
                let same = tables
                    .last()
                    .is_some_and(|l| l.database == d && l.schema == s && l.name == t);
                if !same {
                    tables.push(TableNames {
                        database: d.to_string(),
                        schema: s.to_string(),
                        name: t.to_string(),
                        columns: Vec::new(),
                    });
                }
                if let Some(last) = tables.last_mut() {
                    last.columns.push(column.value(row).to_string());
                }
            }
        }
        self.names.write().expect("names lock").tables = tables;
    }
}
