//! `system.ingest_channels`: every ingest channel of every table, read from the tables' logs,
//! where each channel's offset token is committed with the rows it appended (see
//! [`crate::statement::channels`]). A producer that lost track of what landed reads its
//! channel's `last_offset_token` here, or through Flight's `strata.channel_status`.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;

use crate::catalog::system_parts::{all_tables, mem_table, ts_field};
use crate::error::Result;
use crate::warehouse::Warehouse;

/// One row per channel: table, channel, last_offset_token, rows, commits, last_commit_at,
/// owner; by table, then channel.
pub(crate) async fn ingest_channels(warehouse: &Warehouse) -> Result<Arc<dyn TableProvider>> {
    warehouse.refresh_catalog().await?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("last_offset_token", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("commits", DataType::UInt64, false),
        ts_field("last_commit_at"),
        Field::new("owner", DataType::Utf8, false),
    ]));
    let mut table = StringBuilder::new();
    let mut channel = StringBuilder::new();
    let mut token = StringBuilder::new();
    let mut rows = UInt64Builder::new();
    let mut commits = UInt64Builder::new();
    let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut owner = StringBuilder::new();
    let mut tables = all_tables(warehouse);
    tables.sort();
    for (db, schema_name, name, id) in tables {
        let qualified = format!("{db}.{schema_name}.{name}");
        let log = warehouse.table_log(&id, &qualified);
        let snapshot = warehouse.snapshot(&log).await?;
        for (name, c) in &snapshot.channels {
            table.append_value(&qualified);
            channel.append_value(name);
            token.append_value(&c.offset_token);
            rows.append_value(c.rows);
            commits.append_value(c.commits);
            at.append_value(c.last_commit_at.timestamp_micros());
            owner.append_value(&c.owner);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(table.finish()),
        Arc::new(channel.finish()),
        Arc::new(token.finish()),
        Arc::new(rows.finish()),
        Arc::new(commits.finish()),
        Arc::new(at.finish()),
        Arc::new(owner.finish()),
    ];
    mem_table(schema, columns)
}
