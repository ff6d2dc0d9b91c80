//! `Planner`: how the catalog plans stored SQL without naming the session layer above it.
//!
//! A view is its query text, planned again each time a statement reads it; a materialized
//! view is stale when its query, planned now, no longer matches the plan its rows were computed
//! with. Both need a SQL planner, which is the session's. The catalog asks for one through this
//! trait and the session layer implements it (the pattern of InfluxDB 3's
//! `influxdb3_internal_api`), so dependencies keep pointing down.

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::error::Result;
use crate::warehouse::Warehouse;

/// Plans stored SQL.
#[async_trait]
pub(crate) trait Planner: Send + Sync + std::fmt::Debug {
    /// The plan of `query` as written (no materialized view read in place of its aggregates),
    /// with its unqualified names resolved in `database.schema` of `warehouse`.
    async fn plan_stored(
        &self,
        warehouse: &Warehouse,
        database: &str,
        schema: &str,
        query: SqlStatement,
    ) -> Result<LogicalPlan>;
}
