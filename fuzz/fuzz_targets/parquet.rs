//! Arbitrary bytes as a Parquet file through the trainer's Parquet reader: schema, column
//! mapping, splits of row groups, decoding.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use starling_core::Example;
use starling_data::parquet::{parquet_splits, ParquetReader};
use starling_data::{BadLines, Format, Pipeline, PipelineConfig};

fuzz_target!(|data: &[u8]| {
    let files = vec![common::scratch_file("input.parquet", data)];
    let config = PipelineConfig {
        format: Format::Parquet,
        hash_bits: 18,
        binary_labels: true,
        max_bad_lines: 1 << 20,
        ..Default::default()
    };
    let Ok(pipeline) = Pipeline::from_files(&config, &files) else { return };
    let Ok(splits) = parquet_splits(&files, 3) else { return };
    let num_fields = pipeline.num_fields();
    let mut reader = ParquetReader::new(splits, pipeline, BadLines::new(config.max_bad_lines));
    let mut ex = Example::default();
    while let Ok(true) = reader.next(&mut ex) {
        common::check_example(&ex, num_fields);
    }
});
