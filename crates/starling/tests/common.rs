//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, OnceLock};

use starling_data::synth::{self, SynthConfig, SynthFormat};

/// `../shared/data` beside the checkout, or `$STARLING_SHARED_DATA` (tests may read it; the main
/// job never does). Missing data fails the test, never skips it.
pub fn shared_data(rel: &str) -> PathBuf {
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

/// The venv's python: `STARLING_PYTHON`, else the one `scripts/pyenv.sh` makes.
pub fn python() -> PathBuf {
    let p = std::env::var_os("STARLING_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("STARLING_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/starling"));
        cache.join("venv/bin/python")
    });
    assert!(p.exists(), "{} is missing: run scripts/pyenv.sh (scripts/test.sh does)", p.display());
    p
}

/// A fresh directory that lives until this test binary exits, then is removed. Shared fixtures
/// live in statics, which are never dropped: a `TempDir` held by one would be left behind.
pub fn binary_scratch() -> PathBuf {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    static HOOK: Once = Once::new();
    extern "C" fn remove_all() {
        for d in DIRS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    // SAFETY: atexit only records the function; it runs when the test harness exits.
    HOOK.call_once(|| unsafe {
        libc::atexit(remove_all);
    });
    let dir = tempfile::tempdir().unwrap().keep();
    DIRS.lock().unwrap_or_else(|e| e.into_inner()).push(dir.clone());
    dir
}

/// Generates a data set in every format (criteo, libsvm, libffm, vw, csv) into a fresh directory.
fn generate(train_rows: u64, seed: u64, nonlinear: f64) -> PathBuf {
    let dir = binary_scratch();
    let cfg = SynthConfig {
        train_rows,
        test_rows: train_rows / 4,
        seed,
        hash_bits: 20,
        formats: vec![SynthFormat::Criteo, SynthFormat::Libsvm, SynthFormat::Libffm, SynthFormat::Vw, SynthFormat::Csv],
        nonlinear,
    };
    synth::generate(&cfg, &dir, &mut |_| {}).unwrap();
    dir
}

/// A small generated data set (40k train rows), shared by the tests of one binary.
pub fn gen_data() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| generate(40_000, 7, 0.0))
}

/// A generated data set large enough for FM to show what it learns (200k train rows).
pub fn gen_data_large() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| generate(200_000, 11, 0.0))
}

/// Generated data with the hidden non-linear term that FM cannot represent (200k train rows).
pub fn gen_data_nonlinear() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| generate(200_000, 13, 1.0))
}

/// Every row of a table, sorted by key, for exact comparisons.
pub fn rows(model: &starling::Model) -> Vec<(u64, Vec<u32>)> {
    let mut out = Vec::new();
    model.table().as_dyn().for_each_row(&mut |k, r| out.push((k, r.iter().map(|x| x.to_bits()).collect())));
    out
}

/// Pids of the launcher's children whose command line has `role` as its subcommand.
pub fn children(launcher: u32, role: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 4 (after the parenthesised name) is the parent pid.
        let ppid =
            stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(1)).and_then(|s| s.parse::<u32>().ok());
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if ppid == Some(launcher) && args.get(1) == Some(&role.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// A launch whose stderr is gathered as it comes, so a test can act on what the job says.
pub struct Live {
    /// The launcher.
    pub child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Live {
    pub fn start(args: &[&str]) -> Live {
        Live::start_with(args, &[])
    }

    /// [`Live::start`] with `envs` set for the process.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Live {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(args)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (pipe, sink) = (child.stderr.take().unwrap(), std::sync::Arc::clone(&stderr));
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Live { child, stderr }
    }

    pub fn said(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `ready` holds (at most 120 s, and never past the job's end).
    pub fn wait_until(&mut self, what: &str, ready: impl Fn(&Live) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !ready(self) {
            assert!(self.child.try_wait().unwrap().is_none(), "the job ended before {what}:\n{}", self.said());
            assert!(std::time::Instant::now() < deadline, "no {what} within 120 s:\n{}", self.said());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Sends `signal` to the first child process of `role`; returns its pid.
    pub fn signal(&self, role: &str, signal: i32) -> i32 {
        let victim = children(self.child.id(), role)[0];
        // SAFETY: plain kill(2) of a process this test started.
        unsafe { libc::kill(victim, signal) };
        victim
    }

    /// Waits for the end; returns whether it succeeded, its stdout and its stderr. Checks that
    /// no process of the job outlives it.
    pub fn finish(self) -> (bool, String, String) {
        let pid = self.child.id();
        let out = self.child.wait_with_output().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let left = leftovers(pid);
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(left.is_empty(), "processes {left:?} of the job outlived it:\n{stderr}");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }
}

/// Processes started by launcher `pid` (their arguments name its scratch directory) still alive.
pub fn leftovers(pid: u32) -> Vec<i32> {
    let mark = format!("starling-launch-{pid}/");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let zombie = state.rsplit(')').next().and_then(|s| s.split_whitespace().next()) == Some("Z");
        if !zombie && String::from_utf8_lossy(&cmd).contains(&mark) {
            out.push(p);
        }
    }
    out
}

/// Whether `ck` holds a complete checkpoint.
pub fn has_checkpoint(ck: &Path) -> bool {
    std::fs::read_dir(ck).map(|d| d.flatten().any(|e| e.path().join("manifest.toml").exists())).unwrap_or(false)
}

/// A JSON report.
pub fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
