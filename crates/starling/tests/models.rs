//! Deep models end to end: the shipped graphs are the ready models, every ready model trains,
//! saves and loads exactly, resumes exactly, and a graph that cannot work is refused up front.

mod common;

use starling::config::JobConfig;
use starling::{model_file, predict, trainer};
use starling_core::graph::ready::ready_graph;
use starling_core::ModelKind;

const READY: [ModelKind; 5] =
    [ModelKind::WideDeep, ModelKind::DeepFm, ModelKind::Dcn, ModelKind::Dlrm, ModelKind::FinalMlp];

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models")
}

fn small_job(kind: ModelKind) -> JobConfig {
    let dir = common::gen_data();
    let mut job = JobConfig::default();
    job.data.train = vec![dir.join("train.tsv")];
    job.data.test = vec![dir.join("test.tsv")];
    job.features.hash_bits = 18;
    job.model.kind = kind;
    job.model.embedding_dim = 4;
    job.model.mlp = vec![16, 8];
    job.model.mlp2 = vec![8];
    job.model.heads = 2;
    job.model.cross_layers = 2;
    job
}

fn predictions(model: &starling::Model) -> Vec<u8> {
    let mut out = Vec::new();
    predict::predict_to(model, &[common::gen_data().join("test.tsv")], 0, &mut out).unwrap();
    out
}

fn all_rows(model: &starling::Model) -> Vec<Vec<(u64, Vec<u32>)>> {
    model
        .tables
        .iter()
        .map(|t| {
            let mut out = Vec::new();
            t.as_dyn().for_each_row(&mut |k, r| out.push((k, r.iter().map(|x| x.to_bits()).collect())));
            out.sort();
            out
        })
        .collect()
}

#[test]
fn the_shipped_graphs_are_the_ready_models() {
    for kind in READY {
        let path = examples_dir().join(format!("{kind}.toml"));
        let job = JobConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(job.model.kind, ModelKind::Graph, "{}", path.display());
        let want = ready_graph(kind, &JobConfig::default().model.ready_options()).unwrap();
        assert_eq!(job.model.blocks, want, "{} differs from what kind = \"{kind}\" builds", path.display());
    }
}

#[test]
fn every_ready_model_learns_and_saves_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for kind in READY {
        let (model, report) = trainer::train(&small_job(kind), true).unwrap();
        let auc = report.test.unwrap().auc.unwrap();
        assert!(auc > 0.62, "{kind}: test AUC {auc}");
        let path = dir.path().join(format!("{kind}.model"));
        model_file::save(&model, &path).unwrap();
        let loaded = model_file::load(&path).unwrap();
        assert_eq!(all_rows(&model), all_rows(&loaded), "{kind}");
        assert_eq!(predictions(&model), predictions(&loaded), "{kind}");
    }
}

