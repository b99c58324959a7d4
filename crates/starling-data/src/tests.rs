//! End-to-end tests of the input side: files → splits → readers → examples.
#![allow(clippy::cloned_ref_to_slice_refs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use starling_core::hash::{fold, hash_cross, hash_id, hash_token};
use starling_core::rng::Rng;
use starling_core::{Example, Feature};

use crate::pipeline::{bias_key, log_bucket_id, numeric_field_key};
use crate::*;

/// Writes `data` to `dir/name` and returns the path.
pub(crate) fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// `data` gzip-compressed.
pub(crate) fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn cfg(format: Format) -> PipelineConfig {
    PipelineConfig { format, ..PipelineConfig::default() }
}

/// Every example of `files` read through `n` splits (in split order).
fn read_all(config: &PipelineConfig, files: &[PathBuf], n: usize) -> Result<Vec<Example>, DataError> {
    let pipeline = Pipeline::from_files(config, files)?;
    let splits = make_splits(files, n)?;
    let mut reader = ExampleReader::new(splits, pipeline, BadLines::new(config.max_bad_lines));
    let mut out = Vec::new();
    let mut ex = Example::default();
    while reader.next(&mut ex)? {
        out.push(ex.clone());
    }
    Ok(out)
}

fn f(key: u64, value: f32, field: u32) -> Feature {
    Feature { key: fold(key, 24), value, field }
}

#[test]
fn libsvm_exact_features() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "t.libsvm", b"-1 3:1 11:0.5\n+1 7 # comment\n\n2.5\n");
    let ex = read_all(&cfg(Format::Libsvm), &[p.clone()], 1).unwrap();
    assert_eq!(ex.len(), 3);
    assert_eq!(ex[0].label, -1.0);
    assert_eq!(ex[0].weight, 1.0);
    assert_eq!(ex[0].features, vec![f(hash_id(0, 3), 1.0, 0), f(hash_id(0, 11), 0.5, 0), f(bias_key(), 1.0, 1)]);
    assert_eq!(ex[1].features, vec![f(hash_id(0, 7), 1.0, 0), f(bias_key(), 1.0, 1)]);
    assert_eq!(ex[2].label, 2.5);
    // Binary labels, no bias, no folding.
    let c = PipelineConfig { binary_labels: true, bias: false, hash_bits: 0, ..cfg(Format::Libsvm) };
    let ex = read_all(&c, &[p.clone()], 1).unwrap();
    assert_eq!(ex.iter().map(|e| e.label).collect::<Vec<_>>(), vec![0.0, 1.0, 1.0]);
    assert_eq!(ex[0].features[0], Feature { key: hash_id(0, 3), value: 1.0, field: 0 });
    assert_eq!(ex[2].features, vec![]);
    let pl = Pipeline::from_files(&c, &[p]).unwrap();
    assert_eq!((pl.num_fields(), pl.field_names()), (1, vec!["0".to_string()]));
}

#[test]
fn parse_error_names_file_line_column() {
    let d = tempfile::tempdir().unwrap();
    let mut s = String::new();
    for i in 1..=40 {
        if i == 12 {
            s.push_str("1 3:1 7:abc\n");
        } else {
            s.push_str(&format!("{} {}:1 {}:0.5\n", i % 2, i, i + 100));
        }
    }
    let p = write(d.path(), "train.libsvm", s.as_bytes());
    for n in [1, 2, 3, 5, 7, 40] {
        let e = read_all(&cfg(Format::Libsvm), &[p.clone()], n).unwrap_err();
        let msg = e.to_string();
        assert!(msg.ends_with("train.libsvm:12: column 3 \"7:abc\": expected a number after ':'"), "n={n}: {msg}");
        match e {
            DataError::Parse { line, column, .. } => assert_eq!((line, column), (12, 3)),
            e => panic!("{e:?}"),
        }
    }
    // A later split of a CRLF file with blank lines still names the right line.
    let mut s = String::from("\r\n");
    for i in 2..=300 {
        s.push_str(if i == 250 { "1 a:1\r\n" } else { "0 1:1 2:1\r\n" });
    }
    let p = write(d.path(), "crlf.libsvm", s.as_bytes());
    for n in 1..=7 {
        match read_all(&cfg(Format::Libsvm), &[p.clone()], n).unwrap_err() {
            DataError::Parse { line, column, got, .. } => assert_eq!((line, column, got.as_str()), (250, 2, "a:1")),
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn gzip_input_and_detection_by_magic() {
    let d = tempfile::tempdir().unwrap();
    let text = b"1 1:1\n0 2:1\n1 3:1";
    let plain = write(d.path(), "a.libsvm", text);
    let zipped = write(d.path(), "b.data", &gz(text));
    let named = write(d.path(), "c.libsvm.gz", &gz(text));
    let a = read_all(&cfg(Format::Libsvm), &[plain.clone()], 3).unwrap();
    let b = read_all(&cfg(Format::Libsvm), &[zipped], 3).unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a, b);
    // Auto format: extension, ignoring .gz.
    let c = read_all(&PipelineConfig::default(), &[named], 3).unwrap();
    assert_eq!(a, c);
    // Concatenated gzip members are one stream.
    let mut two = gz(b"1 1:1\n");
    two.extend(gz(b"0 2:1\n"));
    let m = write(d.path(), "multi.gz", &two);
    assert_eq!(read_all(&cfg(Format::Libsvm), &[m], 1).unwrap().len(), 2);
    // A bad line in a gzip file is reported with its line number.
    let bad = write(d.path(), "bad.gz", &gz(b"1 1:1\n\n1 x\n"));
    let e = read_all(&cfg(Format::Libsvm), &[bad], 1).unwrap_err().to_string();
    assert!(e.contains("bad.gz:3: column 2 \"x\""), "{e}");
}

#[test]
fn directories_with_bookkeeping_files() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "part-00000", b"1 1:1\n");
    write(&dir, "part-00001.gz", &gz(b"0 2:1\n"));
    write(&dir, "_SUCCESS", b"");
    write(&dir, ".part-00000.crc", b"garbage");
    write(&dir, "part-00000.crc", b"garbage");
    let files = expand_inputs(&[dir]).unwrap();
    assert_eq!(files.len(), 2);
    let ex = read_all(&cfg(Format::Libsvm), &files, 4).unwrap();
    assert_eq!(ex.iter().map(|e| e.label).collect::<Vec<_>>(), vec![1.0, 0.0]);
}

