//! The plan step of every statement DataFusion runs: plan as written (the session's), then read
//! fresh materialized views in place of aggregates they hold ([`crate::mv::rewrite`]).

use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::error::Result;
use crate::session::Session;

impl Session {
    /// The logical plan of a statement DataFusion runs, with parameters bound. Aggregates that
    /// a fresh materialized view holds are read from the view.
    pub(crate) async fn plan(
        &self,
        statement: SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<LogicalPlan> {
        let plan = self.plan_raw(statement, params).await?;
        crate::mv::rewrite::rewrite(self, plan).await
    }
}
