//! Arbitrary bytes as a checkpoint's `manifest.toml`: parsed and validated, never trusted.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use starling_ps::checkpoint::MANIFEST_FILE;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch_dir().join("manifest");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), data).unwrap();
    if let Ok(manifest) = starling_ps::read_manifest(&dir) {
        let _ = manifest.validate(&dir);
    }
});