/// Lines of each format, some with CRLF, blank lines and no final newline.
fn mixed_files(dir: &Path) -> Vec<(PipelineConfig, Vec<PathBuf>)> {
    let mut rng = Rng::new(7);
    let mut svm = String::new();
    let mut vw = String::new();
    let mut ffm = String::new();
    let mut tsv = String::new();
    let mut csv = String::from("label,w,num,cat,junk\r\n");
    for i in 0..500 {
        let nl = if i % 3 == 0 { "\r\n" } else { "\n" };
        let k = 1 + rng.below(8);
        svm.push_str(&format!("{}", rng.below(2)));
        vw.push_str(&format!("{} {} |a", rng.below(2), 1 + rng.below(3)));
        ffm.push_str(&format!("{}", rng.below(2)));
        for j in 0..k {
            svm.push_str(&format!(" {}:{}", rng.below(1000), rng.below(100) as f32 / 10.0));
            vw.push_str(&format!(" f{}:{}", rng.below(50), rng.below(9)));
            ffm.push_str(&format!(" {}:{}:0.5", j, rng.below(100)));
        }
        vw.push_str(&format!(" |b x{} y", rng.below(5)));
        let mut cols = vec![rng.below(2).to_string()];
        for _ in 0..13 {
            cols.push(if rng.below(4) == 0 { String::new() } else { (rng.below(300) as i64 - 2).to_string() });
        }
        for _ in 0..26 {
            cols.push(if rng.below(5) == 0 { String::new() } else { format!("{:08x}", rng.below(1 << 20)) });
        }
        tsv.push_str(&cols.join("\t"));
        csv.push_str(&format!("{},{},{},\"c,{}\",zz", rng.below(2), rng.below(3), rng.below(100), rng.below(9)));
        for s in [&mut svm, &mut vw, &mut ffm, &mut tsv, &mut csv] {
            if i != 499 {
                s.push_str(nl);
                if i % 50 == 7 {
                    s.push_str(nl);
                }
            }
        }
    }
    let w = |name: &str, s: &str| write(dir, name, s.as_bytes());
    let csv_cfg = PipelineConfig {
        columns: ColumnConfig {
            weight: Some("w".into()),
            numeric: vec!["num".into()],
            categorical: vec!["cat".into()],
            ..ColumnConfig::default()
        },
        ..cfg(Format::Csv)
    };
    vec![
        (cfg(Format::Libsvm), vec![w("a.svm", &svm), w("b.svm", &svm)]),
        (
            PipelineConfig { namespaces: "ab".into(), crosses: vec![["a".into(), "b".into()]], ..cfg(Format::Vw) },
            vec![w("a.vw", &vw)],
        ),
        (cfg(Format::Libffm), vec![w("a.ffm", &ffm)]),
        (
            PipelineConfig {
                crosses: vec![["C1".into(), "C2".into()], ["I1".into(), "I1".into()]],
                ..cfg(Format::Criteo)
            },
            vec![w("a.tsv", &tsv)],
        ),
        (csv_cfg, vec![w("a.csv", &csv), w("b.csv", &csv)]),
    ]
}

