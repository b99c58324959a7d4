//! Multi-process tests: real coordinator, server and worker processes on loopback, started by
//! `starling launch` exactly as a user would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{children, gen_data, has_checkpoint, report, rows, Live};

const BIN: &str = env!("CARGO_BIN_EXE_starling");

/// A job file over the generated LibSVM data, with `extra` TOML appended.
fn job(dir: &Path, extra: &str) -> PathBuf {
    let d = gen_data();
    let text = format!(
        "[data]\ntrain = [{:?}]\ntest = [{:?}]\n[features]\nhash_bits = 18\n{extra}\n",
        d.join("train.libsvm"),
        d.join("test.libsvm")
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "starling {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A number after `"key": ` in a JSON report (the first one).
fn json_num(json: &str, key: &str) -> f64 {
    let at = json.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("{key} not in {json}")) + key.len() + 4;
    json[at..].split([',', '}']).next().unwrap().trim().parse().unwrap()
}

fn test_logloss(report: &Path) -> f64 {
    let json = std::fs::read_to_string(report).unwrap();
    let test = &json[json.find("\"test\"").unwrap()..];
    json_num(test, "logloss")
}

#[test]
fn bsp_with_one_worker_gives_the_single_machine_model() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "[model]\nkind = \"fm\"\nk = 4\n[optimizer]\nname = \"ftrl\"\n[train]\nbatch_size = 100\n");
    let (one, ck) = (dir.path().join("one.model"), dir.path().join("ck"));
    run(&["train", "-q", "-c", j.to_str().unwrap(), "--save", one.to_str().unwrap()]);
    // The worker trains from a binary cache of its slice, which must not change what it learns.
    let cache = dir.path().join("cache");
    let c = cache.to_str().unwrap();
    run(&[
        "launch",
        "--servers",
        "2",
        "--workers",
        "1",
        "-c",
        j.to_str().unwrap(),
        "--save",
        ck.to_str().unwrap(),
        "--cache-dir",
        c,
    ]);
    let (a, b) = (starling::model_file::load(&one).unwrap(), starling::model_file::load(&ck).unwrap());
    assert!(!rows(&a).is_empty());
    assert_eq!(rows(&a), rows(&b), "the cluster's rows differ from the single-machine trainer's");
    let names: Vec<String> =
        std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.len() == 1 && names[0].starts_with("train-"), "cache files: {names:?}");
}

#[test]
fn two_servers_two_workers_reach_the_single_machine_logloss() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "[train]\nbatch_size = 100\n");
    let r = |name: &str| dir.path().join(name);
    run(&["train", "-q", "-c", j.to_str().unwrap(), "--report", r("single.json").to_str().unwrap()]);
    let single = test_logloss(&r("single.json"));
    // Two workers of 50 examples per step learn from as many examples per synchronous step as the
    // single process does from its batch of 100 (the usual data-parallel scaling of the batch).
    for (staleness, tolerance) in [("0", 0.002), ("inf", 0.01)] {
        let rep = r(&format!("cluster-{staleness}.json"));
        let args = ["--staleness", staleness, "--batch-size", "50", "--report", rep.to_str().unwrap()];
        run(&[&["launch", "--servers", "2", "--workers", "2", "-c", j.to_str().unwrap()][..], &args].concat());
        let cluster = test_logloss(&rep);
        assert!(
            (cluster - single).abs() <= tolerance,
            "staleness {staleness}: cluster test logloss {cluster:.5} vs single machine {single:.5}"
        );
    }
}

#[test]
fn ssp_never_lets_a_worker_exceed_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "[train]\nbatch_size = 20\n");
    let rep = dir.path().join("ssp.json");
    run(&[
        "launch",
        "--servers",
        "2",
        "--workers",
        "3",
        "-c",
        j.to_str().unwrap(),
        "--staleness",
        "2",
        "--report",
        rep.to_str().unwrap(),
    ]);
    let json = std::fs::read_to_string(&rep).unwrap();
    let seen = &json[json.find("\"staleness\"").unwrap()..];
    let granted = &json[json.find("\"granted_staleness\"").unwrap()..];
    assert!(json_num(seen, "max") <= 2.0, "workers observed more than 2 steps of staleness: {json}");
    // Workers prefetch (the default), so reads lag a step and the coordinator gates one tighter.
    assert!(json_num(granted, "max") <= 1.0, "the coordinator granted more than 1 step: {json}");
    assert!(json_num(&json, "steps") >= 1500.0, "steps: {json}");
}

