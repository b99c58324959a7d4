//! `starling tune` as a user runs it: generated data, a search-space file, the results files.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::gen_data;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_starling");

fn tune(dir: &Path, space: &str, extra: &[&str]) -> (Output, Value) {
    let d = gen_data();
    let space_file = dir.join("space.toml");
    std::fs::write(&space_file, space).unwrap();
    let out_dir = dir.join("out");
    let (train, test) = (d.join("train.libsvm"), d.join("test.libsvm"));
    let mut args: Vec<String> = ["tune", "--train", path(&train), "--test", path(&test), "--hash-bits", "18"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--space".into(), path(&space_file).into(), "--out".into(), path(&out_dir).into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "starling {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read_to_string(out_dir.join("trials.json")).unwrap();
    (out, serde_json::from_str(&json).unwrap())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The trial with the best (lowest) holdout logloss among those that trained to the end.
fn best_in(report: &Value) -> usize {
    let trials = report["trials"].as_array().unwrap();
    let done = trials.iter().filter(|t| t["status"] == "done");
    let best = done.min_by(|a, b| a["value"].as_f64().unwrap().total_cmp(&b["value"].as_f64().unwrap())).unwrap();
    best["id"].as_u64().unwrap() as usize
}

const SPACE_GRID: &str = "[search]\nmethod = \"grid\"\nparallel = 2\n[params]\n\"optimizer.lr\" = [0.02, 0.2]\n\"optimizer.l2\" = [0.0, 0.001]\n";

#[test]
fn grid_of_four_picks_the_best_holdout_trial_and_writes_its_job_and_model() {
    let dir = tempfile::tempdir().unwrap();
    let (_, report) = tune(dir.path(), SPACE_GRID, &[]);
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    assert!(trials.iter().all(|t| t["status"] == "done"), "{report:#}");
    let best = best_in(&report);
    assert_eq!(report["best"].as_u64().unwrap() as usize, best);
    // The best job is a ready job file with the winning values, and the model loads and scores.
    let out = dir.path().join("out");
    let job = std::fs::read_to_string(out.join("best.toml")).unwrap();
    let params = &trials[best - 1]["params"];
    for p in params.as_array().unwrap() {
        let (name, value) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
        let key = name.rsplit('.').next().unwrap();
        assert!(job.contains(&format!("{key} = {value}\n")), "best.toml lacks {name} = {value}:\n{job}");
    }
    let test = gen_data().join("test.libsvm");
    let eval = Command::new(BIN)
        .args(["eval", "--model", path(&out.join("best.model")), "--data", path(&test)])
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let csv = std::fs::read_to_string(out.join("trials.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
}

#[test]
fn random_search_of_eight_with_asha_completes() {
    let dir = tempfile::tempdir().unwrap();
    let space = "[search]\ntrials = 8\nparallel = 2\nseed = 5\n[asha]\neta = 2\ngrace = 0.25\n[params]\n\"optimizer.lr\" = [0.01, 0.02, 0.05, 0.1, 0.3]\n\"optimizer.l2\" = { log = [1e-6, 1e-2] }\n";
    let (_, report) = tune(dir.path(), space, &[]);
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 8);
    assert!(trials.iter().all(|t| t["status"] == "done" || t["status"] == "stopped"), "{report:#}");
    assert!(trials.iter().any(|t| t["status"] == "done"), "{report:#}");
    assert_eq!(report["best"].as_u64().unwrap() as usize, best_in(&report));
}

#[test]
fn the_input_is_parsed_once_and_the_cache_reused_by_the_next_search() {
    let dir = tempfile::tempdir().unwrap();
    let (_, first) = tune(dir.path(), SPACE_GRID, &[]);
    let rows = |f: &str| std::fs::read_to_string(gen_data().join(f)).unwrap().lines().count() as u64;
    // Four trials, one parse: the counter is the text examples read, train and test once each.
    assert_eq!(first["examples_parsed"].as_u64().unwrap(), rows("train.libsvm") + rows("test.libsvm"));
    assert_eq!(first["cache_reused"], false);
    let (_, second) = tune(dir.path(), SPACE_GRID, &["--trials", "2"]);
    assert_eq!(second["examples_parsed"].as_u64().unwrap(), 0, "{second:#}");
    assert_eq!(second["cache_reused"], true);
    // The same config from the same cache gives the same model.
    assert_eq!(first["trials"][0]["value"], second["trials"][0]["value"]);
}

#[test]
fn trials_run_as_local_cluster_jobs_with_runner_launch() {
    let dir = tempfile::tempdir().unwrap();
    // One server, two workers per trial.
    let space = "[search]\nmethod = \"grid\"\nparallel = 2\nrunner = \"launch\"\n[params]\n\"optimizer.lr\" = [0.1, 0.3]\n\"cluster.servers\" = [1]\n\"cluster.workers\" = [2]\n";
    let (_, report) = tune(dir.path(), space, &["--batch-size", "100"]);
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2);
    assert!(trials.iter().all(|t| t["status"] == "done"), "{report:#}");
    let best = best_in(&report);
    assert_eq!(report["best"].as_u64().unwrap() as usize, best);
    assert!(report["examples_parsed"].is_null());
    let out = dir.path().join("out");
    // Each trial is a cluster job with its own job file and log; the workers cached their slices.
    let job = std::fs::read_to_string(out.join("trials/1/job.toml")).unwrap();
    assert!(job.contains("workers = 2"), "{job}");
    let mut cached: Vec<String> =
        std::fs::read_dir(out.join("cache")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    cached.sort();
    assert!(
        cached.len() == 2 && cached[0].starts_with("train-0of2-") && cached[1].starts_with("train-1of2-"),
        "{cached:?}"
    );
    let model = starling::model_file::load(&out.join("best.model")).unwrap();
    assert!(model.examples_seen > 0);
    // The cluster's holdout metric of the winner is what the saved model scores.
    let test = gen_data().join("test.libsvm");
    let eval = Command::new(BIN)
        .args(["eval", "--model", path(&out.join("best.model")), "--data", path(&test)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    let logloss = format!("logloss {:.5}", trials[best - 1]["value"].as_f64().unwrap());
    assert!(text.contains(&logloss), "eval says {text}, the search {logloss}");
}

#[test]
fn a_trial_that_diverges_to_nan_is_recorded_as_failed_and_the_search_completes() {
    let dir = tempfile::tempdir().unwrap();
    // SGD steps of 1e38 overflow the weights to infinity, and inf - inf scores are NaN.
    let space =
        "[search]\nmethod = \"grid\"\n[params]\n\"optimizer.name\" = [\"sgd\"]\n\"optimizer.lr\" = [0.05, 1e38]\n";
    let (_, report) = tune(dir.path(), space, &[]);
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials[0]["status"], "done", "{report:#}");
    assert_eq!(trials[1]["status"], "failed", "{report:#}");
    let reason = trials[1]["reason"].as_str().unwrap();
    assert!(reason.contains("diverged"), "{reason}");
    assert_eq!(report["best"], 1);
}

/// Runs `starling tune` over the generated data with `space`; returns the process's output.
fn tune_raw(dir: &Path, space: &str, stdout: std::process::Stdio) -> std::process::Child {
    let d = gen_data();
    std::fs::write(dir.join("space.toml"), space).unwrap();
    let (train, test) = (d.join("train.libsvm"), d.join("test.libsvm"));
    Command::new(BIN)
        .args(["tune", "--train", path(&train), "--test", path(&test), "--hash-bits", "18", "--space"])
        .arg(dir.join("space.toml"))
        .arg("--out")
        .arg(dir.join("out"))
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_space_with_an_invalid_trial_is_refused_before_anything_trains() {
    let dir = tempfile::tempdir().unwrap();
    let space =
        "[search]\ntrials = 6\n[params]\n\"optimizer.lr\" = { log = [0.01, 0.1] }\n\"optimizer.lrate\" = [0.1]\n";
    let out = tune_raw(dir.path(), space, std::process::Stdio::piped()).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("6 of the 6 trials make no valid job") && err.contains("lrate"), "{err}");
    assert!(!dir.path().join("out/cache").exists(), "the input was parsed for a search that cannot run");
}

#[test]
fn ranges_over_integer_options_and_lr_across_optimizers_make_valid_trials() {
    let dir = tempfile::tempdir().unwrap();
    let space = "[search]\nmethod = \"grid\"\n[params]\n\"train.passes\" = { linear = [1, 2], steps = 2 }\n\"optimizer.name\" = [\"adagrad\", \"ftrl\"]\n\"optimizer.lr\" = [0.05]\n";
    let (_, report) = tune(dir.path(), space, &[]);
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    assert!(trials.iter().all(|t| t["status"] == "done"), "{report:#}");
}

#[test]
fn a_search_whose_reader_left_still_writes_its_results() {
    let dir = tempfile::tempdir().unwrap();
    // `starling tune ... | head -0`: stdout's reader is gone before the leaderboard is printed.
    let mut child = tune_raw(dir.path(), SPACE_GRID, std::process::Stdio::piped());
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    assert!(dir.path().join("out/trials.csv").exists() && dir.path().join("out/best.model").exists());
}

#[test]
fn a_search_in_which_no_trial_finishes_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // Every trial diverges: there is no best job, and the exit status says so.
    let space = "[search]\nmethod = \"grid\"\n[params]\n\"optimizer.name\" = [\"sgd\"]\n\"optimizer.lr\" = [1e38]\n";
    let out = tune_raw(dir.path(), space, std::process::Stdio::piped()).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no trial trained to the end (1 of 1 failed") && err.contains("diverged"), "{err}");
    assert!(dir.path().join("out/trials.csv").exists() && !dir.path().join("out/best.toml").exists());
}