#[test]
fn same_examples_for_any_split_count() {
    let d = tempfile::tempdir().unwrap();
    for (config, files) in mixed_files(d.path()) {
        let whole = read_all(&config, &files, 1).unwrap();
        assert_eq!(whole.len(), 500 * files.len(), "{:?}", config.format);
        for n in 2..=7 {
            assert_eq!(read_all(&config, &files, n).unwrap(), whole, "{:?} n={n}", config.format);
        }
        // Worker slices partition the examples.
        let pipeline = Pipeline::from_files(&config, &files).unwrap();
        let splits = make_splits(&files, 9).unwrap();
        let mut total = 0;
        for rank in 0..3 {
            let mut r = ExampleReader::new(assign_splits(&splits, rank, 3), pipeline.clone(), BadLines::new(0));
            let mut ex = Example::default();
            while r.next(&mut ex).unwrap() {
                total += 1;
            }
        }
        assert_eq!(total, whole.len());
    }
}

#[test]
fn criteo_tsv_crosses_bias_and_transforms() {
    let d = tempfile::tempdir().unwrap();
    let mut cols = vec!["1".to_string(), "5".into(), "-1".into(), "0".into()];
    cols.extend(std::iter::repeat_n(String::new(), 10));
    cols.push("aa".into());
    cols.push("bb".into());
    cols.extend(std::iter::repeat_n(String::new(), 24));
    let p = write(d.path(), "day.tsv", cols.join("\t").as_bytes());
    let config =
        PipelineConfig { crosses: vec![["C1".into(), "C2".into()], ["I1".into(), "C1".into()]], ..cfg(Format::Criteo) };
    let pl = Pipeline::from_files(&config, &[p.clone()]).unwrap();
    assert_eq!(pl.num_fields(), 39 + 2 + 1);
    let names = pl.field_names();
    assert_eq!(
        (&names[0][..], &names[13][..], &names[39][..], &names[40][..], &names[41][..]),
        ("I1", "C1", "C1*C2", "I1*C1", "bias")
    );
    let ex = &read_all(&config, &[p.clone()], 1).unwrap()[0];
    let (i1, i2, i3) = (hash_id(0, log_bucket_id(5.0)), hash_id(1, log_bucket_id(-1.0)), hash_id(2, 0));
    let (c1, c2) = (hash_token(13, b"aa"), hash_token(14, b"bb"));
    assert_eq!(
        ex.features,
        vec![
            f(i1, 1.0, 0),
            f(i2, 1.0, 1),
            f(i3, 1.0, 2),
            f(c1, 1.0, 13),
            f(c2, 1.0, 14),
            f(hash_cross(c1, c2), 1.0, 39),
            f(hash_cross(i1, c1), 1.0, 40),
            f(bias_key(), 1.0, 41),
        ]
    );
    assert_eq!(log_bucket_id(5.0), (1 << 63) | 2); // ln(5)^2 = 2.59
    assert_eq!(log_bucket_id(2.0), 2);
    assert_eq!(log_bucket_id(-1.0), u64::MAX);
    assert_ne!(log_bucket_id(3.0), log_bucket_id(1.0));
    // log1p and raw: one key per field, the value carries x.
    for (t, v) in [(NumericTransform::Log1p, 6f32.ln()), (NumericTransform::Raw, 5.0)] {
        let c = PipelineConfig { numeric: t, hash_bits: 0, bias: false, ..cfg(Format::Criteo) };
        let ex = &read_all(&c, &[p.clone()], 1).unwrap()[0];
        assert_eq!(ex.features[0], Feature { key: numeric_field_key(0), value: v, field: 0 });
        assert_eq!(ex.features[1].value, if t == NumericTransform::Raw { -1.0 } else { 0.0 });
    }
    // Wrong column count names the expected 40 columns.
    let bad = write(d.path(), "bad.tsv", b"1\t2\t3\n");
    let e = read_all(&config, &[bad], 1).unwrap_err().to_string();
    assert!(e.contains("bad.tsv:1: column 3 \"3 columns\": expected 40 tab-separated columns"), "{e}");
    // Unknown cross field.
    let e = Pipeline::new(&PipelineConfig { crosses: vec![["C1".into(), "C99".into()]], ..cfg(Format::Criteo) }, None)
        .unwrap_err();
    assert!(e.to_string().contains("\"C99\""), "{e}");
}

