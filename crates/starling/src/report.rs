//! Machine-readable run reports (`--report FILE`), written as JSON for benchmarks and scripts.

use std::fmt::Write as _;
use std::path::Path;

use starling_core::metrics::Summary;

/// JSON number, or `null` for values JSON cannot hold.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".into()
    }
}

/// A metrics summary as a JSON object.
pub fn summary_json(s: &Summary) -> String {
    format!(
        "{{\"count\": {}, \"logloss\": {}, \"auc\": {}, \"rmse\": {}, \"accuracy\": {}}}",
        s.count,
        num(s.logloss),
        s.auc.map_or("null".into(), num),
        num(s.rmse),
        num(s.accuracy)
    )
}

/// The report of a training run.
pub fn train_json(r: &crate::trainer::TrainReport) -> String {
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"train_examples\": {}, \"train_seconds\": {}, \"examples_per_s\": {}, \"progressive_logloss\": {}, \"bad_lines\": {}",
        r.train_examples,
        num(r.train_seconds),
        num(r.train_examples as f64 / r.train_seconds.max(1e-9)),
        num(r.progressive.logloss),
        r.bad_lines
    );
    if let Some(t) = &r.test {
        let _ = write!(out, ", \"test\": {}", summary_json(t));
    }
    out.push_str("}\n");
    out
}

/// Writes `json` to `path`, naming the path on failure.
pub fn write(path: &Path, json: &str) -> std::io::Result<()> {
    std::fs::write(path, json).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}
