//! Prometheus metrics: counters, gauges and histograms held in a registry, and the text
//! exposition format (version 0.0.4) that `GET /metrics` answers with.
//!
//! Handles are lock-free atomics, cheap enough for every request; only registering a series
//! and rendering the page take the registry's lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, x: f64) {
        self.0.store(x.to_bits(), Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations counted into buckets by upper bound, with their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// Per bucket (not cumulative; the page adds them up), then one for `+Inf`.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        let mut bounds = bounds.to_vec();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, counts, sum: AtomicU64::new(0f64.to_bits()) }
    }

    /// Counts `x` in the first bucket whose bound is at least `x`.
    pub fn observe(&self, x: f64) {
        let i = self.bounds.partition_point(|&b| b < x);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let mut old = self.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + x).to_bits();
            match self.sum.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Bucket bounds `start, start * factor, ...`, `n` of them.
pub fn exponential_buckets(start: f64, factor: f64, n: usize) -> Vec<f64> {
    (0..n).scan(start, |b, _| Some(std::mem::replace(b, *b * factor))).collect()
}

#[derive(Debug)]
enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: &'static str,
    /// Each series' labels, rendered (`a="x",b="y"`), and its metric.
    series: Vec<(String, Metric)>,
}

/// The metrics of one process, rendered together.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<Vec<Family>>,
}

impl Registry {
    /// A counter `name` (which should end in `_total`) with these labels.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
        let c = Arc::new(Counter::default());
        self.add(name, help, "counter", labels, Metric::Counter(c.clone()));
        c
    }

    /// A gauge `name` with these labels.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Gauge> {
        let g = Arc::new(Gauge::default());
        self.add(name, help, "gauge", labels, Metric::Gauge(g.clone()));
        g
    }

    /// A histogram `name` with these bucket bounds and labels.
    pub fn histogram(&self, name: &str, help: &str, labels: &[(&str, &str)], bounds: &[f64]) -> Arc<Histogram> {
        let h = Arc::new(Histogram::new(bounds));
        self.add(name, help, "histogram", labels, Metric::Histogram(h.clone()));
        h
    }

    fn add(&self, name: &str, help: &str, kind: &'static str, labels: &[(&str, &str)], m: Metric) {
        debug_assert!(valid_name(name), "metric name {name:?}");
        let mut rendered = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            debug_assert!(valid_name(k) && !k.starts_with("__"), "label name {k:?}");
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(rendered, "{sep}{k}=\"{}\"", escape(v, true));
        }
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        match families.iter_mut().find(|f| f.name == name) {
            Some(f) => {
                debug_assert_eq!(f.kind, kind, "metric {name} registered as two kinds");
                f.series.push((rendered, m));
            }
            None => families.push(Family {
                name: name.to_string(),
                help: help.to_string(),
                kind,
                series: vec![(rendered, m)],
            }),
        }
    }

    /// Every metric in the text exposition format.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for f in families.iter() {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape(&f.help, false));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for (labels, m) in &f.series {
                let braced = |extra: &str| -> String {
                    match (labels.is_empty(), extra.is_empty()) {
                        (true, true) => String::new(),
                        (true, false) => format!("{{{extra}}}"),
                        (false, true) => format!("{{{labels}}}"),
                        (false, false) => format!("{{{labels},{extra}}}"),
                    }
                };
                match m {
                    Metric::Counter(c) => {
                        let _ = writeln!(out, "{}{} {}", f.name, braced(""), c.get());
                    }
                    Metric::Gauge(g) => {
                        let _ = writeln!(out, "{}{} {}", f.name, braced(""), number(g.get()));
                    }
                    Metric::Histogram(h) => {
                        let mut cumulative = 0;
                        for (i, c) in h.counts.iter().enumerate() {
                            cumulative += c.load(Ordering::Relaxed);
                            let le = h.bounds.get(i).map_or("+Inf".to_string(), |&b| number(b));
                            let _ = writeln!(out, "{}_bucket{} {cumulative}", f.name, braced(&format!("le=\"{le}\"")));
                        }
                        let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
                        let _ = writeln!(out, "{}_sum{} {}", f.name, braced(""), number(sum));
                        let _ = writeln!(out, "{}_count{} {cumulative}", f.name, braced(""));
                    }
                }
            }
        }
        out
    }
}

/// A sample value as the format spells it.
fn number(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{x}")
    }
}

/// Backslash and newline escaped (and, in label values, the double quote).
fn escape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_kind_in_the_text_format() {
        let r = Registry::default();
        r.counter("x_total", "Things.", &[("code", "200")]).add(3);
        r.counter("x_total", "Things.", &[("code", "4\"0\\0")]).inc();
        r.gauge("g", "A gauge.\nTwo lines.", &[]).set(0.5);
        let h = r.histogram("h_seconds", "Times.", &[], &[0.5, 1.0]);
        for x in [0.25, 0.5, 0.75, 8.0] {
            h.observe(x);
        }
        let text = r.render();
        let want = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{code=\"200\"} 3\n\
                    x_total{code=\"4\\\"0\\\\0\"} 1\n# HELP g A gauge.\\nTwo lines.\n# TYPE g gauge\ng 0.5\n\
                    # HELP h_seconds Times.\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"0.5\"} 2\n\
                    h_seconds_bucket{le=\"1\"} 3\nh_seconds_bucket{le=\"+Inf\"} 4\nh_seconds_sum 9.5\n\
                    h_seconds_count 4\n";
        assert_eq!(text, want);
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn exponential_buckets_multiply() {
        assert_eq!(exponential_buckets(1.0, 2.0, 4), vec![1.0, 2.0, 4.0, 8.0]);
    }
}
