//! The chaos harness (design.md, "Failures"): a 2 servers × 2 workers job with checkpoints, and
//! in each trial one process (server, worker or coordinator, chosen at random) killed with
//! SIGKILL at a random moment. Every trial must end with the model of a fault-free run (BSP:
//! identical rows; ASP: test logloss within 0.002), no process of the job left behind, and each
//! recovery resumed within the heartbeat timeout plus a restart.
//!
//! The suite runs a few trials; `bench/chaos.sh` runs 100 with `CHAOS_TRIALS=100` and writes the
//! figures (`CHAOS_OUT`). `CHAOS_SEED` picks the trials.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{children, gen_data, report, rows, Live};

/// Seconds a recovery may take beyond the heartbeat timeout: a process's restart and rejoin.
const RESTART_BOUND_SECS: f64 = 15.0;
const HEARTBEAT_TIMEOUT_SECS: f64 = 1.5;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator (xorshift64*), so a seed names the same trials every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The job of every trial: LR with AdaGrad over the generated data, checkpoints every 400 steps.
fn job_file(dir: &Path, staleness: &str) -> PathBuf {
    let d = gen_data();
    let text = format!(
        "[data]\ntrain = [{:?}]\ntest = [{:?}]\n[features]\nhash_bits = 18\n[optimizer]\nname = \"adagrad\"\n\
         [train]\nbatch_size = 10\npasses = 3\n[cluster]\nstaleness = {staleness}\nheartbeat_secs = 0.2\n\
         heartbeat_timeout_secs = {HEARTBEAT_TIMEOUT_SECS}\n[checkpoint]\nevery_steps = 400\n",
        d.join("train.libsvm"),
        d.join("test.libsvm")
    );
    let path = dir.join(format!("job-{}.toml", staleness.trim_matches('"')));
    std::fs::write(&path, text).unwrap();
    path
}

/// A run of the job: whether it succeeded, its report and model, and what it said.
struct Run {
    ok: bool,
    said: String,
    report: serde_json::Value,
    model: Option<starling::Model>,
    wall: Duration,
}

/// Runs the job in `dir` (checkpoints, model and report there); with `fault`, SIGKILLs one
/// process of that role `after` the start. Returns the run and whether the kill happened (the
/// job may end first).
fn run_job(job: &Path, dir: &Path, fault: Option<(&str, Duration)>) -> (Run, Option<i32>) {
    let (ck, save, rep) = (dir.join("ck"), dir.join("model"), dir.join("report.json"));
    let started = Instant::now();
    let args = [
        "launch",
        "--servers",
        "2",
        "--workers",
        "2",
        "-c",
        job.to_str().unwrap(),
        "--checkpoint-dir",
        ck.to_str().unwrap(),
        "--save",
        save.to_str().unwrap(),
        "--report",
        rep.to_str().unwrap(),
    ];
    let mut launched = Live::start(&args);
    let mut killed = None;
    if let Some((role, after)) = fault {
        std::thread::sleep(after);
        // The process may not exist yet (just started) or any more (the job ended): wait for one.
        while killed.is_none() && launched.child.try_wait().unwrap().is_none() {
            if children(launched.child.id(), role).is_empty() {
                std::thread::sleep(Duration::from_millis(2));
            } else {
                killed = Some(launched.signal(role, libc::SIGKILL));
            }
        }
    }
    (finish(launched, &save, &rep, started), killed)
}

/// How long a trial may take before it counts as hung (fault-free runs take seconds).
const TRIAL_LIMIT: Duration = Duration::from_secs(240);

