//! Parquet input against the text formats holding the same rows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, ListBuilder};
use arrow_array::{
    Array, ArrayRef, Float32Array, Float64Array, Int64Array, Int8Array, RecordBatch, StringArray, StructArray,
};
use arrow_schema::{DataType, Field, Fields};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use starling_core::Example;

use super::*;
use crate::pipeline::{Format, PipelineConfig};
use crate::{assign_splits, expand_inputs, make_splits, ExampleReader};

fn write_parquet(path: &Path, batch: &RecordBatch, row_group: usize) {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .set_compression(Compression::SNAPPY)
        .build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// A Spark ML vector column (`VectorUDT` as Spark writes it) from `(dense, indices, values)` rows.
fn spark_vectors(rows: &[(bool, Vec<i32>, Vec<f64>)], size: i32) -> ArrayRef {
    let mut ty = Vec::new();
    let mut idx = ListBuilder::new(Int32Builder::new());
    let mut val = ListBuilder::new(Float64Builder::new());
    for (dense, i, v) in rows {
        ty.push(i8::from(*dense));
        if *dense {
            idx.append_null();
        } else {
            idx.values().append_slice(i);
            idx.append(true);
        }
        val.values().append_slice(v);
        val.append(true);
    }
    let (idx, val) = (idx.finish(), val.finish());
    let fields = Fields::from(vec![
        Field::new("type", DataType::Int8, false),
        Field::new("size", DataType::Int32, true),
        Field::new("indices", idx.data_type().clone(), true),
        Field::new("values", val.data_type().clone(), true),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int8Array::from(ty)),
        Arc::new(arrow_array::Int32Array::from(vec![size; rows.len()])),
        Arc::new(idx),
        Arc::new(val),
    ];
    Arc::new(StructArray::new(fields, cols, None))
}

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(cols.into_iter().map(|(n, a)| (n.to_string(), a))).unwrap()
}

fn read_all(config: &PipelineConfig, files: &[PathBuf], threads: usize) -> Vec<Vec<Example>> {
    let files = expand_inputs(files).unwrap();
    let pipeline = Pipeline::from_files(config, &files).unwrap();
    let bad = BadLines::new(config.max_bad_lines);
    (0..threads)
        .map(|rank| {
            let mut out = Vec::new();
            let mut ex = Example::default();
            if pipeline.format() == Format::Parquet {
                let splits = parquet_splits(&files, threads).unwrap();
                let mut r =
                    ParquetReader::new(assign_parquet_splits(&splits, rank, threads), pipeline.clone(), bad.clone());
                while r.next(&mut ex).unwrap() {
                    out.push(ex.clone());
                }
            } else {
                let splits = make_splits(&files, threads).unwrap();
                let mut r = ExampleReader::new(assign_splits(&splits, rank, threads), pipeline.clone(), bad.clone());
                while r.next(&mut ex).unwrap() {
                    out.push(ex.clone());
                }
            }
            out
        })
        .collect()
}

#[test]
fn spark_vectors_give_the_examples_of_the_libsvm_file_of_the_same_rows() {
    let d = tempfile::tempdir().unwrap();
    // LibSVM ids are 1-based; Spark's libsvm reader stores id j at vector position j - 1.
    std::fs::write(d.path().join("a.libsvm"), "1 1:0.5 4:2\n0 2:1\n1 7:-3 9:0.25\n").unwrap();
    let rows = vec![
        (false, vec![0, 3], vec![0.5, 2.0]),
        (false, vec![1], vec![1.0]),
        (true, vec![], vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -3.0, 0.0, 0.25]),
    ];
    let b = batch(vec![
        ("label", Arc::new(Float64Array::from(vec![1.0, 0.0, 1.0]))),
        ("features", spark_vectors(&rows, 9)),
    ]);
    // A Spark output directory: part files beside _SUCCESS and .crc files.
    let dir = d.path().join("out.parquet");
    std::fs::create_dir(&dir).unwrap();
    write_parquet(&dir.join("part-00000-x.snappy.parquet"), &b, 2);
    std::fs::write(dir.join("_SUCCESS"), "").unwrap();
    std::fs::write(dir.join(".part-00000-x.snappy.parquet.crc"), "crc").unwrap();
    let config = PipelineConfig { hash_bits: 18, binary_labels: true, ..PipelineConfig::default() };
    let text = read_all(&config, &[d.path().join("a.libsvm")], 1);
    let parquet = read_all(&config, &[dir], 1);
    assert_eq!(text[0].len(), 3);
    assert_eq!(text, parquet);
}

