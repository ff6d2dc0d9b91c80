//! Finding `COPY INTO` sources (local paths, directories, globs, `s3://` prefixes) and opening
//! them.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};
use crate::store::{is_s3, open_s3};

/// CSV parsing options (Snowflake `FILE_FORMAT = (TYPE = CSV ...)`).
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Lines to skip at the start (`SKIP_HEADER`); 1 also enables header validation.
    pub skip_header: usize,
    /// Field separator.
    pub delimiter: u8,
    /// Quote character.
    pub quote: u8,
    /// Escape character inside quotes, if any (else quotes are doubled).
    pub escape: Option<u8>,
    /// Strings read as NULL (`NULL_IF`).
    pub null_if: Vec<String>,
    /// An empty field is NULL (`EMPTY_FIELD_AS_NULL`, Snowflake's default); else an empty
    /// string, which only a text column accepts.
    pub empty_field_as_null: bool,
    /// Spaces around each field are removed (`TRIM_SPACE`).
    pub trim_space: bool,
    /// A record with more or fewer fields than the table has columns is rejected
    /// (`ERROR_ON_COLUMN_COUNT_MISMATCH`, the default); else missing fields are NULL and extra
    /// ones ignored.
    pub error_on_column_count_mismatch: bool,
    /// How DATE fields are written, in chrono's words (`DATE_FORMAT`); ISO 8601 if `None`.
    pub date_format: Option<String>,
    /// How TIMESTAMP fields are written, in chrono's words (`TIMESTAMP_FORMAT`).
    pub timestamp_format: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            skip_header: 0,
            delimiter: b',',
            quote: b'"',
            escape: None,
            null_if: vec!["\\N".to_string()],
            empty_field_as_null: true,
            trim_space: false,
            error_on_column_count_mismatch: true,
            date_format: None,
            timestamp_format: None,
        }
    }
}

/// The format of source files.
#[derive(Debug, Clone)]
pub enum FileFormat {
    /// Delimited text with these options.
    Csv(CsvOptions),
    /// Newline-delimited JSON objects, matched to columns by name.
    Json,
    /// Parquet, matched to columns by name (or by position if names differ).
    Parquet,
}

/// How a source file is compressed (`COMPRESSION =`, or its extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
    /// bzip2 (`.bz2`).
    Bzip2,
}

/// Bytes a compressed JSON file may expand to (it is read whole): a bound against a file made
/// to expand without end.
pub const MAX_DECOMPRESSED_BYTES: u64 = 4 << 30;

impl Compression {
    const EXTENSIONS: [(&'static str, Compression); 5] = [
        (".gz", Compression::Gzip),
        (".gzip", Compression::Gzip),
        (".zst", Compression::Zstd),
        (".zstd", Compression::Zstd),
        (".bz2", Compression::Bzip2),
    ];

    /// The compression a file name's extension says.
    pub fn from_extension(path: &str) -> Self {
        let lower = path.to_ascii_lowercase();
        Self::EXTENSIONS
            .iter()
            .find(|(ext, _)| lower.ends_with(ext))
            .map_or(Compression::None, |(_, c)| *c)
    }

    /// `COMPRESSION = ...`: `None` for `AUTO` (by extension).
    pub fn parse(value: &str) -> std::result::Result<Option<Self>, String> {
        Ok(Some(match value.to_ascii_uppercase().as_str() {
            "AUTO" => return Ok(None),
            "NONE" => Compression::None,
            "GZIP" | "GZ" => Compression::Gzip,
            "ZSTD" => Compression::Zstd,
            "BZ2" | "BZIP2" => Compression::Bzip2,
            other => {
                return Err(format!(
                    "COMPRESSION = {other} (use AUTO, NONE, GZIP, ZSTD or BZ2)"
                ));
            }
        }))
    }

    /// The name without its compression extension (`orders.csv.gz` is a CSV file).
    fn strip(path: &str) -> &str {
        let lower = path.to_ascii_lowercase();
        Self::EXTENSIONS
            .iter()
            .find(|(ext, _)| lower.ends_with(ext))
            .map_or(path, |(ext, _)| &path[..path.len() - ext.len()])
    }
}

impl Compression {
    /// `body` compressed (an unloaded CSV or JSON file); bzip2 is read, not written.
    pub fn compress(self, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        match self {
            Compression::None => Ok(body),
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&body)?;
                e.finish()
            }
            Compression::Zstd => zstd::encode_all(&body[..], 3),
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
                e.write_all(&body)?;
                e.finish()
            }
        }
    }
}

