//! Finite-difference gradient checks of blocks (tests only).

use super::{init_segments, segments_len, Block, Cache, Grads, Params, Pass};
use crate::rng::Rng;

/// Checks `block`'s backward pass against central differences of `Σ r ⊙ forward(x)` for random
/// `r`, parameters and inputs (`widths` floats per example each). `away_from_zero` keeps inputs
/// off ReLU's kink.
pub(crate) fn check_block(block: &dyn Block, widths: &[usize], batch: usize, train: bool, away_from_zero: bool) {
    let mut rng = Rng::new(7);
    let mut uni = move || rng.next_f64() as f32 * 2.0 - 1.0;
    let params = block.params();
    let mut w = vec![0f32; segments_len(&params)];
    init_segments(&params, 3, 0, &mut w);
    // Non-trivial values everywhere (biases start at 0, scales at 1).
    w.iter_mut().for_each(|v| *v += 0.3 * uni());
    let mut stats = vec![0f32; segments_len(&block.stats())];
    init_segments(&block.stats(), 3, 0, &mut stats);
    stats.iter_mut().for_each(|v| *v = v.abs() + 0.5 * uni().abs());
    let mut inputs: Vec<Vec<f32>> = widths.iter().map(|&n| (0..batch * n).map(|_| uni()).collect()).collect();
    if away_from_zero {
        inputs.iter_mut().flatten().for_each(|v| *v = v.signum() * (0.2 + v.abs()));
    }
    let width = block.width();
    let r: Vec<f32> = (0..batch * width).map(|_| uni()).collect();
    let pass = Pass { batch, train, seed: 11 };
    let loss = |w: &[f32], inputs: &[Vec<f32>]| -> f64 {
        let ins: Vec<&[f32]> = inputs.iter().map(|v| &v[..]).collect();
        let mut out = vec![0f32; batch * width];
        block.forward(&pass, Params { w, stats: &stats }, &ins, &mut out, &mut Cache::default());
        out.iter().zip(&r).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
    };
    // Analytic gradients.
    let ins: Vec<&[f32]> = inputs.iter().map(|v| &v[..]).collect();
    let mut out = vec![0f32; batch * width];
    let mut cache = Cache::default();
    block.forward(&pass, Params { w: &w, stats: &stats }, &ins, &mut out, &mut cache);
    let mut gw = vec![0f32; w.len()];
    let mut gs = vec![0f32; stats.len()];
    let mut dins: Vec<Vec<f32>> = inputs.iter().map(|v| vec![0f32; v.len()]).collect();
    {
        let mut d: Vec<&mut [f32]> = dins.iter_mut().map(|v| &mut v[..]).collect();
        block.backward(
            &pass,
            Params { w: &w, stats: &stats },
            &ins,
            &out,
            &r,
            &mut d,
            Grads { w: &mut gw, stats: &mut gs },
            &mut cache,
        );
    }
    let eps = 1e-2f32;
    let close = |analytic: f32, numeric: f64, what: &str| {
        let tol = 1e-2 * (1.0 + numeric.abs());
        assert!(
            (f64::from(analytic) - numeric).abs() <= tol,
            "{block:?}: {what}: analytic {analytic}, numeric {numeric}"
        );
    };
    let step = (w.len() / 40).max(1);
    for i in (0..w.len()).step_by(step) {
        let (mut a, mut b) = (w.clone(), w.clone());
        a[i] += eps;
        b[i] -= eps;
        close(gw[i], (loss(&a, &inputs) - loss(&b, &inputs)) / (2.0 * f64::from(eps)), &format!("param {i}"));
    }
    for (x, dx) in dins.iter().enumerate() {
        let step = (dx.len() / 40).max(1);
        for i in (0..dx.len()).step_by(step) {
            let (mut a, mut b) = (inputs.clone(), inputs.clone());
            a[x][i] += eps;
            b[x][i] -= eps;
            close(dx[i], (loss(&w, &a) - loss(&w, &b)) / (2.0 * f64::from(eps)), &format!("input {x}[{i}]"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_block;
    use crate::nn::act::ActivationBlock;
    use crate::nn::mlp::MlpOptions;
    use crate::nn::*;

    #[test]
    fn linear_layers() {
        for act in [Activation::Identity, Activation::Sigmoid, Activation::Tanh] {
            check_block(&Linear::new(5, 4, act), &[5], 6, true, false);
        }
        check_block(&ActivationBlock { act: Activation::Relu, width: 7 }, &[7], 3, true, true);
    }

    #[test]
    fn mlps_with_norms_and_dropout() {
        let o = MlpOptions { activation: Activation::Tanh, ..Default::default() };
        check_block(&Mlp::new(6, &[5, 4, 1], o), &[6], 5, true, false);
        check_block(&Mlp::new(6, &[5, 3], MlpOptions { batch_norm: true, dropout: 0.3, ..o }), &[6], 8, true, false);
        check_block(&Mlp::new(6, &[5, 3], MlpOptions { batch_norm: true, dropout: 0.3, ..o }), &[6], 8, false, false);
    }

    #[test]
    fn norms() {
        check_block(&LayerNorm { width: 6 }, &[6], 4, true, false);
        check_block(&BatchNorm { width: 5 }, &[5], 7, true, false);
        check_block(&BatchNorm { width: 5 }, &[5], 7, false, false);
        check_block(&Dropout { width: 9, rate: 0.5 }, &[9], 4, true, false);
    }

    #[test]
    fn cross_networks() {
        check_block(&Cross { width: 6, layers: 3, v2: false }, &[6], 4, true, false);
        check_block(&Cross { width: 6, layers: 3, v2: true }, &[6], 4, true, false);
    }

    #[test]
    fn interactions() {
        check_block(&FmInteraction { fields: 4, dim: 3 }, &[12], 5, true, false);
        check_block(&DotInteraction { vectors: 4, dim: 3 }, &[9, 3], 5, true, false);
        check_block(&Gate { width: 6, learned: false }, &[6, 6], 3, true, false);
        check_block(&Gate { width: 6, learned: true }, &[6], 3, true, false);
        check_block(&Bilinear { a: 6, b: 4, heads: 2 }, &[6, 4], 5, true, false);
    }

    #[test]
    fn batch_norm_statistics_move_toward_the_batch() {
        // The statistics' "gradient" is running - batch: one SGD step of 0.1 is the moving average.
        let bn = BatchNorm { width: 1 };
        let (w, stats) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let x = [1.0f32, 3.0];
        let pass = Pass { batch: 2, train: true, seed: 0 };
        let (mut out, mut cache) = ([0f32; 2], Cache::default());
        bn.forward(&pass, Params { w: &w, stats: &stats }, &[&x], &mut out, &mut cache);
        let (mut gw, mut gs) = ([0f32; 2], [0f32; 2]);
        let mut dx = [0f32; 2];
        bn.backward(
            &pass,
            Params { w: &w, stats: &stats },
            &[&x],
            &out,
            &[0.0, 0.0],
            &mut [&mut dx],
            Grads { w: &mut gw, stats: &mut gs },
            &mut cache,
        );
        assert_eq!(gs, [0.0 - 2.0, 1.0 - 2.0]);
        assert!((out[0] + 1.0).abs() < 1e-3 && (out[1] - 1.0).abs() < 1e-3);
    }
}
