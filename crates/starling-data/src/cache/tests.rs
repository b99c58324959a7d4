//! Round trips, folding, rewinds, and every kind of damaged file refused with its offset.

use std::path::{Path, PathBuf};

use starling_core::hash::fold;
use starling_core::rng::Rng;
use starling_core::{Example, Feature};

use super::*;

fn header(fingerprint: &str) -> CacheHeader {
    CacheHeader {
        fingerprint: fingerprint.into(),
        num_fields: 3,
        field_names: vec!["a".into(), "b".into(), "bias".into()],
        source: "tests".into(),
    }
}

/// Examples with every kind of content: zero features, full 64-bit keys, values equal and not
/// equal to 1.0 (including 0 and -0), large fields, weights.
fn examples(n: usize, seed: u64) -> Vec<Example> {
    let mut rng = Rng::new(seed);
    let values = [1.0f32, 0.0, -0.0, 0.5, -3.25, 1e30, f32::MIN_POSITIVE];
    let fields = [0u32, 1, 63, 64, 127, 128, 70_000, u32::MAX];
    (0..n)
        .map(|i| {
            let k = if i % 97 == 0 { 0 } else { rng.below(60) as usize };
            let one_hot = i % 3 != 0;
            let features = (0..k)
                .map(|_| Feature {
                    key: rng.next_u64(),
                    value: if one_hot { 1.0 } else { values[rng.below(values.len() as u64) as usize] },
                    field: fields[rng.below(fields.len() as u64) as usize],
                })
                .collect();
            let weight = if i % 5 == 0 { 0.25 + i as f32 } else { 1.0 };
            Example { label: (i % 2) as f32 - 0.5 * f32::from(u8::from(i % 7 == 0)), weight, features }
        })
        .collect()
}

fn write_cache(path: &Path, exs: &[Example], block_size: usize) -> CacheStats {
    let file = std::fs::File::create(path).unwrap();
    let mut w = CacheWriter::with_block_size(file, &header("fp"), block_size).unwrap();
    for ex in exs {
        w.push(ex).unwrap();
    }
    w.finish().unwrap().1
}

fn read_all(r: &mut CacheReader) -> Result<Vec<Example>, DataError> {
    let mut out = Vec::new();
    let mut ex = Example::default();
    while r.next(&mut ex)? {
        out.push(ex.clone());
    }
    Ok(out)
}

/// Bit-exact comparison: `-0.0 == 0.0` would hide a lost sign.
fn same(a: &[Example], b: &[Example]) -> bool {
    let bits = |e: &Example| {
        let f: Vec<_> = e.features.iter().map(|f| (f.key, f.value.to_bits(), f.field)).collect();
        (e.label.to_bits(), e.weight.to_bits(), f)
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| bits(x) == bits(y))
}

/// File offsets of the blocks and of the end block, walking the length prefixes.
fn block_offsets(bytes: &[u8]) -> (Vec<usize>, usize) {
    let header_len = le_u32(&bytes[20..24]) as usize;
    let mut at = PREAMBLE_LEN as usize + header_len + 4;
    let mut blocks = Vec::new();
    loop {
        let len = le_u32(&bytes[at..at + 4]) as usize;
        if len == 0 {
            return (blocks, at);
        }
        blocks.push(at);
        at += 8 + len;
    }
}

fn tmp_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn round_trip_across_many_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let exs = examples(1500, 1);
    let stats = write_cache(&path, &exs, 512);
    assert_eq!(stats.examples, 1500);
    assert_eq!(stats.features, exs.iter().map(|e| e.features.len() as u64).sum::<u64>());
    assert_eq!(stats.bytes, std::fs::metadata(&path).unwrap().len());
    let bytes = std::fs::read(&path).unwrap();
    assert!(block_offsets(&bytes).0.len() > 50, "the test must span many blocks");

    let mut r = CacheReader::open(&path, 0).unwrap();
    assert_eq!(r.header(), &header("fp"));
    assert_eq!(r.totals(), stats);
    let back = read_all(&mut r).unwrap();
    assert!(same(&back, &exs));
    assert!(back.iter().any(|e| e.features.is_empty()));
    // The end stays the end.
    let mut ex = Example::default();
    assert!(!r.next(&mut ex).unwrap());
    assert_eq!(r.examples_read(), 1500);

    // The default block size too, and an empty cache.
    let stats = write_cache(&path, &exs, DEFAULT_BLOCK_SIZE);
    assert!(same(&read_all(&mut CacheReader::open(&path, 0).unwrap()).unwrap(), &exs));
    assert_eq!(stats.bytes, std::fs::metadata(&path).unwrap().len());
    write_cache(&path, &[], 512);
    assert!(read_all(&mut CacheReader::open(&path, 0).unwrap()).unwrap().is_empty());
}

