//! Fuzz targets for the metadata decoders: table commits, checkpoints, `_last_checkpoint` and
//! catalog versions, damaged by flipped bytes, cuts and splices of valid files. Opening the
//! table or the catalog must give a snapshot or an error naming the file, never a panic.
//! `PROPTEST_CASES` sets the budget.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use proptest::prelude::*;

use crate::catalog::Catalog;
use crate::id::{TableId, Version};
use crate::log::{CHECKPOINT_INTERVAL, ColumnDef, DataFile, TableLog, TableMetadata, Transaction};
use crate::partition::{Interval, Partition, Partitioning};
use crate::store::paths;

fn metadata() -> TableMetadata {
    TableMetadata {
        columns: vec![ColumnDef {
            name: "k".into(),
            data_type: DataType::Int64,
            nullable: true,
            sql_type: None,
            field_id: 0,
            default: None,
            initial_default: None,
            comment: None,
            tags: Default::default(),
        }],
        partitioning: Some(
            Partitioning::new("t", "k", &DataType::Int64, &[], Some(Interval::Width(10))).unwrap(),
        ),
        properties: BTreeMap::new(),
        constraints: Vec::new(),
        last_field_id: 0,
        name_mapping: Default::default(),
        indexes: Vec::new(),
        cluster_by: Vec::new(),
        tests: Vec::new(),
        tags: Default::default(),
    }
}

/// A table with a checkpoint and commits after it, on a fresh store.
fn table() -> (Arc<dyn ObjectStore>, TableLog) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let log = TableLog::new(Arc::clone(&store), TableId::random(), "t");
    futures::executor::block_on(async {
        let mut s = log.create(metadata(), "CREATE TABLE").await.unwrap();
        for i in 0..CHECKPOINT_INTERVAL + 2 {
            let path = format!("{}/f{i}.parquet", paths::table_data_dir(log.id()));
            store
                .put(&Path::from(path.as_str()), PutPayload::from_static(b"x"))
                .await
                .unwrap();
            let file = DataFile {
                path,
                partition: "p_0".to_string(),
                rows: 1,
                size_bytes: 1,
                stats: BTreeMap::new(),
                field_ids: Default::default(),
                deletion_vector: None,
            };
            let mut txn = Transaction::new("INSERT");
            txn.add.push(file);
            txn.add_partitions.push(Partition {
                name: "p_0".to_string(),
                lower: Some(0),
                upper: Some(10),
            });
            s = log.commit(&s, &txn).await.unwrap();
        }
    });
    (store, log)
}

fn damage(
    mut bytes: Vec<u8>,
    flips: &[(prop::sample::Index, u8)],
    cut: Option<prop::sample::Index>,
) -> Vec<u8> {
    for (at, value) in flips {
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut.index(bytes.len() + 1));
    }
    bytes
}

fn damage_strategy()
-> impl Strategy<Value = (Vec<(prop::sample::Index, u8)>, Option<prop::sample::Index>)> {
    (
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop::option::of(any::<prop::sample::Index>()),
    )
}

proptest! {
    #[test]
    fn a_damaged_table_log_opens_or_fails_naming_the_file(
        which in 0usize..4,
        version in 0u64..(CHECKPOINT_INTERVAL + 3),
        (flips, cut) in damage_strategy(),
    ) {
        let (store, log) = table();
        let path = match which {
            0 => paths::table_commit(log.id(), Version(version)),
            1 => paths::table_checkpoint(log.id(), Version(CHECKPOINT_INTERVAL)),
            2 => paths::last_checkpoint(log.id()),
            _ => paths::table_commit(log.id(), Version(CHECKPOINT_INTERVAL + 1)),
        };
        futures::executor::block_on(async {
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
            let damaged = damage(bytes, &flips, cut);
            store.put(&path, PutPayload::from(damaged)).await.unwrap();
            for outcome in [
                log.latest().await.map(|_| ()),
                log.at_version(Version(version)).await.map(|_| ()),
                log.history().await.map(|_| ()),
            ] {
                if let Err(e) = outcome {
                    let text = e.to_string();
                    prop_assert!(text.contains("t") && !text.is_empty(), "{text}");
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_damaged_catalog_version_opens_or_fails(
        (flips, cut) in damage_strategy(),
    ) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let catalog = Catalog::new(Arc::clone(&store));
        futures::executor::block_on(async {
            catalog.latest().await.unwrap();
            catalog.update(|_| Ok(())).await.unwrap();
            let path = paths::catalog_commit(Version(1));
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
            store.put(&path, PutPayload::from(damage(bytes, &flips, cut))).await.unwrap();
            let _ = Catalog::new(Arc::clone(&store)).latest().await;
        });
    }
}
