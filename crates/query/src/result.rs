//! `StatementResult`: what a statement returns, rows or a one-row status.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// `1 row`, `2 rows`: a count with its noun in the right number (nouns with a plain `s`).
pub(crate) fn count_of(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// One value of a [`StatementResult::row`].
pub(crate) enum Cell {
    Text(String),
    Count(u64),
}

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

    /// One row of named values: text, or counts (typed as numbers, so clients sum them).
    pub(crate) fn row(values: Vec<(&str, Cell)>) -> Self {
        let schema = Arc::new(Schema::new(
            values
                .iter()
                .map(|(name, cell)| {
                    let data_type = match cell {
                        Cell::Text(_) => DataType::Utf8,
                        Cell::Count(_) => DataType::UInt64,
                    };
                    Field::new(*name, data_type, true)
                })
                .collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = values
            .into_iter()
            .map(|(_, cell)| match cell {
                Cell::Text(text) => Arc::new(StringArray::from(vec![text])) as ArrayRef,
                Cell::Count(n) => Arc::new(UInt64Array::from(vec![n])) as ArrayRef,
            })
            .collect();
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), columns).expect("a row matches its schema");
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

impl StatementResult {
    /// A result of no columns and no rows.
    pub fn empty() -> Self {
        Self {
            schema: Arc::new(Schema::empty()),
            batches: Vec::new(),
        }
    }

    /// The rows a DML statement changed: the `count` of INSERT, UPDATE and DELETE, or MERGE's
    /// inserted, updated and deleted rows together; `None` for any other result.
    pub fn changed_rows(&self) -> Option<u64> {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let counts = matches!(
            names.as_slice(),
            ["count"] | ["rows_inserted", "rows_updated", "rows_deleted"]
        );
        counts.then(|| {
            self.batches
                .iter()
                .flat_map(|b| b.columns())
                .filter_map(|c| c.as_any().downcast_ref::<UInt64Array>())
                .flat_map(|a| a.iter().flatten())
                .fold(0u64, u64::saturating_add)
        })
    }
}

/// `schema` with the names a query wrote: without the marks that kept repeated names apart
/// while DataFusion planned it (see [`crate::parser`]); `None` when no name carries one.
pub(crate) fn visible_schema(schema: &SchemaRef) -> Option<SchemaRef> {
    let marked = |f: &Field| f.name().contains(crate::parser::RENAMED_MARK);
    if !schema.fields().iter().any(|f| marked(f)) {
        return None;
    }
    Some(Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_name(crate::parser::visible_name(f.name()))
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    )))
}

/// `batch` under `schema`: the same columns, the names of [`visible_schema`].
pub(crate) fn relabel(batch: RecordBatch, schema: &SchemaRef) -> arrow::error::Result<RecordBatch> {
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        batch.columns().to_vec(),
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}
