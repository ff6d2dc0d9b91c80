//! The two suites: their tables, their DDL (`schema/*.sql`), their query texts (`queries/`,
//! copied from `../shared/bench/`) and the reference answers recorded for them (`answers/`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::fingerprint::Answer;

/// A benchmark suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// Star Schema Benchmark: lineorder plus four dimensions, 13 queries.
    Ssb,
    /// TPC-H: eight tables, 22 queries.
    Tpch,
}

/// One benchmark query.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! queries {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(Query {
            name: $name,
            sql: include_str!(concat!("../queries/", $dir, "/", $name, ".sql")),
        }),*]
    };
}

const SSB_QUERIES: &[Query] = queries!("ssb":
    "q1.1", "q1.2", "q1.3", "q2.1", "q2.2", "q2.3", "q3.1", "q3.2", "q3.3", "q3.4",
    "q4.1", "q4.2", "q4.3");

const TPCH_QUERIES: &[Query] = queries!("tpch":
    "q01", "q02", "q03", "q04", "q05", "q06", "q07", "q08", "q09", "q10", "q11",
    "q12", "q13", "q14", "q15", "q16", "q17", "q18", "q19", "q20", "q21", "q22");

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::Ssb => "ssb",
            Suite::Tpch => "tpch",
        }
    }

    /// Tables, in load order.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Suite::Ssb => &["dwdate", "supplier", "customer", "part", "lineorder"],
            Suite::Tpch => &[
                "nation", "region", "part", "supplier", "partsupp", "customer", "orders",
                "lineitem",
            ],
        }
    }

    /// `CREATE TABLE` statements for every table.
    pub fn schema_sql(self) -> &'static str {
        match self {
            Suite::Ssb => include_str!("../schema/ssb.sql"),
            Suite::Tpch => include_str!("../schema/tpch.sql"),
        }
    }

    pub fn queries(self) -> &'static [Query] {
        match self {
            Suite::Ssb => SSB_QUERIES,
            Suite::Tpch => TPCH_QUERIES,
        }
    }

    /// The queries named in `only` (comma-separated), or all of them.
    pub fn select_queries(self, only: Option<&str>) -> anyhow::Result<Vec<Query>> {
        let all = self.queries();
        let Some(only) = only else {
            return Ok(all.to_vec());
        };
        only.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|name| {
                all.iter()
                    .find(|q| q.name == name)
                    .copied()
                    .with_context(|| {
                        let names: Vec<_> = all.iter().map(|q| q.name).collect();
                        format!(
                            "no {} query named '{name}'; the queries are {}",
                            self.name(),
                            names.join(", ")
                        )
                    })
            })
            .collect()
    }
}

/// Reference answers of one suite at one scale factor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answers {
    /// Which engine recorded them, on which data.
    pub source: String,
    pub queries: BTreeMap<String, Answer>,
}

/// The reference answers for `suite` at `sf` in `dir` (`<suite>-sf<sf>.json`), if recorded.
pub fn load_answers(dir: &Path, suite: Suite, sf: f64) -> anyhow::Result<Option<Answers>> {
    let path = dir.join(format!("{}-sf{sf}.json", suite.name()));
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
