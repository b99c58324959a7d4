//! Interactions between feature vectors: FM's second-order term, DLRM's pairwise dots, FinalMLP's
//! feature gate and its bilinear fusion of two streams.

use super::gemm::{matmul, Mat, MatMut};
use super::{Block, Cache, Grads, ParamInit, Params, Pass, Segment};
use crate::loss::sigmoid;

/// Copies each example's rows of `inputs`, side by side, into `out` (`[batch, Σ widths]`).
pub fn concat_rows(inputs: &[&[f32]], batch: usize, out: &mut Vec<f32>) {
    let total: usize = inputs.iter().map(|x| x.len() / batch.max(1)).sum();
    super::zeroed(out, batch * total);
    for e in 0..batch {
        let mut at = e * total;
        for x in inputs {
            let w = x.len() / batch;
            out[at..at + w].copy_from_slice(&x[e * w..(e + 1) * w]);
            at += w;
        }
    }
}

/// Adds the side-by-side gradient `d` (`[batch, Σ widths]`) to each input's gradient.
fn split_rows(d: &[f32], batch: usize, dinputs: &mut [&mut [f32]]) {
    let total = d.len() / batch.max(1);
    for e in 0..batch {
        let mut at = e * total;
        for dx in dinputs.iter_mut() {
            let w = dx.len() / batch;
            for (a, b) in dx[e * w..(e + 1) * w].iter_mut().zip(&d[at..at + w]) {
                *a += b;
            }
            at += w;
        }
    }
}

/// The factorization machine's pairwise term over `fields` vectors of `dim` floats:
/// `Σ_{i<j} <v_i, v_j> = ½ Σ_k ((Σ_i v_ik)² − Σ_i v_ik²)`, one float per example.
#[derive(Clone, Debug)]
pub struct FmInteraction {
    /// Vectors per example.
    pub fields: usize,
    /// Floats per vector.
    pub dim: usize,
}

impl Block for FmInteraction {
    fn width(&self) -> usize {
        1
    }

    fn forward(&self, pass: &Pass, _: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache) {
        let (f, d) = (self.fields, self.dim);
        let sums = cache.zeroed(0, pass.batch * d);
        for ((x, s), y) in inputs[0].chunks_exact(f * d).zip(sums.chunks_exact_mut(d)).zip(out.iter_mut()) {
            let mut sq = 0f32;
            for v in x.chunks_exact(d) {
                for k in 0..d {
                    s[k] += v[k];
                    sq += v[k] * v[k];
                }
            }
            *y = 0.5 * (s.iter().map(|a| a * a).sum::<f32>() - sq);
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
        cache: &mut Cache,
    ) {
        let (f, d) = (self.fields, self.dim);
        let Some(dx) = dinputs.first_mut() else { return };
        let sums = cache.buf(0);
        for (((x, s), dy), dx) in
            inputs[0].chunks_exact(f * d).zip(sums.chunks_exact(d)).zip(dout).zip(dx.chunks_exact_mut(f * d))
        {
            for (v, dv) in x.chunks_exact(d).zip(dx.chunks_exact_mut(d)) {
                for k in 0..d {
                    dv[k] += dy * (s[k] - v[k]);
                }
            }
        }
    }
}

/// DLRM's interaction: the dot product of every pair of `vectors` vectors of `dim` floats (the
/// inputs side by side: field embeddings, and dense vectors of the same size), `i < j`.
#[derive(Clone, Debug)]
pub struct DotInteraction {
    /// Vectors per example, over all inputs.
    pub vectors: usize,
    /// Floats per vector.
    pub dim: usize,
}

impl Block for DotInteraction {
    fn width(&self) -> usize {
        self.vectors * (self.vectors - 1) / 2
    }

    fn forward(&self, pass: &Pass, _: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache) {
        let (v, d) = (self.vectors, self.dim);
        let cat = cache.buf(0);
        concat_rows(inputs, pass.batch, cat);
        for (x, y) in cat.chunks_exact(v * d).zip(out.chunks_exact_mut(self.width().max(1))) {
            let mut at = 0;
            for i in 0..v {
                for j in i + 1..v {
                    y[at] = x[i * d..(i + 1) * d].iter().zip(&x[j * d..(j + 1) * d]).map(|(a, b)| a * b).sum();
                    at += 1;
                }
            }
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
        let (v, d) = (self.vectors, self.dim);
        let cat = std::mem::take(cache.buf(0));
        let dcat = cache.zeroed(1, cat.len());
        for ((x, dy), dx) in
            cat.chunks_exact(v * d).zip(dout.chunks_exact(self.width().max(1))).zip(dcat.chunks_exact_mut(v * d))
        {
            let mut at = 0;
            for i in 0..v {
                for j in i + 1..v {
                    let g = dy[at];
                    for k in 0..d {
                        dx[i * d + k] += g * x[j * d + k];
                        dx[j * d + k] += g * x[i * d + k];
                    }
                    at += 1;
                }
            }
        }
        split_rows(dcat, pass.batch, dinputs);
        *cache.buf(0) = cat;
    }
}

/// FinalMLP's feature gate: `x ⊙ 2σ(g)`. The gate logits `g` come from a second input of the
/// same width (an MLP over context features), or, with one input, are a learned vector: the
/// form FinalMLP takes without context fields. Logits of zero pass `x` unchanged.
#[derive(Clone, Debug)]
pub struct Gate {
    /// Width of `x`, of `g` and of the output.
    pub width: usize,
    /// The logits are parameters, not an input.
    pub learned: bool,
}

impl Gate {
    fn logit<'a>(&self, p: &'a [f32], inputs: &[&'a [f32]], i: usize) -> f32 {
        if self.learned {
            p[i % self.width]
        } else {
            inputs[1][i]
        }
    }
}

impl Block for Gate {
    fn width(&self) -> usize {
        self.width
    }

