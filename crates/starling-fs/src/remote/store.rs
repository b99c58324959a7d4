//! The object store side of [`super`]: opening a store from a URL, and [`Dir`].

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::{error, RemoteError};

/// How long a store may go without answering (a request, or the next chunk of a transfer)
/// before the call fails: an unreachable endpoint must end in a message, never a hang.
/// `STARLING_REMOTE_TIMEOUT_SECS` overrides it.
fn stall_limit() -> std::time::Duration {
    let secs = std::env::var("STARLING_REMOTE_TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    std::time::Duration::from_secs(secs)
}

/// `fut`, or an error naming `url` when it does not finish within the stall limit.
pub async fn in_time<T, E: From<RemoteError>>(
    url: &str,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let limit = stall_limit();
    tokio::time::timeout(limit, fut).await.map_err(|_| {
        E::from(error(url, format!("{what}: no answer in {} s (STARLING_REMOTE_TIMEOUT_SECS)", limit.as_secs())))
    })?
}

/// Object store options from the environment: every `AWS_*`, `GOOGLE_*` and `AZURE_*` variable.
fn env_options() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// The store holding `url` and the object path in it.
pub fn open_store(url: &str) -> Result<(Box<dyn ObjectStore>, ObjectPath), RemoteError> {
    let parsed = Url::parse(url).map_err(|e| error(url, format!("not a valid URL: {e}")))?;
    if matches!(parsed.scheme(), "hdfs" | "viewfs") {
        return open_hdfs(&parsed, url);
    }
    object_store::parse_url_opts(&parsed, env_options())
        .map_err(|e| error(url, format!("cannot open the object store: {e}")))
}

/// An HDFS name node or name service (`hdfs://host:port/path`, `hdfs://nameservice/path`).
#[cfg(feature = "hdfs")]
fn open_hdfs(parsed: &Url, url: &str) -> Result<(Box<dyn ObjectStore>, ObjectPath), RemoteError> {
    let root = format!("{}://{}", parsed.scheme(), parsed.authority());
    let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
        .with_url(root)
        .build()
        .map_err(|e| error(url, format!("cannot reach HDFS: {e}")))?;
    let path = ObjectPath::from_url_path(parsed.path()).map_err(|e| error(url, format!("not a valid path: {e}")))?;
    Ok((Box::new(store), path))
}

#[cfg(not(feature = "hdfs"))]
fn open_hdfs(_: &Url, url: &str) -> Result<(Box<dyn ObjectStore>, ObjectPath), RemoteError> {
    Err(error(
        url,
        "hdfs:// needs Starling built with the `hdfs` feature (cargo build --release -p starling --features hdfs)",
    ))
}

/// A directory at an object store URL, with blocking calls (each bounded in time).
pub struct Dir {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    rt: tokio::runtime::Runtime,
}

impl Dir {
    /// Opens the directory at `url` (nothing is read yet).
    pub fn open(url: &str) -> Result<Dir, RemoteError> {
        let (store, prefix) = open_store(url)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| error(url, format!("cannot start the I/O runtime: {e}")))?;
        Ok(Dir { url: url.trim_end_matches('/').to_string(), store: Arc::from(store), prefix, rt })
    }

    /// The directory's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn object(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    fn named(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    /// Uploads the local file `from` as the object `name` in this directory: in parts when it is
    /// large, and visible only once complete (an object store's put is all or nothing).
    pub fn upload(&self, name: &str, from: &Path) -> Result<(), RemoteError> {
        let url = self.named(name);
        let failed = |e: &dyn std::fmt::Display| error(&url, format!("upload from {} failed: {e}", from.display()));
        let mut file = std::fs::File::open(from).map_err(|e| failed(&e))?;
        self.rt.block_on(async {
            let mut w = object_store::buffered::BufWriter::new(Arc::clone(&self.store), self.object(name));
            let mut buf = vec![0u8; 8 << 20];
            let sent = async {
                loop {
                    let n = std::io::Read::read(&mut file, &mut buf).map_err(|e| failed(&e))?;
                    if n == 0 {
                        break;
                    }
                    in_time(&url, "upload", async { w.write_all(&buf[..n]).await.map_err(|e| failed(&e)) }).await?;
                }
                in_time(&url, "upload", async { w.shutdown().await.map_err(|e| failed(&e)) }).await
            }
            .await;
            if sent.is_err() {
                // Nothing of a failed multipart upload becomes visible; its parts are dropped.
                let _ = w.abort().await;
            }
            sent
        })
    }

    /// Downloads the object `name` into the local file `to` (written atomically); false when
    /// there is no such object.
    pub fn download(&self, name: &str, to: &Path) -> Result<bool, RemoteError> {
        let url = self.named(name);
        let failed = |e: &dyn std::fmt::Display| error(&url, format!("download failed: {e}"));
        self.rt.block_on(async {
            let got = in_time(&url, "download", async {
                match self.store.get(&self.object(name)).await {
                    Ok(g) => Ok(Some(g)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(failed(&e)),
                }
            })
            .await?;
            let Some(got) = got else { return Ok(false) };
            let mut bytes = got.into_stream();
            let written = |e: std::io::Error| error(&url, format!("writing {}: {e}", to.display()));
            let mut file = crate::AtomicFile::create(to).map_err(written)?;
            while let Some(chunk) =
                in_time(&url, "download", async { Ok::<_, RemoteError>(bytes.next().await) }).await?
            {
                let chunk = chunk.map_err(|e| failed(&e))?;
                std::io::Write::write_all(&mut file, &chunk).map_err(written)?;
            }
            file.commit().map_err(written)?;
            Ok(true)
        })
    }

    /// Whether the object `name` exists.
    pub fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        let url = self.named(name);
        self.rt.block_on(in_time(&url, "looking up", async {
            match self.store.head(&self.object(name)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(error(&url, format!("looking up failed: {e}"))),
            }
        }))
    }

    /// Names of the subdirectories (common prefixes) right under this directory.
    pub fn subdirs(&self) -> Result<Vec<String>, RemoteError> {
        self.rt.block_on(in_time(&self.url, "listing", async {
            let listed = self.store.list_with_delimiter(Some(&self.prefix)).await.map_err(|e| {
                error(
                    &self.url,
                    format!(
                        "listing failed (credentials and endpoint come from the AWS_*, GOOGLE_*, AZURE_* variables): {e}"
                    ),
                )
            })?;
            Ok(listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
        }))
    }

    /// Deletes the object `name` (none there is no error).
    pub fn remove(&self, name: &str) -> Result<(), RemoteError> {
        let url = self.named(name);
        self.rt.block_on(in_time(&url, "deleting", async {
            match self.store.delete(&self.object(name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(error(&url, format!("deleting failed: {e}"))),
            }
        }))
    }

    /// Deletes every object under this directory.
    pub fn remove_all(&self) -> Result<(), RemoteError> {
        self.rt.block_on(in_time(&self.url, "deleting", async {
            let mut objects = self.store.list(Some(&self.prefix));
            while let Some(meta) = objects.next().await {
                let meta = meta.map_err(|e| error(&self.url, format!("listing failed: {e}")))?;
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(error(&self.url, format!("deleting {} failed: {e}", meta.location))),
                }
            }
            Ok(())
        }))
    }
}
