//! Reading an SCD Type 2 table as of a time: `dim FOR SYSTEM_TIME AS OF '...'` is the versions
//! valid then, as a view over the table.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::common::ScalarValue;
use datafusion::datasource::ViewTable;
use datafusion::logical_expr::{LogicalPlanBuilder, col, lit};

use crate::error::{Error, Result};
use crate::table::StrataTable;

use crate::table::scd::{EFFECTIVE_DATE, END_DATE, Layout, MICROS_PER_DAY, ScdSpec};

/// `dim FOR SYSTEM_TIME AS OF '...'` on an SCD Type 2 table: the versions valid at `micros`
/// (`effective_date <= t < end_date`), as a view over the table.
pub(crate) fn valid_at(table: StrataTable, micros: i64) -> Result<Arc<dyn TableProvider>> {
    let spec = ScdSpec::of(&table.snapshot().metadata)
        .ok_or_else(|| Error::Plan(format!("{} is not an SCD Type 2 table", table.name())))?;
    let layout = Layout::new(&spec, table.snapshot().metadata.schema())?;
    let at = match layout.validity_type() {
        DataType::Date32 => ScalarValue::Date32(Some(micros.div_euclid(MICROS_PER_DAY) as i32)),
        DataType::Timestamp(_, tz) => ScalarValue::TimestampMicrosecond(Some(micros), tz.clone()),
        other => unreachable!("validity columns are DATE or TIMESTAMP, not {other}"),
    };
    let name = table.name().to_string();
    let plan = LogicalPlanBuilder::scan(name.as_str(), provider_as_source(Arc::new(table)), None)?
        .filter(
            col(EFFECTIVE_DATE)
                .lt_eq(lit(at.clone()))
                .and(col(END_DATE).gt(lit(at))),
        )?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}
