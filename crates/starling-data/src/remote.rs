//! Input at object store URLs (`s3://`, `gs://`, `az://`, `http(s)://`, `file://`): every object
//! under the URL is copied once into a local staging directory, and readers split and read the
//! copies like any local file (byte ranges, row groups, `.gz`).
//!
//! Why copy rather than stream: every reader (text splits, Parquet row groups, the cache, several
//! passes) wants random access to local files, and a copy is read many times for one download. A
//! copy is reused while the object's size, modification time and ETag are unchanged.
//!
//! Credentials and endpoints come from the environment, as the cloud tools read them:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ... (object_store's config keys).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::DataError;

/// How long a store may go without answering (a request, or the next chunk of a download)
/// before staging fails: an unreachable endpoint must end in a message, never a hang.
/// `STARLING_REMOTE_TIMEOUT_SECS` overrides it.
fn stall_limit() -> std::time::Duration {
    let secs = std::env::var("STARLING_REMOTE_TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    std::time::Duration::from_secs(secs)
}

/// `fut`, or an error naming `url` when it does not finish within [`stall_limit`].
async fn in_time<T>(
    url: &str,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, DataError>>,
) -> Result<T, DataError> {
    let limit = stall_limit();
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| error(url, format!("{what}: no answer in {} s (STARLING_REMOTE_TIMEOUT_SECS)", limit.as_secs())))?
}
use crate::input::is_data_file_name;

/// Where copies go: `$STARLING_STAGING`, else `$STARLING_CACHE/objects`, else
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

fn error(url: &str, what: impl std::fmt::Display) -> DataError {
    DataError::Remote { url: url.to_string(), message: what.to_string() }
}

/// Object store options from the environment: every `AWS_*`, `GOOGLE_*` and `AZURE_*` variable.
fn env_options() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// The local copies of every data file under `url` (one object, or all objects under it as a
/// prefix, `_SUCCESS`, `.crc` and hidden names skipped), downloaded into `dir` when missing or
/// changed, in name order.
pub fn stage(url: &str, dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let parsed = Url::parse(url).map_err(|e| error(url, format!("not a valid URL: {e}")))?;
    let (store, prefix) = open_store(&parsed, url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| error(url, format!("cannot start the I/O runtime: {e}")))?;
    rt.block_on(async {
        let objects = in_time(url, "listing", list(&*store, &prefix, url)).await?;
        if objects.is_empty() {
            return Err(DataError::NoInput { paths: url.to_string() });
        }
        // One directory per URL, so two URLs never share copies.
        let key = starling_core::hash::hash_token(0, url.as_bytes());
        let root = dir.join(format!("{key:016x}"));
        let mut out = Vec::with_capacity(objects.len());
        for meta in objects {
            out.push(fetch(&*store, &prefix, &meta, &root, url).await?);
        }
        Ok(out)
    })
}

/// The store holding `parsed` and the object path in it.
fn open_store(parsed: &Url, url: &str) -> Result<(Box<dyn ObjectStore>, ObjectPath), DataError> {
    if matches!(parsed.scheme(), "hdfs" | "viewfs") {
        return open_hdfs(parsed, url);
    }
    object_store::parse_url_opts(parsed, env_options())
        .map_err(|e| error(url, format!("cannot open the object store: {e}")))
}

/// An HDFS name node or name service (`hdfs://host:port/path`, `hdfs://nameservice/path`).
#[cfg(feature = "hdfs")]
fn open_hdfs(parsed: &Url, url: &str) -> Result<(Box<dyn ObjectStore>, ObjectPath), DataError> {
    let root = format!("{}://{}", parsed.scheme(), parsed.authority());
    let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
        .with_url(root)
        .build()
        .map_err(|e| error(url, format!("cannot reach HDFS: {e}")))?;
    let path = ObjectPath::from_url_path(parsed.path()).map_err(|e| error(url, format!("not a valid path: {e}")))?;
    Ok((Box::new(store), path))
}

#[cfg(not(feature = "hdfs"))]
fn open_hdfs(_: &Url, url: &str) -> Result<(Box<dyn ObjectStore>, ObjectPath), DataError> {
    Err(error(url, "hdfs:// input needs Starling built with the `hdfs` feature (cargo build --release -p starling --features hdfs)"))
}

/// The object at `prefix`, or the data objects under it.
async fn list(store: &dyn ObjectStore, prefix: &ObjectPath, url: &str) -> Result<Vec<ObjectMeta>, DataError> {
    if !prefix.as_ref().is_empty() {
        if let Ok(meta) = store.head(prefix).await {
            return Ok(vec![meta]);
        }
    }
    let mut found = Vec::new();
    let mut stream = store.list(Some(prefix));
    while let Some(item) = stream.next().await {
        let meta = item.map_err(|e| {
            error(
                url,
                format!(
                    "listing failed (credentials and endpoint come from the AWS_*, GOOGLE_*, AZURE_* variables): {e}"
                ),
            )
        })?;
        let rel = meta.location.prefix_match(prefix).map(|p| p.map(|s| s.as_ref().to_string()).collect::<Vec<_>>());
        // Names of every level below the prefix must be data names (no `_temporary/` parts).
        if rel.as_ref().is_some_and(|parts| parts.iter().all(|p| is_data_file_name(p))) {
            found.push(meta);
        }
    }
    found.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    Ok(found)
}

/// The local copy of `meta`, downloaded when missing or changed.
async fn fetch(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    meta: &ObjectMeta,
    root: &Path,
    url: &str,
) -> Result<PathBuf, DataError> {
    let rel: Vec<String> = match meta.location.prefix_match(prefix) {
        Some(parts) => parts.map(|p| p.as_ref().to_string()).collect(),
        None => Vec::new(),
    };
    let name = meta.location.filename().unwrap_or("object").to_string();
    let local = if rel.is_empty() { root.join(&name) } else { rel.iter().fold(root.to_path_buf(), |p, s| p.join(s)) };
    let stamp = format!("{} {} {}\n", meta.size, meta.last_modified.to_rfc3339(), meta.e_tag.as_deref().unwrap_or("-"));
    let stamp_path = stamp_of(&local);
    if local.exists() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(local);
    }
    let dir = local.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let what = format!("{url} ({})", meta.location);
    let get = async { store.get(&meta.location).await.map_err(|e| error(&what, format!("download failed: {e}"))) };
    let mut bytes = in_time(&what, "download", get).await?.into_stream();
    let mut file = starling_fs::AtomicFile::create(&local).map_err(|e| DataError::io(&local, e))?;
    while let Some(chunk) = in_time(&what, "download", async { Ok(bytes.next().await) }).await? {
        let chunk = chunk.map_err(|e| error(&what, format!("download failed: {e}")))?;
        std::io::Write::write_all(&mut file, &chunk).map_err(|e| DataError::io(&local, e))?;
    }
    file.commit().map_err(|e| DataError::io(&local, e))?;
    std::fs::write(&stamp_path, stamp).map_err(|e| DataError::io(&stamp_path, e))?;
    Ok(local)
}

/// The file recording which version of the object a copy holds (hidden: never read as input).
fn stamp_of(local: &Path) -> PathBuf {
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    local.with_file_name(format!(".{name}.stamp"))
}
