//! Real data for deep models: MovieLens-100K (from the `recbole` 1.2.1 wheel on PyPI, split 8:1:1
//! by bench/movielens/prepare.py), trained with the BARS protocol (early stopping on the
//! validation AUC, patience 2, learning rates ÷10 on a plateau): DeepFM and DCN-v2 beat FM and FFM.

use std::path::{Path, PathBuf};
use std::process::Command;

use starling::config::JobConfig;
use starling::trainer;
use starling_core::ModelKind;

/// Runs the preparation script with the test venv's Python (`$STARLING_PYTHON`, set by
/// scripts/test.sh), else `python3`.
fn prepare() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let python = std::env::var("STARLING_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/movielens/prepare.py");
    let out = Command::new(&python).arg(&script).arg(dir.path()).output().expect("run prepare.py");
    assert!(
        out.status.success(),
        "{} {}: {}{}",
        python,
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn test_auc(dir: &Path, kind: ModelKind, dropout: f32) -> f64 {
    let file = |n: &str| -> Vec<PathBuf> { vec![dir.join(format!("{n}.vw"))] };
    let mut job = JobConfig::from_toml(
        "[features]\nformat = \"vw\"\nnamespaces = \"uiagozyc\"\nhash_bits = 20\n\
         [train]\npasses = 10\npatience = 2\nlr_decay_on_plateau = 10\n[model]\nv2 = true\n",
        "the MovieLens job",
    )
    .unwrap();
    (job.data.train, job.data.valid, job.data.test) = (file("train"), file("valid"), file("test"));
    job.model.kind = kind;
    job.model.dropout = dropout;
    let (_, report) = trainer::train(&job, true).unwrap();
    report.test.unwrap().auc.unwrap()
}

#[test]
fn deepfm_and_dcn_v2_beat_fm_and_ffm_on_movielens() {
    let dir = prepare();
    let fm = test_auc(dir.path(), ModelKind::Fm, 0.0);
    let ffm = test_auc(dir.path(), ModelKind::Ffm, 0.0);
    let deepfm = test_auc(dir.path(), ModelKind::DeepFm, 0.0);
    let dcn_v2 = test_auc(dir.path(), ModelKind::Dcn, 0.2);
    let shallow = fm.max(ffm);
    assert!(deepfm > shallow && dcn_v2 > shallow, "test AUC: FM {fm}, FFM {ffm}, DeepFM {deepfm}, DCN-v2 {dcn_v2}");
}