#[test]
fn keys_are_folded_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let exs = examples(300, 2);
    write_cache(&path, &exs, 1024);
    for bits in [0, 1, 18, 24, 63, 64] {
        let back = read_all(&mut CacheReader::open(&path, bits).unwrap()).unwrap();
        let mut want = exs.clone();
        want.iter_mut().flat_map(|e| &mut e.features).for_each(|f| f.key = fold(f.key, bits));
        assert!(same(&back, &want), "hash_bits = {bits}");
    }
    assert!(matches!(CacheReader::open(&path, 65), Err(DataError::Config(_))));
}

#[test]
fn rewind_starts_the_same_pass_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let exs = examples(700, 3);
    write_cache(&path, &exs, 300);
    let mut r = CacheReader::open(&path, 0).unwrap();
    let mut ex = Example::default();
    for _ in 0..333 {
        assert!(r.next(&mut ex).unwrap());
    }
    r.rewind().unwrap();
    assert!(same(&read_all(&mut r).unwrap(), &exs));
    r.rewind().unwrap();
    assert!(same(&read_all(&mut r).unwrap(), &exs));
}

#[test]
fn one_hot_features_take_at_most_ten_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let mut rng = Rng::new(4);
    // Criteo-like: 39 columns and a bias, all one-hot, unit weights.
    let exs: Vec<Example> = (0..2000)
        .map(|i| Example {
            label: (i % 4 == 0) as u8 as f32,
            weight: 1.0,
            features: (0..40).map(|f| Feature { key: rng.next_u64(), value: 1.0, field: f }).collect(),
        })
        .collect();
    let stats = write_cache(&path, &exs, DEFAULT_BLOCK_SIZE);
    let per_feature = stats.bytes as f64 / stats.features as f64;
    assert!(per_feature <= 10.0, "{per_feature:.2} bytes per feature");
    assert!(per_feature < 9.3, "{per_feature:.2} bytes per feature");
}

