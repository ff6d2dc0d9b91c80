//! The transactional table log: numbered commits, snapshots, checkpoints and time travel.
//!
//! A table is a directory with a log of commits `_log/<version>.json` (version 0 creates the
//! table) and immutable Parquet data files. Each commit is written with `PutMode::Create`, so two
//! writers can never both win version N. The loser reads the commits it missed, checks that they
//! do not conflict with its own change (files it removes are still live, partitions it writes to
//! still exist, no rows it read were added or removed: [`Reads`]) and tries again at the next
//! version. Appends never conflict with appends. This is Delta's WriteSerializable isolation.
//!
//! A [`Snapshot`] is the table at one version: metadata and the live data files with their
//! statistics. Replaying from version 0 would make opening a long-lived table slow, so every
//! [`CHECKPOINT_INTERVAL`] commits the whole snapshot is written as a checkpoint and
//! `_last_checkpoint` names it; opening reads the checkpoint and the few commits after it.
//!
//! On S3 an "already exists" answer can be a lost response to our own successful write: every
//! commit carries a random transaction id, and a writer reads the entry back and recognises its
//! own id before treating the answer as a conflict.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::deletion::DeletionVector;
use crate::error::{Error, Result};
use crate::faults;
use crate::id::{TableId, Version};
use crate::partition::{Partition, Partitioning};
use crate::store::paths;

/// A checkpoint is written every this many commits.
pub const CHECKPOINT_INTERVAL: u64 = 50;

/// How often a writer retries after losing a race before giving up.
pub const MAX_COMMIT_ATTEMPTS: usize = 100;

/// The SQL name of an Arrow type, as users wrote it and as `DESCRIBE` and error messages
/// show it: `DECIMAL(10,2)`, `DATE`, `VARCHAR`.
pub fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Int64 => "BIGINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int8 => "TINYINT".into(),
        // DuckDB's names for unsigned integers.
        DataType::UInt64 => "UBIGINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "VARCHAR".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        other => other.to_string(),
    }
}

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// The column's name.
    pub name: String,
    /// Its Arrow type.
    pub data_type: DataType,
    /// False for NOT NULL columns.
    pub nullable: bool,
    /// The SQL type when it is not implied by the Arrow type (`JSON`, `VARCHAR(20)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_type: Option<String>,
    /// The column's stable id, which data files carry as the Parquet field id: files are read
    /// by it, so a renamed column reads its old files and a dropped and re-added name does not
    /// bring old values back. 0 until the table is created or the column added, which assign
    /// one ([`TableMetadata::assign_field_ids`]).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub field_id: u32,
    /// The value of the column in rows an `INSERT` writes without one, as text cast to its
    /// type (Iceberg's write default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The value of the column in data files written before it was added (`ADD COLUMN ...
    /// DEFAULT`), fixed when it was added (Iceberg's initial default); NULL if `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_default: Option<String>,
    /// `COMMENT ON COLUMN`, or `COMMENT '...'` in the column's definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `ALTER TABLE t MODIFY COLUMN c SET TAG name = 'value'`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl ColumnDef {
    /// A new column, without a field id or default.
    pub fn new(name: impl Into<String>, data_type: DataType, nullable: bool) -> Self {
        Self {
            name: name.into(),
            data_type,
            nullable,
            sql_type: None,
            field_id: 0,
            default: None,
            initial_default: None,
            comment: None,
            tags: BTreeMap::new(),
        }
    }
}

/// Everything about a table that is not its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredMetadata")]
pub struct TableMetadata {
    /// The columns, in order.
    pub columns: Vec<ColumnDef>,
    /// Range partitioning, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning: Option<Partitioning>,
    /// Table options (`WITH (...)`) and the state of materialized views and SCD tables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Declared keys and checks, enforced on every write (NOT NULL is `ColumnDef::nullable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// The highest field id given to a column so far: ids are never reused.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub last_field_id: u32,
    /// For data files written before tables had field ids: the id of each of their columns,
    /// by name (Iceberg's name mapping).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub name_mapping: BTreeMap<String, u32>,
    /// Indexes (`CREATE INDEX`): how data files are laid out, see [`Index`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Index>,
    /// The clustering key set by `ALTER TABLE t CLUSTER BY (...)`: data files are written
    /// sorted by it (on one column) or by its Z-order (on several); it overrides the key of a
    /// B-tree index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_by: Vec<String>,
    /// Data tests (`ALTER TABLE t ADD TEST`, `CREATE DATA TEST ... ON t`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<crate::data_test::DataTest>,
    /// `ALTER TABLE t SET TAG name = 'value'`: the table's tags (its columns' are on them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// [`TableMetadata`] as stored; reading it gives the columns of a table from before field ids
/// their ids (by position) and records the name mapping its files are read by.
#[derive(Deserialize)]
struct StoredMetadata {
    columns: Vec<ColumnDef>,
    #[serde(default)]
    partitioning: Option<Partitioning>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    constraints: Vec<Constraint>,
    #[serde(default)]
    last_field_id: u32,
    #[serde(default)]
    name_mapping: BTreeMap<String, u32>,
    #[serde(default)]
    indexes: Vec<Index>,
    #[serde(default)]
    cluster_by: Vec<String>,
    #[serde(default)]
    tests: Vec<crate::data_test::DataTest>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl From<StoredMetadata> for TableMetadata {
    fn from(stored: StoredMetadata) -> Self {
        let mut metadata = TableMetadata {
            columns: stored.columns,
            partitioning: stored.partitioning,
            properties: stored.properties,
            constraints: stored.constraints,
            last_field_id: stored.last_field_id,
            name_mapping: stored.name_mapping,
            indexes: stored.indexes,
            cluster_by: stored.cluster_by,
            tests: stored.tests,
            tags: stored.tags,
        };
        if metadata.last_field_id == 0 && metadata.columns.iter().all(|c| c.field_id == 0) {
            metadata.assign_field_ids(None);
            metadata.name_mapping = metadata
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.field_id))
                .collect();
        }
        metadata
    }
}

/// A table constraint, named as Postgres names them unless the DDL gave a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Constraint {
    /// Unique and not NULL.
    PrimaryKey {
        /// The constraint's name.
        name: String,
        /// The key columns.
        columns: Vec<String>,
    },
    /// Unique among rows whose key has no NULL.
    Unique {
        /// The constraint's name.
        name: String,
        /// The key columns.
        columns: Vec<String>,
    },
    /// Every row makes `expr` (SQL over the table's columns) true or NULL.
    Check {
        /// The constraint's name.
        name: String,
        /// The condition, as SQL.
        expr: String,
    },
    /// Every key without NULL exists in the referenced table's primary key or unique columns.
    ForeignKey {
        /// The constraint's name.
        name: String,
        /// The referencing columns.
        columns: Vec<String>,
        /// The referenced table: database, schema, table.
        references: [String; 3],
        /// The referenced columns, in the order of `columns`.
        referenced_columns: Vec<String>,
    },
}

impl Constraint {
    /// The constraint's name.
    pub fn name(&self) -> &str {
        match self {
            Constraint::PrimaryKey { name, .. }
            | Constraint::Unique { name, .. }
            | Constraint::Check { name, .. }
            | Constraint::ForeignKey { name, .. } => name,
        }
    }

    /// The SQL kind, as `information_schema.table_constraints` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::PrimaryKey { .. } => "PRIMARY KEY",
            Constraint::Unique { .. } => "UNIQUE",
            Constraint::Check { .. } => "CHECK",
            Constraint::ForeignKey { .. } => "FOREIGN KEY",
        }
    }

    /// The constrained columns (none for CHECK).
    pub fn columns(&self) -> &[String] {
        match self {
            Constraint::PrimaryKey { columns, .. }
            | Constraint::Unique { columns, .. }
            | Constraint::ForeignKey { columns, .. } => columns,
            Constraint::Check { .. } => &[],
        }
    }
}

