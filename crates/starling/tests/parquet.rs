//! Columnar input: Parquet written by a real Spark (pyspark in local[2]) read by `starling train`,
//! and record batches handed to the trainer in memory.
//!
//! The Spark test needs the test venv (`scripts/pyenv.sh`; `scripts/test.sh` runs it) and Java 17+.

mod common;

use std::path::Path;
use std::process::Command;

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, StringArray};
use common::{gen_data, rows, shared_data};
use starling::config::JobConfig;
use starling::input::Inputs;
use starling::trainer;
use starling_data::arrow::RecordBatch;

const BIN: &str = env!("CARGO_BIN_EXE_starling");

/// Spark's LibSVM reader loads `src` and Spark writes it as a Parquet directory at `out`.
fn spark_parquet(src: &Path, out: &Path, num_features: usize) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spark/libsvm_to_parquet.py");
    let py = common::python();
    let o = Command::new(&py)
        .arg(script)
        .arg(src)
        .arg(out)
        .arg(num_features.to_string())
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("PYSPARK_PYTHON", &py)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "spark failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn starling(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).output().unwrap();
    assert!(o.status.success(), "starling {args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn parquet_written_by_spark_trains_the_model_of_the_libsvm_file() {
    let d = tempfile::tempdir().unwrap();
    let a9a = shared_data("a9a/a9a");
    let dir = d.path().join("a9a.parquet");
    spark_parquet(&a9a, &dir, 123);
    let parts = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("part-"))
        .count();
    assert_eq!(parts, 2, "expected Spark to write 2 part files");
    let (m_text, m_parquet) = (d.path().join("text.model"), d.path().join("parquet.model"));
    for (input, model) in [(&a9a, &m_text), (&dir, &m_parquet)] {
        starling(&[
            "train",
            "-q",
            "--train",
            input.to_str().unwrap(),
            "--model",
            "fm",
            "--k",
            "4",
            "--passes",
            "2",
            "--save",
            model.to_str().unwrap(),
        ]);
    }
    let (a, b) = (starling::model_file::load(&m_text).unwrap(), starling::model_file::load(&m_parquet).unwrap());
    assert_eq!(b.job.features.format.name(), "parquet");
    assert!(!rows(&a).is_empty());
    assert!(rows(&a) == rows(&b), "the Parquet rows trained another model than the LibSVM file");
    // The model scores the Parquet rows as it scores the text.
    let eval =
        |m: &Path, data: &Path| starling(&["eval", "--model", m.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_eq!(eval(&m_text, &a9a), eval(&m_parquet, &dir));
}

/// The rows of a CSV file with a header as record batches of `per_batch` rows: the label as a
/// double, every other column as strings (empty cells null), as the CSV reader sees them.
fn csv_batches(path: &Path, per_batch: usize) -> Vec<RecordBatch> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    rows.chunks(per_batch)
        .map(|chunk| {
            let cols = names.iter().enumerate().map(|(c, name)| {
                let array: ArrayRef = if c == 0 {
                    Arc::new(Float64Array::from_iter_values(chunk.iter().map(|r| r[0].parse::<f64>().unwrap())))
                } else {
                    Arc::new(StringArray::from_iter(chunk.iter().map(|r| Some(r[c]).filter(|s| !s.is_empty()))))
                };
                (name.to_string(), array)
            });
            RecordBatch::try_from_iter(cols).unwrap()
        })
        .collect()
}

#[test]
fn record_batches_in_memory_train_the_model_of_the_csv_file() {
    let csv = gen_data().join("train.csv");
    let mut job = JobConfig::default();
    job.data.train = vec![csv.clone()];
    job.features.hash_bits = 18;
    job.model.kind = starling_core::ModelKind::Fm;
    job.model.k = 4;
    let (from_file, _) = trainer::train(&job, true).unwrap();

    let mut mem_job = job.clone();
    mem_job.data.train.clear();
    let inputs = Inputs::from_batches(&mut mem_job, Arc::new(csv_batches(&csv, 7_000)), true).unwrap();
    assert_eq!(mem_job.features.format.name(), "parquet");
    let (from_batches, report) = trainer::train_on(mem_job, &inputs, None, None, true).unwrap();
    assert_eq!(report.train_examples, 40_000);
    assert!(rows(&from_file) == rows(&from_batches), "record batches trained another model than the CSV file");
}
