//! Arbitrary bytes as a binary example cache: the header, the end block, every block's examples.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use starling_core::Example;
use starling_data::{read_cache_header, CacheReader};

fuzz_target!(|data: &[u8]| {
    let path = common::scratch_file("input.cache", data);
    let _ = read_cache_header(&path);
    for hash_bits in [0, 18] {
        let Ok(mut reader) = CacheReader::open(&path, hash_bits) else { return };
        let num_fields = reader.header().num_fields as usize;
        let mut ex = Example::default();
        while let Ok(true) = reader.next(&mut ex) {
            common::check_example(&ex, num_fields);
        }
    }
});
