//! The `strata` binary: run SQL against an embedded warehouse.
//!
//! ```text
//! strata [--warehouse URL]                   interactive shell (on a terminal)
//! strata --remote grpc://host:port            the same on a `strata serve` server
//! strata [--warehouse URL] -c "SQL; SQL"     statements from the command line
//! strata [--warehouse URL] -f script.sql     statements from a file
//! echo "SELECT 1" | strata                   statements from stdin
//! strata init PATH                           create an empty warehouse
//! strata demo [DIR]                           a sample star-schema warehouse, then the shell
//! strata bench run --suite ssb --sf 1        benchmarks (see BENCHMARKS.md)
//! strata serve [--listen 127.0.0.1:32010]     Arrow Flight SQL server (see strata-server)
//! strata cluster scheduler | executor         processes of a Ballista cluster; `--cluster
//!                                             df://host:port` runs large queries there
//! strata hash-password                        argon2 hash and SCRAM verifier of a password (stdin)
//! ```
//! Results go to stdout (`--format table|csv|tsv|json|ndjson|markdown`), errors to stderr
//! with exit code 1.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use backend::Backend;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use render::Format;
use strata_query::{Warehouse, WarehouseOptions};

mod allocator;
mod backend;
mod demo;
mod logging;
mod render;
mod serve;
mod shell;

/// Strata: a columnar data warehouse engine.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
struct Args {
    /// Warehouse root: a directory, file:///path or memory://.
    #[arg(
        long,
        short = 'w',
        env = "STRATA_WAREHOUSE",
        default_value = "./warehouse"
    )]
    warehouse: String,

    /// A `strata serve` server to run statements on instead of a local warehouse:
    /// grpc://host:port or grpc+tls://host:port. The password comes from STRATA_PASSWORD or
    /// is asked for on the terminal.
    #[arg(long, env = "STRATA_REMOTE")]
    remote: Option<String>,

    /// User to sign in as on the --remote server.
    #[arg(long, env = "STRATA_USER", default_value = strata_server::auth::DEFAULT_USER)]
    user: String,

    /// PEM certificate (or CA) to trust for a grpc+tls:// server.
    #[arg(long)]
    tls_ca: Option<PathBuf>,

    /// SQL to run (several statements separated by `;`).
    #[arg(long, short = 'c', conflicts_with = "file")]
    command: Option<String>,

    /// File of SQL statements to run.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,

    /// Output format of results.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,

    /// Memory the process may use (e.g. 2GiB): queries, the scan cache and metadata together.
    /// The scan cache gives memory back to queries; sorts, aggregations and joins that can
    /// spill go to disk beyond it.
    #[arg(long, env = "STRATA_MEMORY_LIMIT", value_parser = strata_query::parse_byte_size)]
    memory_limit: Option<usize>,

    /// Memory for decoded columns of hot data files (e.g. 4GiB; 0 turns the cache off), within
    /// --memory-limit when one is set [default: a quarter of the machine's memory].
    #[arg(long, env = "STRATA_SCAN_CACHE", value_parser = strata_query::parse_byte_size)]
    scan_cache: Option<usize>,

    /// A setting for every session, as `SET` takes it: `--set strata.auto_compact_min_files=0`
    /// (repeatable).
    #[arg(long = "set", global = true, value_name = "NAME=VALUE", value_parser = setting)]
    settings: Vec<(String, String)>,

    /// A cluster to run large queries on: `df://host:port` of a `strata cluster scheduler`.
    /// Planning, small queries (`strata.cluster_min_files`) and all writes stay here.
    #[arg(long, env = "STRATA_CLUSTER", global = true)]
    cluster: Option<String>,

    /// Log filter, e.g. `info` or `strata_query=debug`.
    #[arg(long, env = "STRATA_LOG", default_value = "warn")]
    log_filter: String,

    /// Log lines as `text`, or as `json` objects (one per line, with the statement's
    /// `query_id` on every line logged while a statement runs).
    #[arg(long, env = "STRATA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command_name: Option<Command>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a small star-schema warehouse (partitioned facts, dimensions, SCD Type 2, a
    /// materialized view), print example queries and open the shell on it.
    Demo {
        /// Where the demo warehouse goes; an existing demo is opened as it is.
        #[arg(default_value = "strata-demo")]
        location: String,
    },
    /// Star Schema Benchmark and TPC-H: generate data, load it, run queries with answer checks.
    Bench(strata_bench::BenchArgs),
    /// Serve the warehouse to Arrow Flight SQL clients (ADBC, JDBC, pyarrow).
    Serve(serve::ServeArgs),
    /// Print the `password_hash` (argon2) and `scram_sha_256` lines of a strata.toml user for a
    /// password read from stdin.
    HashPassword,
    /// Run a process of a Ballista cluster: the scheduler, or an executor.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Create an empty warehouse at PATH (a directory, file:// or s3:// URL).
    Init {
        /// Where the warehouse goes.
        path: String,
    },
}

