//! Data tests: dbt's generic tests and singular tests, run on demand and as a gate on writes.
//!
//! - `ALTER TABLE t ADD TEST [name] unique(c) | not_null(c) | accepted_values(c, (...)) |
//!   relationships(c, other(c)) | freshness(c, '1 day') | row_count(> 0) [SEVERITY = WARN]`
//!   and `CREATE [OR REPLACE] DATA TEST name ON t [SEVERITY = ...] AS <query>` keep the test in
//!   the table's metadata (one commit); `DROP TEST` / `DROP DATA TEST` remove it. A test is
//!   planned when it is added, so a wrong column or query fails then, not at the first run.
//! - Every test is a query returning the failing rows ([`failing_rows_sql`]); it passes when
//!   it returns none. `RUN DATA TESTS [ON t | name]` runs them and returns one row per test
//!   (status, failing row count, the first failing rows as JSON); each result is a system
//!   record, read by `system.data_test_results` and `system.data_tests`.
//! - **Gate.** With `ALTER TABLE t SET (test_on_load = true)`, every write to `t` runs `t`'s
//!   tests against the table as the write would leave it, before it commits
//!   ([`DataTestGate`], called by [`Warehouse::commit`] on every write path). A failing ERROR
//!   test stops the commit: nothing is written, and the error names the test and its first
//!   failing rows. WARN tests are recorded and the write goes on. Tests whose rows pass or
//!   fail on their own (`not_null`, `accepted_values`, `relationships`) read only the files
//!   the write adds; the others read the whole table, and the write then counts as having read
//!   it, so a concurrent write makes it run (and test) again rather than commit unchecked.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::Utc;
use datafusion::sql::sqlparser::ast::ObjectName;
use futures::StreamExt;
use strata_storage::{
    DataTest, DataTestResult, Reads, Severity, Snapshot, TableLog, TestCheck, Transaction,
};

use crate::error::{Error, Result};
use crate::parser::{self, DataTestDef, DataTestStatement, Statement, TestSpec, TestTarget};
use crate::result::StatementResult;
use crate::session::Session;
use crate::warehouse::{Warehouse, WriteCheck};

/// How many failing rows a result keeps as its sample.
const SAMPLE_ROWS: usize = 5;
/// The longest sample kept, in bytes (long text values are cut).
const MAX_SAMPLE_BYTES: usize = 2_000;

/// Installs the data-test gate on `warehouse` (once; the statement layer calls this before
/// it runs anything, since the warehouse below it cannot name it).
pub(crate) fn install(warehouse: &Warehouse) {
    warehouse.install_write_check(|| Arc::new(DataTestGate));
}

/// Runs a data-test statement.
pub(crate) async fn execute(
    session: &Session,
    statement: &DataTestStatement,
) -> Result<StatementResult> {
    match statement {
        DataTestStatement::Add(def) => add(session, def).await,
        DataTestStatement::Drop {
            table,
            name,
            if_exists,
        } => drop(session, table.as_ref(), name, *if_exists).await,
        DataTestStatement::Run { target } => run(session, target).await,
    }
}

/// Runs `ALTER TABLE t ADD TEST ...` and `CREATE DATA TEST ...`.
async fn add(session: &Session, def: &DataTestDef) -> Result<StatementResult> {
    let (log, snapshot, qualified) = session.open_table(&def.table).await?;
    let [database, schema, table] = split_qualified(&qualified);
    let check = resolve(session, &snapshot, &qualified, &def.spec)?;
    let name = match &def.name {
        Some(name) => name.clone(),
        None => default_name(&table, &check),
    };
    let test = DataTest {
        name: name.clone(),
        check,
        severity: def.severity,
        created_by: session.user_name(),
        created_at: Utc::now(),
    };
    // Planned now, so that a wrong name or type fails here and not at the first run.
    let (db, sc) = home_schema(&test.check, &database, &schema);
    let user = session.user_name();
    plan_test(
        session.warehouse(),
        (&user, session.is_admin()),
        &db,
        &sc,
        &failing_rows_sql(&qualified, &test.check),
    )
    .await
    .map_err(|e| {
        Error::Plan(format!(
            "data test '{name}' on {qualified} does not plan: {e}"
        ))
    })?;
    let mut metadata = snapshot.metadata.clone();
    match metadata.tests.iter().position(|t| t.name == name) {
        Some(_) if def.if_not_exists => {
            return Ok(StatementResult::status(format!(
                "data test {name} on {qualified} exists"
            )));
        }
        Some(i) if def.or_replace => metadata.tests[i] = test,
        Some(_) => {
            return Err(strata_storage::Error::NameTaken {
                name: format!("{qualified}.{name}"),
                kind: "data test",
            }
            .into());
        }
        None => metadata.tests.push(test),
    }
    let mut txn = Transaction::new("ADD DATA TEST");
    txn.replace_metadata = Some(metadata);
    session
        .warehouse()
        .commit(&qualified, &log, &snapshot, &txn)
        .await?;
    Ok(StatementResult::status(format!(
        "added data test {name} to {qualified}"
    )))
}

