//! `strata-bench`: the Star Schema Benchmark and TPC-H for Strata, with answer checks, run
//! the same way the peer engines of `../shared/bench/peers.py` are run.
//!
//! ```text
//!  gen   tpchgen ──► TPC-H Parquet ─┐                    (datagen: parallel, deterministic)
//!               └─► SSB Parquet ────┤  <data>/<suite>/sf<SF>/<table>.parquet  ◄── peers.py
//!  load  CREATE TABLE (schema/*.sql) + COPY INTO ──► warehouse      (runner::load)
//!  run   queries/<suite>/*.sql cold + hot ──► fingerprint ──► answers/<suite>-sf<SF>.json
//!  throughput  S concurrent permuted streams ──► queries per hour
//!        results ──► terminal table + benches/results/strata-<suite>-sf<SF>.json
//! ```
//!
//! Entry point: [`BenchArgs`] (the `strata bench` subcommand) and [`run`].

pub mod client;
pub mod datagen;
pub mod fingerprint;
pub mod runner;
pub mod suite;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use strata_query::{Warehouse, WarehouseOptions};

pub use suite::Suite;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Generate the suite's Parquet files (skipped when complete data exists).
    Gen,
    /// Generate if needed, then load the data into the warehouse.
    Load,
    /// Generate and load if needed, then run every query cold and hot and check the answers.
    Run,
    /// Generate and load if needed, then run concurrent query streams.
    Throughput,
    /// Generate and load if needed, then stream the rows of `--sql` through the embedded API
    /// and report rows/s and MB/s (the in-process baseline for Flight SQL clients).
    Stream,
}

/// `strata bench`: generate, load and query the SSB and TPC-H suites.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// gen, load, run or throughput.
    #[arg(value_enum)]
    pub action: Action,

    /// The suite: ssb or tpch.
    #[arg(long, value_enum, default_value = "ssb")]
    pub suite: Suite,

    /// Scale factor (1 = 6M lineitem / lineorder rows).
    #[arg(long, default_value_t = 1.0)]
    pub sf: f64,

    /// Where generated data lives (default $WHBENCH_DATA or ~/.cache/strata-bench, the
    /// folder the peer harness reads).
    #[arg(long, env = "WHBENCH_DATA")]
    pub data: Option<PathBuf>,

    /// Warehouse to load into and query (default <data>/strata/<suite>-sf<SF>).
    #[arg(long)]
    pub warehouse: Option<String>,

    /// With `gen`: regenerate the data even if it exists; otherwise: reload the tables.
    #[arg(long)]
    pub force: bool,

    /// Hot runs per query (after the cold run).
    #[arg(long, default_value_t = 3)]
    pub hot: usize,

    /// Only these queries, comma-separated (e.g. q1.1,q2.1).
    #[arg(long)]
    pub queries: Option<String>,

    /// Memory all queries may hold together (e.g. 2GiB); spilling operators spill beyond it.
    #[arg(long, value_parser = strata_query::parse_byte_size)]
    pub memory_limit: Option<usize>,

    /// Memory for decoded columns of hot data files (e.g. 4GiB; 0 turns the cache off)
    /// [default: a quarter of the machine's memory].
    #[arg(long, value_parser = strata_query::parse_byte_size)]
    pub scan_cache: Option<usize>,

    /// Concurrent streams for `throughput`.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,

    /// Folder of reference answers (<suite>-sf<SF>.json).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/answers"))]
    pub answers: PathBuf,

    /// With `throughput`: run the streams through this `strata serve` server
    /// (grpc://host:port) instead of the embedded API; the password comes from
    /// STRATA_PASSWORD. The server must serve the same warehouse.
    #[arg(long)]
    pub flight: Option<String>,

    /// User for --flight.
    #[arg(long, default_value = "strata")]
    pub flight_user: String,

    /// The query of `stream`.
    #[arg(long)]
    pub sql: Option<String>,

    /// A session setting for every query, `name=value` (repeatable), e.g.
    /// `--set datafusion.execution.batch_size=16384` or `--set strata.late_materialization=false`.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,

    /// The cluster to run the queries on (`strata --cluster df://host:port bench ...`); loads
    /// stay in this process.
    #[arg(skip)]
    pub cluster: Option<String>,

    /// Folder the JSON results are written to.
    #[arg(long, default_value = "benches/results")]
    pub results: PathBuf,
}

