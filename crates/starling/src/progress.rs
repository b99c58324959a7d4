//! Progress of a running job: an indicatif bar on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Plain log lines are printed at most this often.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Shared by the worker threads of one phase (a pass, an evaluation); cheap to update in batches.
pub struct Progress {
    phase: String,
    unit: &'static str,
    show_loss: bool,
    bar: Option<ProgressBar>,
    quiet: bool,
    start: Instant,
    state: Mutex<State>,
}

struct State {
    examples: u64,
    loss_sum: f64,
    last_log: Instant,
}

impl Progress {
    /// Progress of a training or evaluation `phase`, with the running loss; `quiet` silences it,
    /// and a bar is used only when stderr is a terminal.
    pub fn new(phase: impl Into<String>, quiet: bool) -> Self {
        Self::build(phase.into(), "examples", true, quiet)
    }

    /// Progress counted in `unit`s (rows written, say), without a loss.
    pub fn counter(phase: impl Into<String>, unit: &'static str, quiet: bool) -> Self {
        Self::build(phase.into(), unit, false, quiet)
    }

    fn build(phase: String, unit: &'static str, show_loss: bool, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {{prefix}} {{human_pos}} {unit}, {{rate}} {unit}/s [{{elapsed}}] {{msg}}"
                ))
                .expect("static template")
                // indicatif's own {per_sec} prints `94,328.5599/s`.
                .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&rate(s.per_sec()));
                }),
            );
            bar.set_prefix(phase.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            phase,
            unit,
            show_loss,
            bar,
            quiet,
            start: Instant::now(),
            state: Mutex::new(State { examples: 0, loss_sum: 0.0, last_log: Instant::now() }),
        }
    }

    /// Records `examples` more examples whose summed (weighted) loss is `loss_sum`.
    pub fn add(&self, examples: u64, loss_sum: f64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.examples += examples;
        s.loss_sum += loss_sum;
        let running = s.loss_sum / s.examples.max(1) as f64;
        if let Some(bar) = &self.bar {
            bar.set_position(s.examples);
            if self.show_loss {
                bar.set_message(format!("loss {running:.5}"));
            }
        } else if !self.quiet && s.last_log.elapsed() >= LOG_EVERY {
            s.last_log = Instant::now();
            let per_sec = s.examples as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            let loss = if self.show_loss { format!(", running loss {running:.5}") } else { String::new() };
            crate::errln!("[{}] {} {unit}, {} {unit}/s{loss}", self.phase, s.examples, rate(per_sec), unit = self.unit);
        }
    }

    /// Examples and summed loss recorded so far.
    pub fn totals(&self) -> (u64, f64) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.examples, s.loss_sum)
    }

    /// Prints a line without tearing the bar.
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => crate::errln!("{line}"),
        }
    }

    /// Removes the bar (its figures are reported by the caller).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A rate as people read it: whole units with thousands separators, `94,329` (for `94,329/s`).
pub fn rate(per_sec: f64) -> String {
    let n = if per_sec.is_finite() { per_sec.round().max(0.0) as u64 } else { 0 };
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 2);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_are_whole_numbers_with_separators() {
        assert_eq!(super::rate(94_328.56), "94,329");
        assert_eq!(super::rate(999.4), "999");
        assert_eq!(super::rate(1_234_567.0), "1,234,567");
        assert_eq!(super::rate(f64::NAN), "0");
    }
}
