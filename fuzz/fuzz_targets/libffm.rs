//! Arbitrary bytes as a Libffm file through the trainer's reader (see `common.rs`).

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use starling_data::Format;

fuzz_target!(|data: &[u8]| common::read_text("ffm", Format::Libffm, data));
