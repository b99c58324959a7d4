//! Models as graphs of named blocks (design.md, "Deep models"): sources that read the example
//! (`embedding`: field embeddings pooled per field; `linear`: the first-order term) and blocks
//! (MLPs, interactions, crosses, ...) over their outputs, ending in one score per example.
//!
//! A graph declares its tables like any [`Model`]: one sparse table per key group (every field,
//! or one per field) whose row holds every source's slice (`[linear | embedding ...]`), one dense
//! block with every layer's weights, and, with batch norm, one dense block of running statistics.
//! Its step runs the sources, the blocks in dependency order, the loss, and the backward passes
//! in reverse; gradients are means over the batch, as PyTorch's mean loss gives them.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Range;

pub mod config;
pub mod ready;
mod registry;

pub use config::{BlockConfig, GraphError, OptValue};
pub use registry::{register_block, BuildCx, Builder, Built, Shape, SOURCE_KINDS};

use crate::hash::mix64;
use crate::loss::Loss;
use crate::minibatch::MiniBatch;
use crate::model::{Gradients, Init, Model, OnScore, TableSpec};
use crate::nn::{concat_rows, segments_len, Block, Cache, FieldPool, Grads, ParamInit, Params, Pass, Pooling, Segment};
use crate::optim::Optimizer;

/// Floats per chunk of a dense block on the servers: a chunk is a row, so this bounds a row's size
/// while keeping a few hundred rows for a large MLP.
pub const DENSE_CHUNK: usize = 4096;

/// The input's fields as a graph sees them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    /// Field names by field id.
    pub names: Vec<String>,
    /// The bias feature's field, which embeddings leave out unless asked.
    pub bias: Option<u32>,
}

/// Graph-wide settings from the job config.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphSettings {
    /// The loss of the score.
    pub loss: Loss,
    /// Seed of every init and of dropout.
    pub seed: u64,
    /// Default half-width of embedding init.
    pub init_scale: f32,
    /// One sparse table per field instead of one shared by all.
    pub per_field_tables: bool,
    /// Rule of the sparse tables.
    pub sparse_optimizer: Optimizer,
    /// Rule of the dense block.
    pub dense_optimizer: Optimizer,
    /// The dense block and the batch-norm statistics are synchronous tables (hybrid mode when
    /// sparse rows are asynchronous).
    pub sync_dense: bool,
    /// The embedding tables are synchronous too (fully synchronous training, under BSP).
    pub sync_sparse: bool,
    /// Mean and standard deviation of each field a `numeric` block reads, by field name,
    /// computed on the training data.
    pub numeric_stats: BTreeMap<String, (f32, f32)>,
}

/// A source's way of reading the example.
#[derive(Debug)]
enum Source {
    /// Field embeddings: `slot[field]` is the field's vector among the source's, if it reads it.
    Embedding { pool: FieldPool, slot: Vec<Option<u32>>, offset: usize },
    /// `Σ value · w` over the features of the fields it reads.
    Linear { reads: Vec<bool>, offset: usize },
    /// Numeric fields as a dense vector: `slot[field]`'s entry is `(Σ value - mean) / std` over
    /// the field's features, 0 (the mean) when the example has none. No parameters.
    Numeric { slot: Vec<Option<u32>>, mean: Vec<f32>, inv_std: Vec<f32> },
}

#[derive(Debug)]
enum Op {
    Source(Source),
    Block { block: Box<dyn Block>, inputs: Vec<usize>, concat: bool, w: Range<usize>, s: Range<usize> },
}

#[derive(Debug)]
struct Node {
    name: String,
    op: Op,
    width: usize,
}

/// A validated graph of blocks: a [`Model`].
#[derive(Debug)]
pub struct GraphModel {
    /// In dependency order.
    nodes: Vec<Node>,
    output: usize,
    row_dim: usize,
    /// Key group of each field (empty: every field in group 0).
    group_of: Vec<u32>,
    groups: usize,
    tables: Vec<TableSpec>,
    dense: usize,
    dense_len: usize,
    stats: Option<usize>,
    stats_len: usize,
    loss: Loss,
    seed: u64,
}

