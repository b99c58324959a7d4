//! A trial's job: the base job with the trial's option values set by dotted path.

use crate::config::JobConfig;

use super::space::Assignment;

/// The job of a trial, or why its values make no valid job. Choosing `optimizer.name` resets the
/// other optimizer options to that optimizer's defaults, except those the trial also sets:
/// another optimizer's hyperparameters do not carry over. Hyperparameters are set by name as
/// `--lr` sets them, so `optimizer.lr` is the step size of every optimizer (FTRL's `alpha`).
pub fn trial_job(base: &JobConfig, values: &Assignment) -> Result<JobConfig, String> {
    let mut doc: toml::Value =
        toml::Value::try_from(base).map_err(|e| format!("cannot express the job as TOML: {e}"))?;
    if values.iter().any(|(path, _)| path == "optimizer.name") {
        if let Some(t) = doc.as_table_mut() {
            t.insert("optimizer".into(), toml::Value::Table(Default::default()));
        }
    }
    let mut hypers = Vec::new();
    for (path, value) in values {
        match path.strip_prefix("optimizer.") {
            Some(param) if param != "name" => hypers.push((path, param, value)),
            _ => set(&mut doc, path, value.clone())?,
        }
    }
    let text = toml::to_string(&doc).map_err(|e| format!("cannot write the trial's job: {e}"))?;
    let mut job = JobConfig::from_toml(&text, "the trial's job").map_err(|e| e.to_string())?;
    for (path, param, value) in hypers {
        let x = match value {
            toml::Value::Float(x) => *x as f32,
            toml::Value::Integer(i) => *i as f32,
            other => return Err(format!("`{path}`: expected a number, got {other}")),
        };
        job.optimizer.assign(param, x).map_err(|e| format!("`{path}`: {e}"))?;
    }
    job.validate().map_err(|e| e.to_string())?;
    Ok(job)
}

/// Makes each trial's values the type its option has in `base`: a float drawn from a `linear`
/// or `log` range for an integer option (`train.passes`, `model.k`) is rounded to the nearest
/// integer, so ranges work over any numeric option.
pub fn coerce(base: &JobConfig, trials: &mut [Assignment]) {
    let Ok(doc) = toml::Value::try_from(base) else { return };
    for values in trials.iter_mut() {
        for (path, value) in values.iter_mut() {
            let current = path.split('.').try_fold(&doc, |v, p| v.get(p));
            if let (Some(toml::Value::Integer(_)), toml::Value::Float(x)) = (current, &*value) {
                *value = toml::Value::Integer(x.round() as i64);
            }
        }
    }
}

/// Sets `doc[a][b]... = value` for the dotted `path`; every section on the way must exist (a typo
/// in a section name is an error, not a new section).
fn set(doc: &mut toml::Value, path: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    let (last, sections) = parts.split_last().ok_or_else(|| format!("empty option path `{path}`"))?;
    let mut at = doc;
    for s in sections {
        at = at
            .as_table_mut()
            .and_then(|t| t.get_mut(*s))
            .ok_or_else(|| format!("`{path}`: the job has no section `{s}`"))?;
    }
    let table = at.as_table_mut().ok_or_else(|| format!("`{path}`: `{}` is not a section", sections.join(".")))?;
    table.insert((*last).to_string(), value);
    Ok(())
}

/// `path = value` pairs for logs and results, in the trial's order.
pub fn describe(values: &Assignment) -> String {
    values.iter().map(|(p, v)| format!("{p}={}", show(v))).collect::<Vec<_>>().join(" ")
}

/// A value as results show it: strings without TOML quotes.
pub fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::Optimizer;

    #[test]
    fn values_land_in_the_job() {
        let base = JobConfig::default();
        let job = trial_job(&base, &vec![("optimizer.l2".into(), 0.5.into()), ("model.k".into(), 3.into())]).unwrap();
        assert_eq!(job.model.k, 3);
        assert!(format!("{:?}", job.optimizer).contains("0.5"), "{:?}", job.optimizer);
    }

    #[test]
    fn choosing_the_optimizer_drops_the_old_ones_options() {
        let base = JobConfig::default();
        let job = trial_job(&base, &vec![("optimizer.name".into(), "ftrl".into())]).unwrap();
        assert!(matches!(job.optimizer, Optimizer::Ftrl { .. }), "{:?}", job.optimizer);
    }

    #[test]
    fn lr_is_the_step_size_of_every_optimizer() {
        let base = JobConfig::default();
        let values = vec![("optimizer.lr".into(), 0.2.into()), ("optimizer.name".into(), "ftrl".into())];
        let job = trial_job(&base, &values).unwrap();
        assert!(matches!(job.optimizer, Optimizer::Ftrl { alpha, .. } if alpha == 0.2), "{}", job.optimizer);
    }

    #[test]
    fn floats_for_integer_options_are_rounded() {
        let base = JobConfig::default();
        let mut trials = vec![vec![("train.passes".into(), 2.0.into()), ("optimizer.lr".into(), 0.5.into())]];
        coerce(&base, &mut trials);
        assert_eq!(trials[0][0].1, toml::Value::Integer(2));
        assert_eq!(trials[0][1].1, toml::Value::Float(0.5));
        assert_eq!(trial_job(&base, &trials[0]).unwrap().train.passes, 2);
    }

    #[test]
    fn bad_values_and_paths_are_reasons_not_panics() {
        let base = JobConfig::default();
        for (path, value, want) in [
            ("train.passes", toml::Value::Integer(0), "passes"),
            ("model.kind", "svm".into(), "svm"),
            ("modle.k", 3.into(), "no section `modle`"),
            ("optimizer.lrate", 0.1.into(), "lrate"),
            ("optimizer.lr", "fast".into(), "expected a number"),
        ] {
            let e = trial_job(&base, &vec![(path.into(), value)]).unwrap_err();
            assert!(e.contains(want), "{path}: {e}");
        }
    }
}
