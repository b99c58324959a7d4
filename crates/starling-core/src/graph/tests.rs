//! Gradient checks of whole graphs (every ready model) and the refusals of graphs that cannot work.

use super::ready::{ready_graph, ReadyOptions};
use super::*;
use crate::example::{Example, Feature};
use crate::model::ModelKind;
use crate::nn::Activation;
use crate::rng::Rng;

fn fields() -> Fields {
    Fields { names: vec!["user".into(), "item".into(), "genre".into(), "bias".into()], bias: Some(3) }
}

fn settings(per_field: bool) -> GraphSettings {
    GraphSettings {
        loss: Loss::Logistic,
        seed: 5,
        init_scale: 0.3,
        per_field_tables: per_field,
        sparse_optimizer: Optimizer::adagrad_default(),
        dense_optimizer: Optimizer::adam_default(),
        sync_dense: false,
        sync_sparse: false,
        numeric_stats: [("genre".to_string(), (1.0, 2.0))].into(),
    }
}

fn small() -> ReadyOptions {
    ReadyOptions {
        embedding_dim: 3,
        mlp: vec![4, 3],
        mlp2: vec![3],
        heads: 1,
        cross_layers: 2,
        activation: Activation::Tanh,
        ..ReadyOptions::default()
    }
}

/// Four examples over three fields, one of them multi-valued, keys shared between examples.
fn batch(model: &GraphModel) -> MiniBatch {
    let f = |key: u64, field: u32, value: f32| Feature { key, field, value };
    let data = [
        (1.0, 1.0, vec![f(1, 0, 1.0), f(10, 1, 1.0), f(20, 2, 1.0), f(21, 2, 1.0), f(99, 3, 1.0)]),
        (0.0, 1.0, vec![f(2, 0, 1.0), f(10, 1, 1.0), f(22, 2, 0.5), f(99, 3, 1.0)]),
        (1.0, 2.0, vec![f(1, 0, 1.0), f(11, 1, 1.0), f(99, 3, 1.0)]),
        (0.0, 0.5, vec![f(3, 0, 1.0), f(11, 1, 1.0), f(20, 2, 1.0), f(22, 2, 1.0), f(99, 3, 1.0)]),
    ];
    let mut b = MiniBatch::new();
    for (label, weight, features) in data {
        b.push(&Example { label, weight, features });
    }
    b.seal_groups(model.key_groups(), |fd| model.key_group(fd));
    b
}

fn random_weights(model: &GraphModel, b: &MiniBatch) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(3);
    model
        .tables()
        .iter()
        .map(|t| {
            let keys = match t.kind {
                crate::model::TableKind::Sparse => b.group_keys(t.group).len(),
                crate::model::TableKind::Dense { .. } => t.dense_keys().len(),
            };
            (0..keys * t.dim).map(|_| (rng.next_f64() as f32 - 0.5) * 0.8).collect()
        })
        .collect()
}

fn mean_loss(model: &GraphModel, b: &MiniBatch, w: &[Vec<f32>]) -> f64 {
    let mut s = model.scratch();
    let (mut sum, mut n) = (0f64, 0usize);
    model.step(b, w, 0, None, s.as_mut(), &mut |score, y, wt| {
        sum += f64::from(model.loss().value(score, y) * wt);
        n += 1;
    });
    sum / n as f64
}

fn check_graph(model: &GraphModel, what: &str) {
    let b = batch(model);
    let w = random_weights(model, &b);
    let mut g = Gradients::default();
    let mut s = model.scratch();
    model.step(&b, &w, 0, Some(&mut g), s.as_mut(), &mut |_, _, _| {});
    let eps = 1e-2f32;
    let mut checked = 0;
    for (t, table) in w.iter().enumerate() {
        let step = (table.len() / 60).max(1);
        for i in (0..table.len()).step_by(step) {
            let (mut a, mut c) = (w.clone(), w.clone());
            a[t][i] += eps;
            c[t][i] -= eps;
            let numeric = (mean_loss(model, &b, &a) - mean_loss(model, &b, &c)) / (2.0 * f64::from(eps));
            let analytic = f64::from(g.grads[t][i]);
            assert!(
                (analytic - numeric).abs() <= 2e-3 + 1e-2 * numeric.abs(),
                "{what}: table {} float {i}: analytic {analytic}, numeric {numeric}",
                model.tables()[t].name
            );
            checked += usize::from(numeric.abs() > 1e-6);
        }
    }
    assert!(checked > 10, "{what}: too few non-zero gradients checked ({checked})");
}