/// Spawns `launch` and returns once a complete checkpoint exists under `ck`, then kills the whole job.
fn run_until_checkpoint_then_kill(args: &[&str], ck: &Path) {
    let mut child = Command::new(BIN).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let complete = std::fs::read_dir(ck)
            .map(|d| d.flatten().any(|e| e.path().join("manifest.toml").exists()))
            .unwrap_or(false);
        if complete {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the job ended before its first checkpoint");
        assert!(Instant::now() < deadline, "no checkpoint within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL the launcher: its children die with it (parent-death signal), nothing gets to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn checkpoint_kill_and_resume_gives_the_uninterrupted_model_also_on_more_servers() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "[optimizer]\nname = \"adagrad\"\n[train]\nbatch_size = 25\npasses = 3\n");
    let j = j.to_str().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    run(&["launch", "--servers", "2", "--workers", "1", "-c", j, "--save", &p("ref")]);
    let args = [
        "launch",
        "--servers",
        "2",
        "--workers",
        "1",
        "-c",
        j,
        "--checkpoint-dir",
        &p("ck"),
        "--checkpoint-every-steps",
        "200",
    ];
    run_until_checkpoint_then_kill(&args, Path::new(&p("ck")));
    // Resume with three servers: the two servers' shard files are re-sharded on load.
    let out = run(&[
        "launch",
        "--servers",
        "3",
        "--workers",
        "1",
        "-c",
        j,
        "--checkpoint-dir",
        &p("ck"),
        "--save",
        &p("resumed"),
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("resuming from"), "did not resume:\n{log}");
    let (a, b) = (
        starling::model_file::load(Path::new(&p("ref"))).unwrap(),
        starling::model_file::load(Path::new(&p("resumed"))).unwrap(),
    );
    assert_eq!(rows(&a), rows(&b), "resumed model differs from the uninterrupted one");
}

/// Starts a long job and returns it once its workers are training.
fn start_training(j: &Path, staleness: &str) -> std::process::Child {
    let args = ["launch", "--servers", "2", "--workers", "2", "-c", j.to_str().unwrap(), "--staleness", staleness];
    let child = Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Training has started once both workers exist and have run for a moment.
    while children(child.id(), "worker").len() < 2 {
        assert!(Instant::now() < deadline, "workers never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(700));
    child
}

/// Starts a long job, waits until its workers are training, then SIGKILLs the first `role`
/// process; returns the job's output, how long it took to end, and the victim's pid.
fn kill_one_during_training(j: &Path, role: &str, staleness: &str) -> (Output, Duration, i32) {
    let child = start_training(j, staleness);
    let victim = children(child.id(), role)[0];
    // SAFETY: plain kill(2) of a process this test started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let killed = Instant::now();
    let out = child.wait_with_output().unwrap();
    (out, killed.elapsed(), victim)
}

/// The launcher's last line names the process that was killed, by role, rank and pid, and the
/// signal: not the coordinator that exited because of it. (These jobs set `max_restarts = 0`:
/// with restarts, the same kills are recovered from, as the tests after them check.)
fn assert_blames(stderr: &str, role: &str, victim: i32) {
    let last = stderr.lines().last().unwrap_or("");
    let want = format!("(pid {victim}) was killed by signal 9 (SIGKILL)");
    assert!(last.starts_with(&format!("error: {role} ")) && last.contains(&want), "last line: {last}\n{stderr}");
    let rank = last[format!("error: {role} ").len()..].split(' ').next().unwrap_or("");
    assert!(rank.parse::<usize>().is_ok(), "no rank in: {last}");
}

#[test]
fn asp_job_finishes_without_a_killed_worker_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "[train]\nbatch_size = 10\npasses = 6\n[cluster]\nmax_restarts = 0\n");
    let (out, _, _) = kill_one_during_training(&j, "worker", "inf");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the ASP job should finish:\n{stdout}\n{stderr}");
    assert!(stdout.contains("lost worker: worker"), "the lost worker is not reported:\n{stdout}\n{stderr}");
    assert!(stdout.contains("test: "), "no holdout metrics:\n{stdout}");
}

#[test]
fn a_killed_server_ends_every_process_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "[train]\nbatch_size = 10\npasses = 6\n[cluster]\nmax_restarts = 0\n");
    let (out, took, victim) = kill_one_during_training(&j, "server", "0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job must fail when a server dies:\n{stderr}");
    assert!(stderr.contains("lost server"), "the message must name the lost server:\n{stderr}");
    assert_blames(&stderr, "server", victim);
    assert!(took < Duration::from_secs(15), "took {took:?} to stop");
}