#[test]
fn numeric_columns_enter_the_mlp_standardised_on_the_training_data() {
    let mut job = small_job(ModelKind::DeepFm);
    job.model.numeric_inputs = (1..=13).map(|i| format!("I{i}")).collect();
    // Under log_bucket a column's value is its bucket's 1: refused before training.
    let err = refusal(&job);
    assert!(err.contains("model.numeric_inputs") && err.contains("log1p"), "{err}");
    job.features.numeric = starling_data::NumericTransform::Log1p;
    let (model, report) = trainer::train(&job, true).unwrap();
    assert!(report.test.unwrap().auc.unwrap() > 0.62);
    // The statistics are the training data's, and travel with the model.
    let stats = &model.job.model.numeric_stats;
    assert_eq!(stats.len(), 13, "{stats:?}");
    let [mean, std] = stats["I1"];
    assert!(mean > 0.0 && std > 0.0 && std != 1.0, "I1: mean {mean}, std {std}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("num.model");
    model_file::save(&model, &path).unwrap();
    let loaded = model_file::load(&path).unwrap();
    assert_eq!(loaded.job.model.numeric_stats, *stats);
    assert_eq!(predictions(&model), predictions(&loaded));
}

#[test]
fn a_resumed_deep_model_equals_uninterrupted_training() {
    let mut two = small_job(ModelKind::DeepFm);
    two.data.test.clear();
    two.train.passes = 2;
    let (straight, _) = trainer::train(&two, true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.model");
    let mut first = two.clone();
    first.train.passes = 1;
    first.train.save = Some(path.clone());
    trainer::train(&first, true).unwrap();
    let mut rest = two.clone();
    rest.train.passes = 1;
    rest.train.init_model = Some(path);
    let (resumed, _) = trainer::train(&rest, true).unwrap();
    assert_eq!(resumed.passes_done, 2);
    assert!(all_rows(&straight) == all_rows(&resumed), "the resumed model differs");
}

fn refusal(job: &JobConfig) -> String {
    match trainer::train(job, true) {
        Ok(_) => panic!("the job trained"),
        Err(e) => starling::error_chain(&e),
    }
}

#[test]
fn graphs_that_cannot_work_are_refused_before_training() {
    let mut job = small_job(ModelKind::Graph);
    job.model.blocks = JobConfig::from_toml(
        "[[model.blocks]]\nname = \"e\"\nblock = \"embedding\"\ndim = 4\nfields = [\"C1\", \"C99\"]\n\n\
         [[model.blocks]]\nname = \"out\"\nblock = \"mlp\"\ninput = [\"e\"]\nsizes = [1]\n",
        "test",
    )
    .unwrap()
    .model
    .blocks;
    let err = refusal(&job);
    assert!(err.contains("block `e`: the input has no field `C99` (fields: I1,"), "{err}");
    job.model.blocks[1].input = vec!["missing".into()];
    let err = refusal(&job);
    assert!(err.contains("block `out`: input `missing` is not a block of the graph"), "{err}");
    job.model.kind = ModelKind::DeepFm;
    let err = refusal(&job);
    assert!(err.contains("model.blocks") && err.contains("only read with kind = \"graph\""), "{err}");
}

#[test]
fn deepfm_finds_the_interaction_fm_cannot_represent() {
    let dir = common::gen_data_nonlinear();
    let auc = |kind: ModelKind| {
        let mut job = small_job(kind);
        job.data.train = vec![dir.join("train.tsv")];
        job.data.test = vec![dir.join("test.tsv")];
        job.model.embedding_dim = 8;
        job.model.mlp = vec![64, 64];
        let (_, report) = trainer::train(&job, true).unwrap();
        report.test.unwrap().auc.unwrap()
    };
    let (fm, deepfm) = (auc(ModelKind::Fm), auc(ModelKind::DeepFm));
    assert!(deepfm > fm + 0.01, "DeepFM AUC {deepfm} vs FM {fm}: the hidden third-order term went unlearned");
}

#[test]
fn early_stopping_keeps_the_best_pass_for_deep_and_shallow_models() {
    let dir = common::gen_data();
    for kind in [ModelKind::DeepFm, ModelKind::Fm] {
        let mut job = small_job(kind);
        job.data.valid = vec![dir.join("test.tsv")];
        job.train.passes = 6;
        job.train.patience = 2;
        job.train.lr_decay_on_plateau = 10.0;
        let (model, report) = trainer::train(&job, true).unwrap();
        let aucs: Vec<(u32, f64)> = report.valid.iter().map(|(p, s)| (*p, s.auc.unwrap())).collect();
        let best = aucs.iter().copied().fold((0, f64::MIN), |b, a| if a.1 > b.1 { a } else { b });
        assert_eq!(report.best_pass, Some(best.0), "{kind}: {aucs:?}");
        assert_eq!(model.passes_done, best.0, "{kind}: the best pass's model is the one kept");
        assert!(report.stopped_early || aucs.len() == 6, "{kind}: {aucs:?}");
        // What the test set scores is the kept model: scoring valid again gives the best figure.
        let again = starling::predict::evaluate(&model, &job.data.valid, 1, 0, true).unwrap().summary;
        assert!((again.auc.unwrap() - best.1).abs() < 1e-9, "{kind}: {} vs {}", again.auc.unwrap(), best.1);
    }
}

#[test]
fn early_stopping_can_evaluate_every_n_examples_within_a_pass() {
    let dir = common::gen_data();
    let mut job = small_job(ModelKind::DeepFm);
    job.data.valid = vec![dir.join("test.tsv")];
    job.train.passes = 3;
    job.train.threads = 2;
    job.train.patience = 3;
    job.train.eval_every = 8000;
    job.train.lr_decay_on_plateau = 10.0;
    let (model, report) = trainer::train(&job, true).unwrap();
    let aucs: Vec<f64> = report.valid.iter().map(|(_, s)| s.auc.unwrap()).collect();
    // 40k rows a pass: four evaluations within each, one at its end.
    assert!(aucs.len() > job.train.passes as usize, "{aucs:?}");
    assert!(report.valid.iter().filter(|(p, _)| *p == 1).count() >= 4, "{:?}", report.valid);
    let best = aucs.iter().copied().fold(f64::MIN, f64::max);
    let again = predict::evaluate(&model, &job.data.valid, 1, 0, true).unwrap().summary;
    assert!((again.auc.unwrap() - best).abs() < 1e-9, "kept {} vs best {best}: {aucs:?}", again.auc.unwrap());
    // Online learning has no steps to pause between.
    let mut online = small_job(ModelKind::Fm);
    online.data.valid = job.data.valid.clone();
    online.train.eval_every = 8000;
    let err = refusal(&online);
    assert!(err.contains("train.eval_every") && err.contains("mini-batches"), "{err}");
}

#[test]
fn a_deep_model_trains_on_a_launched_cluster_and_its_checkpoint_scores_the_same() {
    let dir = common::gen_data();
    let out = tempfile::tempdir().unwrap();
    let ckpt = out.path().join("dfm.ckpt");
    let bin = env!("CARGO_BIN_EXE_starling");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {text}");
        text
    };
    let (train, test) = (dir.join("train.tsv"), dir.join("test.tsv"));
    let (train, test) = (train.to_str().unwrap(), test.to_str().unwrap());
    let launched = run(&[
        "launch",
        "--servers",
        "2",
        "--workers",
        "2",
        "--model",
        "deepfm",
        "--embedding-dim",
        "4",
        "--mlp",
        "16",
        "--hash-bits",
        "18",
        "--train",
        train,
        "--test",
        test,
        "--save",
        ckpt.to_str().unwrap(),
    ]);
    let line = |text: &str, prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_string);
    let tested = line(&launched, "test: ").unwrap_or_else(|| panic!("no test line in: {launched}"));
    let evaluated = run(&["eval", "--model", ckpt.to_str().unwrap(), "--data", test]);
    assert_eq!(evaluated.lines().last().unwrap(), tested, "the checkpoint scores differently");
}