#[test]
fn a_truncated_cache_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.cache");
    write_cache(&full, &examples(400, 5), 256);
    let bytes = std::fs::read(&full).unwrap();
    let (blocks, end) = block_offsets(&bytes);
    // Without the end block, mid-block, at a block boundary, inside the header.
    for cut in [bytes.len() - 1, end, blocks[3] + 20, blocks[3], 40, 21] {
        let p = tmp_file(&dir, "cut.cache", &bytes[..cut]);
        match CacheReader::open(&p, 0) {
            Err(DataError::CacheTruncated { path, offset, .. }) => assert_eq!((path, offset), (p.clone(), cut as u64)),
            Err(e) => panic!("cut at {cut}: {e}"),
            Ok(_) => panic!("cut at {cut}: opened"),
        }
        let e = CacheReader::open(&p, 0).err().unwrap().to_string();
        assert!(e.contains("cut.cache") && e.contains(&format!("byte {cut}")), "{e}");
        assert!(matches!(cache_status(&p, "fp"), Ok(CacheStatus::Stale(_))));
    }
    // A block dropped from the middle: the totals in the end block catch it.
    let mut spliced = bytes[..blocks[2]].to_vec();
    spliced.extend_from_slice(&bytes[blocks[3]..]);
    let p = tmp_file(&dir, "spliced.cache", &spliced);
    let mut r = CacheReader::open(&p, 0).unwrap();
    let expected_at = (end - (blocks[3] - blocks[2])) as u64;
    match read_all(&mut r) {
        Err(DataError::CacheCorrupt { offset, expected, .. }) => {
            assert_eq!(offset, expected_at);
            assert!(expected.contains("400 examples"), "{expected}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_flipped_byte_is_a_checksum_error_at_its_block() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.cache");
    let exs = examples(400, 6);
    write_cache(&good, &exs, 256);
    let bytes = std::fs::read(&good).unwrap();
    let (blocks, end) = block_offsets(&bytes);

    let mut bad = bytes.clone();
    bad[blocks[5] + 8 + 3] ^= 0x10;
    let p = tmp_file(&dir, "bad.cache", &bad);
    let mut r = CacheReader::open(&p, 0).unwrap();
    let mut ex = Example::default();
    let mut n = 0;
    let err = loop {
        match r.next(&mut ex) {
            Ok(true) => n += 1,
            Ok(false) => panic!("read to the end"),
            Err(e) => break e,
        }
    };
    match &err {
        DataError::CacheChecksum { offset, what: "block", .. } => assert_eq!(*offset, blocks[5] as u64),
        e => panic!("{e}"),
    }
    assert!(err.to_string().contains(&format!("block at byte {}", blocks[5])), "{err}");
    // Nothing from the damaged block was returned, and the reader stays stopped until a rewind.
    let mut before = 0;
    let mut g = CacheReader::open(&good, 0).unwrap();
    while g.next(&mut ex).unwrap() {
        before += usize::from(g.block_start < blocks[5] as u64);
    }
    assert!(before > 0);
    assert_eq!(n, before);
    assert!(r.next(&mut ex).is_err());

    // In the header, and in the end block's counts.
    let mut bad = bytes.clone();
    bad[PREAMBLE_LEN as usize + 2] ^= 1;
    let p = tmp_file(&dir, "bad-header.cache", &bad);
    let e = CacheReader::open(&p, 0).err().unwrap();
    assert!(matches!(e, DataError::CacheChecksum { offset: 24, what: "header", .. }), "{e}");
    let mut bad = bytes.clone();
    bad[end + 5] ^= 1;
    let p = tmp_file(&dir, "bad-end.cache", &bad);
    assert!(matches!(CacheReader::open(&p, 0), Err(DataError::CacheTruncated { .. })));
}

#[test]
fn foreign_files_and_other_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [("empty", &b""[..]), ("text", b"1 1:2 3:4\n0 5:1\n"), ("short", b"STARLING")] {
        let p = tmp_file(&dir, name, bytes);
        let e = CacheReader::open(&p, 0).err().unwrap();
        if name == "short" {
            assert!(matches!(e, DataError::CacheTruncated { offset: 8, .. }), "{e}");
        } else {
            assert!(matches!(e, DataError::NotACache { .. }), "{e}");
            assert!(e.to_string().contains("not a Starling cache"), "{e}");
            // Never mistaken for a stale cache that may be overwritten.
            assert!(matches!(cache_status(&p, "fp"), Err(DataError::NotACache { .. })));
        }
    }
    let good = dir.path().join("good.cache");
    write_cache(&good, &examples(10, 7), 256);
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[16..20].copy_from_slice(&(CACHE_VERSION + 1).to_le_bytes());
    let p = tmp_file(&dir, "future.cache", &bytes);
    let e = CacheReader::open(&p, 0).err().unwrap();
    assert!(matches!(e, DataError::CacheVersion { found: 2, supported: 1, .. }), "{e}");
    assert!(matches!(cache_status(&p, "fp"), Ok(CacheStatus::Stale(_))));
}

