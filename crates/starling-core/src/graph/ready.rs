//! The ready models, each written as a graph of blocks (the same graphs ship as job configs
//! under `examples/models/`, and a test keeps the two equal).

use super::config::BlockConfig;
use crate::model::ModelKind;
use crate::nn::Activation;

/// The usual options of the ready models (`[model]` in a job config).
#[derive(Clone, Debug, PartialEq)]
pub struct ReadyOptions {
    /// Embedding size per field.
    pub embedding_dim: usize,
    /// Hidden sizes of the MLP (FinalMLP: of its first stream; DLRM: of its top MLP).
    pub mlp: Vec<usize>,
    /// Hidden sizes of FinalMLP's second stream.
    pub mlp2: Vec<usize>,
    /// Dropout after every hidden layer.
    pub dropout: f32,
    /// Batch norm in every hidden layer.
    pub batch_norm: bool,
    /// Activation of hidden layers.
    pub activation: Activation,
    /// Cross layers of DCN.
    pub cross_layers: usize,
    /// DCN-v2's matrix cross layers instead of DCN's vector ones.
    pub v2: bool,
    /// Heads of FinalMLP's bilinear fusion.
    pub heads: usize,
    /// Numeric fields fed, standardised, to the MLPs as a dense vector (a `numeric` block)
    /// instead of through the embeddings and the wide part.
    pub numeric: Vec<String>,
}

impl Default for ReadyOptions {
    /// The BARS benchmark's settings: embeddings of 10, MLP 400-400-400.
    fn default() -> Self {
        ReadyOptions {
            embedding_dim: 10,
            mlp: vec![400, 400, 400],
            mlp2: vec![400],
            dropout: 0.0,
            batch_norm: false,
            activation: Activation::Relu,
            cross_layers: 3,
            v2: false,
            heads: 10,
            numeric: Vec::new(),
        }
    }
}

impl ReadyOptions {
    fn mlp(&self, name: &str, input: &[&str], sizes: &[usize], last_activated: bool) -> BlockConfig {
        let mut b = BlockConfig::new(name, "mlp", input).with("sizes", sizes.to_vec());
        if self.activation != Activation::Relu {
            b = b.with("activation", self.activation.name());
        }
        if last_activated {
            b = b.with("output_activation", self.activation.name());
        }
        if self.dropout > 0.0 {
            b = b.with("dropout", self.dropout);
        }
        if self.batch_norm {
            b = b.with("batch_norm", true);
        }
        b
    }

    fn embedding(&self) -> BlockConfig {
        self.without_numeric(BlockConfig::new("emb", "embedding", &[]).with("dim", self.embedding_dim))
    }

    fn wide(&self) -> BlockConfig {
        self.without_numeric(BlockConfig::new("wide", "linear", &[]))
    }

    fn without_numeric(&self, b: BlockConfig) -> BlockConfig {
        if self.numeric.is_empty() {
            b
        } else {
            b.with("exclude", self.numeric.clone())
        }
    }

    /// An MLP's inputs: `input`, and the numeric block when there is one.
    fn mlp_input<'a>(&self, input: &[&'a str]) -> Vec<&'a str> {
        let numeric = (!self.numeric.is_empty()).then_some("numeric");
        input.iter().copied().chain(numeric).collect()
    }

    /// The graph's blocks, with the numeric block first when there is one.
    fn blocks(&self, blocks: Vec<BlockConfig>) -> Vec<BlockConfig> {
        if self.numeric.is_empty() {
            return blocks;
        }
        let numeric = BlockConfig::new("numeric", "numeric", &[]).with("fields", self.numeric.clone());
        std::iter::once(numeric).chain(blocks).collect()
    }
}

/// The graph of a ready model, or `None` for the shallow kinds and `graph`.
pub fn ready_graph(kind: ModelKind, o: &ReadyOptions) -> Option<Vec<BlockConfig>> {
    let with_score = |sizes: &[usize]| sizes.iter().copied().chain([1]).collect::<Vec<_>>();
    Some(o.blocks(match kind {
        ModelKind::Lr | ModelKind::Fm | ModelKind::Ffm | ModelKind::Graph => return None,
        ModelKind::WideDeep => vec![
            o.wide(),
            o.embedding(),
            o.mlp("deep", &o.mlp_input(&["emb"]), &with_score(&o.mlp), false),
            BlockConfig::new("score", "sum", &["wide", "deep"]),
        ],
        ModelKind::DeepFm => vec![
            o.wide(),
            o.embedding(),
            BlockConfig::new("fm", "fm", &["emb"]),
            o.mlp("deep", &o.mlp_input(&["emb"]), &with_score(&o.mlp), false),
            BlockConfig::new("score", "sum", &["wide", "fm", "deep"]),
        ],
        ModelKind::Dcn => vec![
            o.embedding(),
            BlockConfig::new("cross", "cross", &["emb"]).with("layers", o.cross_layers).with("v2", o.v2),
            o.mlp("deep", &o.mlp_input(&["emb"]), &o.mlp, true),
            BlockConfig::new("score", "mlp", &["cross", "deep"]).with("sizes", vec![1usize]),
        ],
        ModelKind::Dlrm => vec![
            o.embedding(),
            BlockConfig::new("interact", "dot", &["emb"]),
            o.mlp("top", &o.mlp_input(&["interact"]), &with_score(&o.mlp), false),
        ],
        ModelKind::FinalMlp => vec![
            o.embedding(),
            // Each stream sees the embeddings through its own learned gate (feature selection).
            BlockConfig::new("gated1", "gate", &["emb"]),
            o.mlp("stream1", &o.mlp_input(&["gated1"]), &o.mlp, true),
            BlockConfig::new("gated2", "gate", &["emb"]),
            o.mlp("stream2", &o.mlp_input(&["gated2"]), &o.mlp2, true),
            BlockConfig::new("score", "bilinear", &["stream1", "stream2"]).with("heads", o.heads),
        ],
    }))
}
