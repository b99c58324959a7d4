//! Using a saved model: predictions to a file, metrics on labelled data.

use std::io::Write;
use std::path::PathBuf;

use starling_core::metrics::{Metrics, Summary};
use starling_core::{Example, LearnScratch};

use starling_data::DataError;

use crate::input::{InputError, Inputs};
use crate::model::{Model, Scorer};

/// Metrics of a scored input, and the report of malformed lines it skipped (if any).
#[derive(Clone, Debug)]
pub struct Scored {
    /// Metrics against the labels.
    pub summary: Summary,
    /// What `max_bad_lines` let through: count and first messages; `None` when nothing was skipped.
    pub bad_lines: Option<String>,
}

/// Writes one prediction per input line, in input order, and returns the metrics against the labels.
pub fn predict_to(
    model: &Model,
    data: &[PathBuf],
    max_bad_lines: u64,
    out: &mut dyn Write,
) -> Result<Scored, InputError> {
    let inputs = open_for(model, data, max_bad_lines, 1)?;
    let mut line = Vec::with_capacity(32);
    let summary = predict_each(model, &inputs, |p| {
        line.clear();
        // Shortest text that reads back as the same f32: predictions survive a round trip exactly.
        writeln!(line, "{p}").expect("writing to a Vec cannot fail");
        out.write_all(&line).map_err(output_error)
    })
    .map_err(|e| for_model(model, e))?;
    out.flush().map_err(output_error)?;
    non_empty(&summary, data)?;
    Ok(Scored { summary, bad_lines: inputs.bad_lines_report() })
}

/// Calls `each` with the prediction of every example of `inputs`, in input order, and returns
/// the metrics against the labels.
pub fn predict_each(
    model: &Model,
    inputs: &Inputs,
    mut each: impl FnMut(f32) -> Result<(), InputError>,
) -> Result<Summary, InputError> {
    let mut reader = inputs.reader(0, 1)?;
    let mut metrics = Metrics::new(true);
    let mut predictor = Predictor::new(model);
    let mut ex = Example::default();
    let failed = std::cell::Cell::new(None);
    let mut emit = |p: f32, y: f32, w: f32| {
        metrics.add(p, y, w);
        if let Err(e) = each(p) {
            failed.set(Some(e));
        }
    };
    while reader.next(&mut ex)? {
        predictor.push(&ex, &mut emit);
        if let Some(e) = failed.take() {
            return Err(e);
        }
    }
    predictor.flush(&mut emit);
    if let Some(e) = failed.take() {
        return Err(e);
    }
    Ok(metrics.summary())
}

/// Predictions of a model's examples, in order: one at a time on a shallow model's online
/// path, in batches through the step for deep models. `starling predict` and `starling serve`
/// both predict through it, so they give the same numbers.
pub struct Predictor<'a> {
    model: &'a Model,
    way: Way<'a>,
}

/// How a [`Predictor`] scores.
enum Way<'a> {
    /// A shallow model, example by example.
    Online(LearnScratch),
    /// A deep model: examples are held until a batch is full or flushed.
    Batched(Box<Scorer<'a>>),
}

impl<'a> Predictor<'a> {
    /// A predictor of `model`.
    pub fn new(model: &'a Model) -> Self {
        let way = match model.net.learner() {
            Some(_) => Way::Online(LearnScratch::default()),
            None => Way::Batched(Box::new(Scorer::new(model))),
        };
        Predictor { model, way }
    }

    /// Adds an example; `each(prediction, label, weight)` is called for every prediction that
    /// is ready (maybe none, for a deep model until its batch fills), in input order.
    pub fn push(&mut self, ex: &Example, each: &mut dyn FnMut(f32, f32, f32)) {
        match &mut self.way {
            Way::Online(scratch) => {
                let p = self.model.predict(ex, scratch).expect("a shallow model predicts online");
                each(p, ex.label, ex.weight);
            }
            Way::Batched(scorer) => {
                let loss = self.model.net.step().loss();
                scorer.push(ex, &mut |s, y, w| each(loss.predict(s), y, w));
            }
        }
    }

    /// Predicts every example still held.
    pub fn flush(&mut self, each: &mut dyn FnMut(f32, f32, f32)) {
        if let Way::Batched(scorer) = &mut self.way {
            let loss = self.model.net.step().loss();
            scorer.flush(&mut |s, y, w| each(loss.predict(s), y, w));
        }
    }
}

/// Metrics of `model` on labelled `data`, read by `threads` threads.
pub fn evaluate(
    model: &Model,
    data: &[PathBuf],
    threads: usize,
    max_bad_lines: u64,
    quiet: bool,
) -> Result<Scored, InputError> {
    let inputs = open_for(model, data, max_bad_lines, threads)?;
    let summary =
        crate::trainer::evaluate_inputs(model, &inputs, threads.max(1), quiet).map_err(|e| for_model(model, e))?;
    non_empty(&summary, data)?;
    Ok(Scored { summary, bad_lines: inputs.bad_lines_report() })
}

/// A closed stdout is the reader's choice (`| head`); anything else is a failed write.
fn output_error(e: std::io::Error) -> InputError {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => InputError::OutputClosed,
        _ => InputError::Output(e.to_string()),
    }
}

/// Metrics of no examples are no metrics: an empty input is an error, not a logloss of 0.
fn non_empty(s: &Summary, data: &[PathBuf]) -> Result<(), InputError> {
    if s.count == 0 {
        return Err(InputError::Empty(crate::input::show_paths(data)));
    }
    Ok(())
}

/// Opens `data` to be read exactly as `model`'s training input was, with its own bad-line budget.
fn open_for(model: &Model, data: &[PathBuf], max_bad_lines: u64, threads: usize) -> Result<Inputs, InputError> {
    let mut job = model.job.clone();
    job.features.max_bad_lines = max_bad_lines;
    Inputs::open(&mut job, data, threads).map_err(|e| for_model(model, e))
}

/// A parse error reading data for `model` says which format the model expects.
fn for_model(model: &Model, e: InputError) -> InputError {
    match e {
        InputError::Data(DataError::Parse { .. } | DataError::Config(_)) => {
            InputError::ForModel { format: model.job.features.format.name(), source: Box::new(e) }
        }
        other => other,
    }
}
