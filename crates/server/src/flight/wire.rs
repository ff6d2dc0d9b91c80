//! Arrow types every client reads. DataFusion reads strings from Parquet as `Utf8View`, and
//! dictionaries may appear in results; older Flight SQL clients (and BI dialects on top of
//! them) break on view types, and Flight encoders send dictionaries hydrated anyway. So
//! results go out as `Utf8`/`Binary`/plain values, and the schema a `FlightInfo` announces is
//! exactly the schema of the batches that follow.
//!
//! A client that reads views asks for them with the call header `x-strata-arrow-views: true`
//! (ADBC: option `adbc.flight.sql.rpc.call_header.x-strata-arrow-views`), and then gets
//! `Utf8View`/`BinaryView` columns as DataFusion produces them, without a conversion.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use tonic::metadata::MetadataMap;

/// The call header with which a client asks for view types.
pub(crate) const VIEWS_HEADER: &str = "x-strata-arrow-views";

/// Which string and binary types results are sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireTypes {
    /// `Utf8`/`Binary`: what every client reads (the default).
    Classic,
    /// `Utf8View`/`BinaryView` as DataFusion produces them, for clients that ask.
    Views,
}

impl WireTypes {
    /// What the caller asked for with its headers.
    pub(crate) fn requested(metadata: &MetadataMap) -> Self {
        let asked = metadata
            .get(VIEWS_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
        if asked {
            WireTypes::Views
        } else {
            WireTypes::Classic
        }
    }
}

/// The type a column of `data_type` is sent as.
pub(crate) fn wire_type(data_type: &DataType, types: WireTypes) -> DataType {
    let field = |f: &FieldRef| wire_field(f, types);
    match data_type {
        DataType::Utf8View if types == WireTypes::Classic => DataType::Utf8,
        DataType::BinaryView if types == WireTypes::Classic => DataType::Binary,
        DataType::Dictionary(_, value) => wire_type(value, types),
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::ListView(f) => DataType::List(field(f)),
        DataType::LargeListView(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect::<Fields>()),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        other => other.clone(),
    }
}

fn wire_field(field: &FieldRef, types: WireTypes) -> FieldRef {
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(wire_type(field.data_type(), types)),
    )
}

/// The schema results with `schema` are sent with.
pub(crate) fn wire_schema(schema: &Schema, types: WireTypes) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                Field::new(f.name(), wire_type(f.data_type(), types), f.is_nullable())
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
        let views = wire_schema(&schema, WireTypes::Views);
        assert_eq!(views.field(0).data_type(), &DataType::Utf8View);
        assert_eq!(views.field(1).data_type(), &DataType::Utf8);
        let wire = wire_schema(&schema, WireTypes::Classic);
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
        let out = wire_batch(&batch, &wire_schema(&narrow, WireTypes::Classic)).unwrap();
        assert_eq!(out.schema(), wire_schema(&narrow, WireTypes::Classic));
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