impl GraphModel {
    /// Checks `blocks` against the input's `fields` and builds the model; `output` names the
    /// block giving the score (default: the last one).
    pub fn build(
        blocks: &[BlockConfig],
        output: Option<&str>,
        fields: &Fields,
        settings: &GraphSettings,
    ) -> Result<GraphModel, GraphError> {
        if blocks.is_empty() {
            return Err(GraphError::Empty);
        }
        let mut by_name = BTreeMap::new();
        for (i, b) in blocks.iter().enumerate() {
            if by_name.insert(b.name.as_str(), i).is_some() {
                return Err(GraphError::Duplicate(b.name.clone()));
            }
        }
        let known = || blocks.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ");
        let mut inputs = Vec::new();
        for b in blocks {
            let mut ins = Vec::new();
            for i in &b.input {
                let at = *by_name.get(i.as_str()).ok_or_else(|| GraphError::UnknownInput {
                    block: b.name.clone(),
                    input: i.clone(),
                    known: known(),
                })?;
                ins.push(at);
            }
            inputs.push(ins);
        }
        let order = topological(blocks, &inputs)?;
        let out_at = match output {
            Some(name) => *by_name.get(name).ok_or_else(|| GraphError::UnknownInput {
                block: "model.output".into(),
                input: name.into(),
                known: known(),
            })?,
            None => blocks.len() - 1,
        };
        // Every block must lead to the output.
        let mut used = vec![false; blocks.len()];
        let mut stack = vec![out_at];
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut used[i], true) {
                stack.extend(&inputs[i]);
            }
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(GraphError::Unused(blocks[i].name.clone()));
        }

        let mut nodes: Vec<Node> = Vec::new();
        let mut shapes: Vec<Shape> = Vec::new();
        let mut position = vec![0usize; blocks.len()];
        let (mut row_dim, mut row_slots) = (0usize, Vec::<Segment>::new());
        let (mut dense_segments, mut stats_segments) = (Vec::<Segment>::new(), Vec::<Segment>::new());
        for &i in &order {
            let b = &blocks[i];
            let in_shapes: Vec<Shape> = inputs[i].iter().map(|&j| shapes[position[j]]).collect();
            let mut cx = BuildCx::new(&b.name, &b.block, &in_shapes, &b.options);
            let (op, shape) = match b.block.as_str() {
                "numeric" => {
                    if !in_shapes.is_empty() {
                        return Err(cx.shape_error("reads the example itself, so it takes no `input`"));
                    }
                    if cx.strs("fields")?.is_none_or(|f| f.is_empty()) {
                        return Err(cx.option_error("option `fields` must list the numeric fields it reads"));
                    }
                    let reads = read_fields(&mut cx, &b.name, fields, false)?;
                    let (mut slot, mut mean, mut inv_std) = (vec![None; fields.names.len()], Vec::new(), Vec::new());
                    for (f, name) in fields.names.iter().enumerate().filter(|(f, _)| reads[*f]) {
                        let &(m, sd) = settings.numeric_stats.get(name).ok_or_else(|| {
                            cx.option_error(format!(
                                "field `{name}` has no mean and standard deviation (model.numeric_stats)"
                            ))
                        })?;
                        slot[f] = Some(mean.len() as u32);
                        mean.push(m);
                        inv_std.push(if sd > 0.0 { 1.0 / sd } else { 1.0 });
                    }
                    cx.finish()?;
                    let width = mean.len();
                    (Op::Source(Source::Numeric { slot, mean, inv_std }), Shape::flat(width))
                }
                "embedding" | "linear" => {
                    if !in_shapes.is_empty() {
                        return Err(cx.shape_error("reads the example itself, so it takes no `input`"));
                    }
                    let reads = read_fields(&mut cx, &b.name, fields, b.block == "embedding")?;
                    if b.block == "embedding" {
                        let dim = cx.usize("dim", None)?;
                        if dim == 0 {
                            return Err(cx.option_error("option `dim` must be at least 1"));
                        }
                        let pooling = match cx.str("pooling")? {
                            None | Some("sum") => Pooling::Sum,
                            Some("mean") => Pooling::Mean,
                            Some(p) => {
                                return Err(cx.option_error(format!("option `pooling` = \"{p}\": expected sum or mean")))
                            }
                        };
                        let init = cx.f32("init_scale", settings.init_scale)?;
                        cx.finish()?;
                        let mut slot = vec![None; fields.names.len()];
                        let mut count = 0u32;
                        for (f, r) in reads.iter().enumerate() {
                            if *r {
                                slot[f] = Some(count);
                                count += 1;
                            }
                        }
                        let pool = FieldPool { fields: count as usize, dim, pooling };
                        let op = Op::Source(Source::Embedding { pool, slot, offset: row_dim });
                        row_slots.push((dim, if init == 0.0 { ParamInit::Zeros } else { ParamInit::Uniform(init) }));
                        row_dim += dim;
                        (op, Shape { width: count as usize * dim, vectors: Some((count as usize, dim)) })
                    } else {
                        cx.finish()?;
                        row_slots.push((1, ParamInit::Zeros));
                        row_dim += 1;
                        (Op::Source(Source::Linear { reads, offset: row_dim - 1 }), Shape::flat(1))
                    }
                }
                kind => {
                    let builder = registry::builder(kind).ok_or_else(|| GraphError::UnknownKind {
                        block: b.name.clone(),
                        kind: kind.into(),
                        known: registry::known_kinds(),
                    })?;
                    if in_shapes.is_empty() {
                        return Err(cx.shape_error("needs at least one `input`"));
                    }
                    let built = builder(&mut cx)?;
                    cx.finish()?;
                    let (p, s) = (built.block.params(), built.block.stats());
                    let w = segments_len(&dense_segments)..segments_len(&dense_segments) + segments_len(&p);
                    let st = segments_len(&stats_segments)..segments_len(&stats_segments) + segments_len(&s);
                    dense_segments.extend(p);
                    stats_segments.extend(s);
                    let shape = Shape { width: built.block.width(), vectors: built.vectors };
                    let ins = inputs[i].iter().map(|&j| position[j]).collect();
                    (Op::Block { block: built.block, inputs: ins, concat: built.concat, w, s: st }, shape)
                }
            };
            position[i] = nodes.len();
            nodes.push(Node { name: b.name.clone(), op, width: shape.width });
            shapes.push(shape);
        }
        let output = position[out_at];
        if nodes[output].width != 1 {
            return Err(GraphError::OutputWidth { block: nodes[output].name.clone(), width: nodes[output].width });
        }
        if row_dim == 0 {
            return Err(GraphError::Shape {
                block: nodes[output].name.clone(),
                kind: "model".into(),
                message: "the graph reads no features: add an `embedding` or `linear` block".into(),
            });
        }

        let seed = settings.seed;
        let (groups, group_of) = if settings.per_field_tables {
            (fields.names.len().max(1), (0..fields.names.len() as u32).collect())
        } else {
            (1, Vec::new())
        };
        let rows = Init::Rows { seed, slots: row_slots };
        let mut tables: Vec<TableSpec> = if settings.per_field_tables {
            fields
                .names
                .iter()
                .enumerate()
                .map(|(g, n)| {
                    TableSpec::sparse(&format!("sparse.{n}"), row_dim, &settings.sparse_optimizer, rows.clone(), g)
                })
                .collect()
        } else {
            vec![TableSpec::sparse("sparse", row_dim, &settings.sparse_optimizer, rows, 0)]
        };
        let dense_len = segments_len(&dense_segments);
        let dense = tables.len();
        // Chunks no larger than the block, so a small model does not pull a mostly padded row.
        let chunk = DENSE_CHUNK.min(dense_len.max(1));
        tables.push(TableSpec::dense_block(
            "dense",
            dense_len,
            chunk,
            &settings.dense_optimizer,
            // Shifted into 63 bits: manifests are TOML, whose integers are i64.
            Init::Dense { seed: mix64(seed ^ 0xDE45E) >> 1, segments: dense_segments },
        ));
        let stats_len = segments_len(&stats_segments);
        let stats = (stats_len > 0).then(|| {
            tables.push(TableSpec::dense_block(
                "stats",
                stats_len,
                DENSE_CHUNK.min(stats_len),
                &Optimizer::Sgd { lr: crate::nn::BatchNorm::STATS_STEP, l2: 0.0 },
                Init::Dense { seed, segments: stats_segments },
            ));
            tables.len() - 1
        });
        for (i, t) in tables.iter_mut().enumerate() {
            t.sync = if i < dense { settings.sync_sparse } else { settings.sync_dense };
        }
        Ok(GraphModel {
            nodes,
            output,
            row_dim,
            group_of,
            groups,
            tables,
            dense,
            dense_len,
            stats,
            stats_len,
            loss: settings.loss,
            seed,
        })
    }

    /// Multiplies the learning rate of every trained table (embeddings and dense layers, not
    /// batch norm's statistics) by `factor`: a schedule's step.
    pub fn scale_lr(&mut self, factor: f32) {
        for (i, t) in self.tables.iter_mut().enumerate() {
            if Some(i) != self.stats {
                t.optimizer.scale_lr(factor);
            }
        }
    }

    /// Trainable dense parameters (every layer's weights).
    pub fn dense_params(&self) -> usize {
        self.dense_len
    }

    /// Floats of a sparse row (every source's slice).
    pub fn row_dim(&self) -> usize {
        self.row_dim
    }
}

