//! The cross network of DCN (Wang et al. 2017) and DCN-v2 (Wang et al. 2021): explicit feature
//! crosses of bounded degree, each layer `x_{l+1} = x_0 ⊙ f(x_l) + x_l`.

use super::gemm::{matmul, Mat, MatMut};
use super::{Block, Cache, Grads, ParamInit, Params, Pass, Segment};

/// `layers` cross layers over `width` floats. DCN: `f(x) = (x · w) b`-style, a vector `w` and
/// bias `b` per layer (`x_{l+1} = x_0 (x_l · w_l) + b_l + x_l`); DCN-v2: a full matrix,
/// `x_{l+1} = x_0 ⊙ (x_l W_l + b_l) + x_l`.
#[derive(Clone, Debug)]
pub struct Cross {
    /// Input and output width.
    pub width: usize,
    /// Number of layers.
    pub layers: usize,
    /// DCN-v2's matrix form instead of DCN's vector form.
    pub v2: bool,
}

impl Cross {
    fn layer_len(&self) -> usize {
        let n = self.width;
        if self.v2 {
            n * n + n
        } else {
            2 * n
        }
    }
}

impl Block for Cross {
    fn width(&self) -> usize {
        self.width
    }

    fn params(&self) -> Vec<Segment> {
        let n = self.width;
        let w = if self.v2 { ParamInit::glorot(n, n) } else { ParamInit::glorot(n, 1) };
        (0..self.layers).flat_map(|_| [(if self.v2 { n * n } else { n }, w), (n, ParamInit::Zeros)]).collect()
    }

    fn forward(&self, pass: &Pass, p: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache) {
        let (b, n) = (pass.batch, self.width);
        let x0 = inputs[0];
        // buf 0: x_0 .. x_{L-1} (the inputs of each layer); buf 1: each layer's f(x_l)
        // (v2: B × n per layer; v1: the B scalars x_l · w_l).
        let f_len = if self.v2 { b * n } else { b };
        let mut xs = std::mem::take(cache.buf(0));
        super::zeroed(&mut xs, self.layers * b * n);
        let mut fs = std::mem::take(cache.buf(1));
        super::zeroed(&mut fs, self.layers * f_len);
        out.copy_from_slice(x0);
        for l in 0..self.layers {
            let lp = &p.w[l * self.layer_len()..(l + 1) * self.layer_len()];
            let xl = &mut xs[l * b * n..(l + 1) * b * n];
            xl.copy_from_slice(out);
            let f = &mut fs[l * f_len..(l + 1) * f_len];
            if self.v2 {
                let (w, bias) = lp.split_at(n * n);
                matmul(Mat::new(xl, b, n), Mat::new(w, n, n), MatMut::new(f, b, n), 0.0);
                for ((y, fr), x0r) in out.chunks_exact_mut(n).zip(f.chunks_exact_mut(n)).zip(x0.chunks_exact(n)) {
                    for j in 0..n {
                        fr[j] += bias[j];
                        y[j] += x0r[j] * fr[j];
                    }
                }
            } else {
                let (w, bias) = lp.split_at(n);
                for ((y, s), (x0r, xr)) in
                    out.chunks_exact_mut(n).zip(f.iter_mut()).zip(x0.chunks_exact(n).zip(xl.chunks_exact(n)))
                {
                    *s = xr.iter().zip(w).map(|(a, b)| a * b).sum();
                    for j in 0..n {
                        y[j] += x0r[j] * *s + bias[j];
                    }
                }
            }
        }
        *cache.buf(0) = xs;
        *cache.buf(1) = fs;
    }

    fn backward(
        &self,
        pass: &Pass,
        p: Params<'_>,
        inputs: &[&[f32]],
        _: &[f32],
        dout: &[f32],
        dinputs: &mut [&mut [f32]],
        g: Grads<'_>,
        cache: &mut Cache,
    ) {
        let (b, n) = (pass.batch, self.width);
        let x0 = inputs[0];
        let f_len = if self.v2 { b * n } else { b };
        let xs = std::mem::take(cache.buf(0));
        let fs = std::mem::take(cache.buf(1));
        // buf 2: dloss/dx_{l+1}, walking down; buf 3: dloss/dx_0 through the x_0 factors;
        // buf 4: v2's d f(x_l), or v1's per-example sums.
        let mut dx = std::mem::take(cache.buf(2));
        dx.clear();
        dx.extend_from_slice(dout);
        let mut dx0 = std::mem::take(cache.buf(3));
        super::zeroed(&mut dx0, b * n);
        let mut df = std::mem::take(cache.buf(4));
        super::zeroed(&mut df, f_len);
        for l in (0..self.layers).rev() {
            let ll = self.layer_len();
            let lp = &p.w[l * ll..(l + 1) * ll];
            let gl = &mut g.w[l * ll..(l + 1) * ll];
            let xl = &xs[l * b * n..(l + 1) * b * n];
            let f = &fs[l * f_len..(l + 1) * f_len];
            if self.v2 {
                let (w, _) = lp.split_at(n * n);
                let (gw, gbias) = gl.split_at_mut(n * n);
                // df = dx ⊙ x0; dx0 += dx ⊙ f.
                for i in 0..b * n {
                    df[i] = dx[i] * x0[i];
                    dx0[i] += dx[i] * f[i];
                }
                matmul(Mat::new(xl, b, n).t(), Mat::new(&df, b, n), MatMut::new(gw, n, n), 1.0);
                for row in df.chunks_exact(n) {
                    for (gb, d) in gbias.iter_mut().zip(row) {
                        *gb += d;
                    }
                }
                // dx_l = dx_{l+1} (the residual) + df Wᵀ.
                matmul(Mat::new(&df, b, n), Mat::new(w, n, n).t(), MatMut::new(&mut dx, b, n), 1.0);
            } else {
                let (w, _) = lp.split_at(n);
                let (gw, gbias) = gl.split_at_mut(n);
                for e in 0..b {
                    let (dxr, x0r, xr) =
                        (&mut dx[e * n..(e + 1) * n], &x0[e * n..(e + 1) * n], &xl[e * n..(e + 1) * n]);
                    // ds = dx · x0 (s = x_l · w scales x0).
                    let ds: f32 = dxr.iter().zip(x0r).map(|(a, b)| a * b).sum();
                    let dx0r = &mut dx0[e * n..(e + 1) * n];
                    for j in 0..n {
                        dx0r[j] += dxr[j] * f[e];
                        gbias[j] += dxr[j];
                        gw[j] += ds * xr[j];
                    }
                    for j in 0..n {
                        dxr[j] += ds * w[j];
                    }
                }
            }
        }
        if let Some(d) = dinputs.first_mut() {
            for ((d, a), c) in d.iter_mut().zip(&dx).zip(&dx0) {
                *d += a + c;
            }
        }
        *cache.buf(0) = xs;
        *cache.buf(1) = fs;
        *cache.buf(2) = dx;
        *cache.buf(3) = dx0;
        *cache.buf(4) = df;
    }
}
