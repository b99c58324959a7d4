//! LR, FM and FFM as a [`Model`]: one sparse table, the step of [`Learner::batch_gradients`].

use std::any::Any;

use super::{Gradients, Model, OnScore, TableSpec};
use crate::learner::Learner;
use crate::loss::Loss;
use crate::minibatch::{BatchScratch, MiniBatch};

/// A shallow model (its learner, which also runs the online Hogwild path) and its one table.
#[derive(Clone, Debug)]
pub struct ShallowModel {
    /// Shape, optimizer and loss.
    pub learner: Learner,
    tables: [TableSpec; 1],
}

impl ShallowModel {
    /// The table of the single-machine learner's rows, named `weights`.
    pub fn new(learner: Learner) -> Self {
        let table = TableSpec::for_model("weights", &learner.model, &learner.optimizer);
        ShallowModel { learner, tables: [table] }
    }

    /// The table is synchronous (design.md, decision 12): one step's pushes of every worker are
    /// summed and applied once, in place of each worker's applied as it comes.
    pub fn synchronous(mut self, sync: bool) -> Self {
        self.tables[0].sync = sync;
        self
    }
}

impl ShallowModel {
    /// Multiplies the learning rate by `factor` (a schedule's step).
    pub fn scale_lr(&mut self, factor: f32) {
        self.learner.optimizer.scale_lr(factor);
        self.tables[0].optimizer.scale_lr(factor);
    }
}

impl Model for ShallowModel {
    fn tables(&self) -> &[TableSpec] {
        &self.tables
    }

    fn loss(&self) -> Loss {
        self.learner.loss
    }

    fn scratch(&self) -> Box<dyn Any + Send> {
        Box::new(BatchScratch::default())
    }

    fn step(
        &self,
        batch: &MiniBatch,
        weights: &[Vec<f32>],
        _step: u64,
        grads: Option<&mut Gradients>,
        scratch: &mut dyn Any,
        on_score: OnScore<'_>,
    ) {
        let s: &mut BatchScratch = scratch.downcast_mut().expect("scratch made by this model's scratch()");
        match grads {
            Some(g) => {
                g.grads.resize_with(1, Vec::new);
                g.touched.resize_with(1, Vec::new);
                self.learner.batch_gradients(batch, &weights[0], &mut g.grads[0], &mut g.touched[0], s, on_score)
            }
            None => self.learner.batch_scores(batch, &weights[0], s, on_score),
        }
    }
}