impl FileFormat {
    /// Guesses the format from a file extension (under a compression extension); CSV
    /// otherwise.
    pub fn from_extension(path: &str) -> Self {
        let lower = Compression::strip(path).to_ascii_lowercase();
        if lower.ends_with(".parquet") {
            FileFormat::Parquet
        } else if lower.ends_with(".json")
            || lower.ends_with(".ndjson")
            || lower.ends_with(".jsonl")
        {
            FileFormat::Json
        } else {
            FileFormat::Csv(CsvOptions::default())
        }
    }
}

/// A file to load.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The local path or URL, as recorded in load history.
    pub name: String,
    /// Its size.
    pub size_bytes: u64,
    /// Its modification time, where the store reports one.
    pub modified: Option<DateTime<Utc>>,
    origin: Origin,
}

#[cfg(test)]
impl SourceFile {
    /// A source file named `name`, for tests that hand its bytes to the reader directly.
    pub(crate) fn named(name: &str, size_bytes: u64) -> Self {
        Self {
            name: name.to_string(),
            size_bytes,
            modified: None,
            origin: Origin::Local(PathBuf::from(name)),
        }
    }
}

#[derive(Debug, Clone)]
enum Origin {
    Local(PathBuf),
    Remote {
        store: Arc<dyn ObjectStore>,
        path: object_store::path::Path,
    },
}

/// The bytes of a source file, ready to read: a local file, or a fetched remote object.
pub enum SourceData {
    /// A local file.
    File(File),
    /// A remote object, fetched whole.
    Bytes(Bytes),
    /// A compressed file, decompressed as it is read.
    Decompressed(Box<dyn std::io::Read + Send>),
}

impl std::fmt::Debug for SourceData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceData::File(file) => write!(f, "File({file:?})"),
            SourceData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            SourceData::Decompressed(_) => f.write_str("Decompressed"),
        }
    }
}

impl SourceData {
    /// The data, decompressed as it is read with `compression`.
    pub fn decompress(self, compression: Compression) -> Self {
        let raw: Box<dyn std::io::Read + Send> = match self {
            SourceData::File(f) => Box::new(f),
            SourceData::Bytes(b) => Box::new(b.reader()),
            SourceData::Decompressed(r) => r,
        };
        let reader: Box<dyn std::io::Read + Send> = match compression {
            Compression::None => raw,
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(raw)),
            Compression::Zstd => match zstd::stream::read::Decoder::new(raw) {
                Ok(decoder) => Box::new(decoder),
                Err(e) => Box::new(FailingReader(Some(e))),
            },
        };
        SourceData::Decompressed(reader)
    }

    /// All the bytes (decompressed: at most [`MAX_DECOMPRESSED_BYTES`]).
    pub(crate) fn bytes(self) -> std::io::Result<Bytes> {
        match self {
            SourceData::File(mut f) => {
                let mut buffer = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut buffer)?;
                Ok(Bytes::from(buffer))
            }
            SourceData::Bytes(b) => Ok(b),
            SourceData::Decompressed(r) => {
                let mut buffer = Vec::new();
                let mut bounded = std::io::Read::take(r, MAX_DECOMPRESSED_BYTES + 1);
                let read = std::io::Read::read_to_end(&mut bounded, &mut buffer)?;
                if read as u64 > MAX_DECOMPRESSED_BYTES {
                    return Err(std::io::Error::other(format!(
                        "it decompresses to more than {} GiB; split it into smaller files",
                        MAX_DECOMPRESSED_BYTES >> 30
                    )));
                }
                Ok(Bytes::from(buffer))
            }
        }
    }

    /// A buffered reader over the bytes.
    pub(crate) fn buffered(self) -> Box<dyn BufRead> {
        match self {
            SourceData::File(f) => Box::new(BufReader::new(f)),
            SourceData::Bytes(b) => Box::new(b.reader()),
            SourceData::Decompressed(r) => Box::new(BufReader::new(r)),
        }
    }
}

/// A reader that fails with the error a decoder could not start with.
struct FailingReader(Option<std::io::Error>);

impl std::io::Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("not readable")))
    }
}

impl SourceFile {
    /// The file name as recorded in load history.
    pub fn display(&self) -> String {
        self.name.clone()
    }

    /// Opens the file: a local one as it is, a remote one fetched whole.
    pub async fn open(&self) -> Result<SourceData> {
        let fail = |reason: String| Error::Load {
            file: self.name.clone(),
            reason,
        };
        match &self.origin {
            Origin::Local(path) => File::open(path)
                .map(SourceData::File)
                .map_err(|e| fail(format!("cannot open: {e}"))),
            Origin::Remote { store, path } => {
                let got = store
                    .get(path)
                    .await
                    .map_err(|e| fail(format!("cannot fetch: {e}")))?;
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| fail(format!("cannot fetch: {e}")))?;
                Ok(SourceData::Bytes(bytes))
            }
        }
    }
}

