//! Source files for `COPY INTO`: finding them, opening them, and (in [`read`]) reading CSV,
//! newline-delimited JSON and Parquet into batches of a table's schema.
//!
//! Sources are local paths, `file://` URLs, directories (every file in them) or globs, and the
//! same on S3 (`s3://bucket/landing/2024-*.csv`).
//!
//! A remote file is fetched whole before it is read (Parquet needs random access, and a fetch is
//! one request); load files of the size object stores recommend (100–250 MB), not one huge file.

#[cfg(test)]
mod fuzz;
mod read;
mod source;

pub use read::{ColumnMatch, OnRowError, RowError, SourceBatch, conform, file_columns, read_file};
pub use source::{
    Compression, CsvOptions, FileFormat, MAX_DECOMPRESSED_BYTES, SourceData, SourceFile,
    list_sources, list_tree,
};
