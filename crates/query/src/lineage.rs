//! Lineage: which tables feed which, and `system.lineage`, in both directions and transitively.
//!
//! Views and materialized views carry their upstream tables in their definitions. Statements
//! that copy data from one table into another (`CREATE TABLE AS SELECT`, `INSERT ... SELECT`,
//! `MERGE`, `APPLY CHANGES`) record an edge when they succeed, as one small JSON object per
//! distinct (upstream, downstream, via) under `_system/lineage/`, so repeating a load adds
//! nothing. `system.lineage` joins both and follows the edges: a row for every pair of objects
//! connected by a path, with its length and the path itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::sql::sqlparser::ast::{
    ObjectName, Query, SetExpr, Statement as SqlStatement, TableFactor, TableObject,
};
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use strata_storage::CatalogState;
use strata_storage::store::paths;

use crate::error::Result;
use crate::parser::Statement;
use crate::session::Session;
use crate::warehouse::Warehouse;

const LINEAGE: &str = "lineage";

/// One recorded edge: rows of `upstream` went into `downstream` through `via`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Edge {
    pub upstream: String,
    pub downstream: String,
    pub via: String,
}

/// Records the edges of a statement that succeeded, if it copies rows between tables.
pub(crate) async fn record_statement(session: &Session, statement: &Statement) {
    let edges = match edges_of(session, statement) {
        Ok(edges) => edges,
        Err(e) => {
            tracing::warn!(error = %e, "lineage not recorded");
            return;
        }
    };
    for edge in edges {
        record(session.warehouse(), &edge).await;
    }
}

fn edges_of(session: &Session, statement: &Statement) -> Result<Vec<Edge>> {
    let catalog = session.warehouse().catalog();
    let (db, schema) = session.current_schema();
    let upstream = |node: &dyn UpstreamOf| node.upstream(db, schema, &catalog);
    let (target, upstream, via): (&ObjectName, Vec<String>, &str) = match statement {
        Statement::Sql(s) => match s.as_ref() {
            SqlStatement::CreateTable(c) => match &c.query {
                Some(q) => (&c.name, upstream(q.as_ref()), "CREATE TABLE AS SELECT"),
                None => return Ok(Vec::new()),
            },
            SqlStatement::Insert(insert) => match (&insert.source, &insert.table) {
                (Some(q), TableObject::TableName(name))
                    if !matches!(q.body.as_ref(), SetExpr::Values(_)) =>
                {
                    (name, upstream(q.as_ref()), "INSERT ... SELECT")
                }
                _ => return Ok(Vec::new()),
            },
            SqlStatement::Merge(merge) => match &merge.table {
                TableFactor::Table { name, .. } => (name, upstream(s.as_ref()), "MERGE"),
                _ => return Ok(Vec::new()),
            },
            _ => return Ok(Vec::new()),
        },
        Statement::CreatePartitioned { create, .. } => match create.as_ref() {
            SqlStatement::CreateTable(c) => match &c.query {
                Some(q) => (&c.name, upstream(q.as_ref()), "CREATE TABLE AS SELECT"),
                None => return Ok(Vec::new()),
            },
            _ => return Ok(Vec::new()),
        },
        Statement::ApplyChanges(apply) => (
            &apply.target,
            upstream(apply.source.as_ref()),
            "APPLY CHANGES",
        ),
        _ => return Ok(Vec::new()),
    };
    let (d, s, t) = session.qualify_table(target)?;
    let downstream = format!("{d}.{s}.{t}");
    Ok(upstream
        .into_iter()
        .filter(|u| *u != downstream)
        .map(|upstream| Edge {
            upstream,
            downstream: downstream.clone(),
            via: via.to_string(),
        })
        .collect())
}

/// Queries and statements whose relations can be listed (sqlparser's `Visit` is generic, so
/// not object-safe).
trait UpstreamOf {
    fn upstream(&self, database: &str, schema: &str, catalog: &CatalogState) -> Vec<String>;
}

