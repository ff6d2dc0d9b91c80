//! Micro-benchmarks of storage hot paths: routing a batch to 1,000 range partitions, and
//! opening (reading to the latest snapshot) a table log of 10,000 commits.
//!
//! `cargo bench -p strata-storage --bench hot_paths` (add `--workspace` builds to share the
//! dependency build with the rest of the workspace).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, criterion_group, criterion_main};
use strata_storage::TableId;
use strata_storage::log::{ColumnDef, DataFile, TableLog, TableMetadata, Transaction};
use strata_storage::partition::route;
use strata_storage::{Partitioning, UpperBound, WarehouseStore};

const ROWS: usize = 1 << 20;

fn routing(c: &mut Criterion) {
    // 1,000 partitions of width 1,000 over keys 0..1,000,000; one 1M-row batch in random order.
    let clauses: Vec<(String, UpperBound)> = (1..=1000)
        .map(|i| (format!("p{i}"), UpperBound::Value((i * 1000).to_string())))
        .collect();
    let layout = Partitioning::new("t", "k", &DataType::Int64, &clauses, None).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let keys: Vec<i64> = (0..ROWS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1_000_000) as i64
        })
        .collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(keys)),
            Arc::new(Int64Array::from_iter_values(0..ROWS as i64)),
        ],
    )
    .unwrap();
    let mut group = c.benchmark_group("route");
    group.throughput(criterion::Throughput::Elements(ROWS as u64));
    group.bench_function("1M rows to 1k partitions", |b| {
        b.iter(|| {
            let mut layout = layout.clone();
            let routed = route("t", &mut layout, black_box(&batch), 0, usize::MAX).unwrap();
            assert_eq!(routed.parts.len(), 1000);
        })
    });
    group.finish();
}

fn open_log(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = WarehouseStore::open("memory://").unwrap().object_store();
    let id = TableId("bench".to_string());
    let log = TableLog::new(Arc::clone(&store), id.clone(), "t");
    runtime.block_on(async {
        let metadata = TableMetadata {
            columns: vec![ColumnDef {
                name: "v".to_string(),
                data_type: DataType::Int64,
                nullable: true,
                sql_type: None,
                field_id: 0,
                default: None,
                initial_default: None,
                comment: None,
                tags: Default::default(),
            }],
            partitioning: None,
            properties: BTreeMap::new(),
            constraints: Vec::new(),
            last_field_id: 0,
            name_mapping: BTreeMap::new(),
            indexes: Vec::new(),
            cluster_by: Vec::new(),
            tests: Vec::new(),
            tags: Default::default(),
        };
        let mut snapshot = log.create(metadata, "CREATE TABLE").await.unwrap();
        for i in 0..10_000 {
            let mut txn = Transaction::new("INSERT");
            txn.add.push(DataFile {
                path: format!("tables/bench/data/{i}.parquet"),
                partition: String::new(),
                rows: 1,
                size_bytes: 100,
                stats: BTreeMap::new(),
                field_ids: Default::default(),
                deletion_vector: None,
            });
            snapshot = log.commit(&snapshot, &txn).await.unwrap();
        }
        assert_eq!(snapshot.files.len(), 10_000);
    });
    c.bench_function("open a table of 10k commits", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let log = TableLog::new(Arc::clone(&store), id.clone(), "t");
                let snapshot = log.latest().await.unwrap();
                assert_eq!(snapshot.files.len(), 10_000);
            })
        })
    });
}

criterion_group!(benches, routing, open_log);
criterion_main!(benches);
