//! Inverted dropout: while training, each unit is zeroed with probability `rate` and the rest
//! scaled by `1 / (1 - rate)`, so inference needs no rescaling.

use super::{Block, Cache, Grads, Params, Pass};
use crate::hash::mix64;

/// Dropout over `width` floats per example.
#[derive(Clone, Debug)]
pub struct Dropout {
    /// Input and output width.
    pub width: usize,
    /// Probability of zeroing a unit, in `[0, 1)`.
    pub rate: f32,
}

impl Block for Dropout {
    fn width(&self) -> usize {
        self.width
    }

    fn forward(&self, pass: &Pass, _: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache) {
        let x = inputs[0];
        if !pass.train || self.rate == 0.0 {
            out.copy_from_slice(x);
            return;
        }
        let keep = 1.0 / (1.0 - self.rate);
        // A unit is kept when its hash, as a fraction of 2^64, is at least `rate`.
        let cut = (f64::from(self.rate) * u64::MAX as f64) as u64;
        let mask = cache.zeroed(0, x.len());
        for (i, ((m, y), &v)) in mask.iter_mut().zip(out.iter_mut()).zip(x).enumerate() {
            *m = if mix64(pass.seed ^ mix64(i as u64)) >= cut { keep } else { 0.0 };
            *y = v * *m;
        }
    }

    fn backward(
        &self,
        pass: &Pass,
        _: Params<'_>,
        _: &[&[f32]],
        _: &[f32],
        dout: &[f32],
        dinputs: &mut [&mut [f32]],
        _: Grads<'_>,
        cache: &mut Cache,
    ) {
        let Some(dx) = dinputs.first_mut() else { return };
        if !pass.train || self.rate == 0.0 {
            dx.iter_mut().zip(dout).for_each(|(d, g)| *d += g);
            return;
        }
        for ((d, g), m) in dx.iter_mut().zip(dout).zip(cache.buf(0).iter()) {
            *d += g * m;
        }
    }
}