/// Runs `ALTER TABLE t DROP TEST name` and `DROP DATA TEST name [ON t]`.
async fn drop(
    session: &Session,
    table: Option<&ObjectName>,
    name: &str,
    if_exists: bool,
) -> Result<StatementResult> {
    let found = match table {
        Some(t) => {
            let (log, snapshot, qualified) = session.open_table(t).await?;
            snapshot
                .metadata
                .tests
                .iter()
                .any(|test| test.name == name)
                .then_some((log, snapshot, qualified))
        }
        None => find_test(session, name).await?,
    };
    let Some((log, snapshot, qualified)) = found else {
        if if_exists {
            return Ok(StatementResult::status(format!(
                "data test {name} does not exist"
            )));
        }
        return Err(strata_storage::Error::ObjectNotFound {
            kind: "data test",
            name: name.to_string(),
        }
        .into());
    };
    let mut metadata = snapshot.metadata.clone();
    metadata.tests.retain(|t| t.name != name);
    let mut txn = Transaction::new("DROP DATA TEST");
    txn.replace_metadata = Some(metadata);
    session
        .warehouse()
        .commit(&qualified, &log, &snapshot, &txn)
        .await?;
    Ok(StatementResult::status(format!(
        "dropped data test {name} from {qualified}"
    )))
}

/// The table of the current schema holding a test named `name`; an error when several do.
async fn find_test(session: &Session, name: &str) -> Result<Option<(TableLog, Snapshot, String)>> {
    let (database, schema) = session.current_schema();
    let (database, schema) = (database.to_string(), schema.to_string());
    let warehouse = session.warehouse();
    let entry = warehouse.catalog().schema(&database, &schema)?.clone();
    let mut found = None;
    for (table, t) in &entry.tables {
        let qualified = format!("{database}.{schema}.{table}");
        let log = warehouse.table_log(&t.id, &qualified);
        let snapshot = warehouse.snapshot(&log).await?;
        if snapshot.metadata.tests.iter().any(|test| test.name == name) {
            if let Some((_, _, other)) = &found {
                return Err(Error::Plan(format!(
                    "data test {name} exists on {other} and on {qualified}: name the table \
                     (DROP DATA TEST {name} ON t, RUN DATA TESTS t.{name})"
                )));
            }
            found = Some((log, snapshot, qualified));
        }
    }
    Ok(found)
}

