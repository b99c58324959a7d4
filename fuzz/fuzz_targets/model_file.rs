//! Arbitrary bytes as a model file. The checksum over the file is appended, so the fuzzer
//! reaches past it into the header and the rows (a bad checksum alone is refused at the end).

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    bytes.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    let path = common::scratch_file("input.model", &bytes);
    if let Ok(model) = starling::model_file::load(&path) {
        assert_eq!(model.tables.len(), model.net.tables().len());
    }
});
