//! A model as a graph of named blocks, as a job config writes it, and the errors of a graph that
//! cannot work.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One block of a model graph: `[[model.blocks]]` in a job config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BlockConfig {
    /// The block's name, which later blocks use as an input.
    pub name: String,
    /// What it is: `embedding`, `linear` (read the example), or a registered block
    /// (`mlp`, `fm`, `cross`, `dot`, `concat`, `sum`, `gate`, `bilinear`, `layer_norm`,
    /// `batch_norm`, `dropout`, `activation`, or one a program registered).
    pub block: String,
    /// Names of the blocks whose outputs it reads, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<String>,
    /// The block's own options (`sizes = [400, 400]`, `dim = 10`, ...), checked by its builder.
    #[serde(flatten)]
    pub options: BTreeMap<String, OptValue>,
}

/// The value of a block option.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum OptValue {
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A name.
    Str(String),
    /// A list.
    List(Vec<OptValue>),
}

impl std::fmt::Display for OptValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptValue::Bool(b) => write!(f, "{b}"),
            OptValue::Int(i) => write!(f, "{i}"),
            OptValue::Float(x) => write!(f, "{x}"),
            OptValue::Str(s) => write!(f, "\"{s}\""),
            OptValue::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl BlockConfig {
    /// A block of kind `block` named `name` reading `input`, without options.
    pub fn new(name: &str, block: &str, input: &[&str]) -> Self {
        BlockConfig {
            name: name.into(),
            block: block.into(),
            input: input.iter().map(|s| s.to_string()).collect(),
            options: BTreeMap::new(),
        }
    }

    /// Adds an option.
    pub fn with(mut self, key: &str, value: impl Into<OptValue>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }
}

impl From<bool> for OptValue {
    fn from(v: bool) -> Self {
        OptValue::Bool(v)
    }
}
impl From<usize> for OptValue {
    fn from(v: usize) -> Self {
        OptValue::Int(v as i64)
    }
}
impl From<f32> for OptValue {
    fn from(v: f32) -> Self {
        // Through the shortest decimal, so 0.1f32 reads back as 0.1, not 0.10000000149.
        OptValue::Float(v.to_string().parse().unwrap_or(f64::from(v)))
    }
}
impl From<&str> for OptValue {
    fn from(v: &str) -> Self {
        OptValue::Str(v.into())
    }
}
impl From<Vec<usize>> for OptValue {
    fn from(v: Vec<usize>) -> Self {
        OptValue::List(v.into_iter().map(OptValue::from).collect())
    }
}
impl From<Vec<String>> for OptValue {
    fn from(v: Vec<String>) -> Self {
        OptValue::List(v.into_iter().map(OptValue::Str).collect())
    }
}

/// Why a model graph cannot train; every variant names the block.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The graph has no blocks.
    #[error("the model graph has no blocks")]
    Empty,
    /// Two blocks share a name.
    #[error("two blocks are named `{0}`; block names must be unique")]
    Duplicate(String),
    /// A `block =` kind nobody registered.
    #[error("block `{block}`: unknown block kind `{kind}`; expected one of {known}")]
    UnknownKind {
        /// The block's name.
        block: String,
        /// The kind it asked for.
        kind: String,
        /// The kinds there are.
        known: String,
    },
    /// An input that is not a block.
    #[error("block `{block}`: input `{input}` is not a block of the graph (blocks: {known})")]
    UnknownInput {
        /// The block's name.
        block: String,
        /// The input it names.
        input: String,
        /// The names there are.
        known: String,
    },
    /// Blocks that read each other's outputs in a circle.
    #[error("blocks {0} read each other's outputs in a cycle")]
    Cycle(String),
    /// A field name that the input does not have.
    #[error("block `{block}`: the input has no field `{field}` (fields: {known})")]
    UnknownField {
        /// The block's name.
        block: String,
        /// The field it names.
        field: String,
        /// The fields there are.
        known: String,
    },
    /// An option that is missing, unknown, or of the wrong type or range.
    #[error("block `{block}` ({kind}): {message}")]
    Option {
        /// The block's name.
        block: String,
        /// Its kind.
        kind: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Inputs whose number or sizes do not fit the block.
    #[error("block `{block}` ({kind}): {message}")]
    Shape {
        /// The block's name.
        block: String,
        /// Its kind.
        kind: String,
        /// What was given and what was expected.
        message: String,
    },
    /// The output block does not give one score per example.
    #[error("the model's output `{block}` gives {width} floats per example; it must give 1 (the score)")]
    OutputWidth {
        /// The output block.
        block: String,
        /// Its width.
        width: usize,
    },
    /// A block computes something no path to the output uses.
    #[error("block `{0}` does not lead to the output; remove it or use it")]
    Unused(String),
}
