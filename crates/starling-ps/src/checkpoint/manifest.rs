//! `manifest.toml`: what a checkpoint holds, written last so its presence means "complete".

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::place::Place;
use super::shard_file::ShardFileInfo;
use super::{invalid, write_atomic};
use crate::error::PsError;
use crate::shard::NUM_VSHARDS;
use crate::table::TableSpec;

/// File name of the manifest inside a checkpoint directory.
pub const MANIFEST_FILE: &str = "manifest.toml";
/// Current manifest version; readers refuse newer ones. Version 2 added the input's fields
/// (deep models are built over them); version 1 manifests still load.
pub const MANIFEST_VERSION: u32 = 2;

/// Everything needed to resume a job or load its model, besides the rows themselves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version ([`MANIFEST_VERSION`] when written by this build).
    pub version: u32,
    /// Training step (global clock) the checkpoint was taken at.
    pub step: u64,
    /// Each worker's clock at the checkpoint, so resumed workers start where they stopped.
    pub worker_clocks: Vec<u64>,
    /// Servers that wrote the checkpoint (one shard file each).
    pub servers: usize,
    /// The tables, in table-id order.
    pub tables: Vec<TableSpec>,
    /// One entry per shard file, as its server reported it.
    pub files: Vec<ShardFileInfo>,
    /// The job config (TOML), opaque here: the coordinator owns its meaning.
    pub job: String,
    /// Examples trained on so far.
    pub examples_seen: u64,
    /// Full passes over the data finished.
    pub passes_done: u32,
    /// When the checkpoint was completed (seconds since the Unix epoch).
    pub created_unix: u64,
    /// The input's field names, by field id (empty in version 1).
    #[serde(default)]
    pub fields: Vec<String>,
    /// The bias feature's field, if the pipeline adds one.
    #[serde(default)]
    pub bias_field: Option<u32>,
    /// An elastic job's input not yet trained on at the cut, the pieces workers held included
    /// (from the step they reached); `None` for a job whose workers read fixed slices, whose
    /// positions are their clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pieces_left: Option<Vec<crate::control::Piece>>,
}

/// Just the version, read first so a newer manifest is refused for its version, not for a field
/// this build does not know.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

impl Manifest {
    /// Checks what a reader relies on: one file per server, plain file names, and every virtual
    /// shard in exactly one file (a missing one would silently drop rows on load).
    pub fn validate(&self, dir: &Path) -> Result<(), PsError> {
        let bad = |message: String| Err(invalid(&dir.join(MANIFEST_FILE), message));
        if self.version == 0 || self.version > MANIFEST_VERSION {
            return bad(format!(
                "manifest version {}; this build of Starling reads versions 1 to {MANIFEST_VERSION}",
                self.version
            ));
        }
        if self.files.len() != self.servers {
            return bad(format!("{} servers but {} shard files listed", self.servers, self.files.len()));
        }
        let mut owner: Vec<Option<usize>> = vec![None; NUM_VSHARDS as usize];
        for (i, f) in self.files.iter().enumerate() {
            // A name with a separator or `..` could point a loader outside the checkpoint.
            let plain = !f.file.is_empty()
                && !f.file.contains(['/', '\\'])
                && f.file != "."
                && f.file != ".."
                && f.file != MANIFEST_FILE;
            if !plain {
                return bad(format!("shard file name {:?} is not a plain file name", f.file));
            }
            for &v in &f.vshards {
                match owner.get_mut(v as usize) {
                    None => return bad(format!("{} lists virtual shard {v}, beyond {NUM_VSHARDS}", f.file)),
                    Some(Some(prev)) => {
                        return bad(format!(
                            "virtual shard {v} is listed by both {} and {}",
                            self.files[*prev].file, f.file
                        ))
                    }
                    Some(slot) => *slot = Some(i),
                }
            }
        }
        if !self.tables.is_empty() {
            if let Some(v) = owner.iter().position(Option::is_none) {
                return bad(format!("virtual shard {v} is in no shard file: the checkpoint would lose its rows"));
            }
        }
        Ok(())
    }
}

/// Writes `manifest` as `dir/manifest.toml`, atomically; call it only after every shard file is
/// in place, since its presence is what makes the directory a checkpoint.
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), PsError> {
    manifest.validate(dir)?;
    let path = dir.join(MANIFEST_FILE);
    let text = toml::to_string(manifest).map_err(|e| invalid(&path, format!("cannot be written as TOML: {e}")))?;
    let place = Place::of(dir)?;
    write_atomic(place.dir(), MANIFEST_FILE, &mut |w| w.write_all(text.as_bytes())).map_err(|e| place.named(e))?;
    place.publish(MANIFEST_FILE)
}

/// Reads and validates `dir/manifest.toml`; a directory without one is not a checkpoint.
pub fn read_manifest(dir: &Path) -> Result<Manifest, PsError> {
    let place = Place::of(dir)?;
    place.fetch([MANIFEST_FILE])?;
    read_local(place.dir()).map_err(|e| place.named(e))
}

/// [`read_manifest`] from a local directory.
pub(super) fn read_local(dir: &Path) -> Result<Manifest, PsError> {
    let path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(invalid(dir, format!("no {MANIFEST_FILE}: not a complete checkpoint")))
        }
        Err(e) => return Err(PsError::io(format!("reading {}", path.display()), e)),
    };
    let version: VersionOnly = toml::from_str(&text).map_err(|e| invalid(&path, format!("malformed manifest: {e}")))?;
    if version.version == 0 || version.version > MANIFEST_VERSION {
        return Err(invalid(
            &path,
            format!(
                "manifest version {}; this build of Starling reads versions 1 to {MANIFEST_VERSION}",
                version.version
            ),
        ));
    }
    let manifest: Manifest = toml::from_str(&text).map_err(|e| invalid(&path, format!("malformed manifest: {e}")))?;
    manifest.validate(dir)?;
    Ok(manifest)
}
