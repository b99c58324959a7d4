//! A fully connected layer `y = f(x W + b)`, bias and activation fused into the product's pass.

use super::gemm::{matmul, Mat, MatMut};
use super::{Activation, Block, Cache, Grads, ParamInit, Params, Pass, Segment};

/// `y = act(x W + b)` with `W` stored row-major as `[input, output]`, then `b`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// Input width.
    pub input: usize,
    /// Output width.
    pub output: usize,
    /// Applied to `x W + b`.
    pub act: Activation,
}

impl Linear {
    /// A layer from `input` to `output` floats.
    pub fn new(input: usize, output: usize, act: Activation) -> Self {
        Linear { input, output, act }
    }
}

impl Block for Linear {
    fn width(&self) -> usize {
        self.output
    }

    fn params(&self) -> Vec<Segment> {
        vec![(self.input * self.output, ParamInit::glorot(self.input, self.output)), (self.output, ParamInit::Zeros)]
    }

    fn forward(&self, pass: &Pass, p: Params<'_>, inputs: &[&[f32]], out: &mut [f32], _: &mut Cache) {
        let (n, i, o) = (pass.batch, self.input, self.output);
        let (w, b) = p.w.split_at(i * o);
        matmul(Mat::new(inputs[0], n, i), Mat::new(w, i, o), MatMut::new(out, n, o), 0.0);
        for row in out.chunks_exact_mut(o) {
            for (y, &b) in row.iter_mut().zip(b) {
                *y += b;
            }
            self.act.apply(row);
        }
    }

    fn backward(
        &self,
        pass: &Pass,
        p: Params<'_>,
        inputs: &[&[f32]],
        out: &[f32],
        dout: &[f32],
        dinputs: &mut [&mut [f32]],
        g: Grads<'_>,
        cache: &mut Cache,
    ) {
        let (n, i, o) = (pass.batch, self.input, self.output);
        // dz = dy · act'(z), through y.
        let dz = cache.zeroed(0, n * o);
        self.act.backward(out, dout, dz);
        let dz = &dz[..];
        let (gw, gb) = g.w.split_at_mut(i * o);
        matmul(Mat::new(inputs[0], n, i).t(), Mat::new(dz, n, o), MatMut::new(gw, i, o), 1.0);
        for row in dz.chunks_exact(o) {
            for (b, &d) in gb.iter_mut().zip(row) {
                *b += d;
            }
        }
        if let Some(dx) = dinputs.first_mut() {
            let w = &p.w[..i * o];
            matmul(Mat::new(dz, n, o), Mat::new(w, i, o).t(), MatMut::new(dx, n, i), 1.0);
        }
    }
}
