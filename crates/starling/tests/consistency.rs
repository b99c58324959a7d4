//! Consistency on a cluster (design.md, decision 12): 2 servers × 2 workers with the cluster's
//! defaults learn as well as one process, and the hybrid mode (synchronous dense layers,
//! asynchronous embeddings) ends beside BSP. Real processes over loopback TCP, 1M generated rows.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use starling_data::synth::{self, SynthConfig, SynthFormat};

/// 1M training rows (200k test) with the hidden non-linear term, so DeepFM has something to find.
fn data() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::binary_scratch();
        let cfg = SynthConfig {
            train_rows: 1_000_000,
            test_rows: 200_000,
            seed: 17,
            hash_bits: 20,
            formats: vec![SynthFormat::Criteo],
            nonlinear: 1.0,
        };
        synth::generate(&cfg, &dir, &mut |_| {}).unwrap();
        dir
    })
}

/// Test logloss and AUC of a `starling` run (`train` or `launch`) on the data set.
fn run(args: &[&str]) -> (f64, f64) {
    let (train, test) = (data().join("train.tsv"), data().join("test.tsv"));
    let o = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(args)
        .args(["--train", train.to_str().unwrap(), "--test", test.to_str().unwrap(), "--hash-bits", "20"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{args:?}: {text}");
    let line = text.lines().find_map(|l| l.strip_prefix("test: ")).unwrap_or_else(|| panic!("no test line: {text}"));
    let after = |key: &str| -> f64 {
        let at = line.find(key).unwrap_or_else(|| panic!("no {key} in {line}")) + key.len();
        line[at..].split(|c: char| c == ',' || c.is_whitespace()).find(|s| !s.is_empty()).unwrap().parse().unwrap()
    };
    (after("logloss "), after("AUC "))
}

/// One job at a time: on two cores, jobs side by side starve each other's processes.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CLUSTER: [&str; 5] = ["launch", "--servers", "2", "--workers", "2"];
const DEEPFM: [&str; 6] = ["--model", "deepfm", "--embedding-dim", "8", "--mlp", "64,64"];

fn launch(extra: &[&str]) -> (f64, f64) {
    run(&[&CLUSTER[..], &DEEPFM[..], extra].concat())
}

#[test]
fn a_cluster_with_its_defaults_learns_as_well_as_one_process() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // LR, FM and FFM: online in one process, batches of 100 per worker on the cluster (the
    // default of each), summed over the workers and applied once a step under BSP, so the
    // cluster's result is the same run after run (measured: LR 0.51655 against 0.51654, FM
    // 0.47656 against 0.47542, FFM 0.48662 against 0.48651).
    for model in ["lr", "fm", "ffm"] {
        let single = run(&["train", "--model", model]);
        let cluster = run(&[&CLUSTER[..], &["--model", model]].concat());
        eprintln!("{model}: one process {single:?}, 2 x 2 cluster {cluster:?}");
        assert!(cluster.0 - single.0 <= 0.003, "{model}: cluster logloss {} vs one process {}", cluster.0, single.0);
    }
    // DeepFM: steps of 256 examples in both (128 per worker on the cluster), every table
    // synchronous under BSP, so the cluster's result is the same run after run (0.0023 behind).
    let single = run(&[&["train"][..], &DEEPFM[..]].concat());
    let cluster = launch(&[]);
    eprintln!("deepfm: one process {single:?}, 2 x 2 cluster {cluster:?}");
    assert!(cluster.0 - single.0 <= 0.003, "deepfm: cluster logloss {} vs one process {}", cluster.0, single.0);
}

#[test]
fn the_hybrid_mode_ends_beside_bsp() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bsp = launch(&["--staleness", "0"]);
    let hybrid = launch(&["--staleness", "inf", "--dense", "sync"]);
    let asp = launch(&["--staleness", "inf"]);
    eprintln!("deepfm 2 x 2: BSP {bsp:?}, hybrid {hybrid:?}, ASP {asp:?} (logloss, AUC)");
    // BSP is deterministic; the hybrid mode's asynchronous rows are not. Over eleven runs on
    // this data (two learning rates) the hybrid mode ended 0.0019 above to 0.0043 below BSP's
    // 0.8305 (BSP itself moves by 0.0018 with the seed), hence a bound wider than the mean gap.
    assert!((hybrid.1 - bsp.1).abs() <= 0.006, "hybrid AUC {} vs BSP {}", hybrid.1, bsp.1);
    assert!(asp.1 > 0.75, "ASP learned nothing: AUC {}", asp.1);
}