/// `name=value` as a setting.
fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

impl BenchArgs {
    fn data_root(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/strata-bench")
        })
    }

    fn warehouse(&self) -> String {
        self.warehouse.clone().unwrap_or_else(|| {
            self.data_root()
                .join("strata")
                .join(format!("{}-sf{}", self.suite.name(), self.sf))
                .display()
                .to_string()
        })
    }
}

/// The machine a result was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub peak_rss_mib: f64,
}

fn proc_field(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn kib(value: Option<String>) -> f64 {
    value
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// Describes this machine, and this process's peak resident memory so far.
pub fn host() -> Host {
    Host {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: proc_field("/proc/cpuinfo", "model name").unwrap_or_default(),
        memory_gib: kib(proc_field("/proc/meminfo", "MemTotal")) / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        peak_rss_mib: kib(proc_field("/proc/self/status", "VmHWM")) / 1024.0,
    }
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs `strata bench`. Progress and tables go to stdout; a wrong answer is an error.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let root = args.data_root();
    let (suite, sf) = (args.suite, args.sf);
    let started = std::time::Instant::now();
    let manifest = {
        let (root, force) = (root.clone(), args.force && args.action == Action::Gen);
        tokio::task::spawn_blocking(move || datagen::generate(&root, suite, sf, force)).await??
    };
    let data_dir = datagen::data_dir(&root, suite, sf);
    if args.action == Action::Gen {
        println!("{} SF {sf} in {}", suite.name(), data_dir.display());
        for t in &manifest.tables {
            println!(
                "{:>10} {:>12} rows {:>9.1} MB {:>7.2} s",
                t.name,
                t.rows,
                t.bytes as f64 / 1e6,
                t.seconds
            );
        }
        println!("total {:.1} s", started.elapsed().as_secs_f64());
        return Ok(());
    }

    let location = args.warehouse();
    let options = WarehouseOptions {
        memory_limit: args.memory_limit,
        scan_cache_bytes: args
            .scan_cache
            .unwrap_or_else(strata_query::default_scan_cache_bytes),
        settings: args.settings.clone(),
        cluster: args.cluster.clone(),
        ..WarehouseOptions::default()
    };
    let warehouse = Warehouse::open_with(&location, options.clone())
        .await
        .with_context(|| format!("opening warehouse {location}"))?;
    let expected: Vec<(String, u64)> = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.rows))
        .collect();
    let loads = runner::load(&warehouse, suite, &data_dir, &expected, args.force).await?;
    if !loads.is_empty() {
        println!("loaded {} SF {sf} into {location}", suite.name());
        for l in &loads {
            println!(
                "{:>10} {:>12} rows {:>7.2} s {:>12.0} rows/s",
                l.table, l.rows, l.seconds, l.rows_per_second
            );
        }
        let rows: u64 = loads.iter().map(|l| l.rows).sum();
        let seconds: f64 = loads.iter().map(|l| l.seconds).sum();
        println!(
            "{:>10} {rows:>12} rows {seconds:>7.2} s {:>12.0} rows/s",
            "total",
            rows as f64 / seconds.max(1e-9)
        );
    }
    drop(warehouse);
    let versions = json!({
        "strata": env!("CARGO_PKG_VERSION"),
        "datafusion": datafusion::DATAFUSION_VERSION,
    });
    let arguments = json!({
        "action": format!("{:?}", args.action).to_lowercase(),
        "suite": suite.name(), "sf": sf, "hot": args.hot, "queries": args.queries,
        "streams": args.streams, "warehouse": location, "data": data_dir,
        "memory_limit": args.memory_limit,
        "scan_cache": options.scan_cache_bytes,
        "settings": args.settings.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>(),
    });

    match args.action {
        Action::Gen | Action::Load => Ok(()),
        Action::Stream => {
            let sql = args
                .sql
                .as_deref()
                .context("`strata bench stream` needs --sql")?;
            let warehouse = Warehouse::open_with(&location, options).await?;
            runner::stream(&warehouse, sql, args.hot).await.map(drop)
        }
        Action::Run => {
            let queries = suite.select_queries(args.queries.as_deref())?;
            let answers = suite::load_answers(&args.answers, suite, sf)?;
            if answers.is_none() {
                println!(
                    "note: no reference answers for {} SF {sf} in {}; answers are not checked",
                    suite.name(),
                    args.answers.display()
                );
            }
            println!("# strata {} sf{sf} hot={}", suite.name(), args.hot);
            println!(
                "{:8} {:>8} {:>9} {:>10}  check",
                "query", "rows", "cold_s", "hot_med_s"
            );
            let runs = runner::run_queries(
                &location,
                &options,
                &queries,
                args.hot,
                answers.as_ref(),
                |r| {
                    println!(
                        "{:8} {:>8} {:>9.3} {:>10.3}  {}",
                        r.query, r.rows, r.cold_s, r.median_hot_s, r.check
                    );
                },
            )
            .await?;
            let hot: Vec<f64> = runs.iter().map(|r| r.median_hot_s).collect();
            let cold: Vec<f64> = runs.iter().map(|r| r.cold_s).collect();
            let geomean = runner::geomean(&hot);
            println!(
                "{:8} {:>8} {:>9.3} {:>10.3}",
                "geomean",
                "",
                runner::geomean(&cold),
                geomean
            );
            let wrong: Vec<String> = runs
                .iter()
                .filter(|r| r.check != "ok" && r.check != "unchecked")
                .map(|r| format!("{}: {}", r.query, r.check))
                .collect();
            let doc = json!({
                "engine": "strata",
                "engine_version": versions,
                "suite": suite.name(), "sf": sf, "layout": "flat",
                "threads": host().cpus, "hot_runs": args.hot,
                "geomean_hot_s": geomean, "geomean_cold_s": runner::geomean(&cold),
                "ok": runs.len(), "total": runs.len(),
                "sum_hot_s": hot.iter().sum::<f64>(),
                "answers": answers.as_ref().map(|a| a.source.clone()),
                "wrong_answers": wrong,
                "load": loads,
                "arguments": arguments,
                "host": host(),
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "queries": runs,
            });
            let path = write_json(
                &args.results,
                &format!("strata-{}-sf{sf}.json", suite.name()),
                &doc,
            )?;
            println!("wrote {}", path.display());
            anyhow::ensure!(wrong.is_empty(), "wrong answers: {}", wrong.join("; "));
            Ok(())
        }
        Action::Throughput => {
            let queries = suite.select_queries(args.queries.as_deref())?;
            let flight = args.flight.as_ref().map(|uri| client::FlightTarget {
                uri: uri.clone(),
                user: args.flight_user.clone(),
                password: std::env::var("STRATA_PASSWORD").unwrap_or_default(),
            });
            let t =
                runner::throughput(&location, &options, &queries, args.streams, flight.as_ref())
                    .await?;
            let engine = if flight.is_some() {
                "strata-server"
            } else {
                "strata"
            };
            println!(
                "{engine} {} sf{sf}: {} streams, {} queries in {:.1} s -> {:.0} queries/hour \
                 (one serial pass: {:.1} s = {:.0} queries/hour)",
                suite.name(),
                t.streams,
                t.queries_completed,
                t.elapsed_s,
                t.queries_per_hour,
                t.single_stream_pass_s,
                queries.len() as f64 * 3600.0 / t.single_stream_pass_s
            );
            let doc = json!({
                "engine": engine, "engine_version": versions,
                "suite": suite.name(), "sf": sf,
                "arguments": arguments, "host": host(),
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "throughput": t,
            });
            let path = write_json(
                &args.results,
                &format!("throughput-{engine}-{}-sf{sf}.json", suite.name()),
                &doc,
            )?;
            println!("wrote {}", path.display());
            Ok(())
        }
    }
}
