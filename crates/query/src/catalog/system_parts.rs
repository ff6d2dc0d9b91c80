//! The parts every system table is built from: its timestamp columns, the in-memory table it
//! is served as, and the list of the warehouse's tables it walks.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;

use crate::error::Result;
use crate::warehouse::Warehouse;

/// A nullable UTC timestamp column in microseconds.
pub(crate) fn ts_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    )
}

/// The columns as an in-memory table.
pub(crate) fn mem_table(
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
) -> Result<Arc<dyn TableProvider>> {
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// Every table of the catalog: (database, schema, table, id).
pub(crate) fn all_tables(
    warehouse: &Warehouse,
) -> Vec<(String, String, String, strata_storage::TableId)> {
    let catalog = warehouse.catalog();
    let mut out = Vec::new();
    for (db, d) in &catalog.databases {
        for (schema, s) in &d.schemas {
            for (table, t) in &s.tables {
                out.push((db.clone(), schema.clone(), table.clone(), t.id.clone()));
            }
        }
    }
    out
}
