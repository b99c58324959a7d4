//! The search space of `starling tune`: which job options vary, over what values, and how the
//! trials are drawn (grid or random), read from a TOML file.
//!
//! ```toml
//! [search]
//! method = "random"          # or "grid"
//! trials = 16                # random: trials drawn; grid: at most this many (all when unset)
//! parallel = 2               # trials running side by side
//! metric = "logloss"         # on the job's holdout (data.test): logloss | auc | rmse
//! seed = 1
//!
//! [asha]                     # optional: stop weak trials early (successive halving)
//! eta = 3                    # keep the best 1/eta at each rung
//! grace = 0.1                # first rung after this fraction of a trial's training examples
//!
//! [params]                   # any job option, by its dotted path
//! "optimizer.lr" = { log = [0.001, 1.0], steps = 4 }   # log range (steps: grid points)
//! "optimizer.l2" = [0.0, 1e-6, 1e-4]                    # a list of values
//! "model.k" = { int = [4, 16] }                         # integers, both ends included
//! "train.passes" = { linear = [1, 3], steps = 3 }       # linear range
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use starling_core::rng::Rng;

/// Errors in a search-space file.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// The file could not be read.
    #[error("cannot read search space {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or an entry is not a valid dimension.
    #[error("search space {origin}: {message}")]
    Invalid {
        /// File name (or "inline").
        origin: String,
        /// What is wrong, naming the entry.
        message: String,
    },
}

/// How trials are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Every combination of the dimensions' grid points, in order.
    Grid,
    /// Independent draws from each dimension.
    #[default]
    Random,
}

impl Method {
    /// The method's name as the space file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Method::Grid => "grid",
            Method::Random => "random",
        }
    }
}

/// Where trials run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runner {
    /// In this process, one thread per trial, from the shared cache (with ASHA).
    #[default]
    Threads,
    /// Each trial a `starling launch` job (its `[cluster]` servers and workers), run to the end.
    Launch,
}

/// The holdout metric trials are ranked by.
pub use starling_core::metrics::Metric;

/// `[search]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Grid or random.
    pub method: Method,
    /// Trials to run (random), or the most to run (grid; none: every combination).
    pub trials: Option<usize>,
    /// Trials running side by side.
    pub parallel: usize,
    /// What ranks trials.
    pub metric: Metric,
    /// Seed of random search.
    pub seed: u64,
    /// Where trials run.
    pub runner: Runner,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            method: Method::Random,
            trials: None,
            parallel: 1,
            metric: Metric::Logloss,
            seed: 1,
            runner: Runner::Threads,
        }
    }
}

/// `[asha]`: asynchronous successive halving.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AshaConfig {
    /// At each rung only the best `1/eta` of the trials seen there go on.
    pub eta: f64,
    /// The first rung, as a fraction of a trial's training examples (passes × rows).
    pub grace: f64,
}

impl Default for AshaConfig {
    fn default() -> Self {
        AshaConfig { eta: 3.0, grace: 1.0 / 9.0 }
    }
}

/// One varying option and its values.
#[derive(Clone, Debug, PartialEq)]
pub enum Dimension {
    /// An explicit list (any TOML values).
    List(Vec<toml::Value>),
    /// Floats between two ends, uniform on a linear or log scale; `steps` grid points.
    Range {
        /// Lower end.
        lo: f64,
        /// Upper end.
        hi: f64,
        /// Log scale (both ends > 0).
        log: bool,
        /// Grid points, both ends included.
        steps: Option<usize>,
    },
    /// Integers, both ends included.
    Int {
        /// Lower end.
        lo: i64,
        /// Upper end.
        hi: i64,
    },
}

impl Dimension {
    /// The grid points, in order.
    fn grid(&self, name: &str) -> Result<Vec<toml::Value>, String> {
        match self {
            Dimension::List(v) => Ok(v.clone()),
            Dimension::Int { lo, hi } => Ok((*lo..=*hi).map(toml::Value::Integer).collect()),
            Dimension::Range { lo, hi, log, steps } => {
                let n = steps.ok_or_else(|| format!("`{name}`: a range needs `steps` for grid search"))?;
                Ok((0..n)
                    .map(|i| {
                        let t = if n == 1 { 0.0 } else { i as f64 / (n - 1) as f64 };
                        toml::Value::Float(interpolate(*lo, *hi, *log, t))
                    })
                    .collect())
            }
        }
    }