/// The processes of a cluster (see `strata_query::cluster`).
#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The scheduler: splits plans into stages and hands their tasks to executors.
    Scheduler {
        /// Address to listen on (loopback by default: the cluster's ports carry no
        /// authentication).
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: std::net::SocketAddr,
    },
    /// An executor: runs tasks, reading the warehouse's files from the shared store with its
    /// own credentials (`AWS_*` for S3).
    Executor {
        /// The scheduler's address.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: std::net::SocketAddr,
        /// Address to listen on; port 0 takes free ports.
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: std::net::SocketAddr,
        /// Tasks run at once (0: one per core).
        #[arg(long, default_value_t = 0)]
        concurrent_tasks: usize,
        /// Where shuffle files go [default: a temporary directory].
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Reach the warehouse's store with this named secret (keys, endpoint, region) instead
        /// of the `AWS_*` environment alone: `<secrets-dir>/<name>.json`, in the form
        /// `CREATE SECRET` stores under a warehouse's `_secrets/`.
        #[arg(long)]
        secret: Option<String>,
        /// Where named secrets are kept [default: ~/.strata/secrets].
        #[arg(long, env = "STRATA_SECRETS_DIR")]
        secrets_dir: Option<PathBuf>,
    },
}

/// Runs a cluster process until it is stopped; prints the address it listens on first.
async fn cluster(command: ClusterCommand) -> anyhow::Result<()> {
    use strata_query::cluster::processes;
    let announce = |what: &'static str| {
        move |address: std::net::SocketAddr| {
            println!("{what} listening on {address}");
            let _ = std::io::stdout().flush();
        }
    };
    match command {
        ClusterCommand::Scheduler { bind } => {
            processes::run_scheduler(bind, announce("scheduler")).await?
        }
        ClusterCommand::Executor {
            scheduler,
            bind,
            concurrent_tasks,
            work_dir,
            secret,
            secrets_dir,
        } => {
            let secrets_dir = secrets_dir
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| Path::new(&home).join(".strata/secrets"))
                })
                .unwrap_or_else(|| PathBuf::from(".strata/secrets"));
            let options = processes::ExecutorOptions {
                scheduler,
                bind,
                concurrent_tasks,
                work_dir,
                secret,
                secrets_dir,
            };
            processes::run_executor(options, announce("executor")).await?
        }
    }
    Ok(())
}

fn options(args: &Args) -> WarehouseOptions {
    WarehouseOptions {
        memory_limit: args.memory_limit,
        scan_cache_bytes: args
            .scan_cache
            .unwrap_or_else(strata_query::default_scan_cache_bytes),
        settings: args.settings.clone(),
        cluster: args.cluster.clone(),
        ..WarehouseOptions::default()
    }
}

/// `name=value`, for `--set`.
fn setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("'{text}' is not NAME=VALUE")),
    }
}

/// Whether the arguments ask for the interactive shell: no SQL, no subcommand, a terminal.
fn wants_shell(args: &Args) -> bool {
    args.command.is_none()
        && args.file.is_none()
        && args.command_name.is_none()
        && std::io::stdin().is_terminal()
}

/// Where statements run: the `--remote` server, else the `--warehouse` opened here.
async fn backend(args: &Args) -> anyhow::Result<Backend> {
    let Some(url) = &args.remote else {
        let warehouse = Warehouse::open_with(&args.warehouse, options(args))
            .await
            .with_context(|| format!("opening warehouse {}", args.warehouse))?;
        return Ok(Backend::Local(Box::new(warehouse.session())));
    };
    let password = match std::env::var("STRATA_PASSWORD") {
        Ok(password) => Some(password),
        Err(_) if std::io::stdin().is_terminal() => Some(backend::read_password(&format!(
            "Password for {} (Enter for none): ",
            args.user
        ))?),
        Err(_) => None,
    };
    let remote = backend::Remote::connect(backend::RemoteOptions {
        url,
        user: &args.user,
        password,
        tls_ca: args.tls_ca.as_deref(),
    })
    .await?;
    Ok(Backend::Remote(Box::new(remote)))
}