#[test]
fn scalar_columns_read_as_the_same_csv_columns() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.csv"), "label,x,color,id\n1,3.5,red,12\n0,,blue,7\n1,0.5,,123456789012\n").unwrap();
    let b = batch(vec![
        ("label", Arc::new(Int64Array::from(vec![1, 0, 1]))),
        ("x", Arc::new(Float32Array::from(vec![Some(3.5), None, Some(0.5)]))),
        ("color", Arc::new(StringArray::from(vec![Some("red"), Some("blue"), None]))),
        ("id", Arc::new(Int64Array::from(vec![12, 7, 123_456_789_012]))),
    ]);
    write_parquet(&d.path().join("a.parquet"), &b, 1024);
    let mut config = PipelineConfig { binary_labels: true, ..PipelineConfig::default() };
    config.columns.numeric = vec!["x".into()];
    config.columns.categorical = vec!["color".into(), "id".into()];
    let text = read_all(&config, &[d.path().join("a.csv")], 1);
    let parquet = read_all(&config, &[d.path().join("a.parquet")], 1);
    assert_eq!(text[0].len(), 3);
    assert_eq!(text, parquet);
    // Without a mapping, the types decide: the float column is numeric, the others categorical.
    let auto = read_all(
        &PipelineConfig { binary_labels: true, ..PipelineConfig::default() },
        &[d.path().join("a.parquet")],
        1,
    );
    assert_eq!(auto, parquet);
}

#[test]
fn row_groups_and_row_ranges_share_every_row_once_in_order() {
    let d = tempfile::tempdir().unwrap();
    let n = 1000;
    let labels: Vec<f64> = (0..n).map(|i| f64::from(i % 2)).collect();
    let ids: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let b = batch(vec![("label", Arc::new(Float64Array::from(labels))), ("user", Arc::new(StringArray::from(ids)))]);
    write_parquet(&d.path().join("a.parquet"), &b, 300); // 4 row groups
    let config = PipelineConfig::default();
    let whole: Vec<Example> = read_all(&config, &[d.path().join("a.parquet")], 1).concat();
    assert_eq!(whole.len(), n as usize);
    for threads in [2, 3, 7, 16] {
        let shares = read_all(&config, &[d.path().join("a.parquet")], threads);
        assert!(shares.iter().all(|s| !s.is_empty()), "{threads} readers: an empty share");
        let mut all: Vec<Example> = shares.concat();
        assert_eq!(all.len(), whole.len(), "{threads} readers");
        all.sort_by_key(|e| e.features[0].key);
        let mut want = whole.clone();
        want.sort_by_key(|e| e.features[0].key);
        assert_eq!(all, want, "{threads} readers");
    }
}

