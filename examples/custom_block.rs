//! A block the library does not have, added from outside and trained through the parameter
//! server: `cargo run --release -p starling --example custom_block`.
//!
//! The block is Swish, `x · σ(x)` (Ramachandran et al. 2017). The program registers it under
//! the name `swish`, and from then on a job config's graph can use it like a built-in block:
//! here between the layers of a small DeepFM-like model, trained by two worker threads over
//! Starling's in-process parameter server on generated data, then saved, loaded and scored.

use starling::config::JobConfig;
use starling::{model_file, predict, trainer};
use starling_core::graph::{register_block, BuildCx, Built};
use starling_core::loss::sigmoid;
use starling_core::nn::{Block, Cache, Grads, Params, Pass};
use starling_data::synth::{self, SynthConfig, SynthFormat};

/// `y = x · σ(x)`, element by element.
#[derive(Debug)]
struct Swish {
    width: usize,
}

impl Block for Swish {
    fn width(&self) -> usize {
        self.width
    }

    fn forward(&self, _: &Pass, _: Params<'_>, inputs: &[&[f32]], out: &mut [f32], _: &mut Cache) {
        for (y, &x) in out.iter_mut().zip(inputs[0]) {
            *y = x * sigmoid(x);
        }
    }

    fn backward(
        &self,
        _: &Pass,
        _: Params<'_>,
        inputs: &[&[f32]],
        _: &[f32],
        dout: &[f32],
        dinputs: &mut [&mut [f32]],
        _: Grads<'_>,
        _: &mut Cache,
    ) {
        // d/dx x·σ(x) = σ(x) + x·σ(x)·(1 − σ(x)).
        for ((d, &x), &g) in dinputs[0].iter_mut().zip(inputs[0]).zip(dout) {
            let s = sigmoid(x);
            *d += g * (s + x * s * (1.0 - s));
        }
    }
}

const GRAPH: &str = r#"
[model]
kind = "graph"

[[model.blocks]]
name = "wide"
block = "linear"

[[model.blocks]]
name = "emb"
block = "embedding"
dim = 8

[[model.blocks]]
name = "fm"
block = "fm"
input = ["emb"]

[[model.blocks]]
name = "hidden"
block = "mlp"
input = ["emb"]
sizes = [64]

[[model.blocks]]
name = "act"
block = "swish"
input = ["hidden"]

[[model.blocks]]
name = "deep"
block = "mlp"
input = ["act"]
sizes = [1]

[[model.blocks]]
name = "score"
block = "sum"
input = ["wide", "fm", "deep"]

[train]
threads = 2
batch_size = 256
"#;

fn main() -> anyhow::Result<()> {
    register_block("swish", |cx: &mut BuildCx<'_>| Ok(Built::single(Swish { width: cx.concat_width()? })))?;

    let dir = tempfile::tempdir()?;
    let data =
        SynthConfig { train_rows: 40_000, test_rows: 10_000, formats: vec![SynthFormat::Criteo], ..Default::default() };
    synth::generate(&data, dir.path(), &mut |_| {})?;
    let mut job = JobConfig::from_toml(GRAPH, "the example's job")?;
    job.data.train = vec![dir.path().join("train.tsv")];
    job.data.test = vec![dir.path().join("test.tsv")];
    job.train.save = Some(dir.path().join("swish.model"));

    let (_, report) = trainer::train(&job, true)?;
    let test = report.test.expect("the job has a holdout");
    println!("trained a graph with a swish block on {} examples: {}", report.train_examples, trainer::describe(&test));

    // The saved model needs the block too: this program registered it, so it loads and scores.
    let model = model_file::load(job.train.save.as_ref().expect("saved"))?;
    let scored = predict::evaluate(&model, &job.data.test, 1, 0, true)?;
    println!("the saved model scores the holdout the same: {}", trainer::describe(&scored.summary));
    // Two threads scored the holdout during training, one here: sums differ in the last bits only.
    anyhow::ensure!((scored.summary.logloss - test.logloss).abs() < 1e-9, "the saved model scores differently");
    anyhow::ensure!(test.auc.unwrap_or(0.0) > 0.6, "the model did not learn (AUC {:?})", test.auc);
    Ok(())
}

/// The test suite runs the example (`test = true` in crates/starling/Cargo.toml).
#[test]
fn the_example_runs() {
    main().unwrap();
}