fn finish(mut launched: Live, save: &Path, rep: &Path, started: Instant) -> Run {
    while launched.child.try_wait().unwrap().is_none() {
        if started.elapsed() > TRIAL_LIMIT {
            // A hung job fails its trial with its log, instead of hanging the suite.
            // SAFETY: plain kill(2) of the launcher this test started; it stops its children.
            unsafe { libc::kill(launched.child.id() as libc::pid_t, libc::SIGTERM) };
            let (_, _, said) = launched.finish();
            let said = format!("the job did not end within {} s:\n{said}", TRIAL_LIMIT.as_secs());
            return Run { ok: false, said, report: serde_json::Value::Null, model: None, wall: started.elapsed() };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, _, said) = launched.finish();
    let wall = started.elapsed();
    let report = if ok { report(rep) } else { serde_json::Value::Null };
    let model = if ok { starling::model_file::load(save).ok() } else { None };
    Run { ok, said, report, model, wall }
}

fn test_logloss(r: &serde_json::Value) -> f64 {
    r["test"]["logloss"].as_f64().expect("the report has test metrics")
}

#[test]
fn every_trial_recovers_to_the_fault_free_model() {
    let trials = env_or("CHAOS_TRIALS", 4);
    let mut rng = Rng(env_or("CHAOS_SEED", 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let dir = tempfile::tempdir().unwrap();
    let modes = [("bsp", "0"), ("asp", "\"inf\"")];
    let mut references = Vec::new();
    for (name, staleness) in modes {
        let job = job_file(dir.path(), staleness);
        let d = dir.path().join(format!("ref-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        let (r, _) = run_job(&job, &d, None);
        assert!(r.ok, "the fault-free {name} run failed:\n{}", r.said);
        references.push((job, r));
    }
    let mut lines = vec![
        "| trial | mode | killed | at (s) | restarts | recovery (s) | steps redone | extra wall (s) | logloss diff |"
            .to_string(),
        "|---|---|---|---|---|---|---|---|---|".to_string(),
    ];
    let (mut faults, mut recoveries, mut worst, mut lost_secs, mut max_secs) = (0, 0u64, 0f64, 0f64, 0f64);
    for t in 0..trials {
        let m = (t % 2) as usize;
        let (job, reference) = &references[m];
        let role = ["server", "worker", "coordinator"][rng.below(3) as usize];
        let at = Duration::from_millis(rng.below(reference.wall.as_millis() as u64 + 1));
        let d = dir.path().join(format!("trial-{t}"));
        std::fs::create_dir_all(&d).unwrap();
        let (r, killed) = run_job(job, &d, Some((role, at)));
        assert!(r.ok, "trial {t}: killing a {role} at {at:?} failed the job:\n{}", r.said);
        let restarts = r.report["restarts"].as_u64().unwrap_or(0);
        let recs = r.report["recoveries"].as_array().cloned().unwrap_or_default();
        let secs: f64 = recs.iter().filter_map(|x| x["seconds"].as_f64()).sum();
        let redone: u64 = recs.iter().filter_map(|x| x["steps_redone"].as_u64()).sum();
        for x in &recs {
            let s = x["seconds"].as_f64().unwrap_or(0.0);
            assert!(
                s <= HEARTBEAT_TIMEOUT_SECS + RESTART_BOUND_SECS,
                "trial {t}: a recovery took {s:.1} s:\n{}",
                r.said
            );
            max_secs = max_secs.max(s);
        }
        let diff = if m == 0 {
            let (a, b) = (reference.model.as_ref().unwrap(), r.model.as_ref().expect("a model"));
            assert!(
                rows(a) == rows(b),
                "trial {t}: after killing a {role} at {at:?} the BSP model differs:\n{}",
                r.said
            );
            0.0
        } else {
            let diff = (test_logloss(&r.report) - test_logloss(&reference.report)).abs();
            assert!(diff <= 0.002, "trial {t}: ASP logloss {diff} away from the fault-free run:\n{}", r.said);
            diff
        };
        faults += u64::from(killed.is_some());
        recoveries += restarts;
        worst = f64::max(worst, diff);
        lost_secs += secs;
        let extra = r.wall.as_secs_f64() - reference.wall.as_secs_f64();
        lines.push(format!(
            "| {t} | {} | {} | {:.2} | {restarts} | {secs:.2} | {redone} | {extra:.2} | {diff:.5} |",
            modes[m].0,
            if killed.is_some() { role } else { "(ended first)" },
            at.as_secs_f64()
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
    let summary = format!(
        "{trials} trials, {faults} processes killed, {recoveries} recoveries, {:.2} s mean and {max_secs:.2} s max per recovery (loss to training again), worst logloss difference {worst:.5} (BSP models identical)",
        lost_secs / recoveries.max(1) as f64
    );
    println!("{summary}");
    if let Ok(out) = std::env::var("CHAOS_OUT") {
        std::fs::write(out, format!("{summary}\n\n{}\n", lines.join("\n"))).unwrap();
    }
}
