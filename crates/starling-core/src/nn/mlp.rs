//! A multi-layer perceptron: linear layers, each optionally followed by batch norm, activation
//! and dropout, run as a chain of blocks.

use super::act::ActivationBlock;
use super::{segments_len, Activation, BatchNorm, Block, Cache, Dropout, Grads, Linear, Params, Pass, Segment};

/// Linear layers of the given sizes; every layer but the last is followed by (batch norm,)
/// `activation` and (dropout); the last by `output_activation` only.
#[derive(Debug)]
pub struct Mlp {
    stages: Vec<Box<dyn Block>>,
    /// Per stage: offset of its weights and of its statistics.
    offsets: Vec<(usize, usize)>,
    lens: (usize, usize),
}

/// Options of an [`Mlp`] beyond its sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MlpOptions {
    /// After every hidden layer.
    pub activation: Activation,
    /// After the last layer.
    pub output_activation: Activation,
    /// Dropout rate after every hidden layer (0: none).
    pub dropout: f32,
    /// Batch norm between every hidden layer's product and its activation.
    pub batch_norm: bool,
}

impl Default for MlpOptions {
    fn default() -> Self {
        MlpOptions {
            activation: Activation::Relu,
            output_activation: Activation::Identity,
            dropout: 0.0,
            batch_norm: false,
        }
    }
}

impl Mlp {
    /// An MLP from `input` floats through layers of `sizes` (at least one).
    pub fn new(input: usize, sizes: &[usize], o: MlpOptions) -> Self {
        assert!(!sizes.is_empty(), "an MLP needs at least one layer");
        let mut stages: Vec<Box<dyn Block>> = Vec::new();
        let mut width = input;
        for (l, &size) in sizes.iter().enumerate() {
            let last = l + 1 == sizes.len();
            let act = if last { o.output_activation } else { o.activation };
            if !last && o.batch_norm {
                stages.push(Box::new(Linear::new(width, size, Activation::Identity)));
                stages.push(Box::new(BatchNorm { width: size }));
                stages.push(Box::new(ActivationBlock { act, width: size }));
            } else {
                stages.push(Box::new(Linear::new(width, size, act)));
            }
            if !last && o.dropout > 0.0 {
                stages.push(Box::new(Dropout { width: size, rate: o.dropout }));
            }
            width = size;
        }
        let mut offsets = Vec::new();
        let (mut w, mut s) = (0, 0);
        for st in &stages {
            offsets.push((w, s));
            w += segments_len(&st.params());
            s += segments_len(&st.stats());
        }
        Mlp { stages, offsets, lens: (w, s) }
    }

    /// Stage `i`'s ranges of the weights and of the statistics.
    fn ranges(&self, i: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let (w, s) = self.offsets[i];
        let (we, se) = self.offsets.get(i + 1).copied().unwrap_or(self.lens);
        (w..we, s..se)
    }

    fn slices<'a>(&self, i: usize, p: Params<'a>) -> Params<'a> {
        let (w, s) = self.ranges(i);
        Params { w: &p.w[w], stats: &p.stats[s] }
    }
}

impl Block for Mlp {
    fn width(&self) -> usize {
        self.stages.last().map_or(0, |s| s.width())
    }

    fn params(&self) -> Vec<Segment> {
        self.stages.iter().flat_map(|s| s.params()).collect()
    }

    fn stats(&self) -> Vec<Segment> {
        self.stages.iter().flat_map(|s| s.stats()).collect()
    }

    fn forward(&self, pass: &Pass, p: Params<'_>, inputs: &[&[f32]], out: &mut [f32], cache: &mut Cache) {
        let last = self.stages.len() - 1;
        // bufs[i]: output of stage i (< last).
        let mut outs = std::mem::take(&mut cache.bufs);
        outs.resize_with(last, Vec::new);
        for (i, st) in self.stages.iter().enumerate() {
            let (before, rest) = outs.split_at_mut(i.min(last));
            let input: &[f32] = if i == 0 { inputs[0] } else { &before[i - 1] };
            let child = cache.child(i);
            if i == last {
                st.forward(pass, self.slices(i, p), &[input], out, child);
            } else {
                let o = &mut rest[0];
                super::zeroed(o, pass.batch * st.width());
                st.forward(pass, self.slices(i, p), &[input], o, child);
            }
        }
        cache.bufs = outs;
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
        let last = self.stages.len() - 1;
        let mut outs = std::mem::take(&mut cache.bufs);
        outs.resize_with(last + 2, Vec::new);
        // Two gradient buffers after the outputs, used in turn.
        let (outs_only, grads) = outs.split_at_mut(last);
        let (ga, gb) = grads.split_at_mut(1);
        let (mut dcur, mut dprev) = (&mut ga[0], &mut gb[0]);
        dcur.clear();
        dcur.extend_from_slice(dout);
        for i in (0..=last).rev() {
            let st = &self.stages[i];
            let input: &[f32] = if i == 0 { inputs[0] } else { &outs_only[i - 1] };
            let output: &[f32] = if i == last { out } else { &outs_only[i] };
            let (w, s) = self.ranges(i);
            let gi = Grads { w: &mut g.w[w], stats: &mut g.stats[s] };
            let child = cache.child(i);
            if i == 0 {
                st.backward(pass, self.slices(i, p), &[input], output, dcur, dinputs, gi, child);
            } else {
                super::zeroed(dprev, input.len());
                st.backward(pass, self.slices(i, p), &[input], output, dcur, &mut [&mut dprev[..]], gi, child);
                std::mem::swap(&mut dcur, &mut dprev);
            }
        }
        cache.bufs = outs;
    }
}
