//! Every command and file the README and `docs/` show is run as written, so the docs cannot drift
//! from the code; and the config reference is the one the config types generate.
//!
//! In a Markdown file, in document order: a ```` ```toml NAME ```` block is written to `NAME`, a
//! ```` ```sh ```` block runs in bash (`set -euo pipefail`) with the `starling` these tests
//! built first on `PATH`, all in one fresh directory per file. `cargo run --release --` reads as
//! `starling`. ```` ```python ```` blocks are run by `python/tests/test_docs.py`; blocks without
//! a language, or `text`, are output and layouts, not commands.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_starling");

/// Commands the docs show that these tests do not run, and why. Each must appear in the docs
/// (a test checks it), so the list cannot outlive what it excuses.
const NOT_RUN_HERE: &[(&str, &str)] = &[
    ("bash scripts/test.sh", "it is the command that runs these tests"),
    (
        "cargo install --locked --path crates/starling",
        "these tests put the binary they built on PATH instead (see installs_the_binary)",
    ),
    ("pip install ./python", "scripts/test.sh installs the package before the Python tests"),
    ("pip install './python[spark]'", "the test venv has pyspark already (scripts/requirements-test.txt)"),
];

/// A fenced block: its info string, its text, and the line it starts on.
struct Block {
    info: String,
    body: String,
    line: usize,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block { info: info.trim().to_string(), body: String::new(), line: i + 1 })
            }
            (Some(_), Some(_)) => out.push(open.take().expect("open block")),
            (Some(b), None) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    out
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shell text of a block: `cargo run --release --` as `starling`, excused lines left out.
fn shell_text(body: &str) -> String {
    body.lines()
        .filter(|l| !NOT_RUN_HERE.iter().any(|(cmd, _)| l.trim_start().starts_with(cmd)))
        .map(|l| l.replace("cargo run --release --", "starling"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the blocks of `doc` (relative to the repository root) in a fresh directory.
fn run_doc(doc: &str) {
    let path = root().join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join(".bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("starling")).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    // The docs' commands run from a checkout: its scripts are where they say.
    std::os::unix::fs::symlink(root().join("scripts"), work.join("scripts")).unwrap();
    let path_var = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut ran = 0;
    for b in blocks(&text) {
        let mut words = b.info.split_whitespace();
        match (words.next(), words.next()) {
            (Some("toml"), Some(name)) => std::fs::write(work.join(name), &b.body).unwrap(),
            (Some("toml"), None) => panic!("{doc}:{}: name the file a toml block is (```toml job.toml)", b.line),
            (Some("sh"), _) if runs_something(&b) => {
                let script = shell_text(&b.body);
                let out = Command::new("bash")
                    .arg("-c")
                    .arg(format!("set -euo pipefail\n{script}"))
                    .current_dir(&work)
                    .env("PATH", &path_var)
                    .output()
                    .expect("run bash");
                assert!(
                    out.status.success(),
                    "{doc}:{}: the commands failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
                    b.line,
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                ran += 1;
            }
            _ => {}
        }
    }
    assert!(ran > 0, "{doc} shows no commands these tests run: drop it from them");
}

/// Whether a block holds something these tests run: a named file, or a command not excused.
fn runs_something(b: &Block) -> bool {
    b.info.starts_with("toml")
        || (b.info.starts_with("sh")
            && shell_text(&b.body).lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
}

#[test]
fn readme_runs_as_written() {
    run_doc("README.md");
}

#[test]
fn docs_tune_runs_as_written() {
    run_doc("docs/tune.md");
}

#[test]
fn docs_cluster_runs_as_written() {
    run_doc("docs/cluster.md");
}

#[test]
fn docs_models_runs_as_written() {
    run_doc("docs/models.md");
}

#[test]
fn docs_serving_runs_as_written() {
    run_doc("docs/serving.md");
}

/// Every Markdown file with commands is one of the files run above.
#[test]
fn every_doc_with_commands_is_run() {
    let run = ["README.md", "docs/tune.md", "docs/cluster.md", "docs/models.md", "docs/serving.md"];
    let mut docs = vec![root().join("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        docs.push(e.unwrap().path());
    }
    for d in docs.iter().filter(|d| d.extension().is_some_and(|x| x == "md")) {
        let text = std::fs::read_to_string(d).unwrap();
        let name = d.strip_prefix(root()).unwrap().to_string_lossy().trim_start_matches('/').to_string();
        let has_commands = blocks(&text).iter().any(runs_something);
        assert!(!has_commands || run.contains(&name.as_str()), "{name} shows commands no test runs: add it to docs.rs");
    }
}

/// What is excused from running appears in the docs, and says why.
#[test]
fn excused_commands_are_documented() {
    let mut all = std::fs::read_to_string(root().join("README.md")).unwrap();
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        all.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap_or_default());
    }
    for (cmd, why) in NOT_RUN_HERE {
        assert!(all.contains(cmd), "`{cmd}` is excused ({why}) but no doc shows it");
    }
}

/// `cargo install --locked --path crates/starling` installs a binary named `starling`.
#[test]
fn installs_the_binary() {
    let manifest = std::fs::read_to_string(root().join("crates/starling/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[[bin]]\nname = \"starling\""),
        "crates/starling no longer builds the `starling` binary"
    );
}

/// `docs/config.md` is what `starling config-reference` prints.
#[test]
fn config_reference_is_generated() {
    let out = Command::new(BIN).arg("config-reference").output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(root().join("docs/config.md")).unwrap();
    assert!(
        generated == committed,
        "docs/config.md differs from the config types: run `starling config-reference > docs/config.md`"
    );
}