impl UpstreamOf for Query {
    fn upstream(&self, database: &str, schema: &str, catalog: &CatalogState) -> Vec<String> {
        crate::views::upstream(self, database, schema, catalog)
    }
}

impl UpstreamOf for SqlStatement {
    fn upstream(&self, database: &str, schema: &str, catalog: &CatalogState) -> Vec<String> {
        crate::views::upstream(self, database, schema, catalog)
    }
}

async fn record(warehouse: &Warehouse, edge: &Edge) {
    let key = format!("{}\n{}\n{}", edge.upstream, edge.downstream, edge.via);
    let path = paths::system_record(LINEAGE, "edges", &format!("{:016x}", fnv1a(&key)));
    let body = serde_json::to_vec(edge).expect("lineage edge serialises");
    if let Err(e) = warehouse
        .object_store()
        .put(&path, PutPayload::from(body))
        .await
    {
        tracing::warn!(error = %e, "lineage not recorded");
    }
}

/// FNV-1a: a stable digest (the same edge always lands in the same file; the same plan has the
/// same fingerprint).
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every direct edge: recorded ones, views' and materialized views' definitions.
pub(crate) async fn edges(warehouse: &Warehouse) -> Result<BTreeSet<Edge>> {
    let catalog = warehouse.refresh_catalog().await?;
    let mut out: BTreeSet<Edge> = crate::system::read_records::<Edge>(warehouse, LINEAGE)
        .await?
        .into_iter()
        .collect();
    for (db, d) in &catalog.databases {
        for (schema, s) in &d.schemas {
            for (name, view) in &s.views {
                for upstream in &view.upstream {
                    out.insert(Edge {
                        upstream: upstream.clone(),
                        downstream: format!("{db}.{schema}.{name}"),
                        via: "VIEW".into(),
                    });
                }
            }
        }
    }
    for (name, definition, _) in crate::mv::list(warehouse).await? {
        let Ok(SqlStatement::Query(query)) = crate::views::parse_query(&definition.query) else {
            continue;
        };
        for upstream in
            crate::views::upstream(&query, &definition.database, &definition.schema, &catalog)
        {
            out.insert(Edge {
                upstream,
                downstream: name.join("."),
                via: "MATERIALIZED VIEW".into(),
            });
        }
    }
    Ok(out)
}

/// `system.lineage`: one row per pair of objects joined by a path of edges.
pub(crate) async fn system_table(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let edges = edges(warehouse).await?;
    let mut downstream_of: BTreeMap<&str, Vec<&Edge>> = BTreeMap::new();
    for e in &edges {
        downstream_of
            .entry(e.upstream.as_str())
            .or_default()
            .push(e);
    }
    // Breadth first from each object: the shortest path to everything downstream of it.
    let mut rows: Vec<(String, String, String, i64, String)> = Vec::new();
    for start in downstream_of.keys() {
        let mut seen = BTreeSet::from([*start]);
        let mut queue: VecDeque<(&str, i64, String)> =
            VecDeque::from([(*start, 0, start.to_string())]);
        while let Some((node, depth, path)) = queue.pop_front() {
            for edge in downstream_of.get(node).into_iter().flatten() {
                if !seen.insert(edge.downstream.as_str()) {
                    continue;
                }
                let path = format!("{path} -> {}", edge.downstream);
                rows.push((
                    start.to_string(),
                    edge.downstream.clone(),
                    edge.via.clone(),
                    depth + 1,
                    path.clone(),
                ));
                queue.push_back((edge.downstream.as_str(), depth + 1, path));
            }
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("upstream", DataType::Utf8, false),
        Field::new("downstream", DataType::Utf8, false),
        Field::new("via", DataType::Utf8, false),
        Field::new("depth", DataType::Int64, false),
        Field::new("path", DataType::Utf8, false),
    ]));
    let text = |f: fn(&(String, String, String, i64, String)) -> &str| {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        text(|r| &r.0),
        text(|r| &r.1),
        text(|r| &r.2),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        text(|r| &r.4),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