    /// One random draw.
    fn draw(&self, rng: &mut Rng) -> toml::Value {
        match self {
            Dimension::List(v) => v[rng.below(v.len() as u64) as usize].clone(),
            Dimension::Int { lo, hi } => toml::Value::Integer(lo + rng.below((hi - lo + 1) as u64) as i64),
            Dimension::Range { lo, hi, log, .. } => toml::Value::Float(interpolate(*lo, *hi, *log, rng.next_f64())),
        }
    }
}

/// The point at fraction `t` between `lo` and `hi`, on a log or linear scale, rounded to 6
/// significant digits so results files and job files stay readable.
fn interpolate(lo: f64, hi: f64, log: bool, t: f64) -> f64 {
    let x = if log { (lo.ln() + t * (hi.ln() - lo.ln())).exp() } else { lo + t * (hi - lo) };
    let x = if t >= 1.0 { hi } else { x };
    format!("{x:.5e}").parse().unwrap_or(x)
}

/// A whole search: how, and over what.
#[derive(Clone, Debug)]
pub struct SearchSpace {
    /// `[search]`.
    pub search: SearchConfig,
    /// `[asha]`, when early stopping is on.
    pub asha: Option<AshaConfig>,
    /// `[params]`, by dotted option path, in file order sorted by name.
    pub params: Vec<(String, Dimension)>,
}

/// A trial's option values, by dotted path.
pub type Assignment = Vec<(String, toml::Value)>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpace {
    #[serde(default)]
    search: SearchConfig,
    asha: Option<AshaConfig>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
}

impl SearchSpace {
    /// Reads a search-space file.
    pub fn load(path: &Path) -> Result<Self, SpaceError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpaceError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses a search space; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SpaceError> {
        let bad = |message: String| SpaceError::Invalid { origin: origin.to_string(), message };
        let raw: RawSpace = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if raw.params.is_empty() {
            return Err(bad("[params] is empty: name at least one option to vary".into()));
        }
        if raw.search.parallel == 0 {
            return Err(bad("search.parallel must be at least 1".into()));
        }
        if raw.search.trials == Some(0) {
            return Err(bad("search.trials must be at least 1".into()));
        }
        if let Some(a) = &raw.asha {
            if a.eta.is_nan() || a.eta <= 1.0 {
                return Err(bad(format!("asha.eta must be above 1, got {}", a.eta)));
            }
            if !(0.0..=1.0).contains(&a.grace) || a.grace == 0.0 {
                return Err(bad(format!("asha.grace must be in (0, 1], got {}", a.grace)));
            }
        }
        let params = raw
            .params
            .into_iter()
            .map(|(name, v)| parse_dimension(&name, v).map(|d| (name, d)).map_err(bad))
            .collect::<Result<Vec<_>, _>>()?;
        let space = SearchSpace { search: raw.search, asha: raw.asha, params };
        if space.search.method == Method::Grid {
            space.grid_points().map_err(bad)?;
        }
        Ok(space)
    }

    fn grid_points(&self) -> Result<Vec<Vec<toml::Value>>, String> {
        self.params.iter().map(|(n, d)| d.grid(n)).collect()
    }

    /// The trials to run, in order.
    pub fn trials(&self) -> Result<Vec<Assignment>, String> {
        match self.search.method {
            Method::Grid => {
                let points = self.grid_points()?;
                let total: usize = points.iter().map(Vec::len).product();
                let n = self.search.trials.map_or(total, |t| t.min(total));
                Ok((0..n)
                    .map(|mut i| {
                        // Mixed-radix digits of i, last dimension fastest.
                        let mut a: Assignment = Vec::with_capacity(points.len());
                        for ((name, _), vals) in self.params.iter().zip(&points).rev() {
                            a.push((name.clone(), vals[i % vals.len()].clone()));
                            i /= vals.len();
                        }
                        a.reverse();
                        a
                    })
                    .collect())
            }
            Method::Random => {
                let n = self.search.trials.ok_or("random search needs search.trials")?;
                let mut rng = Rng::new(self.search.seed);
                Ok((0..n)
                    .map(|_| self.params.iter().map(|(name, d)| (name.clone(), d.draw(&mut rng))).collect())
                    .collect())
            }
        }
    }
}