#[test]
fn a_killed_worker_fails_a_bsp_job_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "[train]\nbatch_size = 10\npasses = 6\n[cluster]\nmax_restarts = 0\n");
    let (out, took, victim) = kill_one_during_training(&j, "worker", "0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a BSP job must fail when a worker dies:\n{stderr}");
    assert!(stderr.contains("lost worker"), "the message must name the lost worker:\n{stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?} to stop");
    assert_blames(&stderr, "worker", victim);
}

#[test]
fn a_killed_worker_under_ssp_is_blamed_by_rank_pid_and_signal() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "[train]\nbatch_size = 10\npasses = 6\n[cluster]\nmax_restarts = 0\n");
    let (out, _, victim) = kill_one_during_training(&j, "worker", "2");
    assert!(!out.status.success());
    assert_blames(&String::from_utf8_lossy(&out.stderr), "worker", victim);
}

#[test]
fn ctrl_c_stops_every_process_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "[train]\nbatch_size = 10\npasses = 6\n");
    let child = start_training(&j, "0");
    let pid = child.id();
    // SAFETY: plain kill(2) of a process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(children(pid, "worker").is_empty() && children(pid, "server").is_empty());
}

#[test]
fn checkpoints_are_named_by_their_step_listed_only_while_they_exist_and_read_as_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let report = dir.path().join("r.json");
    let extra = format!(
        "[train]\nbatch_size = 50\npasses = 2\n[checkpoint]\ndir = {:?}\nevery_steps = 40\nkeep = 2\n",
        ck.display()
    );
    let j = job(dir.path(), &extra);
    let (j, r) = (j.to_str().unwrap(), report.to_str().unwrap());
    run(&["launch", "--servers", "2", "--workers", "2", "-c", j, "--report", r]);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let listed: Vec<&str> = json["checkpoints"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(listed.len() == 2, "keep = 2, but the report lists {listed:?}");
    for c in &listed {
        let manifest = std::fs::read_to_string(Path::new(c).join("manifest.toml")).unwrap();
        let step: u64 = manifest.lines().find_map(|l| l.strip_prefix("step = ")).unwrap().parse().unwrap();
        assert!(c.ends_with(&format!("step-{step:010}")), "{c} holds step {step}");
    }
    // The checkpoint directory reads as its newest complete checkpoint.
    let d = gen_data().join("test.libsvm");
    let a = run(&["eval", "-q", "--model", ck.to_str().unwrap(), "--data", d.to_str().unwrap()]);
    let b = run(&["eval", "-q", "--model", listed[1], "--data", d.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&b.stdout));
    assert!(String::from_utf8_lossy(&a.stderr).contains(listed[1]), "{}", String::from_utf8_lossy(&a.stderr));
    // Resuming those checkpoints with another model says why, in words, not as a Rust dump.
    let other = run_err(&["launch", "--servers", "2", "--workers", "2", "-c", j, "--model", "fm"]);
    assert!(
        other.contains("differ from the job's") && !other.contains("TableSpec {") && !other.contains("Model("),
        "{other}"
    );
    // A flipped byte in the newest checkpoint: eval and a resumed job pass it over for the one
    // before it and name the damaged file.
    let shard = Path::new(listed[1]).join("server-0001.shard");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(&shard, bytes).unwrap();
    let a = run(&["eval", "-q", "--model", ck.to_str().unwrap(), "--data", d.to_str().unwrap()]);
    let b = run(&["eval", "-q", "--model", listed[0], "--data", d.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&b.stdout));
    let said = String::from_utf8_lossy(&a.stderr);
    assert!(said.contains("passing over checkpoint") && said.contains(&shard.display().to_string()), "{said}");
    let out = run(&["launch", "--servers", "2", "--workers", "2", "-c", j]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&shard.display().to_string()), "{said}");
    assert!(said.contains(&format!("resuming from {}", listed[0])), "{said}");
}