#[test]
fn hash_bits_fold_keys() {
    let d = tempfile::tempdir().unwrap();
    let files = &mixed_files(d.path())[0].1;
    for bits in [0u32, 1, 10, 24, 63, 64] {
        let c = PipelineConfig { hash_bits: bits, ..cfg(Format::Libsvm) };
        let full = read_all(&PipelineConfig { hash_bits: 0, ..c.clone() }, files, 2).unwrap();
        let folded = read_all(&c, files, 3).unwrap();
        for (a, b) in full.iter().zip(&folded) {
            for (x, y) in a.features.iter().zip(&b.features) {
                assert_eq!(fold(x.key, bits), y.key);
                if (1..64).contains(&bits) {
                    assert!(y.key < 1u64 << bits);
                }
            }
        }
    }
    assert!(Pipeline::new(&PipelineConfig { hash_bits: 65, ..cfg(Format::Libsvm) }, None).is_err());
}

#[test]
fn crosses_use_unfolded_keys() {
    let c = PipelineConfig {
        format: Format::Vw,
        namespaces: "ab".into(),
        hash_bits: 8,
        crosses: vec![["a".into(), "b".into()], ["a".into(), "a".into()]],
        ..PipelineConfig::default()
    };
    let mut pl = Pipeline::new(&c, None).unwrap();
    assert_eq!(pl.field_names(), ["a", "b", "a*b", "a*a", "bias"]);
    let mut ex = Example::default();
    assert!(pl.parse_line(b"1 |a x:2 y |b z:3", &mut ex).unwrap());
    let (x, y, z) = (hash_token(0, b"x"), hash_token(0, b"y"), hash_token(1, b"z"));
    let g = |k: u64, v: f32, fld: u32| Feature { key: fold(k, 8), value: v, field: fld };
    assert_eq!(
        ex.features,
        vec![
            g(x, 2.0, 0),
            g(y, 1.0, 0),
            g(z, 3.0, 1),
            g(hash_cross(x, z), 6.0, 2),
            g(hash_cross(y, z), 3.0, 2),
            g(hash_cross(x, y), 2.0, 3),
            g(bias_key(), 1.0, 4),
        ]
    );
    // Reusing the example does not leak features of the previous line.
    assert!(pl.parse_line(b"0 |b z", &mut ex).unwrap());
    assert_eq!(ex.features.len(), 2);
    // External sources can feed the pipeline directly.
    let mut sink = pl.begin(&mut ex);
    sink.label(1.0);
    sink.token(1, b"z", 3.0);
    sink.finish();
    assert_eq!(ex.features, vec![g(z, 3.0, 1), g(bias_key(), 1.0, 4)]);
    // Namespace not listed → error.
    let e = pl.parse_line(b"1 |c q", &mut ex).unwrap_err();
    assert_eq!(e.column, 2);
}

#[test]
fn vw_default_fields_and_weights() {
    let mut pl = Pipeline::new(&PipelineConfig { hash_bits: 0, bias: false, ..cfg(Format::Vw) }, None).unwrap();
    assert_eq!(pl.num_fields(), 256);
    assert_eq!(pl.field_names()[b'a' as usize], "a");
    assert_eq!(pl.field_names()[32], " ");
    let mut ex = Example::default();
    pl.parse_line(b"-1 0.25 'id7 | w |user:0.5 age:40", &mut ex).unwrap();
    assert_eq!((ex.label, ex.weight), (-1.0, 0.25));
    assert_eq!(
        ex.features,
        vec![
            Feature { key: hash_token(32, b"w"), value: 1.0, field: 32 },
            Feature { key: hash_token(117, b"age"), value: 20.0, field: 117 }
        ]
    );
}

#[test]
fn a_stray_huge_libffm_field_is_an_error_naming_its_line_not_an_allocation() {
    let d = tempfile::tempdir().unwrap();
    // Found by the libffm fuzz target: this line made the pipeline name 2 billion fields.
    let p = write(d.path(), "x.ffm", b"1 0:5:0.5\n0 1:3:1 2000000000:9:1\n");
    let e = scan_num_fields(&[p.clone()], 100).unwrap_err().to_string();
    assert!(e.contains("x.ffm:2: column 3 \"2000000000\": expected a libFFM field below 65536"), "{e}");
    let e = Pipeline::new(&PipelineConfig { num_fields: Some(1 << 20), ..cfg(Format::Libffm) }, None).unwrap_err();
    assert!(e.to_string().contains("num_fields = 1048576 is out of range"), "{e}");
}

