//! Block kinds by name: the built-in ones and those a program registers, each with a builder
//! that checks its options and input sizes and makes the [`Block`].

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use super::config::{GraphError, OptValue};
use crate::nn::mlp::MlpOptions;
use crate::nn::{
    Activation, BatchNorm, Bilinear, Block, Cache, Cross, DotInteraction, Dropout, FmInteraction, Gate, Grads,
    LayerNorm, Mlp, Params, Pass,
};

/// What a block's output looks like to the blocks reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Floats per example.
    pub width: usize,
    /// When the output is `count` vectors of `dim` floats (field embeddings): `(count, dim)`.
    pub vectors: Option<(usize, usize)>,
}

impl Shape {
    /// A plain vector of `width` floats.
    pub fn flat(width: usize) -> Self {
        Shape { width, vectors: None }
    }
}

/// A block a builder made, and how the graph feeds it.
#[derive(Debug)]
pub struct Built {
    /// The block.
    pub block: Box<dyn Block>,
    /// True when the block takes one tensor: the graph puts its inputs side by side first.
    pub concat: bool,
    /// The output's vector structure, if any (see [`Shape::vectors`]).
    pub vectors: Option<(usize, usize)>,
}

impl Built {
    /// A block that reads one tensor (its inputs side by side), with a flat output.
    pub fn single(block: impl Block + 'static) -> Self {
        Built { block: Box::new(block), concat: true, vectors: None }
    }

    /// A block that reads each input separately, with a flat output.
    pub fn multi(block: impl Block + 'static) -> Self {
        Built { block: Box::new(block), concat: false, vectors: None }
    }
}

/// What a builder sees: the block's name and kind, its inputs' shapes and its options.
pub struct BuildCx<'a> {
    name: &'a str,
    kind: &'a str,
    /// Shapes of the inputs, in order.
    pub inputs: &'a [Shape],
    options: &'a BTreeMap<String, OptValue>,
    used: Vec<&'a str>,
}

impl<'a> BuildCx<'a> {
    /// A context for block `name` of `kind`.
    pub fn new(name: &'a str, kind: &'a str, inputs: &'a [Shape], options: &'a BTreeMap<String, OptValue>) -> Self {
        BuildCx { name, kind, inputs, options, used: Vec::new() }
    }

    /// An error about an option of this block.
    pub fn option_error(&self, message: impl Into<String>) -> GraphError {
        GraphError::Option { block: self.name.into(), kind: self.kind.into(), message: message.into() }
    }

    /// An error about the inputs of this block.
    pub fn shape_error(&self, message: impl Into<String>) -> GraphError {
        GraphError::Shape { block: self.name.into(), kind: self.kind.into(), message: message.into() }
    }

