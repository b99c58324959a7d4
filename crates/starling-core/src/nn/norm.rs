//! Normalisation layers: layer norm (per example) and batch norm (per column, over the batch).

use super::{Block, Cache, Grads, ParamInit, Params, Pass, Segment};

/// Added to variances so a constant column divides by `sqrt(eps)`, not zero.
const EPS: f32 = 1e-5;

/// Layer normalisation (Ba et al. 2016): each example's vector to mean 0, variance 1, then
/// `γ · x̂ + β` per column.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Input and output width.
    pub width: usize,
}

impl Block for LayerNorm {
    fn width(&self) -> usize {
        self.width
    }

    fn params(&self) -> Vec<Segment> {
        vec![(self.width, ParamInit::Ones), (self.width, ParamInit::Zeros)]
    }

    fn forward(&self, pass: &Pass, p: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache) {
        let n = self.width;
        let (gamma, beta) = p.w.split_at(n);
        let rstds = cache.zeroed(0, pass.batch);
        for ((x, y), rstd) in inputs[0].chunks_exact(n).zip(out.chunks_exact_mut(n)).zip(rstds.iter_mut()) {
            let mean = x.iter().sum::<f32>() / n as f32;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
            *rstd = 1.0 / (var + EPS).sqrt();
            for (j, (y, &x)) in y.iter_mut().zip(x).enumerate() {
                *y = (x - mean) * *rstd * gamma[j] + beta[j];
            }
        }
    }

    fn backward(
        &self,
        _: &Pass,
        p: Params<'_>,
        inputs: &[&[f32]],
        _: &[f32],
        dout: &[f32],
        dinputs: &mut [&mut [f32]],
        g: Grads<'_>,
        cache: &mut Cache,
    ) {
        let n = self.width;
        let gamma = &p.w[..n];
        let (gg, gb) = g.w.split_at_mut(n);
        let rstds = std::mem::take(cache.buf(0));
        let xhat = cache.zeroed(1, n);
        for (b, (x, dy)) in inputs[0].chunks_exact(n).zip(dout.chunks_exact(n)).enumerate() {
            let rstd = rstds[b];
            let mean = x.iter().sum::<f32>() / n as f32;
            let (mut sum_d, mut sum_dx) = (0f32, 0f32);
            for j in 0..n {
                xhat[j] = (x[j] - mean) * rstd;
                let d = dy[j] * gamma[j];
                sum_d += d;
                sum_dx += d * xhat[j];
                gg[j] += dy[j] * xhat[j];
                gb[j] += dy[j];
            }
            if let Some(dx) = dinputs.first_mut() {
                let dx = &mut dx[b * n..(b + 1) * n];
                for j in 0..n {
                    let d = dy[j] * gamma[j];
                    dx[j] += rstd * (d - (sum_d + xhat[j] * sum_dx) / n as f32);
                }
            }
        }
        *cache.buf(0) = rstds;
    }
}

/// Batch normalisation (Ioffe & Szegedy 2015): each column to mean 0, variance 1 over the batch
/// while training, over running averages of those statistics at inference; then `γ · x̂ + β`.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Input and output width.
    pub width: usize,
}

impl BatchNorm {
    /// Statistics' step: running = 0.9 · running + 0.1 · batch, PyTorch's default momentum.
    pub const STATS_STEP: f32 = 0.1;
}

impl Block for BatchNorm {
    fn width(&self) -> usize {
        self.width
    }

    fn params(&self) -> Vec<Segment> {
        vec![(self.width, ParamInit::Ones), (self.width, ParamInit::Zeros)]
    }

    /// Running mean, then running variance.
    fn stats(&self) -> Vec<Segment> {
        vec![(self.width, ParamInit::Zeros), (self.width, ParamInit::Ones)]
    }

    fn forward(&self, pass: &Pass, p: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache) {
        let n = self.width;
        let (gamma, beta) = p.w.split_at(n);
        let x = inputs[0];
        // buf 0: batch mean, then 1 / sqrt(var + eps), then the batch's unbiased variance.
        let st = cache.zeroed(0, 3 * n);
        if pass.train {
            let rows = pass.batch.max(1) as f32;
            for row in x.chunks_exact(n) {
                for (m, &v) in st[..n].iter_mut().zip(row) {
                    *m += v;
                }
            }
            st[..n].iter_mut().for_each(|m| *m /= rows);
            for row in x.chunks_exact(n) {
                for j in 0..n {
                    let d = row[j] - st[j];
                    st[n + j] += d * d;
                }
            }
            for j in 0..n {
                let ss = st[n + j];
                st[2 * n + j] = if pass.batch > 1 { ss / (rows - 1.0) } else { 0.0 };
                st[n + j] = 1.0 / (ss / rows + EPS).sqrt();
            }
        } else {
            let (mean, var) = p.stats.split_at(n);
            st[..n].copy_from_slice(mean);
            for j in 0..n {
                st[n + j] = 1.0 / (var[j] + EPS).sqrt();
            }
        }
        for (xr, yr) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            for j in 0..n {
                yr[j] = (xr[j] - st[j]) * st[n + j] * gamma[j] + beta[j];
            }
        }
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
        let n = self.width;
        let gamma = &p.w[..n];
        let (gg, gb) = g.w.split_at_mut(n);
        let st = std::mem::take(cache.buf(0));
        let (mean, rest) = st.split_at(n);
        let (rstd, var) = rest.split_at(n);
        // Column sums of dx̂ and dx̂ · x̂.
        let sums = cache.zeroed(1, 2 * n);
        for (x, dy) in inputs[0].chunks_exact(n).zip(dout.chunks_exact(n)) {
            for j in 0..n {
                let xhat = (x[j] - mean[j]) * rstd[j];
                gg[j] += dy[j] * xhat;
                gb[j] += dy[j];
                let d = dy[j] * gamma[j];
                sums[j] += d;
                sums[n + j] += d * xhat;
            }
        }
        if let Some(dx) = dinputs.first_mut() {
            let rows = pass.batch.max(1) as f32;
            for ((x, dy), dx) in inputs[0].chunks_exact(n).zip(dout.chunks_exact(n)).zip(dx.chunks_exact_mut(n)) {
                for j in 0..n {
                    let d = dy[j] * gamma[j];
                    if pass.train {
                        let xhat = (x[j] - mean[j]) * rstd[j];
                        dx[j] += rstd[j] * (d - (sums[j] + xhat * sums[n + j]) / rows);
                    } else {
                        dx[j] += rstd[j] * d;
                    }
                }
            }
        }
        if pass.train {
            let (rm, rv) = p.stats.split_at(n);
            let (gm, gv) = g.stats.split_at_mut(n);
            for j in 0..n {
                gm[j] += rm[j] - mean[j];
                gv[j] += rv[j] - var[j];
            }
        }
        *cache.buf(0) = st;
    }
}