/// An index (`CREATE INDEX`), mapped onto what a columnar file can do. A B-tree index (the
/// default) sorts data files by its columns, so min/max statistics and the page index skip
/// what a lookup or range on its leading columns does not need; a hash index gives its columns
/// bloom filters, which skip row groups that cannot hold a looked-up value. Sorted columns
/// need none: their min/max statistics and page index narrow a lookup to a page, smaller than
/// the bloom filter of one row group (about 400 KB for 512 Ki distinct values). `INCLUDE` columns are recorded: every column of a file has
/// statistics, and a scan reads only the columns a query names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The index's name, unique in its table.
    pub name: String,
    /// The indexed columns, in order.
    pub columns: Vec<String>,
    /// `INCLUDE (...)`: the covered columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// B-tree or hash.
    pub kind: IndexKind,
    /// Data files written before the index that a background build (`CREATE INDEX
    /// CONCURRENTLY`) has still to rewrite under it; empty once the index is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

/// How an [`Index`] works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// A sort key.
    BTree,
    /// Bloom filters on the columns.
    Hash,
}

impl IndexKind {
    /// The SQL name (`USING BTREE`).
    pub fn sql_name(self) -> &'static str {
        match self {
            IndexKind::BTree => "BTREE",
            IndexKind::Hash => "HASH",
        }
    }
}

impl TableMetadata {
    /// Metadata with `columns` and nothing else: no partitioning, properties or constraints.
    pub fn new(columns: Vec<ColumnDef>) -> Self {
        Self {
            columns,
            partitioning: None,
            properties: BTreeMap::new(),
            constraints: Vec::new(),
            last_field_id: 0,
            name_mapping: BTreeMap::new(),
            indexes: Vec::new(),
            cluster_by: Vec::new(),
            tests: Vec::new(),
            tags: BTreeMap::new(),
        }
    }

    /// The columns data files are sorted by: the clustering key if one is set, else the
    /// columns of the first B-tree index; empty when files keep the order rows came in.
    pub fn sort_key(&self) -> &[String] {
        if !self.cluster_by.is_empty() {
            return &self.cluster_by;
        }
        self.indexes
            .iter()
            .find(|i| i.kind == IndexKind::BTree)
            .map_or(&[], |i| &i.columns)
    }

    /// Whether the sort key is a Z-order curve over several columns (`CLUSTER BY` with more
    /// than one) rather than a lexicographic order (a composite index).
    pub fn sorts_by_curve(&self) -> bool {
        self.cluster_by.len() > 1
    }

    /// The columns data files carry Parquet bloom filters for: every column of a hash index.
    pub fn bloom_filter_columns(&self) -> BTreeSet<&str> {
        self.indexes
            .iter()
            .filter(|i| i.kind == IndexKind::Hash)
            .flat_map(|i| i.columns.iter().map(String::as_str))
            .collect()
    }

    /// Indexes and the clustering key follow a column renamed `old` to `new`.
    pub fn rename_in_layout(&mut self, old: &str, new: &str) {
        let rename = |c: &mut String| {
            if c == old {
                *c = new.to_string();
            }
        };
        for index in &mut self.indexes {
            index.columns.iter_mut().for_each(rename);
            index.include.iter_mut().for_each(rename);
        }
        self.cluster_by.iter_mut().for_each(rename);
    }

    /// Drops the indexes that use `column` (as PostgreSQL does when the column goes); returns
    /// their names.
    pub fn drop_indexes_on(&mut self, column: &str) -> Vec<String> {
        let mut dropped = Vec::new();
        self.indexes.retain(|i| {
            let uses = i.columns.iter().chain(&i.include).any(|c| c == column);
            if uses {
                dropped.push(i.name.clone());
            }
            !uses
        });
        dropped
    }

    /// The data files that background index builds have still to rewrite, of those `live`
    /// accepts (files removed since need no rewrite).
    pub fn pending_files(&self, live: impl Fn(&str) -> bool) -> BTreeSet<&str> {
        self.indexes
            .iter()
            .flat_map(|i| i.pending.iter().map(String::as_str))
            .filter(|p| live(p))
            .collect()
    }

    /// Records that the files `rewritten` were written again under this metadata, and that
    /// only files `live` accepts remain: background builds have nothing left to do for the
    /// others.
    pub fn rewrote(&mut self, rewritten: &BTreeSet<&str>, live: impl Fn(&str) -> bool) {
        for index in &mut self.indexes {
            index
                .pending
                .retain(|p| !rewritten.contains(p.as_str()) && live(p));
        }
    }

    /// The index named `name` (case-insensitively, as SQL names are).
    pub fn index(&self, name: &str) -> Option<&Index> {
        self.indexes
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }

    /// Gives each column without a field id one: the id of the column of that name in `base`
    /// (the metadata this replaces) if there is one, else a new id.
    pub fn assign_field_ids(&mut self, base: Option<&TableMetadata>) {
        if let Some(base) = base {
            self.last_field_id = self.last_field_id.max(base.last_field_id);
        }
        for column in &mut self.columns {
            if column.field_id != 0 {
                continue;
            }
            let known = base
                .and_then(|b| b.column(&column.name))
                .map(|c| c.field_id);
            column.field_id = match known {
                Some(id) if id != 0 => id,
                _ => {
                    self.last_field_id += 1;
                    self.last_field_id
                }
            };
        }
        let highest = self.columns.iter().map(|c| c.field_id).max().unwrap_or(0);
        self.last_field_id = self.last_field_id.max(highest);
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The statistics of column `name` in `file`, found by the column's field id: the file may
    /// have been written under another name for it, or before it existed (no statistics).
    pub fn stats_of<'a>(&self, file: &'a DataFile, name: &str) -> Option<&'a ColumnStats> {
        let id = self.column(name)?.field_id;
        let ids = if file.field_ids.is_empty() {
            &self.name_mapping
        } else {
            &file.field_ids
        };
        let (in_file, _) = ids.iter().find(|(_, i)| **i == id)?;
        file.stats.get(in_file)
    }

    /// The schema data files are written with: [`schema`](Self::schema), each field carrying
    /// its column's field id as Parquet field id.
    pub fn file_schema(&self) -> SchemaRef {
        let schema = self.schema();
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .zip(&self.columns)
            .map(|(f, c)| {
                let mut metadata = f.metadata().clone();
                metadata.insert(
                    parquet::arrow::PARQUET_FIELD_ID_META_KEY.to_string(),
                    c.field_id.to_string(),
                );
                f.as_ref().clone().with_metadata(metadata)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The Arrow schema of the table. JSON columns carry `strata.sql_type = JSON` metadata.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                let field = Field::new(&c.name, c.data_type.clone(), c.nullable);
                match &c.sql_type {
                    Some(t) => field.with_metadata(
                        [("strata.sql_type".to_string(), t.clone())]
                            .into_iter()
                            .collect(),
                    ),
                    None => field,
                }
            })
            .collect();
        Arc::new(Schema::new(fields))
    }
}

/// A value in column statistics, kept in the log as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatValue {
    /// Integers, dates (days) and timestamps (ticks of the column unit).
    Int(i64),
    /// Unsigned integers.
    UInt(u64),
    /// Floating point numbers.
    Float(f64),
    /// Raw decimal value (unscaled), as text to keep all 38 digits.
    Decimal(String),
    /// Strings.
    Str(String),
    /// Booleans.
    Bool(bool),
}

/// Min, max and null count of one column in one data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// Smallest non-null value, if known.
    pub min: Option<StatValue>,
    /// Largest non-null value, if known.
    pub max: Option<StatValue>,
    /// NULLs in the column.
    pub null_count: u64,
}

