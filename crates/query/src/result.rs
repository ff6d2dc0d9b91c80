//! `StatementResult`: what a statement returns, rows or a one-row status.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// The result of one statement: rows, or a one-row status.
#[derive(Debug, Clone)]
pub struct StatementResult {
    /// The columns.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
}

impl StatementResult {
    pub(crate) fn status(message: impl Into<String>) -> Self {
        Self::strings(&["status"], vec![vec![message.into()]])
    }

    pub(crate) fn strings(names: &[&str], rows: Vec<Vec<String>>) -> Self {
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = (0..names.len())
            .map(|i| {
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r[i].as_str()),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
            .expect("string batch matches its schema");
        Self {
            schema,
            batches: vec![batch],
        }
    }

    /// Rows in the result.
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}
