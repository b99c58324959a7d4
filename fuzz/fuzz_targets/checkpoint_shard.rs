//! Arbitrary bytes as a checkpoint shard file of LR's table. The first 8 bytes
//! are the row count the manifest records; the rest is the file, whose size and checksum the
//! manifest gets right, so the fuzzer reaches the rows.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use starling_core::{ModelSpec, Optimizer, TableSpec};
use starling_ps::checkpoint::MANIFEST_VERSION;
use starling_ps::{load_rows, Manifest, ShardFileInfo, NUM_VSHARDS};

fuzz_target!(|data: &[u8]| {
    let Some((rows, body)) = data.split_first_chunk::<8>() else { return };
    let dir = common::scratch_dir().join("checkpoint");
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = body.to_vec();
    file.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    std::fs::write(dir.join("server-0000.shard"), &file).unwrap();
    // LR's table with AdaGrad, as `starling launch` checkpoints it (the seed is such a file).
    let tables = vec![TableSpec::for_model("weights", &ModelSpec::lr(), &Optimizer::adagrad_default())];
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        step: 1,
        worker_clocks: vec![1],
        servers: 1,
        tables: tables.clone(),
        files: vec![ShardFileInfo {
            file: "server-0000.shard".into(),
            server: 0,
            rows: u64::from_le_bytes(*rows),
            bytes: file.len() as u64,
            crc32: crc32fast::hash(body),
            vshards: (0..NUM_VSHARDS).collect(),
        }],
        job: String::new(),
        examples_seen: 0,
        passes_done: 0,
        created_unix: 0,
        fields: Vec::new(),
        bias_field: None,
        pieces_left: None,
    };
    let _ = load_rows(&dir, &manifest, &mut |t, _key, row| {
        let spec = &tables[t as usize];
        assert_eq!(row.len(), spec.row_len(), "a row of table {t} has {} floats", row.len());
    });
});
