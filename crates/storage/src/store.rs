//! Opening a warehouse root as an [`ObjectStore`], and the paths of everything under it.
//!
//! The storage layer only ever talks to `object_store`: a local directory, `memory://` (tests) and
//! `s3://bucket/prefix` (AWS S3 or any S3-compatible store: MinIO, R2, moto) are the same code.
//! S3 settings come from the usual `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...). Commits rely on
//! conditional puts (`If-None-Match: *`), which S3 has supported since 2024.
//!
//! Local disk gets one addition, [`DurableLocalStore`]: object_store's
//! `LocalFileSystem` renames a temporary file into place but never fsyncs, so an acknowledged commit
//! could vanish on power loss. The wrapper fsyncs each written file and its directories before
//! `put` returns.
//!
//! Layout under the root:
//! ```text
//! _catalog/<version>.json                     catalog log (databases, schemas, tables)
//! tables/<table id>/_log/<version>.json       table log commits
//! tables/<table id>/_log/<version>.checkpoint.json, _last_checkpoint
//! tables/<table id>/data/<partition>/<uuid>.parquet
//! _system/query_log/<yyyy-mm-dd>/<query id>.json
//! _system/load_failures/<yyyy-mm-dd>/<uuid>.json
//! ```

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::error::{Error, Result};

/// A warehouse root: the store and a printable location.
#[derive(Debug, Clone)]
pub struct WarehouseStore {
    store: Arc<dyn ObjectStore>,
    location: String,
    local_root: Option<PathBuf>,
}

impl WarehouseStore {
    /// Opens `location`: a local path, `file:///abs/path`, `s3://bucket[/prefix]` or `memory://`.
    /// S3 takes its credentials from the `AWS_*` environment.
    pub fn open(location: &str) -> Result<Self> {
        Self::open_with(location, &[])
    }

    /// Opens `location` as [`WarehouseStore::open`] does, with S3 `settings` (object_store's
    /// names, e.g. those of a named secret) over the environment's.
    pub fn open_with(location: &str, settings: &[(String, String)]) -> Result<Self> {
        if location == "memory://" || location.starts_with("memory://") {
            return Ok(Self {
                store: Arc::new(InMemory::new()),
                location: location.to_string(),
                local_root: None,
            });
        }
        if is_s3(location) {
            let invalid = |reason: String| Error::InvalidWarehouse {
                url: location.to_string(),
                reason,
            };
            let (s3, _, key) = open_s3(location, settings).map_err(|e| invalid(e.to_string()))?;
            let prefix = Path::parse(key.trim_matches('/')).map_err(|e| invalid(e.to_string()))?;
            let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
                s3
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Self {
                store,
                location: location.trim_end_matches('/').to_string(),
                local_root: None,
            });
        }
        let path = if let Some(rest) = location.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if location.contains("://") {
            return Err(Error::InvalidWarehouse {
                url: location.to_string(),
                reason: "supported schemes are file://, s3:// and memory:// (or a plain path)"
                    .to_string(),
            });
        } else {
            PathBuf::from(location)
        };
        std::fs::create_dir_all(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let root = path.canonicalize().map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let local = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self {
            store: Arc::new(DurableLocalStore {
                inner: local,
                root: root.clone(),
            }),
            location: format!("file://{}", root.display()),
            local_root: Some(root),
        })
    }

    /// Whether `location` holds a warehouse already (a catalog), without creating anything.
    pub async fn exists(location: &str) -> Result<bool> {
        if location.starts_with("memory://") {
            return Ok(false);
        }
        if !is_s3(location) {
            let path = location.strip_prefix("file://").unwrap_or(location);
            let catalog = FsPath::new(path).join("_catalog");
            return Ok(tokio::fs::metadata(&catalog)
                .await
                .is_ok_and(|m| m.is_dir()));
        }
        let store = Self::open(location)?;
        let mut listing = store.store.list(Some(&paths::catalog_dir()));
        Ok(futures::StreamExt::next(&mut listing)
            .await
            .transpose()?
            .is_some())
    }

    /// A warehouse on `store` (for tests: a store that injects faults), named `location`.
    pub fn from_store(store: Arc<dyn ObjectStore>, location: &str) -> Self {
        Self {
            store,
            location: location.to_string(),
            local_root: None,
        }
    }

    /// The store, rooted at the warehouse.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// Where the warehouse lives, as a URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The local directory of the warehouse, when it is on local disk.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }
}

/// Whether `location` is an S3 URL (`s3://` or `s3a://`).
pub fn is_s3(location: &str) -> bool {
    location.starts_with("s3://") || location.starts_with("s3a://")
}