#[test]
fn a_null_label_names_file_row_and_column_and_counts_as_a_bad_line() {
    let d = tempfile::tempdir().unwrap();
    let b = batch(vec![
        ("label", Arc::new(Float64Array::from(vec![Some(1.0), None, Some(0.0)]))),
        ("c", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
    ]);
    let path = d.path().join("a.parquet");
    write_parquet(&path, &b, 1024);
    let files = vec![path.clone()];
    let config = PipelineConfig::default();
    let pipeline = Pipeline::from_files(&config, &files).unwrap();
    let splits = parquet_splits(&files, 1).unwrap();
    let mut r = ParquetReader::new(splits.clone(), pipeline.clone(), BadLines::new(0));
    let mut ex = Example::default();
    let e = loop {
        match r.next(&mut ex) {
            Ok(true) => continue,
            Ok(false) => panic!("the null label was not reported"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(e.contains("a.parquet: row 2: column \"label\": the label is null"), "{e}");
    let bad = BadLines::new(5);
    let mut r = ParquetReader::new(splits, pipeline, bad.clone());
    let mut n = 0;
    while r.next(&mut ex).unwrap() {
        n += 1;
    }
    assert_eq!((n, bad.count()), (2, 1));
}

#[test]
fn lists_of_ids_and_of_values_are_vector_fields() {
    let d = tempfile::tempdir().unwrap();
    let mut ids = ListBuilder::new(arrow_array::builder::Int64Builder::new());
    ids.values().append_slice(&[5, 9]);
    ids.append(true);
    ids.append(false);
    let mut vals = ListBuilder::new(Float64Builder::new());
    vals.values().append_slice(&[0.0, 2.5]);
    vals.append(true);
    vals.values().append_slice(&[1.0]);
    vals.append(true);
    let b = batch(vec![
        ("label", Arc::new(Float64Array::from(vec![1.0, 0.0]))),
        ("ids", Arc::new(ids.finish())),
        ("dense", Arc::new(vals.finish())),
    ]);
    write_parquet(&d.path().join("a.parquet"), &b, 1024);
    let config = PipelineConfig { hash_bits: 0, bias: false, ..PipelineConfig::default() };
    let ex = read_all(&config, &[d.path().join("a.parquet")], 1).concat();
    use starling_core::hash::hash_id;
    let keys = |e: &Example| e.features.iter().map(|f| (f.field, f.key, f.value)).collect::<Vec<_>>();
    // Ids as given with value 1; dense values at id = position + 1, zeros skipped.
    assert_eq!(keys(&ex[0]), vec![(0, hash_id(0, 5), 1.0), (0, hash_id(0, 9), 1.0), (1, hash_id(1, 2), 2.5)]);
    assert_eq!(keys(&ex[1]), vec![(1, hash_id(1, 1), 1.0)]);
}

#[test]
fn unusable_columns_and_a_missing_label_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let b = batch(vec![
        ("y", Arc::new(Float64Array::from(vec![1.0]))),
        ("when", Arc::new(arrow_array::Date32Array::from(vec![19000]))),
    ]);
    let path = d.path().join("a.parquet");
    write_parquet(&path, &b, 1024);
    let e = Pipeline::from_files(&PipelineConfig::default(), std::slice::from_ref(&path)).unwrap_err().to_string();
    assert!(e.contains("a.parquet") && e.contains("\"when\"") && e.contains("columns.ignore"), "{e}");
    let mut config = PipelineConfig::default();
    config.columns.ignore = vec!["when".into()];
    let e = Pipeline::from_files(&config, std::slice::from_ref(&path)).unwrap_err().to_string();
    assert!(e.contains("no label column \"label\"") && e.contains("y (Float64)"), "{e}");
    config.columns.label = "y".into();
    assert!(Pipeline::from_files(&config, &[path]).is_ok());
}

#[test]
fn a_file_the_parquet_crate_panics_on_is_an_error_naming_it() {
    // Found by the parquet fuzz target: the `parquet` crate panics decoding this file's page
    // ("Decoder for dict should have been set") instead of returning an error.
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("bad.parquet");
    std::fs::write(&path, include_bytes!("testdata/dict_decoder_panic.parquet")).unwrap();
    let files = vec![path];
    // As the fuzz target read it: three splits, bad rows skipped.
    let config = PipelineConfig {
        format: Format::Parquet,
        hash_bits: 18,
        binary_labels: true,
        max_bad_lines: 1 << 20,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::from_files(&config, &files).unwrap();
    let mut reader = ParquetReader::new(parquet_splits(&files, 3).unwrap(), pipeline, BadLines::new(1 << 20));
    let mut ex = Example::default();
    let err = loop {
        match reader.next(&mut ex) {
            Ok(true) => continue,
            Ok(false) => panic!("the malformed file read to its end"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("bad.parquet") && err.contains("the decoder failed on malformed data"), "{err}");
    // Panics elsewhere still reach the hook and unwind as before.
    assert!(std::panic::catch_unwind(|| panic!("not parquet's")).is_err());
}