/// Runs a command that must fail; returns its stderr.
fn run_err(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(!out.status.success(), "starling {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_cluster_job_refuses_early_stopping_instead_of_ignoring_it() {
    let dir = tempfile::tempdir().unwrap();
    let j = job(dir.path(), "");
    let valid = gen_data().join("test.libsvm");
    let err = run_err(&["launch", "-c", j.to_str().unwrap(), "--valid", valid.to_str().unwrap(), "--patience", "2"]);
    assert!(err.contains("train.patience") && err.contains("starling train"), "{err}");
}

/// `starling launch` of job file `j` on 2 servers and 2 workers, with `more` arguments.
fn two_by_two<'a>(j: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["launch", "--servers", "2", "--workers", "2", "-c", j];
    args.extend_from_slice(more);
    args
}

/// A 2 × 2 BSP job over the generated data, LR with AdaGrad, with fast heartbeats, and `extra`.
fn recovery_job(dir: &Path, extra: &str) -> PathBuf {
    let base = "[optimizer]\nname = \"adagrad\"\n[train]\nbatch_size = 10\npasses = 4\n";
    job(dir, &format!("{base}[cluster]\nheartbeat_secs = 0.2\nheartbeat_timeout_secs = 1.5\n{extra}"))
}

#[test]
fn bsp_recovers_from_a_killed_server_worker_or_coordinator_with_the_uninterrupted_model() {
    let dir = tempfile::tempdir().unwrap();
    let j = recovery_job(dir.path(), "");
    let j = j.to_str().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let reference = p("ref");
    run(&["launch", "--servers", "2", "--workers", "2", "-c", j, "--save", &reference]);
    let reference = starling::model_file::load(Path::new(&reference)).unwrap();
    for role in ["server", "worker", "coordinator"] {
        let (ck, save, rep) = (p(&format!("ck-{role}")), p(&format!("{role}.model")), p(&format!("{role}.json")));
        let mut job = Live::start(&two_by_two(
            j,
            &["--checkpoint-dir", &ck, "--checkpoint-every-steps", "500", "--save", &save, "--report", &rep],
        ));
        job.wait_until("a checkpoint", |_| has_checkpoint(Path::new(&ck)));
        let victim = job.signal(role, libc::SIGKILL);
        let (ok, _, said) = job.finish();
        assert!(ok, "the job should recover from its killed {role}:\n{said}");
        assert!(said.contains(&format!("(pid {victim}) was killed by signal 9")), "{said}");
        assert!(said.contains("starting a replacement (restart 1 of 3)") && said.contains("recovered in"), "{said}");
        let r = report(Path::new(&rep));
        assert_eq!(r["restarts"], 1, "{r}");
        let lost = r["recoveries"][0]["lost"][0].as_str().unwrap();
        assert!(lost.contains(role), "the report should name the lost {role}: {lost}");
        let model = starling::model_file::load(Path::new(&save)).unwrap();
        assert_eq!(rows(&model), rows(&reference), "recovering from the killed {role} changed the model");
    }
}

