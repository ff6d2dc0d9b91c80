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
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use strata_storage::LineageEdge;

use crate::catalog::materialized_view;
use crate::catalog::views::{parse_query, upstream};
use crate::error::Result;
use crate::warehouse::Warehouse;

/// Every direct edge: recorded ones, views' and materialized views' definitions.
pub(crate) async fn edges(warehouse: &Warehouse) -> Result<BTreeSet<LineageEdge>> {
    let catalog = warehouse.refresh_catalog().await?;
    let mut out: BTreeSet<LineageEdge> = warehouse
        .records()
        .read_all::<LineageEdge>()
        .await?
        .into_iter()
        .collect();
    for (db, d) in &catalog.databases {
        for (schema, s) in &d.schemas {
            for (name, view) in &s.views {
                for upstream in &view.upstream {
                    out.insert(LineageEdge {
                        upstream: upstream.clone(),
                        downstream: format!("{db}.{schema}.{name}"),
                        via: "VIEW".into(),
                    });
                }
            }
        }
    }
    for (name, definition, _) in materialized_view::list(warehouse).await? {
        let Ok(SqlStatement::Query(query)) = parse_query(&definition.query) else {
            continue;
        };
        for upstream in upstream(&query, &definition.database, &definition.schema, &catalog) {
            out.insert(LineageEdge {
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
    let mut downstream_of: BTreeMap<&str, Vec<&LineageEdge>> = BTreeMap::new();
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