#[test]
fn libffm_fields_scan_and_limit() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "x.ffm", b"1 0:5:0.5 2:7:1\n0 1:3:1\n0 3:9:1\n");
    assert_eq!(scan_num_fields(&[p.clone()], 2).unwrap(), 3);
    assert_eq!(scan_num_fields(&[p.clone()], 100).unwrap(), 4);
    let ex = read_all(&PipelineConfig { hash_bits: 0, ..cfg(Format::Libffm) }, &[p.clone()], 2).unwrap();
    assert_eq!(
        ex[0].features,
        vec![
            Feature { key: hash_id(0, 5), value: 0.5, field: 0 },
            Feature { key: hash_id(2, 7), value: 1.0, field: 2 },
            Feature { key: bias_key(), value: 1.0, field: 4 },
        ]
    );
    let pl = Pipeline::from_files(&cfg(Format::Libffm), &[p.clone()]).unwrap();
    assert_eq!(pl.field_names(), ["0", "1", "2", "3", "bias"]);
    // Too small num_fields: an error naming the line.
    let c = PipelineConfig { num_fields: Some(3), ..cfg(Format::Libffm) };
    let e = read_all(&c, &[p.clone()], 1).unwrap_err().to_string();
    assert!(e.contains("x.ffm:3: column 2 \"3:9:1\": expected a field below num_fields = 3"), "{e}");
    assert!(Pipeline::new(&cfg(Format::Libffm), None).is_err());
}

#[test]
fn csv_header_mapping() {
    let d = tempfile::tempdir().unwrap();
    let a = write(d.path(), "a.csv", b"id;Label;x;color\n1;1;3.5;red\n2;0;;\"bl;ue\"\n");
    // Same columns, other order: same features.
    let b = write(d.path(), "b.csv", b"color;x;Label;id\nred;3.5;1;1\n");
    let c = PipelineConfig {
        hash_bits: 0,
        numeric: NumericTransform::Raw,
        columns: ColumnConfig {
            delimiter: ';',
            label: "label".into(),
            numeric: vec!["x".into()],
            categorical: vec!["color".into()],
            ..ColumnConfig::default()
        },
        ..cfg(Format::Csv)
    };
    let ex = read_all(&c, &[a.clone(), b.clone()], 3).unwrap();
    assert_eq!(ex.len(), 3);
    assert_eq!(ex[0], ex[2]);
    assert_eq!(
        ex[0].features,
        vec![
            Feature { key: numeric_field_key(0), value: 3.5, field: 0 },
            Feature { key: hash_token(1, b"red"), value: 1.0, field: 1 },
            Feature { key: bias_key(), value: 1.0, field: 2 },
        ]
    );
    assert_eq!(ex[1].features[0], Feature { key: hash_token(1, b"bl;ue"), value: 1.0, field: 1 });
    let pl = Pipeline::from_files(&c, &[a.clone()]).unwrap();
    assert_eq!(pl.field_names(), ["x", "color", "bias"]);
    // Default mapping: every other column categorical, in header order.
    let all = PipelineConfig {
        columns: ColumnConfig { delimiter: ';', ignore: vec!["id".into()], ..ColumnConfig::default() },
        ..c.clone()
    };
    assert_eq!(Pipeline::from_files(&all, &[a.clone()]).unwrap().field_names(), ["x", "color", "bias"]);
    // Unknown column named by the config; missing label column.
    let bad =
        PipelineConfig { columns: ColumnConfig { numeric: vec!["nope".into()], ..c.columns.clone() }, ..c.clone() };
    let e = Pipeline::from_files(&bad, &[a.clone()]).unwrap_err().to_string();
    assert!(e.contains("a.csv") && e.contains("\"nope\""), "{e}");
    let nolabel = PipelineConfig { columns: ColumnConfig { label: "target".into(), ..c.columns.clone() }, ..c.clone() };
    let e = Pipeline::from_files(&nolabel, &[a.clone()]).unwrap_err().to_string();
    assert!(e.contains("no label column \"target\""), "{e}");
    // A second file whose header lacks a column fails, naming that file.
    let c2 = write(d.path(), "c.csv", b"id;Label;x\n1;1;2\n");
    let e = read_all(&c, &[a.clone(), c2], 1).unwrap_err().to_string();
    assert!(e.contains("c.csv") && e.contains("\"color\""), "{e}");
    // Bad cell.
    let c3 = write(d.path(), "d.csv", b"id;Label;x;color\n1;1;3.5;red\n1;1;x;red\n");
    let e = read_all(&c, &[c3], 1).unwrap_err().to_string();
    assert!(e.contains("d.csv:3: column 3 \"x\": expected a number"), "{e}");
}