/// A live data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path under the warehouse root.
    pub path: String,
    /// The partition it belongs to (empty for an unpartitioned table).
    pub partition: String,
    /// Rows in the file.
    pub rows: u64,
    /// Bytes of the file.
    pub size_bytes: u64,
    /// Per column, by its name in the file.
    pub stats: BTreeMap<String, ColumnStats>,
    /// The field id of each column of the file, by its name in the file; empty for files
    /// written before field ids (read by the table's name mapping).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_ids: BTreeMap<String, u32>,
    /// The rows of the file that later changes deleted, if any (merge-on-read: the file stays,
    /// its deleted rows are marked; see [`crate::deletion`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_vector: Option<DeletionVector>,
}

impl DataFile {
    /// Rows of the file that are live: its rows less those its deletion vector marks.
    pub fn live_rows(&self) -> u64 {
        self.rows.saturating_sub(self.deleted_rows())
    }

    /// Rows its deletion vector marks deleted.
    pub fn deleted_rows(&self) -> u64 {
        self.deletion_vector.as_ref().map_or(0, |d| d.cardinality)
    }

    /// Whether `other` is this very file in the same state: same path, same deleted rows.
    pub fn same_version(&self, other: &DataFile) -> bool {
        self.path == other.path
            && self.deletion_vector.as_ref().map(|d| &d.path)
                == other.deletion_vector.as_ref().map(|d| &d.path)
    }
}

/// A source file that was loaded by `COPY INTO`, remembered so reloading skips it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedFile {
    /// The source's location as given.
    pub file: String,
    /// The source's size.
    pub size_bytes: u64,
    /// Modification time of the source, part of its identity.
    pub modified: Option<DateTime<Utc>>,
    /// Rows loaded.
    pub rows: u64,
    /// Records left out as bad (`ON_ERROR = CONTINUE`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_rejected: u64,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LoadedFile {
    /// Identity of a source file: a changed file (size or time) is loaded again.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.file,
            self.size_bytes,
            self.modified.map(|t| t.timestamp_micros()).unwrap_or(0)
        )
    }
}

/// One change inside a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replaces the table metadata.
    Metadata(TableMetadata),
    /// Adds a data file.
    Add(DataFile),
    /// Removes a data file from the snapshot (the file itself stays until VACUUM).
    Remove {
        /// The file's path.
        path: String,
        /// Its rows.
        rows: u64,
    },
    /// Records a loaded source file.
    Load(LoadedFile),
    /// A statement is about to remove keys of a table this table references (see [`Fence`]).
    Fence(Fence),
    /// This commit is the removal that [`Fence`] `id` announced.
    Fenced(String),
    /// An ingest channel's append: its offset token, committed with the rows it carried.
    Channel(ChannelOffset),
}

/// One append of an ingest channel, recorded in the commit that holds its rows: the table
/// and the channel's offset token change together or not at all, which is what makes ingest
/// exactly-once (a producer that reopens a channel resumes after the token the table holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOffset {
    /// The channel's name, unique within the table.
    pub channel: String,
    /// The client's opaque token for the data appended so far (a Kafka offset, a file
    /// position).
    pub offset_token: String,
    /// Rows this commit appended through the channel.
    pub rows: u64,
    /// Who appended.
    pub owner: String,
}

/// An ingest channel as a snapshot knows it: the last committed token and totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// The offset token of the channel's last committed append.
    pub offset_token: String,
    /// Rows appended through the channel, over all its commits.
    pub rows: u64,
    /// Commits that advanced the channel.
    pub commits: u64,
    /// When the channel last advanced.
    pub last_commit_at: DateTime<Utc>,
    /// Who opened the channel (made its first append).
    pub owner: String,
}

/// A channel advance in a [`Transaction`]: the append's offset, and the token the channel
/// must hold when it commits (`None`: the channel must not exist yet). A commit that finds
/// another token there conflicts: another producer moved the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAdvance {
    /// The append.
    pub offset: ChannelOffset,
    /// The token it follows.
    pub previous: Option<String>,
}

/// The announcement, in a referencing (child) table's log, that a statement is about to remove
/// keys of the table it references (its parent). Foreign keys hold across the two logs by it:
///
/// - the remover commits the fence to the child's log on the snapshot whose references it
///   checked, so a child write committed since then makes the fence conflict (and the remover
///   check again);
/// - a child write that a fence overtakes conflicts, and reruns; one whose snapshot holds a
///   fresh fence waits until the parent's log shows the fenced removal, and checks its keys
///   against the parent after it.
///
/// A fence is fresh for [`FENCE_TTL_SECONDS`]; the remover gives up if its own commit has
/// not landed within half of that, so a remover that crashed blocks nobody for longer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The id of the announcing statement; its parent commit carries [`Action::Fenced`].
    pub id: String,
    /// The parent table's id.
    pub parent: String,
    /// The parent's version the removal is based on: the removal commits after it.
    pub parent_version: Version,
    /// When the fence was committed.
    pub at: DateTime<Utc>,
}

/// How long a [`Fence`] holds child writes back.
pub const FENCE_TTL_SECONDS: i64 = 60;

/// A commit file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// The version this commit creates.
    pub version: Version,
    /// Random id; a writer recognises its own commit by it.
    pub txn_id: String,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
    /// `CREATE TABLE`, `INSERT`, `COPY INTO`, `ADD PARTITION`, ...
    pub operation: String,
    /// What it changes.
    pub actions: Vec<Action>,
    /// It rewrote files without changing a row (`OPTIMIZE`, `CREATE INDEX`, `CLUSTER BY`):
    /// what was computed from the table before it still holds (Delta's `dataChange = false`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rewrite_only: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Commit {
    /// Rows added by this commit. A file that the commit removes and adds back (its deletion
    /// vector changed) counts only as the rows it lost.
    pub fn rows_added(&self) -> u64 {
        self.row_changes().0
    }

    /// Rows removed by this commit (see [`Commit::rows_added`]).
    pub fn rows_removed(&self) -> u64 {
        self.row_changes().1
    }

    fn row_changes(&self) -> (u64, u64) {
        let removed: BTreeMap<&str, u64> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove { path, rows } => Some((path.as_str(), *rows)),
                _ => None,
            })
            .collect();
        let (mut added, mut gone) = (0u64, 0u64);
        let mut marked = BTreeSet::new();
        for a in &self.actions {
            if let Action::Add(f) = a {
                match removed.get(f.path.as_str()) {
                    Some(before) => {
                        marked.insert(f.path.as_str());
                        gone = gone.saturating_add(before.saturating_sub(f.live_rows()));
                    }
                    None => added = added.saturating_add(f.live_rows()),
                }
            }
        }
        for (path, rows) in removed {
            if !marked.contains(path) {
                gone = gone.saturating_add(rows);
            }
        }
        (added, gone)
    }
}

/// The state of a table at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The version of this snapshot.
    pub version: Version,
    /// When that version was committed.
    pub committed_at: DateTime<Utc>,
    /// The table's columns, partitioning, properties and constraints.
    pub metadata: TableMetadata,
    /// Live files by path.
    pub files: BTreeMap<String, DataFile>,
    /// Source files loaded by `COPY INTO`, by [`LoadedFile::key`].
    pub loaded: BTreeMap<String, LoadedFile>,
    /// The latest [`Fence`] per referenced table, by the parent's id.
    #[serde(default)]
    pub fences: BTreeMap<String, Fence>,
    /// Ingest channels by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, Channel>,
}

