use std::collections::HashSet;

use starling_core::{ModelSpec, Optimizer};
use tempfile::TempDir;

use super::*;
use crate::shard::{vshard_of, ShardMap, Split, NUM_VSHARDS};
use crate::table::Init;

fn specs() -> Vec<TableSpec> {
    vec![
        TableSpec::for_model("w", &ModelSpec { seed: 3, ..ModelSpec::fm(2) }, &Optimizer::adagrad_default()),
        TableSpec::dense_block("mlp", 8, 4, &Optimizer::adam_default(), Init::Uniform { scale: 0.1, seed: 5 }),
    ]
}

fn servers(specs: &[TableSpec], n: usize) -> Vec<Server> {
    let map = ShardMap::even(n);
    (0..n).map(|i| Server::new(i, specs, &map.vshards_of(i))).collect()
}

/// A checkpoint written by 2 servers after a few rounds of pushes, and a one-process reference
/// that received the same pushes.
fn fixture() -> (TempDir, Manifest, Server) {
    let specs = specs();
    let map = ShardMap::even(2);
    let two = servers(&specs, 2);
    let all: Vec<u32> = (0..NUM_VSHARDS).collect();
    let reference = Server::new(0, &specs, &all);
    let mut split = Split::default();
    for round in 0..3u64 {
        for (t, spec) in specs.iter().enumerate() {
            let keys: Vec<u64> =
                if t == 0 { (0..3000u64).map(|i| i * 7919 + round).collect() } else { (0..40).collect() };
            let dim = spec.dim;
            let grads: Vec<f32> = (0..keys.len() * dim).map(|i| ((i as f32 + round as f32) * 0.37).sin()).collect();
            reference.push(t as u32, &keys, &grads).unwrap();
            split.fill(&map, &keys);
            for (s, server) in two.iter().enumerate() {
                let g: Vec<f32> = split.pos[s]
                    .iter()
                    .flat_map(|&p| &grads[p as usize * dim..(p as usize + 1) * dim])
                    .copied()
                    .collect();
                server.push(t as u32, &split.keys[s], &g).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let files = two.iter().map(|s| write_shard_file(dir.path(), s).unwrap()).collect();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        step: 3,
        worker_clocks: vec![3, 3],
        servers: 2,
        tables: specs,
        files,
        job: "[model]\nkind = \"fm\"\nk = 2\n".into(),
        examples_seen: 1234,
        passes_done: 1,
        created_unix: 1_700_000_000,
        fields: Vec::new(),
        bias_field: None,
        pieces_left: None,
    };
    write_manifest(dir.path(), &manifest).unwrap();
    (dir, manifest, reference)
}

fn total_rows(s: &Server) -> u64 {
    s.stats().rows
}

#[test]
fn two_servers_checkpoint_loads_into_three() {
    let (dir, written, reference) = fixture();
    let manifest = read_manifest(dir.path()).unwrap();
    assert_eq!(manifest, written);
    assert_eq!(manifest.files.iter().map(|f| f.rows).sum::<u64>(), total_rows(&reference));
    let three = servers(&manifest.tables, 3);
    let loaded: u64 = three.iter().map(|s| load_into(dir.path(), &manifest, s).unwrap()).sum();
    assert_eq!(loaded, total_rows(&reference));
    assert_eq!(three.iter().map(total_rows).sum::<u64>(), total_rows(&reference));
    let map = ShardMap::even(3);
    let mut checked = 0;
    for (t, store) in reference.tables().iter().enumerate() {
        let mut got = vec![0f32; store.row_len()];
        store.for_each_row(&mut |key, row| {
            three[map.server_of(key)].tables()[t].read(key, &mut got);
            assert_eq!(got, row, "table {t} key {key}");
            checked += 1;
        });
    }
    assert_eq!(checked, 3 * 3000 + 40);
}

#[test]
fn load_rows_gives_every_row_exactly_once() {
    let (dir, manifest, reference) = fixture();
    let mut seen = HashSet::new();
    let mut want = vec![0f32; 6];
    load_rows(dir.path(), &manifest, &mut |t, key, row| {
        assert!(seen.insert((t, key)), "row ({t}, {key}) given twice");
        let store = &reference.tables()[t as usize];
        want.resize(store.row_len(), 0.0);
        store.read(key, &mut want);
        assert_eq!(row, &want[..]);
    })
    .unwrap();
    assert_eq!(seen.len() as u64, total_rows(&reference));
}

/// Message of a checkpoint error, or a panic naming what came instead.
fn message(r: Result<impl std::fmt::Debug, PsError>) -> String {
    match r {
        Err(e @ PsError::Checkpoint { .. }) => e.to_string(),
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn a_flipped_byte_is_a_checksum_error_naming_the_file_and_loads_nothing() {
    let (dir, manifest, _) = fixture();
    let path = dir.path().join(&manifest.files[1].file);
    let clean = std::fs::read(&path).unwrap();
    // One flip among the rows, one in the header where it would otherwise read as a bad count.
    for at in [clean.len() / 2, 20] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let three = servers(&manifest.tables, 3);
        let m = message(load_into(dir.path(), &manifest, &three[0]));
        assert!(m.contains("server-0001.shard") && m.contains("checksum mismatch"), "{m}");
        assert_eq!(total_rows(&three[0]), 0, "a damaged checkpoint must not half-load");
        assert!(message(load_rows(dir.path(), &manifest, &mut |_, _, _| {})).contains("checksum mismatch"));
    }
}

#[test]
fn a_truncated_file_is_refused() {
    let (dir, manifest, _) = fixture();
    let path = dir.path().join(&manifest.files[0].file);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 100).unwrap();
    let m = message(load_rows(dir.path(), &manifest, &mut |_, _, _| {}));
    assert!(m.contains("server-0000.shard") && m.contains("truncated"), "{m}");
}

/// Rewrites shard file `i` through `edit` with a valid checksum (recorded in the manifest too), so
/// the structural checks behind the checksum get exercised.
fn tamper(dir: &Path, manifest: &mut Manifest, i: usize, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(&manifest.files[i].file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 4);
    edit(&mut bytes);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    manifest.files[i].crc32 = crc;
    manifest.files[i].bytes = bytes.len() as u64;
}

/// Offset of the first row's key in the fixture's shard files.
fn first_row_offset(m: &Manifest, i: usize) -> usize {
    let tables: usize = m.tables.iter().map(|t| 12 + t.name.len()).sum();
    20 + tables + 4 + 4 * m.files[i].vshards.len() + 12
}

#[test]
fn structural_damage_behind_a_valid_checksum_is_named() {
    let (dir, clean, _) = fixture();
    let mut m = clean.clone();
    tamper(dir.path(), &mut m, 0, |b| b[0] = b'X');
    assert!(message(load_rows(dir.path(), &m, &mut |_, _, _| {})).contains("bad magic"));
    tamper(dir.path(), &mut m, 0, |b| {
        b[0] = b'S';
        b[8..12].copy_from_slice(&7u32.to_le_bytes());
    });
    assert!(message(load_rows(dir.path(), &m, &mut |_, _, _| {})).contains("shard format version 7"));
    tamper(dir.path(), &mut m, 0, |b| b[8..12].copy_from_slice(&1u32.to_le_bytes()));
    load_rows(dir.path(), &m, &mut |_, _, _| {}).unwrap();
    let at = first_row_offset(&m, 0);
    // A weight changed behind a valid checksum: fine by itself, but not the file the manifest recorded.
    tamper(dir.path(), &mut m, 0, |b| b[at + 8] ^= 1);
    load_rows(dir.path(), &m, &mut |_, _, _| {}).unwrap();
    let msg = message(load_rows(dir.path(), &clean, &mut |_, _, _| {}));
    assert!(msg.contains("manifest records"), "{msg}");
    tamper(dir.path(), &mut m, 0, |b| {
        let key = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        let foreign = (key + 1..).find(|&k| vshard_of(k) != vshard_of(key)).unwrap();
        b[at..at + 8].copy_from_slice(&foreign.to_le_bytes());
    });
    let msg = message(load_rows(dir.path(), &m, &mut |_, _, _| {}));
    assert!(msg.contains("server-0000.shard") && msg.contains("is in virtual shard"), "{msg}");
}

#[test]
fn a_table_of_another_shape_is_refused_by_name() {
    let (dir, manifest, _) = fixture();
    let mut other = manifest.tables.clone();
    other[1].dim = 8;
    let s = Server::new(0, &other, &ShardMap::even(1).vshards_of(0));
    let m = message(load_into(dir.path(), &manifest, &s));
    assert!(m.contains("\"mlp\"") && m.contains("dim 4") && m.contains("dim 8"), "{m}");
    assert_eq!(total_rows(&s), 0);
}

#[test]
fn manifest_problems_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let m = message(read_manifest(dir.path()));
    assert!(m.contains("not a complete checkpoint"), "{m}");
    assert!(message(load_dir(dir.path())).contains("not a complete checkpoint"));

    let (dir, manifest, _) = fixture();
    let path = dir.path().join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("version = 2", "version = 9")).unwrap();
    let m = message(read_manifest(dir.path()));
    assert!(m.contains("manifest version 9"), "{m}");
    std::fs::write(&path, text.replace("step = 3\n", "")).unwrap();
    let m = message(read_manifest(dir.path()));
    assert!(m.contains("malformed manifest") && m.contains("step"), "{m}");
    let mut lost = manifest.clone();
    lost.files[0].vshards.pop();
    assert!(message(write_manifest(dir.path(), &lost)).contains("in no shard file"));
    let mut escape = manifest;
    escape.files[0].file = "../x.shard".into();
    assert!(message(write_manifest(dir.path(), &escape)).contains("not a plain file name"));
}