#[test]
fn bad_lines_are_counted_and_limited() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "x.libsvm", b"1 1:1\nbad\n0 2:1\n1 x:1\n1 3:y\n0 4:1\n");
    let c = PipelineConfig { max_bad_lines: 3, ..cfg(Format::Libsvm) };
    let pl = Pipeline::from_files(&c, &[p.clone()]).unwrap();
    let bad = BadLines::new(3);
    let mut r = ExampleReader::new(make_splits(&[p.clone()], 1).unwrap(), pl.clone(), bad.clone());
    let mut ex = Example::default();
    let mut n = 0;
    while r.next(&mut ex).unwrap() {
        n += 1;
    }
    assert_eq!((n, bad.count()), (3, 3));
    let msgs = bad.messages();
    assert_eq!(msgs.len(), 3);
    assert!(msgs[0].ends_with("x.libsvm:2: column 1 \"bad\": expected a label (a number)"), "{msgs:?}");
    let report = bad.report().unwrap();
    assert!(report.starts_with("skipped 3 malformed lines"), "{report}");
    // The limit is shared: a second reader over the same data goes over it.
    let mut r2 = ExampleReader::new(make_splits(&[p.clone()], 1).unwrap(), pl.clone(), bad.clone());
    let e = loop {
        match r2.next(&mut ex) {
            Ok(true) => {}
            Ok(false) => panic!("limit not enforced"),
            Err(e) => break e,
        }
    };
    assert!(matches!(e, DataError::TooManyBadLines { limit: 3, .. }), "{e:?}");
    assert!(e.to_string().contains("x.libsvm:2"), "{e}");
    // Threads share one counter.
    let bad = BadLines::new(1000);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (pl, bad, p) = (pl.clone(), Arc::clone(&bad), p.clone());
            std::thread::spawn(move || {
                let mut r = ExampleReader::new(make_splits(&[p], 3).unwrap(), pl, bad);
                let mut ex = Example::default();
                while r.next(&mut ex).unwrap() {}
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(bad.count(), 12);
    assert_eq!(bad.messages().len(), 10);
    assert!(bad.report().unwrap().contains("and 2 more"));
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(99);
    let alphabet: &[u8] = b"0123456789:|,\t \"'.-+eE#abcxyz\r\xff\x00";
    let mut configs = vec![
        cfg(Format::Libsvm),
        PipelineConfig { num_fields: Some(5), ..cfg(Format::Libffm) },
        cfg(Format::Criteo),
        cfg(Format::Vw),
        PipelineConfig { namespaces: "ab ".into(), crosses: vec![["a".into(), "a".into()]], ..cfg(Format::Vw) },
    ];
    for c in &mut configs {
        c.crosses.extend(if c.format == Format::Criteo { vec![["I1".to_string(), "C3".to_string()]] } else { vec![] });
    }
    let mut pipes: Vec<Pipeline> = configs.iter().map(|c| Pipeline::new(c, None).unwrap()).collect();
    pipes.push(
        Pipeline::new(
            &PipelineConfig {
                columns: ColumnConfig {
                    numeric: vec!["a".into()],
                    weight: Some("w".into()),
                    ..ColumnConfig::default()
                },
                ..cfg(Format::Csv)
            },
            Some(b"label,a,b,w"),
        )
        .unwrap(),
    );
    let mut ex = Example::default();
    let mut line = Vec::new();
    for i in 0..30_000 {
        line.clear();
        let len = rng.below(if i % 10 == 0 { 400 } else { 40 });
        for _ in 0..len {
            line.push(if rng.below(8) == 0 {
                rng.below(256) as u8
            } else {
                alphabet[rng.below(alphabet.len() as u64) as usize]
            });
        }
        for p in &mut pipes {
            if let Ok(true) = p.parse_line(&line, &mut ex) {
                assert!(ex.features.iter().all(|f| (f.field as usize) < p.num_fields()));
            }
        }
    }
    // And through files and splits.
    let d = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    for _ in 0..20_000 {
        data.push(if rng.below(10) == 0 { b'\n' } else { alphabet[rng.below(alphabet.len() as u64) as usize] });
    }
    let p = write(d.path(), "junk", &data);
    let g = write(d.path(), "junk.gz", &gz(&data));
    for c in configs {
        let c = PipelineConfig { max_bad_lines: u64::MAX, ..c };
        let a = read_all(&c, &[p.clone(), g.clone()], 1).unwrap();
        let b = read_all(&c, &[p.clone(), g.clone()], 17).unwrap();
        assert_eq!(a, b);
    }
    // A truncated gzip stream is an I/O error naming the file, not a panic.
    let mut z = gz(&data);
    z.truncate(z.len() / 2);
    let t = write(d.path(), "trunc.gz", &z);
    let e = read_all(&PipelineConfig { max_bad_lines: u64::MAX, ..cfg(Format::Libsvm) }, &[t], 1).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("trunc.gz"), "{e}");
}