#[test]
fn a_stopped_worker_is_declared_lost_killed_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let j = recovery_job(dir.path(), "");
    let (j, ck, save) = (j.to_str().unwrap(), dir.path().join("ck"), dir.path().join("m"));
    let reference = dir.path().join("ref");
    run(&["launch", "--servers", "2", "--workers", "2", "-c", j, "--save", reference.to_str().unwrap()]);
    let mut job = Live::start(&two_by_two(
        j,
        &[
            "--checkpoint-dir",
            ck.to_str().unwrap(),
            "--checkpoint-every-steps",
            "500",
            "--save",
            save.to_str().unwrap(),
        ],
    ));
    job.wait_until("a checkpoint", |_| has_checkpoint(&ck));
    let victim = job.signal("worker", libc::SIGSTOP);
    let (ok, _, said) = job.finish();
    assert!(ok, "the job should replace its stopped worker:\n{said}");
    assert!(said.contains(&format!("pid {victim}")) && said.contains("(silent; declared lost)"), "{said}");
    assert!(said.contains("sent nothing for 2 s") && said.contains("recovered in"), "{said}");
    let (a, b) = (starling::model_file::load(&reference).unwrap(), starling::model_file::load(&save).unwrap());
    assert_eq!(rows(&a), rows(&b), "replacing the stopped worker changed the model");
}

#[test]
fn asp_replaces_a_killed_worker_while_the_other_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let j = recovery_job(dir.path(), "staleness = \"inf\"\n");
    let (j, ck) = (j.to_str().unwrap(), dir.path().join("ck"));
    let (r0, r1) = (dir.path().join("ref.json"), dir.path().join("r.json"));
    run(&["launch", "--servers", "2", "--workers", "2", "-c", j, "--report", r0.to_str().unwrap()]);
    let mut job = Live::start(&two_by_two(
        j,
        &[
            "--checkpoint-dir",
            ck.to_str().unwrap(),
            "--checkpoint-every-steps",
            "500",
            "--report",
            r1.to_str().unwrap(),
        ],
    ));
    job.wait_until("a checkpoint", |_| has_checkpoint(&ck));
    job.signal("worker", libc::SIGKILL);
    let (ok, _, said) = job.finish();
    assert!(ok, "the ASP job should replace its killed worker:\n{said}");
    assert!(said.contains("the other workers go on") && !said.contains("rolling every table back"), "{said}");
    let r = report(&r1);
    assert_eq!(r["recoveries"][0]["kind"], "replace", "{r}");
    let (a, b) = (test_logloss(&r0), test_logloss(&r1));
    assert!((a - b).abs() <= 0.002, "fault-free {a}, with a replaced worker {b}");
}

#[test]
fn restarts_are_bounded_and_the_last_loss_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let j = recovery_job(dir.path(), "max_restarts = 1\n");
    let mut job = Live::start(&["launch", "--servers", "2", "--workers", "2", "-c", j.to_str().unwrap()]);
    job.wait_until("training", |l| l.said().contains("training (BSP"));
    job.signal("server", libc::SIGKILL);
    job.wait_until("the recovery", |l| l.said().contains("recovered in"));
    let victim = job.signal("server", libc::SIGKILL);
    let (ok, _, said) = job.finish();
    assert!(!ok, "a second loss with max_restarts = 1 must fail the job:\n{said}");
    assert!(said.contains("no restarts left (cluster.max_restarts = 1)"), "{said}");
    assert_blames(&said, "server", victim);
}

/// Bytes a checkpoint directory takes on a tmpfs (whole pages per file and directory).
fn footprint(dir: &Path) -> u64 {
    let page = |n: u64| n.div_ceil(4096) * 4096;
    std::fs::read_dir(dir).unwrap().flatten().map(|e| page(e.metadata().unwrap().len())).sum::<u64>() + 4096
}

