//! The leaderboard: every trial's state while the search runs, one status line now and then,
//! the final table, and the results files (CSV and JSON).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::space::Metric;
use super::trial::{Outcome, Watch};

/// A trial's row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Trial number, from 1.
    pub id: usize,
    /// `path=value` pairs.
    pub params: Vec<(String, String)>,
    /// `queued`, `running`, `done`, `stopped` (by ASHA) or `failed`.
    pub status: &'static str,
    /// The ranking metric at the end (done) or at the rung where it stopped.
    pub value: Option<f64>,
    /// Holdout logloss, AUC and RMSE behind `value`.
    pub logloss: Option<f64>,
    /// Holdout AUC.
    pub auc: Option<f64>,
    /// Holdout RMSE.
    pub rmse: Option<f64>,
    /// Fraction of the training budget used.
    pub trained: f64,
    /// Training examples learned.
    pub examples: u64,
    /// Wall time of the trial.
    pub seconds: f64,
    /// Why it failed.
    pub reason: Option<String>,
    #[serde(skip)]
    started: Option<Instant>,
}

/// Every trial's row, shared by the trial threads.
pub struct Board {
    metric: Metric,
    rows: Mutex<Vec<Row>>,
}

impl Board {
    /// Rows for trials with these parameters, all queued.
    pub fn new(metric: Metric, params: Vec<Vec<(String, String)>>) -> Self {
        let rows = params
            .into_iter()
            .enumerate()
            .map(|(i, params)| Row {
                id: i + 1,
                params,
                status: "queued",
                value: None,
                logloss: None,
                auc: None,
                rmse: None,
                trained: 0.0,
                examples: 0,
                seconds: 0.0,
                reason: None,
                started: None,
            })
            .collect();
        Board { metric, rows: Mutex::new(rows) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<Row>) -> R) -> R {
        f(&mut self.rows.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Trial `i` (from 0) starts.
    pub fn start(&self, i: usize) {
        self.with(|r| {
            r[i].status = "running";
            r[i].started = Some(Instant::now());
        });
    }

    /// Trial `i` ended with `outcome` after learning `examples` of a `budget`.
    pub fn finish(&self, i: usize, outcome: &Outcome, examples: u64, budget: u64) {
        let metric = self.metric;
        self.with(|r| {
            let row = &mut r[i];
            row.seconds = row.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
            row.examples = examples;
            row.trained = if budget == 0 { 0.0 } else { examples as f64 / budget as f64 };
            let summary = match outcome {
                Outcome::Done(s) => {
                    row.status = "done";
                    Some(s)
                }
                Outcome::Stopped { test, .. } => {
                    row.status = "stopped";
                    Some(test)
                }
                Outcome::Failed(reason) => {
                    row.status = "failed";
                    row.reason = Some(reason.clone());
                    None
                }
            };
            if let Some(s) = summary {
                row.value = Some(metric.value(s)).filter(|v| v.is_finite());
                row.logloss = Some(s.logloss);
                row.auc = s.auc;
                row.rmse = Some(s.rmse);
            }
        });
    }

    /// A watcher of trial `i` for the trial loop.
    pub fn watch(&self, i: usize) -> TrialWatch<'_> {
        TrialWatch { board: self, i }
    }

    /// The best trial that trained its whole budget: (index, value).
    pub fn best(&self) -> Option<(usize, f64)> {
        let metric = self.metric;
        self.with(|r| {
            r.iter()
                .enumerate()
                .filter(|(_, row)| row.status == "done")
                .filter_map(|(i, row)| row.value.map(|v| (i, v)))
                .fold(None, |best: Option<(usize, f64)>, (i, v)| match best {
                    Some((_, b)) if !metric.better(v, b) => best,
                    _ => Some((i, v)),
                })
        })
    }

    /// A copy of every row.
    pub fn rows(&self) -> Vec<Row> {
        self.with(|r| r.clone())
    }

    /// One status line: counts, running trials' progress, the best so far.
    pub fn status_line(&self) -> String {
        let best = self.best();
        self.with(|r| {
            let count = |s: &str| r.iter().filter(|row| row.status == s).count();
            let mut line = format!(
                "tune: {}/{} finished ({} done, {} stopped, {} failed)",
                r.len() - count("queued") - count("running"),
                r.len(),
                count("done"),
                count("stopped"),
                count("failed")
            );
            let running: Vec<String> = r
                .iter()
                .filter(|row| row.status == "running")
                .map(|row| format!("#{} {:.0}%", row.id, row.trained * 100.0))
                .collect();
            if !running.is_empty() {
                let _ = write!(line, "; running {}", running.join(", "));
            }
            if let Some((i, v)) = best {
                let _ = write!(line, "; best #{} {} {v:.5}", r[i].id, self.metric.name());
            }
            line
        })
    }

    /// The final leaderboard: finished trials best first, then the failed ones.
    pub fn table(&self) -> String {
        let metric = self.metric;
        let mut rows = self.rows();
        // Trials that trained their whole budget (the only ones that can win) first, then those
        // ASHA stopped, later rungs first, then the rest; by metric within each.
        let group = |r: &Row| match r.status {
            "done" => 0,
            "stopped" => 1,
            _ => 2,
        };
        rows.sort_by(|a, b| {
            group(a).cmp(&group(b)).then(b.trained.total_cmp(&a.trained)).then(match (a.value, b.value) {
                (Some(x), Some(y)) if metric.better(x, y) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) if metric.better(y, x) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.id.cmp(&b.id),
            })
        });
        let mut out =
            format!("{:>5}  {:<8} {:>10} {:>8} {:>8}  params\n", "trial", "status", metric.name(), "trained", "secs");
        for r in rows {
            let value = r.value.map_or("-".to_string(), |v| format!("{v:.5}"));
            let params: Vec<String> = r.params.iter().map(|(p, v)| format!("{p}={v}")).collect();
            let _ = write!(
                out,
                "{:>5}  {:<8} {:>10} {:>7.0}% {:>8.2}  {}",
                r.id,
                r.status,
                value,
                r.trained * 100.0,
                r.seconds,
                params.join(" ")
            );
            if let Some(reason) = &r.reason {
                let _ = write!(out, "  ({reason})");
            }
            out.push('\n');
        }
        out
    }