    fn get(&mut self, key: &'a str) -> Option<&'a OptValue> {
        self.used.push(key);
        self.options.get(key)
    }

    /// A whole number option; `default` None makes it required.
    pub fn usize(&mut self, key: &'a str, default: Option<usize>) -> Result<usize, GraphError> {
        match (self.get(key), default) {
            (None, Some(d)) => Ok(d),
            (None, None) => Err(self.option_error(format!("option `{key}` is required (a whole number)"))),
            (Some(OptValue::Int(i)), _) if *i >= 0 => Ok(*i as usize),
            (Some(v), _) => Err(self.option_error(format!("option `{key}` = {v}: expected a whole number ≥ 0"))),
        }
    }

    /// A number option.
    pub fn f32(&mut self, key: &'a str, default: f32) -> Result<f32, GraphError> {
        match self.get(key) {
            None => Ok(default),
            Some(OptValue::Float(x)) => Ok(*x as f32),
            Some(OptValue::Int(i)) => Ok(*i as f32),
            Some(v) => Err(self.option_error(format!("option `{key}` = {v}: expected a number"))),
        }
    }

    /// A true/false option.
    pub fn bool(&mut self, key: &'a str, default: bool) -> Result<bool, GraphError> {
        match self.get(key) {
            None => Ok(default),
            Some(OptValue::Bool(b)) => Ok(*b),
            Some(v) => Err(self.option_error(format!("option `{key}` = {v}: expected true or false"))),
        }
    }

    /// A name option.
    pub fn str(&mut self, key: &'a str) -> Result<Option<&'a str>, GraphError> {
        match self.get(key) {
            None => Ok(None),
            Some(OptValue::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.option_error(format!("option `{key}` = {v}: expected a name in quotes"))),
        }
    }

    /// A list of whole numbers; `required` refuses a missing or empty list.
    pub fn usizes(&mut self, key: &'a str, required: bool) -> Result<Vec<usize>, GraphError> {
        let bad = |cx: &Self, v: &OptValue| {
            cx.option_error(format!("option `{key}` = {v}: expected a list of whole numbers > 0, such as [400, 400]"))
        };
        match self.get(key) {
            None if required => {
                Err(self.option_error(format!("option `{key}` is required (a list of sizes, such as [400, 400])")))
            }
            None => Ok(Vec::new()),
            Some(v @ OptValue::List(items)) => {
                let out: Option<Vec<usize>> = items
                    .iter()
                    .map(|i| match i {
                        OptValue::Int(n) if *n > 0 => Some(*n as usize),
                        _ => None,
                    })
                    .collect();
                match out {
                    Some(o) if !(required && o.is_empty()) => Ok(o),
                    _ => Err(bad(self, v)),
                }
            }
            Some(v) => Err(bad(self, v)),
        }
    }

    /// A list of names.
    pub fn strs(&mut self, key: &'a str) -> Result<Option<Vec<String>>, GraphError> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ OptValue::List(items)) => items
                .iter()
                .map(|i| match i {
                    OptValue::Str(s) => Ok(s.clone()),
                    _ => Err(self.option_error(format!("option `{key}` = {v}: expected a list of names in quotes"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.option_error(format!("option `{key}` = {v}: expected a list of names in quotes"))),
        }
    }

    /// An activation option (`relu`, `sigmoid`, `tanh`, `identity`).
    pub fn activation(&mut self, key: &'a str, default: Activation) -> Result<Activation, GraphError> {
        match self.str(key)? {
            None => Ok(default),
            Some(s) => Activation::from_name(s).ok_or_else(|| {
                self.option_error(format!("option `{key}` = \"{s}\": expected relu, sigmoid, tanh or identity"))
            }),
        }
    }

    /// A rate in `[0, 1)` (dropout).
    pub fn rate(&mut self, key: &'a str) -> Result<f32, GraphError> {
        let r = self.f32(key, 0.0)?;
        if !(0.0..1.0).contains(&r) {
            return Err(self.option_error(format!("option `{key}` = {r}: expected a rate in [0, 1)")));
        }
        Ok(r)
    }

    /// Requires exactly `n` inputs.
    pub fn inputs_exactly(&self, n: usize) -> Result<(), GraphError> {
        if self.inputs.len() != n {
            return Err(self.shape_error(format!(
                "takes {n} input{}, got {}",
                if n == 1 { "" } else { "s" },
                self.inputs.len()
            )));
        }
        Ok(())
    }

    /// The width of the inputs side by side (at least one input).
    pub fn concat_width(&self) -> Result<usize, GraphError> {
        if self.inputs.is_empty() {
            return Err(self.shape_error("takes at least one input, got none"));
        }
        Ok(self.inputs.iter().map(|s| s.width).sum())
    }

    /// Refuses options no getter asked for, naming the ones there are.
    pub fn finish(self) -> Result<(), GraphError> {
        if let Some(k) = self.options.keys().find(|k| !self.used.contains(&k.as_str())) {
            let known = if self.used.is_empty() { "none".to_string() } else { self.used.join(", ") };
            return Err(self.option_error(format!("unknown option `{k}`; its options are: {known}")));
        }
        Ok(())
    }
}

/// Makes a block from its context, or says why not.
pub type Builder = Arc<dyn Fn(&mut BuildCx<'_>) -> Result<Built, GraphError> + Send + Sync>;

/// Kinds read straight from the example by the graph itself.
pub const SOURCE_KINDS: [&str; 3] = ["embedding", "linear", "numeric"];

/// The built-in kinds, made once.
fn builtin() -> &'static BTreeMap<String, Builder> {
    static BUILTIN: OnceLock<BTreeMap<String, Builder>> = OnceLock::new();
    BUILTIN.get_or_init(builtins)
}

/// The kinds programs registered.
fn registered() -> &'static RwLock<BTreeMap<String, Builder>> {
    static REGISTERED: OnceLock<RwLock<BTreeMap<String, Builder>>> = OnceLock::new();
    REGISTERED.get_or_init(|| RwLock::new(BTreeMap::new()))
}

/// Registers a block kind under `name` for every graph built afterwards in this process; a
/// built-in kind cannot be replaced.
pub fn register_block(
    name: &str,
    builder: impl Fn(&mut BuildCx<'_>) -> Result<Built, GraphError> + Send + Sync + 'static,
) -> Result<(), GraphError> {
    if SOURCE_KINDS.contains(&name) || builtin().contains_key(name) {
        return Err(GraphError::Duplicate(name.into()));
    }
    registered().write().unwrap_or_else(|e| e.into_inner()).insert(name.into(), Arc::new(builder));
    Ok(())
}

/// The builder of `kind`, if built in or registered.
pub(crate) fn builder(kind: &str) -> Option<Builder> {
    builtin().get(kind).cloned().or_else(|| registered().read().unwrap_or_else(|e| e.into_inner()).get(kind).cloned())
}

/// Every kind a graph can use, for messages.
pub(crate) fn known_kinds() -> String {
    let r = registered().read().unwrap_or_else(|e| e.into_inner());
    let names = SOURCE_KINDS.iter().map(|s| s.to_string()).chain(builtin().keys().cloned()).chain(r.keys().cloned());
    names.collect::<Vec<_>>().join(", ")
}

/// Inputs' vector structure when all are vectors of one size (or plain vectors of that size).
fn common_vectors(cx: &BuildCx<'_>) -> Result<(usize, usize), GraphError> {
    let dim = cx
        .inputs
        .iter()
        .find_map(|s| s.vectors.map(|v| v.1))
        .ok_or_else(|| cx.shape_error("needs field embeddings (an `embedding` block) among its inputs"))?;
    let mut count = 0;
    for s in cx.inputs {
        match s.vectors {
            Some((c, d)) if d == dim => count += c,
            None if s.width == dim => count += 1,
            _ => {
                return Err(cx.shape_error(format!(
                    "every input must be vectors of {dim} floats (the embedding size); one gives {} floats{}",
                    s.width,
                    s.vectors.map_or(String::new(), |(c, d)| format!(" as {c} vectors of {d}"))
                )))
            }
        }
    }
    Ok((count, dim))
}

fn builtins() -> BTreeMap<String, Builder> {
    let mut m: BTreeMap<String, Builder> = BTreeMap::new();
    let mut add = |name: &str, b: fn(&mut BuildCx<'_>) -> Result<Built, GraphError>| {
        m.insert(name.into(), Arc::new(b));
    };
    add("mlp", |cx| {
        let input = cx.concat_width()?;
        let sizes = cx.usizes("sizes", true)?;
        let o = MlpOptions {
            activation: cx.activation("activation", Activation::Relu)?,
            output_activation: cx.activation("output_activation", Activation::Identity)?,
            dropout: cx.rate("dropout")?,
            batch_norm: cx.bool("batch_norm", false)?,
        };
        Ok(Built::single(Mlp::new(input, &sizes, o)))
    });
    add("fm", |cx| {
        let (fields, dim) = common_vectors(cx)?;
        Ok(Built::single(FmInteraction { fields, dim }))
    });
    add("dot", |cx| {
        let (vectors, dim) = common_vectors(cx)?;
        if vectors < 2 {
            return Err(cx.shape_error("needs at least 2 vectors to take dot products of"));
        }
        Ok(Built::single(DotInteraction { vectors, dim }))
    });
    add("cross", |cx| {
        let width = cx.concat_width()?;
        let layers = cx.usize("layers", Some(3))?;
        if layers == 0 {
            return Err(cx.option_error("option `layers` must be at least 1"));
        }
        Ok(Built::single(Cross { width, layers, v2: cx.bool("v2", false)? }))
    });
    add("concat", |cx| {
        let width = cx.concat_width()?;
        let vectors = common_vectors(cx).ok().filter(|_| cx.inputs.iter().all(|s| s.vectors.is_some()));
        Ok(Built { vectors, ..Built::single(Concat { width }) })
    });
    add("sum", |cx| {
        let width = cx.concat_width()? / cx.inputs.len();
        if let Some(s) = cx.inputs.iter().find(|s| s.width != width) {
            return Err(cx.shape_error(format!(
                "adds its inputs element by element, so they need one width; got {} and {}",
                cx.inputs[0].width, s.width
            )));
        }
        Ok(Built { vectors: cx.inputs[0].vectors, ..Built::multi(Sum { width, inputs: cx.inputs.len() }) })
    });
    add("gate", |cx| {
        let x = *cx.inputs.first().ok_or_else(|| cx.shape_error("takes 1 or 2 inputs, got none"))?;
        match cx.inputs {
            [_] => Ok(Built { vectors: x.vectors, ..Built::multi(Gate { width: x.width, learned: true }) }),
            [_, g] if g.width == x.width => {
                Ok(Built { vectors: x.vectors, ..Built::multi(Gate { width: x.width, learned: false }) })
            }
            [_, g] => Err(cx.shape_error(format!(
                "multiplies its first input by 2·sigmoid of its second, so they need one width; got {} and {}",
                x.width, g.width
            ))),
            _ => Err(cx.shape_error(format!(
                "takes 1 input (a learned gate) or 2 (input, gate logits), got {}",
                cx.inputs.len()
            ))),
        }
    });
    add("bilinear", |cx| {
        cx.inputs_exactly(2)?;
        let (a, b) = (cx.inputs[0].width, cx.inputs[1].width);
        let heads = cx.usize("heads", Some(1))?;
        if heads == 0 || a % heads != 0 || b % heads != 0 {
            return Err(
                cx.option_error(format!("option `heads` = {heads} must divide both input widths ({a} and {b})"))
            );
        }
        Ok(Built::multi(Bilinear { a, b, heads }))
    });
    add("layer_norm", |cx| Ok(Built::single(LayerNorm { width: cx.concat_width()? })));
    add("batch_norm", |cx| Ok(Built::single(BatchNorm { width: cx.concat_width()? })));
    add("dropout", |cx| {
        let width = cx.concat_width()?;
        Ok(Built::single(Dropout { width, rate: cx.rate("rate")? }))
    });
    add("activation", |cx| {
        let width = cx.concat_width()?;
        let act = cx.activation("function", Activation::Relu)?;
        Ok(Built::single(crate::nn::act::ActivationBlock { act, width }))
    });
    m
}

/// Its inputs side by side (the graph concatenates them before the block sees them).
#[derive(Debug)]
struct Concat {
    width: usize,
}

impl Block for Concat {
    fn width(&self) -> usize {
        self.width
    }
    fn forward(&self, _: &Pass, _: Params<'_>, inputs: &[&[f32]], out: &mut [f32], _: &mut Cache) {
        out.copy_from_slice(inputs[0]);
    }
    fn backward(
        &self,
        _: &Pass,
        _: Params<'_>,
        _: &[&[f32]],
        _: &[f32],
        dout: &[f32],
        dinputs: &mut [&mut [f32]],
        _: Grads<'_>,
        _: &mut Cache,
    ) {
        dinputs[0].iter_mut().zip(dout).for_each(|(d, g)| *d += g);
    }
}

/// The element-wise sum of its inputs.
#[derive(Debug)]
struct Sum {
    width: usize,
    inputs: usize,
}

impl Block for Sum {
    fn width(&self) -> usize {
        self.width
    }
    fn forward(&self, _: &Pass, _: Params<'_>, inputs: &[&[f32]], out: &mut [f32], _: &mut Cache) {
        out.copy_from_slice(inputs[0]);
        for x in &inputs[1..self.inputs] {
            out.iter_mut().zip(*x).for_each(|(o, v)| *o += v);
        }
    }
    fn backward(
        &self,
        _: &Pass,
        _: Params<'_>,
        _: &[&[f32]],
        _: &[f32],
        dout: &[f32],
        dinputs: &mut [&mut [f32]],
        _: Grads<'_>,
        _: &mut Cache,
    ) {
        for d in dinputs.iter_mut() {
            d.iter_mut().zip(dout).for_each(|(d, g)| *d += g);
        }
    }
}
