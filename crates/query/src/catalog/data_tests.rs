//! `system.data_tests` (every test, with its latest result) and `system.data_test_results`
//! (every run of every test), from the tests in the tables' metadata and the result records
//! `RUN DATA TESTS` and write gates leave (see `crate::statement::data_tests`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use strata_storage::DataTestResult;

use crate::catalog::system_parts::{all_tables, mem_table, ts_field};
use crate::error::Result;
use crate::warehouse::{TEST_ON_LOAD, Warehouse};

/// `system.data_tests`: one row per test, with the latest result.
pub(crate) async fn data_tests(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let mut results: Vec<DataTestResult> = warehouse.records().read_all().await?;
    results.sort_by_key(|r| r.started_at);
    let latest: HashMap<(String, String), DataTestResult> = results
        .into_iter()
        .map(|r| ((r.table.clone(), r.test.clone()), r))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("test_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("test_on_load", DataType::Boolean, false),
        Field::new("created_by", DataType::Utf8, false),
        ts_field("created_at"),
        Field::new("last_status", DataType::Utf8, true),
        ts_field("last_run_at"),
        Field::new("last_failing_rows", DataType::UInt64, true),
        Field::new("last_trigger", DataType::Utf8, true),
    ]));
    let mut text: Vec<StringBuilder> = (0..8).map(|_| StringBuilder::new()).collect();
    let mut on_load = BooleanBuilder::new();
    let mut created_at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut last_status = StringBuilder::new();
    let mut last_run_at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut last_failing = UInt64Builder::new();
    let mut last_trigger = StringBuilder::new();
    for (db, schema_name, table, id) in all_tables(warehouse) {
        let qualified = format!("{db}.{schema_name}.{table}");
        let log = warehouse.table_log(&id, &qualified);
        let metadata = warehouse.snapshot(&log).await?.metadata;
        let gated = metadata
            .properties
            .get(TEST_ON_LOAD)
            .is_some_and(|v| v == "true");
        for test in &metadata.tests {
            for (builder, value) in text.iter_mut().zip([
                db.as_str(),
                schema_name.as_str(),
                table.as_str(),
                test.name.as_str(),
                test.check.kind(),
                &crate::redact::redact(&test.check.definition()),
                test.severity.sql_name(),
                test.created_by.as_str(),
            ]) {
                builder.append_value(value);
            }
            on_load.append_value(gated);
            created_at.append_value(test.created_at.timestamp_micros());
            match latest.get(&(qualified.clone(), test.name.clone())) {
                Some(r) => {
                    last_status.append_value(&r.status);
                    last_run_at.append_value(r.started_at.timestamp_micros());
                    last_failing.append_value(r.failing_rows);
                    last_trigger.append_value(&r.trigger);
                }
                None => {
                    last_status.append_null();
                    last_run_at.append_null();
                    last_failing.append_null();
                    last_trigger.append_null();
                }
            }
        }
    }
    let mut columns: Vec<ArrayRef> = text
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    // After the seven texts of the test: whether writes are gated, then who created it.
    columns.insert(7, Arc::new(on_load.finish()));
    columns.push(Arc::new(created_at.finish()));
    columns.push(Arc::new(last_status.finish()));
    columns.push(Arc::new(last_run_at.finish()));
    columns.push(Arc::new(last_failing.finish()));
    columns.push(Arc::new(last_trigger.finish()));
    mem_table(schema, columns)
}

/// `system.data_test_results`: every recorded run of a test, oldest first.
pub(crate) async fn data_test_results(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    let mut results: Vec<DataTestResult> = warehouse.records().read_all().await?;
    results
        .sort_by(|a, b| (a.started_at, &a.table, &a.test).cmp(&(b.started_at, &b.table, &b.test)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("database_name", DataType::Utf8, false),
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("test_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("failing_rows", DataType::UInt64, false),
        Field::new("sample", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("user_name", DataType::Utf8, false),
        ts_field("started_at"),
        Field::new("elapsed_ms", DataType::UInt64, false),
    ]));
    let mut text: Vec<StringBuilder> = (0..12).map(|_| StringBuilder::new()).collect();
    let mut failing = UInt64Builder::new();
    let mut started_at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut elapsed = UInt64Builder::new();
    for r in &results {
        let mut parts = r.table.splitn(3, '.');
        let (db, schema_name, table) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let sample = (r.sample != "[]").then_some(r.sample.as_str());
        let values = [
            Some(r.run_id.as_str()),
            Some(db),
            Some(schema_name),
            Some(table),
            Some(r.test.as_str()),
            Some(r.kind.as_str()),
            Some(r.severity.sql_name()),
            Some(r.status.as_str()),
            sample,
            r.error.as_deref(),
            Some(r.trigger.as_str()),
            Some(r.user_name.as_str()),
        ];
        for (builder, value) in text.iter_mut().zip(values) {
            builder.append_option(value);
        }
        failing.append_value(r.failing_rows);
        started_at.append_value(r.started_at.timestamp_micros());
        elapsed.append_value(r.elapsed_ms);
    }
    let mut text = text
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut columns: Vec<ArrayRef> = text.by_ref().take(8).collect();
    columns.push(Arc::new(failing.finish()));
    columns.extend(text.by_ref().take(4));
    columns.push(Arc::new(started_at.finish()));
    columns.push(Arc::new(elapsed.finish()));
    mem_table(schema, columns)
}
