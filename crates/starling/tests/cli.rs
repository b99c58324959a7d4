//! The `starling` binary as a user runs it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn starling(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_starling")).args(args).current_dir(cwd).output().expect("run starling")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn gen_train_save_predict_eval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = starling(
        &["gen", "--out", "data", "--train-rows", "20000", "--test-rows", "5000", "--formats", "criteo,vw"],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = starling(
        &[
            "train",
            "--train",
            "data/train.tsv",
            "--test",
            "data/test.tsv",
            "--model",
            "fm",
            "--k",
            "4",
            "--hash-bits",
            "18",
            "--save",
            "fm.model",
            "--report",
            "r.json",
            "--quiet",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("test: 5000 examples"), "{}", text(&o));
    let report = std::fs::read_to_string(d.join("r.json")).unwrap();
    assert!(report.contains("\"train_examples\": 20000") && report.contains("\"auc\""), "{report}");

    let o = starling(&["predict", "--model", "fm.model", "--data", "data/test.tsv", "--out", "p.txt"], d);
    assert!(o.status.success(), "{}", text(&o));
    let preds = std::fs::read_to_string(d.join("p.txt")).unwrap();
    assert_eq!(preds.lines().count(), 5000);
    assert!(preds.lines().all(|l| l.parse::<f32>().is_ok_and(|p| (0.0..=1.0).contains(&p))));

    let o = starling(&["eval", "--model", "fm.model", "--data", "data/test.tsv", "--quiet"], d);
    assert!(o.status.success() && text(&o).contains("AUC"), "{}", text(&o));
}

#[test]
fn a_malformed_line_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.libsvm"), "1 3:1 7:1\n0 2:1 5:abc\n1 4:1\n").unwrap();
    let o = starling(&["train", "--train", "bad.libsvm", "--quiet"], d);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(msg.contains("bad.libsvm:2") && msg.contains("column 3"), "{msg}");

    let o = starling(&["train", "--train", "bad.libsvm", "--max-bad-lines", "1", "--quiet"], d);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("skipped 1 malformed line"), "{}", text(&o));

    // Lines skipped in the holdout and in `eval` are reported too, never dropped silently.
    std::fs::write(d.join("good.libsvm"), "1 3:1 7:1\n0 2:1 5:1\n").unwrap();
    let o = starling(
        &["train", "--train", "good.libsvm", "--test", "bad.libsvm", "--max-bad-lines", "1", "--save", "m", "--quiet"],
        d,
    );
    assert!(o.status.success() && text(&o).contains("skipped 1 malformed line"), "{}", text(&o));
    let o = starling(&["eval", "--model", "m", "--data", "bad.libsvm", "--max-bad-lines", "1", "--quiet"], d);
    assert!(o.status.success() && text(&o).contains("skipped 1 malformed line"), "{}", text(&o));
    assert!(text(&o).contains("bad.libsvm:2"), "{}", text(&o));
}

#[test]
fn bad_options_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("t.libsvm"), "1 3:1\n").unwrap();
    let o = starling(&["train", "--train", "t.libsvm", "--optimizer", "ftrl", "--lr", "0.1"], d);
    assert!(!o.status.success() && text(&o).contains("--lr"), "{}", text(&o));
    let o = starling(&["train", "--train", "missing.libsvm"], d);
    assert!(!o.status.success() && text(&o).contains("missing.libsvm"), "{}", text(&o));
    std::fs::write(d.join("job.toml"), "[train]\npasess = 2\n").unwrap();
    let o = starling(&["train", "--config", "job.toml"], d);
    assert!(!o.status.success() && text(&o).contains("pasess"), "{}", text(&o));
    let o = starling(&["predict", "--model", "t.libsvm", "--data", "t.libsvm"], d);
    assert!(!o.status.success() && text(&o).contains("not a Starling model"), "{}", text(&o));
}

#[test]
fn printed_config_runs_the_same_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = starling(
        &["train", "--train", "x.vw", "--model", "fm", "--optimizer", "ftrl", "--l1", "0.5", "--print-config"],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let toml = String::from_utf8(o.stdout).unwrap();
    let job = starling::JobConfig::from_toml(&toml, "printed").unwrap();
    assert_eq!(job.model.kind, starling_core::ModelKind::Fm);
    assert!(matches!(job.optimizer, starling_core::Optimizer::Ftrl { l1, .. } if l1 == 0.5));
}

#[test]
fn quickstart_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let o = starling(&["quickstart", "--dir", "qs", "--rows", "20000"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("true model (floor)") && out.contains("Fm"), "{out}");
    assert!(dir.path().join("qs/fm.model").exists());
    assert_eq!(std::fs::read_to_string(dir.path().join("qs/predictions.txt")).unwrap().lines().count(), 5000);
}