/// Runs `script` (sh) in a private mount namespace where `mnt` is a tmpfs of `bytes`: a small
/// disk that fills up, gone with the namespace when the script ends.
fn on_small_disk(mnt: &Path, bytes: u64, script: &str) -> Output {
    std::fs::create_dir_all(mnt).unwrap();
    // SAFETY: geteuid only reads the process's credentials.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = Command::new("unshare");
    if !root {
        cmd.args(["--user", "--map-root-user"]);
    }
    let mount = format!("mount -t tmpfs -o size={bytes} tmpfs {} && {script}", mnt.display());
    cmd.args(["--mount", "sh", "-c", &mount]).output().unwrap()
}

#[test]
fn a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_goes_on_or_fails_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let jobs: Vec<String> = ["continue", "fail"]
        .iter()
        .map(|on_error| {
            let d = dir.path().join(on_error);
            std::fs::create_dir_all(&d).unwrap();
            let extra = format!("[checkpoint]\nevery_steps = 300\nkeep = 100\non_error = \"{on_error}\"\n");
            recovery_job(&d, &extra).to_str().unwrap().to_string()
        })
        .collect();
    run(&two_by_two(&jobs[0], &["--checkpoint-dir", &p("ref-ck"), "--save", &p("ref")]));
    let newest = std::fs::read_dir(p("ref-ck")).unwrap().flatten().map(|e| e.path()).max().unwrap();
    // Room for about three checkpoints: the fourth finds the disk full.
    let bytes = footprint(&newest) * 7 / 2;
    let test = gen_data().join("test.libsvm");
    let mnt = dir.path().join("small");
    let ck = mnt.join("ck");
    let script = |j: &str, save: &str| {
        format!(
            "{BIN} launch --servers 2 --workers 2 -c {j} --checkpoint-dir {ck} --save {save}; echo \"exit $?\"; {BIN} eval -q --model {ck} --data {test}",
            ck = ck.display(),
            test = test.display()
        )
    };
    let out = on_small_disk(&mnt, bytes, &script(&jobs[0], &p("model")));
    let (stdout, said) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("exit 0"), "the job should go on past the full disk:\n{stdout}\n{said}");
    assert!(
        said.contains("No space left on device") && said.contains("the newest complete checkpoint is still"),
        "{said}"
    );
    assert!(said.contains("training goes on (checkpoint.on_error = \"continue\")"), "{said}");
    assert!(
        stdout.contains("logloss"),
        "the newest complete checkpoint on the full disk must read back:\n{stdout}\n{said}"
    );
    let (a, b) = (
        starling::model_file::load(Path::new(&p("ref"))).unwrap(),
        starling::model_file::load(Path::new(&p("model"))).unwrap(),
    );
    assert_eq!(rows(&a), rows(&b), "the full disk changed the model");
    let out = on_small_disk(&mnt, bytes, &script(&jobs[1], &p("model2")));
    let (stdout, said) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("exit 1"), "checkpoint.on_error = \"fail\" should end the job:\n{stdout}\n{said}");
    assert!(said.contains("cannot write checkpoint") && said.contains("(checkpoint.on_error = \"fail\")"), "{said}");
    assert!(stdout.contains("logloss"), "the previous checkpoint must be intact:\n{stdout}\n{said}");
}