    /// The rows as CSV: one column per searched option.
    pub fn csv(&self) -> String {
        let rows = self.rows();
        let names: Vec<String> =
            rows.first().map(|r| r.params.iter().map(|p| p.0.clone()).collect()).unwrap_or_default();
        let mut out = String::from("trial,status,metric,value,logloss,auc,rmse,trained,examples,seconds");
        for n in &names {
            let _ = write!(out, ",{}", csv_field(n));
        }
        out.push_str(",reason\n");
        let num = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v}"));
        for r in rows {
            let _ = write!(
                out,
                "{},{},{},{},{},{},{},{:.4},{},{:.3}",
                r.id,
                r.status,
                self.metric.name(),
                num(r.value),
                num(r.logloss),
                num(r.auc),
                num(r.rmse),
                r.trained,
                r.examples,
                r.seconds
            );
            for (_, v) in &r.params {
                let _ = write!(out, ",{}", csv_field(v));
            }
            let _ = writeln!(out, ",{}", csv_field(r.reason.as_deref().unwrap_or("")));
        }
        out
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Updates one trial's row from inside the trial.
pub struct TrialWatch<'a> {
    board: &'a Board,
    i: usize,
}

impl Watch for TrialWatch<'_> {
    fn progress(&self, done: u64, total: u64) {
        self.board.with(|r| {
            r[self.i].trained = if total == 0 { 0.0 } else { done as f64 / total as f64 };
            r[self.i].examples = done;
        });
    }

    fn rung(&self, _at: f64, value: f64) {
        self.board.with(|r| r[self.i].value = Some(value).filter(|v| v.is_finite()));
    }
}
