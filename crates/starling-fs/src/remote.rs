//! Files at object store URLs (`s3://`, `gs://`, `az://`, `http(s)://`, `hdfs://`, `file://`):
//! the one place a store is opened from a URL, shared by the input's staging and by checkpoints.
//!
//! Credentials and endpoints come from the environment, as the cloud tools read them:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ... (object_store's config keys). A
//! store that stops answering fails the call after `STARLING_REMOTE_TIMEOUT_SECS` (60 s), never
//! hangs. Without the `object-store` build feature every URL is refused with a message saying so.

use std::path::{Path, PathBuf};

/// A store that cannot be reached, refused a request, or is not built in.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {message}")]
pub struct RemoteError {
    /// The URL concerned.
    pub url: String,
    /// What went wrong.
    pub message: String,
}

fn error(url: &str, what: impl std::fmt::Display) -> RemoteError {
    RemoteError { url: url.to_string(), message: what.to_string() }
}

/// Whether `s` is a URL (`scheme://...`) rather than a local path.
pub fn is_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        scheme.len() >= 2
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// Whether `path` holds a URL (a checkpoint directory may be one).
pub fn is_url_path(path: &Path) -> bool {
    path.to_str().is_some_and(is_url)
}

/// Where local copies of objects go: `$STARLING_STAGING`, else `$STARLING_CACHE/objects`, else
/// `~/.cache/starling/objects`.
pub fn staging_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STARLING_STAGING") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("STARLING_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(".cache/starling")
    });
    cache.join("objects")
}

#[cfg(feature = "object-store")]
mod store;
#[cfg(feature = "object-store")]
pub use store::{in_time, open_store};

/// A directory at an object store URL, with blocking calls (each bounded in time).
#[cfg(feature = "object-store")]
pub use store::Dir;

/// A directory at an object store URL; this build has no object store support, so none opens.
#[cfg(not(feature = "object-store"))]
pub struct Dir(std::convert::Infallible);

#[cfg(not(feature = "object-store"))]
impl Dir {
    /// Always refused: object stores need the `object-store` build feature.
    pub fn open(url: &str) -> Result<Dir, RemoteError> {
        Err(error(
            url,
            "object store URLs need Starling built with the `object-store` feature (cargo build --release -p starling --features object-store)",
        ))
    }

    /// The directory's URL.
    pub fn url(&self) -> &str {
        match self.0 {}
    }

    /// Uploads the local file `from` as the object `name` in this directory.
    pub fn upload(&self, _name: &str, _from: &Path) -> Result<(), RemoteError> {
        match self.0 {}
    }

    /// Downloads the object `name` into the local file `to`; false when there is no such object.
    pub fn download(&self, _name: &str, _to: &Path) -> Result<bool, RemoteError> {
        match self.0 {}
    }

    /// Whether the object `name` exists.
    pub fn exists(&self, _name: &str) -> Result<bool, RemoteError> {
        match self.0 {}
    }

    /// Names of the subdirectories (common prefixes) right under this directory.
    pub fn subdirs(&self) -> Result<Vec<String>, RemoteError> {
        match self.0 {}
    }

    /// Deletes the object `name`.
    pub fn remove(&self, _name: &str) -> Result<(), RemoteError> {
        match self.0 {}
    }

    /// Deletes every object under this directory.
    pub fn remove_all(&self) -> Result<(), RemoteError> {
        match self.0 {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        for url in ["s3://bucket/ck", "gs://b", "hdfs://nn:8020/x", "file:///tmp/x", "http://127.0.0.1:9/b"] {
            assert!(is_url(url), "{url}");
        }
        for path in ["ck", "/tmp/ck", "./a://b", "c:\\x", "://x", "s://x"] {
            assert!(!is_url(path), "{path}");
        }
    }
}