/// `scripts/dev-certs.sh` into `dir`: the `[cluster]` lines of a job with TLS on.
fn dev_certs(dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dev-certs.sh");
    let out = Command::new("bash").arg(script).arg(dir).output().unwrap();
    assert!(out.status.success(), "dev-certs.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let p = |n: &str| dir.join(n);
    format!("tls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\n", p("node.pem"), p("node.key"), p("ca.pem"))
}

/// Sends a Hello over plain TCP to `addr` and returns what comes back, as text.
fn plain_hello(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = Vec::new();
    starling_ps::frame::Hello { token: b"x".to_vec(), role: "plain".into() }.encode(&mut hello);
    let mut out = Vec::new();
    starling_ps::frame::write_frame(&mut out, starling_ps::frame::Kind::Hello, 0, 0, &hello);
    s.write_all(&out).unwrap();
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    String::from_utf8_lossy(&back).into_owned()
}

#[test]
fn a_job_with_tls_gives_the_same_model_and_refuses_plain_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dev_certs(&dir.path().join("certs"));
    let (plain_dir, tls_dir) = (dir.path().join("plain"), dir.path().join("tls"));
    std::fs::create_dir_all(&plain_dir).unwrap();
    std::fs::create_dir_all(&tls_dir).unwrap();
    let (j0, j1) = (recovery_job(&plain_dir, ""), recovery_job(&tls_dir, &tls));
    let (a, b) = (dir.path().join("plain.model"), dir.path().join("tls.model"));
    run(&two_by_two(j0.to_str().unwrap(), &["--save", a.to_str().unwrap()]));
    let mut job = Live::start(&two_by_two(j1.to_str().unwrap(), &["--save", b.to_str().unwrap()]));
    job.wait_until("training", |l| l.said().contains("training (BSP"));
    let work = std::env::temp_dir().join(format!("starling-launch-{}", job.child.id()));
    let coordinator = std::fs::read_to_string(work.join("coordinator.addr")).unwrap();
    let said = job.said();
    let server = said.split("serving 512 virtual shards at ").nth(1).unwrap().split_whitespace().next().unwrap();
    for addr in [coordinator.trim(), server] {
        let answer = plain_hello(addr);
        assert!(answer.contains("speaks TLS only"), "plain TCP to {addr} got {answer:?}");
    }
    let (ok, _, said) = job.finish();
    assert!(ok, "{said}");
    assert!(said.contains("coordinator: refused connection from") && said.contains("TLS endpoint"), "{said}");
    let (a, b) = (starling::model_file::load(&a).unwrap(), starling::model_file::load(&b).unwrap());
    assert_eq!(rows(&a), rows(&b), "TLS changed the model");
}

/// An elastic ASP job: `recovery_job`'s 4 passes of 10-example batches, its input in 16 pieces.
fn elastic_job(dir: &Path) -> PathBuf {
    recovery_job(dir, "staleness = \"inf\"\nelastic = true\n")
}

#[test]
fn elastic_workers_join_and_leave_a_running_job_and_every_example_is_learned_once() {
    let dir = tempfile::tempdir().unwrap();
    let (fixed_dir, elastic_dir) = (dir.path().join("fixed"), dir.path().join("elastic"));
    std::fs::create_dir_all(&fixed_dir).unwrap();
    std::fs::create_dir_all(&elastic_dir).unwrap();
    let (fixed, j) = (recovery_job(&fixed_dir, "staleness = \"inf\"\n"), elastic_job(&elastic_dir));
    let j = j.to_str().unwrap();
    let (r0, r1) = (dir.path().join("fixed.json"), dir.path().join("elastic.json"));
    run(&two_by_two(fixed.to_str().unwrap(), &["--report", r0.to_str().unwrap()]));
    let token = ("STARLING_TOKEN", "elastic-test-token");
    let mut job = Live::start_with(&two_by_two(j, &["--report", r1.to_str().unwrap()]), &[token]);
    job.wait_until("training", |l| l.said().contains("training (ASP"));
    // A third worker, started by hand as a user would, joins the running job.
    let work = std::env::temp_dir().join(format!("starling-launch-{}", job.child.id()));
    let addr = std::fs::read_to_string(work.join("coordinator.addr")).unwrap();
    let extra = Command::new(BIN)
        .args(["worker", "--coordinator", addr.trim()])
        .env(token.0, token.1)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    job.wait_until("the third worker to join", |l| l.said().contains("joined the job"));
    // One of the launched workers is asked to leave, as a scale-down or a deleted pod does.
    std::thread::sleep(Duration::from_millis(300));
    job.signal("worker", libc::SIGTERM);
    job.wait_until("the worker to leave", |l| l.said().contains("left the job"));
    let extra = extra.wait_with_output().unwrap();
    assert!(extra.status.success(), "the joined worker failed:\n{}", String::from_utf8_lossy(&extra.stderr));
    let (ok, _, said) = job.finish();
    assert!(ok, "{said}");
    assert!(said.contains("goes back to the others; 2 workers train"), "{said}");
    let r = report(&r1);
    assert_eq!(r["workers_joined"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["workers_left"].as_array().unwrap().len(), 1, "{r}");
    // Every example of every pass learned once: none lost with the leaver, none twice.
    assert_eq!(r["train_examples"], 4 * 40_000, "{r}");
    let (a, b) = (test_logloss(&r0), test_logloss(&r1));
    assert!((a - b).abs() <= 0.005, "fixed slices {a}, elastic with a join and a leave {b}");
}

#[test]
fn an_elastic_job_gives_a_lost_workers_piece_to_the_others_and_admits_its_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let j = elastic_job(dir.path());
    let r = dir.path().join("r.json");
    let mut job = Live::start(&two_by_two(j.to_str().unwrap(), &["--report", r.to_str().unwrap()]));
    job.wait_until("training", |l| l.said().contains("training (ASP"));
    std::thread::sleep(Duration::from_millis(500));
    job.signal("worker", libc::SIGKILL);
    let (ok, _, said) = job.finish();
    assert!(ok, "{said}");
    assert!(said.contains("was lost (connection closed") && said.contains("goes back to the others"), "{said}");
    assert!(said.contains("joined the job"), "the launcher's replacement should join:\n{said}");
    assert!(!said.contains("rolling every table back"), "{said}");
    // The job ends only once every piece is trained on, the lost one's rest included; what
    // the lost worker learned after its last heartbeat is missing from the count.
    let r = report(&r);
    assert!(r["train_examples"].as_u64().unwrap() >= 4 * 40_000 - 10_000, "{r}");
    assert!(r["test"]["logloss"].as_f64().unwrap() < 0.6, "{r}");
}