    fn params(&self) -> Vec<Segment> {
        if self.learned {
            vec![(self.width, ParamInit::Zeros)]
        } else {
            Vec::new()
        }
    }

    fn forward(&self, _: &Pass, p: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache) {
        let x = inputs[0];
        let sig = cache.zeroed(0, x.len());
        for i in 0..x.len() {
            sig[i] = sigmoid(self.logit(p.w, inputs, i));
            out[i] = 2.0 * x[i] * sig[i];
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
        g: Grads<'_>,
        cache: &mut Cache,
    ) {
        let x = inputs[0];
        let sig = cache.buf(0);
        for i in 0..x.len() {
            let dlogit = dout[i] * 2.0 * x[i] * sig[i] * (1.0 - sig[i]);
            dinputs[0][i] += dout[i] * 2.0 * sig[i];
            if self.learned {
                g.w[i % self.width] += dlogit;
            } else {
                dinputs[1][i] += dlogit;
            }
        }
    }
}

/// FinalMLP's fusion of two streams `a` and `b` into one logit, with `heads` heads:
/// `bias + a·w_a + b·w_b + Σ_h a_hᵀ W_h b_h`, `a_h` and `b_h` the h-th equal slices.
#[derive(Clone, Debug)]
pub struct Bilinear {
    /// Width of `a`.
    pub a: usize,
    /// Width of `b`.
    pub b: usize,
    /// Heads; divides both widths.
    pub heads: usize,
}

impl Bilinear {
    fn head(&self) -> (usize, usize) {
        (self.a / self.heads, self.b / self.heads)
    }
}

impl Block for Bilinear {
    fn width(&self) -> usize {
        1
    }

    fn params(&self) -> Vec<Segment> {
        let (p, q) = self.head();
        vec![
            (self.a, ParamInit::glorot(self.a, 1)),
            (self.b, ParamInit::glorot(self.b, 1)),
            (self.heads * p * q, ParamInit::glorot(p, q)),
            (1, ParamInit::Zeros),
        ]
    }

    fn forward(&self, pass: &Pass, prm: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache) {
        let (n, (p, q)) = (pass.batch, self.head());
        let (wa, rest) = prm.w.split_at(self.a);
        let (wb, rest) = rest.split_at(self.b);
        let (w3, bias) = rest.split_at(self.heads * p * q);
        let (a, b) = (inputs[0], inputs[1]);
        // buf 0: T = [a_h W_h]_h, `[batch, b]`.
        let t = cache.zeroed(0, n * self.b);
        for h in 0..self.heads {
            let ah = Mat::new(a, n, self.a).cols(h * p, p);
            let th = MatMut::new(t, n, self.b).cols(h * q, q);
            matmul(ah, Mat::new(&w3[h * p * q..(h + 1) * p * q], p, q), th, 0.0);
        }
        for e in 0..n {
            let (ar, br, tr) =
                (&a[e * self.a..(e + 1) * self.a], &b[e * self.b..(e + 1) * self.b], &t[e * self.b..(e + 1) * self.b]);
            let lin: f32 =
                ar.iter().zip(wa).map(|(x, w)| x * w).sum::<f32>() + br.iter().zip(wb).map(|(x, w)| x * w).sum::<f32>();
            out[e] = bias[0] + lin + tr.iter().zip(br).map(|(x, y)| x * y).sum::<f32>();
        }
    }

    fn backward(
        &self,
        pass: &Pass,
        prm: Params<'_>,
        inputs: &[&[f32]],
        _: &[f32],
        dout: &[f32],
        dinputs: &mut [&mut [f32]],
        g: Grads<'_>,
        cache: &mut Cache,
    ) {
        let (n, (p, q)) = (pass.batch, self.head());
        let (wa, rest) = prm.w.split_at(self.a);
        let (wb, rest) = rest.split_at(self.b);
        let w3 = &rest[..self.heads * p * q];
        let (gwa, grest) = g.w.split_at_mut(self.a);
        let (gwb, grest) = grest.split_at_mut(self.b);
        let (gw3, gbias) = grest.split_at_mut(self.heads * p * q);
        let (a, b) = (inputs[0], inputs[1]);
        let t = std::mem::take(cache.buf(0));
        // buf 1: dT = dout · b.
        let dt = cache.zeroed(1, n * self.b);
        let (da, db) = dinputs.split_at_mut(1);
        let (da, db) = (&mut *da[0], &mut *db[0]);
        for e in 0..n {
            let dy = dout[e];
            gbias[0] += dy;
            for i in 0..self.a {
                gwa[i] += dy * a[e * self.a + i];
                da[e * self.a + i] += dy * wa[i];
            }
            for j in 0..self.b {
                let at = e * self.b + j;
                gwb[j] += dy * b[at];
                db[at] += dy * (wb[j] + t[at]);
                dt[at] = dy * b[at];
            }
        }
        for h in 0..self.heads {
            let dth = Mat::new(dt, n, self.b).cols(h * q, q);
            let wh = &w3[h * p * q..(h + 1) * p * q];
            matmul(
                Mat::new(a, n, self.a).cols(h * p, p).t(),
                dth,
                MatMut::new(&mut gw3[h * p * q..(h + 1) * p * q], p, q),
                1.0,
            );
            matmul(dth, Mat::new(wh, p, q).t(), MatMut::new(da, n, self.a).cols(h * p, p), 1.0);
        }
        *cache.buf(0) = t;
    }
}
