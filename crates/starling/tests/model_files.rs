//! Model files: exact save/load, resume equal to uninterrupted training, damaged files refused.

mod common;

use starling::config::JobConfig;
use starling::{model_file, predict, trainer};
use starling_core::{ModelKind, Optimizer};

fn fm_job(passes: u32) -> JobConfig {
    let dir = common::gen_data();
    let mut job = JobConfig::default();
    job.data.train = vec![dir.join("train.libsvm")];
    job.features.hash_bits = 20;
    job.model.kind = ModelKind::Fm;
    job.model.k = 4;
    job.train.passes = passes;
    job.train.shuffle = true;
    job.train.shuffle_window = 5_000;
    job
}

fn predictions(model: &starling::Model) -> Vec<u8> {
    let mut out = Vec::new();
    predict::predict_to(model, &[common::gen_data().join("test.libsvm")], 0, &mut out).unwrap();
    out
}

#[test]
fn save_then_load_predicts_bit_for_bit() {
    let (model, _) = trainer::train(&fm_job(1), true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fm.model");
    model_file::save(&model, &path).unwrap();
    let loaded = model_file::load(&path).unwrap();
    assert_eq!(common::rows(&model), common::rows(&loaded));
    assert_eq!(predictions(&model), predictions(&loaded));
    assert_eq!(loaded.job.features, model.job.features);
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    for optimizer in [Optimizer::default(), Optimizer::ftrl_default(), Optimizer::adam_default()] {
        let mut two = fm_job(2);
        two.optimizer = optimizer;
        let (straight, _) = trainer::train(&two, true).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("half.model");
        let mut first = two.clone();
        first.train.passes = 1;
        let (half, _) = trainer::train(&first, true).unwrap();
        model_file::save(&half, &path).unwrap();
        let mut rest = first.clone();
        rest.train.init_model = Some(path);
        let (resumed, _) = trainer::train(&rest, true).unwrap();
        assert_eq!(resumed.passes_done, 2);
        assert!(common::rows(&straight) == common::rows(&resumed), "{optimizer:?}: resumed model differs");
    }
}

#[test]
fn training_from_the_cache_equals_training_from_text_and_a_later_run_parses_nothing() {
    let mut job = fm_job(2);
    job.data.test = vec![common::gen_data().join("test.libsvm")];
    let (text, text_report) = trainer::train(&job, true).unwrap();
    assert_eq!(text_report.cache_parsed, None);

    let dir = tempfile::tempdir().unwrap();
    job.data.cache_dir = Some(dir.path().join("cache"));
    let (first, first_report) = trainer::train(&job, true).unwrap();
    let (second, second_report) = trainer::train(&job, true).unwrap();
    // Both files are parsed once, by the first run (40k train + 10k test rows), and never again.
    assert_eq!(first_report.cache_parsed, Some(50_000));
    assert_eq!(second_report.cache_parsed, Some(0));
    assert!(common::rows(&text) == common::rows(&first), "the cache changed what was learned");
    assert!(common::rows(&first) == common::rows(&second));
    assert_eq!(text_report.test.unwrap().logloss, second_report.test.unwrap().logloss);
    assert_eq!(text_report.train_examples, second_report.train_examples);
}

#[test]
fn one_thread_with_a_seed_is_deterministic() {
    let (a, _) = trainer::train(&fm_job(1), true).unwrap();
    let (b, _) = trainer::train(&fm_job(1), true).unwrap();
    assert!(common::rows(&a) == common::rows(&b));
}

#[test]
fn damaged_files_are_refused_with_a_clear_error() {
    let mut job = fm_job(1);
    job.model.kind = ModelKind::Lr;
    let (model, _) = trainer::train(&job, true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lr.model");
    model_file::save(&model, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let check = |data: &[u8], want: &str| {
        let p = dir.path().join("bad.model");
        std::fs::write(&p, data).unwrap();
        let err = model_file::load(&p).err().expect("a damaged model must be refused").to_string();
        assert!(err.contains(want) && err.contains("bad.model"), "expected {want:?} in: {err}");
    };
    check(&bytes[..bytes.len() - 100], "truncated");
    check(&bytes[..10], "truncated");
    check(&bytes[..5], "not a Starling model");
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 6] ^= 0x10; // inside the last row's last weight
    check(&flipped, "checksum");
    let mut magic = bytes.clone();
    magic[0] = b'X';
    check(&magic, "not a Starling model");
    let mut version = bytes.clone();
    version[8] = 99;
    check(&version, "version 99");
    // A save that cannot complete leaves no file under the final name.
    let missing = dir.path().join("no/such/dir/m.model");
    assert!(model_file::save(&model, &missing).is_err());
    assert!(!missing.exists());
}

#[test]
fn resume_refuses_a_different_model() {
    let (model, _) = trainer::train(&fm_job(1), true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fm.model");
    model_file::save(&model, &path).unwrap();
    let mut job = fm_job(1);
    job.model.k = 8;
    job.train.init_model = Some(path);
    let err = trainer::train(&job, true).err().unwrap().to_string();
    assert!(err.contains("cannot resume") && err.contains("k=4"), "{err}");
}

/// Writes `model` (a shallow one) in format version 1, as Starling wrote it before deep models.
fn save_v1(model: &starling::Model, path: &std::path::Path) {
    let learner = model.net.learner().unwrap();
    let table = model.table().as_dyn();
    let mut header = toml::map::Map::new();
    header.insert("spec".into(), toml::Value::try_from(&learner.model).unwrap());
    header.insert("optimizer".into(), toml::Value::try_from(learner.optimizer).unwrap());
    header.insert("loss".into(), toml::Value::try_from(learner.loss).unwrap());
    header.insert("row_len".into(), toml::Value::Integer(table.row_len() as i64));
    header.insert("rows".into(), toml::Value::Integer(table.len() as i64));
    header.insert("passes_done".into(), toml::Value::Integer(i64::from(model.passes_done)));
    header.insert("examples_seen".into(), toml::Value::Integer(model.examples_seen as i64));
    header.insert("job".into(), toml::Value::try_from(&model.job).unwrap());
    let text = toml::to_string(&toml::Value::Table(header)).unwrap();
    let mut bytes = b"STARLING".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    table.for_each_row(&mut |key, row| {
        bytes.extend_from_slice(&key.to_le_bytes());
        row.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
    });
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn models_saved_by_format_version_1_still_load_and_resume() {
    let (model, _) = trainer::train(&fm_job(1), true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("v1.model");
    save_v1(&model, &old);
    let loaded = model_file::load(&old).unwrap();
    assert_eq!(common::rows(&model), common::rows(&loaded));
    assert_eq!(predictions(&model), predictions(&loaded));
    let mut job = fm_job(1);
    job.train.init_model = Some(old);
    let (resumed, _) = trainer::train(&job, true).unwrap();
    assert_eq!(resumed.passes_done, 2);
}