/// A cache of raw `blocks` (payloads; CRCs made to match) and an end block with these counts.
fn raw_cache(blocks: &[Vec<u8>], examples: u64, features: u64) -> Vec<u8> {
    let (mut bytes, _) = CacheWriter::new(Vec::new(), &header("fp")).unwrap().finish().unwrap();
    bytes.truncate(bytes.len() - END_LEN as usize);
    for b in blocks {
        bytes.extend_from_slice(&(b.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(b).to_le_bytes());
        bytes.extend_from_slice(b);
    }
    let mut counts = examples.to_le_bytes().to_vec();
    counts.extend_from_slice(&features.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&counts);
    bytes.extend_from_slice(&crc32fast::hash(&counts).to_le_bytes());
    bytes
}

#[test]
fn bad_lengths_and_varints_are_refused_with_their_offset() {
    let dir = tempfile::tempdir().unwrap();
    let start = raw_cache(&[], 0, 0).len() - END_LEN as usize;
    let payload = start + 8;
    let check = |name: &str, bytes: &[u8], want_offset: usize, want: &str| {
        let p = tmp_file(&dir, name, bytes);
        let err = CacheReader::open(&p, 0).and_then(|mut r| read_all(&mut r)).err().unwrap();
        let offset = match &err {
            DataError::CacheCorrupt { offset, .. } | DataError::CacheTruncated { offset, .. } => *offset,
            e => panic!("{name}: {e}"),
        };
        assert_eq!(offset, want_offset as u64, "{name}: {err}");
        assert!(err.to_string().contains(want), "{name}: {err}");
    };
    // A varint that never ends; one over 64 bits; a feature count beyond the block; a cut key;
    // a field over 32 bits.
    check("endless", &raw_cache(&[vec![0x80; 5]], 1, 0), payload, "varint before the end");
    check("wide", &raw_cache(&[[vec![0xff; 9], vec![0x02]].concat()], 1, 0), payload, "at most 64 bits");
    check("count", &raw_cache(&[vec![200, 1, 0, 0, 0, 0, 0, 0, 0, 0]], 1, 0), payload, "100 features");
    let cut_key = [vec![4], vec![0; 4], vec![7; 8], vec![1], vec![0; 4], vec![7; 5]].concat();
    check("key", &raw_cache(&[cut_key], 1, 2), payload + 18, "feature key");
    let wide_field = [vec![2], vec![0; 4], vec![7; 8], vec![0x80, 0x80, 0x80, 0x80, 0x20]].concat();
    check("field", &raw_cache(&[wide_field], 1, 1), payload + 13, "below 2^32");
    // A block length over the limit, and one past the end of the file: refused before allocating.
    let mut huge = raw_cache(&[vec![0; 16]], 1, 0);
    huge[start..start + 4].copy_from_slice(&(MAX_BLOCK_SIZE as u32 + 1).to_le_bytes());
    check("huge", &huge, start, "at most 67108864 bytes");
    let mut long = raw_cache(&[vec![0; 16]], 1, 0);
    long[start..start + 4].copy_from_slice(&1000u32.to_le_bytes());
    check("long", &long, start, "a block of 1000 bytes");
    // Bytes after the end block.
    let mut trailing = raw_cache(&[], 0, 0);
    trailing.extend_from_slice(&raw_cache(&[], 0, 0)[trailing.len() - END_LEN as usize..]);
    check("trailing", &trailing, start + END_LEN as usize, "end of the file");
    // A well-formed hand-made block reads back.
    let p = tmp_file(&dir, "ok", &raw_cache(&[[vec![3], vec![0; 4], vec![0; 4], vec![9; 8], vec![4]].concat()], 1, 1));
    let back = read_all(&mut CacheReader::open(&p, 0).unwrap()).unwrap();
    assert_eq!(back[0].features, vec![Feature { key: 0x0909_0909_0909_0909, value: 1.0, field: 2 }]);
    assert_eq!((back[0].label, back[0].weight), (0.0, 0.0));
}

#[test]
fn status_and_atomic_creation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.cache");
    assert_eq!(cache_status(&path, "fp").unwrap(), CacheStatus::Missing);
    assert_eq!(read_cache_header(&path).unwrap(), None);
    let exs = examples(50, 8);
    {
        let mut w = CacheWriter::create(&path, &header("fp")).unwrap();
        w.push(&exs[0]).unwrap();
        // Dropped unfinished: nothing appears.
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let mut w = CacheWriter::create(&path, &header("fp")).unwrap();
    for ex in &exs {
        w.push(ex).unwrap();
    }
    assert!(!path.exists());
    let stats = w.commit().unwrap();
    assert_eq!(stats.bytes, std::fs::metadata(&path).unwrap().len());
    assert_eq!(cache_status(&path, "fp").unwrap(), CacheStatus::Ready(header("fp")));
    assert!(matches!(cache_status(&path, "other input").unwrap(), CacheStatus::Stale(_)));
    assert_eq!(read_cache_header(&path).unwrap(), Some(header("fp")));
    assert!(same(&read_all(&mut CacheReader::open(&path, 0).unwrap()).unwrap(), &exs));
}

#[test]
fn shares_split_the_blocks_and_together_read_every_example_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cache");
    let exs = examples(1500, 9);
    write_cache(&path, &exs, 4096);
    let mut all = Vec::new();
    for rank in 0..3 {
        let mut r = CacheReader::open(&path, 0).unwrap().share(rank, 3).unwrap();
        let part = read_all(&mut r).unwrap();
        assert!(!part.is_empty(), "share {rank} got no block");
        r.rewind().unwrap();
        assert!(same(&read_all(&mut r).unwrap(), &part), "share {rank} changed on rewind");
        all.extend(part);
    }
    let key = |e: &Example| (e.label.to_bits(), e.features.iter().map(|f| f.key).collect::<Vec<_>>());
    let (mut a, mut b): (Vec<_>, Vec<_>) = (all.iter().map(key).collect(), exs.iter().map(key).collect());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert!(CacheReader::open(&path, 0).unwrap().share(3, 3).is_err());
}