#[test]
fn format_guessing() {
    let d = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], Option<Format>); 9] = [
        ("a.libsvm", b"", Some(Format::Libsvm)),
        ("a.SVM.gz", b"", Some(Format::Libsvm)),
        ("a.ffm", b"", Some(Format::Libffm)),
        ("a.vw.gz", b"", Some(Format::Vw)),
        ("a.tsv", b"", Some(Format::Criteo)),
        ("a.txt", b"\n1 0:1:1 2:3:0.5\n", Some(Format::Libffm)),
        ("b.txt", b"-1 3:1 11:1\n", Some(Format::Libsvm)),
        ("c.txt", b"1 'x |a b\n", Some(Format::Vw)),
        ("d.data", b"Id,Label,I1\n", Some(Format::Csv)),
    ];
    for (name, data, want) in cases {
        let p = write(d.path(), name, data);
        assert_eq!(Format::detect(&p).ok(), want, "{name}");
    }
    let p = write(d.path(), "e.txt", b"hello\n");
    assert!(Format::detect(&p).unwrap_err().to_string().contains("e.txt"));
    assert_eq!(Format::from_path(Path::new("x.csv")), Some(Format::Csv));
    assert_eq!(Format::from_path(Path::new("x")), None);
}

#[test]
fn readers_move_between_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<ExampleReader>();
    send::<Pipeline>();
    sync::<Pipeline>();
    sync::<BadLines>();
    send::<DataError>();
    sync::<DataError>();
}

#[test]
fn config_defaults() {
    let c = PipelineConfig::default();
    assert_eq!(
        (c.format, c.hash_bits, c.bias, c.numeric, c.binary_labels, c.max_bad_lines),
        (Format::Auto, 24, true, NumericTransform::LogBucket, false, 0)
    );
    assert_eq!(c.columns.delimiter, ',');
    assert!(Pipeline::new(&c, None).is_err());
    assert!(Pipeline::new(&cfg(Format::Csv), None).is_err());
}

// ---- real data ----