impl Snapshot {
    fn apply(&mut self, commit: &Commit) {
        self.version = commit.version;
        self.committed_at = commit.committed_at;
        for action in &commit.actions {
            match action {
                Action::Metadata(m) => self.metadata = m.clone(),
                Action::Add(f) => {
                    self.files.insert(f.path.clone(), f.clone());
                }
                Action::Remove { path, .. } => {
                    self.files.remove(path);
                }
                Action::Load(l) => {
                    self.loaded.insert(l.key(), l.clone());
                }
                Action::Fence(f) => {
                    self.fences.insert(f.parent.clone(), f.clone());
                }
                Action::Fenced(_) => {}
                Action::Channel(c) => {
                    let channel = self.channels.entry(c.channel.clone()).or_insert(Channel {
                        offset_token: String::new(),
                        rows: 0,
                        commits: 0,
                        last_commit_at: commit.committed_at,
                        owner: c.owner.clone(),
                    });
                    channel.offset_token = c.offset_token.clone();
                    channel.rows = channel.rows.saturating_add(c.rows);
                    channel.commits = channel.commits.saturating_add(1);
                    channel.last_commit_at = commit.committed_at;
                }
            }
        }
    }

    fn from_first_commit(commit: &Commit) -> Result<Self> {
        let metadata = commit
            .actions
            .iter()
            .find_map(|a| match a {
                Action::Metadata(m) => Some(m.clone()),
                _ => None,
            })
            .ok_or_else(|| Error::CorruptMetadata {
                path: "version 0".to_string(),
                reason: "the first commit has no metadata".to_string(),
            })?;
        let mut snapshot = Snapshot {
            version: commit.version,
            committed_at: commit.committed_at,
            metadata,
            files: BTreeMap::new(),
            loaded: BTreeMap::new(),
            fences: BTreeMap::new(),
            channels: BTreeMap::new(),
        };
        snapshot.apply(commit);
        Ok(snapshot)
    }

    /// Total rows of the live files.
    pub fn row_count(&self) -> u64 {
        self.files.values().map(|f| f.live_rows()).sum()
    }

    /// Live files of one partition.
    pub fn files_in<'a>(&'a self, partition: &'a str) -> impl Iterator<Item = &'a DataFile> + 'a {
        self.files
            .values()
            .filter(move |f| f.partition == partition)
    }
}

/// A change to commit: built against a base snapshot, re-applied on a newer one after a lost race.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// The statement kind, recorded in the commit.
    pub operation: String,
    /// New metadata, for changes that replace it wholesale (`CREATE`, schema changes).
    pub replace_metadata: Option<TableMetadata>,
    /// Partitions to add (interval partitions, `ADD PARTITION`); idempotent on retry.
    pub add_partitions: Vec<Partition>,
    /// `add_partitions` must not exist yet (`ADD PARTITION`): a concurrent commit that added
    /// one of them is a conflict, not the same partition made twice (interval partitions).
    pub new_partitions: bool,
    /// Partitions to drop from the layout (`DROP PARTITION`).
    pub drop_partitions: Vec<String>,
    /// Files to add.
    pub add: Vec<DataFile>,
    /// Files to remove; a concurrent removal of the same file is a conflict.
    pub remove: Vec<DataFile>,
    /// Source files this commit loads.
    pub loads: Vec<LoadedFile>,
    /// Fail if a concurrent commit loaded one of `loads` first (`COPY INTO` without `FORCE`).
    pub reject_loaded_twice: bool,
    /// The rows of the table this transaction's statement read: a concurrent commit that
    /// added or removed any of them is a conflict (see [`Reads`]).
    pub reads: Reads,
    /// A fence to commit (to a child table's log) before removing keys of its parent.
    pub fence: Option<Fence>,
    /// The fence this commit's removal was announced by.
    pub fenced: Option<String>,
    /// The files it adds hold exactly the rows of those it removes ([`Commit::rewrite_only`]).
    pub rewrite_only: bool,
    /// Ingest channels this commit advances, with the rows it adds.
    pub channels: Vec<ChannelAdvance>,
}

/// What a statement read from the table it writes, so that its commit can check that no
/// concurrent commit changed it: the read side of WriteSerializable isolation.
///
/// `UPDATE`, `DELETE` and `MERGE` read the partitions their scans kept; key checks and
/// refreshes read the whole table; a blind append (`INSERT ... VALUES`, `COPY INTO`) reads
/// nothing, so appends never conflict with each other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reads {
    /// Nothing: a blind append.
    #[default]
    Nothing,
    /// The rows of these partitions, and of any partition created after the read (its rows
    /// may match the statement's predicate).
    Partitions(BTreeSet<String>),
    /// Every row of the table.
    Table,
}

impl Reads {
    /// What both `self` and `other` read.
    pub fn union(self, other: Reads) -> Reads {
        match (self, other) {
            (Reads::Table, _) | (_, Reads::Table) => Reads::Table,
            (Reads::Nothing, r) | (r, Reads::Nothing) => r,
            (Reads::Partitions(mut a), Reads::Partitions(b)) => {
                a.extend(b);
                Reads::Partitions(a)
            }
        }
    }

    /// Whether a row of `partition` (of a table whose layout at the read was `read_layout`)
    /// was read.
    fn covers(&self, partition: &str, read_layout: Option<&Partitioning>) -> bool {
        match self {
            Reads::Nothing => false,
            Reads::Table => true,
            Reads::Partitions(read) => {
                read.contains(partition)
                    || read_layout.is_none_or(|l| l.partition(partition).is_none())
            }
        }
    }

    /// Why the commits between `base` and `newer` conflict with these reads, if they do.
    fn conflict(&self, base: &Snapshot, newer: &Snapshot) -> Option<String> {
        if *self == Reads::Nothing {
            return None;
        }
        let layout = base.metadata.partitioning.as_ref();
        let changed = |f: &DataFile| self.covers(&f.partition, layout);
        let added = newer
            .files
            .values()
            .find(|f| !base.files.contains_key(&f.path) && changed(f));
        // A file gone, or still there with rows deleted since (a new deletion vector).
        let removed = base.files.values().find(|f| {
            newer
                .files
                .get(&f.path)
                .is_none_or(|now| !now.same_version(f))
                && changed(f)
        });
        let what = match (added, removed) {
            (Some(f), _) => format!("added rows to {}", partition_label(&f.partition)),
            (None, Some(f)) => format!("removed rows from {}", partition_label(&f.partition)),
            (None, None) if newer.metadata.columns != base.metadata.columns => {
                "changed the table's columns".to_string()
            }
            (None, None) if newer.metadata.constraints != base.metadata.constraints => {
                "changed the table's constraints".to_string()
            }
            (None, None) => return None,
        };
        Some(format!(
            "a concurrent commit (version {}) {what} that this statement read",
            newer.version
        ))
    }
}

fn partition_label(partition: &str) -> String {
    if partition.is_empty() {
        "the table".to_string()
    } else {
        format!("partition '{partition}'")
    }
}

impl Transaction {
    /// An empty transaction for `operation`.
    pub fn new(operation: impl Into<String>) -> Self {
        Self {
            operation: operation.into(),
            ..Default::default()
        }
    }

    /// Whether this transaction adds or removes rows (not only metadata, loads or fences).
    pub fn changes_rows(&self) -> bool {
        !self.add.is_empty() || !self.remove.is_empty() || !self.drop_partitions.is_empty()
    }

    /// The snapshot this transaction would make of `base` if it committed now: what a check
    /// that must see the rows about to be committed (a data-test gate) reads.
    pub fn preview(&self, table: &str, base: &Snapshot) -> Result<Snapshot> {
        let actions = self
            .actions(table, base)
            .map_err(|reason| Error::CommitConflict {
                table: table.to_string(),
                version: base.version,
                reason,
            })?;
        let mut snapshot = base.clone();
        snapshot.apply(&Commit {
            version: Version(base.version.0.saturating_add(1)),
            txn_id: String::new(),
            committed_at: Utc::now().max(base.committed_at),
            operation: self.operation.clone(),
            actions,
            rewrite_only: self.rewrite_only,
        });
        Ok(snapshot)
    }

