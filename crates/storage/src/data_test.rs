//! Data tests as a table keeps them, and the record of each run.
//!
//! A data test is a query that returns a table's failing rows: it passes when it returns none.
//! Generic tests are named after dbt's (`unique`, `not_null`, `accepted_values`,
//! `relationships`, `freshness`, `row_count`); a singular test is any query. They live in the
//! table's metadata, next to its constraints, so they travel with the table through renames,
//! time travel and clones, and a change to them is a commit like any other. What a test's SQL
//! is, and how it runs, is the query layer's; this layer only keeps them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::{Record, day};

/// A data test attached to a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataTest {
    /// Unique among the tests of its table.
    pub name: String,
    /// What the test checks.
    pub check: TestCheck,
    /// What a failure does.
    pub severity: Severity,
    /// Who added it.
    pub created_by: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// What a data test checks: the rows it returns are the failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TestCheck {
    /// No two rows share a value of `columns` (rows with a NULL among them are not compared).
    Unique {
        /// The columns, together.
        columns: Vec<String>,
    },
    /// No row has a NULL in `column`.
    NotNull {
        /// The column.
        column: String,
    },
    /// Every non-NULL value of `column` is one of `values`.
    AcceptedValues {
        /// The column.
        column: String,
        /// The values, as SQL literals.
        values: Vec<String>,
    },
    /// Every non-NULL value of `column` exists in `references.referenced_column`.
    Relationships {
        /// The column.
        column: String,
        /// The referenced table: database, schema, table.
        references: [String; 3],
        /// The referenced column.
        referenced_column: String,
    },
    /// The newest value of `column` is at most `max_age` old (an interval, as SQL text).
    Freshness {
        /// A date or timestamp column.
        column: String,
        /// `'1 day'`, `'6 hours'`.
        max_age: String,
    },
    /// The table's row count compares to `value` as `op` says.
    RowCount {
        /// `>`, `>=`, `<`, `<=`, `=` or `!=`.
        op: String,
        /// The bound.
        value: i64,
    },
    /// A singular test: a query returning the failing rows.
    Query {
        /// The query, as written.
        sql: String,
        /// The database unqualified names in `sql` resolve in.
        database: String,
        /// The schema unqualified names in `sql` resolve in.
        schema: String,
    },
}

impl TestCheck {
    /// The test's kind as its statement names it (`unique`, ..., `query` for a singular test).
    pub fn kind(&self) -> &'static str {
        match self {
            TestCheck::Unique { .. } => "unique",
            TestCheck::NotNull { .. } => "not_null",
            TestCheck::AcceptedValues { .. } => "accepted_values",
            TestCheck::Relationships { .. } => "relationships",
            TestCheck::Freshness { .. } => "freshness",
            TestCheck::RowCount { .. } => "row_count",
            TestCheck::Query { .. } => "query",
        }
    }

    /// The columns of its table the test reads (none for a singular test or `row_count`).
    pub fn columns(&self) -> Vec<&str> {
        match self {
            TestCheck::Unique { columns } => columns.iter().map(String::as_str).collect(),
            TestCheck::NotNull { column }
            | TestCheck::AcceptedValues { column, .. }
            | TestCheck::Relationships { column, .. }
            | TestCheck::Freshness { column, .. } => vec![column.as_str()],
            TestCheck::RowCount { .. } | TestCheck::Query { .. } => Vec::new(),
        }
    }

    /// Whether a row fails or passes on its own, whatever the other rows: such a test needs to
    /// see only the rows a write adds.
    pub fn is_row_local(&self) -> bool {
        matches!(
            self,
            TestCheck::NotNull { .. }
                | TestCheck::AcceptedValues { .. }
                | TestCheck::Relationships { .. }
        )
    }

    /// The test as `ALTER TABLE ... ADD TEST` writes it (the query, for a singular test).
    pub fn definition(&self) -> String {
        match self {
            TestCheck::Unique { columns } => format!("unique({})", columns.join(", ")),
            TestCheck::NotNull { column } => format!("not_null({column})"),
            TestCheck::AcceptedValues { column, values } => {
                format!("accepted_values({column}, ({}))", values.join(", "))
            }
            TestCheck::Relationships {
                column,
                references,
                referenced_column,
            } => format!(
                "relationships({column}, {}({referenced_column}))",
                references.join(".")
            ),
            TestCheck::Freshness { column, max_age } => {
                format!("freshness({column}, '{}')", max_age.replace('\'', "''"))
            }
            TestCheck::RowCount { op, value } => format!("row_count({op} {value})"),
            TestCheck::Query { sql, .. } => sql.clone(),
        }
    }
}

/// What a failing data test does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A failure is an error: `RUN DATA TESTS` reports `FAIL`, and a gated write commits
    /// nothing.
    Error,
    /// A failure is a warning: reported as `WARN` and recorded; a gated write goes on.
    Warn,
}

impl Severity {
    /// `ERROR` or `WARN`, as SQL writes it.
    pub fn sql_name(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warn => "WARN",
        }
    }
}

/// One run of one data test: kept under `_system/data_test_results/<day>/`, and read by
/// `system.data_test_results` and `system.data_tests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataTestResult {
    /// The run (one `RUN DATA TESTS` or one gated write) this result is part of.
    pub run_id: String,
    /// The table: `db.schema.table`.
    pub table: String,
    /// The test's name.
    pub test: String,
    /// Its kind ([`TestCheck::kind`]).
    pub kind: String,
    /// Its severity then.
    pub severity: Severity,
    /// `PASS`, `FAIL` (an ERROR test failed), `WARN` (a WARN test failed) or `ERROR` (the
    /// test's query could not run).
    pub status: String,
    /// How many rows the test returned.
    pub failing_rows: u64,
    /// The first failing rows, as a JSON array of objects.
    pub sample: String,
    /// Why the test could not run, for status `ERROR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What ran it: `RUN DATA TESTS`, or the write it gated (`COPY INTO`, `INSERT`, ...).
    pub trigger: String,
    /// Who ran it.
    pub user_name: String,
    /// When the test started.
    pub started_at: DateTime<Utc>,
    /// How long it ran, in milliseconds.
    pub elapsed_ms: u64,
}

impl Record for DataTestResult {
    const KIND: &'static str = "data_test_results";

    fn bucket(&self) -> String {
        day(&self.started_at)
    }

    fn id(&self) -> String {
        format!(
            "{}-{:016x}",
            self.run_id,
            crate::records::stable_digest(&format!("{}\u{0}{}", self.table, self.test))
        )
    }
}
