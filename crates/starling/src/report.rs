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
    if let Some(n) = r.cache_parsed {
        let _ = write!(out, ", \"cache_parsed\": {n}");
    }
    if let Some(t) = &r.test {
        let _ = write!(out, ", \"test\": {}", summary_json(t));
    }
    if let Some(best) = r.best_pass {
        let passes: Vec<String> =
            r.valid.iter().map(|(p, s)| format!("{{\"pass\": {p}, \"metrics\": {}}}", summary_json(s))).collect();
        let _ = write!(
            out,
            ", \"best_pass\": {best}, \"stopped_early\": {}, \"valid\": [{}]",
            r.stopped_early,
            passes.join(", ")
        );
    }
    out.push_str("}\n");
    out
}

/// Writes `json` to `path`, naming the path on failure.
pub fn write(path: &Path, json: &str) -> std::io::Result<()> {
    starling_fs::write_file(path, json.as_bytes())
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// JSON string literal.
fn string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    format!("[{}]", items.iter().map(f).collect::<Vec<_>>().join(", "))
}

/// The report of a cluster job, as the coordinator saw it.
pub fn job_json(r: &crate::cluster::coordinator::JobReport) -> String {
    let t = &r.traffic;
    let secs = r.train_seconds.max(1e-9);
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"mode\": {}, \"train_examples\": {}, \"train_seconds\": {}, \"examples_per_s\": {}, \"progressive_logloss\": {}",
        string(&r.mode),
        r.examples,
        num(r.train_seconds),
        num(r.examples as f64 / secs),
        num(r.progressive_logloss)
    );
    if let Some(m) = &r.test {
        let _ = write!(
            out,
            ", \"test\": {{\"count\": {}, \"logloss\": {}, \"auc\": {}, \"rmse\": {}, \"accuracy\": {}}}",
            m.count,
            num(m.logloss),
            m.auc.map_or("null".into(), num),
            num(m.rmse),
            num(m.accuracy)
        );
    }
    let _ = write!(
        out,
        ", \"traffic\": {{\"keys_pulled\": {}, \"bytes_pulled\": {}, \"keys_pushed\": {}, \"bytes_pushed\": {}, \"keys_pulled_per_s\": {}, \"keys_pushed_per_s\": {}, \"wait_seconds\": {}, \"steps\": {}}}",
        t.keys_pulled,
        t.bytes_pulled,
        t.keys_pushed,
        t.bytes_pushed,
        num(t.keys_pulled as f64 / secs),
        num(t.keys_pushed as f64 / secs),
        num(t.wait.as_secs_f64()),
        t.steps
    );
    let _ = write!(
        out,
        ", \"staleness\": {{\"counts\": {}, \"max\": {}}}, \"granted_staleness\": {{\"counts\": {}, \"max\": {}}}",
        list(&t.staleness.counts, |c| c.to_string()),
        t.staleness.max,
        list(&r.granted_staleness.counts, |c| c.to_string()),
        r.granted_staleness.max
    );
    let _ = write!(
        out,
        ", \"restarts\": {}, \"recoveries\": {}",
        r.restarts,
        list(&r.recoveries, |v| format!(
            "{{\"lost\": {}, \"kind\": {}, \"to\": {}, \"steps_redone\": {}, \"seconds\": {}}}",
            list(&v.lost, |s| string(s)),
            string(&v.kind),
            string(&v.to),
            v.steps_redone,
            num(v.seconds)
        ))
    );
    let _ = writeln!(
        out,
        ", \"servers\": {}, \"lost_workers\": {}, \"workers_joined\": {}, \"workers_left\": {}, \"checkpoints\": {}}}",
        list(&r.servers, |s| format!(
            "{{\"rows\": {}, \"pulls\": {}, \"keys_pulled\": {}, \"pushes\": {}, \"keys_pushed\": {}}}",
            s.rows, s.pulls, s.keys_pulled, s.pushes, s.keys_pushed
        )),
        list(&r.lost_workers, |s| string(s)),
        list(&r.workers_joined, |s| string(s)),
        list(&r.workers_left, |s| string(s)),
        list(&r.checkpoints, |s| string(s))
    );
    out
}
