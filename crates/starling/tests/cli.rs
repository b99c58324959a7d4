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
    std::fs::write(d.join("ftrl.toml"), "[optimizer]\nname = \"ftrl\"\neps = 0.1\n").unwrap();
    let o = starling(&["train", "--train", "t.libsvm", "-c", "ftrl.toml"], d);
    assert!(!o.status.success() && text(&o).contains("ftrl has no hyperparameter `eps`"), "{}", text(&o));
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
    assert!(out.contains("true model (floor)") && out.contains("fm "), "{out}");
    assert!(dir.path().join("qs/fm.model").exists());
    assert_eq!(std::fs::read_to_string(dir.path().join("qs/predictions.txt")).unwrap().lines().count(), 5000);
}

/// `n` lines of LibSVM, with a malformed one at line `bad` (1-based) when given.
fn libsvm_lines(n: usize, bad: Option<usize>) -> String {
    (1..=n)
        .map(|i| {
            if Some(i) == bad {
                "1 3:x\n".to_string()
            } else {
                format!("{} {}:1 {}:1\n", i % 2, i % 7 + 1, i % 11 + 8)
            }
        })
        .collect()
}

#[test]
fn what_can_be_checked_is_checked_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("train.libsvm"), libsvm_lines(3000, None)).unwrap();
    // A holdout malformed at its start fails before training: nothing is trained or saved.
    std::fs::write(d.join("bad-start.libsvm"), libsvm_lines(10, Some(2))).unwrap();
    let o = starling(&["train", "--train", "train.libsvm", "--test", "bad-start.libsvm", "--save", "m1.model"], d);
    assert!(!o.status.success() && text(&o).contains("bad-start.libsvm:2"), "{}", text(&o));
    assert!(!text(&o).contains("trained") && !d.join("m1.model").exists(), "{}", text(&o));
    // A holdout malformed further in: the model is saved first, and the error says where it is.
    std::fs::write(d.join("bad-late.libsvm"), libsvm_lines(3000, Some(2500))).unwrap();
    let o = starling(&["train", "--train", "train.libsvm", "--test", "bad-late.libsvm", "--save", "m2.model"], d);
    assert!(!o.status.success() && text(&o).contains("saved to m2.model"), "{}", text(&o));
    assert!(d.join("m2.model").exists());
    // --save into a directory that does not exist yet: it is created, as `launch` does.
    let o = starling(&["train", "-q", "--train", "train.libsvm", "--save", "new/dir/m.model"], d);
    assert!(o.status.success() && d.join("new/dir/m.model").exists(), "{}", text(&o));
    // A --save path that cannot be written fails before training.
    std::fs::write(d.join("file"), "").unwrap();
    let o = starling(&["train", "-q", "--train", "train.libsvm", "--save", "file/m.model"], d);
    assert!(!o.status.success() && text(&o).contains("file/m.model") && !text(&o).contains("trained"), "{}", text(&o));
}

#[test]
fn empty_input_is_an_error_not_a_model_or_a_logloss_of_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("empty.libsvm"), "").unwrap();
    std::fs::write(d.join("train.libsvm"), libsvm_lines(100, None)).unwrap();
    let o = starling(&["train", "--train", "empty.libsvm", "--format", "libsvm", "--save", "m.model"], d);
    assert!(!o.status.success() && text(&o).contains("holds no examples"), "{}", text(&o));
    assert!(!d.join("m.model").exists());
    let o = starling(&["train", "-q", "--train", "train.libsvm", "--save", "m.model"], d);
    assert!(o.status.success(), "{}", text(&o));
    let o = starling(&["eval", "--model", "m.model", "--data", "empty.libsvm"], d);
    assert!(!o.status.success() && text(&o).contains("empty.libsvm holds no examples"), "{}", text(&o));
    assert!(!text(&o).contains("logloss"), "{}", text(&o));
}