/// Opens the bucket of `url` (`s3://bucket/key`, configured from `AWS_*` environment variables,
/// then `settings`: object_store's S3 option names such as `aws_access_key_id`) and returns it
/// with the bucket's URL and the key, as written (globs included).
pub fn open_s3(
    url: &str,
    settings: &[(String, String)],
) -> Result<(Arc<dyn ObjectStore>, String, String)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "'{url}' names no bucket (expected s3://bucket/path)"
        )));
    }
    let bucket_url = format!("s3://{bucket}");
    let mut builder = AmazonS3Builder::from_env().with_url(&bucket_url);
    for (key, value) in settings {
        let key = key.parse().map_err(|_| {
            Error::InvalidArgument(format!("unknown S3 setting '{key}' for '{url}'"))
        })?;
        builder = builder.with_config(key, value);
    }
    let store = builder.build()?;
    Ok((Arc::new(store), bucket_url, key.to_string()))
}

/// A location outside the warehouse that Strata reads in place or writes to (an external
/// table's files, an unload's target): the store holding it, the URL DataFusion knows that store
/// by, and the prefix of the location in it.
#[derive(Debug, Clone)]
pub struct Location {
    /// The bucket, or the local file system.
    pub store: Arc<dyn ObjectStore>,
    /// `s3://bucket` or `file://`.
    pub store_url: String,
    /// The location's prefix in `store` (no leading or trailing `/`).
    pub prefix: Path,
    /// The location as the user wrote it, for messages.
    pub shown: String,
}

impl Location {
    /// Opens `url`: `s3://bucket/prefix` (with `settings`, as [`open_s3`]), `file:///dir` or a
    /// local directory (relative to the working directory; it need not exist yet).
    pub fn open(url: &str, settings: &[(String, String)]) -> Result<Self> {
        if is_s3(url) {
            let (store, store_url, key) = open_s3(url, settings)?;
            let prefix = Path::parse(key.trim_matches('/'))
                .map_err(|e| Error::InvalidArgument(format!("'{url}': {e}")))?;
            return Ok(Self {
                store,
                store_url,
                prefix,
                shown: url.to_string(),
            });
        }
        let local = url.strip_prefix("file://").unwrap_or(url);
        if local.contains("://") {
            return Err(Error::InvalidArgument(format!(
                "'{url}': use an s3:// URL, a file:// URL or a local directory"
            )));
        }
        if local.is_empty() {
            return Err(Error::InvalidArgument(
                "an empty location names no directory".to_string(),
            ));
        }
        let absolute = std::path::absolute(local).map_err(|source| Error::Io {
            path: local.to_string(),
            source,
        })?;
        let prefix = Path::from_absolute_path(&absolute)
            .map_err(|e| Error::InvalidArgument(format!("'{url}': {e}")))?;
        Ok(Self {
            store: Arc::new(LocalFileSystem::new()),
            store_url: "file://".to_string(),
            prefix,
            shown: url.to_string(),
        })
    }

    /// The URL of the object at `path` (a path of [`Location::store`]), as users see it.
    pub fn url_of(&self, path: &Path) -> String {
        if self.store_url == "file://" {
            format!("/{path}")
        } else {
            format!("{}/{path}", self.store_url)
        }
    }