    /// The actions of this transaction on top of `base`, or the reason it conflicts.
    fn actions(&self, table: &str, base: &Snapshot) -> Result<Vec<Action>, String> {
        let mut actions = Vec::new();
        let mut metadata = match &self.replace_metadata {
            Some(m) => {
                let mut m = m.clone();
                m.assign_field_ids(Some(&base.metadata));
                // Partitions a concurrent commit created stay (the key column may be renamed).
                if let (Some(mine), Some(theirs)) =
                    (&mut m.partitioning, &base.metadata.partitioning)
                {
                    for p in &theirs.partitions {
                        if mine.partition(&p.name).is_none() {
                            mine.ensure(p)?;
                        }
                    }
                }
                m
            }
            None => base.metadata.clone(),
        };
        if !self.add_partitions.is_empty() || !self.drop_partitions.is_empty() {
            let layout = metadata
                .partitioning
                .as_mut()
                .ok_or_else(|| format!("table '{table}' is no longer partitioned"))?;
            for p in &self.add_partitions {
                if self.new_partitions && layout.partition(&p.name).is_some() {
                    return Err(format!(
                        "partition '{}' was added by another statement",
                        p.name
                    ));
                }
                layout.ensure(p)?;
            }
            for name in &self.drop_partitions {
                layout
                    .drop_partition(table, name)
                    .map_err(|e| e.to_string())?;
            }
        }
        if metadata != base.metadata {
            actions.push(Action::Metadata(metadata.clone()));
        }
        // Every file of a dropped partition goes, including files a concurrent INSERT added.
        let mut remove: Vec<&DataFile> = self.remove.iter().collect();
        for name in &self.drop_partitions {
            for f in base.files_in(name) {
                if !remove.iter().any(|r| r.path == f.path) {
                    remove.push(f);
                }
            }
        }
        for f in remove {
            match base.files.get(&f.path) {
                None => return Err(format!("file {} was removed by another statement", f.path)),
                // Its deletion vector changed: rows this statement keeps were deleted meanwhile.
                Some(now) if !now.same_version(f) => {
                    return Err(format!(
                        "rows of file {} were deleted by another statement",
                        f.path
                    ));
                }
                Some(_) => {}
            }
            actions.push(Action::Remove {
                path: f.path.clone(),
                rows: f.live_rows(),
            });
        }
        for f in &self.add {
            if let Some(layout) = &metadata.partitioning
                && layout.partition(&f.partition).is_none()
            {
                return Err(format!(
                    "partition '{}' was dropped by another statement",
                    f.partition
                ));
            }
            actions.push(Action::Add(f.clone()));
        }
        if self.reject_loaded_twice
            && let Some(l) = self
                .loads
                .iter()
                .find(|l| base.loaded.contains_key(&l.key()))
        {
            return Err(format!("{} was loaded by another statement", l.file));
        }
        actions.extend(self.loads.iter().cloned().map(Action::Load));
        if let Some(fence) = &self.fence {
            actions.push(Action::Fence(fence.clone()));
        }
        if let Some(id) = &self.fenced {
            actions.push(Action::Fenced(id.clone()));
        }
        for advance in &self.channels {
            let name = &advance.offset.channel;
            let now = base.channels.get(name).map(|c| &c.offset_token);
            if now != advance.previous.as_ref() {
                return Err(match now {
                    Some(token) => format!(
                        "ingest channel '{name}' was moved to offset token '{token}' by another \
                         producer"
                    ),
                    None => format!("ingest channel '{name}' was dropped by another statement"),
                });
            }
            actions.push(Action::Channel(advance.offset.clone()));
        }
        Ok(actions)
    }

    /// Why this transaction conflicts with what was committed between `base` and `newer`:
    /// the rows it read changed, or it adds rows and a fence arrived meanwhile (a parent's
    /// keys may be going away; its references are checked again).
    fn conflict(&self, base: &Snapshot, newer: &Snapshot) -> Option<String> {
        if let Some(reason) = self.reads.conflict(base, newer) {
            return Some(reason);
        }
        // New metadata was made from `base`'s: committed over another change, it would undo it.
        let (b, n) = (&base.metadata, &newer.metadata);
        if self.replace_metadata.is_some()
            && (b.columns != n.columns
                || b.constraints != n.constraints
                || b.properties != n.properties
                || b.indexes != n.indexes
                || b.cluster_by != n.cluster_by
                || b.tests != n.tests
                || b.tags != n.tags
                || b.last_field_id != n.last_field_id)
        {
            return Some(format!(
                "a concurrent commit (version {}) changed the table's definition",
                newer.version
            ));
        }
        if !self.add.is_empty() && newer.fences != base.fences {
            return Some(format!(
                "a concurrent statement (version {}) is removing keys of a table this table \
                 references",
                newer.version
            ));
        }
        None
    }
}

/// The log of one table.
#[derive(Debug, Clone)]
pub struct TableLog {
    store: Arc<dyn ObjectStore>,
    id: TableId,
    /// Name for messages.
    name: String,
}

impl TableLog {
    /// The log of table `id`; `name` is used in messages only.
    pub fn new(store: Arc<dyn ObjectStore>, id: TableId, name: impl Into<String>) -> Self {
        Self {
            store,
            id,
            name: name.into(),
        }
    }

    /// The table's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's storage id.
    pub fn id(&self) -> &TableId {
        &self.id
    }

    /// Creates the table: writes version 0.
    pub async fn create(&self, mut metadata: TableMetadata, operation: &str) -> Result<Snapshot> {
        metadata.assign_field_ids(None);
        let commit = Commit {
            version: Version(0),
            txn_id: uuid::Uuid::new_v4().to_string(),
            committed_at: Utc::now(),
            operation: operation.to_string(),
            actions: vec![Action::Metadata(metadata)],
            rewrite_only: false,
        };
        if !self.put_commit(&commit).await? {
            return Err(Error::TableExists {
                name: self.name.clone(),
            });
        }
        Snapshot::from_first_commit(&commit)
    }