/// Reads one `[params]` entry.
fn parse_dimension(name: &str, v: toml::Value) -> Result<Dimension, String> {
    let num = |v: &toml::Value| match v {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    };
    match v {
        toml::Value::Array(items) if items.is_empty() => Err(format!("`{name}`: the list of values is empty")),
        toml::Value::Array(items) => Ok(Dimension::List(items)),
        toml::Value::Table(t) => {
            let kinds: Vec<&str> = ["log", "linear", "int"].into_iter().filter(|k| t.contains_key(*k)).collect();
            let [kind] = kinds[..] else {
                return Err(format!("`{name}`: give a list, or a table with one of `log`, `linear`, `int`"));
            };
            if let Some(k) = t.keys().find(|k| !matches!(k.as_str(), "log" | "linear" | "int" | "steps")) {
                return Err(format!("`{name}`: unknown key `{k}` (expected `{kind}` and optionally `steps`)"));
            }
            let ends = match &t[kind] {
                toml::Value::Array(a) if a.len() == 2 => (num(&a[0]), num(&a[1])),
                _ => (None, None),
            };
            let (Some(lo), Some(hi)) = ends else {
                return Err(format!("`{name}`: `{kind}` must be two numbers [low, high]"));
            };
            if !lo.is_finite() || !hi.is_finite() || lo > hi {
                return Err(format!("`{name}`: the range [{lo}, {hi}] is empty or not finite"));
            }
            let steps = match t.get("steps") {
                None => None,
                Some(toml::Value::Integer(s)) if *s >= 1 => Some(*s as usize),
                Some(other) => return Err(format!("`{name}`: steps must be a positive integer, got {other}")),
            };
            match kind {
                "int" if lo.fract() != 0.0 || hi.fract() != 0.0 => {
                    Err(format!("`{name}`: `int` ends must be integers, got [{lo}, {hi}]"))
                }
                "int" => Ok(Dimension::Int { lo: lo as i64, hi: hi as i64 }),
                "log" if lo <= 0.0 => Err(format!("`{name}`: a log range needs ends above 0, got [{lo}, {hi}]")),
                _ => Ok(Dimension::Range { lo, hi, log: kind == "log", steps }),
            }
        }
        other => Err(format!("`{name}`: expected a list of values or a range table, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_enumerates_every_combination_last_dimension_fastest() {
        let s = SearchSpace::from_toml(
            "[search]\nmethod = \"grid\"\n[params]\n\"optimizer.lr\" = { log = [0.01, 1.0], steps = 3 }\n\"optimizer.l2\" = [0.0, 0.1]\n",
            "t",
        )
        .unwrap();
        let t = s.trials().unwrap();
        assert_eq!(t.len(), 6);
        // BTreeMap order: "optimizer.l2" before "optimizer.lr".
        assert_eq!(t[0], vec![("optimizer.l2".into(), 0.0.into()), ("optimizer.lr".into(), 0.01.into())]);
        assert_eq!(t[1][1].1, toml::Value::Float(0.1));
        assert_eq!(t[2][1].1, toml::Value::Float(1.0));
        assert_eq!(t[3][0].1, toml::Value::Float(0.1));
    }

    #[test]
    fn random_search_is_seeded_and_stays_in_range() {
        let text = "[search]\ntrials = 50\nseed = 3\n[params]\n\"optimizer.lr\" = { log = [0.001, 0.1] }\n\"model.k\" = { int = [2, 4] }\n";
        let a = SearchSpace::from_toml(text, "t").unwrap().trials().unwrap();
        assert_eq!(a, SearchSpace::from_toml(text, "t").unwrap().trials().unwrap());
        assert_eq!(a.len(), 50);
        for t in &a {
            let k = t[0].1.as_integer().unwrap();
            let lr = t[1].1.as_float().unwrap();
            assert!((2..=4).contains(&k) && (0.001..=0.1).contains(&lr), "{t:?}");
        }
    }

    #[test]
    fn bad_entries_are_named() {
        for (text, want) in [
            ("[params]\n\"optimizer.lr\" = { log = [0.0, 1.0] }\n", "above 0"),
            ("[params]\n\"optimizer.lr\" = { lin = [0.0, 1.0] }\n", "one of `log`"),
            ("[params]\n\"optimizer.lr\" = []\n", "empty"),
            ("[search]\nmethod = \"grid\"\n[params]\n\"optimizer.lr\" = { linear = [0.1, 1.0] }\n", "needs `steps`"),
            ("[params]\n", "is empty"),
            ("[asha]\neta = 1\n[params]\nx = [1]\n", "asha.eta"),
        ] {
            let e = SearchSpace::from_toml(text, "space.toml").unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("space.toml"), "{e}");
        }
    }
}