#[test]
fn an_elastic_job_refuses_bsp_and_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    let j = elastic_job(dir.path());
    let j = j.to_str().unwrap();
    let err = run_err(&["launch", "-c", j, "--staleness", "0"]);
    assert!(err.contains("cluster.elastic") && err.contains("BSP"), "{err}");
    let cache = dir.path().join("cache");
    let err = run_err(&["launch", "-c", j, "--cache-dir", cache.to_str().unwrap()]);
    assert!(err.contains("cluster.elastic") && err.contains("data.cache_dir"), "{err}");
}

#[test]
fn an_elastic_job_rolls_its_pieces_back_with_the_tables_when_a_server_dies() {
    let dir = tempfile::tempdir().unwrap();
    let j = elastic_job(dir.path());
    let (ck, r) = (dir.path().join("ck"), dir.path().join("r.json"));
    let more =
        ["--checkpoint-dir", ck.to_str().unwrap(), "--checkpoint-every-steps", "500", "--report", r.to_str().unwrap()];
    let mut job = Live::start(&two_by_two(j.to_str().unwrap(), &more));
    // A worker leaves first: the rollback must not wait for it.
    job.wait_until("training", |l| l.said().contains("training (ASP"));
    job.signal("worker", libc::SIGTERM);
    job.wait_until("the worker to leave", |l| l.said().contains("left the job"));
    job.wait_until("a checkpoint", |_| has_checkpoint(&ck));
    job.signal("server", libc::SIGKILL);
    let (ok, _, said) = job.finish();
    assert!(ok, "{said}");
    assert!(said.contains("rolling every table back to") && said.contains("recovered in"), "{said}");
    // Each checkpoint records the input not yet trained on; the last one, none.
    let last = report(&r)["checkpoints"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string();
    let m = starling_ps::read_manifest(Path::new(&last)).unwrap();
    assert_eq!(m.pieces_left, Some(Vec::new()), "{m:?}");
    let kept: Vec<_> = std::fs::read_dir(&ck).unwrap().map(|e| e.unwrap().path()).collect();
    let earlier =
        kept.iter().filter_map(|d| starling_ps::read_manifest(d).ok()).find(|m| m.pieces_left != Some(Vec::new()));
    assert!(earlier.is_some_and(|m| !m.pieces_left.unwrap().is_empty()), "{kept:?}");
}