/// Reads a checkpoint the way `predict` would.
fn load_dir(dir: &Path) -> Result<(), PsError> {
    let m = read_manifest(dir)?;
    load_rows(dir, &m, &mut |_, _, _| {})
}

/// Writes a small complete checkpoint of one server for `step` under `root`.
fn small_checkpoint(root: &Path, step: u64) {
    let dir = &create_step_dir(root, step).unwrap();
    let specs = specs();
    let s = Server::new(0, &specs, &ShardMap::even(1).vshards_of(0));
    s.push(0, &[1, 2, 3], &[0.5; 9]).unwrap();
    let info = write_shard_file(dir, &s).unwrap();
    let m = Manifest {
        version: MANIFEST_VERSION,
        step,
        worker_clocks: vec![step],
        servers: 1,
        tables: specs,
        files: vec![info],
        job: String::new(),
        examples_seen: 0,
        passes_done: 0,
        created_unix: 0,
        fields: Vec::new(),
        bias_field: None,
        pieces_left: None,
    };
    write_manifest(dir, &m).unwrap();
}

#[test]
fn latest_skips_incomplete_checkpoints() {
    let root = tempfile::tempdir().unwrap();
    assert!(latest(root.path(), &mut |_, _| {}).unwrap().is_none());
    assert!(latest(&root.path().join("absent"), &mut |_, _| {}).unwrap().is_none());
    small_checkpoint(root.path(), 10);
    small_checkpoint(root.path(), 20);
    // Step 30 was cut short: its shard file is there, its manifest is not.
    small_checkpoint(root.path(), 30);
    std::fs::remove_file(step_dir(root.path(), 30).join(MANIFEST_FILE)).unwrap();
    std::fs::create_dir(root.path().join("step-junk")).unwrap();
    let (dir, m) = latest(root.path(), &mut |_, _| {}).unwrap().unwrap();
    assert_eq!((dir, m.step), (step_dir(root.path(), 20), 20));
    assert!(step_dir(root.path(), 20).ends_with("step-0000000020"));
    // A checkpoint directory itself is accepted too.
    let (dir, m) = latest(&step_dir(root.path(), 10), &mut |_, _| {}).unwrap().unwrap();
    assert_eq!((dir, m.step), (step_dir(root.path(), 10), 10));
    load_dir(&step_dir(root.path(), 10)).unwrap();
}

