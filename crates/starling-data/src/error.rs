//! Errors of the input side, each naming the file (and line and column where there is one).

use std::path::PathBuf;

/// Everything that can go wrong while finding, opening or parsing input.
#[derive(thiserror::Error, Debug)]
pub enum DataError {
    /// An I/O error while reading `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An input path that does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound {
        /// The path as the user gave it.
        path: PathBuf,
    },

    /// The input paths expanded to no file at all.
    #[error("no input files found in {paths}")]
    NoInput {
        /// The paths as given, comma-separated.
        paths: String,
    },

    /// A malformed line: `path:line: column C "got": expected ...`.
    #[error("{}:{line}: column {column} \"{got}\": expected {expected}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number in the file (the decompressed stream for `.gz`).
        line: u64,
        /// 1-based column: the whitespace-separated token (LibSVM, libFFM, VW) or the delimited
        /// column (Criteo TSV, CSV) where the problem is.
        column: usize,
        /// What the parser expected there.
        expected: String,
        /// What it found (truncated, escaped as [`crate::format::printable`] does).
        got: String,
    },

    /// A row of columnar input (Parquet) that cannot become an example.
    #[error("{}: row {row}: column {column:?}: {message}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based row number in the file.
        row: u64,
        /// The column at fault.
        column: String,
        /// What is wrong.
        message: String,
    },

    /// Input at an object store URL could not be listed or fetched.
    #[error("{url}: {message}")]
    Remote {
        /// The URL as given.
        url: String,
        /// What failed, with the store's own error.
        message: String,
    },

    /// A problem with a CSV header (missing label column, unknown column named by the config).
    #[error("{}: header: {message}", path.display())]
    Header {
        /// The file whose header is wrong.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// An invalid pipeline configuration.
    #[error("invalid input config: {0}")]
    Config(String),

    /// More malformed lines than `max_bad_lines` allows; `last` is the one over the limit.
    #[error("more than max_bad_lines = {limit} malformed lines; the last: {last}")]
    TooManyBadLines {
        /// The configured limit.
        limit: u64,
        /// The line that went over the limit.
        last: Box<DataError>,
    },

    /// A file that is not a Starling example cache (bad magic); never overwritten as if it were.
    #[error("{}: not a Starling cache (bad magic)", path.display())]
    NotACache {
        /// The file.
        path: PathBuf,
    },

    /// An example cache in a format version this build does not read: rebuild it.
    #[error("{}: cache format version {found}, this build reads version {supported}", path.display())]
    CacheVersion {
        /// The cache file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// An example cache that ends early, most likely one whose writer never finished.
    #[error("{}: truncated cache at byte {offset}: expected {expected}", path.display())]
    CacheTruncated {
        /// The cache file.
        path: PathBuf,
        /// Byte offset where more was expected.
        offset: u64,
        /// What was expected there.
        expected: String,
    },

    /// A CRC32 mismatch in an example cache.
    #[error("{}: CRC mismatch in the {what} at byte {offset}: stored {stored:#010x}, computed {computed:#010x}", path.display())]
    CacheChecksum {
        /// The cache file.
        path: PathBuf,
        /// Byte offset of the checked part (its length prefix for blocks).
        offset: u64,
        /// Which part: `header`, `block` or `end block`.
        what: &'static str,
        /// The CRC32 stored in the file.
        stored: u32,
        /// The CRC32 of the bytes read.
        computed: u32,
    },

    /// Malformed content in an example cache (a bad length, varint or count).
    #[error("{}: corrupt cache at byte {offset}: expected {expected}", path.display())]
    CacheCorrupt {
        /// The cache file.
        path: PathBuf,
        /// Byte offset of the problem.
        offset: u64,
        /// What was expected there.
        expected: String,
    },
}

impl DataError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
}

impl From<starling_fs::remote::RemoteError> for DataError {
    fn from(e: starling_fs::remote::RemoteError) -> Self {
        DataError::Remote { url: e.url, message: e.message }
    }
}