    /// Every object under the location (recursively), by path; a location naming one object
    /// holds that object. A missing local directory holds nothing.
    pub async fn list(&self) -> Result<Vec<ObjectMeta>> {
        use futures::TryStreamExt;
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let listed: std::result::Result<Vec<ObjectMeta>, _> =
            self.store.list(prefix).try_collect().await;
        let mut objects = match listed {
            Ok(objects) => objects,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if objects.is_empty() && prefix.is_some() {
            // S3 lists `prefix/...` only; the location may be a file itself.
            match object_store::ObjectStoreExt::head(&self.store, &self.prefix).await {
                Ok(meta) => objects.push(meta),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// The store path of `relative`, a path under the location; the empty path is the
    /// location itself (a location naming one file).
    pub fn object_path(&self, relative: &str) -> String {
        match (self.prefix.as_ref(), relative) {
            (prefix, "") => prefix.to_string(),
            ("", relative) => relative.to_string(),
            (prefix, relative) => format!("{prefix}/{relative}"),
        }
    }
}

/// Typed paths of everything under a warehouse root.
pub mod paths {
    use super::Path;
    use crate::id::{TableId, Version};

    /// The catalog log entry of `version`.
    pub fn catalog_commit(version: Version) -> Path {
        Path::from(format!("_catalog/{:020}.json", version.0))
    }

    /// The catalog log directory.
    pub fn catalog_dir() -> Path {
        Path::from("_catalog")
    }

    /// Everything of one table.
    pub fn table_dir(table: &TableId) -> Path {
        Path::from(format!("tables/{}", table.0))
    }

    /// The commits of one table.
    pub fn table_log_dir(table: &TableId) -> Path {
        Path::from(format!("tables/{}/_log", table.0))
    }

    /// One commit of a table.
    pub fn table_commit(table: &TableId, version: Version) -> Path {
        Path::from(format!("tables/{}/_log/{:020}.json", table.0, version.0))
    }

    /// A checkpoint: the whole snapshot at `version`.
    pub fn table_checkpoint(table: &TableId, version: Version) -> Path {
        Path::from(format!(
            "tables/{}/_log/{:020}.checkpoint.json",
            table.0, version.0
        ))
    }

    /// Hint naming the newest checkpoint.
    pub fn last_checkpoint(table: &TableId) -> Path {
        Path::from(format!("tables/{}/_log/_last_checkpoint", table.0))
    }

    /// The data files of a table.
    pub fn table_data_dir(table: &TableId) -> Path {
        Path::from(format!("tables/{}/data", table.0))
    }

    /// A new data file in `partition`, uploaded by the statement `uploads`
    /// ([`crate::writer::Uploads`]).
    pub fn new_data_file(table: &TableId, partition: &str, uploads: &str) -> Path {
        let id = uuid::Uuid::new_v4();
        if partition.is_empty() {
            Path::from(format!("tables/{}/data/{uploads}-{id}.parquet", table.0))
        } else {
            Path::from(format!(
                "tables/{}/data/{partition}/{uploads}-{id}.parquet",
                table.0
            ))
        }
    }

    /// A new deletion vector of a data file in `partition`, uploaded by the statement `uploads`;
    /// beside the data files, so VACUUM treats both alike.
    pub fn new_deletion_vector(table: &TableId, partition: &str, uploads: &str) -> Path {
        let file = new_data_file(table, partition, uploads);
        Path::from(format!("{}.dv", file.as_ref().trim_end_matches(".parquet")))
    }

    /// The markers of statements uploading to a table.
    pub fn inflight_dir(table: &TableId) -> Path {
        Path::from(format!("tables/{}/_inflight", table.0))
    }

    /// The marker of statement `uploads`, there while it uploads and commits.
    pub fn inflight_marker(table: &TableId, uploads: &str) -> Path {
        Path::from(format!("tables/{}/_inflight/{uploads}", table.0))
    }

    /// The directory of system records of `kind` (`query_log`, `load_failures`).
    pub fn system_dir(kind: &str) -> Path {
        Path::from(format!("_system/{kind}"))
    }

    /// One system record.
    pub fn system_record(kind: &str, day: &str, id: &str) -> Path {
        Path::from(format!("_system/{kind}/{day}/{id}.json"))
    }
}

/// `LocalFileSystem` plus fsync: a `put` returns only once the file and the directories leading
/// to it are on disk. Directories that existed before the `put` (above the file's
/// grandparent) are not synced again.
#[derive(Debug)]
pub struct DurableLocalStore {
    inner: LocalFileSystem,
    root: PathBuf,
}

impl fmt::Display for DurableLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DurableLocalStore({})", self.root.display())
    }
}

/// A `put` whose object need not survive a power loss (an in-flight marker: after a crash
/// its process is gone anyway). Set it in [`PutOptions::extensions`]; [`DurableLocalStore`]
/// then skips the fsyncs.
#[derive(Debug, Clone, Copy)]
pub struct Ephemeral;

impl DurableLocalStore {
    /// The highest directory on the way to `location` whose entries a `put` there may change:
    /// the deepest one that exists now (a `put` creating the directories below it adds an
    /// entry to it), but at least the file's grandparent. A directory that exists may have
    /// been made a moment ago by a concurrent writer that has not synced it yet (a new
    /// partition's, a new day's): syncing one level above the parent covers that.
    async fn existing_ancestor(&self, location: &Path) -> object_store::Result<PathBuf> {
        let file = self.inner.path_to_filesystem(location)?;
        let root = self.root.clone();
        // Directory lookups block: off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut dir = file.parent();
            let mut level = 0;
            while let Some(d) = dir {
                if d == root || (level >= 1 && d.is_dir()) {
                    return d.to_path_buf();
                }
                level += 1;
                dir = d.parent();
            }
            root
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "DurableLocalStore",
            source: Box::new(e),
        })
    }

    /// Makes `location` durable: the file, and every directory from its parent up to
    /// `existed` (the deepest that existed before the put), whose entries changed.
    async fn sync(&self, location: &Path, existed: PathBuf) -> object_store::Result<()> {
        let file = self.inner.path_to_filesystem(location)?;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            let mut dir = file.parent();
            while let Some(d) = dir {
                std::fs::File::open(d)?.sync_all()?;
                if d == existed {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "DurableLocalStore",
            source: Box::new(e),
        })?
        .map_err(|e| object_store::Error::Generic {
            store: "DurableLocalStore",
            source: Box::new(e),
        })
    }
}

#[async_trait]
impl ObjectStore for DurableLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if opts.extensions.get::<Ephemeral>().is_some() {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let existed = self.existing_ancestor(location).await?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location, existed).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // Strata writes whole files with `put`; multipart uploads (used by other writers of the
        // same store) are passed through unsynced.
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let existed = self.existing_ancestor(to).await?;
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to, existed).await
    }
}
