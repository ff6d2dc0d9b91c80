//! Arrow types every client reads. DataFusion reads strings from Parquet as `Utf8View`, and
//! dictionaries may appear in results; older Flight SQL clients (and BI dialects on top of
//! them) break on view types, and Flight encoders send dictionaries hydrated anyway. So
//! results go out as `Utf8`/`Binary`/plain values, and the schema a `FlightInfo` announces is
//! exactly the schema of the batches that follow.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;

/// The type a column of `data_type` is sent as.
pub(crate) fn wire_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, value) => wire_type(value),
        DataType::List(f) => DataType::List(wire_field(f)),
        DataType::LargeList(f) => DataType::LargeList(wire_field(f)),
        DataType::ListView(f) => DataType::List(wire_field(f)),
        DataType::LargeListView(f) => DataType::LargeList(wire_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(wire_field(f), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(wire_field).collect::<Fields>())
        }
        DataType::Map(f, sorted) => DataType::Map(wire_field(f), *sorted),
        other => other.clone(),
    }
}

fn wire_field(field: &FieldRef) -> FieldRef {
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(wire_type(field.data_type())),
    )
}

/// The schema results with `schema` are sent with.
pub(crate) fn wire_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                Field::new(f.name(), wire_type(f.data_type()), f.is_nullable())
                    .with_metadata(f.metadata().clone())
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// `batch` converted to `schema` (a [`wire_schema`]), column by column.
pub(crate) fn wire_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    if batch.num_columns() != schema.fields().len() {
        return Err(ArrowError::SchemaError(format!(
            "result has {} columns, {} were announced",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, DictionaryArray, Int32Array, StringViewArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn views_and_dictionaries_go_out_as_plain_types() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new(
                "d",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                false,
            ),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true))),
                true,
            ),
        ]));
        let wire = wire_schema(&schema);
        assert_eq!(wire.field(0).data_type(), &DataType::Utf8);
        assert_eq!(wire.field(1).data_type(), &DataType::Utf8);
        assert!(!wire.field(1).is_nullable());
        assert_eq!(
            wire.field(2).data_type(),
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );

        let narrow = Arc::new(Schema::new(vec![
            schema.field(0).clone(),
            schema.field(1).clone(),
        ]));
        let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&narrow),
            vec![
                Arc::new(StringViewArray::from(vec![Some("x"), None, Some("z")])),
                Arc::new(dict),
            ],
        )
        .unwrap();
        let out = wire_batch(&batch, &wire_schema(&narrow)).unwrap();
        assert_eq!(out.schema(), wire_schema(&narrow));
        assert_eq!(out.column(0).null_count(), 1);
        assert_eq!(
            arrow::util::pretty::pretty_format_batches(&[out])
                .unwrap()
                .to_string(),
            "+---+---+\n| s | d |\n+---+---+\n| x | a |\n|   | b |\n| z | a |\n+---+---+"
        );
    }

    #[test]
    fn a_batch_of_another_width_is_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int32Array::from(vec![1]))],
        )
        .unwrap();
        let two = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Int32, true),
        ]));
        assert!(wire_batch(&batch, &two).is_err());
    }
}