/// `strata demo`: builds the demo warehouse, shows the example queries, opens the shell (on a
/// terminal).
fn demo(runtime: &tokio::runtime::Runtime, args: &Args, location: &str) -> anyhow::Result<()> {
    let warehouse = runtime
        .block_on(Warehouse::open_with(location, options(args)))
        .with_context(|| format!("opening warehouse {location}"))?;
    runtime.block_on(demo::build(&warehouse))?;
    println!(
        "\nTry these (or \\d to list the tables):\n\n{}",
        demo::EXAMPLES
    );
    if std::io::stdin().is_terminal() {
        shell::run(runtime, Backend::Local(Box::new(warehouse.session())))?;
    }
    Ok(())
}

/// A subcommand other than `demo`, or the statements of `-c`, `-f` or stdin.
async fn run(mut args: Args) -> anyhow::Result<()> {
    let options = options(&args);
    match args.command_name.take() {
        Some(Command::Bench(mut bench)) => {
            bench.cluster = args.cluster.clone();
            bench.settings.extend(args.settings.iter().cloned());
            return strata_bench::run(bench).await;
        }
        Some(Command::Serve(serve)) => {
            return serve::run(&args.warehouse, options, serve).await;
        }
        Some(Command::Cluster(command)) => return cluster(command).await,
        Some(Command::HashPassword) => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "no password on stdin");
            // Both lines of a `[[users]]` entry: the argon2 hash (Flight, HTTP, PostgreSQL over
            // TLS) and the SCRAM-SHA-256 verifier PostgreSQL clients sign in against.
            println!(
                "password_hash = \"{}\"\nscram_sha_256 = \"{}\"",
                strata_server::auth::hash_password(password)?,
                strata_server::auth::scram::ScramVerifier::new(password)
            );
            return Ok(());
        }
        Some(Command::Init { path }) => {
            if Warehouse::exists(&path).await? {
                println!("{path} is a warehouse already");
            } else {
                Warehouse::open_with(&path, options)
                    .await
                    .with_context(|| format!("creating warehouse {path}"))?;
                println!("created warehouse {path}");
            }
            return Ok(());
        }
        Some(Command::Demo { .. }) | None => {}
    }
    let sql = match (&args.command, &args.file) {
        (Some(c), _) => c.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let statements = strata_query::parser::parse(&sql)?;
    // Only queries, and no warehouse there: most likely a mistyped path. Creating an empty
    // warehouse would answer "table not found" about the wrong place. (A `memory://`
    // warehouse is always new: there is no path to mistype.)
    if args.remote.is_none()
        && !args.warehouse.starts_with("memory://")
        && statements.iter().all(strata_query::Session::is_query)
        && !Warehouse::exists(&args.warehouse).await?
    {
        anyhow::bail!(
            "no warehouse at {}: create one with `strata init {}`, or run a statement that \
             creates something there",
            args.warehouse,
            args.warehouse
        );
    }
    let mut backend = backend(&args).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for statement in statements {
        // Each result is written as it streams in, never held whole.
        let (schema, mut rows) = backend.run(&statement).await?;
        let mut writer = render::ResultWriter::new(args.format, &schema, Box::new(&mut out));
        while let Some(batch) = rows.next().await {
            writer.write(&batch?)?;
        }
        writer.finish()?;
        out.flush()?;
    }
    Ok(())
}

fn main() -> ExitCode {
    allocator::configure();
    let args = Args::parse();
    logging::init(&args.log_filter, matches!(args.log_format, LogFormat::Json));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = if let Some(Command::Demo { location }) = &args.command_name {
        demo(&runtime, &args, location)
    } else if wants_shell(&args) {
        runtime
            .block_on(backend(&args))
            .and_then(|backend| shell::run(&runtime, backend))
    } else {
        runtime.block_on(run(args))
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render::error_text(&e));
            ExitCode::FAILURE
        }
    }
}