/// The fields a source reads: option `fields` (names), else every field (embeddings leave the
/// bias out: a constant vector only shifts what the other blocks learn).
fn read_fields(cx: &mut BuildCx<'_>, block: &str, fields: &Fields, skip_bias: bool) -> Result<Vec<bool>, GraphError> {
    let n = fields.names.len();
    let field = |name: &str| {
        fields.names.iter().position(|x| x == name).ok_or_else(|| GraphError::UnknownField {
            block: block.into(),
            field: name.into(),
            known: fields.names.join(", "),
        })
    };
    let mut reads = match cx.strs("fields")? {
        None => (0..n).map(|f| !(skip_bias && fields.bias == Some(f as u32))).collect(),
        Some(names) => {
            let mut reads = vec![false; n];
            for name in names {
                reads[field(&name)?] = true;
            }
            reads
        }
    };
    for name in cx.strs("exclude")?.unwrap_or_default() {
        reads[field(&name)?] = false;
    }
    Ok(reads)
}

/// Blocks in an order where every block comes after its inputs, or the cycle that prevents it.
fn topological(blocks: &[BlockConfig], inputs: &[Vec<usize>]) -> Result<Vec<usize>, GraphError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        i: usize,
        inputs: &[Vec<usize>],
        mark: &mut [Mark],
        path: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match mark[i] {
            Mark::Done => return Ok(()),
            Mark::Open => {
                let from = path.iter().position(|&p| p == i).unwrap_or(0);
                return Err(path[from..].to_vec());
            }
            Mark::New => {}
        }
        mark[i] = Mark::Open;
        path.push(i);
        for &j in &inputs[i] {
            visit(j, inputs, mark, path, order)?;
        }
        path.pop();
        mark[i] = Mark::Done;
        order.push(i);
        Ok(())
    }
    let mut mark = vec![Mark::New; blocks.len()];
    let mut order = Vec::with_capacity(blocks.len());
    for i in 0..blocks.len() {
        visit(i, inputs, &mut mark, &mut Vec::new(), &mut order).map_err(|cycle| {
            let mut names: Vec<String> = cycle.iter().map(|&c| format!("`{}`", blocks[c].name)).collect();
            names.push(format!("`{}`", blocks[cycle[0]].name));
            GraphError::Cycle(names.join(" → "))
        })?;
    }
    Ok(order)
}