/// Lists the files named by `location`: a file, a directory, a glob, or a URL of one
/// (`file://`, `s3://`). `s3_settings` add to the `AWS_*` environment (credentials given with
/// the statement).
pub async fn list_sources(
    location: &str,
    s3_settings: &[(String, String)],
) -> Result<Vec<SourceFile>> {
    if is_s3(location) {
        list_remote(location, s3_settings).await
    } else {
        // Directory listings and globs block: keep them off the async workers.
        let location = location.to_string();
        tokio::task::spawn_blocking(move || list_local(&location))
            .await
            .map_err(|e| Error::InvalidArgument(format!("listing files: {e}")))?
    }
}

/// Lists every file under `location` (a directory or prefix, recursively): how a stage's
/// files are found (`COPY INTO t FROM @landing/2024/`).
pub async fn list_tree(
    location: &str,
    s3_settings: &[(String, String)],
) -> Result<Vec<SourceFile>> {
    let at = crate::store::Location::open(location, s3_settings)?;
    let local = at.store_url == "file://";
    let files: Vec<SourceFile> = at
        .list()
        .await?
        .into_iter()
        .map(|o| {
            let name = at.url_of(&o.location);
            SourceFile {
                size_bytes: o.size,
                modified: Some(o.last_modified),
                origin: if local {
                    Origin::Local(PathBuf::from(&name))
                } else {
                    Origin::Remote {
                        store: Arc::clone(&at.store),
                        path: o.location,
                    }
                },
                name,
            }
        })
        .collect();
    if files.is_empty() {
        return Err(Error::NoFilesMatch {
            pattern: location.to_string(),
        });
    }
    Ok(files)
}

pub(crate) fn list_local(location: &str) -> Result<Vec<SourceFile>> {
    let location = location.strip_prefix("file://").unwrap_or(location);
    if location.contains("://") {
        return Err(Error::InvalidArgument(format!(
            "cannot load from '{location}': only local paths and file:// URLs are supported"
        )));
    }
    let path = Path::new(location);
    let mut paths: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|source| Error::Io {
                path: location.to_string(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else if location.contains(['*', '?', '[']) {
        glob::glob(location)
            .map_err(|e| Error::InvalidArgument(format!("bad pattern '{location}': {e}")))?
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect()
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        return Err(Error::NoFilesMatch {
            pattern: location.to_string(),
        });
    };
    if paths.is_empty() {
        return Err(Error::NoFilesMatch {
            pattern: location.to_string(),
        });
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            let path = path.canonicalize().unwrap_or(path);
            Ok(SourceFile {
                name: path.display().to_string(),
                size_bytes: meta.len(),
                modified: meta.modified().ok().map(DateTime::<Utc>::from),
                origin: Origin::Local(path),
            })
        })
        .collect()
}

/// Lists `s3://bucket/key`: the object `key`, the objects directly under `key/`, or the objects
/// matching `key` as a glob (`*` and `?` stay within one path segment).
async fn list_remote(location: &str, settings: &[(String, String)]) -> Result<Vec<SourceFile>> {
    let no_files = || Error::NoFilesMatch {
        pattern: location.to_string(),
    };
    let (store, bucket, key) = open_s3(location, settings)?;
    let key = key.trim_matches('/');
    let parse = |p: &str| {
        object_store::path::Path::parse(p)
            .map_err(|e| Error::InvalidArgument(format!("'{location}': {e}")))
    };
    let mut objects: Vec<ObjectMeta> = if let Some(glob_at) = key.find(['*', '?', '[']) {
        let pattern = glob::Pattern::new(key)
            .map_err(|e| Error::InvalidArgument(format!("bad pattern '{location}': {e}")))?;
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        let prefix = parse(key[..glob_at].rsplit_once('/').map_or("", |(dir, _)| dir))?;
        store
            .list(Some(&prefix))
            .try_filter(|o| std::future::ready(pattern.matches_with(o.location.as_ref(), options)))
            .try_collect()
            .await?
    } else {
        let path = parse(key)?;
        match store.head(&path).await {
            Ok(meta) if !key.is_empty() => vec![meta],
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                store.list_with_delimiter(Some(&path)).await?.objects
            }
            Err(e) => return Err(e.into()),
        }
    };
    if objects.is_empty() {
        return Err(no_files());
    }
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(objects
        .into_iter()
        .map(|o| SourceFile {
            name: format!("{bucket}/{}", o.location),
            size_bytes: o.size,
            modified: Some(o.last_modified),
            origin: Origin::Remote {
                store: Arc::clone(&store),
                path: o.location,
            },
        })
        .collect())
}