    /// Writes `commit` if its version is free. `Ok(false)` means another writer has it.
    async fn put_commit(&self, commit: &Commit) -> Result<bool> {
        let path = paths::table_commit(&self.id, commit.version);
        let body = serde_json::to_vec(commit).expect("commits serialise");
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Possibly our own write whose response was lost: read it back.
                let theirs = self.read_commit(commit.version).await?;
                Ok(theirs.is_some_and(|c| c.txn_id == commit.txn_id))
            }
            // The write may have landed with its answer lost (a timeout, a reset connection):
            // what is at that version decides, so a landed commit is never reported failed.
            Err(e) => match self.read_commit(commit.version).await {
                Ok(Some(c)) => Ok(c.txn_id == commit.txn_id),
                Ok(None) | Err(_) => Err(e.into()),
            },
        }
    }

    /// Reads one commit; `None` if it does not exist.
    pub async fn read_commit(&self, version: Version) -> Result<Option<Commit>> {
        let path = paths::table_commit(&self.id, version);
        match self.store.get(&path).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                let commit: Commit = parse(&path, &bytes)?;
                // A damaged file naming another version would replay in a loop or skip one.
                if commit.version != version {
                    return Err(Error::CorruptMetadata {
                        path: path.to_string(),
                        reason: format!("the file says it is version {}", commit.version),
                    });
                }
                Ok(Some(commit))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The checkpoint at `version`. A damaged one (truncated, not JSON, not the version it
    /// says) counts as missing: the commits it summarises are all still in the log.
    async fn read_checkpoint(&self, version: Version) -> Result<Option<Snapshot>> {
        let path = paths::table_checkpoint(&self.id, version);
        match self.store.get(&path).await {
            Ok(r) => match parse::<Snapshot>(&path, &r.bytes().await?) {
                Ok(s) if s.version == version => Ok(Some(s)),
                Ok(_) | Err(_) => {
                    tracing::warn!(table = %self.name, checkpoint = %path, "damaged checkpoint; replaying the log");
                    Ok(None)
                }
            },
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The newest snapshot. Reads the newest checkpoint and the commits after it.
    ///
    /// Concurrency: returns a consistent snapshot as of some moment during the call.
    pub async fn latest(&self) -> Result<Snapshot> {
        let hint = match self.store.get(&paths::last_checkpoint(&self.id)).await {
            Ok(r) => String::from_utf8_lossy(&r.bytes().await?)
                .trim()
                .parse::<u64>()
                .ok(),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let base = match hint {
            Some(v) => self.read_checkpoint(Version(v)).await?,
            None => None,
        };
        self.replay(base, None).await
    }

    /// Brings `snapshot` up to date by reading the commits after it.
    pub async fn refresh(&self, snapshot: Snapshot) -> Result<Snapshot> {
        self.replay(Some(snapshot), None).await
    }

    /// Replays commits on top of `base` (or from version 0) up to `until` (or the end).
    async fn replay(&self, base: Option<Snapshot>, until: Option<Version>) -> Result<Snapshot> {
        let mut snapshot = match base {
            Some(s) => s,
            None => {
                let first =
                    self.read_commit(Version(0))
                        .await?
                        .ok_or_else(|| Error::TableNotFound {
                            name: self.name.clone(),
                        })?;
                Snapshot::from_first_commit(&first)?
            }
        };
        loop {
            let next = Version(snapshot.version.0 + 1);
            if until.is_some_and(|u| next > u) {
                break;
            }
            match self.read_commit(next).await? {
                Some(c) => snapshot.apply(&c),
                None => break,
            }
        }
        Ok(snapshot)
    }

    /// The snapshot at `version` (time travel).
    pub async fn at_version(&self, version: Version) -> Result<Snapshot> {
        let not_found = || Error::VersionNotFound {
            table: self.name.clone(),
            version,
        };
        // A version past the end does not exist; looking for its checkpoint would walk down
        // from it one interval at a time (VERSION => 9223372036854775807 never returned).
        if self.read_commit(version).await?.is_none() {
            return Err(not_found());
        }
        let mut checkpoint = version.0 / CHECKPOINT_INTERVAL * CHECKPOINT_INTERVAL;
        let mut base = None;
        while checkpoint > 0 {
            if let Some(s) = self.read_checkpoint(Version(checkpoint)).await? {
                base = Some(s);
                break;
            }
            checkpoint -= CHECKPOINT_INTERVAL;
        }
        let snapshot = self.replay(base, Some(version)).await?;
        if snapshot.version != version {
            return Err(not_found());
        }
        Ok(snapshot)
    }

    /// The snapshot that was current at `time`: the newest commit at or before it.
    pub async fn at_time(&self, time: DateTime<Utc>) -> Result<Snapshot> {
        let latest = self.latest().await?;
        if latest.committed_at <= time {
            return Ok(latest);
        }
        // Commit times never decrease (see `commit`), so binary search the versions.
        let (mut lo, mut hi) = (0u64, latest.version.0);
        let mut found = None;
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let commit =
                self.read_commit(Version(mid))
                    .await?
                    .ok_or_else(|| Error::VersionNotFound {
                        table: self.name.clone(),
                        version: Version(mid),
                    })?;
            if commit.committed_at <= time {
                found = Some(mid);
                lo = mid + 1;
            } else if mid == 0 {
                break;
            } else {
                hi = mid - 1;
            }
        }
        match found {
            Some(v) => self.at_version(Version(v)).await,
            None => Err(Error::NoVersionAtTime {
                table: self.name.clone(),
                timestamp: time.to_rfc3339(),
            }),
        }
    }

    /// Every commit, oldest first.
    pub async fn history(&self) -> Result<Vec<Commit>> {
        let dir = paths::table_log_dir(&self.id);
        let mut versions: Vec<u64> = self
            .store
            .list(Some(&dir))
            .try_filter_map(|meta| async move {
                let name = meta.location.filename().unwrap_or_default().to_string();
                Ok(name
                    .strip_suffix(".json")
                    .filter(|n| !n.contains('.'))
                    .and_then(|n| n.parse::<u64>().ok()))
            })
            .try_collect()
            .await?;
        versions.sort_unstable();
        futures::stream::iter(versions)
            .map(|v| self.read_commit(Version(v)))
            .buffered(16)
            .try_filter_map(|c| async move { Ok(c) })
            .try_collect()
            .await
    }

    /// Commits `txn` on top of `base`, retrying on top of newer commits after a lost race.
    ///
    /// Concurrency: any number of processes may commit to one table at once. Appends always
    /// succeed; a transaction fails with [`Error::CommitConflict`] if a concurrent commit
    /// removed a file it removes, dropped a partition it writes to, or changed rows it read
    /// ([`Transaction::reads`]).
    pub async fn commit(&self, base: &Snapshot, txn: &Transaction) -> Result<Snapshot> {
        faults::commit_barrier().await;
        self.check_uploaded(base, &txn.add).await?;
        let txn_id = uuid::Uuid::new_v4().to_string();
        let mut snapshot = base.clone();
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let version = Version(snapshot.version.0 + 1);
            let actions =
                txn.actions(&self.name, &snapshot)
                    .map_err(|reason| Error::CommitConflict {
                        table: self.name.clone(),
                        version: snapshot.version,
                        reason,
                    })?;
            let commit = Commit {
                version,
                txn_id: txn_id.clone(),
                // Commit times never go backwards, so time travel can binary search them.
                committed_at: Utc::now().max(snapshot.committed_at),
                operation: txn.operation.clone(),
                actions,
                rewrite_only: txn.rewrite_only,
            };
            faults::failpoint("before_commit");
            if self.put_commit(&commit).await? {
                snapshot.apply(&commit);
                if version.0.is_multiple_of(CHECKPOINT_INTERVAL) {
                    self.write_checkpoint(&snapshot).await;
                }
                return Ok(snapshot);
            }
            let newer = self.refresh(snapshot).await?;
            if let Some(reason) = txn.conflict(base, &newer) {
                return Err(Error::CommitConflict {
                    table: self.name.clone(),
                    version: newer.version,
                    reason,
                });
            }
            snapshot = newer;
        }
        Err(Error::TooManyConflicts {
            name: self.name.clone(),
            attempts: MAX_COMMIT_ATTEMPTS,
        })
    }

    /// Fails if a data file this transaction uploaded is gone: a VACUUM with a retention
    /// shorter than the statement's run took it. Committing would point at a missing file.
    async fn check_uploaded(&self, base: &Snapshot, files: &[DataFile]) -> Result<()> {
        let paths: Vec<String> = files
            .iter()
            .flat_map(|f| {
                std::iter::once(f.path.clone())
                    .chain(f.deletion_vector.as_ref().map(|d| d.path.clone()))
            })
            .collect();
        let missing = futures::stream::iter(paths)
            .map(|path| {
                let store = Arc::clone(&self.store);
                async move {
                    match store.head(&Path::from(path.as_str())).await {
                        Ok(_) => Ok(None),
                        Err(object_store::Error::NotFound { .. }) => Ok(Some(path)),
                        Err(e) => Err(Error::from(e)),
                    }
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<Option<String>>>()
            .await?;
        match missing.into_iter().flatten().next() {
            None => Ok(()),
            Some(path) => Err(Error::CommitConflict {
                table: self.name.clone(),
                version: base.version,
                reason: format!(
                    "data file {path} that this statement wrote was deleted before its commit \
                     (a VACUUM with a shorter retention than the statement took to run)"
                ),
            }),
        }
    }

    /// Writes a checkpoint of `snapshot`. Failure only costs replay time, so it is logged.
    async fn write_checkpoint(&self, snapshot: &Snapshot) {
        let body = serde_json::to_vec(snapshot).expect("snapshots serialise");
        let path = paths::table_checkpoint(&self.id, snapshot.version);
        let result = async {
            self.store.put(&path, PutPayload::from(body)).await?;
            self.store
                .put(
                    &paths::last_checkpoint(&self.id),
                    PutPayload::from(snapshot.version.0.to_string()),
                )
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(table = %self.name, version = %snapshot.version, error = %e, "checkpoint not written");
        }
    }
}

/// Parses a JSON metadata file, naming it on failure.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(path: &Path, bytes: &Bytes) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::CorruptMetadata {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn metadata() -> TableMetadata {
        TableMetadata {
            columns: vec![ColumnDef {
                name: "x".into(),
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
            name_mapping: Default::default(),
            indexes: Vec::new(),
            cluster_by: Vec::new(),
            tests: Vec::new(),
            tags: Default::default(),
        }
    }

    fn file(path: &str, rows: u64) -> DataFile {
        DataFile {
            path: path.into(),
            partition: String::new(),
            rows,
            size_bytes: 10,
            stats: BTreeMap::new(),
            field_ids: Default::default(),
            deletion_vector: None,
        }
    }

    /// An INSERT of data file `path`, uploaded to the log's store first.
    async fn append(log: &TableLog, path: &str, rows: u64) -> Transaction {
        log.store
            .put(&Path::from(path), PutPayload::from_static(b"data"))
            .await
            .unwrap();
        Transaction {
            add: vec![file(path, rows)],
            ..Transaction::new("INSERT")
        }
    }

    /// Deleted rows are never brought back: for every way a statement can take a file out of
    /// the snapshot (a rewrite that reads nothing, a re-mark with a bigger deletion vector)
    /// racing every way another can delete rows of it (a re-mark, a removal), the later commit
    /// conflicts instead of undoing the earlier one.
    #[tokio::test]
    async fn a_file_whose_deleted_rows_changed_is_never_replaced_blindly() {
        let vector = |path: &str, rows: u64| crate::DeletionVector {
            path: path.to_string(),
            cardinality: rows,
            size_bytes: 8,
            rows: None,
        };
        for first in ["re-mark", "remove"] {
            for second in ["rewrite", "re-mark"] {
                let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
                let log = TableLog::new(Arc::clone(&store), TableId("t".into()), "t");
                let v0 = log.create(metadata(), "CREATE TABLE").await.unwrap();
                let v1 = log.commit(&v0, &append(&log, "a", 10).await).await.unwrap();
                let base = v1.files["a"].clone();
                for dv in ["a.1.dv", "a.2.dv"] {
                    store
                        .put(&Path::from(dv), PutPayload::from_static(b"vector"))
                        .await
                        .unwrap();
                }
                let marked = |dv: &str, rows: u64| DataFile {
                    deletion_vector: Some(vector(dv, rows)),
                    ..base.clone()
                };
                let txn = |kind: &str, dv: &str| match kind {
                    "re-mark" => Transaction {
                        remove: vec![base.clone()],
                        add: vec![marked(dv, 2)],
                        ..Transaction::new("DELETE")
                    },
                    "remove" => Transaction {
                        remove: vec![base.clone()],
                        ..Transaction::new("DELETE")
                    },
                    _ => Transaction {
                        remove: vec![base.clone()],
                        add: vec![file("b", 10)],
                        ..Transaction::new("OPTIMIZE")
                    },
                };
                store
                    .put(&Path::from("b"), PutPayload::from_static(b"data"))
                    .await
                    .unwrap();
                log.commit(&v1, &txn(first, "a.1.dv")).await.unwrap();
                let lost = log.commit(&v1, &txn(second, "a.2.dv")).await;
                assert!(
                    matches!(lost, Err(Error::CommitConflict { .. })),
                    "{first} then {second}: {lost:?}"
                );
                let now = log.latest().await.unwrap();
                assert_eq!(now.version.0, 2, "{first} then {second}");
            }
        }
    }

    /// No change to a table's definition is undone by new metadata made from an older
    /// snapshot (`ALTER TABLE`, `COMMENT`): for each kind of concurrent commit, the later
    /// commit either keeps it (appends, new partitions) or conflicts (a definition change),
    /// and the statement runs again on it.
    #[tokio::test]
    async fn new_metadata_never_undoes_a_concurrent_change() {
        for concurrent in ["append", "new partition", "add column", "property"] {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let log = TableLog::new(store, TableId("t".into()), "t");
            let mut md = metadata();
            md.columns[0].data_type = DataType::Date32;
            md.partitioning = Some(
                Partitioning::new(
                    "t",
                    "x",
                    &DataType::Date32,
                    &[("p1".into(), crate::UpperBound::Value("2024-02-01".into()))],
                    None,
                )
                .unwrap(),
            );
            let base = log.create(md, "CREATE TABLE").await.unwrap();
            let theirs = match concurrent {
                "append" => {
                    let mut txn = append(&log, "a.parquet", 1).await;
                    txn.add[0].partition = "p1".into();
                    txn
                }
                "new partition" => {
                    let mut txn = Transaction::new("ADD PARTITION");
                    let next = Partitioning::new(
                        "t",
                        "x",
                        &DataType::Date32,
                        &[
                            ("p1".into(), crate::UpperBound::Value("2024-02-01".into())),
                            ("p2".into(), crate::UpperBound::Value("2024-03-01".into())),
                        ],
                        None,
                    )
                    .unwrap();
                    let added = next.partition("p2").unwrap().clone();
                    txn.add_partitions.push(added);
                    txn
                }
                "add column" => {
                    let mut m = base.metadata.clone();
                    m.columns.push(ColumnDef::new("y", DataType::Int64, true));
                    Transaction {
                        replace_metadata: Some(m),
                        ..Transaction::new("ALTER TABLE")
                    }
                }
                _ => {
                    let mut m = base.metadata.clone();
                    m.properties.insert("comment".into(), "theirs".into());
                    Transaction {
                        replace_metadata: Some(m),
                        ..Transaction::new("COMMENT")
                    }
                }
            };
            log.commit(&base, &theirs).await.unwrap();
            let mut mine = base.metadata.clone();
            mine.columns[0].name = "renamed".into();
            mine.partitioning.as_mut().unwrap().column = "renamed".into();
            let txn = Transaction {
                replace_metadata: Some(mine),
                ..Transaction::new("ALTER TABLE")
            };
            let outcome = log.commit(&base, &txn).await;
            let latest = log.latest().await.unwrap();
            match concurrent {
                "append" | "new partition" => {
                    outcome.unwrap_or_else(|e| panic!("{concurrent}: {e}"));
                    assert_eq!(latest.metadata.columns[0].name, "renamed", "{concurrent}");
                    let layout = latest.metadata.partitioning.as_ref().unwrap();
                    assert_eq!(layout.column, "renamed");
                    if concurrent == "new partition" {
                        assert!(layout.partition("p2").is_some(), "the new partition stays");
                    } else {
                        assert_eq!(latest.files.len(), 1, "the appended file stays");
                    }
                }
                _ => {
                    let e = outcome.expect_err(concurrent);
                    assert!(
                        e.to_string().contains("changed the table's definition"),
                        "{e}"
                    );
                    assert_eq!(latest.metadata.columns[0].name, "x", "{concurrent}");
                }
            }
        }
    }

    /// Metadata written before field ids reads with ids by position and a name mapping for
    /// the files of that time; metadata with ids reads as it was written.
    #[test]
    fn metadata_from_before_field_ids_gets_ids_and_a_name_mapping() {
        let legacy = TableMetadata::new(vec![
            ColumnDef::new("a", DataType::Int64, true),
            ColumnDef::new("b", DataType::Utf8, true),
        ]);
        let json = serde_json::to_string(&legacy).unwrap();
        assert!(!json.contains("field_id"), "{json}");
        let read: TableMetadata = serde_json::from_str(&json).unwrap();
        let ids: Vec<u32> = read.columns.iter().map(|c| c.field_id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(read.last_field_id, 2);
        assert_eq!(read.name_mapping.get("b"), Some(&2));

        let mut evolved = read.clone();
        evolved.columns.remove(0);
        evolved
            .columns
            .push(ColumnDef::new("a", DataType::Int64, true));
        evolved.assign_field_ids(Some(&read));
        let ids: Vec<u32> = evolved.columns.iter().map(|c| c.field_id).collect();
        assert_eq!(
            ids,
            vec![2, 1],
            "a column of a name the base has keeps its id"
        );
        let mut dropped = read.clone();
        dropped.columns.remove(0);
        let mut readded = dropped.clone();
        readded
            .columns
            .push(ColumnDef::new("a", DataType::Int64, true));
        readded.assign_field_ids(Some(&dropped));
        assert_eq!(
            readded.columns[1].field_id, 3,
            "a re-added name gets a new id"
        );
        let again: TableMetadata =
            serde_json::from_str(&serde_json::to_string(&readded).unwrap()).unwrap();
        assert_eq!(again, readded);
    }

    #[tokio::test]
    async fn a_writer_that_loses_a_race_retries_on_top_of_the_winner() {
        let log = TableLog::new(Arc::new(InMemory::new()), TableId::random(), "t");
        let v0 = log.create(metadata(), "CREATE TABLE").await.unwrap();
        log.commit(&v0, &append(&log, "a", 1).await).await.unwrap();
        // Second writer still holds version 0.
        let s = log.commit(&v0, &append(&log, "b", 2).await).await.unwrap();
        assert_eq!(s.version, Version(2));
        assert_eq!(s.row_count(), 3);
        assert_eq!(log.latest().await.unwrap(), s);
    }

    /// A channel's token moves only with the commit that carries its rows: two producers
    /// advancing the same channel from the same token cannot both commit (the second
    /// conflicts whatever order they race in), producers on different channels never
    /// conflict, and the channel's totals survive checkpoints.
    #[tokio::test]
    async fn a_channel_advances_once_per_token_it_follows() {
        let advance = |channel: &str, previous: Option<&str>, token: &str| ChannelAdvance {
            offset: ChannelOffset {
                channel: channel.into(),
                offset_token: token.into(),
                rows: 1,
                owner: "u".into(),
            },
            previous: previous.map(str::to_string),
        };
        let log = TableLog::new(Arc::new(InMemory::new()), TableId::random(), "t");
        let v0 = log.create(metadata(), "CREATE TABLE").await.unwrap();
        let with = |mut txn: Transaction, a: ChannelAdvance| {
            txn.channels.push(a);
            txn
        };
        let txn = with(append(&log, "a", 1).await, advance("c", None, "1"));
        let v1 = log.commit(&v0, &txn).await.unwrap();
        // A second producer that also saw no channel loses, and commits nothing.
        let txn = with(append(&log, "b", 1).await, advance("c", None, "1"));
        let err = log.commit(&v0, &txn).await.unwrap_err();
        assert!(matches!(err, Error::CommitConflict { .. }), "{err}");
        assert!(err.to_string().contains("offset token '1'"), "{err}");
        // Another channel, from a stale snapshot: no conflict, it lands on top.
        let txn = with(append(&log, "d", 1).await, advance("other", None, "x"));
        let v2 = log.commit(&v0, &txn).await.unwrap();
        assert_eq!(v2.row_count(), 2);
        let mut s = v2;
        for i in 2..(CHECKPOINT_INTERVAL + 3) {
            let previous = (i - 1).to_string();
            let txn = with(
                append(&log, &format!("f{i}"), 1).await,
                advance("c", Some(&previous), &i.to_string()),
            );
            s = log.commit(&s, &txn).await.unwrap();
        }
        let latest = log.latest().await.unwrap();
        assert_eq!(latest, s);
        let c = &latest.channels["c"];
        assert_eq!(c.offset_token, (CHECKPOINT_INTERVAL + 2).to_string());
        assert_eq!(
            (c.rows, c.commits),
            (CHECKPOINT_INTERVAL + 2, CHECKPOINT_INTERVAL + 2)
        );
        assert_eq!(latest.channels["other"].offset_token, "x");
        assert_eq!(v1.channels["c"].offset_token, "1");
    }

    #[tokio::test]
    async fn removing_a_file_removed_concurrently_is_a_conflict() {
        let log = TableLog::new(Arc::new(InMemory::new()), TableId::random(), "t");
        let v0 = log.create(metadata(), "CREATE TABLE").await.unwrap();
        let v1 = log.commit(&v0, &append(&log, "a", 1).await).await.unwrap();
        let remove = Transaction {
            remove: vec![file("a", 1)],
            ..Transaction::new("DELETE")
        };
        log.commit(&v1, &remove).await.unwrap();
        let err = log.commit(&v1, &remove).await.unwrap_err();
        assert!(matches!(err, Error::CommitConflict { .. }), "{err}");
    }

    #[tokio::test]
    async fn checkpoints_and_time_travel_agree_with_replay() {
        let log = TableLog::new(Arc::new(InMemory::new()), TableId::random(), "t");
        let mut s = log.create(metadata(), "CREATE TABLE").await.unwrap();
        for i in 0..(CHECKPOINT_INTERVAL + 7) {
            s = log
                .commit(&s, &append(&log, &format!("f{i}"), 1).await)
                .await
                .unwrap();
        }
        assert_eq!(log.latest().await.unwrap(), s);
        let v3 = log.at_version(Version(3)).await.unwrap();
        assert_eq!(v3.row_count(), 3);
        let v52 = log.at_version(Version(52)).await.unwrap();
        assert_eq!(v52.row_count(), 52);
        let at = log.at_time(v3.committed_at).await.unwrap();
        assert!(at.version >= Version(3) && at.committed_at == v3.committed_at);
        assert!(log.at_version(Version(1000)).await.is_err());
        assert_eq!(
            log.history().await.unwrap().len() as u64,
            CHECKPOINT_INTERVAL + 8
        );
    }

    /// A damaged checkpoint or `_last_checkpoint` costs replay time, never the table.
    #[tokio::test]
    async fn a_damaged_checkpoint_falls_back_to_replaying_the_log() {
        let log = TableLog::new(Arc::new(InMemory::new()), TableId::random(), "t");
        let mut s = log.create(metadata(), "CREATE TABLE").await.unwrap();
        for i in 0..(CHECKPOINT_INTERVAL + 3) {
            s = log
                .commit(&s, &append(&log, &format!("f{i}"), 1).await)
                .await
                .unwrap();
        }
        let checkpoint = paths::table_checkpoint(log.id(), Version(CHECKPOINT_INTERVAL));
        let hint = paths::last_checkpoint(log.id());
        for (path, body) in [
            (&checkpoint, &b"{\"version\": 5"[..]),
            (&checkpoint, &b"not json"[..]),
            (&hint, &b"garbage"[..]),
            (&hint, &b"7"[..]),
        ] {
            log.store
                .put(path, PutPayload::from(body.to_vec()))
                .await
                .unwrap();
            assert_eq!(log.latest().await.unwrap(), s);
            assert_eq!(
                log.at_version(Version(CHECKPOINT_INTERVAL + 1))
                    .await
                    .unwrap()
                    .row_count(),
                CHECKPOINT_INTERVAL + 1
            );
        }
    }
}