#[test]
fn a_failed_predict_leaves_the_previous_output_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("train.libsvm"), libsvm_lines(3000, None)).unwrap();
    std::fs::write(d.join("bad.libsvm"), libsvm_lines(3000, Some(2000))).unwrap();
    assert!(starling(&["train", "-q", "--train", "train.libsvm", "--save", "m.model"], d).status.success());
    let o = starling(&["predict", "--model", "m.model", "--data", "train.libsvm", "--out", "p.txt"], d);
    assert!(o.status.success(), "{}", text(&o));
    let before = std::fs::read(d.join("p.txt")).unwrap();
    let o = starling(&["predict", "--model", "m.model", "--data", "bad.libsvm", "--out", "p.txt"], d);
    assert!(!o.status.success() && text(&o).contains("bad.libsvm:2000"), "{}", text(&o));
    assert_eq!(std::fs::read(d.join("p.txt")).unwrap(), before, "the old predictions were overwritten");
    let names: Vec<String> =
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "a temporary file was left behind: {names:?}");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("train.libsvm"), libsvm_lines(20000, None)).unwrap();
    assert!(starling(&["train", "-q", "--train", "train.libsvm", "--save", "m.model"], d).status.success());
    // `starling predict ... | head -1`: the reader leaves after the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["predict", "--model", "m.model", "--data", "train.libsvm"])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

#[test]
fn rough_edges_of_a_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("train.libsvm"), libsvm_lines(200, None)).unwrap();
    // A negative value is a value, refused by the option's own check (a usage error), not taken
    // for a flag.
    let o = starling(&["train", "--train", "train.libsvm", "--lr", "-0.1"], d);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("lr = -0.1 but must be > 0"), "{}", text(&o));
    // Usage errors exit 2, as clap's do; a config error or a failed job 1.
    assert_eq!(starling(&["train", "--no-such-flag"], d).status.code(), Some(2));
    assert_eq!(starling(&["train", "--train", "train.libsvm", "--model", "svm"], d).status.code(), Some(2));
    assert_eq!(starling(&["train", "--train", "missing.libsvm"], d).status.code(), Some(1));
    // Model kinds by their config names.
    let o = starling(&["train", "--train", "train.libsvm", "--model", "fm", "--k", "2", "--save", "fm.model"], d);
    assert!(text(&o).contains("trained fm on 200 examples"), "{}", text(&o));
    // A binary file is refused in words, without its bytes.
    std::fs::write(
        d.join("blob.dat"),
        [0x7fu8, b'E', b'L', b'F', 0, 1, 0xff, 0xfe, b',', b'\n', 0x1b, b'[', b'2', b'J'],
    )
    .unwrap();
    let o = starling(&["train", "--train", "blob.dat"], d);
    let msg = text(&o);
    assert!(!o.status.success() && msg.contains("not a text file"), "{msg}");
    assert!(!msg.contains('\u{1b}') && !msg.contains('\u{0}') && !msg.contains('\u{fffd}'), "{msg:?}");
    // A file whose first line is fine for no format the model reads says which one it expects.
    std::fs::write(d.join("t.tsv"), "label,a,b\n1,x,y\n").unwrap();
    let o = starling(&["eval", "--model", "fm.model", "--data", "t.tsv"], d);
    assert!(text(&o).contains("the model reads libsvm input"), "{}", text(&o));
    // --help lists every input format.
    let o = starling(&["train", "--help"], d);
    assert!(text(&o).contains("parquet"), "{}", text(&o));
    // A cache says whether it was built or reused.
    let args = ["train", "-q", "--train", "train.libsvm", "--cache-dir", "cache"];
    assert!(text(&starling(&args, d)).contains("cache: parsed 200 examples into cache"));
    assert!(text(&starling(&args, d)).contains("cache: read the input from the existing cache in cache"));
}

#[test]
fn an_optimizer_table_without_a_name_is_adagrad() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("job.toml"), "[optimizer]\nlr = 0.2\n").unwrap();
    let o = starling(&["train", "-c", "job.toml", "--print-config"], d);
    assert!(o.status.success(), "{}", text(&o));
    let job = starling::JobConfig::from_toml(&String::from_utf8_lossy(&o.stdout), "printed").unwrap();
    assert!(matches!(job.optimizer, starling_core::Optimizer::Adagrad { lr, .. } if lr == 0.2), "{}", job.optimizer);
    // Every option is listed, unset ones commented out, each with its meaning.
    let printed = String::from_utf8_lossy(&o.stdout);
    for key in ["# save =", "# init_model =", "# cache_dir =", "batch_size = 0", "[cluster]", "[checkpoint]"] {
        assert!(printed.contains(key), "{key} is missing from --print-config:\n{printed}");
    }
}

#[test]
fn the_test_command_stops_at_once_without_the_shared_data() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new("bash")
        .arg(root.join("scripts/test.sh"))
        .env("STARLING_SHARED_DATA", "/nonexistent/shared/data")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/nonexistent/shared/data is missing"), "{}", text(&o));
}
