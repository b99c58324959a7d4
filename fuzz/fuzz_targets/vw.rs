//! Arbitrary bytes as a Vw file through the trainer's reader (see `common.rs`).

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use starling_data::Format;

fuzz_target!(|data: &[u8]| common::read_text("vw", Format::Vw, data));
