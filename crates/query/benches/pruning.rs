//! Micro-benchmark of partition pruning: planning a point query on a table of 10,000 range
//! partitions (1,000 of them holding a file), which prunes to one partition.
//!
//! `cargo bench -p strata-query --bench pruning`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use strata_query::Warehouse;

fn pruning(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let session = runtime.block_on(async {
        let warehouse = Warehouse::open("memory://").await.unwrap();
        let mut session = warehouse.session();
        let clauses: Vec<String> = (1..=10_000)
            .map(|i| format!("PARTITION p{i} VALUES LESS THAN ({})", i * 10))
            .collect();
        session
            .sql(&format!(
                "CREATE TABLE t (k BIGINT, v BIGINT) PARTITION BY RANGE (k) ({})",
                clauses.join(", ")
            ))
            .await
            .unwrap();
        session
            .sql("INSERT INTO t SELECT value * 100, value FROM generate_series(0, 999)")
            .await
            .unwrap();
        session
    });
    let ctx = session.context().clone();
    c.bench_function("plan a point query over 10k partitions", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let plan = ctx
                    .sql(black_box("SELECT v FROM t WHERE k = 50000"))
                    .await
                    .unwrap()
                    .create_physical_plan()
                    .await
                    .unwrap();
                let figures = strata_query::scan_figures(&plan);
                assert_eq!(figures.partitions_total, 10_000);
                assert_eq!(figures.files_scanned, 1);
            })
        })
    });
}

criterion_group!(benches, pruning);
criterion_main!(benches);
