//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use starling_data::synth::{self, SynthConfig, SynthFormat};

/// `../shared/data` beside the checkout, or `$STARLING_SHARED_DATA` (tests may read it; the main
/// job never does). Missing data fails the test, never skips it.
pub fn shared_data(rel: &str) -> PathBuf {
    let root = std::env::var_os("STARLING_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let p = root.join(rel);
    assert!(
        p.exists(),
        "test data {} is missing: the tests read ../shared/data beside the checkout (or $STARLING_SHARED_DATA)",
        p.display()
    );
    p
}

/// Generates a data set in every format (criteo, libsvm, libffm, vw, csv) into a fresh directory.
fn generate(train_rows: u64, seed: u64, nonlinear: f64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        train_rows,
        test_rows: train_rows / 4,
        seed,
        hash_bits: 20,
        formats: vec![SynthFormat::Criteo, SynthFormat::Libsvm, SynthFormat::Libffm, SynthFormat::Vw, SynthFormat::Csv],
        nonlinear,
    };
    synth::generate(&cfg, dir.path(), &mut |_| {}).unwrap();
    dir
}

/// A small generated data set (40k train rows), shared by the tests of one binary.
pub fn gen_data() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| generate(40_000, 7, 0.0)).path()
}

/// A generated data set large enough for FM to show what it learns (200k train rows).
pub fn gen_data_large() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| generate(200_000, 11, 0.0)).path()
}

/// Generated data with the hidden non-linear term that FM cannot represent (200k train rows).
pub fn gen_data_nonlinear() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| generate(200_000, 13, 1.0)).path()
}

/// Every row of a table, sorted by key, for exact comparisons.
pub fn rows(model: &starling::Model) -> Vec<(u64, Vec<u32>)> {
    let mut out = Vec::new();
    model.table().as_dyn().for_each_row(&mut |k, r| out.push((k, r.iter().map(|x| x.to_bits()).collect())));
    out
}