/// `../shared/data` beside the checkout (or `$STARLING_SHARED_DATA`): the real data sets the
/// tests read. Missing data fails the test, never skips it.
fn real(rel: &str) -> PathBuf {
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

#[test]
fn real_a9a() {
    let (tr, te) = (real("a9a/a9a"), real("a9a/a9a.t"));
    let c = PipelineConfig { format: Format::Libsvm, binary_labels: true, ..PipelineConfig::default() };
    let ex = read_all(&c, &[tr.clone()], 4).unwrap();
    assert_eq!(ex.len(), 32_561);
    assert!(ex.iter().all(|e| e.label == 0.0 || e.label == 1.0));
    let n = ex.iter().map(|e| e.features.len()).sum::<usize>() as f64 / ex.len() as f64;
    assert!((13.0..17.0).contains(&n), "{n}");
    assert_eq!(read_all(&c, &[te], 3).unwrap().len(), 16_281);
    // Auto-detection by content (no extension).
    assert_eq!(Pipeline::from_files(&PipelineConfig::default(), &[tr]).unwrap().format(), Format::Libsvm);
}

#[test]
fn real_criteo_tiny_csv() {
    let (tr, te) = (real("criteo_tiny/train.tiny.csv"), real("criteo_tiny/test.tiny.csv"));
    let c = PipelineConfig {
        columns: ColumnConfig::criteo(),
        binary_labels: true,
        crosses: vec![["C1".into(), "C2".into()]],
        ..PipelineConfig::default()
    };
    let pl = Pipeline::from_files(&c, &[tr.clone()]).unwrap();
    assert_eq!(pl.format(), Format::Csv);
    assert_eq!(pl.num_fields(), 39 + 1 + 1);
    for p in [tr, te] {
        for n in [1, 5] {
            let ex = read_all(&c, &[p.clone()], n).unwrap();
            assert_eq!(ex.len(), 1_999);
            // Each example has at most 39 base features, one cross and the bias.
            assert!(ex.iter().all(|e| (10..=41).contains(&e.features.len())));
        }
    }
}

#[test]
fn real_libffm() {
    let (tr, te) = (real("criteo_tiny/libffm_bigdata.tr.txt"), real("criteo_tiny/libffm_bigdata.te.txt"));
    let c = PipelineConfig::default();
    let pl = Pipeline::from_files(&c, &[tr.clone(), te.clone()]).unwrap();
    assert_eq!(pl.format(), Format::Libffm);
    let nf = pl.config().num_fields.unwrap();
    assert!(nf >= 18, "{nf}");
    let c = PipelineConfig { num_fields: Some(nf), ..c };
    assert_eq!(read_all(&c, &[tr], 3).unwrap().len(), 200);
    assert_eq!(read_all(&c, &[te], 2).unwrap().len(), 200);
}

#[test]
fn lines_are_whole_across_read_buffer_edges_and_split_ends() {
    // Lines are returned in place from the read buffer, and copied only when the buffer's end
    // cuts one: lines of every length around the buffer size, CRLF and LF, blank lines and an
    // unterminated last line must all come back whole and once each.
    let dir = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    let mut data = Vec::new();
    let mut rng = Rng::new(5);
    let mut len = 1usize;
    while data.len() < 3 * (256 << 10) {
        let line: Vec<u8> = (0..len).map(|i| b'a' + ((i + want.len()) % 26) as u8).collect();
        data.extend_from_slice(&line);
        data.extend_from_slice(if rng.next_u64().is_multiple_of(2) { b"\r\n" } else { b"\n" });
        want.push(line);
        if rng.next_u64().is_multiple_of(7) {
            data.extend_from_slice(b"  \t\n");
        }
        len = if rng.next_u64().is_multiple_of(5) {
            (256 << 10) - 3 + (rng.next_u64() % 7) as usize
        } else {
            1 + (rng.next_u64() % 300) as usize
        };
    }
    data.extend_from_slice(b"last");
    want.push(b"last".to_vec());
    let path = write(dir.path(), "lines.txt", &data);
    let mut src = LineSource::open(&Split::whole(&path).unwrap(), false).unwrap();
    let mut got = Vec::new();
    while let Some(line) = src.next_line().unwrap() {
        got.push(line.to_vec());
    }
    assert_eq!(got.len(), want.len());
    assert!(got == want, "a line came back cut or joined");
    // Splits of the same file cover every line exactly once.
    let splits = make_splits(&[path.clone()], 5).unwrap();
    let mut joined = Vec::new();
    for split in &splits {
        let mut src = LineSource::open(split, false).unwrap();
        while let Some(line) = src.next_line().unwrap() {
            joined.push(line.to_vec());
        }
    }
    assert!(joined == want, "splits lost or repeated a line");
}

// ---- throughput (release: cargo test -p starling-data --release -- --ignored --nocapture) ----

fn throughput(name: &str, config: &PipelineConfig, path: &Path, lines: usize) {
    let pl = Pipeline::from_files(config, &[path.to_path_buf()]).unwrap();
    let bytes = std::fs::metadata(path).unwrap().len();
    // Baseline: reading the lines alone.
    let t = std::time::Instant::now();
    let mut src = LineSource::open(&Split::whole(path).unwrap(), false).unwrap();
    let mut n = 0;
    while src.next_line().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, lines);
    println!("{name}: reading lines alone: {:.2} M lines/s", lines as f64 / t.elapsed().as_secs_f64() / 1e6);
    let mut best = f64::MAX;
    let mut feats = 0usize;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let mut r = ExampleReader::new(vec![Split::whole(path).unwrap()], pl.clone(), BadLines::new(0));
        let mut ex = Example::default();
        let mut n = 0;
        feats = 0;
        while r.next(&mut ex).unwrap() {
            n += 1;
            feats += ex.features.len();
        }
        assert_eq!(n, lines);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{name}: {lines} lines in {best:.3} s = {:.2} M lines/s, {:.0} MB/s, {:.1} features/line",
        lines as f64 / best / 1e6,
        bytes as f64 / best / 1e6,
        feats as f64 / lines as f64
    );
}

#[test]
#[ignore]
fn parse_throughput() {
    let d = tempfile::tempdir().unwrap();
    let lines = 500_000;
    let mut rng = Rng::new(1);
    let mut svm = String::with_capacity(lines * 450);
    let mut vw = String::with_capacity(lines * 400);
    for _ in 0..lines {
        svm.push_str(if rng.below(2) == 0 { "0" } else { "1" });
        vw.push_str(if rng.below(2) == 0 { "-1 |u" } else { "1 |u" });
        for j in 0..40 {
            let v = rng.below(1_000_000);
            svm.push_str(&format!(
                " {}:{}",
                j * 1_000_000 + v,
                if j < 30 { "1".to_string() } else { format!("0.{:06}", v) }
            ));
            if j == 20 {
                vw.push_str(" |i");
            }
            if j < 30 {
                vw.push_str(&format!(" f{j}_{v}"));
            } else {
                vw.push_str(&format!(" n{j}:0.{:06}", v));
            }
        }
        svm.push('\n');
        vw.push('\n');
    }
    let ps = write(d.path(), "t.libsvm", svm.as_bytes());
    let pv = write(d.path(), "t.vw", vw.as_bytes());
    let pg = write(d.path(), "t.libsvm.gz", &gz(svm.as_bytes()));
    throughput("libsvm 40 features", &cfg(Format::Libsvm), &ps, lines);
    throughput("vw 40 features", &PipelineConfig { namespaces: "ui".into(), ..cfg(Format::Vw) }, &pv, lines);
    throughput("libsvm 40 features, gzip", &cfg(Format::Libsvm), &pg, lines);
}