#[test]
fn a_damaged_newest_checkpoint_is_passed_over_for_the_previous_one_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    for step in [10, 20, 30] {
        small_checkpoint(root.path(), step);
    }
    // Step 30: a flipped byte in its shard file; step 20: the shard file truncated.
    let shard30 = step_dir(root.path(), 30).join(shard_file_name(0));
    let mut bytes = std::fs::read(&shard30).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&shard30, bytes).unwrap();
    let shard20 = step_dir(root.path(), 20).join(shard_file_name(0));
    let len = std::fs::metadata(&shard20).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&shard20).unwrap().set_len(len - 7).unwrap();
    let mut skipped = Vec::new();
    let (dir, m) = latest(root.path(), &mut |d, e| skipped.push((d.to_path_buf(), e.to_string()))).unwrap().unwrap();
    assert_eq!((dir, m.step), (step_dir(root.path(), 10), 10));
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0].0, step_dir(root.path(), 30));
    assert!(skipped[0].1.contains(&shard30.display().to_string()), "{}", skipped[0].1);
    assert!(
        skipped[1].1.contains(&shard20.display().to_string()) && skipped[1].1.contains("truncated"),
        "{}",
        skipped[1].1
    );
}

#[test]
fn prune_keeps_the_newest_and_drops_stale_incomplete_ones() {
    let root = tempfile::tempdir().unwrap();
    for step in [1, 2, 3, 4] {
        small_checkpoint(root.path(), step);
    }
    std::fs::create_dir(step_dir(root.path(), 0)).unwrap();
    std::fs::create_dir(step_dir(root.path(), 5)).unwrap();
    let removed = prune(root.path(), 2).unwrap();
    assert_eq!(removed.len(), 3);
    let left: Vec<u64> = step_dirs(root.path()).unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(left, vec![3, 4, 5], "the newest two complete ones, and the possibly in-progress step 5");
    prune(root.path(), 0).unwrap();
    assert_eq!(
        latest(root.path(), &mut |_, _| {}).unwrap().unwrap().1.step,
        4,
        "the newest complete checkpoint always stays"
    );
    std::fs::write(root.path().join("notes.txt"), "mine").unwrap();
    prune(root.path(), 1).unwrap();
    assert!(root.path().join("notes.txt").exists());
}