/// Runs `RUN DATA TESTS [ON t | name]`: one row per test.
async fn run(session: &Session, target: &TestTarget) -> Result<StatementResult> {
    let mut selected: Vec<(String, DataTest)> = Vec::new();
    match target {
        TestTarget::Table(t) => {
            let (_, snapshot, qualified) = session.open_table(t).await?;
            selected.extend(
                snapshot
                    .metadata
                    .tests
                    .into_iter()
                    .map(|test| (qualified.clone(), test)),
            );
        }
        TestTarget::Test(name) => {
            let parts = parser::name_parts(name);
            let (found, test) = match parts.as_slice() {
                [test] => (find_test(session, test).await?, test.clone()),
                [.., test] => {
                    let table = ObjectName(name.0[..name.0.len() - 1].to_vec());
                    (Some(session.open_table(&table).await?), test.clone())
                }
                [] => (None, String::new()),
            };
            let test = found.and_then(|(_, snapshot, qualified)| {
                snapshot
                    .metadata
                    .tests
                    .into_iter()
                    .find(|t| t.name == test)
                    .map(|t| (qualified, t))
            });
            match test {
                Some(t) => selected.push(t),
                None => {
                    return Err(strata_storage::Error::ObjectNotFound {
                        kind: "data test",
                        name: name.to_string(),
                    }
                    .into());
                }
            }
        }
        TestTarget::All => {
            let warehouse = session.warehouse();
            for (database, db) in &warehouse.catalog().databases {
                for (schema, entry) in &db.schemas {
                    for (table, t) in &entry.tables {
                        let qualified = format!("{database}.{schema}.{table}");
                        let log = warehouse.table_log(&t.id, &qualified);
                        let snapshot = warehouse.snapshot(&log).await?;
                        selected.extend(
                            snapshot
                                .metadata
                                .tests
                                .into_iter()
                                .map(|test| (qualified.clone(), test)),
                        );
                    }
                }
            }
        }
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let user = session.user_name();
    let mut results = Vec::with_capacity(selected.len());
    for (table, test) in &selected {
        let result = evaluate(
            session.warehouse(),
            (&user, session.is_admin()),
            table,
            test,
            &run_id,
            "RUN DATA TESTS",
        )
        .await;
        record(session.warehouse(), &result).await;
        results.push(result);
    }
    Ok(results_table(&results))
}

/// The tests of a `RUN DATA TESTS` result whose status is `FAIL` or `ERROR`.
pub(crate) fn failed_tests(result: &StatementResult) -> Vec<String> {
    let mut failed = Vec::new();
    for batch in &result.batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        };
        let (Some(names), Some(statuses)) = (column("test_name"), column("status")) else {
            continue;
        };
        for (name, status) in names.iter().zip(statuses.iter()) {
            if matches!(status, Some("FAIL" | "ERROR")) {
                failed.push(name.unwrap_or_default().to_string());
            }
        }
    }
    failed
}

/// The rows `RUN DATA TESTS` returns (how long each took is in `system.data_test_results`).
fn results_table(results: &[DataTestResult]) -> StatementResult {
    let text = |f: &dyn Fn(&DataTestResult) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(results.iter().map(f)))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("test_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("failing_rows", DataType::UInt64, false),
        Field::new("sample", DataType::Utf8, true),
    ]));
    let columns = vec![
        text(&|r| r.table.clone()),
        text(&|r| r.test.clone()),
        text(&|r| r.kind.clone()),
        text(&|r| r.severity.sql_name().to_string()),
        text(&|r| r.status.clone()),
        Arc::new(UInt64Array::from_iter_values(
            results.iter().map(|r| r.failing_rows),
        )) as ArrayRef,
        Arc::new(StringArray::from_iter(results.iter().map(|r| {
            match (&r.error, r.sample.as_str()) {
                (Some(e), _) => Some(e.clone()),
                (None, "[]") => None,
                (None, s) => Some(s.to_string()),
            }
        }))) as ArrayRef,
    ];
    let batch =
        RecordBatch::try_new(Arc::clone(&schema), columns).expect("the results match their schema");
    StatementResult {
        schema,
        batches: vec![batch],
    }
}

/// Writes a result record; a failure to record is logged, never the test's failure.
async fn record(warehouse: &Warehouse, result: &DataTestResult) {
    if result.status != "PASS" {
        crate::telemetry::data_test_failed(result.severity == Severity::Error);
    }
    if let Err(e) = warehouse.records().put(result).await {
        tracing::warn!(table = %result.table, test = %result.test, error = %e, "data test result not recorded");
    }
}

