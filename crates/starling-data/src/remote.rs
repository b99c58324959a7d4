//! Input at object store URLs (`s3://`, `gs://`, `az://`, `http(s)://`, `file://`): every object
//! under the URL is copied once into a local staging directory, and readers split and read the
//! copies like any local file (byte ranges, row groups, `.gz`).
//!
//! Why copy rather than stream: every reader (text splits, Parquet row groups, the cache, several
//! passes) wants random access to local files, and a copy is read many times for one download. A
//! copy is reused while the object's size, modification time and ETag are unchanged.
//!
//! The store is opened, and its calls bounded in time, by `starling_fs::remote` (credentials and
//! endpoints from the environment, as the cloud tools read them).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
pub use starling_fs::remote::staging_dir;
use starling_fs::remote::{in_time, open_store};

use crate::error::DataError;

use crate::input::is_data_file_name;

fn error(url: &str, what: impl std::fmt::Display) -> DataError {
    DataError::Remote { url: url.to_string(), message: what.to_string() }
}

/// The local copies of every data file under `url` (one object, or all objects under it as a
/// prefix, `_SUCCESS`, `.crc` and hidden names skipped), downloaded into `dir` when missing or
/// changed, in name order.
pub fn stage(url: &str, dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let (store, prefix) = open_store(url)?;
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
    while let Some(chunk) = in_time(&what, "download", async { Ok::<_, DataError>(bytes.next().await) }).await? {
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
