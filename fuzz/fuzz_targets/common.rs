//! What the targets share: a scratch file per fuzzing process, and the text readers' run.
//!
//! Readers open files by path, as the trainer does, so each input is written to a file first:
//! the targets then cover the same path as `starling train` (gzip detection, splits, headers,
//! the bad-line budget), not a parser called on a slice.

#![allow(dead_code)]

use std::path::PathBuf;

use starling_core::Example;
use starling_data::{make_splits, BadLines, ExampleReader, Format, Pipeline, PipelineConfig};

/// A scratch directory of this process, made once.
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("starling-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory in the temp dir");
    dir
}

/// Writes `data` to `name` in the scratch directory.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, data).expect("writing the scratch file");
    path
}

/// Reads `data` as a file `input.EXT` of `format`, cut into three splits, every example through
/// the pipeline. Nothing may panic, and no line may be read twice across split boundaries.
pub fn read_text(ext: &str, format: Format, data: &[u8]) {
    let path = scratch_file(&format!("input.{ext}"), data);
    let files = vec![path];
    let config =
        PipelineConfig { format, hash_bits: 18, binary_labels: true, max_bad_lines: 1 << 20, ..Default::default() };
    let Ok(pipeline) = Pipeline::from_files(&config, &files) else { return };
    let Ok(splits) = make_splits(&files, 3) else { return };
    let bad = BadLines::new(config.max_bad_lines);
    let mut reader = ExampleReader::new(splits, pipeline, bad.clone());
    let mut ex = Example::default();
    let lines = data.split(|&b| b == b'\n').count() as u64;
    let mut examples = 0u64;
    while let Ok(true) = reader.next(&mut ex) {
        examples += 1;
        check_example(&ex, reader.pipeline().num_fields());
    }
    assert!(examples + bad.count() <= lines, "{examples} examples and {} bad lines from {lines} lines", bad.count());
}

/// What every reader promises of an example it returns: finite numbers, fields in range.
pub fn check_example(ex: &Example, num_fields: usize) {
    assert!(ex.label.is_finite() && ex.weight.is_finite(), "label {} weight {}", ex.label, ex.weight);
    for f in &ex.features {
        assert!(f.value.is_finite(), "feature {} has value {}", f.key, f.value);
        assert!((f.field as usize) < num_fields, "feature {} in field {} of {num_fields}", f.key, f.field);
    }
}