#[test]
fn every_ready_model_with_a_numeric_input_has_the_gradient_of_its_loss() {
    for kind in [ModelKind::WideDeep, ModelKind::DeepFm, ModelKind::Dcn, ModelKind::Dlrm, ModelKind::FinalMlp] {
        let graph = ready_graph(kind, &ReadyOptions { numeric: vec!["genre".into()], ..small() }).unwrap();
        let m = GraphModel::build(&graph, None, &fields(), &settings(false)).unwrap();
        check_graph(&m, &format!("{kind} with genre numeric"));
    }
}

#[test]
fn a_numeric_block_standardises_its_fields_and_needs_their_statistics() {
    let graph = vec![
        BlockConfig::new("num", "numeric", &[]).with("fields", vec!["genre".to_string()]),
        BlockConfig::new("lin", "linear", &[]),
        BlockConfig::new("score", "sum", &["num", "lin"]),
    ];
    let m = GraphModel::build(&graph, None, &fields(), &settings(false)).unwrap();
    let b = batch(&m);
    // Zero weights: the score is the numeric block's output.
    let w: Vec<Vec<f32>> = random_weights(&m, &b).iter().map(|t| vec![0.0; t.len()]).collect();
    let mut scores = Vec::new();
    m.step(&b, &w, 0, None, m.scratch().as_mut(), &mut |s, _, _| scores.push(s));
    // genre sums 2, 0.5, nothing and 2; mean 1, standard deviation 2; a missing field is the mean.
    assert_eq!(scores, [0.5, -0.25, 0.0, 0.5]);
    let mut no_stats = settings(false);
    no_stats.numeric_stats.clear();
    let err = GraphModel::build(&graph, None, &fields(), &no_stats).unwrap_err().to_string();
    assert!(err.contains("block `num`") && err.contains("field `genre` has no mean"), "{err}");
    let mut bare = graph.clone();
    bare[0] = BlockConfig::new("num", "numeric", &[]);
    let err = GraphModel::build(&bare, None, &fields(), &settings(false)).unwrap_err().to_string();
    assert!(err.contains("must list the numeric fields"), "{err}");
}

#[test]
fn every_ready_model_has_the_gradient_of_its_loss() {
    for kind in [ModelKind::WideDeep, ModelKind::DeepFm, ModelKind::Dcn, ModelKind::Dlrm, ModelKind::FinalMlp] {
        for v2 in [false, true] {
            if v2 && kind != ModelKind::Dcn {
                continue;
            }
            let graph = ready_graph(kind, &ReadyOptions { v2, ..small() }).unwrap();
            for per_field in [false, true] {
                let m = GraphModel::build(&graph, None, &fields(), &settings(per_field)).unwrap();
                check_graph(&m, &format!("{kind} v2={v2} per_field={per_field}"));
            }
        }
    }
}

#[test]
fn mean_pooling_and_field_subsets_have_their_gradients_too() {
    let graph = vec![
        BlockConfig::new("lin", "linear", &[]).with("fields", vec!["user".to_string(), "bias".to_string()]),
        BlockConfig::new("e", "embedding", &[]).with("dim", 2usize).with("pooling", "mean"),
        BlockConfig::new("items", "embedding", &[]).with("dim", 2usize).with("fields", vec!["item".to_string()]),
        BlockConfig::new("d", "dot", &["e", "items"]),
        BlockConfig::new("n", "layer_norm", &["e"]),
        BlockConfig::new("m", "mlp", &["n", "d"]).with("sizes", vec![3usize, 1]).with("activation", "sigmoid"),
        BlockConfig::new("out", "sum", &["lin", "m"]),
    ];
    let m = GraphModel::build(&graph, None, &fields(), &settings(false)).unwrap();
    check_graph(&m, "custom");
}

fn refusal(graph: &[BlockConfig]) -> String {
    GraphModel::build(graph, None, &fields(), &settings(false)).unwrap_err().to_string()
}