/// The test as the table and warehouse stand: columns and the referenced table checked,
/// names resolved.
fn resolve(
    session: &Session,
    snapshot: &Snapshot,
    qualified: &str,
    spec: &TestSpec,
) -> Result<TestCheck> {
    let column = |name: &str| -> Result<String> {
        match snapshot.metadata.column(name) {
            Some(c) => Ok(c.name.clone()),
            None => Err(Error::Plan(format!(
                "data test on {qualified}: the table has no column '{name}'"
            ))),
        }
    };
    Ok(match spec {
        TestSpec::Unique(columns) => {
            if columns.is_empty() {
                return Err(Error::Plan("unique(...) needs a column".to_string()));
            }
            TestCheck::Unique {
                columns: columns.iter().map(|c| column(c)).collect::<Result<_>>()?,
            }
        }
        TestSpec::NotNull(c) => TestCheck::NotNull { column: column(c)? },
        TestSpec::AcceptedValues { column: c, values } => TestCheck::AcceptedValues {
            column: column(c)?,
            values: values.clone(),
        },
        TestSpec::Relationships {
            column: c,
            references,
            referenced_column,
        } => {
            let (d, s, t) = session.qualify_table(references)?;
            TestCheck::Relationships {
                column: column(c)?,
                references: [d, s, t],
                referenced_column: referenced_column.clone(),
            }
        }
        TestSpec::Freshness { column: c, max_age } => TestCheck::Freshness {
            column: column(c)?,
            max_age: max_age.clone(),
        },
        TestSpec::RowCount { op, value } => TestCheck::RowCount {
            op: op.clone(),
            value: *value,
        },
        TestSpec::Query(sql) => {
            let (database, schema) = session.current_schema();
            TestCheck::Query {
                sql: sql.clone(),
                database: database.to_string(),
                schema: schema.to_string(),
            }
        }
    })
}

/// dbt's names: `unique_orders_id`, `not_null_orders_id`, `row_count_orders`.
fn default_name(table: &str, check: &TestCheck) -> String {
    let mut name = format!("{}_{table}", check.kind());
    for column in check.columns() {
        name.push('_');
        name.push_str(column);
    }
    name
}

/// `db.schema.table` as its three parts.
fn split_qualified(qualified: &str) -> [String; 3] {
    let mut parts = qualified.splitn(3, '.').map(str::to_string);
    [
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    ]
}

/// The schema a test's names resolve in: a singular test's own, else its table's.
fn home_schema(check: &TestCheck, database: &str, schema: &str) -> (String, String) {
    match check {
        TestCheck::Query {
            database, schema, ..
        } => (database.clone(), schema.clone()),
        _ => (database.to_string(), schema.to_string()),
    }
}

