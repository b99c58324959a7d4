//! Element-wise activations, differentiated through their outputs so a layer keeps only `y`.

use serde::{Deserialize, Serialize};

use super::{Block, Cache, Grads, Params, Pass};
use crate::loss::sigmoid;

/// An element-wise non-linearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `y = x`.
    Identity,
    /// `y = max(x, 0)`.
    #[default]
    Relu,
    /// `y = 1 / (1 + e^-x)`.
    Sigmoid,
    /// `y = tanh(x)`.
    Tanh,
}

impl Activation {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }

    /// The activation a config names.
    pub fn from_name(name: &str) -> Option<Self> {
        [Activation::Identity, Activation::Relu, Activation::Sigmoid, Activation::Tanh]
            .into_iter()
            .find(|a| a.name() == name)
    }

    /// Applies the activation in place.
    #[inline]
    pub fn apply(self, x: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Sigmoid => x.iter_mut().for_each(|v| *v = sigmoid(*v)),
            Activation::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
        }
    }

    /// `dx = dy · f'(x)`, with `f'` written through `y = f(x)`.
    #[inline]
    pub fn backward(self, y: &[f32], dy: &[f32], dx: &mut [f32]) {
        match self {
            Activation::Identity => dx.copy_from_slice(dy),
            Activation::Relu => {
                for ((d, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                    *d = if y > 0.0 { g } else { 0.0 };
                }
            }
            Activation::Sigmoid => {
                for ((d, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                    *d = g * y * (1.0 - y);
                }
            }
            Activation::Tanh => {
                for ((d, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                    *d = g * (1.0 - y * y);
                }
            }
        }
    }
}

/// An activation as a block of its own (after a batch norm, say).
#[derive(Clone, Debug)]
pub struct ActivationBlock {
    /// The non-linearity.
    pub act: Activation,
    /// Input and output width.
    pub width: usize,
}

impl Block for ActivationBlock {
    fn width(&self) -> usize {
        self.width
    }

    fn forward(&self, _: &Pass, _: Params<'_>, inputs: &[&[f32]], out: &mut [f32], _: &mut Cache) {
        out.copy_from_slice(inputs[0]);
        self.act.apply(out);
    }

    fn backward(
        &self,
        _: &Pass,
        _: Params<'_>,
        _: &[&[f32]],
        out: &[f32],
        dout: &[f32],
        dinputs: &mut [&mut [f32]],
        _: Grads<'_>,
        cache: &mut Cache,
    ) {
        let dx = cache.zeroed(0, out.len());
        self.act.backward(out, dout, dx);
        for (d, g) in dinputs[0].iter_mut().zip(dx.iter()) {
            *d += g;
        }
    }
}