#[test]
fn graphs_that_cannot_work_are_refused_naming_the_block() {
    let emb = || BlockConfig::new("emb", "embedding", &[]).with("dim", 4usize);
    let e = refusal(&[emb(), BlockConfig::new("x", "transformer", &["emb"])]);
    assert!(e.contains("block `x`: unknown block kind `transformer`; expected one of embedding, linear,"), "{e}");
    let e = refusal(&[emb(), BlockConfig::new("m", "mlp", &["emb", "nope"]).with("sizes", vec![1usize])]);
    assert!(e.contains("block `m`: input `nope` is not a block"), "{e}");
    let e = refusal(&[
        emb(),
        BlockConfig::new("a", "mlp", &["b"]).with("sizes", vec![4usize]),
        BlockConfig::new("b", "mlp", &["a"]).with("sizes", vec![1usize]),
    ]);
    assert!(e.contains("blocks `a` → `b` → `a` read each other's outputs in a cycle"), "{e}");
    let e = refusal(&[emb(), BlockConfig::new("m", "mlp", &["emb"]).with("size", vec![1usize])]);
    assert!(e.contains("block `m` (mlp): option `sizes` is required"), "{e}");
    let e =
        refusal(&[emb(), BlockConfig::new("m", "mlp", &["emb"]).with("sizes", vec![1usize]).with("dropuot", 0.1f32)]);
    assert!(e.contains("block `m` (mlp): unknown option `dropuot`; its options are: sizes, activation"), "{e}");
    let e = refusal(&[emb(), BlockConfig::new("m", "mlp", &["emb"]).with("sizes", vec![3usize])]);
    assert!(e.contains("the model's output `m` gives 3 floats per example; it must give 1"), "{e}");
    let e = refusal(&[
        BlockConfig::new("e", "embedding", &[]).with("dim", 4usize).with("fields", vec!["age".to_string()]),
        BlockConfig::new("m", "mlp", &["e"]).with("sizes", vec![1usize]),
    ]);
    assert!(e.contains("block `e`: the input has no field `age` (fields: user, item, genre, bias)"), "{e}");
    let e = refusal(&[
        emb(),
        BlockConfig::new("m", "mlp", &["emb"]).with("sizes", vec![3usize]),
        BlockConfig::new("g", "gate", &["emb", "m"]),
        BlockConfig::new("s", "mlp", &["g"]).with("sizes", vec![1usize]),
    ]);
    assert!(e.contains("block `g` (gate): multiplies its first input by 2·sigmoid of its second, so they need one width; got 12 and 3"), "{e}");
    let e = refusal(&[
        emb(),
        BlockConfig::new("small", "embedding", &[]).with("dim", 2usize),
        BlockConfig::new("f", "fm", &["emb", "small"]),
    ]);
    assert!(e.contains("block `f` (fm): every input must be vectors of 4 floats"), "{e}");
    let e = refusal(&[
        emb(),
        BlockConfig::new("unused", "mlp", &["emb"]).with("sizes", vec![1usize]),
        BlockConfig::new("f", "fm", &["emb"]),
    ]);
    assert!(e.contains("block `unused` does not lead to the output"), "{e}");
}

#[test]
fn tables_hold_one_sparse_row_per_key_group_and_the_dense_block() {
    let graph = ready_graph(ModelKind::DeepFm, &small()).unwrap();
    let m = GraphModel::build(&graph, None, &fields(), &settings(false)).unwrap();
    let names: Vec<&str> = m.tables().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["sparse", "dense"]);
    assert_eq!(m.row_dim(), 1 + 3);
    // 3 fields of 3 floats → 4 → 3 → 1.
    assert_eq!(m.dense_params(), 9 * 4 + 4 + 4 * 3 + 3 + 3 + 1);
    let bn = ready_graph(ModelKind::DeepFm, &ReadyOptions { batch_norm: true, ..small() }).unwrap();
    let m = GraphModel::build(&bn, None, &fields(), &settings(true)).unwrap();
    let names: Vec<&str> = m.tables().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["sparse.user", "sparse.item", "sparse.genre", "sparse.bias", "dense", "stats"]);
}