/// A name quoted for SQL.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `db.schema.table` quoted for SQL.
fn quoted_table(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| quoted(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// The query returning the rows that fail `check` on `table` (`db.schema.table`).
pub(crate) fn failing_rows_sql(table: &str, check: &TestCheck) -> String {
    let t = quoted_table(&split_qualified(table));
    match check {
        TestCheck::Unique { columns } => {
            let list = columns
                .iter()
                .map(|c| quoted(c))
                .collect::<Vec<_>>()
                .join(", ");
            let present = columns
                .iter()
                .map(|c| format!("{} IS NOT NULL", quoted(c)))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!(
                "SELECT {list}, count(*) AS n_records FROM {t} WHERE {present} GROUP BY {list} \
                 HAVING count(*) > 1"
            )
        }
        TestCheck::NotNull { column } => {
            format!("SELECT * FROM {t} WHERE {} IS NULL", quoted(column))
        }
        TestCheck::AcceptedValues { column, values } => format!(
            "SELECT * FROM {t} WHERE {c} IS NOT NULL AND {c} NOT IN ({})",
            values.join(", "),
            c = quoted(column)
        ),
        TestCheck::Relationships {
            column,
            references,
            referenced_column,
        } => format!(
            "SELECT * FROM {t} AS child WHERE child.{c} IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM {r} AS parent WHERE parent.{rc} = child.{c})",
            c = quoted(column),
            r = quoted_table(references),
            rc = quoted(referenced_column)
        ),
        TestCheck::Freshness { column, max_age } => format!(
            "SELECT max({c}) AS latest, now() AS checked_at FROM {t} HAVING max({c}) IS NULL \
             OR CAST(max({c}) AS TIMESTAMP) < CAST(now() AS TIMESTAMP) - INTERVAL '{age}'",
            c = quoted(column),
            age = max_age.replace('\'', "''")
        ),
        TestCheck::RowCount { op, value } => {
            format!("SELECT count(*) AS row_count FROM {t} HAVING NOT (count(*) {op} {value})")
        }
        TestCheck::Query { sql, .. } => sql.clone(),
    }
}

/// Who runs a test: a user's name and whether they are an admin.
type Runner<'a> = (&'a str, bool);

/// A gate checks a write's rows for the warehouse, as an admin.
const GATE_RUNNER: Runner<'static> = ("system", true);

/// Plans `sql` (one query) in `database.schema` of `warehouse`, as `user` would.
async fn plan_test(
    warehouse: &Warehouse,
    (user, admin): Runner<'_>,
    database: &str,
    schema: &str,
    sql: &str,
) -> Result<datafusion::dataframe::DataFrame> {
    let mut session = warehouse.session();
    session.set_user(user, admin);
    session.set_schema(database, schema)?;
    let parsed = parser::parse(sql)?;
    let [statement] = parsed.as_slice() else {
        return Err(Error::Plan("a data test is one query".to_string()));
    };
    if !matches!(&statement.statement, Statement::Sql(s)
        if matches!(s.as_ref(), datafusion::sql::sqlparser::ast::Statement::Query(_)))
    {
        return Err(Error::Plan("a data test is one query".to_string()));
    }
    session.dataframe(statement).await
}

/// Runs one test of `table` on `warehouse` (which may read the table at a write's snapshot):
/// counts the rows it returns and keeps the first few.
async fn evaluate(
    warehouse: &Warehouse,
    user: Runner<'_>,
    table: &str,
    test: &DataTest,
    run_id: &str,
    trigger: &str,
) -> DataTestResult {
    let started_at = Utc::now();
    let clock = std::time::Instant::now();
    let [database, schema, _] = split_qualified(table);
    let (db, sc) = home_schema(&test.check, &database, &schema);
    let sql = failing_rows_sql(table, &test.check);
    let outcome = async {
        let frame = plan_test(warehouse, user, &db, &sc, &sql).await?;
        let mut stream = frame.execute_stream().await?;
        let mut failing: u64 = 0;
        let mut sample: Vec<RecordBatch> = Vec::new();
        let mut kept = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            failing = failing.saturating_add(batch.num_rows() as u64);
            if kept < SAMPLE_ROWS && batch.num_rows() > 0 {
                let take = (SAMPLE_ROWS - kept).min(batch.num_rows());
                sample.push(batch.slice(0, take));
                kept += take;
            }
        }
        Ok::<_, Error>((failing, sample_json(&sample)))
    }
    .await;
    let (status, failing_rows, sample, error) = match outcome {
        Ok((0, _)) => ("PASS", 0, "[]".to_string(), None),
        Ok((n, sample)) => (
            match test.severity {
                Severity::Error => "FAIL",
                Severity::Warn => "WARN",
            },
            n,
            sample,
            None,
        ),
        Err(e) => (
            "ERROR",
            0,
            "[]".to_string(),
            Some(crate::redact::redact(&e.to_string())),
        ),
    };
    DataTestResult {
        run_id: run_id.to_string(),
        table: table.to_string(),
        test: test.name.clone(),
        kind: test.check.kind().to_string(),
        severity: test.severity,
        status: status.to_string(),
        failing_rows,
        sample,
        error,
        trigger: trigger.to_string(),
        user_name: user.0.to_string(),
        started_at,
        elapsed_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// The sample rows as a JSON array of objects, cut to [`MAX_SAMPLE_BYTES`].
fn sample_json(batches: &[RecordBatch]) -> String {
    let mut out = Vec::new();
    let written = {
        let mut writer = arrow::json::ArrayWriter::new(&mut out);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        writer.write_batches(&refs).and_then(|_| writer.finish())
    };
    let text = match written {
        Ok(()) if !out.is_empty() => String::from_utf8_lossy(&out).into_owned(),
        Ok(()) => "[]".to_string(),
        Err(e) => format!("(sample not shown: {e})"),
    };
    if text.len() <= MAX_SAMPLE_BYTES {
        return text;
    }
    let mut end = MAX_SAMPLE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The data-test gate of tables with `test_on_load = true` (see the module's docs).
#[derive(Debug)]
struct DataTestGate;

#[async_trait::async_trait]
impl WriteCheck for DataTestGate {
    async fn check(
        &self,
        warehouse: &Warehouse,
        name: &str,
        log: &TableLog,
        base: &Snapshot,
        txn: &Transaction,
    ) -> Result<Reads> {
        let preview = txn.preview(name, base)?;
        let added: HashSet<&str> = txn.add.iter().map(|f| f.path.as_str()).collect();
        let run_id = uuid::Uuid::new_v4().to_string();
        let mut reads = Reads::Nothing;
        let mut failed: Option<DataTestResult> = None;
        for test in &preview.metadata.tests {
            let snapshot = if test.check.is_row_local() {
                let mut only_new = preview.clone();
                only_new
                    .files
                    .retain(|path, _| added.contains(path.as_str()));
                if only_new.files.is_empty() {
                    continue;
                }
                only_new
            } else {
                reads = Reads::Table;
                preview.clone()
            };
            let view = warehouse.with_snapshot(log.id(), snapshot);
            let result = evaluate(&view, GATE_RUNNER, name, test, &run_id, &txn.operation).await;
            record(warehouse, &result).await;
            let blocks = test.severity == Severity::Error && result.status != "PASS";
            if blocks && failed.is_none() {
                failed = Some(result);
            }
        }
        match failed {
            None => Ok(reads),
            Some(result) => match result.error {
                Some(e) => Err(Error::Plan(format!(
                    "{} into {name} committed nothing: data test '{}' could not run: {e}",
                    txn.operation, result.test
                ))),
                None => Err(Error::DataTestFailed {
                    table: name.to_string(),
                    operation: txn.operation.clone(),
                    test: result.test,
                    failing_rows: result.failing_rows,
                    sample: result.sample,
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_tests_become_queries_over_quoted_names() {
        let sql = failing_rows_sql(
            "main.public.Orders",
            &TestCheck::Unique {
                columns: vec!["id".into()],
            },
        );
        assert_eq!(
            sql,
            "SELECT \"id\", count(*) AS n_records FROM \"main\".\"public\".\"Orders\" WHERE \
             \"id\" IS NOT NULL GROUP BY \"id\" HAVING count(*) > 1"
        );
        let sql = failing_rows_sql(
            "main.public.t",
            &TestCheck::Freshness {
                column: "ts".into(),
                max_age: "1 day'; DROP TABLE t; --".into(),
            },
        );
        assert!(
            sql.contains("INTERVAL '1 day''; DROP TABLE t; --'"),
            "{sql}"
        );
        assert_eq!(
            default_name(
                "orders",
                &TestCheck::RowCount {
                    op: ">".into(),
                    value: 0
                }
            ),
            "row_count_orders"
        );
    }

    /// Writers racing on a gated table, as two processes sharing a warehouse: in each round
    /// both insert the same key, each write passes the `unique` test on its own, and together
    /// they would break it. Exactly one commits; the other runs again on the winner's rows
    /// and its gate refuses it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_gated_writes_never_commit_together_what_the_tests_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let first = crate::Warehouse::open(root).await.unwrap();
        let second = crate::Warehouse::open(root).await.unwrap();
        first
            .session()
            .sql(
                "CREATE TABLE t (id INT); ALTER TABLE t ADD TEST unique(id); \
                 ALTER TABLE t SET (test_on_load = true)",
            )
            .await
            .unwrap();
        const ROUNDS: i32 = 6;
        let mut refused = 0;
        for key in 0..ROUNDS {
            let insert = format!("INSERT INTO t VALUES ({key})");
            let (a, b) = tokio::join!(async { first.session().sql(&insert).await }, async {
                second.session().sql(&insert).await
            });
            for outcome in [a, b] {
                match outcome {
                    Ok(_) => {}
                    Err(Error::DataTestFailed { test, .. }) => {
                        assert_eq!(test, "unique_t_id");
                        refused += 1;
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }
        assert_eq!(refused, ROUNDS, "one writer of each round is refused");
        let rows = first
            .session()
            .sql("SELECT count(*) AS n, count(DISTINCT id) AS d FROM t")
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&rows[0].batches)
            .unwrap()
            .to_string();
        assert!(text.contains(&format!("| {ROUNDS} | {ROUNDS} |")), "{text}");
    }

    #[test]
    fn samples_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_SAMPLE_BYTES);
        let batch = RecordBatch::try_from_iter(vec![(
            "s",
            Arc::new(StringArray::from(vec![long.as_str()])) as ArrayRef,
        )])
        .unwrap();
        let json = sample_json(&[batch]);
        assert!(
            json.len() <= MAX_SAMPLE_BYTES + '…'.len_utf8(),
            "{}",
            json.len()
        );
        assert!(json.starts_with("[{\"s\":\"é"), "{json}");
        assert_eq!(sample_json(&[]), "[]");
    }
}