#[test]
fn writes_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(temp_name("server-0001.shard"), format!(".server-0001.shard.tmp-{}", std::process::id()));
    // A write that fails halfway leaves neither the final name nor the temporary one.
    let r = write_atomic(dir.path(), "x.shard", &mut |w| {
        w.write_all(b"partial")?;
        assert!(dir.path().join(temp_name("x.shard")).exists() && !dir.path().join("x.shard").exists());
        Err(std::io::Error::other("disk full"))
    });
    assert!(matches!(&r, Err(PsError::Io { context, .. }) if context.contains("x.shard")), "{r:?}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    // A directory that does not exist: a clear error and nothing created.
    let s = Server::new(3, &specs(), &ShardMap::even(1).vshards_of(0));
    let missing = dir.path().join("missing");
    let r = write_shard_file(&missing, &s);
    assert!(matches!(&r, Err(PsError::Io { context, .. }) if context.contains("server-0003.shard")), "{r:?}");
    assert!(!missing.exists() && names(dir.path()).is_empty());
    // A good write leaves exactly the final file, of the size it reports.
    let info = write_shard_file(dir.path(), &s).unwrap();
    assert_eq!(names(dir.path()), vec!["server-0003.shard".to_string()]);
    assert_eq!(std::fs::metadata(dir.path().join(&info.file)).unwrap().len(), info.bytes);
    assert_eq!((info.rows, info.vshards.len()), (0, NUM_VSHARDS as usize));
}
