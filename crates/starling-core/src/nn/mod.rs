//! Batch-major neural layers with hand-written backward passes (design.md, "Deep models").
//!
//! A tensor is a row-major `[batch, width]` slice of f32. A [`Block`] owns a contiguous slice of
//! its model's flat parameter vector, so a model's dense weights are one block of floats that the
//! parameter server splits into chunks, and gradients share that layout. A forward pass leaves
//! what its backward pass needs in the block's own cache; a backward pass *adds* to parameter
//! gradients and to input gradients, so a tensor feeding several blocks gets the sum of theirs.
//! Nothing here allocates once the caches have grown to the batch size.

pub(crate) mod act;
mod cross;
mod dropout;
mod gemm;
mod interact;
mod linear;
pub(crate) mod mlp;
mod norm;
mod pool;

#[cfg(test)]
pub(crate) mod check;

pub use act::Activation;
pub use cross::Cross;
pub use dropout::Dropout;
pub use gemm::{matmul, Mat, MatMut};
pub use interact::{concat_rows, Bilinear, DotInteraction, FmInteraction, Gate};
pub use linear::Linear;
pub use mlp::{Mlp, MlpOptions};
pub use norm::{BatchNorm, LayerNorm};
pub use pool::{FieldPool, Pooling};

use crate::rng::unit_for;

/// What a pass knows about the batch it runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pass {
    /// Examples in the batch (rows of every tensor).
    pub batch: usize,
    /// Training (dropout active, batch norm on batch statistics) or inference.
    pub train: bool,
    /// Seed of this pass's randomness (dropout masks); a model varies it per step and per block.
    pub seed: u64,
}

/// How a run of parameters starts.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ParamInit {
    /// All zeros (biases, shifts).
    Zeros,
    /// All ones (scales of norms).
    Ones,
    /// Uniform in `[-scale, scale)`.
    Uniform(f32),
}

impl ParamInit {
    /// Glorot/Xavier uniform for a `fan_in × fan_out` weight matrix: keeps activations' variance
    /// through a layer.
    pub fn glorot(fan_in: usize, fan_out: usize) -> Self {
        ParamInit::Uniform((6.0 / (fan_in + fan_out).max(1) as f32).sqrt())
    }

    /// The value at flat index `at` of a parameter vector initialised with `seed`: a pure
    /// function of both, so every server computes the same initial block.
    #[inline]
    pub fn value(self, seed: u64, at: u64) -> f32 {
        match self {
            ParamInit::Zeros => 0.0,
            ParamInit::Ones => 1.0,
            ParamInit::Uniform(s) => s * unit_for(seed, at, 0),
        }
    }
}

/// A run of `len` parameters sharing an init.
pub type Segment = (usize, ParamInit);

/// A block's slice of the parameters: trainable weights and running statistics.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    /// Trained by gradients.
    pub w: &'a [f32],
    /// Moving averages (batch norm), updated by the statistics' "gradient" `running - batch`
    /// under plain SGD with step `1 - momentum`, which is exactly an exponential moving average.
    pub stats: &'a [f32],
}

/// Gradients of a block's [`Params`], same layout.
#[derive(Debug)]
pub struct Grads<'a> {
    /// Of the weights.
    pub w: &'a mut [f32],
    /// Of the running statistics (see [`Params::stats`]).
    pub stats: &'a mut [f32],
}

/// A batch-major layer with its own forward and backward pass: the unit a model is built of.
///
/// Implement it to add a layer the library does not have; register a builder for it by name
/// (see `graph::Registry`) and job configs can use it like a built-in block.
pub trait Block: Send + Sync + std::fmt::Debug {
    /// Floats of output per example.
    fn width(&self) -> usize;
    /// The trainable parameters, as runs of inits in order (total = this block's parameter count).
    fn params(&self) -> Vec<Segment> {
        Vec::new()
    }
    /// Floats of running statistics and their initial runs (batch norm), empty for most blocks.
    fn stats(&self) -> Vec<Segment> {
        Vec::new()
    }
    /// Computes `out` (`[batch, width]`) from `inputs` (`[batch, width_i]` each), keeping what
    /// [`Block::backward`] needs in `cache`.
    fn forward(&self, pass: &Pass, p: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache);
    /// Given `dout` = dloss/dout, adds dloss/dinput to `dinputs` and dloss/dparams to `g`.
    /// Called right after [`Block::forward`] on the same batch, with its `out` and `cache`.
    #[allow(clippy::too_many_arguments)]
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
    );
}

/// Total length of runs of parameters.
pub fn segments_len(segments: &[Segment]) -> usize {
    segments.iter().map(|s| s.0).sum()
}

/// Writes the initial values of `segments` into `out`, flat index `offset + i` seeding slot `i`.
pub fn init_segments(segments: &[Segment], seed: u64, offset: u64, out: &mut [f32]) {
    let mut at = 0;
    for &(len, init) in segments {
        for (i, v) in out[at..at + len].iter_mut().enumerate() {
            *v = init.value(seed, offset + (at + i) as u64);
        }
        at += len;
    }
}

/// A block's scratch between its forward and backward pass: buffers, and the caches of the
/// blocks it is made of. Grown on first use, reused after.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    /// Buffers of this block.
    pub bufs: Vec<Vec<f32>>,
    /// Caches of its sub-blocks.
    pub children: Vec<Cache>,
}

impl Cache {
    /// Buffer `i`, created empty on first use.
    pub fn buf(&mut self, i: usize) -> &mut Vec<f32> {
        if self.bufs.len() <= i {
            self.bufs.resize_with(i + 1, Vec::new);
        }
        &mut self.bufs[i]
    }

    /// Buffer `i` resized to `len` floats of zero.
    pub fn zeroed(&mut self, i: usize, len: usize) -> &mut Vec<f32> {
        let b = self.buf(i);
        zeroed(b, len);
        b
    }

    /// The cache of sub-block `i`.
    pub fn child(&mut self, i: usize) -> &mut Cache {
        if self.children.len() <= i {
            self.children.resize_with(i + 1, Cache::default);
        }
        &mut self.children[i]
    }
}

/// Resizes `buf` to `len` without shrinking its capacity, zeroing it.
#[inline]
pub(crate) fn zeroed(buf: &mut Vec<f32>, len: usize) {
    buf.clear();
    buf.resize(len, 0.0);
}
