//! Fuzz targets for the source readers: any bytes, read as CSV (under any options), JSON or
//! Parquet, give rows or an error that names the file, never a panic.
//!
//! Inputs are drawn from an alphabet of the bytes that matter to each format (delimiters,
//! quotes, escapes, line ends, the halves of multi-byte characters, digits), and Parquet inputs
//! are valid files with bytes flipped or cut. `PROPTEST_CASES` sets the budget (CI: the default
//! of 256 per target; `PROPTEST_CASES=100000` for a long run). A failing case is shrunk and
//! saved by proptest; add it to `testdata/load/malformed` with a test of its own.

use std::sync::Arc;

use arrow::array::{Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use proptest::prelude::*;

use super::{ColumnMatch, CsvOptions, FileFormat, OnRowError, SourceData, SourceFile, read_file};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("day", DataType::Date32, true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
    ]))
}

/// Reads `bytes` and checks the answer: rows of the table's schema, or an error naming the file.
fn read(bytes: Vec<u8>, format: &FileFormat, on_error: OnRowError) {
    let file = SourceFile::named("fuzz.input", bytes.len() as u64);
    let schema = schema();
    // Every way of matching columns, drawn from the input.
    let matching = match bytes.len() % 3 {
        0 => ColumnMatch::Auto,
        1 => ColumnMatch::CaseSensitive,
        _ => ColumnMatch::CaseInsensitive,
    };
    let outcome = read_file(
        &file,
        SourceData::Bytes(Bytes::from(bytes)),
        format,
        matching,
        &schema,
        on_error,
        |batch| {
            assert_eq!(batch.rows.schema(), schema);
            assert_eq!(batch.rows.num_rows(), batch.lines.len());
            Ok(())
        },
    );
    if let Err(e) = outcome {
        assert!(e.to_string().contains("fuzz.input"), "{e}");
    }
}

/// Bytes that steer a text reader into its corners.
fn text_bytes() -> impl Strategy<Value = Vec<u8>> {
    let interesting = prop::sample::select(vec![
        b',', b';', b'|', b'"', b'\'', b'\\', b'\n', b'\r', b' ', b'-', b'.', b'0', b'1', b'9',
        b'a', b'N', 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0xff, 0x00, b'{', b'}', b':', b'[',
        b']',
    ]);
    prop::collection::vec(prop_oneof![4 => interesting, 1 => any::<u8>()], 0..400)
}

fn csv_options() -> impl Strategy<Value = CsvOptions> {
    (
        0usize..3,
        prop::sample::select(vec![b',', b';', b'|', b'\t']),
        prop::sample::select(vec![b'"', b'\'']),
        prop::option::of(Just(b'\\')),
        prop::collection::vec("[A-Z\\\\]{0,3}", 0..3),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::of(prop::sample::select(vec!["%d/%m/%Y", "%Y%m%d", "%e %b %Y"])),
    )
        .prop_map(
            |(skip_header, delimiter, quote, escape, null_if, (empty_null, trim, strict), date)| {
                CsvOptions {
                    skip_header,
                    delimiter,
                    quote,
                    escape,
                    null_if,
                    empty_field_as_null: empty_null,
                    trim_space: trim,
                    error_on_column_count_mismatch: strict,
                    date_format: date.map(str::to_string),
                    timestamp_format: None,
                }
            },
        )
}

/// Records of about the table's width whose fields are drawn from [`text_bytes`]'s alphabet,
/// so that what follows the field count (UTF-8, quoting, conversion) is reached.
fn csv_records() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop::sample::select(vec![
        b'"', b'\\', b'\r', b' ', b'-', b'.', b'0', b'1', b'9', b'a', b'N', 0xc3, 0xa9, 0xe2, 0x82,
        0xac, 0xf0, 0x9f, 0xff, 0x00,
    ]);
    let field = prop::collection::vec(byte, 0..5);
    let record = prop::collection::vec(field, 3..6);
    prop::collection::vec(record, 0..8).prop_map(|records| {
        let mut out = Vec::new();
        for record in records {
            out.extend(record.join(&b',').iter());
            out.push(b'\n');
        }
        out
    })
}

/// A CSV file of rows that are mostly well formed, so the converters get exercised too.
fn csv_rows() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        "-?[0-9]{1,20}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "-?[0-9]{0,12}\\.[0-9]{0,4}",
        "\"[^\"]{0,6}\"",
        "\\PC{0,4}",
    ];
    prop::collection::vec(prop::collection::vec(field, 1..6), 0..20).prop_map(|rows| {
        rows.iter()
            .map(|r| r.join(","))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes()
    })
}

fn parquet_file(rows: &[(i64, String, i32, i128)]) -> Vec<u8> {
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(
                Decimal128Array::from_iter_values(rows.iter().map(|r| r.3))
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

proptest! {
    #[test]
    fn csv_reader_answers_any_bytes(
        bytes in text_bytes(),
        options in csv_options(),
        collect in any::<bool>(),
    ) {
        let on_error = if collect { OnRowError::Collect } else { OnRowError::Fail };
        read(bytes, &FileFormat::Csv(options), on_error);
    }

    #[test]
    fn csv_reader_answers_records_of_any_bytes(bytes in csv_records(), collect in any::<bool>()) {
        let on_error = if collect { OnRowError::Collect } else { OnRowError::Fail };
        read(bytes, &FileFormat::Csv(CsvOptions::default()), on_error);
    }

    #[test]
    fn csv_reader_answers_near_valid_rows(bytes in csv_rows(), collect in any::<bool>()) {
        let on_error = if collect { OnRowError::Collect } else { OnRowError::Fail };
        read(bytes, &FileFormat::Csv(CsvOptions::default()), on_error);
    }

    #[test]
    fn json_reader_answers_any_bytes(bytes in text_bytes(), collect in any::<bool>()) {
        let on_error = if collect { OnRowError::Collect } else { OnRowError::Fail };
        read(bytes, &FileFormat::Json, on_error);
    }

    #[test]
    fn json_reader_answers_near_valid_objects(
        objects in prop::collection::vec(
            (
                prop_oneof!["-?[0-9]{1,22}", "\"[0-9a-z]{0,4}\"", Just("null".to_string())],
                prop_oneof!["\"\\PC{0,5}\"", "[0-9]{1,3}", Just("[]".to_string())],
                prop_oneof!["\"[0-9]{4}-[0-9]{2}-[0-9]{2}\"", "[0-9]{1,6}"],
                prop_oneof!["-?[0-9]{0,14}\\.[0-9]{0,3}", "\"[0-9.]{1,5}\""],
            ),
            0..12,
        ),
        collect in any::<bool>(),
    ) {
        let text: Vec<String> = objects
            .iter()
            .map(|(id, name, day, amount)| {
                format!(r#"{{"id": {id}, "name": {name}, "day": {day}, "amount": {amount}}}"#)
            })
            .collect();
        let on_error = if collect { OnRowError::Collect } else { OnRowError::Fail };
        read(text.join("\n").into_bytes(), &FileFormat::Json, on_error);
    }

    #[test]
    fn parquet_reader_answers_damaged_files(
        rows in prop::collection::vec(
            (any::<i64>(), "\\PC{0,8}", -100_000i32..100_000, -9_999_999_999i128..9_999_999_999),
            0..40,
        ),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = parquet_file(&rows);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        read(bytes, &FileFormat::Parquet, OnRowError::Fail);
    }
}