/// Buffers of a graph's step, grown to the batch once and reused.
#[derive(Default)]
struct GraphScratch {
    outs: Vec<Vec<f32>>,
    douts: Vec<Vec<f32>>,
    caches: Vec<Cache>,
    /// Per node: features per field of each example (embedding sources).
    counts: Vec<Vec<f32>>,
    cat: Vec<f32>,
    dcat: Vec<f32>,
    dtmp: Vec<Vec<f32>>,
    scores: Vec<f32>,
}

impl Model for GraphModel {
    fn tables(&self) -> &[TableSpec] {
        &self.tables
    }

    fn loss(&self) -> Loss {
        self.loss
    }

    fn key_groups(&self) -> usize {
        self.groups
    }

    fn key_group(&self, field: u32) -> usize {
        self.group_of.get(field as usize).map_or(0, |&g| g as usize)
    }

    fn batch_mean(&self) -> bool {
        true
    }

    fn scratch(&self) -> Box<dyn Any + Send> {
        Box::new(GraphScratch::default())
    }

    fn step(
        &self,
        batch: &MiniBatch,
        weights: &[Vec<f32>],
        step: u64,
        grads: Option<&mut Gradients>,
        scratch: &mut dyn Any,
        on_score: OnScore<'_>,
    ) {
        let s: &mut GraphScratch = scratch.downcast_mut().expect("scratch made by this model's scratch()");
        let ex = batch.examples();
        let n = ex.len();
        let nodes = self.nodes.len();
        s.outs.resize_with(nodes, Vec::new);
        s.douts.resize_with(nodes, Vec::new);
        s.caches.resize_with(nodes, Cache::default);
        s.counts.resize_with(nodes, Vec::new);
        let dense_w = &weights[self.dense][..self.dense_len];
        let stats_w: &[f32] = match self.stats {
            Some(t) => &weights[t][..self.stats_len],
            None => &[],
        };
        let train = grads.is_some();
        let slots = batch.slots();
        let rd = self.row_dim;
        let pass_for = |i: usize| Pass { batch: n, train, seed: mix64(self.seed ^ mix64(step) ^ (i as u64 + 1)) };

        for (i, node) in self.nodes.iter().enumerate() {
            let mut out = std::mem::take(&mut s.outs[i]);
            out.clear();
            out.resize(n * node.width, 0.0);
            match &node.op {
                Op::Source(src) => {
                    let mut occ = 0;
                    for e in 0..n {
                        let feats = ex.features(e);
                        let at = &slots[occ..occ + feats.len()];
                        let row = |j: usize| {
                            let g = self.key_group(feats[j].field);
                            let k = at[j] as usize;
                            &weights[g][k * rd..(k + 1) * rd]
                        };
                        match src {
                            Source::Embedding { pool, slot, offset } => {
                                let counts = &mut s.counts[i];
                                counts.resize(n * pool.fields, 0.0);
                                let items = feats.iter().enumerate().filter_map(|(j, f)| {
                                    slot.get(f.field as usize)
                                        .copied()
                                        .flatten()
                                        .map(|sl| (sl as usize, f.value, &row(j)[*offset..]))
                                });
                                let w = pool.fields * pool.dim;
                                pool.forward(
                                    items,
                                    &mut out[e * w..(e + 1) * w],
                                    &mut counts[e * pool.fields..(e + 1) * pool.fields],
                                );
                            }
                            Source::Linear { reads, offset } => {
                                out[e] = feats
                                    .iter()
                                    .enumerate()
                                    .filter(|(_, f)| reads.get(f.field as usize).copied().unwrap_or(false))
                                    .map(|(j, f)| f.value * row(j)[*offset])
                                    .sum();
                            }
                            Source::Numeric { slot, mean, inv_std } => {
                                let w = mean.len();
                                let (o, seen) = (&mut out[e * w..(e + 1) * w], &mut s.counts[i]);
                                seen.clear();
                                seen.resize(w, 0.0);
                                for f in feats {
                                    if let Some(sl) = slot.get(f.field as usize).copied().flatten() {
                                        o[sl as usize] += f.value;
                                        seen[sl as usize] = 1.0;
                                    }
                                }
                                for (k, v) in o.iter_mut().enumerate() {
                                    *v = if seen[k] > 0.0 { (*v - mean[k]) * inv_std[k] } else { 0.0 };
                                }
                            }
                        }
                        occ += feats.len();
                    }
                }
                Op::Block { block, inputs, concat, w, s: st } => {
                    let ins: Vec<&[f32]> = inputs.iter().map(|&j| &s.outs[j][..]).collect();
                    let p = Params { w: &dense_w[w.clone()], stats: &stats_w[st.clone()] };
                    if *concat && ins.len() > 1 {
                        concat_rows(&ins, n, &mut s.cat);
                        block.forward(&pass_for(i), p, &[&s.cat], &mut out, &mut s.caches[i]);
                    } else {
                        block.forward(&pass_for(i), p, &ins, &mut out, &mut s.caches[i]);
                    }
                }
            }
            s.outs[i] = out;
        }
        s.scores.clear();
        s.scores.extend_from_slice(&s.outs[self.output]);
        for e in 0..n {
            on_score(s.scores[e], ex.label(e), ex.weight(e));
        }
        let Some(g) = grads else { return };
        g.reset_for(&self.tables, batch);

        for (i, node) in self.nodes.iter().enumerate() {
            s.douts[i].clear();
            s.douts[i].resize(n * node.width, 0.0);
        }
        let scale = 1.0 / n.max(1) as f32;
        for e in 0..n {
            s.douts[self.output][e] = self.loss.dscore(s.scores[e], ex.label(e)) * ex.weight(e) * scale;
        }
        let (dense_g, stats_g) = match self.stats {
            Some(t) => {
                let (a, b) = g.grads.split_at_mut(t);
                (&mut a[self.dense][..self.dense_len], &mut b[0][..self.stats_len])
            }
            None => (&mut g.grads[self.dense][..self.dense_len], &mut [][..]),
        };
        for (i, node) in self.nodes.iter().enumerate().rev() {
            let Op::Block { block, inputs, concat, w, s: st } = &node.op else { continue };
            let dout = std::mem::take(&mut s.douts[i]);
            let ins: Vec<&[f32]> = inputs.iter().map(|&j| &s.outs[j][..]).collect();
            let p = Params { w: &dense_w[w.clone()], stats: &stats_w[st.clone()] };
            let gr = Grads { w: &mut dense_g[w.clone()], stats: &mut stats_g[st.clone()] };
            if *concat && ins.len() > 1 {
                concat_rows(&ins, n, &mut s.cat);
                s.dcat.clear();
                s.dcat.resize(s.cat.len(), 0.0);
                block.backward(
                    &pass_for(i),
                    p,
                    &[&s.cat],
                    &s.outs[i],
                    &dout,
                    &mut [&mut s.dcat[..]],
                    gr,
                    &mut s.caches[i],
                );
                let total = s.cat.len() / n.max(1);
                let mut at = 0;
                for &j in inputs {
                    let wj = self.nodes[j].width;
                    for e in 0..n {
                        let src = &s.dcat[e * total + at..e * total + at + wj];
                        for (d, v) in s.douts[j][e * wj..(e + 1) * wj].iter_mut().zip(src) {
                            *d += v;
                        }
                    }
                    at += wj;
                }
            } else {
                s.dtmp.resize_with(inputs.len().max(s.dtmp.len()), Vec::new);
                for (k, &j) in inputs.iter().enumerate() {
                    s.dtmp[k].clear();
                    s.dtmp[k].resize(n * self.nodes[j].width, 0.0);
                }
                {
                    let mut d: Vec<&mut [f32]> = s.dtmp[..inputs.len()].iter_mut().map(|v| &mut v[..]).collect();
                    block.backward(&pass_for(i), p, &ins, &s.outs[i], &dout, &mut d, gr, &mut s.caches[i]);
                }
                for (k, &j) in inputs.iter().enumerate() {
                    for (d, v) in s.douts[j].iter_mut().zip(&s.dtmp[k]) {
                        *d += v;
                    }
                }
            }
            s.douts[i] = dout;
        }
        let any_weight = (0..n).any(|e| ex.weight(e) != 0.0);
        if any_weight {
            g.touched[self.dense].fill(true);
            if let Some(t) = self.stats {
                g.touched[t].fill(true);
            }
        }
        // Sparse rows: each feature's row gets its field vector's gradient, times its value.
        for (i, node) in self.nodes.iter().enumerate() {
            let Op::Source(src) = &node.op else { continue };
            let dout = &s.douts[i];
            let mut occ = 0;
            for e in 0..n {
                let feats = ex.features(e);
                if ex.weight(e) != 0.0 {
                    for (j, f) in feats.iter().enumerate() {
                        let grp = self.key_group(f.field);
                        let k = slots[occ + j] as usize;
                        let (grow, touched) = (&mut g.grads[grp][k * rd..(k + 1) * rd], &mut g.touched[grp][k]);
                        match src {
                            Source::Embedding { pool, slot, offset } => {
                                let Some(sl) = slot.get(f.field as usize).copied().flatten() else { continue };
                                let sl = sl as usize;
                                let c =
                                    pool.row_scale(&s.counts[i][e * pool.fields..(e + 1) * pool.fields], sl, f.value);
                                let w = pool.fields * pool.dim;
                                let d = &dout[e * w + sl * pool.dim..e * w + (sl + 1) * pool.dim];
                                for (a, b) in grow[*offset..*offset + pool.dim].iter_mut().zip(d) {
                                    *a += c * b;
                                }
                                *touched = true;
                            }
                            Source::Linear { reads, offset } => {
                                if reads.get(f.field as usize).copied().unwrap_or(false) {
                                    grow[*offset] += f.value * dout[e];
                                    *touched = true;
                                }
                            }
                            // Inputs, not parameters: nothing to learn.
                            Source::Numeric { .. } => {}
                        }
                    }
                }
                occ += feats.len();
            }
        }
    }
}

#[cfg(test)]
mod tests;
