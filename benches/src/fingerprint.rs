//! Order-insensitive result fingerprints, computed exactly as `../shared/bench/peers.py` does so
//! that Strata's answers can be checked against answers recorded from a reference engine.
//!
//! Per column: if the non-null values are numbers (integers, floats, decimals, booleans), their
//! sum; otherwise the first 12 hex digits of the SHA-1 of the values' text, right-trimmed,
//! sorted and joined with `\x1f`. Plus the null count, and the row count of the result.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use serde::{Deserialize, Serialize};

/// The fingerprint of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColumnPrint {
    Sum { sum: f64, nulls: u64 },
    Hash { hash: String, nulls: u64 },
}

/// The fingerprint of a query result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub rows: u64,
    pub fingerprint: Vec<ColumnPrint>,
}

/// Relative difference accepted between numeric column sums: engines round decimal averages
/// and divisions differently (DataFusion and DuckDB differ by up to 1.3e-5 on TPC-H Q1/Q8).
pub const TOLERANCE: f64 = 1e-4;

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

/// The fingerprint of `batches` (all with the same schema, given by `columns`).
pub fn fingerprint(columns: usize, batches: &[RecordBatch]) -> anyhow::Result<Answer> {
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    let mut prints = Vec::with_capacity(columns);
    for c in 0..columns {
        let arrays: Vec<&ArrayRef> = batches.iter().map(|b| b.column(c)).collect();
        let nulls: u64 = arrays.iter().map(|a| a.null_count() as u64).sum();
        let data_type = arrays.first().map(|a| a.data_type().clone());
        let non_null = rows - nulls;
        if non_null > 0 && data_type.as_ref().is_some_and(is_numeric) {
            // Neumaier summation: close to Python's exact math.fsum.
            let (mut sum, mut compensation) = (0.0f64, 0.0f64);
            for array in &arrays {
                let values = cast(array, &DataType::Float64)?;
                for v in values.as_primitive::<Float64Type>().iter().flatten() {
                    let t = sum + v;
                    if sum.abs() >= v.abs() {
                        compensation += (sum - t) + v;
                    } else {
                        compensation += (v - t) + sum;
                    }
                    sum = t;
                }
            }
            prints.push(ColumnPrint::Sum {
                sum: sum + compensation,
                nulls,
            });
        } else {
            let mut texts = Vec::with_capacity(non_null as usize);
            for array in &arrays {
                let strings = cast(array, &DataType::Utf8)?;
                for v in strings.as_string::<i32>().iter().flatten() {
                    texts.push(v.trim_end().to_string());
                }
            }
            texts.sort_unstable();
            let digest = sha1_smol::Sha1::from(texts.join("\x1f"))
                .digest()
                .to_string();
            prints.push(ColumnPrint::Hash {
                hash: digest[..12].to_string(),
                nulls,
            });
        }
    }
    Ok(Answer {
        rows,
        fingerprint: prints,
    })
}

impl Answer {
    /// Why `self` (the answer under test) differs from `expected`, or `None` if it matches.
    pub fn mismatch(&self, expected: &Answer) -> Option<String> {
        if self.rows != expected.rows {
            return Some(format!("{} rows, expected {}", self.rows, expected.rows));
        }
        if self.fingerprint.len() != expected.fingerprint.len() {
            return Some(format!(
                "{} columns, expected {}",
                self.fingerprint.len(),
                expected.fingerprint.len()
            ));
        }
        for (i, (got, want)) in self
            .fingerprint
            .iter()
            .zip(&expected.fingerprint)
            .enumerate()
        {
            let column = i + 1;
            match (got, want) {
                (
                    ColumnPrint::Sum { sum: a, nulls: na },
                    ColumnPrint::Sum { sum: b, nulls: nb },
                ) => {
                    let scale = a.abs().max(b.abs()).max(1e-12);
                    if (a - b).abs() / scale > TOLERANCE {
                        return Some(format!("column {column} sums to {a}, expected {b}"));
                    }
                    if na != nb {
                        return Some(format!("column {column} has {na} NULLs, expected {nb}"));
                    }
                }
                (
                    ColumnPrint::Hash { hash: a, nulls: na },
                    ColumnPrint::Hash { hash: b, nulls: nb },
                ) => {
                    if a != b {
                        return Some(format!("column {column} values hash to {a}, expected {b}"));
                    }
                    if na != nb {
                        return Some(format!("column {column} has {na} NULLs, expected {nb}"));
                    }
                }
                _ => {
                    return Some(format!(
                        "column {column} is {} but the reference answer has {}",
                        got.kind(),
                        want.kind()
                    ));
                }
            }
        }
        None
    }
}

impl ColumnPrint {
    fn kind(&self) -> &'static str {
        match self {
            ColumnPrint::Sum { .. } => "numeric",
            ColumnPrint::Hash { .. } => "text",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Decimal128Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("d", DataType::Decimal128(15, 2), true),
            Field::new("day", DataType::Date32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(41)])),
                Arc::new(StringArray::from(vec!["b ", "a", "c"])),
                Arc::new(
                    Decimal128Array::from(vec![150, 250, 1])
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                ),
                Arc::new(Date32Array::from(vec![0, 1, 2])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn matches_the_python_fingerprint() {
        let answer = fingerprint(4, &[batch()]).unwrap();
        assert_eq!(answer.rows, 3);
        // hashlib.sha1("a\x1fb\x1fc".encode()).hexdigest()[:12]
        // hashlib.sha1("1970-01-01\x1f1970-01-02\x1f1970-01-03".encode()).hexdigest()[:12]
        assert_eq!(
            answer.fingerprint,
            vec![
                ColumnPrint::Sum {
                    sum: 42.0,
                    nulls: 1
                },
                ColumnPrint::Hash {
                    hash: "a9b3a53fdedd".to_string(),
                    nulls: 0
                },
                ColumnPrint::Sum {
                    sum: 4.01,
                    nulls: 0
                },
                ColumnPrint::Hash {
                    hash: "01a8d6672ec4".to_string(),
                    nulls: 0
                },
            ]
        );
    }

    #[test]
    fn reports_the_first_difference() {
        let answer = fingerprint(4, &[batch()]).unwrap();
        let mut other = answer.clone();
        assert_eq!(answer.mismatch(&other), None);
        other.fingerprint[2] = ColumnPrint::Sum {
            sum: 4.02,
            nulls: 0,
        };
        assert_eq!(
            answer.mismatch(&other).unwrap(),
            "column 3 sums to 4.01, expected 4.02"
        );
        other.rows = 4;
        assert_eq!(answer.mismatch(&other).unwrap(), "3 rows, expected 4");
    }
}
